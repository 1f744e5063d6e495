// SPDX-License-Identifier: MIT
// The Beacon against the mock backend, over real sockets on 127.0.0.1.
//
// The beacon (`basic_beacon` over `httplib_transport`) and the backend share one
// `testing::fake_clock`: the tests move time and step the beacon, so heartbeats, leases
// and token lifetimes are exercised without waiting. Real time passes only for network
// round trips and for the faults that are real-time by nature (delays, timeouts).

#include <sekuire/basic_beacon.hpp>
#include <sekuire/beacon.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/file_store.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fixed_probe.hpp>
#include <sekuire/testing/mock_backend.hpp>
#include <sekuire/version.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sekuire::beacon_state;
using sekuire::errc;
using sekuire::installation_credentials;

using fake_backend = st::basic_mock_backend<st::fake_clock>;
template <class Store>
using beacon_on = sekuire::basic_beacon<sekuire::httplib_transport, st::fake_clock, Store, st::fixed_probe>;
using mem_beacon = beacon_on<sekuire::memory_store>;

const std::string agent = "agent-integration";
const std::vector<std::string> capabilities{"summarize", "classify"};

std::int64_t ms_since_start(sekuire::steady_time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// A temporary directory, removed with everything in it at the end.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string templ = (fs::temp_directory_path() / "sekuire-beacon-mock-XXXXXX").string();
        if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
        path = templ;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A file_store that reports each save to a callback first (to observe when the beacon
// persists credentials relative to the requests it sends). Copies share the callback.
class watched_store {
public:
    using hook = std::function<void(const installation_credentials&)>;
    watched_store(sekuire::file_store inner, hook on_save)
        : inner_(std::move(inner)), on_save_(std::make_shared<hook>(std::move(on_save))) {}
    std::optional<installation_credentials> load(sekuire::error_code& ec) const { return inner_.load(ec); }
    void save(const installation_credentials& c, sekuire::error_code& ec) {
        if (*on_save_) (*on_save_)(c);
        inner_.save(c, ec);
    }
    void clear(sekuire::error_code& ec) { inner_.clear(ec); }
    void lock_refresh() { inner_.lock_refresh(); }
    void unlock_refresh() { inner_.unlock_refresh(); }

private:
    sekuire::file_store inner_;
    std::shared_ptr<hook> on_save_;
};

// What a beacon's callbacks saw (they run on the stepping thread: the test's).
struct observed {
    std::vector<proto::command> commands;
    std::vector<sekuire::revocation_info> revocations;
    std::vector<std::string> logs;
};

// A mock backend on a fake clock with a fresh install token, and beacons built against it.
// Beacons are declared in the test body, so they are gone (and their connections closed)
// before the backend stops.
struct env {
    st::fake_clock clock;
    fake_backend backend;
    std::string install_token;
    observed seen;

    explicit env(st::mock_backend_options o = {}) : backend(short_keep_alive(std::move(o)), clock) {
        backend.start();
        install_token = backend.create_install_token();
    }
    env(const env&) = delete;
    env& operator=(const env&) = delete;
    ~env() { backend.stop(); }

    static st::mock_backend_options short_keep_alive(st::mock_backend_options o) {
        o.keep_alive_timeout = 1s;
        return o;
    }

    /// Options of a beacon: 60 s heartbeats, fixed metrics, `jitter` as every random draw
    /// (0: beats exactly on the interval; 0.5: backoff delays are half their bound).
    sekuire::beacon_options options(double jitter = 0.5) {
        sekuire::beacon_options o;
        o.startup_jitter = std::chrono::milliseconds(0);
        o.api_base_url = backend.url();
        o.agent_id = agent;
        o.install_token = install_token;
        o.capabilities = capabilities;
        o.heartbeat_interval = 60s;
        o.request_timeout = 3000ms;
        o.stop_timeout = 2000ms;
        o.random = [jitter] { return jitter; };
        o.metrics = [] {
            proto::heartbeat_metrics m;
            m.requests_handled = 1500;
            m.errors = 2;
            m.avg_latency_ms = 145;
            return m;
        };
        o.logger = [this](sekuire::log_level, std::string_view m) { seen.logs.emplace_back(m); };
        o.on_command = [this](const proto::command& c) { seen.commands.push_back(c); };
        o.on_revoked = [this](const sekuire::revocation_info& r) { seen.revocations.push_back(r); };
        return o;
    }

    template <class Store = sekuire::memory_store>
    std::unique_ptr<beacon_on<Store>> make(sekuire::beacon_options o, Store store = Store()) {
        sekuire::httplib_transport transport(backend.url(), sekuire::transport_options{});
        return std::make_unique<beacon_on<Store>>(std::move(o), std::move(transport), clock, std::move(store),
                                                  st::fixed_probe{});
    }

    /// Steps `b` for `d` of fake time. A beacon that keeps asking to run again without
    /// time moving (a storm) fails the test with `runaway_step_error`.
    template <class Beacon>
    std::size_t run(Beacon& b, std::chrono::milliseconds d, std::size_t max_steps = 3000) {
        return st::run_for(clock, d, [&] { return b.step(); }, max_steps);
    }

    /// Steps `b`, moving the clock to each deadline it asks for, until `done()` holds after
    /// a step; returns that step's steady time. Fails after `limit` of fake time.
    template <class Beacon, class Pred>
    sekuire::steady_time_point step_until(Beacon& b, Pred done, std::chrono::milliseconds limit) {
        const auto end = clock.steady_now() + limit;
        for (int i = 0; i < 3000; ++i) {
            const auto next = b.step();
            if (done()) return clock.steady_now();
            if (next > end) break;
            clock.advance_to(next);
        }
        BOOST_FAIL("the condition did not come true in time");
        return {};
    }

    std::size_t heartbeats(const std::string& id) const { return backend.request_count(proto::path::heartbeat(id)); }
    std::size_t refreshes(const std::string& id) const { return backend.request_count(proto::path::refresh(id)); }
    std::size_t bootstraps() const { return backend.request_count(proto::path::bootstrap); }
    std::size_t recovers() const { return backend.request_count(proto::path::recover); }

    st::mock_installation_info installation(const std::string& id) const {
        auto i = backend.installation(id);
        BOOST_REQUIRE_MESSAGE(i, "the backend does not know " << id);
        return *i;
    }

    /// Steps a new beacon to connected; returns its installation id.
    template <class Beacon>
    std::string connect(Beacon& b) {
        b.step();
        const auto s = b.get_status();
        BOOST_REQUIRE_MESSAGE(s.state == beacon_state::connected,
                              "not connected: " << sekuire::to_string(s.state) << " " << s.last_error);
        return s.installation_id;
    }

    /// A heartbeat fault on installation `id`.
    st::mock_fault heartbeat_fault(const std::string& id, std::size_t count) const {
        st::mock_fault f;
        f.path_prefix = proto::path::heartbeat(id);
        f.count = count;
        return f;
    }
};

// Names, so that failed checks print them.
std::string name(st::mock_installation_state s) { return st::to_string(s); }
std::string name(beacon_state s) { return sekuire::to_string(s); }
std::string name(const std::optional<proto::heartbeat_status>& s) { return s ? proto::to_string(*s) : "(none)"; }

bool contains(const std::string& haystack, const std::string& needle) {
    return !needle.empty() && haystack.find(needle) != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_SUITE(beacon_mock)

BOOST_AUTO_TEST_CASE(whole_lifecycle_as_the_backend_sees_it) {
    env e;
    auto b = e.make(e.options(0.0)); // no jitter: a beat exactly every 60 s
    const auto t0 = e.clock.wall_now();

    // Bootstrap and registration heartbeat in one step.
    const std::string id = e.connect(*b);
    BOOST_TEST(e.bootstraps() == 1u);
    BOOST_TEST(e.heartbeats(id) == 1u);
    BOOST_TEST(b->is_connected());
    BOOST_REQUIRE(e.backend.installations().size() == 1u);
    BOOST_TEST(name(e.installation(id).state) == "healthy");
    BOOST_TEST(name(e.installation(id).last_status) == "healthy");
    BOOST_TEST(e.installation(id).sequence == 1);

    // Periodic heartbeats: one per interval, counted by the backend.
    e.run(*b, 10min);
    BOOST_TEST(e.heartbeats(id) == 11u);
    BOOST_TEST(e.refreshes(id) == 0u);
    BOOST_TEST(e.bootstraps() == 1u);

    const auto in = e.installation(id);
    BOOST_TEST(in.agent_id == agent);
    BOOST_TEST(in.workspace_id == std::string(st::mock_default_workspace));
    BOOST_TEST(name(in.state) == "healthy");
    BOOST_TEST(name(in.last_status) == "healthy");
    BOOST_TEST(in.sequence == 11);
    BOOST_TEST(in.uptime_seconds == 600);
    BOOST_REQUIRE(in.last_heartbeat_at);
    BOOST_TEST((*in.last_heartbeat_at == t0 + 10min));
    BOOST_TEST((in.lease_expires_at == t0 + 10min + 180s));
    BOOST_TEST((in.platform == st::fixed_probe{}.probe()));
    BOOST_TEST(in.capabilities == capabilities, boost::test_tools::per_element());
    BOOST_TEST(in.metrics.requests_handled == 1500);
    BOOST_TEST(in.metrics.errors == 2);
    BOOST_TEST(in.metrics.avg_latency_ms == 145);
    BOOST_TEST(in.sdk.name == std::string(sekuire::sdk_name));
    BOOST_TEST(in.sdk.version == std::string(sekuire::sdk_version));
    BOOST_TEST(in.token_version == 1);
    BOOST_TEST(in.pending_commands == 0u);

    // The beacon's view agrees, and shows the runtime token masked only.
    const auto creds = b->get_installation_credentials();
    BOOST_REQUIRE(creds);
    BOOST_TEST(creds->installation_id == id);
    BOOST_TEST(!creds->refresh_token.empty());
    const auto s = b->get_status();
    BOOST_TEST(s.is_running);
    BOOST_TEST(s.installation_id == id);
    BOOST_TEST(s.runtime_token == sekuire::mask_token(creds->runtime_token));
    BOOST_TEST(s.runtime_token != creds->runtime_token);
    BOOST_TEST(!contains(s.runtime_token, creds->runtime_token.substr(4)));
    BOOST_REQUIRE(s.runtime_token_expires_at);
    BOOST_TEST((*s.runtime_token_expires_at == in.runtime_token_expires_at));
    BOOST_REQUIRE(s.last_heartbeat);
    BOOST_TEST((*s.last_heartbeat == t0 + 10min));
    BOOST_REQUIRE(s.lease_expires_at);
    BOOST_TEST((*s.lease_expires_at == in.lease_expires_at));
    BOOST_TEST(s.heartbeats_sent == 11u);
    BOOST_TEST(s.failed_heartbeats == 0u);
    BOOST_TEST(!s.degraded_mode);
    BOOST_TEST(!s.recovered_from_env);
    BOOST_TEST(!s.lease_expired);
    BOOST_TEST(!s.paused);
    BOOST_TEST(!s.revoked);
    BOOST_TEST(s.last_error.empty());
    BOOST_TEST(s.active_policy_hash == e.backend.policy().hash);
    BOOST_TEST(s.heartbeat_interval.count() == 60);
    for (const auto& line : e.seen.logs) {
        BOOST_TEST(!contains(line, creds->runtime_token));
        BOOST_TEST(!contains(line, creds->refresh_token));
    }

    // stop(): exactly one final `stopped` heartbeat, and the backend shows it.
    b->stop();
    BOOST_TEST(e.heartbeats(id) == 12u);
    BOOST_TEST(name(e.installation(id).state) == "stopped");
    BOOST_TEST(name(e.installation(id).last_status) == "stopped");
    BOOST_TEST(e.installation(id).sequence == 12);
    BOOST_TEST(name(b->get_status().state) == "stopped");
    BOOST_TEST(!b->get_status().is_running);
    BOOST_TEST(!b->is_connected());
    b->stop();
    e.run(*b, 1h);
    BOOST_TEST(e.heartbeats(id) == 12u);
}

BOOST_AUTO_TEST_CASE(transient_bootstrap_failures_retry_without_spending_the_install_token) {
    env e;
    st::mock_fault f;
    f.path_prefix = std::string(proto::path::bootstrap);
    f.count = 3;
    f.status = 503;
    e.backend.add_fault(f);
    auto b = e.make(e.options());
    b->step();
    BOOST_TEST(name(b->get_status().state) == "degraded"); // retrying in the background
    BOOST_TEST(b->get_status().degraded_mode);
    e.run(*b, 1min);
    BOOST_TEST(b->is_connected());
    BOOST_TEST(e.bootstraps() == 4u);
    BOOST_TEST(e.backend.installations().size() == 1u);
    BOOST_TEST(!b->get_status().degraded_mode);
}

BOOST_AUTO_TEST_CASE(restart_recovers_from_the_credential_file_without_an_install_token) {
    env e;
    temp_dir dir;
    const std::string path = (dir.path / "credentials.json").string();

    // First life: bootstrap with the install token, credentials in a file.
    std::string id, first_refresh, first_runtime;
    {
        auto b = e.make(e.options(), sekuire::file_store(path));
        id = e.connect(*b);
        e.run(*b, 5min);
        const auto c = sekuire::file_store(path).load();
        BOOST_REQUIRE(c);
        BOOST_TEST(c->installation_id == id);
        first_refresh = c->refresh_token;
        first_runtime = c->runtime_token;
        BOOST_TEST(!first_refresh.empty());
    } // destroyed: one final heartbeat
    BOOST_TEST(name(e.installation(id).state) == "stopped");
    const std::size_t beats_before = e.heartbeats(id);

    // The machine is gone for 31 days: the stored runtime token (30 days) has expired, so
    // the restart must refresh. The rotated refresh token must be on disk before the new
    // runtime token is used.
    e.clock.advance(31 * 24h);
    struct save_seen {
        std::string refresh_token;
        std::size_t heartbeats_then;
    };
    std::vector<save_seen> saves;
    watched_store store(sekuire::file_store(path), [&](const installation_credentials& c) {
        saves.push_back({c.refresh_token, e.heartbeats(id)});
    });
    auto opts = e.options();
    opts.install_token.clear();
    {
        auto b = e.make(opts, store);
        BOOST_TEST(e.connect(*b) == id);
        BOOST_TEST(e.refreshes(id) == 1u);
        BOOST_TEST(e.bootstraps() == 1u);
        BOOST_TEST(e.heartbeats(id) == beats_before + 1);
        BOOST_TEST(e.backend.installations().size() == 1u);
        BOOST_TEST(name(e.installation(id).state) == "healthy");
        BOOST_TEST(e.installation(id).token_version == 2);

        const auto c = sekuire::file_store(path).load();
        BOOST_REQUIRE(c);
        BOOST_TEST(c->installation_id == id);
        BOOST_TEST(c->refresh_token != first_refresh); // the mock rotates refresh tokens
        BOOST_TEST(c->runtime_token != first_runtime);
        BOOST_REQUIRE(!saves.empty());
        BOOST_TEST(saves.front().refresh_token == c->refresh_token);
        BOOST_TEST(saves.front().heartbeats_then == beats_before); // saved before the heartbeat

        e.run(*b, 5min);
        BOOST_TEST(b->is_connected());
        BOOST_TEST(e.refreshes(id) == 1u);
        BOOST_TEST(b->get_status().heartbeats_sent >= 5u);
    }

    // A third process given only the (used) install token: refused, degraded, no API key.
    {
        auto b = e.make(e.options());
        const auto next = b->step();
        const auto s = b->get_status();
        BOOST_TEST(name(s.state) == "degraded");
        BOOST_TEST(s.degraded_mode);
        BOOST_TEST((s.last_error_code == errc::install_token_used));
        BOOST_TEST(s.installation_id.empty());
        BOOST_TEST(!b->get_installation_credentials());
        BOOST_TEST((next == sekuire::steady_time_point::max()));
        BOOST_TEST(e.bootstraps() == 2u);
        BOOST_TEST(e.recovers() == 0u);
        e.run(*b, 1h);
        BOOST_TEST(e.bootstraps() == 2u);
        BOOST_TEST(e.backend.installations().size() == 1u);
    }

    // The same, with an API key and the workspace: the recovery bootstrap makes a new
    // installation.
    {
        auto o = e.options();
        o.api_key = std::string(st::mock_default_api_key);
        o.workspace_id = std::string(st::mock_default_workspace);
        auto b = e.make(o);
        const std::string id2 = e.connect(*b);
        BOOST_TEST(id2 != id);
        BOOST_TEST(e.bootstraps() == 3u);
        BOOST_TEST(e.recovers() == 1u);
        BOOST_TEST(e.backend.installations().size() == 2u);
        BOOST_TEST(e.heartbeats(id2) == 1u);
        BOOST_TEST(name(e.installation(id2).state) == "healthy");
        BOOST_TEST(!b->get_status().degraded_mode);
    }
}

BOOST_AUTO_TEST_CASE(restart_from_recovery_options_refreshes_and_persists_the_rotation) {
    env e;
    installation_credentials first;
    {
        auto b = e.make(e.options());
        e.connect(*b);
        first = *b->get_installation_credentials();
    }
    // As from SEKUIRE_INSTALLATION_ID and SEKUIRE_REFRESH_TOKEN: no runtime token.
    auto o = e.options();
    o.install_token.clear();
    o.installation_id = first.installation_id;
    o.refresh_token = first.refresh_token;
    o.recovered_from_env = true;
    sekuire::memory_store store;
    auto b = e.make(o, store);
    BOOST_TEST(e.connect(*b) == first.installation_id);
    BOOST_TEST(e.refreshes(first.installation_id) == 1u);
    BOOST_TEST(b->get_status().recovered_from_env);
    sekuire::error_code ec;
    const auto c = store.load(ec);
    BOOST_REQUIRE(c);
    BOOST_TEST(c->refresh_token != first.refresh_token);
    BOOST_TEST(c->runtime_token != first.runtime_token);
    BOOST_TEST(e.installation(first.installation_id).token_version == 2);

    // The old refresh token is dead now: a second process still holding it cannot
    // recover and ends degraded.
    auto o2 = o;
    o2.recovered_from_env = false;
    auto stale = e.make(o2);
    stale->step();
    BOOST_TEST(stale->get_status().degraded_mode);
    BOOST_TEST((stale->get_status().last_error_code == errc::invalid_refresh_token));
    BOOST_TEST(name(e.installation(first.installation_id).state) == "healthy");
}

BOOST_AUTO_TEST_CASE(revocation_stops_everything) {
    env e;
    sekuire::memory_store store;
    auto b = e.make(e.options(), store);
    const std::string id = e.connect(*b);
    e.run(*b, 2min);
    const std::size_t before = e.heartbeats(id);

    e.backend.revoke(id, "Emergency shutdown initiated by admin", 5000);
    e.run(*b, 61s);
    BOOST_TEST(e.heartbeats(id) == before + 1);
    const auto s = b->get_status();
    BOOST_TEST(name(s.state) == "revoked");
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "Emergency shutdown initiated by admin");
    BOOST_REQUIRE(s.shutdown_timeout);
    BOOST_TEST(s.shutdown_timeout->count() == 5000);
    BOOST_TEST((s.last_error_code == errc::revoked));
    BOOST_TEST(!b->is_connected());
    BOOST_REQUIRE(e.seen.revocations.size() == 1u);
    BOOST_TEST(e.seen.revocations[0].reason == "Emergency shutdown initiated by admin");
    BOOST_TEST(e.seen.revocations[0].shutdown_timeout.count() == 5000);

    // The revoked credentials are removed.
    BOOST_TEST(!b->get_installation_credentials());
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec));

    // No further heartbeat, not even a final one.
    e.run(*b, 1h);
    BOOST_TEST(e.heartbeats(id) == before + 1);
    b->stop();
    BOOST_TEST(e.heartbeats(id) == before + 1);
    BOOST_TEST(name(e.installation(id).state) == "revoked");
    BOOST_TEST(e.seen.revocations.size() == 1u);
}

