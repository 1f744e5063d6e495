// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/credential_store.hpp>

#include <sekuire/file_store.hpp>

#include <boost/test/unit_test.hpp>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using sekuire::errc;
using sekuire::error_code;
using sekuire::installation_credentials;

installation_credentials make_creds(int n) {
    installation_credentials c;
    c.installation_id = "inst-" + std::to_string(n);
    c.refresh_token = "refresh-" + std::to_string(n);
    c.runtime_token = "runtime-" + std::to_string(n);
    c.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::seconds(1770120300 + n));
    c.token_version = n;
    return c;
}

// A fresh directory under the system temp dir, removed at the end.
class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sekuire-cred-store-XXXXXX").string();
        if (::mkdtemp(&pattern[0]) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

private:
    std::filesystem::path dir_;
};

// Records the refresh lock calls.
struct counting_store {
    std::optional<installation_credentials> load(error_code& ec) {
        ec = {};
        return std::nullopt;
    }
    void save(const installation_credentials&, error_code& ec) { ec = {}; }
    void clear(error_code& ec) { ec = {}; }
    void lock_refresh() { ++locks; }
    void unlock_refresh() { ++unlocks; }
    int locks = 0;
    int unlocks = 0;
};

// Types that each miss one requirement.
struct no_load {
    void save(const installation_credentials&, error_code&) {}
    void clear(error_code&) {}
    void lock_refresh() {}
    void unlock_refresh() {}
};
struct load_returns_wrong_type {
    installation_credentials load(error_code&) { return {}; }
    void save(const installation_credentials&, error_code&) {}
    void clear(error_code&) {}
    void lock_refresh() {}
    void unlock_refresh() {}
};
struct load_without_error_code {
    std::optional<installation_credentials> load() { return std::nullopt; }
    void save(const installation_credentials&, error_code&) {}
    void clear(error_code&) {}
    void lock_refresh() {}
    void unlock_refresh() {}
};
struct no_save {
    std::optional<installation_credentials> load(error_code&) { return std::nullopt; }
    void clear(error_code&) {}
    void lock_refresh() {}
    void unlock_refresh() {}
};
struct no_clear {
    std::optional<installation_credentials> load(error_code&) { return std::nullopt; }
    void save(const installation_credentials&, error_code&) {}
    void lock_refresh() {}
    void unlock_refresh() {}
};
struct no_lock_refresh {
    std::optional<installation_credentials> load(error_code&) { return std::nullopt; }
    void save(const installation_credentials&, error_code&) {}
    void clear(error_code&) {}
    void unlock_refresh() {}
};
struct no_unlock_refresh {
    std::optional<installation_credentials> load(error_code&) { return std::nullopt; }
    void save(const installation_credentials&, error_code&) {}
    void clear(error_code&) {}
    void lock_refresh() {}
};
struct not_copyable : counting_store {
    not_copyable() = default;
    not_copyable(const not_copyable&) = delete;
};

// `holder` takes the refresh lock; a thread then asks `contender` for it and must get it
// only after `holder` released it: when it gets it, the holder has already marked the
// release. (No sleep: a contender that got in early would see `released` false.)
template <class Holder, class Contender>
void check_excludes(Holder& holder, Contender& contender) {
    holder.lock_refresh();
    std::atomic<bool> released{false};
    std::promise<void> started;
    std::promise<bool> acquired;
    auto started_f = started.get_future();
    auto acquired_f = acquired.get_future();
    std::thread t([&] {
        started.set_value();
        contender.lock_refresh();
        acquired.set_value(released.load());
        contender.unlock_refresh();
    });
    BOOST_TEST((started_f.wait_for(std::chrono::seconds(10)) == std::future_status::ready));
    released = true;
    holder.unlock_refresh();
    const bool got = acquired_f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    BOOST_TEST(got);
    if (got) BOOST_TEST(acquired_f.get());
    t.join();
}

} // namespace

