// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/detail/mock_state.hpp>

#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/mock_backend.hpp> // the HTTP layer's pure helpers (no socket opened)

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace proto = sekuire::protocol;
namespace mock = sekuire::testing::detail;
using sekuire::testing::fake_clock;
using sekuire::testing::mock_backend_options;
using sekuire::testing::mock_fault;
using sekuire::testing::mock_task_status;

mock::mock_clock_fns fns(const fake_clock& c) {
    return {[c] { return c.wall_now(); }, [c] { return c.steady_now(); }};
}

std::string authz(const std::string& token) { return std::string(proto::header::bearer_prefix) + token; }

template <class T>
T decoded(const mock::mock_reply& r) {
    T out;
    proto::decode_error err;
    BOOST_REQUIRE_MESSAGE(proto::decode(r.body, out, err), err.message());
    return out;
}

proto::bootstrap_response bootstrap(mock::mock_core& core, std::vector<std::string> caps = {"summarize"}) {
    proto::bootstrap_request req;
    req.install_token = std::string(sekuire::testing::mock_default_install_token);
    req.agent_id = "agent-1";
    req.capabilities = std::move(caps);
    auto r = core.bootstrap(proto::encode(req));
    BOOST_REQUIRE_EQUAL(r.status, 201);
    return decoded<proto::bootstrap_response>(r);
}

sekuire::testing::mock_task_request task(std::string capability) {
    sekuire::testing::mock_task_request r;
    r.capability = std::move(capability);
    r.input = boost::json::object{{"n", 1}};
    return r;
}

std::string enqueue(mock::mock_core& core, std::string capability) {
    sekuire::error_code ec;
    auto id = core.enqueue_task(task(std::move(capability)), ec);
    BOOST_REQUIRE(!ec);
    return id;
}

std::uint64_t add(mock::mock_core& core, const mock_fault& f) {
    sekuire::error_code ec;
    auto id = core.add_fault(f, ec);
    BOOST_REQUIRE(!ec);
    return id;
}

} // namespace

BOOST_AUTO_TEST_SUITE(mock_backend_rules)

BOOST_AUTO_TEST_CASE(options_are_validated) {
    BOOST_TEST(mock::validate_options(mock_backend_options{}).empty());
    auto bad = [](auto change) {
        mock_backend_options o;
        change(o);
        return !mock::validate_options(o).empty();
    };
    BOOST_TEST(bad([](auto& o) { o.host.clear(); }));
    BOOST_TEST(bad([](auto& o) { o.port = 70000; }));
    BOOST_TEST(bad([](auto& o) { o.install_tokens = {"has space"}; }));
    BOOST_TEST(bad([](auto& o) { o.api_key.clear(); }));
    BOOST_TEST(bad([](auto& o) { o.workspace_id = "ws\n"; }));
    BOOST_TEST(bad([](auto& o) { o.token_lifetime = 0s; }));
    BOOST_TEST(bad([](auto& o) { o.lease = 0s; }));
    BOOST_TEST(bad([](auto& o) { o.heartbeat_interval = 0s; }));
    BOOST_TEST(bad([](auto& o) { o.keepalive = 0ms; }));
    BOOST_TEST(bad([](auto& o) { o.redelivery_timeout = 0s; }));
    BOOST_TEST(bad([](auto& o) { o.threads = 0; }));
    BOOST_TEST(bad([](auto& o) { o.max_body = 10; }));
    BOOST_TEST(bad([](auto& o) { o.keep_alive_timeout = 0s; }));
}