BOOST_AUTO_TEST_CASE(pause_and_resume_commands) {
    env e;
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);

    const std::string pause_id = e.backend.send_command(id, "pause", "maintenance");
    BOOST_TEST(e.installation(id).pending_commands == 1u);
    const auto beats = e.heartbeats(id);
    e.step_until(*b, [&] { return e.heartbeats(id) == beats + 1; }, 2min);
    BOOST_TEST(e.installation(id).pending_commands == 0u);
    BOOST_REQUIRE(e.seen.commands.size() == 1u);
    BOOST_TEST(e.seen.commands[0].id == pause_id);
    BOOST_TEST((e.seen.commands[0].type == proto::command_type::pause));
    BOOST_TEST(e.seen.commands[0].reason == "maintenance");
    BOOST_TEST(b->get_status().paused);

    // The heartbeats say `paused` from now on; the command is delivered once.
    e.run(*b, 5min);
    BOOST_TEST(name(e.installation(id).last_status) == "paused");
    BOOST_TEST(e.seen.commands.size() == 1u);
    BOOST_TEST(b->get_status().paused);
    BOOST_TEST(b->is_connected());

    e.backend.send_command(id, "resume");
    e.run(*b, 1min);
    BOOST_REQUIRE(e.seen.commands.size() == 2u);
    BOOST_TEST((e.seen.commands[1].type == proto::command_type::resume));
    BOOST_TEST(!b->get_status().paused);
    e.run(*b, 1min);
    BOOST_TEST(name(e.installation(id).last_status) == "healthy");

    // A terminate command is reported to the owner, who decides how to stop.
    e.backend.send_command(id, "terminate", "scale down", 1500);
    e.run(*b, 1min);
    BOOST_REQUIRE(e.seen.commands.size() == 3u);
    BOOST_TEST((e.seen.commands[2].type == proto::command_type::terminate));
    BOOST_REQUIRE(e.seen.commands[2].shutdown_timeout_ms);
    BOOST_TEST(*e.seen.commands[2].shutdown_timeout_ms == 1500);
    BOOST_TEST(b->get_status().terminate_requested);
}

