// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/file_store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sekuire::errc;
using sekuire::error_code;
using sekuire::file_store;
using sekuire::installation_credentials;

// A fresh directory under the system temp dir, removed (with everything in it) at the end.
class temp_dir {
public:
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "sekuire-file-store-XXXXXX").string();
        if (::mkdtemp(&pattern[0]) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(dir_, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec))
            if (it->is_directory(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
        fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
        fs::remove_all(dir_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    const fs::path& dir() const { return dir_; }

    std::set<std::string> names() const {
        std::set<std::string> out;
        for (const auto& e : fs::directory_iterator(dir_)) out.insert(e.path().filename().string());
        return out;
    }

private:
    fs::path dir_;
};

class umask_guard {
public:
    explicit umask_guard(mode_t m) : old_(::umask(m)) {}
    ~umask_guard() { ::umask(old_); }
    umask_guard(const umask_guard&) = delete;
    umask_guard& operator=(const umask_guard&) = delete;

private:
    mode_t old_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw std::runtime_error("cannot write test file");
    }
    // Private whatever the umask, as a file a store wrote would be.
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace, ec);
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

mode_t mode_of(const std::string& path) {
    struct stat sb {};
    if (::stat(path.c_str(), &sb) != 0) return static_cast<mode_t>(-1);
    return sb.st_mode & 07777;
}

bool is_root() { return ::geteuid() == 0; }

installation_credentials sample() {
    installation_credentials c;
    c.installation_id = "inst-0123";
    c.refresh_token = "refresh-SECRET-1";
    c.runtime_token = "runtime-SECRET-1";
    c.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::milliseconds(1770120300250LL));
    c.runtime_token_issued_at = sekuire::wall_time_point(std::chrono::milliseconds(1767528300125LL));
    c.token_version = 7;
    return c;
}

bool has_code(const sekuire::error& e, errc code) { return e.code() == error_code(code); }

const std::string valid_doc =
    R"({"format":1,"installation_id":"inst","refresh_token":"rt","runtime_token":"tok","token_version":1})";

// `holder` takes the refresh lock; a thread then asks `contender` for it and must get it
// only after `holder` released it. The test sees the contender block (the store counts its
// waits), so it needs no sleep.
template <class Holder, class Contender>
void check_excludes(Holder& holder, Contender& contender) {
    namespace cf = sekuire::detail::cred_file;
    holder.lock_refresh();
    std::atomic<bool> released{false};
    std::promise<bool> acquired;
    auto acquired_f = acquired.get_future();
    const auto waits_before = cf::wait_count(&cf::lock_waits::in_process);
    std::thread t([&] {
        contender.lock_refresh();
        acquired.set_value(released.load());
        contender.unlock_refresh();
    });
    BOOST_TEST(cf::wait_for_waits(&cf::lock_waits::in_process, waits_before + 1, std::chrono::seconds(10)));
    BOOST_TEST((acquired_f.wait_for(std::chrono::seconds(0)) == std::future_status::timeout));
    released = true;
    holder.unlock_refresh();
    const bool got = acquired_f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    BOOST_TEST(got);
    if (got) BOOST_TEST(acquired_f.get());
    t.join();
}

// Sets the modification time of `path` to `sec`.`nsec` (access time alike).
void set_mtime(const std::string& path, std::int64_t sec, long nsec) {
    struct timespec times[2];
    times[0].tv_sec = static_cast<time_t>(sec);
    times[0].tv_nsec = nsec;
    times[1] = times[0];
    if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) throw std::runtime_error("utimensat failed");
}

} // namespace

static_assert(sekuire::is_credential_store<sekuire::file_store>::value, "file_store is a CredentialStore");
static_assert(sekuire::check_credential_store<sekuire::file_store>::value, "file_store is a CredentialStore");

BOOST_AUTO_TEST_SUITE(file_store)

BOOST_AUTO_TEST_CASE(constructor_touches_nothing) {
    temp_dir d;
    sekuire::file_store s(d.path("creds.json"));
    BOOST_TEST(s.path() == d.path("creds.json"));
    BOOST_TEST(d.names().empty());
}

BOOST_AUTO_TEST_CASE(round_trip_every_field) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    auto c = sample();
    c.installation_id = "inst-\xC3\xA9-\"quoted\"-\\-\n-\t";
    c.refresh_token = std::string("with\0nul", 8);
    c.token_version = std::numeric_limits<std::int64_t>::max();
    sekuire::file_store(p).save(c);
    BOOST_TEST((sekuire::file_store(p).load() == c));

    c.token_version = std::numeric_limits<std::int64_t>::min();
    c.runtime_token.clear();
    c.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::seconds(-86400 * 365));
    sekuire::file_store s(p);
    error_code ec = errc::timeout;
    s.save(c, ec);
    BOOST_TEST(!ec);
    BOOST_TEST((sekuire::file_store(p).load() == c));
    BOOST_TEST((s.load() == c));
}

