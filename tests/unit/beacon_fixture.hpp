// SPDX-License-Identifier: MIT
// A beacon on fake policies, with a scripted backend whose clock is independent of the
// agent's wall clock (so that tests can skew the agent's clock).
#ifndef SEKUIRE_TESTS_BEACON_FIXTURE_HPP
#define SEKUIRE_TESTS_BEACON_FIXTURE_HPP

#include <sekuire/basic_beacon.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace beacon_test {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using sekuire::http_method;

using test_beacon = sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe>;

// Tokens long enough that a leak of any part would be visible.
inline const std::string install_token = "skt_install_0123456789abcdefghijklmnop";
inline const std::string api_key = "sk_live_apikey_0123456789abcdefghijklmn";
inline const std::string runtime_1 = "srt_runtime_one_0123456789abcdefghijkl";
inline const std::string runtime_2 = "srt_runtime_two_0123456789abcdefghijkl";
inline const std::string runtime_3 = "srt_runtime_three_0123456789abcdefghij";
inline const std::string refresh_1 = "rt_refresh_one_0123456789abcdefghijklm";
inline const std::string refresh_2 = "rt_refresh_two_0123456789abcdefghijklm";
inline const std::string installation = "inst_test_1";
inline const std::string heartbeat_path = proto::path::heartbeat(installation);
inline const std::string refresh_path = proto::path::refresh(installation);
inline const std::string bootstrap_path = std::string(proto::path::bootstrap);
inline const std::string recover_path = std::string(proto::path::recover);

inline std::string error_body(const std::string& code) {
    return proto::encode(proto::error_body{code, "scripted " + code});
}

struct fixture {
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    std::mutex log_mutex;
    std::vector<std::string> logs;
    std::vector<sekuire::beacon_status> statuses;
    std::vector<proto::command> commands;
    std::vector<sekuire::revocation_info> revocations;
    std::unique_ptr<test_beacon> beacon;
    std::chrono::seconds lease{180};
    bool send_date = true;

    fixture() = default;
    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;
    // Handlers may capture a test's locals, which are gone by now: drop them before the
    // beacon's destructor sends its final heartbeat.
    ~fixture() {
        transport.clear_scripts();
        beacon.reset();
    }

    /// The backend's clock: the fake clock's start plus elapsed steady time, never skewed.
    sekuire::wall_time_point server_now() const {
        return st::fake_clock::default_start() +
               std::chrono::duration_cast<sekuire::wall_time_point::duration>(clock.steady_now().time_since_epoch());
    }

    sekuire::header_list date_header() const {
        if (!send_date) return {};
        return {{"Date", sekuire::format_http_date(server_now())}};
    }

    sekuire::beacon_options options() {
        sekuire::beacon_options o;
        o.startup_jitter = 0ms; // the tests time the start
        o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; }; // hermetic
        o.agent_id = "agent-0123";
        o.install_token = install_token;
        o.capabilities = {"summarize", "classify"};
        o.heartbeat_interval = 60s;
        o.random = [] { return 0.0; }; // no jitter unless a test asks for it
        o.logger = [this](sekuire::log_level, std::string_view m) {
            std::lock_guard<std::mutex> lock(log_mutex);
            logs.emplace_back(m);
        };
        o.on_status_change = [this](const sekuire::beacon_status& s) {
            std::lock_guard<std::mutex> lock(log_mutex);
            statuses.push_back(s);
        };
        o.on_command = [this](const proto::command& c) { commands.push_back(c); };
        o.on_revoked = [this](const sekuire::revocation_info& r) { revocations.push_back(r); };
        return o;
    }

    test_beacon& make(sekuire::beacon_options o) {
        beacon = std::make_unique<test_beacon>(std::move(o), transport, clock, store, st::fixed_probe{});
        return *beacon;
    }
    test_beacon& make() { return make(options()); }

    proto::bootstrap_response bootstrap_response(const std::string& token = runtime_1,
                                                 const std::string& refresh = refresh_1) const {
        proto::bootstrap_response r;
        r.installation_id = installation;
        r.runtime_token = token;
        r.runtime_token_expires_at = server_now() + std::chrono::hours(24 * 90);
        r.refresh_token = refresh;
        r.lease_expires_at = server_now() + lease;
        r.deployment_url = "https://dashboard.example/installations/" + installation;
        return r;
    }

    void script_bootstrap_ok() {
        transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{201, proto::encode(bootstrap_response()), date_header(), {}};
        });
    }

    proto::heartbeat_response live_response() const {
        proto::heartbeat_response r;
        r.installation_id = installation;
        r.lease_renewed = true;
        r.lease_expires_at = server_now() + lease;
        return r;
    }

    void script_heartbeat_ok() {
        transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        });
    }

    /// A refresh endpoint that hands out `token` (rotating to `rotated` when given).
    void script_refresh_ok(const std::string& token, const std::string& rotated = {}) {
        transport.on(http_method::post, refresh_path).handle([this, token, rotated](const sekuire::http_request&) {
            proto::refresh_response r;
            r.runtime_token = token;
            r.expires_at = server_now() + std::chrono::hours(24 * 90);
            r.token_version = 2;
            if (!rotated.empty()) r.refresh_token = rotated;
            return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
        });
    }

    std::size_t heartbeats() const { return transport.count(http_method::post, heartbeat_path); }
    std::size_t refreshes() const { return transport.count(http_method::post, refresh_path); }
    std::size_t bootstraps() const { return transport.count(http_method::post, bootstrap_path); }
    std::size_t recovers() const { return transport.count(http_method::post, recover_path); }

    std::size_t run_for(std::chrono::milliseconds d) {
        return st::run_for(clock, d, [this] { return beacon->step(); });
    }

    /// The bodies of the heartbeats sent, decoded.
    std::vector<proto::heartbeat_request> heartbeat_bodies() const {
        std::vector<proto::heartbeat_request> out;
        for (const auto& r : transport.requests(http_method::post, heartbeat_path)) {
            proto::heartbeat_request h;
            proto::decode_error err;
            if (proto::decode(r.request.body, h, err)) out.push_back(h);
        }
        return out;
    }

    /// The bearer token of a recorded request.
    static std::string bearer(const st::fake_transport::recorded& r) {
        const std::string* v = sekuire::find_header(r.request.headers, "Authorization");
        if (!v || v->rfind("Bearer ", 0) != 0) return {};
        return v->substr(7);
    }

    /// Steady times (from the clock's start) at which heartbeats were sent, in ms.
    std::vector<std::int64_t> heartbeat_times;
    void record_heartbeat_times() {
        transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request&) {
            heartbeat_times.push_back(
                std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        });
    }
};

} // namespace beacon_test

#endif
