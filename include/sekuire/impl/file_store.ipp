// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_FILE_STORE_IPP
#define SEKUIRE_IMPL_FILE_STORE_IPP

// The bodies of file_store.hpp's functions: included by file_store.hpp (header-only) or
// compiled once by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/file_store.hpp>

namespace sekuire {

auto detail::cred_file::fail(status& s, errc e, const char* reason, int sys) noexcept -> void {
    s.ec = e;
    s.reason = reason;
    s.sys = sys;
}

auto detail::cred_file::stable_since(const identity& id, std::int64_t read_at) noexcept -> bool {
    return id.mtime_sec <= read_at - 4;
}

auto detail::cred_file::identity_of(const struct stat& sb) noexcept -> identity {
#if defined(__APPLE__)
    const auto& m = sb.st_mtimespec;
#else
    const auto& m = sb.st_mtim;
#endif
    return {sb.st_dev, sb.st_ino, sb.st_size, static_cast<std::int64_t>(m.tv_sec), static_cast<long>(m.tv_nsec)};
}

auto detail::cred_file::private_file(const struct stat& sb, status& st) noexcept -> bool {
    if (!S_ISREG(sb.st_mode)) {
        fail(st, errc::store_io, "not a regular file");
        return false;
    }
    if (sb.st_uid != ::geteuid()) {
        fail(st, errc::store_insecure, "owned by another user");
        return false;
    }
    if ((sb.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        fail(st, errc::store_insecure, "writable by group or others");
        return false;
    }
    return true;
}

auto detail::cred_file::open_retry(const char* path, int flags, mode_t mode) noexcept -> int {
    for (;;) {
        const int fd = ::open(path, flags, mode);
        if (fd >= 0 || errno != EINTR) return fd;
    }
}

auto detail::cred_file::valid_path(const std::string& p) noexcept -> bool {
    return !p.empty() && p.find('\0') == std::string::npos && p.back() != '/';
}

auto detail::cred_file::dir_of(const std::string& p) -> std::string {
    const auto slash = p.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return p.substr(0, slash);
}

auto detail::cred_file::base_of(const std::string& p) -> std::string {
    const auto slash = p.find_last_of('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

auto detail::cred_file::lexically_normal(const std::string& abs) -> std::string {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < abs.size()) {
        while (i < abs.size() && abs[i] == '/') ++i;
        const std::size_t start = i;
        while (i < abs.size() && abs[i] != '/') ++i;
        const std::string part = abs.substr(start, i - start);
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            if (!parts.empty()) parts.pop_back();
            continue;
        }
        parts.push_back(part);
    }
    std::string out;
    for (const auto& part : parts) out += "/" + part;
    return out.empty() ? "/" : out;
}

auto detail::cred_file::canonical_key(const std::string& path) -> std::string {
    const std::string dir = dir_of(path);
    if (char* real = ::realpath(dir.c_str(), nullptr)) {
        std::string key(real);
        std::free(real);
        if (key.empty() || key.back() != '/') key.push_back('/');
        return key + base_of(path);
    }
    if (!path.empty() && path.front() == '/') return lexically_normal(path);
    std::string cwd(4096, '\0');
    if (::getcwd(&cwd[0], cwd.size()) == nullptr) return path;
    cwd.resize(std::char_traits<char>::length(cwd.c_str()));
    return lexically_normal(cwd + "/" + path);
}

auto detail::cred_file::write_all(int fd, const char* data, std::size_t n, int& err) noexcept -> bool {
    while (n > 0) {
        const ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            err = errno;
            return false;
        }
        if (w == 0) {
            err = EIO;
            return false;
        }
        data += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

auto detail::cred_file::read_bounded(int fd, std::size_t limit, std::string& out, int& err) -> bool {
    out.assign(limit + 1, '\0');
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t r = ::read(fd, &out[got], out.size() - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            err = errno;
            return false;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return true;
}

auto detail::cred_file::full_sync(int fd) noexcept -> int {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
    if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
#endif
    for (;;) {
        if (::fsync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

auto detail::cred_file::sync_dir(const std::string& dir, status& st) -> bool {
    unique_fd fd(open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        fail(st, errc::store_io, "cannot open the directory to sync it", errno);
        return false;
    }
    if (full_sync(fd.get()) != 0) {
        const int e = errno;
        // Some file systems cannot sync a directory; there is nothing more to do there.
        if (e != EINVAL && e != ENOTSUP && e != EOPNOTSUPP) {
            fail(st, errc::store_io, "cannot sync the directory", e);
            return false;
        }
    }
    return true;
}

auto detail::cred_file::encode(const installation_credentials& c) -> std::string {
    boost::json::object o;
    o["format"] = 1;
    o["installation_id"] = c.installation_id;
    o["refresh_token"] = c.refresh_token;
    o["runtime_token"] = c.runtime_token;
    if (c.runtime_token_expires_at) o["runtime_token_expires_at"] = format_rfc3339(*c.runtime_token_expires_at);
    if (c.runtime_token_issued_at) o["runtime_token_issued_at"] = format_rfc3339(*c.runtime_token_issued_at);
    o["token_version"] = c.token_version;
    std::string out = boost::json::serialize(o);
    out.push_back('\n');
    return out;
}

auto detail::cred_file::string_field(const boost::json::object& o, std::string_view key, std::string& out, const char*& reason) -> bool {
    const auto* v = o.if_contains(key);
    if (v == nullptr) {
        reason = "a required field is missing";
        return false;
    }
    const auto* s = v->if_string();
    if (s == nullptr) {
        reason = "a field has the wrong type";
        return false;
    }
    out.assign(s->data(), s->size());
    return true;
}

auto detail::cred_file::decode(std::string_view text, installation_credentials& out) -> const char* {
    boost::json::parse_options opts;
    opts.max_depth = 16;
    boost::system::error_code jec;
    const boost::json::value v = boost::json::parse(boost::json::string_view(text.data(), text.size()), jec,
                                                    boost::json::storage_ptr(), opts);
    if (jec) return "not valid JSON (syntax, truncation, nesting or UTF-8)";
    const auto* o = v.if_object();
    if (o == nullptr) return "not a JSON object";
    const auto* format = o->if_contains("format");
    if (format == nullptr) return "the format field is missing";
    if (!format->is_int64() && !format->is_uint64()) return "the format field is not an integer";
    if (!(format->is_int64() && format->get_int64() == 1)) return "unknown format version";

    installation_credentials c;
    const char* reason = nullptr;
    if (!string_field(*o, "installation_id", c.installation_id, reason)) return reason;
    if (c.installation_id.empty()) return "installation_id is empty";
    if (!string_field(*o, "refresh_token", c.refresh_token, reason)) return reason;
    if (!string_field(*o, "runtime_token", c.runtime_token, reason)) return reason;
    if (const auto* exp = o->if_contains("runtime_token_expires_at")) {
        const auto* s = exp->if_string();
        if (s == nullptr) return "runtime_token_expires_at has the wrong type";
        c.runtime_token_expires_at = parse_rfc3339(std::string_view(s->data(), s->size()));
        if (!c.runtime_token_expires_at) return "runtime_token_expires_at is not a valid RFC 3339 timestamp";
    }
    if (const auto* issued = o->if_contains("runtime_token_issued_at")) {
        const auto* s = issued->if_string();
        if (s == nullptr) return "runtime_token_issued_at has the wrong type";
        c.runtime_token_issued_at = parse_rfc3339(std::string_view(s->data(), s->size()));
        if (!c.runtime_token_issued_at) return "runtime_token_issued_at is not a valid RFC 3339 timestamp";
    }
    const auto* version = o->if_contains("token_version");
    if (version == nullptr) return "the token_version field is missing";
    if (version->is_int64()) {
        c.token_version = version->get_int64();
    } else {
        // Boost.JSON keeps a non-negative integer as int64 when it fits, so a uint64 here
        // is out of range.
        return "token_version is not a 64-bit signed integer";
    }
    out = std::move(c);
    return nullptr;
}

auto detail::cred_file::read_file(const std::string& path, installation_credentials& out, identity& id, status& st) -> read_outcome {
    // O_NONBLOCK: opening a FIFO put at the path must not hang; it is refused below.
    // O_NOFOLLOW: a symbolic link planted at the path is refused, never followed.
    unique_fd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW));
    if (!fd) {
        const int e = errno;
        if (e == ENOENT) return read_outcome::missing;
        if (e == ELOOP) {
            fail(st, errc::store_insecure, "a symbolic link");
            return read_outcome::io;
        }
        fail(st, errc::store_io, "cannot open the file", e);
        return read_outcome::io;
    }
    struct stat sb {};
    if (::fstat(fd.get(), &sb) != 0) {
        fail(st, errc::store_io, "cannot stat the file", errno);
        return read_outcome::io;
    }
    // Checked on the open descriptor: what is read is what was checked.
    if (!private_file(sb, st)) return read_outcome::io;
    id = identity_of(sb);
    if (sb.st_size < 0 || static_cast<std::uint64_t>(sb.st_size) > max_size) {
        fail(st, errc::store_corrupt, "larger than the 64 KiB limit");
        return read_outcome::corrupt;
    }
    std::string text;
    int err = 0;
    if (!read_bounded(fd.get(), max_size, text, err)) {
        fail(st, errc::store_io, "cannot read the file", err);
        return read_outcome::io;
    }
    if (text.size() > max_size) {
        fail(st, errc::store_corrupt, "larger than the 64 KiB limit");
        return read_outcome::corrupt;
    }
    if (const char* reason = decode(text, out)) {
        fail(st, errc::store_corrupt, reason);
        return read_outcome::corrupt;
    }
    return read_outcome::ok;
}

auto detail::cred_file::utc_stamp() -> std::string {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    if (::gmtime_r(&now, &tm) == nullptr) return "19700101T000000Z";
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

auto detail::cred_file::keep_aside(const std::string& path, const identity& bad, status& st) -> bool {
    const std::string base = path + ".corrupt-" + utc_stamp();
    bool use_rename = false;
    for (int n = 0; n < 1000; ++n) {
        const std::string name = n == 0 ? base : base + "-" + std::to_string(n);
        if (!use_rename) {
            if (::link(path.c_str(), name.c_str()) == 0) {
                struct stat sb {};
                if (::lstat(name.c_str(), &sb) == 0 && (sb.st_dev != bad.dev || sb.st_ino != bad.ino)) {
                    // Another writer replaced the corrupt file meanwhile: nothing to keep.
                    ::unlink(name.c_str());
                }
                return true;
            }
            const int e = errno;
            if (e == EEXIST) continue;
            if (e == ENOENT) return true;
            if (e != EPERM && e != ENOTSUP && e != EOPNOTSUPP && e != EXDEV && e != EMLINK && e != ENOSYS) {
                fail(st, errc::store_io, "cannot keep the corrupt file aside", e);
                return false;
            }
            use_rename = true;
        }
        struct stat sb {};
        if (::lstat(name.c_str(), &sb) == 0) continue;
        if (errno != ENOENT) {
            fail(st, errc::store_io, "cannot keep the corrupt file aside", errno);
            return false;
        }
        if (::rename(path.c_str(), name.c_str()) == 0) return true;
        const int e = errno;
        if (e == ENOENT) return true;
        fail(st, errc::store_io, "cannot keep the corrupt file aside", e);
        return false;
    }
    fail(st, errc::store_io, "too many kept corrupt files with the same time stamp", EEXIST);
    return false;
}

auto detail::cred_file::next_temp_number() noexcept -> unsigned long {
    static std::atomic<unsigned long> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed);
}

auto detail::cred_file::write_atomically(const std::string& path, const std::string& bytes, identity& id, status& st) -> bool {
    std::string tmp;
    unique_fd fd;
    for (int attempt = 0; attempt < 100 && !fd; ++attempt) {
        tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-" +
              std::to_string(next_temp_number());
        fd.reset(open_retry(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd && errno != EEXIST) {
            fail(st, errc::store_io, "cannot create the temporary file", errno);
            return false;
        }
    }
    if (!fd) {
        fail(st, errc::store_io, "cannot create the temporary file", EEXIST);
        return false;
    }
    auto abandon = [&](const char* reason, int e) {
        fd.close();
        ::unlink(tmp.c_str());
        fail(st, errc::store_io, reason, e);
        return false;
    };
    if (::fchmod(fd.get(), 0600) != 0) return abandon("cannot set the mode of the temporary file", errno);
    int err = 0;
    if (!write_all(fd.get(), bytes.data(), bytes.size(), err)) return abandon("cannot write the temporary file", err);
    if (full_sync(fd.get()) != 0) return abandon("cannot sync the temporary file", errno);
    struct stat sb {};
    if (::fstat(fd.get(), &sb) != 0) return abandon("cannot stat the temporary file", errno);
    if (fd.close() != 0) return abandon("cannot close the temporary file", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) return abandon("cannot rename the temporary file", errno);
    id = identity_of(sb);
    return sync_dir(dir_of(path), st);
}

auto detail::cred_file::temp_owner(const std::string& name, const std::string& base) noexcept -> long {
    const std::string prefix = base + ".tmp-";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
    long pid = 0;
    std::size_t i = prefix.size();
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
        pid = pid * 10 + (name[i] - '0');
        if (pid > 1L << 30) return -1;
    }
    if (i == prefix.size() || i >= name.size() || name[i] != '-') return -1;
    return pid;
}

auto detail::cred_file::remove_stale_temps(const std::string& path) -> void {
    const std::string dir = dir_of(path), base = base_of(path);
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return;
    const long self = static_cast<long>(::getpid());
    const std::int64_t now = wall_seconds();
    int budget = 1000; // bounded, whatever the directory holds
    while (const struct dirent* e = ::readdir(d)) {
        if (--budget < 0) break;
        const std::string name = e->d_name;
        const long pid = temp_owner(name, base);
        if (pid < 0 || pid == self) continue;
        const std::string full = dir + "/" + name;
        struct stat sb {};
        if (::lstat(full.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != ::geteuid()) continue;
        const bool gone = ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
        if (gone || identity_of(sb).mtime_sec < now - 3600) ::unlink(full.c_str());
    }
    ::closedir(d);
}

auto detail::cred_file::probe_writable(const std::string& path, status& st) -> bool {
    const std::string probe = path + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-probe-" +
                              std::to_string(next_temp_number());
    unique_fd fd(open_retry(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
        fail(st, errc::store_io, "cannot create a file in its directory", errno);
        return false;
    }
    fd.close();
    ::unlink(probe.c_str());
    return true;
}

auto detail::cred_file::waits() -> lock_waits& {
    static lock_waits* w = new lock_waits(); // never destroyed, like the registry
    return *w;
}

auto detail::cred_file::count_wait(std::uint64_t lock_waits::*counter) -> void {
    auto& w = waits();
    {
        std::lock_guard<std::mutex> lock(w.mutex);
        ++(w.*counter);
    }
    w.changed.notify_all();
}

auto detail::cred_file::wait_for_waits(std::uint64_t lock_waits::*counter, std::uint64_t n, std::chrono::milliseconds timeout) -> bool {
    auto& w = waits();
    std::unique_lock<std::mutex> lock(w.mutex);
    return w.changed.wait_for(lock, timeout, [&] { return w.*counter >= n; });
}

auto detail::cred_file::wait_count(std::uint64_t lock_waits::*counter) -> std::uint64_t {
    auto& w = waits();
    std::lock_guard<std::mutex> lock(w.mutex);
    return w.*counter;
}

auto detail::cred_file::registry() -> lock_registry& {
    // Never destroyed: a background thread may still lock a store during static destruction.
    static lock_registry* r = new lock_registry();
    return *r;
}

auto detail::cred_file::lock_entry_for(const std::string& key) -> std::shared_ptr<lock_entry> {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.entries.find(key);
    if (it != r.entries.end())
        if (auto sp = it->second.lock()) return sp;
    for (auto i = r.entries.begin(); i != r.entries.end();) i = i->second.expired() ? r.entries.erase(i) : std::next(i);
    auto sp = std::make_shared<lock_entry>();
    r.entries[key] = sp;
    return sp;
}

auto detail::cred_file::open_lock_file(const std::string& lock_path, status& st) noexcept -> int {
    int fd = open_retry(lock_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        (void)::fchmod(fd, 0600);
        return fd;
    }
    if (errno == ELOOP) {
        fail(st, errc::store_insecure, "the lock file is a symbolic link");
        return -2;
    }
    if (errno != EEXIST) return -1;
    fd = open_retry(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == EACCES) fd = open_retry(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP) {
            fail(st, errc::store_insecure, "the lock file is a symbolic link");
            return -2;
        }
        if (errno == EACCES) {
            fail(st, errc::store_insecure, "the lock file belongs to another user");
            return -2;
        }
        return -1;
    }
    struct stat sb {};
    status check;
    if (::fstat(fd, &sb) != 0 || !private_file(sb, check)) {
        ::close(fd);
        fail(st, errc::store_insecure, "the lock file is not private to this user");
        return -2;
    }
    return fd;
}

auto detail::cred_file::try_lock_file(const std::string& lock_path, status& st) noexcept -> int {
    const int fd = open_lock_file(lock_path, st);
    if (fd < 0) return fd;
    for (;;) {
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
        if (errno == EINTR) continue;
        const int e = errno;
        ::close(fd);
        if (e == EWOULDBLOCK) {
            count_wait(&lock_waits::on_file);
            fail(st, errc::store_locked, "the refresh lock is held by another process");
            return -2;
        }
        return -1;
    }
}

auto detail::cred_file::lock_file(const std::string& lock_path) noexcept -> int {
    status st;
    const int fd = open_lock_file(lock_path, st);
    if (fd < 0) return -1;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno == EWOULDBLOCK) count_wait(&lock_waits::on_file);
    for (;;) {
        if (::flock(fd, LOCK_EX) == 0) return fd;
        if (errno != EINTR) {
            ::close(fd);
            return -1;
        }
    }
}

auto file_store::load(error_code& ec) const -> std::optional<installation_credentials> {
    detail::cred_file::status st;
    auto r = load_impl(st);
    ec = st.ec;
    return r;
}

void file_store::save(const installation_credentials& c, error_code& ec) {
    detail::cred_file::status st;
    save_impl(c, st);
    ec = st.ec;
}

void file_store::clear(error_code& ec) {
    detail::cred_file::status st;
    clear_impl(st);
    ec = st.ec;
}

auto file_store::load() const -> std::optional<installation_credentials> {
    detail::cred_file::status st;
    auto r = load_impl(st);
    throw_on(st, "load");
    return r;
}

void file_store::save(const installation_credentials& c) {
    detail::cred_file::status st;
    save_impl(c, st);
    throw_on(st, "save");
}

void file_store::clear() {
    detail::cred_file::status st;
    clear_impl(st);
    throw_on(st, "clear");
}

void file_store::lock_refresh() {
    std::shared_ptr<detail::cred_file::lock_entry> entry = refresh_entry();
    {
        std::unique_lock<std::mutex> lock(entry->mutex);
        if (entry->held) {
            detail::cred_file::count_wait(&detail::cred_file::lock_waits::in_process);
            entry->cv.wait(lock, [&] { return !entry->held; });
        }
        entry->held = true;
    }
    const int fd = detail::cred_file::valid_path(state_->path)
                       ? detail::cred_file::lock_file(state_->path + ".lock")
                       : -1;
    std::lock_guard<std::mutex> lock(entry->mutex);
    entry->fd = fd;
}

auto file_store::try_lock_refresh(error_code& ec) -> bool {
    ec = {};
    std::shared_ptr<detail::cred_file::lock_entry> entry = refresh_entry();
    {
        std::lock_guard<std::mutex> lock(entry->mutex);
        if (entry->held) {
            detail::cred_file::count_wait(&detail::cred_file::lock_waits::in_process);
            ec = errc::store_locked;
            return false;
        }
        entry->held = true;
    }
    detail::cred_file::status st;
    const int fd = detail::cred_file::valid_path(state_->path)
                       ? detail::cred_file::try_lock_file(state_->path + ".lock", st)
                       : -1;
    {
        std::lock_guard<std::mutex> lock(entry->mutex);
        if (fd != -2) {
            entry->fd = fd;
            return true;
        }
        entry->held = false;
    }
    entry->cv.notify_one();
    ec = st.ec;
    return false;
}

void file_store::check_writable(error_code& ec) {
    detail::cred_file::status st;
    if (!detail::cred_file::valid_path(state_->path))
        detail::cred_file::fail(st, errc::store_io, "the path cannot name a file", EINVAL);
    else
        detail::cred_file::probe_writable(state_->path, st);
    ec = st.ec;
}

auto file_store::version() const -> std::optional<std::uint64_t> {
    namespace cf = detail::cred_file;
    if (!cf::valid_path(state_->path)) return std::nullopt;
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (!state_->cache_valid) return std::nullopt;
    struct stat sb {};
    if (::lstat(state_->path.c_str(), &sb) != 0) return std::nullopt;
    if (!S_ISREG(sb.st_mode) || cf::identity_of(sb) != state_->cached_id || sb.st_uid != ::geteuid() ||
        (sb.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return std::nullopt;
    return state_->generation;
}

void file_store::unlock_refresh() {
    std::shared_ptr<detail::cred_file::lock_entry> entry = refresh_entry();
    int fd = -1;
    {
        std::lock_guard<std::mutex> lock(entry->mutex);
        SEKUIRE_ASSERT(entry->held);
        if (!entry->held) return;
        fd = entry->fd;
        entry->fd = -1;
    }
    if (fd >= 0) {
        ::flock(fd, LOCK_UN);
        ::close(fd);
    }
    {
        std::lock_guard<std::mutex> lock(entry->mutex);
        entry->held = false;
    }
    entry->cv.notify_one();
}

auto file_store::refresh_entry() const -> std::shared_ptr<detail::cred_file::lock_entry> {
    std::lock_guard<std::mutex> lock(state_->mutex);
    // Resolved once per shared state, so that every copy releases the entry it took.
    if (!state_->refresh)
        state_->refresh = detail::cred_file::lock_entry_for(detail::cred_file::canonical_key(state_->path));
    return state_->refresh;
}

void file_store::remember(installation_credentials c, const detail::cred_file::identity& id, std::int64_t seen_at) const {
    ++state_->generation;
    state_->cache_valid = detail::cred_file::stable_since(id, seen_at);
    if (!state_->cache_valid) return;
    state_->cached = std::move(c);
    state_->cached_id = id;
}

auto file_store::load_impl(detail::cred_file::status& st) const -> std::optional<installation_credentials> {
    namespace cf = detail::cred_file;
    if (!cf::valid_path(state_->path)) {
        cf::fail(st, errc::store_io, "the path cannot name a file", EINVAL);
        return std::nullopt;
    }
    std::lock_guard<std::mutex> lock(state_->mutex);
    struct stat sb {};
    if (::lstat(state_->path.c_str(), &sb) != 0) {
        const int e = errno;
        state_->cache_valid = false;
        if (e == ENOENT) return std::nullopt;
        cf::fail(st, errc::store_io, "cannot stat the file", e);
        return std::nullopt;
    }
    if (state_->cache_valid && S_ISREG(sb.st_mode) && cf::identity_of(sb) == state_->cached_id &&
        sb.st_uid == ::geteuid() && (sb.st_mode & (S_IWGRP | S_IWOTH)) == 0)
        return state_->cached;
    state_->cache_valid = false;
    installation_credentials c;
    cf::identity id;
    const std::int64_t read_at = cf::wall_seconds();
    switch (cf::read_file(state_->path, c, id, st)) {
    case cf::read_outcome::missing: return std::nullopt;
    case cf::read_outcome::ok:
        remember(c, id, read_at);
        return c;
    case cf::read_outcome::corrupt:
    case cf::read_outcome::io: break;
    }
    return std::nullopt;
}

void file_store::save_impl(const installation_credentials& c, detail::cred_file::status& st) {
    namespace cf = detail::cred_file;
    if (!cf::valid_path(state_->path)) {
        cf::fail(st, errc::store_io, "the path cannot name a file", EINVAL);
        return;
    }
    if (c.installation_id.empty()) {
        cf::fail(st, errc::invalid_argument, "installation_id is empty");
        return;
    }
    const std::string bytes = cf::encode(c);
    // Store only what load() will read back identically.
    installation_credentials stored;
    if (cf::decode(bytes, stored) != nullptr) {
        cf::fail(st, errc::invalid_argument, "the credentials hold text that is not UTF-8 or an unwritable expiry");
        return;
    }

    std::lock_guard<std::mutex> lock(state_->mutex);
    cf::remove_stale_temps(state_->path);
    struct stat sb {};
    const bool exists = ::lstat(state_->path.c_str(), &sb) == 0;
    if (exists && S_ISREG(sb.st_mode) &&
        !(state_->cache_valid && cf::identity_of(sb) == state_->cached_id)) {
        installation_credentials old;
        cf::identity old_id;
        cf::status read_st;
        // An unreadable old file is simply replaced; only a corrupt one is kept.
        if (cf::read_file(state_->path, old, old_id, read_st) == cf::read_outcome::corrupt &&
            !cf::keep_aside(state_->path, old_id, st))
            return;
    }
    state_->cache_valid = false;
    cf::identity id;
    const std::int64_t written_at = cf::wall_seconds();
    if (!cf::write_atomically(state_->path, bytes, id, st)) return;
    remember(std::move(stored), id, written_at);
}

void file_store::clear_impl(detail::cred_file::status& st) {
    namespace cf = detail::cred_file;
    if (!cf::valid_path(state_->path)) {
        cf::fail(st, errc::store_io, "the path cannot name a file", EINVAL);
        return;
    }
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->cache_valid = false;
    if (::unlink(state_->path.c_str()) != 0) {
        const int e = errno;
        if (e != ENOENT) cf::fail(st, errc::store_io, "cannot remove the file", e);
        return;
    }
    cf::sync_dir(cf::dir_of(state_->path), st);
}

void file_store::throw_on(const detail::cred_file::status& st, const char* op) const {
    if (!st.ec) return;
    std::string msg = "sekuire::file_store: cannot ";
    msg += op;
    msg += " '";
    msg += state_->path;
    msg += "': ";
    msg += st.reason;
    if (st.sys != 0) {
        msg += ": ";
        msg += boost::system::generic_category().message(st.sys);
    }
    throw error(st.ec, msg);
}

} // namespace sekuire

#endif