BOOST_AUTO_TEST_CASE(round_trip_absent_expiry) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    auto c = sample();
    c.runtime_token_expires_at.reset();
    c.runtime_token_issued_at.reset();
    sekuire::file_store(p).save(c);
    BOOST_TEST(read_bytes(p).find("runtime_token_expires_at") == std::string::npos);
    BOOST_TEST(read_bytes(p).find("runtime_token_issued_at") == std::string::npos);
    const auto got = sekuire::file_store(p).load();
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(!got->runtime_token_expires_at.has_value());
    BOOST_TEST((*got == c));
}

BOOST_AUTO_TEST_CASE(file_holds_the_documented_json) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store(p).save(sample());
    const auto v = boost::json::parse(read_bytes(p));
    const auto& o = v.as_object();
    BOOST_TEST(o.size() == 7u);
    BOOST_TEST(o.at("format").as_int64() == 1);
    BOOST_TEST(o.at("installation_id").as_string() == "inst-0123");
    BOOST_TEST(o.at("refresh_token").as_string() == "refresh-SECRET-1");
    BOOST_TEST(o.at("runtime_token").as_string() == "runtime-SECRET-1");
    BOOST_TEST(o.at("runtime_token_expires_at").as_string() == "2026-02-03T12:05:00.250Z");
    BOOST_TEST(o.at("runtime_token_issued_at").as_string() == "2026-01-04T12:05:00.125Z");
    BOOST_TEST(o.at("token_version").as_int64() == 7);
}

BOOST_AUTO_TEST_CASE(expiry_is_kept_to_the_millisecond) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    auto c = sample();
    c.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::milliseconds(1770120300250LL)) +
                                 std::chrono::duration_cast<sekuire::wall_time_point::duration>(
                                     std::chrono::microseconds(999));
    sekuire::file_store s(p);
    s.save(c);
    auto expected = c;
    expected.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::milliseconds(1770120300250LL));
    // The same handle and a fresh one agree on the stored value.
    BOOST_TEST((s.load() == expected));
    BOOST_TEST((sekuire::file_store(p).load() == expected));
}

BOOST_AUTO_TEST_CASE(mode_is_0600_whatever_the_umask) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    {
        umask_guard g(0);
        sekuire::file_store(p).save(sample());
    }
    BOOST_TEST(mode_of(p) == 0600u);
    {
        umask_guard g(0277);
        sekuire::file_store(p).save(sample());
    }
    BOOST_TEST(mode_of(p) == 0600u);
}

BOOST_AUTO_TEST_CASE(no_temporary_files_remain) {
    temp_dir d;
    sekuire::file_store s(d.path("creds.json"));
    auto c = sample();
    for (int i = 0; i < 5; ++i) {
        c.token_version = i;
        s.save(c);
    }
    BOOST_TEST((d.names() == std::set<std::string>{"creds.json"}));
    BOOST_TEST(s.load()->token_version == 4);
}

BOOST_AUTO_TEST_CASE(missing_file_is_empty_without_error) {
    temp_dir d;
    for (const auto& p : {d.path("creds.json"), d.path("no-such-dir/creds.json")}) {
        sekuire::file_store s(p);
        error_code ec = errc::timeout;
        const auto got = s.load(ec);
        BOOST_TEST(!ec);
        BOOST_TEST(!got.has_value());
        BOOST_TEST(!s.load().has_value());
    }
    BOOST_TEST(d.names().empty());
}

BOOST_AUTO_TEST_CASE(the_control_document_loads) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    write_bytes(p, valid_doc);
    const auto got = sekuire::file_store(p).load();
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(got->installation_id == "inst");
    BOOST_TEST(got->token_version == 1);
    BOOST_TEST(!got->runtime_token_expires_at.has_value());
    // Unknown keys are ignored.
    write_bytes(p, R"({"format":1,"installation_id":"inst","refresh_token":"rt","runtime_token":"tok",)"
                   R"("token_version":1,"later":{"x":[1,2]}})");
    BOOST_TEST(sekuire::file_store(p).load().has_value());
}