BOOST_AUTO_TEST_CASE(heartbeats_keep_a_ten_day_token_fresh_without_the_refresh_endpoint) {
    // The 7-day rule: a token that expires within 7 days is replaced by the heartbeat's
    // refreshed_token. A 7 days + 1 hour lifetime hits it after an hour of heartbeats.
    st::mock_backend_options mo;
    mo.token_lifetime = 7 * 24h + 1h;
    env e(mo);
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);
    e.run(*b, 6h);
    const auto in = e.installation(id);
    BOOST_TEST(in.token_version >= 4);
    BOOST_TEST(e.refreshes(id) == 0u);
    // Every heartbeat request succeeded: no failure because of an expired token.
    const auto s = b->get_status();
    BOOST_TEST(s.heartbeats_sent == e.heartbeats(id));
    BOOST_TEST(s.failed_heartbeats == 0u);
    BOOST_TEST(b->is_connected());
    // The beacon uses (and stored) the backend's current token.
    const auto c = b->get_installation_credentials();
    BOOST_REQUIRE(c);
    BOOST_TEST(c->token_version == in.token_version);
    BOOST_REQUIRE(c->runtime_token_expires_at);
    BOOST_TEST((*c->runtime_token_expires_at == in.runtime_token_expires_at));
    BOOST_TEST(name(in.state) == "healthy");
}