BOOST_AUTO_TEST_CASE(faults_are_validated) {
    mock_fault f;
    BOOST_TEST(!mock::validate_fault(f).empty()); // no effect
    f.status = 503;
    BOOST_TEST(mock::validate_fault(f).empty());
    f.retry_after = "5\r\nX-Injected: 1";
    BOOST_TEST(!mock::validate_fault(f).empty());
    f.retry_after = "Wed, 21 Oct 2026 07:28:00 GMT";
    BOOST_TEST(mock::validate_fault(f).empty());
    f.drop_connection = true;
    BOOST_TEST(!mock::validate_fault(f).empty());
    mock_fault g;
    g.delay = 10ms;
    BOOST_TEST(mock::validate_fault(g).empty());
    g.delay = 11min;
    BOOST_TEST(!mock::validate_fault(g).empty());
    mock_fault h;
    h.cut_stream_after_events = 0;
    h.count = 0;
    BOOST_TEST(!mock::validate_fault(h).empty());
    mock_fault i;
    i.status = 200;
    BOOST_TEST(!mock::validate_fault(i).empty());
}

BOOST_AUTO_TEST_CASE(headers_are_parsed_strictly) {
    BOOST_TEST(mock::bearer_token("Bearer abc") == "abc");
    BOOST_TEST(mock::bearer_token("bearer abc") == "abc");
    BOOST_TEST(mock::bearer_token("Basic abc").empty());
    BOOST_TEST(mock::bearer_token("Bearer ").empty());
    BOOST_TEST(mock::bearer_token("").empty());
    BOOST_TEST(mock::bearer_token("Bearer " + std::string(600, 'x')).empty());
    BOOST_TEST(mock::parse_event_id("12").value_or(0) == 12u);
    BOOST_TEST(!mock::parse_event_id(""));
    BOOST_TEST(!mock::parse_event_id("-1"));
    BOOST_TEST(!mock::parse_event_id("1a"));
    BOOST_TEST(!mock::parse_event_id("99999999999999999999"));
}

BOOST_AUTO_TEST_CASE(policy_hash_is_sha256_of_the_serialized_content) {
    BOOST_TEST(mock::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    BOOST_TEST(mock::policy_hash_of(boost::json::object{}) == mock::sha256_hex("{}"));
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    BOOST_TEST(core.policy().hash == mock::sha256_hex("{}"));
    BOOST_TEST(core.policy().version == "1");
    const auto h = core.set_policy(boost::json::object{{"rate_limits", boost::json::object{}}});
    BOOST_TEST(h == mock::sha256_hex(R"({"rate_limits":{}})"));
    BOOST_TEST(core.policy().version == "2");
}

BOOST_AUTO_TEST_CASE(stream_frames_have_ids_types_and_data) {
    fake_clock clock;
    mock_backend_options o;
    o.keepalive = 15s;
    mock::mock_core core(o, fns(clock));
    auto b = bootstrap(core);
    auto opened = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    BOOST_REQUIRE(opened.id != 0);
    std::string out;
    BOOST_TEST((core.next_frames(opened.id, out) == mock::mock_stream_end::none));
    BOOST_TEST(out.empty());

    const auto id = enqueue(core, "summarize");
    out.clear();
    BOOST_TEST((core.next_frames(opened.id, out) == mock::mock_stream_end::none));
    proto::task t;
    t.task_id = id;
    t.capability = "summarize";
    t.input = boost::json::object{{"n", 1}};
    t.workspace_id = std::string(sekuire::testing::mock_default_workspace);
    BOOST_TEST(out == "id: 1\nevent: task\ndata: " + proto::encode(t) + "\n\n");
    BOOST_TEST((core.task(id)->status == mock_task_status::delivered));

    clock.advance(14s);
    out.clear();
    core.next_frames(opened.id, out);
    BOOST_TEST(out.empty());
    clock.advance(1s);
    core.next_frames(opened.id, out);
    BOOST_TEST(out == ": keep-alive\n\n");
    out.clear();
    core.next_frames(opened.id, out);
    BOOST_TEST(out.empty());
}

// A stream with large tasks pending writes them a few at a time (mock_stream_write_budget),
// not all into one buffer; each frame is the task's encoding, and the task keeps its input.
BOOST_AUTO_TEST_CASE(large_frames_are_written_a_budget_at_a_time) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    auto s = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    BOOST_REQUIRE(s.id != 0);
    const std::string big(sekuire::testing::detail::mock_stream_write_budget, 'x');
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
        auto r = task("summarize");
        r.input = boost::json::object{{"n", i}, {"data", big}};
        sekuire::error_code ec;
        ids.push_back(core.enqueue_task(std::move(r), ec));
        BOOST_REQUIRE(!ec);
    }
    const auto small = enqueue(core, "summarize");
    for (int i = 0; i < 3; ++i) {
        std::string out;
        BOOST_TEST((core.next_frames(s.id, out) == mock::mock_stream_end::none));
        proto::task t;
        t.task_id = ids[static_cast<std::size_t>(i)];
        t.capability = "summarize";
        t.input = boost::json::object{{"n", i}, {"data", big}};
        t.workspace_id = std::string(sekuire::testing::mock_default_workspace);
        // One frame per call: the first frame alone is over the budget.
        BOOST_TEST(out == "id: " + std::to_string(i + 1) + "\nevent: task\ndata: " + proto::encode(t) + "\n\n");
        BOOST_TEST((core.task(t.task_id)->status == mock_task_status::delivered));
        BOOST_TEST(core.task(t.task_id)->input == t.input); // lent to the encoder, given back
    }
    std::string out;
    core.next_frames(s.id, out);
    BOOST_TEST(out.find(small) != std::string::npos);
    BOOST_TEST(out.find("id: 4\n") == 0u);
}