BOOST_AUTO_TEST_CASE(corrupt_files_are_store_corrupt) {
    const std::string rest = R"("refresh_token":"rt","runtime_token":"tok","token_version":1})";
    const std::string head = R"({"format":1,"installation_id":"inst",)";
    std::string padded = valid_doc;
    padded.append(std::size_t{100} * 1024 - padded.size(), ' ');
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"empty file", ""},
        {"not JSON", "hello, world"},
        {"truncated JSON", valid_doc.substr(0, valid_doc.size() / 2)},
        {"top-level array", "[1,2,3]"},
        {"top-level string", R"("inst")"},
        {"format is a string", R"({"format":"1","installation_id":"inst",)" + rest},
        {"format is a double", R"({"format":1.0,"installation_id":"inst",)" + rest},
        {"format missing", R"({"installation_id":"inst",)" + rest},
        {"unknown format 2", R"({"format":2,"installation_id":"inst",)" + rest},
        {"unknown format 0", R"({"format":0,"installation_id":"inst",)" + rest},
        {"unknown format -1", R"({"format":-1,"installation_id":"inst",)" + rest},
        {"installation_id a number", R"({"format":1,"installation_id":5,)" + rest},
        {"installation_id missing", R"({"format":1,)" + rest},
        {"installation_id empty", R"({"format":1,"installation_id":"",)" + rest},
        {"refresh_token null", head + R"("refresh_token":null,"runtime_token":"tok","token_version":1})"},
        {"refresh_token missing", head + R"("runtime_token":"tok","token_version":1})"},
        {"runtime_token array", head + R"("refresh_token":"rt","runtime_token":[],"token_version":1})"},
        {"token_version string", head + R"("refresh_token":"rt","runtime_token":"tok","token_version":"3"})"},
        {"token_version double", head + R"("refresh_token":"rt","runtime_token":"tok","token_version":1.5})"},
        {"token_version too big",
         head + R"("refresh_token":"rt","runtime_token":"tok","token_version":18446744073709551615})"},
        {"token_version missing", head + R"("refresh_token":"rt","runtime_token":"tok"})"},
        {"expiry a number", head + R"("runtime_token_expires_at":5,)" + rest},
        {"expiry null", head + R"("runtime_token_expires_at":null,)" + rest},
        {"invalid timestamp", head + R"("runtime_token_expires_at":"2026-02-30T00:00:00Z",)" + rest},
        {"not a timestamp", head + R"("runtime_token_expires_at":"tomorrow",)" + rest},
        {"issue time a number", head + R"("runtime_token_issued_at":5,)" + rest},
        {"invalid issue time", head + R"("runtime_token_issued_at":"2026-13-01T00:00:00Z",)" + rest},
        {"100 KiB file", padded},
        {"invalid UTF-8", "{\"format\":1,\"installation_id\":\"in\xff\xfest\"," + rest},
        {"deeply nested arrays", std::string(10000, '[') + std::string(10000, ']')},
        {"deeply nested member", head + R"("x":)" + std::string(1000, '[') + std::string(1000, ']') + "," + rest},
        {"trailing garbage", valid_doc + "x"},
        {"comment", "// c\n" + valid_doc},
    };
    temp_dir d;
    const std::string p = d.path("creds.json");
    for (const auto& tc : cases) {
        BOOST_TEST_CONTEXT(tc.first) {
            write_bytes(p, tc.second);
            sekuire::file_store s(p);
            error_code ec;
            std::optional<installation_credentials> got;
            BOOST_CHECK_NO_THROW(got = s.load(ec));
            BOOST_TEST(ec == error_code(errc::store_corrupt));
            BOOST_TEST(!got.has_value());
            BOOST_CHECK_EXCEPTION(s.load(), sekuire::error,
                                  [](const sekuire::error& e) { return has_code(e, errc::store_corrupt); });
        }
    }
}

