// SPDX-License-Identifier: MIT
// A program that uses sekuire the way an application does, built by CTest against an
// install prefix (find_package) and against the source tree (add_subdirectory). It makes
// no network request: the default beacon is built but never started, and the bootstrap
// runs on the testing kit's scripted transport and fake clock.
#include <sekuire/beacon.hpp>
#include <sekuire/beast_transport.hpp>
#include <sekuire/worker.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <type_traits>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "consumer: check failed: %s\n", what);
        ++failures;
    }
}

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using sekuire::http_method;
using namespace std::chrono_literals;

// Naming the default worker needs its complete default policies; taking the address of
// the factory instantiates the whole worker, which must compile and link here.
static_assert(std::is_constructible<sekuire::worker, sekuire::worker_options>::value,
              "sekuire::worker is built from worker_options");

void default_beacon_is_built_offline() {
    sekuire::beacon_options o;
    o.api_base_url = "http://127.0.0.1:9"; // loopback plain http is allowed; never contacted
    o.agent_id = "consumer-agent";
    o.install_token = "skt_consumer_install_token_0123456789";
    sekuire::beacon b{o}; // start() is not called: no thread, no request
    check(!b.is_connected(), "an unstarted beacon is not connected");
    check(b.get_status().state == sekuire::beacon_state::idle, "an unstarted beacon is idle");

    // https is accepted only when the CPPHTTPLIB_OPENSSL_SUPPORT definition of the
    // httplib package reached this translation unit (no connection is opened).
    sekuire::error_code ec;
    sekuire::httplib_transport tls{"https://127.0.0.1:9", sekuire::transport_options{}, ec};
    check(!ec, "an https base URL is accepted (cpp-httplib with OpenSSL, its definitions reached this program)");

    // The same for the Boost.Asio/Beast transport: Boost's headers and OpenSSL reached this
    // program (the TLS context is made now; no connection is opened, no operation started).
    boost::asio::io_context io;
    sekuire::beast_transport beast{io.get_executor(), "https://127.0.0.1:9", sekuire::transport_options{}, ec};
    check(!ec, "a beast_transport for an https base URL is built (Boost.Asio, Boost.Beast, OpenSSL)");

    // Emitted and linked here, not called (a worker's destructor may contact its backend).
    auto make_worker = static_cast<std::unique_ptr<sekuire::worker> (*)(sekuire::worker_options)>(
        &sekuire::create_worker<sekuire::worker>);
    (void)make_worker;
}

void options_from_an_injected_environment() {
    const std::map<std::string, std::string> env{
        {"SEKUIRE_API_URL", "http://127.0.0.1:9"},
        {"SEKUIRE_AGENT_ID", "agent-from-env"},
        {"SEKUIRE_HEARTBEAT_INTERVAL", "45"},
        {"SEKUIRE_INSTALLATION_ID", "inst_from_env"},
        {"SEKUIRE_REFRESH_TOKEN", "rt_consumer_refresh_token_0123456789"},
    };
    const auto o = sekuire::beacon_options::from_env([&](const char* name) -> std::optional<std::string> {
        const auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
    });
    check(o.api_base_url == "http://127.0.0.1:9", "from_env reads SEKUIRE_API_URL");
    check(o.agent_id == "agent-from-env", "from_env reads SEKUIRE_AGENT_ID");
    check(o.heartbeat_interval == 45s, "from_env reads SEKUIRE_HEARTBEAT_INTERVAL");
    check(o.installation_id == "inst_from_env" && o.recovered_from_env, "from_env reads the recovery credentials");
    check(o.install_token.empty(), "from_env leaves unset variables empty");
}

void beacon_bootstraps_on_the_testing_kit() {
    const std::string installation = "inst_consumer";
    st::fake_clock clock;
    st::fake_transport transport;

    proto::bootstrap_response boot;
    boot.installation_id = installation;
    boot.runtime_token = "srt_consumer_runtime_token_0123456789";
    boot.runtime_token_expires_at = clock.wall_now() + std::chrono::hours(24 * 90);
    boot.refresh_token = "rt_consumer_refresh_token_0123456789";
    boot.lease_expires_at = clock.wall_now() + 180s;
    transport.on(http_method::post, std::string(proto::path::bootstrap)).respond(201, proto::encode(boot));

    proto::heartbeat_response live;
    live.installation_id = installation;
    live.lease_renewed = true;
    live.lease_expires_at = clock.wall_now() + 180s;
    transport.on(http_method::post, proto::path::heartbeat(installation)).respond(200, proto::encode(live));

    sekuire::beacon_options o;
    o.agent_id = "consumer-agent";
    o.install_token = "skt_consumer_install_token_0123456789";
    o.random = [] { return 0.0; };
    sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe> b{
        o, transport, clock, sekuire::memory_store{}, st::fixed_probe{}};
    b.step(); // the auth chain and the registration heartbeat

    check(transport.count(http_method::post, proto::path::bootstrap) == 1, "one bootstrap request");
    check(transport.count(http_method::post, proto::path::heartbeat(installation)) == 1, "one registration heartbeat");
    check(transport.unscripted_count() == 0, "no unscripted request");
    check(b.get_status().installation_id == installation, "the status holds the installation id");
    check(b.is_connected(), "the beacon reports connected");
}

} // namespace

int main() {
    try {
        default_beacon_is_built_offline();
        options_from_an_injected_environment();
        beacon_bootstraps_on_the_testing_kit();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer: unexpected exception: %s\n", e.what());
        return 1;
    }
    if (failures != 0) return 1;
    std::printf("sekuire %s consumer: built sekuire::beacon (not started) and https transports (httplib, beast) offline, "
                "read beacon_options::from_env through an injected lookup, and a basic_beacon on the "
                "testing kit bootstrapped (201) and heartbeat (200) to connected\n",
                sekuire::sdk_version);
    return 0;
}