BOOST_AUTO_TEST_CASE(closing_a_stream_requeues_unwritten_tasks) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    auto s1 = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    const auto id = enqueue(core, "summarize"); // chosen for s1, not written
    core.close_stream(s1.id);
    core.close_stream(s1.id); // idempotent
    BOOST_TEST((core.task(id)->status == mock_task_status::queued));
    auto s2 = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    std::string out;
    core.next_frames(s2.id, out);
    BOOST_TEST(out.find(id) != std::string::npos);
    BOOST_TEST(core.open_streams() == 1u);
}

BOOST_AUTO_TEST_CASE(streams_are_cut_and_revoked) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    enqueue(core, "summarize");
    enqueue(core, "summarize");
    auto cut = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::size_t(1));
    std::string out;
    BOOST_TEST((core.next_frames(cut.id, out) == mock::mock_stream_end::cut));
    BOOST_TEST(out.find("id: 1\n") != std::string::npos);
    BOOST_TEST(out.find("id: 2\n") == std::string::npos);
    core.close_stream(cut.id);

    auto s = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    out.clear();
    core.next_frames(s.id, out);
    BOOST_TEST(out.find("id: 2\n") != std::string::npos);
    sekuire::error_code ec;
    BOOST_TEST(core.revoke(b.installation_id, "gone", 1000, ec));
    out.clear();
    BOOST_TEST((core.next_frames(s.id, out) == mock::mock_stream_end::done));
    BOOST_TEST(out.find("event: revoked\n") != std::string::npos);
    const auto data_at = out.find("data: ") + 6;
    proto::heartbeat_response shape;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(out.substr(data_at, out.find('\n', data_at) - data_at), shape, err));
    BOOST_REQUIRE(shape.revoked);
    BOOST_TEST(shape.revoked->reason == "gone");
    auto refused = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt);
    BOOST_TEST(refused.id == 0u);
    BOOST_TEST(refused.error.status == 403);
    core.shutdown();
    BOOST_TEST((core.next_frames(s.id, out) == mock::mock_stream_end::cut));
}

BOOST_AUTO_TEST_CASE(faults_are_taken_in_order_and_counted) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    mock_fault f;
    f.path_prefix = "/a/";
    f.status = 500;
    f.count = 2;
    mock_fault cut;
    cut.cut_stream_after_events = 3;
    BOOST_TEST(add(core, f) == 1u);
    BOOST_TEST(add(core, cut) == 2u);
    BOOST_TEST(!core.take_fault("/other", false));
    BOOST_TEST(core.take_fault("/a/x", false)->status.value_or(0) == 500);
    BOOST_TEST(core.take_fault("/a/x", true)->status.value_or(0) == 500);
    BOOST_TEST(!core.take_fault("/a/x", false));
    BOOST_TEST(core.take_fault("/a/x", true)->cut_stream_after_events.value_or(0) == 3u);
    BOOST_TEST(!core.take_fault("/a/x", true));
}