BOOST_AUTO_TEST_CASE(error_messages_hold_no_token_text) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    write_bytes(p, R"({"format":1,"installation_id":"","refresh_token":"SECRET-REFRESH",)"
                   R"("runtime_token":"SECRET-RUNTIME","token_version":1})");
    try {
        (void)sekuire::file_store(p).load();
        BOOST_FAIL("load() of a corrupt file did not throw");
    } catch (const sekuire::error& e) {
        const std::string what = e.what();
        BOOST_TEST(what.find("SECRET") == std::string::npos);
        BOOST_TEST(what.find("creds.json") != std::string::npos);
    }
    write_bytes(p, R"({"format":1,"installation_id":"SECRET-ID",)" + std::string(40, '[') + "}");
    try {
        (void)sekuire::file_store(p).load();
        BOOST_FAIL("load() of a corrupt file did not throw");
    } catch (const sekuire::error& e) {
        BOOST_TEST(std::string(e.what()).find("SECRET") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(save_refuses_what_it_cannot_store) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    auto c = sample();
    c.installation_id.clear();
    error_code ec;
    s.save(c, ec);
    BOOST_TEST(ec == error_code(errc::invalid_argument));
    c = sample();
    c.runtime_token = "tok-\xff";
    s.save(c, ec);
    BOOST_TEST(ec == error_code(errc::invalid_argument));
    c = sample();
    c.runtime_token_expires_at = sekuire::wall_time_point::max();
    s.save(c, ec);
    BOOST_TEST(ec == error_code(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(s.save(c), sekuire::error,
                          [](const sekuire::error& e) { return has_code(e, errc::invalid_argument); });
    BOOST_TEST(d.names().empty());
}

BOOST_AUTO_TEST_CASE(save_keeps_a_corrupt_file_aside) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    const std::string garbage = "{\"format\":1, truncated";
    write_bytes(p, garbage);
    sekuire::file_store s(p);
    error_code ec;
    s.save(sample(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST((sekuire::file_store(p).load() == sample()));

    const auto names = d.names();
    BOOST_TEST(names.size() == 2u);
    BOOST_TEST(names.count("creds.json") == 1u);
    const std::regex kept_name(R"(creds\.json\.corrupt-\d{8}T\d{6}Z(-\d+)?)");
    for (const auto& n : names) {
        if (n == "creds.json") continue;
        BOOST_TEST(std::regex_match(n, kept_name), n);
        BOOST_TEST(read_bytes(d.path(n)) == garbage);
    }
    // Saving over a valid file keeps nothing more.
    s.save(sample());
    BOOST_TEST(d.names().size() == 2u);
}

BOOST_AUTO_TEST_CASE(two_saves_over_two_corrupt_files_keep_both) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    write_bytes(p, "first corrupt file");
    s.save(sample());
    write_bytes(p, "second corrupt file");
    s.save(sample());

    std::set<std::string> kept;
    for (const auto& n : d.names())
        if (n.find(".corrupt-") != std::string::npos) kept.insert(read_bytes(d.path(n)));
    BOOST_TEST((kept == std::set<std::string>{"first corrupt file", "second corrupt file"}));
    BOOST_TEST(d.names().size() == 3u);
    BOOST_TEST((s.load() == sample()));
}

BOOST_AUTO_TEST_CASE(save_over_an_oversized_file_keeps_it) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    const std::string big(std::size_t{100} * 1024, 'x');
    write_bytes(p, big);
    sekuire::file_store(p).save(sample());
    bool found = false;
    for (const auto& n : d.names())
        if (n.find(".corrupt-") != std::string::npos) found = read_bytes(d.path(n)) == big;
    BOOST_TEST(found);
}

BOOST_AUTO_TEST_CASE(unwritable_directory_is_store_io) {
    temp_dir d;
    if (is_root()) {
        BOOST_TEST_MESSAGE("running as root, which ignores directory permissions: chmod 0500 check skipped");
    } else {
        const std::string p = d.path("creds.json");
        sekuire::file_store(p).save(sample());
        const std::string before = read_bytes(p);
        fs::permissions(d.dir(), fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
        auto c = sample();
        c.token_version = 99;
        error_code ec;
        sekuire::file_store s(p);
        s.save(c, ec);
        BOOST_TEST(ec == error_code(errc::store_io));
        BOOST_CHECK_EXCEPTION(s.save(c), sekuire::error,
                              [](const sekuire::error& e) { return has_code(e, errc::store_io); });
        fs::permissions(d.dir(), fs::perms::owner_all, fs::perm_options::replace);
        BOOST_TEST(read_bytes(p) == before);
        BOOST_TEST((s.load() == sample()));
        BOOST_TEST((d.names() == std::set<std::string>{"creds.json"}));
    }
    // A path through a regular file fails with ENOTDIR, whoever runs the test.
    const std::string regular = d.path("regular");
    write_bytes(regular, "not a directory");
    sekuire::file_store s(regular + "/creds.json");
    error_code ec;
    BOOST_CHECK_NO_THROW(s.save(sample(), ec));
    BOOST_TEST(ec == error_code(errc::store_io));
    BOOST_CHECK_EXCEPTION(s.save(sample()), sekuire::error,
                          [](const sekuire::error& e) { return has_code(e, errc::store_io); });
    BOOST_TEST(read_bytes(regular) == "not a directory");
}

BOOST_AUTO_TEST_CASE(failed_rename_removes_the_temporary_file) {
    temp_dir d;
    // A non-empty directory at the target path: the temporary file is written, the rename
    // fails.
    const std::string p = d.path("creds.json");
    fs::create_directory(p);
    write_bytes(p + "/inside", "x");
    error_code ec;
    sekuire::file_store(p).save(sample(), ec);
    BOOST_TEST(ec == error_code(errc::store_io));
    BOOST_TEST((d.names() == std::set<std::string>{"creds.json"}));
    BOOST_TEST(read_bytes(p + "/inside") == "x");
}

BOOST_AUTO_TEST_CASE(unreadable_paths_are_store_io) {
    temp_dir d;
    const std::string regular = d.path("regular");
    write_bytes(regular, "x");
    const std::string a_dir = d.path("a-dir");
    fs::create_directory(a_dir);
    std::vector<std::string> paths = {regular + "/creds.json", a_dir, ""};
    if (!is_root()) {
        const std::string locked = d.path("locked.json");
        write_bytes(locked, valid_doc);
        fs::permissions(locked, fs::perms::none, fs::perm_options::replace);
        paths.push_back(locked);
    }
    for (const auto& p : paths) {
        BOOST_TEST_CONTEXT(p) {
            sekuire::file_store s(p);
            error_code ec;
            std::optional<installation_credentials> got;
            BOOST_CHECK_NO_THROW(got = s.load(ec));
            BOOST_TEST(ec == error_code(errc::store_io));
            BOOST_TEST(!got.has_value());
            BOOST_CHECK_EXCEPTION(s.load(), sekuire::error,
                                  [](const sekuire::error& e) { return has_code(e, errc::store_io); });
        }
    }
}

BOOST_AUTO_TEST_CASE(copies_share) {
    temp_dir d;
    sekuire::file_store a(d.path("creds.json"));
    sekuire::file_store b = a;
    a.save(sample());
    BOOST_TEST((b.load() == sample()));
    auto c = sample();
    c.runtime_token = "runtime-SECRET-2";
    b.save(c);
    BOOST_TEST((a.load() == c));
    BOOST_TEST(&a.path() == &b.path());
    b.clear();
    BOOST_TEST(!a.load().has_value());
}

BOOST_AUTO_TEST_CASE(separate_objects_see_each_others_saves) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store a(p);
    sekuire::file_store b(p);
    auto c = sample();
    for (int i = 0; i < 10; ++i) {
        // Same sizes every time, so only the replacement tells the versions apart.
        c.runtime_token = "runtime-" + std::to_string(i);
        (i % 2 == 0 ? a : b).save(c);
        BOOST_TEST((a.load() == c));
        BOOST_TEST((b.load() == c));
    }
    b.clear();
    BOOST_TEST(!a.load().has_value());
}

BOOST_AUTO_TEST_CASE(cache_rereads_only_when_the_file_changes) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    const std::string other = d.path("other.json");
    auto first = sample();
    auto second = sample();
    second.runtime_token = "runtime-SECRET-9";  // same length as the first
    sekuire::file_store(p).save(first);
    sekuire::file_store(other).save(second);
    const std::string second_bytes = read_bytes(other);
    BOOST_REQUIRE(second_bytes.size() == read_bytes(p).size());

    // An old modification time, so that the cache is trusted.
    const std::int64_t old_sec = static_cast<std::int64_t>(std::time(nullptr)) - 3600;
    set_mtime(p, old_sec, 123456789);
    sekuire::file_store s(p);
    BOOST_TEST((s.load() == first));

    // Rewritten in place with the same size and the same mtime: stat() cannot see it, so
    // the cached value is returned (the file is not parsed again).
    write_bytes(p, second_bytes);
    set_mtime(p, old_sec, 123456789);
    BOOST_TEST((s.load() == first));

    // A change of the modification time alone (nanoseconds where the file system keeps
    // them) makes the store read the file again.
    set_mtime(p, old_sec, 123456790);
    struct stat sb {};
    BOOST_REQUIRE(::stat(p.c_str(), &sb) == 0);
#if defined(__APPLE__)
    const bool has_nanoseconds = sb.st_mtimespec.tv_nsec == 123456790;
#else
    const bool has_nanoseconds = sb.st_mtim.tv_nsec == 123456790;
#endif
    if (!has_nanoseconds) set_mtime(p, old_sec + 1, 0);
    BOOST_TEST((s.load() == second));
}

BOOST_AUTO_TEST_CASE(version_is_known_only_while_the_file_is_unchanged_since_it_was_read) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    BOOST_TEST(!s.version().has_value()); // no file
    s.save(sample());
    BOOST_TEST(!s.version().has_value()); // too recent to judge by stat()
    const std::int64_t old_sec = static_cast<std::int64_t>(std::time(nullptr)) - 3600;
    set_mtime(p, old_sec, 1000);
    BOOST_TEST(s.load().has_value());
    const auto v1 = s.version();
    BOOST_TEST_REQUIRE(v1.has_value());
    BOOST_TEST((s.version() == v1)); // asking again reads nothing and changes nothing
    sekuire::file_store copy = s;
    BOOST_TEST((copy.version() == v1));

    // Another writer (another handle, another process) replaces the file: unknown.
    auto other = sample();
    other.runtime_token = "runtime-SECRET-2";
    sekuire::file_store(p).save(other);
    BOOST_TEST(!s.version().has_value());
    set_mtime(p, old_sec, 2000);
    BOOST_TEST(!s.version().has_value()); // still not what this handle last read
    BOOST_TEST((s.load() == other));
    const auto v2 = s.version();
    BOOST_TEST_REQUIRE(v2.has_value());
    BOOST_TEST((*v2 != *v1));

    // Made writable by others: not trusted, unknown (load() says why).
    ::chmod(p.c_str(), 0622);
    BOOST_TEST(!s.version().has_value());
    ::chmod(p.c_str(), 0600);
    // Removed: unknown.
    std::error_code rm;
    fs::remove(p, rm);
    BOOST_TEST(!s.version().has_value());
}