BOOST_AUTO_TEST_CASE(two_minute_tokens_refresh_at_a_sane_rate_and_never_fail_a_heartbeat) {
    st::mock_backend_options mo;
    mo.token_lifetime = 2min;
    mo.lease = 15min;
    env e(mo);
    auto o = e.options();
    o.heartbeat_interval = 5min; // longer than the token lives: the endpoint must be used
    auto b = e.make(o);
    const std::string id = e.connect(*b);
    e.run(*b, 2h);
    const auto s = b->get_status();
    const std::size_t beats = e.heartbeats(id);
    BOOST_TEST(beats >= 24u);
    BOOST_TEST(s.heartbeats_sent == beats); // no heartbeat failed on an expired token
    BOOST_TEST(b->is_connected());
    // The client refreshes on its own a third into a token's life (every 40 s here) and
    // before any heartbeat with an expired token: bounded, never a storm.
    BOOST_TEST(e.refreshes(id) >= beats - 1);
    BOOST_TEST(e.refreshes(id) <= static_cast<std::size_t>(2h / 40s) + 5);
}

BOOST_AUTO_TEST_CASE(a_token_rejected_with_401_is_refreshed_once_and_the_heartbeat_retried) {
    st::mock_backend_options mo;
    mo.token_lifetime = 2min;
    env e(mo);
    installation_credentials first;
    {
        auto b = e.make(e.options());
        e.connect(*b);
        first = *b->get_installation_credentials();
    }
    e.clock.advance(10min); // the runtime token has expired at the backend
    // The runtime token comes without its expiry (as from SEKUIRE_RUNTIME_TOKEN): the
    // beacon tries it, gets 401, refreshes and retries.
    auto o = e.options();
    o.install_token.clear();
    o.installation_id = first.installation_id;
    o.refresh_token = first.refresh_token;
    o.runtime_token = first.runtime_token;
    auto b = e.make(o);
    const std::size_t beats = e.heartbeats(first.installation_id);
    const std::size_t refreshes = e.refreshes(first.installation_id);
    b->step();
    BOOST_TEST(b->is_connected());
    BOOST_TEST(e.refreshes(first.installation_id) == refreshes + 1);
    BOOST_TEST(e.heartbeats(first.installation_id) == beats + 2); // the 401 and the retry
    BOOST_TEST(b->get_status().heartbeats_sent == 1u);
    BOOST_TEST(name(e.installation(first.installation_id).state) == "healthy");
}