static_assert(sekuire::is_credential_store<sekuire::memory_store>::value, "");
static_assert(sekuire::is_credential_store<sekuire::credential_store>::value, "");
static_assert(sekuire::is_credential_store<sekuire::file_store>::value, "");
static_assert(sekuire::is_credential_store<counting_store>::value, "");
static_assert(sekuire::check_credential_store<sekuire::memory_store>::value, "");
static_assert(sekuire::check_credential_store<sekuire::credential_store>::value, "");
static_assert(sekuire::check_credential_store<sekuire::file_store>::value, "");
static_assert(!sekuire::is_credential_store<no_load>::value, "");
static_assert(!sekuire::is_credential_store<load_returns_wrong_type>::value, "");
static_assert(!sekuire::is_credential_store<load_without_error_code>::value, "");
static_assert(!sekuire::is_credential_store<no_save>::value, "");
static_assert(!sekuire::is_credential_store<no_clear>::value, "");
static_assert(!sekuire::is_credential_store<no_lock_refresh>::value, "");
static_assert(!sekuire::is_credential_store<no_unlock_refresh>::value, "");
static_assert(!sekuire::is_credential_store<not_copyable>::value, "");
static_assert(!sekuire::is_credential_store<int>::value, "");
// The type-erased handle accepts exactly the stores.
static_assert(std::is_convertible<sekuire::memory_store, sekuire::credential_store>::value, "");
static_assert(std::is_convertible<sekuire::file_store, sekuire::credential_store>::value, "");
static_assert(!std::is_convertible<no_save, sekuire::credential_store>::value, "");
#if SEKUIRE_HAS_CONCEPTS
static_assert(sekuire::credential_store_policy<sekuire::memory_store>, "");
static_assert(sekuire::credential_store_policy<sekuire::file_store>, "");
static_assert(!sekuire::credential_store_policy<no_clear>, "");
#endif

BOOST_AUTO_TEST_SUITE(credential_store)

BOOST_AUTO_TEST_CASE(can_refresh_needs_id_and_refresh_token) {
    installation_credentials c;
    BOOST_TEST(!c.can_refresh());
    c.installation_id = "inst";
    BOOST_TEST(!c.can_refresh());
    c.refresh_token = "rt";
    BOOST_TEST(c.can_refresh());
    c.installation_id.clear();
    BOOST_TEST(!c.can_refresh());
    // The runtime token plays no part.
    c = make_creds(1);
    c.runtime_token.clear();
    c.runtime_token_expires_at.reset();
    BOOST_TEST(c.can_refresh());
}

BOOST_AUTO_TEST_CASE(equality_compares_every_field) {
    const auto a = make_creds(1);
    BOOST_TEST((a == make_creds(1)));
    BOOST_TEST(!(a != make_creds(1)));
    std::vector<installation_credentials> changed(6, a);
    changed[0].installation_id += "x";
    changed[1].refresh_token += "x";
    changed[2].runtime_token += "x";
    changed[3].runtime_token_expires_at = *a.runtime_token_expires_at + std::chrono::milliseconds(1);
    changed[4].runtime_token_expires_at.reset();
    changed[5].token_version += 1;
    for (const auto& c : changed) {
        BOOST_TEST(!(a == c));
        BOOST_TEST((a != c));
    }
    BOOST_TEST((installation_credentials{} == installation_credentials{}));
    BOOST_TEST(installation_credentials{}.token_version == 0);
}