BOOST_AUTO_TEST_CASE(recently_modified_file_is_read_again) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    const std::string other = d.path("other.json");
    auto second = sample();
    second.runtime_token = "runtime-SECRET-9";
    sekuire::file_store(p).save(sample());
    sekuire::file_store(other).save(second);
    struct stat sb {};
    BOOST_REQUIRE(::stat(p.c_str(), &sb) == 0);
#if defined(__APPLE__)
    const long nsec = sb.st_mtimespec.tv_nsec;
#else
    const long nsec = sb.st_mtim.tv_nsec;
#endif
    const std::int64_t now_sec = static_cast<std::int64_t>(std::time(nullptr));
    set_mtime(p, now_sec, nsec);
    sekuire::file_store s(p);
    BOOST_TEST((s.load() == sample()));
    // Same size, same (recent) mtime: a stat() match is not trusted for a fresh file.
    write_bytes(p, read_bytes(other));
    set_mtime(p, now_sec, nsec);
    BOOST_TEST((s.load() == second));
}

BOOST_AUTO_TEST_CASE(clear_removes_the_file) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    s.save(sample());
    error_code ec = errc::timeout;
    s.clear(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(d.names().empty());
    BOOST_TEST(!s.load().has_value());
    BOOST_TEST(!sekuire::file_store(p).load().has_value());
    // A missing file is fine.
    ec = errc::timeout;
    s.clear(ec);
    BOOST_TEST(!ec);
    BOOST_CHECK_NO_THROW(s.clear());
    // A path through a regular file cannot be cleared.
    write_bytes(d.path("regular"), "x");
    sekuire::file_store bad(d.path("regular") + "/creds.json");
    bad.clear(ec);
    BOOST_TEST(ec == error_code(errc::store_io));
    BOOST_CHECK_EXCEPTION(bad.clear(), sekuire::error,
                          [](const sekuire::error& e) { return has_code(e, errc::store_io); });
}