BOOST_AUTO_TEST_CASE(lease_expiry_is_seen_on_both_sides_and_both_recover) {
    env e;
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);
    const std::size_t before = e.heartbeats(id);

    auto f = e.heartbeat_fault(id, 100000);
    f.status = 503;
    e.backend.add_fault(f);
    e.run(*b, 200s); // the lease is 180 s
    const auto in = e.installation(id);
    BOOST_TEST(name(in.state) == "unhealthy");
    const auto s = b->get_status();
    BOOST_TEST(name(s.state) == "lease_expired");
    BOOST_TEST(s.lease_expired);
    BOOST_TEST(!b->is_connected());
    BOOST_TEST(s.failed_heartbeats > 0u);
    BOOST_TEST(!s.revoked);
    // Backoff, no storm: 3-4 regular beats plus a few retries in 200 s.
    const std::size_t attempts = e.heartbeats(id) - before;
    BOOST_TEST(attempts >= 4u);
    BOOST_TEST(attempts <= 16u);

    e.backend.clear_faults();
    e.step_until(*b, [&] { return b->is_connected(); }, 2min);
    BOOST_TEST(name(e.installation(id).state) == "healthy");
    BOOST_TEST(!b->get_status().lease_expired);
    BOOST_TEST(b->get_status().failed_heartbeats == 0u);
    // The first beat after the outage still said `degraded`; the next says `healthy`.
    e.run(*b, 1min);
    BOOST_TEST(name(e.installation(id).last_status) == "healthy");
    BOOST_TEST(b->get_status().last_error.empty());
}