BOOST_AUTO_TEST_CASE(default_memory_store_is_empty) {
    sekuire::memory_store s;
    error_code ec = errc::timeout;
    BOOST_TEST(!s.load(ec).has_value());
    BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(memory_store_load_save_clear) {
    sekuire::memory_store s;
    error_code ec = errc::timeout;
    s.save(make_creds(1), ec);
    BOOST_TEST(!ec);
    ec = errc::timeout;
    auto got = s.load(ec);
    BOOST_TEST(!ec);
    BOOST_TEST((got == make_creds(1)));
    s.save(make_creds(2), ec);
    BOOST_TEST((s.load(ec) == make_creds(2)));
    ec = errc::timeout;
    s.clear(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(!s.load(ec).has_value());
    // Clearing an empty store is fine.
    s.clear(ec);
    BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(memory_store_initial_value) {
    sekuire::memory_store s(make_creds(3));
    error_code ec;
    BOOST_TEST((s.load(ec) == make_creds(3)));
}

BOOST_AUTO_TEST_CASE(memory_store_copies_share) {
    sekuire::memory_store a;
    sekuire::memory_store b = a;
    error_code ec;
    a.save(make_creds(1), ec);
    BOOST_TEST((b.load(ec) == make_creds(1)));
    sekuire::memory_store c;
    c = b;
    c.save(make_creds(2), ec);
    BOOST_TEST((a.load(ec) == make_creds(2)));
    a.clear(ec);
    BOOST_TEST(!c.load(ec).has_value());
    // A separately constructed store is independent.
    sekuire::memory_store other;
    other.save(make_creds(9), ec);
    BOOST_TEST(!a.load(ec).has_value());
}

BOOST_AUTO_TEST_CASE(type_erased_store_shares_with_memory_store) {
    sekuire::memory_store ms;
    sekuire::credential_store cs(ms);
    error_code ec;
    cs.save(make_creds(1), ec);
    BOOST_TEST(!ec);
    BOOST_TEST((ms.load(ec) == make_creds(1)));
    ms.save(make_creds(2), ec);
    BOOST_TEST((cs.load(ec) == make_creds(2)));
    sekuire::credential_store copy = cs;
    copy.clear(ec);
    BOOST_TEST(!ms.load(ec).has_value());
    BOOST_TEST(!cs.load(ec).has_value());
}

BOOST_AUTO_TEST_CASE(default_type_erased_store_is_an_empty_shared_memory_store) {
    sekuire::credential_store a;
    sekuire::credential_store b = a;
    error_code ec = errc::timeout;
    BOOST_TEST(!a.load(ec).has_value());
    BOOST_TEST(!ec);
    a.save(make_creds(4), ec);
    BOOST_TEST((b.load(ec) == make_creds(4)));
    sekuire::credential_store other;
    BOOST_TEST(!other.load(ec).has_value());
}

BOOST_AUTO_TEST_CASE(type_erased_store_shares_with_file_store) {
    temp_dir d;
    sekuire::file_store fs(d.path("creds.json"));
    sekuire::credential_store cs(fs);
    error_code ec;
    cs.save(make_creds(1), ec);
    BOOST_TEST(!ec);
    BOOST_TEST((fs.load(ec) == make_creds(1)));
    BOOST_TEST(!ec);
    fs.save(make_creds(2), ec);
    BOOST_TEST((cs.load(ec) == make_creds(2)));
    // Errors pass through.
    sekuire::credential_store bad(sekuire::file_store(d.path("creds.json") + "/x"));
    bad.save(make_creds(3), ec);
    BOOST_TEST(ec == error_code(errc::store_io));
    cs.clear(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(!fs.load(ec).has_value());
    // The refresh lock is shared with the original too.
    check_excludes(cs, fs);
}

BOOST_AUTO_TEST_CASE(refresh_lock_locks_and_unlocks) {
    counting_store s;
    {
        sekuire::refresh_lock<counting_store> guard(s);
        BOOST_TEST(s.locks == 1);
        BOOST_TEST(s.unlocks == 0);
    }
    BOOST_TEST(s.locks == 1);
    BOOST_TEST(s.unlocks == 1);
    static_assert(!std::is_copy_constructible<sekuire::refresh_lock<counting_store>>::value, "");
}

BOOST_AUTO_TEST_CASE(refresh_lock_excludes_copies) {
    sekuire::memory_store a;
    sekuire::memory_store b = a;
    {
        sekuire::refresh_lock<sekuire::memory_store> guard(a);
    }
    // Released: a thread can take it again, and while held it excludes the copy.
    check_excludes(a, b);
    sekuire::credential_store ca(a);
    sekuire::credential_store cb = ca;
    check_excludes(ca, cb);
}

BOOST_AUTO_TEST_CASE(concurrent_save_and_load_stay_consistent) {
    sekuire::memory_store store;
    constexpr int threads = 4;
    constexpr int iterations = 2000;
    std::atomic<int> torn{0};
    std::atomic<int> errors{0};
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([store, t, &torn, &errors]() mutable {
            error_code ec;
            for (int i = 0; i < iterations; ++i) {
                store.save(make_creds(t * iterations + i), ec);
                if (ec) ++errors;
                const auto got = store.load(ec);
                if (ec || !got) {
                    ++errors;
                    continue;
                }
                // Every field must come from the same save.
                if (*got != make_creds(static_cast<int>(got->token_version))) ++torn;
            }
        });
    }
    for (auto& th : pool) th.join();
    BOOST_TEST(torn.load() == 0);
    BOOST_TEST(errors.load() == 0);
    error_code ec;
    const auto last = store.load(ec);
    BOOST_REQUIRE(last.has_value());
    BOOST_TEST((*last == make_creds(static_cast<int>(last->token_version))));
}

BOOST_AUTO_TEST_CASE(memory_store_version_changes_with_every_write_through_any_copy) {
    sekuire::memory_store a;
    sekuire::memory_store b = a;
    const auto v0 = a.version();
    BOOST_TEST_REQUIRE(v0.has_value());
    sekuire::error_code ec;
    sekuire::installation_credentials c;
    c.installation_id = "inst_v";
    c.runtime_token = "srt_v";
    b.save(c, ec);
    const auto v1 = a.version();
    BOOST_TEST((v1 != v0));
    BOOST_TEST((b.version() == v1));
    a.clear(ec);
    BOOST_TEST((b.version() != v1));
    // Loads change nothing.
    const auto v2 = a.version();
    (void)a.load(ec);
    BOOST_TEST((a.version() == v2));
    // The type-erased handle passes it on; a store without version() has none.
    sekuire::credential_store erased(a);
    BOOST_TEST((erased.version() == v2));
    b.save(c, ec);
    BOOST_TEST((erased.version() != v2));
    BOOST_TEST(!sekuire::detail::store_version(counting_store{}).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