BOOST_AUTO_TEST_CASE(lock_refresh_excludes_another_object) {
    temp_dir d;
    sekuire::file_store a(d.path("creds.json"));
    sekuire::file_store b(d.path("creds.json"));
    check_excludes(a, b);
    // A differently spelled path to the same file.
    sekuire::file_store c(d.path(".") + "/creds.json");
    check_excludes(c, a);
    // Copies exclude each other too.
    sekuire::file_store copy = a;
    check_excludes(copy, a);
}

BOOST_AUTO_TEST_CASE(lock_file_is_0600_and_flocked) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    {
        umask_guard g(0);
        s.lock_refresh();
    }
    BOOST_TEST(mode_of(p + ".lock") == 0600u);
    // Another open file description (as another process would have) cannot take it.
    const int fd = ::open((p + ".lock").c_str(), O_RDONLY | O_CLOEXEC);
    BOOST_REQUIRE(fd >= 0);
    errno = 0;
    BOOST_TEST(::flock(fd, LOCK_EX | LOCK_NB) != 0);
    BOOST_TEST(errno == EWOULDBLOCK);
    s.unlock_refresh();
    BOOST_TEST(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    // Held by someone else: lock_refresh() waits for it (the store counts the wait).
    namespace cf = sekuire::detail::cred_file;
    const auto waits_before = cf::wait_count(&cf::lock_waits::on_file);
    std::promise<void> done;
    auto done_f = done.get_future();
    std::thread t([&] {
        s.lock_refresh();
        done.set_value();
        s.unlock_refresh();
    });
    BOOST_TEST(cf::wait_for_waits(&cf::lock_waits::on_file, waits_before + 1, std::chrono::seconds(10)));
    BOOST_TEST((done_f.wait_for(std::chrono::seconds(0)) == std::future_status::timeout));
    ::flock(fd, LOCK_UN);
    BOOST_TEST((done_f.wait_for(std::chrono::seconds(10)) == std::future_status::ready));
    t.join();
    ::close(fd);
    // The lock file stays; the credentials file was never created.
    BOOST_TEST((d.names() == std::set<std::string>{"creds.json.lock"}));
}