BOOST_AUTO_TEST_CASE(request_counts_are_bounded) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    for (std::size_t i = 0; i < mock::mock_max_counted_paths + 10; ++i) core.count_request("/p/" + std::to_string(i));
    core.count_request("/p/0");
    BOOST_TEST(core.request_count("/p/0") == 2u);
    BOOST_TEST(core.request_counts().size() == mock::mock_max_counted_paths + 1);
    BOOST_TEST(core.request_count("(other)") == 10u);
}

proto::completion_request completion_of(const std::string& installation_id) {
    proto::completion_request req;
    req.installation_id = installation_id;
    req.status = proto::task_status::completed;
    req.output = boost::json::object{{"ok", true}};
    return req;
}

BOOST_AUTO_TEST_CASE(extreme_durations_from_cpp_are_clamped) {
    // The admin routes bound these; the member functions clamp them, so that no deadline
    // computed from them overflows (UBSan watches this test).
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    sekuire::error_code ec;
    BOOST_TEST(core.revoke(b.installation_id, "gone", std::numeric_limits<std::int64_t>::max(), ec));
    BOOST_TEST(!ec);
    const auto info = core.installation(b.installation_id);
    BOOST_REQUIRE(info && info->revocation);
    BOOST_TEST(info->revocation->shutdown_timeout_ms.value_or(0) == proto::timing::max_shutdown_timeout.count());
    // Results are taken until the clamped shutdown timeout has passed.
    const auto task_id = enqueue(core, "summarize");
    clock.advance(proto::timing::max_shutdown_timeout - 1ms);
    BOOST_TEST(core.complete(task_id, authz(b.runtime_token), proto::encode(completion_of(b.installation_id))).status ==
               200);
    clock.advance(2ms);
    const auto late = enqueue(core, "summarize");
    auto refused = core.complete(late, authz(b.runtime_token), proto::encode(completion_of(b.installation_id)));
    BOOST_TEST(refused.status == 403);
    BOOST_TEST(proto::error_code_of(refused.body) == std::string(proto::error_code_name::installation_revoked));

    sekuire::testing::mock_install_token_request forever;
    forever.ttl = std::chrono::seconds::max();
    sekuire::testing::mock_install_token_request long_ago;
    long_ago.ttl = std::chrono::seconds::min();
    const auto valid = core.create_install_token(forever);
    const auto expired = core.create_install_token(long_ago);
    proto::bootstrap_request req;
    req.agent_id = "agent-2";
    req.install_token = valid;
    BOOST_TEST(core.bootstrap(proto::encode(req)).status == 201);
    req.install_token = expired;
    auto gone = core.bootstrap(proto::encode(req));
    BOOST_TEST(gone.status == 410);
    BOOST_TEST(proto::error_code_of(gone.body) == std::string(proto::error_code_name::install_token_expired));
}

BOOST_AUTO_TEST_CASE(commands_clamp_their_shutdown_timeout) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    sekuire::error_code ec;
    core.send_command(b.installation_id, "terminate", "", std::numeric_limits<std::int64_t>::max(), ec);
    BOOST_REQUIRE(!ec);
    proto::heartbeat_request hb;
    auto r = core.heartbeat(b.installation_id, authz(b.runtime_token), proto::encode(hb));
    BOOST_REQUIRE_EQUAL(r.status, 200);
    const auto m = decoded<proto::heartbeat_response>(r);
    BOOST_REQUIRE(m.command);
    BOOST_TEST(m.command->shutdown_timeout_ms.value_or(0) == proto::timing::max_shutdown_timeout.count());
}