BOOST_AUTO_TEST_CASE(burst_of_503_is_absorbed_without_a_storm) {
    env e;
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);
    const std::size_t before = e.heartbeats(id);
    auto f = e.heartbeat_fault(id, 5);
    f.status = 503;
    e.backend.add_fault(f);
    e.run(*b, 10min);
    const std::size_t sent = e.heartbeats(id) - before;
    // The five failures back off over intervals (within the lease), then the regular beats:
    // no more requests in all than the regular cadence plus the failures.
    BOOST_TEST(sent >= 5u + 3u);
    BOOST_TEST(sent <= 11u + 5u);
    BOOST_TEST(b->is_connected());
    BOOST_TEST(b->get_status().failed_heartbeats == 0u);
    BOOST_TEST(name(e.installation(id).state) == "healthy");
    BOOST_TEST(b->get_status().heartbeats_sent == e.heartbeats(id) - 5);
}

BOOST_AUTO_TEST_CASE(rate_limit_retry_after_is_the_minimum_wait) {
    env e;
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);
    auto f = e.heartbeat_fault(id, 1);
    f.status = 429;
    f.retry_after = "5";
    e.backend.add_fault(f);

    const std::size_t n = e.heartbeats(id);
    const auto limited_at = e.step_until(*b, [&] { return e.heartbeats(id) == n + 1; }, 2min);
    BOOST_TEST(b->get_status().failed_heartbeats == 1u);
    BOOST_TEST((b->get_status().last_error_code == errc::rate_limited));
    const auto retried_at = e.step_until(*b, [&] { return e.heartbeats(id) == n + 2; }, 2min);
    BOOST_TEST(ms_since_start(retried_at) - ms_since_start(limited_at) >= 5000);
    BOOST_TEST(ms_since_start(retried_at) - ms_since_start(limited_at) <= 60000);
    BOOST_TEST(b->is_connected());
    BOOST_TEST(b->get_status().failed_heartbeats == 0u);

    const std::size_t before = e.heartbeats(id);
    e.run(*b, 10min);
    BOOST_TEST(e.heartbeats(id) - before <= 11u);
}