BOOST_AUTO_TEST_CASE(lock_falls_back_to_the_in_process_lock) {
    temp_dir d;
    // No lock file can be created under a regular file; the in-process lock still
    // excludes another object naming the same file, however spelled.
    write_bytes(d.path("regular"), "x");
    sekuire::file_store a(d.path("regular") + "/creds.json");
    sekuire::file_store b(d.path("regular") + "/../regular/./creds.json");
    check_excludes(a, b);
    BOOST_TEST(read_bytes(d.path("regular")) == "x");
    if (!is_root()) {
        temp_dir ro;
        fs::permissions(ro.dir(), fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
        sekuire::file_store x(ro.path("creds.json"));
        sekuire::file_store y(ro.path("creds.json"));
        check_excludes(x, y);
        fs::permissions(ro.dir(), fs::perms::owner_all, fs::perm_options::replace);
        BOOST_TEST(ro.names().empty());
    }
}

BOOST_AUTO_TEST_CASE(unlock_may_come_from_another_copy_and_thread) {
    temp_dir d;
    sekuire::file_store a(d.path("creds.json"));
    sekuire::file_store b = a;
    a.lock_refresh();
    std::thread t([b]() mutable { b.unlock_refresh(); });
    t.join();
    // The lock is free again: a refresh_lock scope takes and releases it.
    {
        sekuire::refresh_lock<sekuire::file_store> guard(a);
    }
    sekuire::file_store other(d.path("creds.json"));
    check_excludes(a, other);
}

// ---- trust (issue 10, item 6) ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_symbolic_link_at_the_path_is_refused_not_followed) {
    temp_dir d;
    const std::string target = d.path("planted.json");
    write_bytes(target, valid_doc);
    const std::string p = d.path("creds.json");
    fs::create_symlink(target, p);
    sekuire::file_store s(p);
    error_code ec;
    std::optional<installation_credentials> got;
    BOOST_CHECK_NO_THROW(got = s.load(ec));
    BOOST_TEST(ec == error_code(errc::store_insecure));
    BOOST_TEST(!got.has_value());
    BOOST_CHECK_EXCEPTION(s.load(), sekuire::error, [](const sekuire::error& e) {
        return has_code(e, errc::store_insecure) && std::string(e.what()).find("symbolic link") != std::string::npos;
    });
    // A save replaces the link by a file of our own; the link's target is untouched.
    s.save(sample());
    BOOST_TEST(fs::is_regular_file(fs::symlink_status(p)));
    BOOST_TEST(read_bytes(target) == valid_doc);
    BOOST_TEST((s.load() == sample()));
}

BOOST_AUTO_TEST_CASE(a_file_writable_by_group_or_others_is_refused) {
    for (const auto extra : {fs::perms::group_write, fs::perms::others_write}) {
        temp_dir d;
        const std::string p = d.path("creds.json");
        write_bytes(p, valid_doc);
        fs::permissions(p, extra, fs::perm_options::add);
        sekuire::file_store s(p);
        error_code ec;
        BOOST_TEST(!s.load(ec).has_value());
        BOOST_TEST(ec == error_code(errc::store_insecure));
        BOOST_CHECK_EXCEPTION(s.load(), sekuire::error, [](const sekuire::error& e) {
            return has_code(e, errc::store_insecure) && std::string(e.what()).find("writable by group or others") != std::string::npos;
        });
    }
}

BOOST_AUTO_TEST_CASE(a_file_that_turns_insecure_after_a_cached_load_is_refused) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    s.save(sample());
    BOOST_TEST((s.load() == sample()));
    fs::permissions(p, fs::perms::others_write, fs::perm_options::add);
    error_code ec;
    BOOST_TEST(!s.load(ec).has_value());
    BOOST_TEST(ec == error_code(errc::store_insecure));
}

BOOST_AUTO_TEST_CASE(a_file_owned_by_another_user_is_refused) {
    if (!is_root()) {
        BOOST_TEST_MESSAGE("skipped: giving a file to another user needs root");
        return;
    }
    temp_dir d;
    const std::string p = d.path("creds.json");
    write_bytes(p, valid_doc);
    BOOST_REQUIRE(::chown(p.c_str(), 65534, 65534) == 0); // nobody
    sekuire::file_store s(p);
    error_code ec;
    BOOST_TEST(!s.load(ec).has_value());
    BOOST_TEST(ec == error_code(errc::store_insecure));
    BOOST_CHECK_EXCEPTION(s.load(), sekuire::error, [](const sekuire::error& e) {
        return has_code(e, errc::store_insecure) && std::string(e.what()).find("owned by another user") != std::string::npos;
    });
    // A lock file of another user's is not used either.
    const std::string lock = p + ".lock";
    write_bytes(lock, "");
    BOOST_REQUIRE(::chown(lock.c_str(), 65534, 65534) == 0);
    BOOST_TEST(!s.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_insecure));
}

BOOST_AUTO_TEST_CASE(a_symbolic_link_as_the_lock_file_is_refused) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    write_bytes(d.path("elsewhere"), "");
    fs::create_symlink(d.path("elsewhere"), p + ".lock");
    sekuire::file_store s(p);
    error_code ec;
    BOOST_TEST(!s.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_insecure));
    // Refused, the lock is not held in process either.
    sekuire::file_store other(p);
    BOOST_TEST(!other.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_insecure));
}

