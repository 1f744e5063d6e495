// SPDX-License-Identifier: MIT
// The policy requirements are minimal: basic_beacon, basic_worker and basic_sdk are
// instantiated (every member) with archetypes that have nothing beyond the documented
// requirements — no default constructor, no assignment, no extra member — and the traits
// reject types that miss any one requirement.
#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_sdk.hpp>
#include <sekuire/basic_worker.hpp>

#include <boost/test/unit_test.hpp>

namespace archetypes {

struct tag {};

class transport {
public:
    explicit transport(tag) {}
    transport(const transport&) = default;
    transport& operator=(const transport&) = delete;
    sekuire::http_response send(const sekuire::http_request&, sekuire::error_code& ec) {
        ec = sekuire::errc::connection_failed;
        return {};
    }
    void stream(const sekuire::http_request&, sekuire::stream_callbacks&, const sekuire::stop_token&,
                sekuire::error_code& ec) {
        ec = sekuire::errc::connection_failed;
    }
};

class clock {
public:
    explicit clock(tag) {}
    clock(const clock&) = default;
    clock& operator=(const clock&) = delete;
    sekuire::wall_time_point wall_now() { return sekuire::wall_time_point{}; }
    sekuire::steady_time_point steady_now() { return sekuire::steady_time_point{}; }
    template <class Pred>
    bool wait_until(std::unique_lock<std::mutex>&, std::condition_variable&, sekuire::steady_time_point, Pred pred) {
        return pred();
    }
};

class store {
public:
    explicit store(tag) {}
    store(const store&) = default;
    store& operator=(const store&) = delete;
    std::optional<sekuire::installation_credentials> load(sekuire::error_code& ec) {
        ec = {};
        return std::nullopt;
    }
    void save(const sekuire::installation_credentials&, sekuire::error_code& ec) { ec = {}; }
    void clear(sekuire::error_code& ec) { ec = {}; }
    void lock_refresh() {}
    void unlock_refresh() {}
};

class platform_probe {
public:
    explicit platform_probe(tag) {}
    platform_probe(const platform_probe&) = default;
    platform_probe& operator=(const platform_probe&) = delete;
    sekuire::platform_info probe() { return {}; }
};

class executor {
public:
    explicit executor(tag) {}
    executor(const executor&) = default;
    executor& operator=(const executor&) = delete;
    void post(std::function<void()> f) { f(); }
};

class gateway {
public:
    explicit gateway(tag) {}
    gateway(const gateway&) = default;
    gateway& operator=(const gateway&) = delete;
    sekuire::admission admit(std::string_view capability, sekuire::steady_time_point) {
        sekuire::admission a;
        a.allowed = capability != "denied";
        a.reason = "the archetype says no";
        return a;
    }
    void set_policy(sekuire::protocol::policy_document) {}
    std::string policy_hash() const { return "archetype"; }
    bool on_heartbeat_response(const std::optional<std::string>&) { return false; }
};

// Types missing one requirement each.
struct no_admit {
    void set_policy(sekuire::protocol::policy_document);
    std::string policy_hash() const;
    bool on_heartbeat_response(const std::optional<std::string>&);
};
struct no_policy_hash {
    sekuire::admission admit(std::string_view, sekuire::steady_time_point);
    void set_policy(sekuire::protocol::policy_document);
    bool on_heartbeat_response(const std::optional<std::string>&);
};
struct hash_response_not_bool {
    sekuire::admission admit(std::string_view, sekuire::steady_time_point);
    void set_policy(sekuire::protocol::policy_document);
    std::string policy_hash() const;
    void on_heartbeat_response(const std::optional<std::string>&);
};
struct no_send {
    void stream(const sekuire::http_request&, sekuire::stream_callbacks&, const sekuire::stop_token&,
                sekuire::error_code&);
};
struct no_stream {
    sekuire::http_response send(const sekuire::http_request&, sekuire::error_code&);
};
struct send_returns_wrong_type {
    int send(const sekuire::http_request&, sekuire::error_code&);
    void stream(const sekuire::http_request&, sekuire::stream_callbacks&, const sekuire::stop_token&,
                sekuire::error_code&);
};
struct not_copyable_transport : transport {
    using transport::transport;
    not_copyable_transport(const not_copyable_transport&) = delete;
};
struct no_wall_now {
    sekuire::steady_time_point steady_now();
    template <class P>
    bool wait_until(std::unique_lock<std::mutex>&, std::condition_variable&, sekuire::steady_time_point, P);
};
struct no_wait {
    sekuire::wall_time_point wall_now();
    sekuire::steady_time_point steady_now();
};
struct wrong_steady {
    sekuire::wall_time_point wall_now();
    sekuire::wall_time_point steady_now();
    template <class P>
    bool wait_until(std::unique_lock<std::mutex>&, std::condition_variable&, sekuire::steady_time_point, P);
};
struct no_lock {
    std::optional<sekuire::installation_credentials> load(sekuire::error_code&);
    void save(const sekuire::installation_credentials&, sekuire::error_code&);
    void clear(sekuire::error_code&);
};
struct load_returns_wrong_type {
    sekuire::installation_credentials load(sekuire::error_code&);
    void save(const sekuire::installation_credentials&, sekuire::error_code&);
    void clear(sekuire::error_code&);
    void lock_refresh();
    void unlock_refresh();
};
struct no_clear {
    std::optional<sekuire::installation_credentials> load(sekuire::error_code&);
    void save(const sekuire::installation_credentials&, sekuire::error_code&);
    void lock_refresh();
    void unlock_refresh();
};
struct probe_wrong_type {
    std::string probe();
};
struct no_post {
    void run(std::function<void()>);
};

} // namespace archetypes