BOOST_AUTO_TEST_CASE(dropped_connections_are_retried_without_a_storm) {
    env e;
    auto b = e.make(e.options());
    const std::string id = e.connect(*b);
    const std::size_t before = e.heartbeats(id);
    auto f = e.heartbeat_fault(id, 3);
    f.drop_connection = true;
    e.backend.add_fault(f);
    e.run(*b, 10min);
    const std::size_t sent = e.heartbeats(id) - before;
    BOOST_TEST(sent >= 3u + 5u);
    BOOST_TEST(sent <= 11u + 3u);
    BOOST_TEST(b->is_connected());
    BOOST_TEST(b->get_status().failed_heartbeats == 0u);
    BOOST_TEST(name(e.installation(id).state) == "healthy");
}

BOOST_AUTO_TEST_CASE(responses_slower_than_the_timeout_are_retried) {
    env e;
    auto o = e.options();
    o.request_timeout = 300ms;
    auto b = e.make(o);
    const std::string id = e.connect(*b);
    const std::size_t before = e.heartbeats(id);
    auto f = e.heartbeat_fault(id, 2);
    f.delay = 1000ms; // real time: each of these two requests times out on the client
    e.backend.add_fault(f);

    const std::size_t n = e.heartbeats(id);
    e.step_until(*b, [&] { return e.heartbeats(id) >= n + 1; }, 2min);
    BOOST_TEST(b->get_status().failed_heartbeats == 1u);
    BOOST_TEST((b->get_status().last_error_code == errc::timeout));
    e.run(*b, 10min);
    const std::size_t sent = e.heartbeats(id) - before;
    BOOST_TEST(sent >= 2u + 9u);
    BOOST_TEST(sent <= 11u + 12u);
    BOOST_TEST(b->is_connected());
    BOOST_TEST(b->get_status().failed_heartbeats == 0u);
    BOOST_TEST(name(e.installation(id).state) == "healthy");
}

