// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_FILE_STORE_HPP
#define SEKUIRE_FILE_STORE_HPP

/// @file
/// `file_store`: a durable CredentialStore kept in one JSON file (POSIX).
///
/// @par File format
/// One JSON object, written with Boost.JSON:
/// ```json
/// {"format": 1, "installation_id": "...", "refresh_token": "...", "runtime_token": "...",
///  "runtime_token_expires_at": "2026-02-03T12:05:00Z",
///  "runtime_token_issued_at": "2026-01-03T12:05:00Z", "token_version": 3}
/// ```
/// `runtime_token_expires_at` and `runtime_token_issued_at` are omitted when unknown, and
/// are stored to the millisecond (RFC 3339, UTC). Reading is strict: the file is at most
/// `file_store::max_file_size` bytes; it must parse as a JSON object whose `format` is 1,
/// whose `installation_id` is a non-empty string, whose `refresh_token` and `runtime_token`
/// are strings, whose `token_version` is a 64-bit signed integer and whose expiry, when
/// present, is a valid RFC 3339 string. Anything else is `errc::store_corrupt`; keys this
/// version does not know are ignored.
///
/// @par Durability
/// `save()` writes a new file beside the target (`<path>.tmp-...`, created exclusively with
/// mode 0600 whatever the umask), syncs it, renames it over the target and syncs the
/// directory: readers see the old file or the new one, never a half-written one. A crash
/// between the creation and the rename can leave a `<path>.tmp-<pid>-<n>` file behind; it is
/// never read, and the next `save()` removes it once the process that wrote it is gone (or
/// it is an hour old).
///
/// @par Trust
/// `load()` reads only a file it can trust with credentials: it opens the path without
/// following a symbolic link (`O_NOFOLLOW`) and checks, on the open descriptor, that it is a
/// regular file owned by the effective user and not writable by group or others. Anything
/// else is `errc::store_insecure` (never taken as empty): whoever can write the directory
/// must not be able to inject credentials. The lock file `<path>.lock` is held to the same
/// rules.
///
/// @par Corrupt files are kept
/// When `save()` finds the existing file corrupt (as `load()` would report it), it first
/// keeps it as `<path>.corrupt-<UTC time, e.g. 20260203T120500Z>` (with `-1`, `-2`, ...
/// appended when that name is taken; an earlier kept file is never overwritten), then
/// writes the new file. The kept file is a hard link to the old one where the file system
/// allows it, so the target never disappears in between; elsewhere it is renamed aside.
/// sekuire never deletes kept files.

#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/time.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {

namespace detail {
namespace cred_file {

inline constexpr std::size_t max_size = std::size_t{64} * 1024;

// What failed, for the message of the throwing overloads. `reason` is always a literal, so
// that no byte of the file (a token) can reach an error message.
struct status {
    error_code ec;
    const char* reason = "";
    int sys = 0;
};

inline void fail(status& s, errc e, const char* reason, int sys = 0) noexcept {
    s.ec = e;
    s.reason = reason;
    s.sys = sys;
}

// The part of stat() that changes whenever the file is replaced or rewritten. The inode
// alone is not enough (a freed inode number is reused at once), hence size and mtime.
struct identity {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    std::int64_t mtime_sec = 0;
    long mtime_nsec = 0;