BOOST_AUTO_TEST_CASE(a_result_for_another_installation_is_403_not_401) {
    // A 401 would send the client to refresh its token and retry for nothing.
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    auto b = bootstrap(core);
    const auto task_id = enqueue(core, "summarize");
    auto r = core.complete(task_id, authz(b.runtime_token), proto::encode(completion_of("inst_other")));
    BOOST_TEST(r.status == 403);
    BOOST_TEST(proto::error_code_of(r.body) == std::string(mock::mock_installation_mismatch));
    BOOST_TEST((core.task(task_id)->status != mock_task_status::completed));
}

BOOST_AUTO_TEST_CASE(waiting_for_an_unknown_task_returns_false_at_once) {
    fake_clock clock;
    mock::mock_core core(mock_backend_options{}, fns(clock));
    const auto before = std::chrono::steady_clock::now();
    BOOST_TEST(!core.wait_for_task("task_none", mock_task_status::completed, 20s));
    // Without the check it would wait out the 20 s.
    BOOST_TEST((std::chrono::steady_clock::now() - before < 10s));
}

// -- the boundary between the core and the HTTP layer: wakes -------------------------------

// Counts the wakes of one stream (the HTTP layer would schedule a pull).
struct wake_counter {
    std::shared_ptr<int> n = std::make_shared<int>(0);
    std::function<void()> fn() const {
        return [n = n] { ++*n; };
    }
    int get() const { return *n; }
};

BOOST_AUTO_TEST_CASE(streams_are_woken_when_they_have_something_to_write) {
    fake_clock clock;
    mock_backend_options o;
    o.keepalive = 15s;
    mock::mock_core core(o, fns(clock));
    auto b = bootstrap(core);
    wake_counter w1, w2;
    auto s1 = core.open_stream(b.installation_id, authz(b.runtime_token), std::string("summarize"), "", std::nullopt,
                               w1.fn());
    auto s2 = core.open_stream(b.installation_id, authz(b.runtime_token), std::string("other"), "", std::nullopt,
                               w2.fn());
    BOOST_REQUIRE(s1.id != 0 && s2.id != 0);
    std::string out;
    core.next_frames(s1.id, out);
    core.next_frames(s2.id, out);
    const int w1_start = w1.get(), w2_start = w2.get();

    // A task is for the stream that offers its capability: that one is woken, once.
    const auto id = enqueue(core, "summarize");
    BOOST_TEST(w1.get() == w1_start + 1);
    BOOST_TEST(w2.get() == w2_start);
    out.clear();
    core.next_frames(s1.id, out);
    BOOST_TEST(out.find(id) != std::string::npos);

    // A command wakes every stream of its installation; a policy change every stream.
    sekuire::error_code ec;
    core.send_command(b.installation_id, "pause", "", std::nullopt, ec);
    BOOST_TEST(w1.get() == w1_start + 2);
    BOOST_TEST(w2.get() == w2_start + 1);
    core.set_policy(boost::json::object{{"rate_limits", boost::json::object{}}});
    BOOST_TEST(w1.get() == w1_start + 3);
    BOOST_TEST(w2.get() == w2_start + 2);

    // Nothing due: the periodic check wakes nobody; a keep-alive due: it wakes the stream.
    out.clear();
    core.next_frames(s1.id, out);
    core.next_frames(s2.id, out);
    const int w1_idle = w1.get(), w2_idle = w2.get();
    core.wake_ready_streams();
    BOOST_TEST(w1.get() == w1_idle);
    BOOST_TEST(w2.get() == w2_idle);
    clock.advance(15s);
    core.wake_ready_streams();
    BOOST_TEST(w1.get() == w1_idle + 1);
    BOOST_TEST(w2.get() == w2_idle + 1);
    out.clear();
    core.next_frames(s1.id, out);
    BOOST_TEST(out == ": keep-alive\n\n");

    // Revocation and shutdown wake the streams, which then end.
    const int before_revoke = w1.get();
    BOOST_TEST(core.revoke(b.installation_id, "gone", 0, ec));
    BOOST_TEST(w1.get() == before_revoke + 1);
    out.clear();
    BOOST_TEST((core.next_frames(s1.id, out) == mock::mock_stream_end::done));
    core.close_stream(s1.id);
    const int before_shutdown = w2.get();
    core.shutdown();
    BOOST_TEST(w2.get() >= before_shutdown + 1);
    BOOST_TEST((core.next_frames(s2.id, out) == mock::mock_stream_end::cut));
}