// Every member of the templates, instantiated with the archetypes.
template class sekuire::basic_beacon<archetypes::transport, archetypes::clock, archetypes::store, archetypes::platform_probe>;
template class sekuire::basic_worker<archetypes::transport, archetypes::clock, archetypes::store, archetypes::executor>;
template class sekuire::basic_sdk<archetypes::transport, archetypes::clock, archetypes::store, archetypes::platform_probe,
                                  archetypes::executor>;

BOOST_AUTO_TEST_SUITE(archetypes)

BOOST_AUTO_TEST_CASE(archetypes_meet_the_requirements) {
    using namespace archetypes;
    static_assert(sekuire::is_transport<transport>::value, "");
    static_assert(sekuire::is_clock<archetypes::clock>::value, "");
    static_assert(sekuire::is_credential_store<store>::value, "");
    static_assert(sekuire::is_platform_probe<archetypes::platform_probe>::value, "");
    static_assert(sekuire::is_executor<executor>::value, "");
    static_assert(sekuire::is_policy_gateway<gateway>::value, "");
    static_assert(!std::is_default_constructible<transport>::value, "the archetypes are minimal");
#if SEKUIRE_HAS_CONCEPTS
    static_assert(sekuire::transport_policy<transport>);
    static_assert(sekuire::clock_policy<archetypes::clock>);
    static_assert(sekuire::credential_store_policy<store>);
    static_assert(sekuire::platform_probe_policy<archetypes::platform_probe>);
    static_assert(sekuire::executor_policy<executor>);
    static_assert(sekuire::policy_gateway_policy<gateway>);
    static_assert(!sekuire::transport_policy<no_send>);
#endif
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE(each_missing_requirement_is_detected) {
    using namespace archetypes;
    static_assert(!sekuire::is_transport<no_send>::value, "");
    static_assert(!sekuire::is_transport<no_stream>::value, "");
    static_assert(!sekuire::is_transport<send_returns_wrong_type>::value, "");
    static_assert(!sekuire::is_transport<not_copyable_transport>::value, "");
    static_assert(!sekuire::is_clock<no_wall_now>::value, "");
    static_assert(!sekuire::is_clock<no_wait>::value, "");
    static_assert(!sekuire::is_clock<wrong_steady>::value, "");
    static_assert(!sekuire::is_credential_store<no_lock>::value, "");
    static_assert(!sekuire::is_credential_store<load_returns_wrong_type>::value, "");
    static_assert(!sekuire::is_credential_store<no_clear>::value, "");
    static_assert(!sekuire::is_platform_probe<probe_wrong_type>::value, "");
    static_assert(!sekuire::is_executor<no_post>::value, "");
    static_assert(!sekuire::is_policy_gateway<no_admit>::value, "");
    static_assert(!sekuire::is_policy_gateway<no_policy_hash>::value, "");
    static_assert(!sekuire::is_policy_gateway<hash_response_not_bool>::value, "");
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE(a_beacon_on_archetypes_runs) {
    using namespace archetypes;
    sekuire::beacon_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "a";
    o.install_token = "skt_0123456789abcdef0123";
    o.random = [] { return 0.5; };
    sekuire::basic_beacon<transport, archetypes::clock, store, archetypes::platform_probe> b(o, transport(tag{}),
                                                                                   archetypes::clock(tag{}),
                                                                                   store(tag{}), archetypes::platform_probe(tag{}));
    b.step(); // the transport fails: a transient failure, retried later
    const auto s = b.get_status();
    BOOST_TEST(s.degraded_mode);
    BOOST_TEST((s.last_error_code == sekuire::errc::connection_failed));
    b.stop();
}

// A worker runs with a gateway that has nothing beyond the PolicyGateway requirements.
BOOST_AUTO_TEST_CASE(a_worker_admits_through_an_archetype_gateway) {
    using namespace archetypes;
    sekuire::policy_gateway g = gateway(tag{});
    BOOST_TEST(g.admit("anything", sekuire::steady_time_point{}).allowed);
    BOOST_TEST(!g.admit("denied", sekuire::steady_time_point{}).allowed);
    BOOST_TEST(g.policy_hash() == "archetype");
    BOOST_TEST(!g.policy().has_value()); // policy() is optional
    sekuire::worker_options o;
    o.gateway = gateway(tag{});
    BOOST_TEST(o.gateway.policy_hash() == "archetype");
}

BOOST_AUTO_TEST_SUITE_END()