BOOST_AUTO_TEST_CASE(the_real_beacon_on_its_thread_and_the_system_clock) {
    st::mock_backend_options mo;
    mo.keep_alive_timeout = 1s;
    st::mock_backend backend{mo};
    backend.start();
    sekuire::beacon_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.api_base_url = backend.url();
    o.agent_id = agent;
    o.install_token = backend.create_install_token();
    o.capabilities = capabilities;
    o.heartbeat_interval = 1s;
    std::string id;
    {
        sekuire::beacon b{o};
        b.start();
        BOOST_TEST(b.is_connected());
        const auto s = b.get_status();
        BOOST_TEST(s.is_running);
        id = s.installation_id;
        BOOST_REQUIRE(!id.empty());
        const auto path = proto::path::heartbeat(id);
        BOOST_TEST(backend.request_count(path) >= 1u);
        // The thread keeps beating (bounded wait in real time).
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (backend.request_count(path) < 2 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(20ms);
        BOOST_TEST(backend.request_count(path) >= 2u);
        BOOST_TEST(name(backend.installation(id)->state) == "healthy");

        b.stop();
        // Every periodic heartbeat succeeded, plus exactly one final one.
        BOOST_TEST(backend.request_count(path) == b.get_status().heartbeats_sent + 1);
        BOOST_TEST(!b.get_status().is_running);
        BOOST_TEST(name(b.get_status().state) == "stopped");
        BOOST_TEST(name(backend.installation(id)->state) == "stopped");
        BOOST_TEST(backend.installation(id)->capabilities == capabilities, boost::test_tools::per_element());
    }
    backend.stop();
}

BOOST_AUTO_TEST_SUITE_END()