    friend bool operator==(const identity& a, const identity& b) noexcept {
        return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_sec == b.mtime_sec &&
               a.mtime_nsec == b.mtime_nsec;
    }
    friend bool operator!=(const identity& a, const identity& b) noexcept { return !(a == b); }
};

// Whether a file with identity `id`, read when the wall clock said `read_at`, may be taken
// as unchanged while its identity stays the same. A file whose mtime is that recent could
// be replaced within the same timestamp tick by a file of the same size reusing the freed
// inode number, which stat() cannot tell apart (git's "racy" index entries). Any write
// after the read gets a newer mtime once the read was more than one tick (2 s on FAT)
// after the old mtime, hence the margin.
inline bool stable_since(const identity& id, std::int64_t read_at) noexcept {
    return id.mtime_sec <= read_at - 4;
}

inline std::int64_t wall_seconds() noexcept { return static_cast<std::int64_t>(std::time(nullptr)); }

inline identity identity_of(const struct stat& sb) noexcept {
#if defined(__APPLE__)
    const auto& m = sb.st_mtimespec;
#else
    const auto& m = sb.st_mtim;
#endif
    return {sb.st_dev, sb.st_ino, sb.st_size, static_cast<std::int64_t>(m.tv_sec), static_cast<long>(m.tv_nsec)};
}

// Whether an open file may be trusted with credentials: a regular file owned by the
// effective user, not writable by group or others. Sets `st` when not.
inline bool private_file(const struct stat& sb, status& st) noexcept {
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

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    void reset(int fd) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // close() can report a deferred write error (NFS); a writer must see it.
    int close() noexcept {
        const int fd = fd_;
        fd_ = -1;
        return fd >= 0 ? ::close(fd) : 0;
    }

private:
    int fd_ = -1;
};

inline int open_retry(const char* path, int flags, mode_t mode = 0) noexcept {
    for (;;) {
        const int fd = ::open(path, flags, mode);
        if (fd >= 0 || errno != EINTR) return fd;
    }
}

// An empty path, an embedded NUL (which the C API would silently cut at) or a trailing
// slash cannot name a file.
inline bool valid_path(const std::string& p) noexcept {
    return !p.empty() && p.find('\0') == std::string::npos && p.back() != '/';
}

inline std::string dir_of(const std::string& p) {
    const auto slash = p.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return p.substr(0, slash);
}

inline std::string base_of(const std::string& p) {
    const auto slash = p.find_last_of('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Removes "." and ".." and repeated slashes from an absolute path, without touching the
// disk (used only when the directory cannot be resolved).
inline std::string lexically_normal(const std::string& abs) {
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

// The key under which every file_store of this process on the same file shares one refresh
// lock: the resolved directory plus the file name.
inline std::string canonical_key(const std::string& path) {
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

inline bool write_all(int fd, const char* data, std::size_t n, int& err) noexcept {
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

// Reads at most `limit + 1` bytes, so that the caller can tell an oversized file.
inline bool read_bounded(int fd, std::size_t limit, std::string& out, int& err) {
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

// On macOS fsync() does not flush the drive's cache; F_FULLFSYNC does.
inline int full_sync(int fd) noexcept {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
    if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
#endif
    for (;;) {
        if (::fsync(fd) == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

inline bool sync_dir(const std::string& dir, status& st) {
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

inline std::string encode(const installation_credentials& c) {
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

inline bool string_field(const boost::json::object& o, std::string_view key, std::string& out, const char*& reason) {
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

// Strict decoding; returns null on success, else why the text is not a credentials file.
inline const char* decode(std::string_view text, installation_credentials& out) {
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

enum class read_outcome { missing, ok, corrupt, io };

// Reads and decodes the file; `id` is the identity of what was read (valid for `ok` and
// `corrupt`).
inline read_outcome read_file(const std::string& path, installation_credentials& out, identity& id, status& st) {
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

inline std::string utc_stamp() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    if (::gmtime_r(&now, &tm) == nullptr) return "19700101T000000Z";
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

// Keeps the corrupt file (dev/ino `bad`) as <path>.corrupt-<stamp>[-N]. A hard link keeps
// the target in place, so a concurrent reader never sees the credentials vanish; and since
// link() refuses an existing name, no earlier kept file is overwritten. Without hard links,
// rename() after a check that the name is free (racy only against another writer picking
// the same name in the same second, on such a file system).
inline bool keep_aside(const std::string& path, const identity& bad, status& st) {
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

inline unsigned long next_temp_number() noexcept {
    static std::atomic<unsigned long> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed);
}

// Writes `bytes` to a new file and renames it over `path`; `id` is the identity of the new
// file. On failure before the rename, the temporary file is removed.
inline bool write_atomically(const std::string& path, const std::string& bytes, identity& id, status& st) {
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

// The process id in a temporary file name `<base>.tmp-<pid>-<n>`, or -1 when `name` is not one.
inline long temp_owner(const std::string& name, const std::string& base) noexcept {
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

// Removes the temporary files a crashed writer left beside `path`: ours, in the directory,
// whose process is gone (or that are an hour old, for a process id reused since). A live
// writer's file is left alone: its rename must not fail.
inline void remove_stale_temps(const std::string& path) {
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

// Whether a file can be created beside `path` now (what save() needs), without touching
// the credentials: creates and removes an empty temporary file.
inline bool probe_writable(const std::string& path, status& st) {
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

// A binary semaphore (not a mutex: unlock_refresh() may come from another thread than
// lock_refresh()) plus the flock()ed lock file while held.
struct lock_entry {
    std::mutex mutex;
    std::condition_variable cv;
    bool held = false;
    int fd = -1;
};

struct lock_registry {
    std::mutex mutex;
    std::map<std::string, std::weak_ptr<lock_entry>> entries;
};

// Counts the times a refresh lock had to wait (in this process, or on the lock file held by
// another process), so that tests can see a contender block without sleeping.
struct lock_waits {
    std::mutex mutex;
    std::condition_variable changed;
    std::uint64_t in_process = 0;
    std::uint64_t on_file = 0;
};

inline lock_waits& waits() {
    static lock_waits* w = new lock_waits(); // never destroyed, like the registry
    return *w;
}

inline void count_wait(std::uint64_t lock_waits::*counter) {
    auto& w = waits();
    {
        std::lock_guard<std::mutex> lock(w.mutex);
        ++(w.*counter);
    }
    w.changed.notify_all();
}

/// Waits (real time, bounded) until at least `n` waits of the kind were counted.
inline bool wait_for_waits(std::uint64_t lock_waits::*counter, std::uint64_t n, std::chrono::milliseconds timeout) {
    auto& w = waits();
    std::unique_lock<std::mutex> lock(w.mutex);
    return w.changed.wait_for(lock, timeout, [&] { return w.*counter >= n; });
}

inline std::uint64_t wait_count(std::uint64_t lock_waits::*counter) {
    auto& w = waits();
    std::lock_guard<std::mutex> lock(w.mutex);
    return w.*counter;
}

inline lock_registry& registry() {
    // Never destroyed: a background thread may still lock a store during static destruction.
    static lock_registry* r = new lock_registry();
    return *r;
}

inline std::shared_ptr<lock_entry> lock_entry_for(const std::string& key) {
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

// Opens the lock file, creating it with mode 0600; -1 when it cannot be (the caller then
// relies on the in-process lock alone), -2 with `st` set when it exists but is not
// private (another user could hold it, or swap it, for ever).
inline int open_lock_file(const std::string& lock_path, status& st) noexcept {
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

// Takes the lock file without waiting: the descriptor, -1 when no lock file can be used
// (in-process exclusion only), -2 with `st` set when it cannot be taken (held by another
// process: errc::store_locked; not private: errc::store_insecure).
inline int try_lock_file(const std::string& lock_path, status& st) noexcept {
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

// Blocks until the lock file is taken (for the blocking lock_refresh() only); -1 when no
// lock file can be used.
inline int lock_file(const std::string& lock_path) noexcept {
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

} // namespace cred_file
} // namespace detail

/** A durable CredentialStore: the credentials live in one JSON file (see the file comment
    for the format, the durability guarantees and the keeping of corrupt files).

    A cheap handle: copies share one state, so a beacon and a worker holding copies see
    each other's writes at once. The last value loaded or saved is cached, and the file is
    read again only when `stat()` shows it changed (device, inode, size or modification
    time to the nanosecond), so a heartbeat does not parse the file each time while a write
    by another process or another `file_store` is still seen. A file modified less than a
    few seconds before it was read is read again on every `load()` until it is older: within
    one file system timestamp tick, a replacement of the same size that reuses the freed
    inode number would look unchanged to `stat()`.

    The directory of `path` must exist; the file is created by the first `save()`. A
    symbolic link at `path` is replaced by a regular file on `save()`. The file is created
    with mode 0600, owned by the writing user.

    @par Refresh lock
    `lock_refresh()` excludes every holder of the same file: copies, other `file_store`
    objects of this process naming the same file (a process-wide registry keyed by the
    resolved path), and other processes (an exclusive `flock()` on `<path>.lock`, created
    with mode 0600 and never removed). When the lock file cannot be created or locked (a
    read-only directory, a file system without `flock`), only the in-process exclusion
    applies.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class file_store {
public:
    /// The largest file `load()` accepts; a larger one is corrupt.
    static constexpr std::size_t max_file_size = detail::cred_file::max_size;

    /// A store kept in the file `path`. Touches nothing on disk.
    explicit file_store(std::string path) : state_(std::make_shared<state>(std::move(path))) {}

    /** The stored credentials, or `nullopt` when the file does not exist.

        Sets `ec` to `errc::store_corrupt` when the file is not a valid credentials file
        (never reported as empty), to `errc::store_insecure` when it is not private (a
        symbolic link, a non-regular file, another owner, writable by group or others: see
        the file comment) and to `errc::store_io` when it cannot be read (an unreadable file,
        a path through a regular file). Never throws for these.
    */
    std::optional<installation_credentials> load(error_code& ec) const {
        detail::cred_file::status st;
        auto r = load_impl(st);
        ec = st.ec;
        return r;
    }

    /** Replaces the stored credentials, durably (see the file comment).

        A corrupt existing file is first kept aside as `<path>.corrupt-<time>[-N]`. Sets
        `ec` to `errc::store_io` when the file cannot be written (the old file is then left
        as it was) or when the directory cannot be synced after the new file took its place,
        and to `errc::invalid_argument` without touching the disk when `c` cannot be stored
        faithfully: an empty `installation_id`, text that is not valid UTF-8, or an expiry
        that cannot be written as RFC 3339. An expiry is stored truncated to whole
        milliseconds, and loads (from this handle too) return it so truncated.
    */
    void save(const installation_credentials& c, error_code& ec) {
        detail::cred_file::status st;
        save_impl(c, st);
        ec = st.ec;
    }

    /// Removes the file (a missing file is fine) and syncs its directory. Sets `ec` to
    /// `errc::store_io` when the file cannot be removed.
    void clear(error_code& ec) {
        detail::cred_file::status st;
        clear_impl(st);
        ec = st.ec;
    }

    /// As `load(error_code&)`, but throws `sekuire::error` on failure.
    std::optional<installation_credentials> load() const {
        detail::cred_file::status st;
        auto r = load_impl(st);
        throw_on(st, "load");
        return r;
    }

    /// As `save(const installation_credentials&, error_code&)`, but throws `sekuire::error`.
    void save(const installation_credentials& c) {
        detail::cred_file::status st;
        save_impl(c, st);
        throw_on(st, "save");
    }

    /// As `clear(error_code&)`, but throws `sekuire::error`.
    void clear() {
        detail::cred_file::status st;
        clear_impl(st);
        throw_on(st, "clear");
    }

    /** Blocks, without a time limit, until no other holder of this file (in this process
        or another) holds the refresh lock, then takes it. Not recursive: a holder that calls
        it again waits for itself. Never fails: without a usable (or a trustworthy) lock file
        it falls back to the in-process lock (see the class comment). sekuire itself only
        uses `try_lock_refresh()`, which never waits.
    */
    void lock_refresh() {
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

    /** Takes the refresh lock if no other holder of this file (in this process or another)
        has it, without waiting. Returns false with `ec` set to `errc::store_locked` when
        another holder has it, and to `errc::store_insecure` when the lock file is a symbolic
        link or is not private to this user (a lock file another user controls could be
        held by them for ever). Without a usable lock file (a read-only directory, a file
        system without `flock`) only the in-process exclusion applies.
    */
    bool try_lock_refresh(error_code& ec) {
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

    /** Whether `save()` can create its file now: creates and removes an empty temporary
        file beside the path. Sets `ec` to `errc::store_io` when it cannot (a directory that
        does not exist or is not writable). Never touches the credentials.
    */
    void check_writable(error_code& ec) {
        detail::cred_file::status st;
        if (!detail::cred_file::valid_path(state_->path))
            detail::cred_file::fail(st, errc::store_io, "the path cannot name a file", EINVAL);
        else
            detail::cred_file::probe_writable(state_->path, st);
        ec = st.ec;
    }

    /// "file <path>", for messages.
    std::string describe() const { return "file " + state_->path; }

    /** The version of the contents last loaded or saved through this handle or a copy,
        while `stat()` shows the file unchanged since (the same test as the cache of
        `load()`: device, inode, size, modification time, owner and mode); nullopt when the
        file changed, is missing, is too recent to judge, or cannot be checked: `load()`
        then tells. One `lstat()`; nothing is read.
    */
    std::optional<std::uint64_t> version() const {
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

    /// Releases the refresh lock taken by `lock_refresh()` on this store or a copy of it,
    /// from any thread. Precondition: the lock is held.
    void unlock_refresh() {
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

    /// The path given to the constructor.
    const std::string& path() const noexcept { return state_->path; }

private:
    struct state {
        explicit state(std::string p) : path(std::move(p)) {}
        const std::string path;
        std::mutex mutex;
        bool cache_valid = false;
        detail::cred_file::identity cached_id;
        installation_credentials cached;
        std::uint64_t generation = 0; // counts the contents remembered: version()
        std::shared_ptr<detail::cred_file::lock_entry> refresh;
    };

    std::shared_ptr<detail::cred_file::lock_entry> refresh_entry() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        // Resolved once per shared state, so that every copy releases the entry it took.
        if (!state_->refresh)
            state_->refresh = detail::cred_file::lock_entry_for(detail::cred_file::canonical_key(state_->path));
        return state_->refresh;
    }

    // Caller holds state_->mutex.
    void remember(installation_credentials c, const detail::cred_file::identity& id, std::int64_t seen_at) const {
        ++state_->generation;
        state_->cache_valid = detail::cred_file::stable_since(id, seen_at);
        if (!state_->cache_valid) return;
        state_->cached = std::move(c);
        state_->cached_id = id;
    }

    std::optional<installation_credentials> load_impl(detail::cred_file::status& st) const {
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

    void save_impl(const installation_credentials& c, detail::cred_file::status& st) {
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

    void clear_impl(detail::cred_file::status& st) {
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

    void throw_on(const detail::cred_file::status& st, const char* op) const {
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

    std::shared_ptr<state> state_;
};

} // namespace sekuire

#endif