// ---- the lock never waits (issue 10, item 1) ---------------------------------------------

BOOST_AUTO_TEST_CASE(try_lock_refresh_never_waits_for_another_process) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    error_code ec;
    BOOST_TEST(s.try_lock_refresh(ec));
    BOOST_TEST(!ec);
    s.unlock_refresh();
    // Another open file description (as another process, or `flock F.lock sleep 120`).
    const int fd = ::open((p + ".lock").c_str(), O_RDONLY | O_CLOEXEC);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    BOOST_TEST(!s.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_locked));
    BOOST_TEST(sekuire::is_transient(ec));
    // The in-process part was released: another object is refused by the file, not by us.
    sekuire::file_store other(p);
    BOOST_TEST(!other.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_locked));
    ::flock(fd, LOCK_UN);
    ::close(fd);
    BOOST_TEST(s.try_lock_refresh(ec));
    // Held in this process: the other object is refused at once.
    BOOST_TEST(!other.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_locked));
    s.unlock_refresh();
    BOOST_TEST(other.try_lock_refresh(ec));
    other.unlock_refresh();
}

BOOST_AUTO_TEST_CASE(type_erased_store_forwards_the_optional_members) {
    temp_dir d;
    sekuire::file_store f(d.path("creds.json"));
    sekuire::credential_store c(f);
    error_code ec;
    BOOST_TEST(c.describe() == "file " + d.path("creds.json"));
    BOOST_TEST(c.try_lock_refresh(ec));
    BOOST_TEST(!f.try_lock_refresh(ec));
    BOOST_TEST(ec == error_code(errc::store_locked));
    c.unlock_refresh();
    c.check_writable(ec);
    BOOST_TEST(!ec);
    sekuire::credential_store missing(sekuire::file_store(d.path("no-such-dir/creds.json")));
    missing.check_writable(ec);
    BOOST_TEST(ec == error_code(errc::store_io));
}

// ---- crash leftovers, writability (issue 10, items 6 and 8) ------------------------------

BOOST_AUTO_TEST_CASE(temporary_files_of_a_crashed_writer_are_removed_on_the_next_save) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    // A process id that is surely gone: a child that has exited and was reaped.
    const pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    int status = 0;
    BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
    const std::string dead = "creds.json.tmp-" + std::to_string(child) + "-3";
    const std::string ours = "creds.json.tmp-" + std::to_string(::getpid()) + "-999999";
    const std::string live_old = "creds.json.tmp-1-5"; // pid 1 lives, but the file is hours old
    const std::string live_new = "creds.json.tmp-1-6";
    const std::string unrelated = "other.json.tmp-" + std::to_string(child) + "-3";
    for (const auto& n : {dead, ours, live_old, live_new, unrelated}) write_bytes(d.path(n), "partial");
    const auto two_hours_ago = fs::file_time_type::clock::now() - std::chrono::hours(2);
    fs::last_write_time(d.path(live_old), two_hours_ago);
    sekuire::file_store s(p);
    s.save(sample());
    BOOST_TEST((d.names() == std::set<std::string>{"creds.json", ours, live_new, unrelated}));
}

BOOST_AUTO_TEST_CASE(check_writable_probes_without_touching_the_credentials) {
    temp_dir d;
    const std::string p = d.path("creds.json");
    sekuire::file_store s(p);
    error_code ec;
    s.check_writable(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(d.names().empty());
    s.save(sample());
    s.check_writable(ec);
    BOOST_TEST(!ec);
    BOOST_TEST((d.names() == std::set<std::string>{"creds.json"}));
    BOOST_TEST((s.load() == sample()));
    sekuire::file_store nowhere(d.path("missing/creds.json"));
    nowhere.check_writable(ec);
    BOOST_TEST(ec == error_code(errc::store_io));
    if (!is_root()) {
        temp_dir ro;
        fs::permissions(ro.dir(), fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
        sekuire::file_store x(ro.path("creds.json"));
        x.check_writable(ec);
        BOOST_TEST(ec == error_code(errc::store_io));
    }
}

BOOST_AUTO_TEST_CASE(invalid_paths_are_store_io) {
    temp_dir d;
    for (const std::string& p : {std::string(), d.path("dir") + "/", d.path(std::string("a\0b", 3))}) {
        sekuire::file_store s(p);
        error_code ec;
        BOOST_CHECK_NO_THROW(s.load(ec));
        BOOST_TEST(ec == error_code(errc::store_io));
        s.save(sample(), ec);
        BOOST_TEST(ec == error_code(errc::store_io));
        s.clear(ec);
        BOOST_TEST(ec == error_code(errc::store_io));
        // The refresh lock still works, in process only.
        sekuire::file_store t(p);
        check_excludes(s, t);
    }
    BOOST_TEST(d.names().empty());
}

BOOST_AUTO_TEST_SUITE_END()