BOOST_AUTO_TEST_CASE(a_redelivery_wakes_the_stream_it_goes_to) {
    fake_clock clock;
    mock_backend_options o;
    o.redelivery_timeout = 60s;
    o.keepalive = std::chrono::hours(1);
    mock::mock_core core(o, fns(clock));
    auto b = bootstrap(core);
    wake_counter w;
    auto s = core.open_stream(b.installation_id, authz(b.runtime_token), std::nullopt, "", std::nullopt, w.fn());
    const auto id = enqueue(core, "summarize");
    std::string out;
    core.next_frames(s.id, out);
    BOOST_TEST((core.task(id)->status == mock_task_status::delivered));
    const int before = w.get();
    clock.advance(60s);
    core.wake_ready_streams(); // the redelivery is due on the clock: the task is queued again
    BOOST_TEST(w.get() > before);
    out.clear();
    core.next_frames(s.id, out);
    BOOST_TEST(out.find(id) != std::string::npos);
    BOOST_TEST(core.task(id)->delivery_count == 2);
}

// -- the HTTP layer's helpers ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(route_patterns_match_as_the_regular_expressions_do) {
    const std::vector<const char*> patterns = {
        proto::path::refresh_route, proto::path::heartbeat_route, proto::path::worker_heartbeat_route,
        proto::path::revoke_route,  proto::path::complete_route,  proto::path::active_policy_route,
        proto::path::task_stream_route, sekuire::testing::mock_admin_path::task_route,
        sekuire::testing::mock_admin_path::installation_route, sekuire::testing::mock_admin_path::commands_route};
    const std::vector<std::string> paths = {
        "/api/v1/installations/inst_1/heartbeat", "/api/v1/installations//heartbeat",
        "/api/v1/installations/a/b/heartbeat", "/api/v1/installations/inst_1/worker/heartbeat",
        "/api/v1/installations/inst_1/tasks/stream", "/api/v1/installations/inst_1/tasks/streamx",
        "/api/v1/tasks/task_1/complete", "/api/v1/workspaces/ws/policies/active", "/admin/v1/tasks/task_1",
        "/admin/v1/tasks/", "/admin/v1/installations/inst_1", "/admin/v1/installations/inst_1/commands",
        "/admin/v1/installations/inst 1/commands", "/x/api/v1/installations/inst_1/heartbeat", "", "/"};
    for (const char* pattern : patterns) {
        const std::regex re(pattern);
        const mock::mock_route_pattern mine(pattern);
        for (const auto& path : paths) {
            std::smatch m;
            const bool expected = std::regex_match(path, m, re);
            std::string id;
            BOOST_TEST(mine.match(path, id) == expected, pattern << " on " << path);
            if (expected) BOOST_TEST(id == m[1].str());
        }
    }
}

BOOST_AUTO_TEST_CASE(paths_and_queries_are_percent_decoded) {
    BOOST_TEST(mock::mock_url_decode("/a%20b/%2Fc+d", false) == "/a b//c+d");
    BOOST_TEST(mock::mock_url_decode("a+b%2", true) == "a b%2");
    BOOST_TEST(mock::mock_url_decode("%zz%4", false) == "%zz%4");
    BOOST_TEST(mock::mock_query_param("capabilities=a,b%2Cc&x=1", "capabilities").value_or("-") == "a,b,c");
    BOOST_TEST(mock::mock_query_param("x=1&capabilities", "capabilities").value_or("-") == "");
    BOOST_TEST(mock::mock_query_param("x=1&capabilities=a&capabilities=b", "capabilities").value_or("-") == "a");
    BOOST_TEST(!mock::mock_query_param("x=1", "capabilities"));
    BOOST_TEST(!mock::mock_query_param("", "capabilities"));
}

BOOST_AUTO_TEST_SUITE_END()
