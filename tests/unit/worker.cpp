// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/worker.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(worker)

BOOST_AUTO_TEST_CASE(default_typedef_and_factory) {
    static_assert(std::is_same<sekuire::worker,
                               sekuire::basic_worker<sekuire::httplib_transport, sekuire::system_clock,
                                                     sekuire::credential_store, sekuire::thread_pool_executor>>::value,
                  "");
    sekuire::worker_options o;
    o.api_base_url = "http://127.0.0.1:9";
    o.max_concurrent_handlers = 3;
    auto w = sekuire::create_worker(o);
    BOOST_TEST_REQUIRE(static_cast<bool>(w));
    w->on_task("x", [](const sekuire::task_context&, const boost::json::value& v) { return v; });
    BOOST_TEST((w->get_status().state == sekuire::worker_state::idle));
    BOOST_TEST(!w->is_paused());
}

// Issue 15, item 2: the factory takes a credential store (the seed's credentialsStore), and
// an option out of range is refused before a thread or a connection exists.
BOOST_AUTO_TEST_CASE(the_factory_shares_a_store) {
    sekuire::worker_options o;
    o.api_base_url = "http://127.0.0.1:9";
    o.installation_id = "inst_f";
    o.runtime_token = "srt_factory_0123456789abcdef";
    sekuire::memory_store memory;
    sekuire::credential_store store(memory);
    auto w = sekuire::create_worker(o, store);
    BOOST_TEST_REQUIRE(static_cast<bool>(w));
    sekuire::error_code ec;
    sekuire::installation_credentials c;
    c.installation_id = "inst_shared";
    w->credential_store().save(c, ec); // the worker holds the same store
    BOOST_TEST(memory.load(ec).value_or(sekuire::installation_credentials{}).installation_id == "inst_shared");
    o.max_concurrent_handlers = 0;
    BOOST_CHECK_EXCEPTION(sekuire::create_worker(o, store), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == sekuire::errc::invalid_option; });
}

BOOST_AUTO_TEST_CASE(refused_base_url_throws) {
    sekuire::worker_options o;
    o.api_base_url = "http://example.com";
    BOOST_CHECK_THROW(sekuire::create_worker(o), sekuire::error);
}

BOOST_AUTO_TEST_CASE(from_env) {
    const auto o = sekuire::worker_options::from_env([](const char* n) -> std::optional<std::string> {
        const std::string name = n;
        if (name == "SEKUIRE_RUNTIME_TOKEN") return std::string("srt_x");
        if (name == "SEKUIRE_INSTALLATION_ID") return std::string("inst_x");
        if (name == "SEKUIRE_WORKSPACE_ID") return std::string("ws_x");
        return std::nullopt;
    });
    BOOST_TEST(o.runtime_token == "srt_x");
    BOOST_TEST(o.installation_id == "inst_x");
    BOOST_TEST(o.workspace_id == "ws_x");
    BOOST_TEST(o.heartbeat_interval.count() == 10000);
}

BOOST_AUTO_TEST_SUITE_END()
