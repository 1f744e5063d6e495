// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/core/worker_core.hpp>

// The worker's rules of docs/protocol.md, one named test each, driven on the plain core: a
// tiny driver answers its `send` effects with canned responses, feeds the task stream by
// hand and stands in for the handlers. No transport, no backend, no thread, no sleep.

#include "core_rig.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

using namespace core_rig;
namespace bdata = boost::unit_test::data;
namespace protocol = sekuire::protocol;
using sekuire::errc;
using sekuire::error_code;
using sekuire::installation_credentials;
using sekuire::worker_effect;

BOOST_TEST_DONT_PRINT_LOG_VALUE(sekuire::errc)

namespace boost {
namespace test_tools {
namespace tt_detail {
template <>
struct print_log_value<sekuire::worker_state> {
    void operator()(std::ostream& os, sekuire::worker_state s) { os << sekuire::to_string(s); }
};
} // namespace tt_detail
} // namespace test_tools
} // namespace boost

namespace {

const double top = std::nextafter(1.0, 0.0);

installation_credentials full_creds(const std::string& runtime = "srt_live", std::optional<ms> expires_in = std::nullopt) {
    installation_credentials c;
    c.installation_id = "inst_1";
    c.refresh_token = "srf_refresh_1";
    c.runtime_token = runtime;
    if (expires_in) c.runtime_token_expires_at = wall_base() + *expires_in;
    c.token_version = 1;
    return c;
}

std::string sse(const std::string& type, const std::string& data, const std::string& id = {}) {
    std::string s = "event: " + type + "\n";
    if (!id.empty()) s += "id: " + id + "\n";
    return s + "data: " + data + "\n\n";
}

std::string task_json(const std::string& id, const std::string& capability = "search", const std::string& extra = {}) {
    return R"({"task_id":")" + id + R"(","capability":")" + capability + R"(","input":{"q":1})" + extra + "}";
}

const std::string accepted = R"({"accepted":true})";

// The driver: performs the core's effects with canned results and keeps what it asked.
struct rig {
    manual_time time;
    steered_random rnd;
    std::optional<installation_credentials> store;
    error_code read_error, save_error, writable_error;
    bool lock_busy = false;

    struct outstanding {
        sekuire::operation_id op;
        sekuire::http_request request;
    };
    std::vector<outstanding> outbox;
    std::vector<sekuire::http_request> sent;
    std::vector<std::string> trace;
    std::vector<sekuire::log_line> logs;
    std::vector<protocol::command> commands;
    std::vector<sekuire::revocation_info> revocations;
    std::vector<protocol::task> runs;
    std::vector<std::string> cancels;
    int closes = 0;
    int control_wakes = 0; // wake_control effects asked for
    bool finished = false;
    std::optional<sekuire::operation_id> stream;
    std::unique_ptr<sekuire::worker_core> core;
    // Set: the stream's bytes are decoded first and fed with on_stream_chunk() (as
    // basic_worker does), instead of on_stream_data().
    std::optional<sekuire::worker_core::stream_decoder> decoder;
    sekuire::worker_core::stream_chunk chunk;

    static sekuire::worker_options defaults() {
        sekuire::worker_options o;
        o.agent_id = "agent-7";
        o.installation_id = "inst_1";
        o.runtime_token = "srt_live";
        o.workspace_id = "ws_1";
        o.fetch_policy = false;
        return o;
    }

    explicit rig(sekuire::worker_options o = defaults(), std::vector<std::string> caps = {"search"}) {
        o.random = rnd.source();
        o.logger = [](sekuire::log_level, std::string_view) {};
        core = std::make_unique<sekuire::worker_core>(std::move(o));
        for (const auto& c : caps) core->add_capability(c);
    }

    void advance() {
        core->store_seen(store, read_error);
        core->advance(time.now());
        pump();
    }
    void advance_to(ms t) {
        time.to(t);
        advance();
    }

    // Opens the stream when the core says so; the request, or nothing.
    std::optional<sekuire::http_request> connect() {
        core->store_seen(store, read_error);
        auto d = core->stream_connect(time.now());
        pump();
        if (d.request) stream = d.op;
        return d.request;
    }
    void head(int status, sekuire::header_list headers = {}) {
        if (decoder) decoder->start(status);
        core->on_stream_head(*stream, status, headers, time.now());
        pump();
    }
    bool data(const std::string& bytes) {
        bool go_on = false;
        if (decoder) {
            chunk.clear();
            decoder->decode(bytes, chunk);
            go_on = core->on_stream_chunk(*stream, chunk, time.now());
        } else {
            go_on = core->on_stream_data(*stream, bytes, time.now());
        }
        pump();
        return go_on;
    }
    void end(error_code ec = {}) {
        core->on_stream_end(*stream, ec, time.now());
        stream.reset();
        pump();
    }
    // Connects, and the backend accepts the stream.
    void open_stream() {
        BOOST_REQUIRE(connect().has_value());
        head(200);
    }

    void handler_done(const std::string& id, protocol::task_status status = protocol::task_status::completed,
                      boost::json::value output = boost::json::object{{"ok", true}},
                      std::optional<protocol::completion_error> err = std::nullopt) {
        core->on_handler_done(id, status, std::move(output), std::move(err), time.now());
        pump();
    }

    void pump() {
        for (int guard = 0; guard < 100; ++guard) {
            std::vector<worker_effect> effects = std::move(core->effects());
            core->effects().clear();
            if (effects.empty()) return;
            for (auto& e : effects) perform(e);
        }
        BOOST_FAIL("the core asked for effects without end");
    }

    void perform(worker_effect& e) {
        using t = worker_effect::type;
        const auto now = time.now();
        switch (e.what) {
        case t::send:
            trace.push_back("send " + line_of(e.request));
            sent.push_back(e.request);
            outbox.push_back({e.op, e.request});
            return;
        case t::close_stream:
            trace.push_back("close_stream");
            ++closes;
            return;
        case t::run_handler:
            trace.push_back("run " + e.task.task_id);
            runs.push_back(e.task);
            return;
        case t::cancel_handler:
            trace.push_back("cancel " + e.text);
            cancels.push_back(e.text);
            return;
        case t::lock_refresh:
            trace.push_back("lock");
            if (lock_busy)
                core->on_refresh_lock(e.op, false, std::nullopt, errc::store_locked, now);
            else
                core->on_refresh_lock(e.op, true, store, read_error, now);
            return;
        case t::unlock_refresh: trace.push_back("unlock"); return;
        case t::save:
            trace.push_back("save");
            if (!save_error) store = e.credentials;
            core->on_stored(e.op, save_error, now);
            return;
        case t::clear:
            trace.push_back("clear");
            if (!save_error) store.reset();
            core->on_stored(e.op, save_error, now);
            return;
        case t::adopt_token:
        case t::forget_token: BOOST_FAIL("a worker never asks for adopt_token or forget_token"); return;
        case t::check_writable:
            trace.push_back("check_writable");
            core->on_writable(e.op, writable_error, "/var/lib/sekuire/credentials.json", now);
            return;
        case t::wake_control: ++control_wakes; return;
        case t::wake_stream: return;
        case t::log: logs.push_back(e.line); return;
        case t::command:
            trace.push_back(std::string("command ") + protocol::to_string(e.command.type));
            commands.push_back(e.command);
            return;
        case t::revoked:
            trace.push_back("revoked");
            revocations.push_back(e.revocation);
            return;
        case t::finished:
            trace.push_back("finished");
            finished = true;
            return;
        }
    }

    // The outstanding requests with this line, oldest first.
    std::size_t waiting(const std::string& line) const {
        std::size_t n = 0;
        for (const auto& o : outbox)
            if (line_of(o.request) == line) ++n;
        return n;
    }
    const sekuire::http_request& request(const std::string& line) {
        for (const auto& o : outbox)
            if (line_of(o.request) == line) return o.request;
        BOOST_FAIL("no outstanding request " + line);
        return outbox.front().request;
    }
    void respond(const std::string& line, sekuire::http_response r) {
        for (auto it = outbox.begin(); it != outbox.end(); ++it) {
            if (line_of(it->request) != line) continue;
            const auto op = it->op;
            outbox.erase(it);
            core->on_response(op, {}, std::move(r), time.now());
            pump();
            return;
        }
        BOOST_FAIL("no outstanding request " + line);
    }
    void respond(const std::string& line, int status, std::string body = {}, sekuire::header_list headers = {}) {
        respond(line, answer(status, std::move(body), std::move(headers)));
    }
    void fail(const std::string& line, error_code ec) {
        for (auto it = outbox.begin(); it != outbox.end(); ++it) {
            if (line_of(it->request) != line) continue;
            const auto op = it->op;
            outbox.erase(it);
            core->on_response(op, ec, {}, time.now());
            pump();
            return;
        }
        BOOST_FAIL("no outstanding request " + line);
    }

    // Starts: the first control step (its worker heartbeat answered) and an open stream.
    void start() {
        advance();
        respond(heartbeat_line(), 200, "{}");
        open_stream();
    }

    static std::string heartbeat_line(const std::string& inst = "inst_1") {
        return "POST /api/v1/installations/" + inst + "/worker/heartbeat";
    }

    bool logged(const std::string& needle) const {
        for (const auto& l : logs)
            if (l.text.find(needle) != std::string::npos) return true;
        return false;
    }
    std::size_t count(const std::string& what) const {
        std::size_t n = 0;
        for (const auto& t : trace)
            if (t == what) ++n;
        return n;
    }
    sekuire::worker_status status() const { return core->status(true); }
};

const std::string stream_line = "GET /api/v1/installations/inst_1/tasks/stream?capabilities=search";
const std::string refresh_line = "POST /api/v1/installations/inst_1/refresh";
const std::string bootstrap_line = "POST /api/v1/installations/bootstrap";
const std::string policy_line = "GET /api/v1/workspaces/ws_1/policies/active";
std::string complete_line(const std::string& id) { return "POST /api/v1/tasks/" + id + "/complete"; }

std::string error_code_in(const sekuire::http_request& r) {
    const auto b = body_of(r);
    return std::string(b.at("error").as_object().at("code").as_string());
}

} // namespace

BOOST_AUTO_TEST_SUITE(worker_core)

// ==== Authentication (the worker) ===========================================================

struct auth_row {
    std::string name;
    std::function<void(sekuire::worker_options&, std::optional<installation_credentials>&)> setup;
    std::string first;  // the first request's line
    std::string bearer; // its Authorization (empty: none)
};
std::ostream& operator<<(std::ostream& os, const auth_row& r) { return os << r.name; }

const auth_row auth_rows[] = {
    {"a runtime token and the installation id from the options",
     [](sekuire::worker_options&, std::optional<installation_credentials>&) {}, rig::heartbeat_line(), "Bearer srt_live"},
    {"a runtime token from the options, the installation id from the shared store",
     [](sekuire::worker_options& o, std::optional<installation_credentials>& s) {
         o.installation_id.clear();
         installation_credentials c;
         c.installation_id = "inst_store";
         s = c;
     },
     rig::heartbeat_line("inst_store"), "Bearer srt_live"},
    {"a token provider", [](sekuire::worker_options& o, std::optional<installation_credentials>&) {
         o.runtime_token.clear();
         o.token_provider = [] { return std::optional<std::string>("srt_provided"); };
     },
     rig::heartbeat_line(), "Bearer srt_provided"},
    {"the installation id and a refresh token: the refresh first",
     [](sekuire::worker_options& o, std::optional<installation_credentials>&) {
         o.runtime_token.clear();
         o.refresh_token = "srf_refresh_1";
     },
     refresh_line, ""},
    {"stored credentials with an expired runtime token: the refresh first",
     [](sekuire::worker_options& o, std::optional<installation_credentials>& s) {
         o.runtime_token.clear();
         o.installation_id.clear();
         s = full_creds("srt_old", -1s);
     },
     refresh_line, ""},
    {"only the install token: the bootstrap",
     [](sekuire::worker_options& o, std::optional<installation_credentials>&) {
         o.runtime_token.clear();
         o.installation_id.clear();
         o.install_token = "skt_install";
     },
     bootstrap_line, ""},
};

// docs/protocol.md "Authentication", Worker: runtime token (options, token_provider or the
// shared store), then installation id + refresh token, then the install token; a runtime
// token alone takes the installation id from the options or the credential store.
BOOST_DATA_TEST_CASE(the_worker_authenticates_in_the_taskworkers_order, bdata::make(auth_rows), row) {
    auto o = rig::defaults();
    std::optional<installation_credentials> stored;
    row.setup(o, stored);
    rig r(o);
    r.store = stored;
    r.advance();
    BOOST_REQUIRE(!r.sent.empty());
    const auto& first = r.sent.front();
    BOOST_TEST(line_of(first) == row.first);
    BOOST_TEST(header(first, "Authorization") == row.bearer);
    if (row.first == refresh_line) {
        BOOST_TEST(body_of(first).at("refresh_token").as_string() == "srf_refresh_1");
        r.respond(refresh_line, 200, refresh_body("srt_fresh"));
        BOOST_TEST(r.store->runtime_token == "srt_fresh"); // saved before use
        r.advance();
        BOOST_TEST(header(r.request(rig::heartbeat_line()), "Authorization") == "Bearer srt_fresh");
        BOOST_TEST(header(*r.connect(), "Authorization") == "Bearer srt_fresh");
    } else if (row.first == bootstrap_line) {
        BOOST_TEST(r.trace.at(0) == "check_writable");
        BOOST_TEST(body_of(first).at("install_token").as_string() == "skt_install");
        r.respond(bootstrap_line, 201, bootstrap_body("inst_1", "srt_boot", "srf_boot"));
        BOOST_TEST(r.store->runtime_token == "srt_boot");
        r.advance();
        BOOST_TEST(header(r.request(rig::heartbeat_line()), "Authorization") == "Bearer srt_boot");
    }
}

// docs/protocol.md "Authentication", Worker: options that come from the environment say so
// (`recovered_from_env` in the worker's status).
BOOST_AUTO_TEST_CASE(credentials_from_the_environment_are_shown_in_the_status) {
    auto o = rig::defaults();
    o.recovered_from_env = true;
    rig r(o);
    r.advance();
    BOOST_TEST(r.status().recovered_from_env);
    rig plain;
    plain.advance();
    BOOST_TEST(!plain.status().recovered_from_env);
}

// docs/protocol.md "Authentication", Worker: its first authentication and connection wait
// the same startup jitter.
BOOST_AUTO_TEST_CASE(the_workers_first_step_and_connection_wait_the_startup_jitter) {
    auto o = rig::defaults();
    o.startup_jitter = ms(2000);
    rig r(o);
    *r.rnd.u = 0.5;
    r.advance();
    BOOST_TEST(r.sent.empty());
    BOOST_TEST((r.core->next_wake() == at(1000ms)));
    BOOST_TEST(!r.connect().has_value());
    BOOST_TEST((r.core->stream_next() == at(1000ms)));
    r.advance_to(999ms);
    BOOST_TEST(r.sent.empty());
    r.advance_to(1000ms);
    BOOST_TEST(r.waiting(rig::heartbeat_line()) == 1u);
    BOOST_TEST(r.connect().has_value());
}

// docs/protocol.md "Authentication": before an install token (single-use) is spent, the store
// is checked writable; when it is not, the bootstrap is not attempted, the error names the
// store's path, and the check is retried with backoff.
BOOST_AUTO_TEST_CASE(an_unwritable_store_does_not_spend_the_workers_install_token) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    o.install_token = "skt_install";
    rig r(o);
    r.writable_error = errc::store_io;
    r.advance();
    BOOST_TEST(r.count("check_writable") == 1u);
    BOOST_TEST(r.sent.empty());
    BOOST_TEST(r.status().last_error.find("/var/lib/sekuire/credentials.json") != std::string::npos);
    r.writable_error = {};
    r.advance_to(99ms);
    BOOST_TEST(r.count("check_writable") == 1u);
    r.advance_to(100ms);
    BOOST_TEST(r.waiting(bootstrap_line) == 1u);
}

// docs/protocol.md "Status classes" (401 row): refresh the runtime token once
// (single-flight), retry once; a second 401 is not followed by another refresh at once.
BOOST_AUTO_TEST_CASE(a_401_on_a_worker_call_refreshes_once_and_retries_once) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    rig r(o);
    r.store = full_creds();
    r.advance();
    const std::string body = r.request(rig::heartbeat_line()).body;
    r.respond(rig::heartbeat_line(), 401, error_body("unauthorized"));
    BOOST_TEST(r.waiting(refresh_line) == 1u);
    BOOST_TEST(!has_header(r.request(refresh_line), "Authorization"));
    r.respond(refresh_line, 200, refresh_body("srt_fresh"));
    BOOST_TEST(r.waiting(rig::heartbeat_line()) == 1u);
    BOOST_TEST(header(r.request(rig::heartbeat_line()), "Authorization") == "Bearer srt_fresh");
    BOOST_TEST(r.request(rig::heartbeat_line()).body == body);
    r.respond(rig::heartbeat_line(), 401, error_body("unauthorized"));
    BOOST_TEST(r.waiting(refresh_line) == 0u);
    BOOST_TEST(r.count("send " + refresh_line) == 1u);
}

// docs/protocol.md "Status classes" (404 row): a 404 on an installation path drops the stored
// credentials and walks the chain again, after the auth backoff.
BOOST_AUTO_TEST_CASE(a_404_on_a_worker_call_drops_the_credentials_and_walks_the_chain_after_the_backoff) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    o.install_token = "skt_install";
    rig r(o);
    r.store = full_creds();
    r.advance();
    r.respond(rig::heartbeat_line(), 404, error_body("installation_not_found"));
    BOOST_TEST(r.count("clear") == 1u);
    BOOST_TEST(!r.store.has_value());
    BOOST_TEST((r.status().last_error_code == errc::installation_not_found));
    r.advance_to(99ms);
    BOOST_TEST(r.waiting(bootstrap_line) == 0u);
    r.advance_to(100ms);
    BOOST_TEST(r.waiting(bootstrap_line) == 1u);
}

// docs/protocol.md "Authentication", Worker: with nothing to authenticate with, the worker says
// so (the constructor of basic_worker refuses such options; the core reports degraded).
BOOST_AUTO_TEST_CASE(with_nothing_to_authenticate_with_the_worker_is_degraded_and_sends_nothing) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    rig r(o);
    r.advance();
    BOOST_TEST(!r.connect().has_value());
    BOOST_TEST(r.sent.empty());
    BOOST_TEST((r.status().last_error_code == errc::no_credentials));
    BOOST_TEST(r.status().state == sekuire::worker_state::degraded);
}

// ==== The task stream =======================================================================

// docs/protocol.md "Requests" and "The task stream": GET .../tasks/stream?capabilities=a,b,
// Accept text/event-stream, a fresh Authorization header on every connection.
BOOST_AUTO_TEST_CASE(the_stream_request_names_the_installation_and_the_capabilities) {
    auto o = rig::defaults();
    o.stream_idle_timeout = ms(45000);
    rig r(o, {"search", "sum marize"});
    r.advance();
    const auto req = r.connect();
    BOOST_REQUIRE(req.has_value());
    BOOST_TEST(line_of(*req) == "GET /api/v1/installations/inst_1/tasks/stream?capabilities=search,sum%20marize");
    BOOST_TEST(header(*req, "Accept") == "text/event-stream");
    BOOST_TEST(header(*req, "Authorization") == "Bearer srt_live");
    BOOST_TEST(!has_header(*req, "Last-Event-ID"));
    BOOST_TEST(req->body.empty());
    BOOST_TEST(!r.connect().has_value()); // one connection at a time
}

// docs/protocol.md "The task stream": Last-Event-ID names the last event the worker handled,
// sent when resuming.
BOOST_AUTO_TEST_CASE(last_event_id_names_the_last_event_handled_when_resuming) {
    rig r;
    r.start();
    r.data(sse("task", task_json("t1"), "e1") + ": keep-alive\n\n");
    r.data(sse("policy", R"({"active_policy_hash":""})", "e2"));
    BOOST_TEST(r.status().last_event_id == "e2");
    r.end();
    r.time.to(5s);
    const auto req = r.connect();
    BOOST_REQUIRE(req.has_value());
    BOOST_TEST(header(*req, "Last-Event-ID") == "e2");
}

struct floor_row {
    std::string name;
    ms base, cap;
    double u;
    std::string retry_field;
};
std::ostream& operator<<(std::ostream& os, const floor_row& r) { return os << r.name; }
const floor_row floor_rows[] = {
    {"the default backoff, lowest draw", 1000ms, 60000ms, 0.0, ""},
    {"a 1 ms backoff", 1ms, 1ms, top, ""},
    {"a 50 ms backoff", 10ms, 50ms, top, ""},
    {"retry: 0", 1000ms, 60000ms, 0.0, "0"},
    {"retry: 300", 1000ms, 60000ms, top, "300"},
};

// docs/protocol.md "The task stream": no reconnect comes sooner than 1 s after a connection
// ends, whatever the backoff, the draw or the stream's retry: field.
BOOST_DATA_TEST_CASE(stream_reconnect_floor_is_one_second, bdata::make(floor_rows), row) {
    auto o = rig::defaults();
    o.backoff.base = row.base;
    o.backoff.cap = row.cap;
    rig r(o);
    r.advance();
    r.open_stream();
    *r.rnd.u = row.u;
    if (!row.retry_field.empty()) r.data("retry: " + row.retry_field + "\n\n");
    r.time.to(200ms);
    r.end();
    BOOST_TEST((r.core->stream_next() == at(1200ms)));
    r.time.to(1199ms);
    BOOST_TEST(!r.connect().has_value());
    r.time.to(1200ms);
    BOOST_TEST(r.connect().has_value());
}

struct retry_field_row {
    std::string retry_field;
    ms expected;
};
std::ostream& operator<<(std::ostream& os, const retry_field_row& r) { return os << "retry: " << r.retry_field; }
const retry_field_row retry_field_rows[] = {
    {"5000", 5000ms},
    {"200", 1000ms},           // within the floor
    {"120000", 60000ms},       // within the backoff cap
    {"999999999999", 60000ms}, // over the parser's 24 h limit: the limit, then the cap
};

// docs/protocol.md "The task stream": the base of the reconnection backoff is the stream's
// retry: value when it sent one (within the floor and the backoff cap).
BOOST_DATA_TEST_CASE(the_streams_retry_field_sets_the_reconnect_base, bdata::make(retry_field_rows), row) {
    rig r;
    r.advance();
    r.open_stream();
    r.data("retry: " + row.retry_field + "\n\n");
    r.end();
    BOOST_TEST((r.core->stream_next() == at(row.expected)));
}

// docs/protocol.md "The task stream": the backoff resets only after a connection stayed open
// 15 s (one keep-alive period): a backend that cuts every connection after one event cannot
// drive a reconnect storm.
BOOST_AUTO_TEST_CASE(the_stream_backoff_resets_only_after_a_connection_stayed_open_15_s) {
    rig r;
    r.advance();
    *r.rnd.u = top;
    ms t = 0ms;
    int n = 0;
    for (const ms expected : {1000ms, 2000ms, 4000ms, 8000ms}) {
        r.time.to(t);
        r.open_stream();
        ++n;
        r.data(sse("task", task_json("t" + std::to_string(n)), std::to_string(n)));
        t += 500ms; // cut after one event
        r.time.to(t);
        r.end();
        BOOST_TEST((r.core->stream_next() == at(t + expected)));
        t += expected;
    }
    r.time.to(t);
    r.open_stream();
    t += 15s;
    r.time.to(t);
    r.end();
    BOOST_TEST((r.core->stream_next() == at(t + 1000ms)));
}

struct refusal_row {
    int status;
    std::string retry_after; // "date+120": an HTTP date 120 s after the Date header
    ms expected;
};
std::ostream& operator<<(std::ostream& os, const refusal_row& r) {
    return os << r.status << " Retry-After=" << r.retry_after;
}
const refusal_row refusal_rows[] = {
    {503, "", 1000ms},     {503, "30", 30000ms},    {429, "45", 45000ms},
    {429, "600", 300000ms}, {503, "date+120", 120000ms}, {503, "86400", 300000ms},
};

// docs/protocol.md "The task stream": a refused connection (429, 503, ...) honours Retry-After
// (seconds or HTTP date) as a minimum, up to 5 minutes.
BOOST_DATA_TEST_CASE(a_refused_stream_honours_retry_after_up_to_five_minutes, bdata::make(refusal_rows), row) {
    rig r;
    r.advance();
    BOOST_REQUIRE(r.connect().has_value());
    sekuire::header_list h{{"Date", http_date(0s)}};
    if (row.retry_after == "date+120")
        h.push_back({"Retry-After", http_date(120s)});
    else if (!row.retry_after.empty())
        h.push_back({"Retry-After", row.retry_after});
    r.head(row.status, h);
    r.data(error_body("busy"));
    r.end();
    BOOST_TEST((r.core->stream_next() == at(row.expected)));
    // The worker heartbeat goes on meanwhile.
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.advance_to(10s);
    BOOST_TEST(r.waiting(rig::heartbeat_line()) == 1u);
}

// docs/protocol.md "The task stream": 45 s without a byte cuts the connection and reconnects.
BOOST_AUTO_TEST_CASE(a_silent_stream_is_cut_after_the_idle_timeout_and_reconnects) {
    rig r;
    r.start();
    r.time.to(10s);
    r.data(": keep-alive\n\n");
    r.advance_to(55s - 1ms);
    BOOST_TEST(r.closes == 0);
    r.advance_to(55s);
    BOOST_TEST(r.closes == 1);
    r.end(errc::canceled);
    BOOST_TEST((r.status().last_error_code == errc::stream_idle));
    BOOST_TEST((r.core->stream_next() == at(56s))); // open 55 s: a fresh backoff, and the floor
}

// docs/protocol.md "The task stream": 401 refreshes the token and reconnects at once (once).
BOOST_AUTO_TEST_CASE(a_401_on_the_stream_refreshes_the_token_and_reconnects_at_once_once) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    rig r(o);
    r.store = full_creds();
    r.advance();
    BOOST_REQUIRE(r.connect().has_value());
    r.head(401);
    r.data(error_body("unauthorized"));
    r.end();
    BOOST_TEST(r.waiting(refresh_line) == 1u);
    BOOST_TEST(!r.connect().has_value()); // not before the refresh is over
    r.respond(refresh_line, 200, refresh_body("srt_fresh"));
    auto req = r.connect(); // at once
    BOOST_REQUIRE(req.has_value());
    BOOST_TEST(header(*req, "Authorization") == "Bearer srt_fresh");
    // Refused again: no second reconnection at once.
    r.head(401);
    r.end();
    if (r.waiting(refresh_line)) r.respond(refresh_line, 200, refresh_body("srt_fresher"));
    BOOST_TEST(!r.connect().has_value());
    BOOST_TEST((r.core->stream_next() >= at(1s)));
}

// docs/protocol.md "The task stream" and "Kill switch and commands": 403 installation_revoked
// on the stream shuts down: the credentials are removed, the revocation callback is called
// with 10 s when no timeout is given, and the worker drains.
BOOST_AUTO_TEST_CASE(a_403_installation_revoked_on_the_stream_shuts_the_worker_down) {
    rig r;
    r.store = full_creds();
    r.advance();
    BOOST_REQUIRE(r.connect().has_value());
    r.head(403);
    r.data(error_body("installation_revoked", "revoked by an operator"));
    r.end();
    BOOST_REQUIRE(r.revocations.size() == 1u);
    BOOST_TEST(r.revocations[0].reason == "revoked by an operator");
    BOOST_TEST(r.revocations[0].shutdown_timeout.count() == 10000);
    BOOST_TEST(r.count("clear") == 1u);
    BOOST_TEST(!r.store.has_value());
    BOOST_TEST(r.core->revoked());
    BOOST_TEST(r.core->shutting_down());
    r.advance();
    BOOST_TEST(r.finished);
    BOOST_TEST(r.status().state == sekuire::worker_state::revoked);
    BOOST_TEST(!r.connect().has_value());
}

// docs/protocol.md "Kill switch and commands" and "The task stream": a revoked event is acted
// on before the next event of the same chunk, and Last-Event-ID stays at the last event
// handled, so the events after the cut are asked for again.
BOOST_AUTO_TEST_CASE(a_revoked_event_is_acted_on_before_the_next_event_of_the_same_chunk) {
    rig r;
    r.start();
    const bool go_on = r.data(sse("task", task_json("t1"), "1") + sse("revoked", R"({"reason":"stolen"})", "2") +
                              sse("task", task_json("t3"), "3"));
    BOOST_TEST(!go_on);
    BOOST_TEST(r.runs.size() == 1u); // t1 only
    BOOST_TEST(r.revocations.at(0).reason == "stolen");
    BOOST_TEST(r.closes == 1);
    BOOST_TEST(r.status().last_event_id == "2");
}

// ==== Task admission ========================================================================

enum class setup { none, paused, deny_search, allow_summ_only, allow_sea_prefix, no_quota, deny_all };
struct admission_row {
    std::string name;
    setup how;
    std::string capability;
    std::string extra; // more task fields
    std::string expected_status; // "run" when the handler runs
    std::string expected_code;
};
std::ostream& operator<<(std::ostream& os, const admission_row& r) { return os << r.name; }
const admission_row admission_rows[] = {
    {"admitted", setup::none, "search", "", "run", ""},
    {"paused", setup::paused, "search", "", "rejected", "worker_paused"},
    {"paused comes before no handler", setup::paused, "unknown", "", "rejected", "worker_paused"},
    {"no handler", setup::none, "unknown", "", "rejected", "no_handler"},
    {"no handler comes before the policy", setup::deny_all, "unknown", "", "rejected", "no_handler"},
    {"denied by a pattern", setup::deny_search, "search", "", "rejected", "capability_denied"},
    {"not in a non-empty allowed list", setup::allow_summ_only, "search", "", "rejected", "capability_denied"},
    {"allowed by a prefix pattern", setup::allow_sea_prefix, "search", "", "run", ""},
    {"over the rate limit", setup::no_quota, "search", "", "rejected", "rate_limited"},
    {"the gateway comes before the deadline", setup::deny_search, "search", R"(,"deadline_at":")" + iso(-1s) + "\"",
     "rejected", "capability_denied"},
    {"a deadline already passed", setup::none, "search", R"(,"deadline_at":")" + iso(-1s) + "\"", "failed",
     "handler_timeout"},
    {"a deadline ahead", setup::none, "search", R"(,"deadline_at":")" + iso(30s) + "\"", "run", ""},
};

protocol::policy_document policy_for(setup how) {
    protocol::policy_document p;
    p.hash = "h1";
    switch (how) {
    case setup::deny_search: p.denied_tools = {"sea*"}; break;
    case setup::deny_all: p.denied_tools = {"*"}; break;
    case setup::allow_summ_only: p.allowed_tools = {"summ*"}; break;
    case setup::allow_sea_prefix: p.allowed_tools = {"sea*"}; break;
    case setup::no_quota: p.rate_limits.max_per_minute = 0; break;
    default: break;
    }
    return p;
}

// docs/protocol.md "The task stream": a task is decided before its handler runs, in this
// order: shutting down, paused, no handler, the policy gateway (capability_denied, then
// rate_limited), a deadline already passed (handler_timeout); and "Worker heartbeats and the
// policy": the capability rules.
BOOST_DATA_TEST_CASE(a_task_is_decided_in_order_before_its_handler_runs, bdata::make(admission_rows), row) {
    auto o = rig::defaults();
    if (row.how != setup::none && row.how != setup::paused) o.gateway = sekuire::policy_gateway(policy_for(row.how));
    rig r(o);
    r.start();
    if (row.how == setup::paused) r.core->set_paused(true);
    r.data(sse("task", task_json("t1", row.capability, row.extra), "1"));
    if (row.expected_status == "run") {
        BOOST_TEST(r.runs.size() == 1u);
        BOOST_TEST(r.waiting(complete_line("t1")) == 0u);
        return;
    }
    BOOST_TEST(r.runs.empty());
    const auto& req = r.request(complete_line("t1"));
    BOOST_TEST(header(req, "Authorization") == "Bearer srt_live");
    const auto b = body_of(req);
    BOOST_TEST(b.at("status").as_string() == row.expected_status);
    BOOST_TEST(error_code_in(req) == row.expected_code);
    BOOST_TEST(b.at("installation_id").as_string() == "inst_1");
}

// docs/protocol.md "The task stream": the deadline is judged by the backend's clock.
BOOST_AUTO_TEST_CASE(a_task_deadline_is_judged_by_the_backends_clock) {
    rig r;
    r.advance();
    r.respond(rig::heartbeat_line(), 200, "{}", {{"Date", http_date(1h)}}); // the local clock is 1 h behind
    r.open_stream();
    r.data(sse("task", task_json("t1", "search", R"(,"deadline_at":")" + iso(30min) + "\""), "1"));
    BOOST_TEST(r.runs.empty());
    BOOST_TEST(error_code_in(r.request(complete_line("t1"))) == "handler_timeout");
    // One ahead by the backend's clock runs, and its handler's deadline is in the backend's time.
    r.data(sse("task", task_json("t2", "search", R"(,"deadline_at":")" + iso(1h + 20s) + "\""), "2"));
    BOOST_TEST(r.runs.size() == 1u);
    r.advance_to(20s - 1ms);
    BOOST_TEST(r.cancels.empty());
    r.advance_to(20s);
    BOOST_TEST(r.cancels.size() == 1u);
}

// docs/protocol.md "The task stream" (shutting_down first) and "Results": a shutdown's refusals
// of queued tasks are handed to the control step: begin_shutdown() makes no network call.
BOOST_AUTO_TEST_CASE(queued_tasks_are_refused_shutting_down_by_the_control_step) {
    auto o = rig::defaults();
    o.max_concurrent_handlers = 1;
    rig r(o);
    r.start();
    r.data(sse("task", task_json("t1"), "1") + sse("task", task_json("t2"), "2"));
    BOOST_TEST(r.runs.size() == 1u);
    BOOST_TEST(r.status().queued == 1u);
    const std::size_t before = r.sent.size();
    r.core->begin_shutdown(30s, "test", r.time.now());
    r.pump();
    BOOST_TEST(r.sent.size() == before);
    BOOST_TEST(r.closes == 1);
    r.advance();
    const auto& req = r.request(complete_line("t2"));
    BOOST_TEST(body_of(req).at("status").as_string() == "rejected");
    BOOST_TEST(error_code_in(req) == "shutting_down");
}

// docs/protocol.md "The task stream": a task event that cannot be decoded but whose id can be
// read is reported rejected with invalid_input; one without a readable id is logged and ignored.
BOOST_AUTO_TEST_CASE(an_undecodable_task_with_a_readable_id_is_rejected_invalid_input) {
    rig r;
    r.start();
    r.data(sse("task", R"({"task_id":"t9","capability":5,"input":{}})", "1"));
    r.data(sse("task", R"({"capability":"search"})", "2"));
    r.data(sse("task", "not json", "3"));
    BOOST_TEST(r.runs.empty());
    const auto& req = r.request(complete_line("t9"));
    BOOST_TEST(body_of(req).at("status").as_string() == "rejected");
    BOOST_TEST(error_code_in(req) == "invalid_input");
    BOOST_TEST(r.outbox.size() == 1u); // nothing for the others
    BOOST_TEST(r.logged("ignored"));
}

// docs/protocol.md "The task stream" and "Results": the same task id runs once; a finished task
// delivered again gets its result again until the backend has accepted it.
BOOST_AUTO_TEST_CASE(the_same_task_runs_once_and_a_finished_one_gets_its_result_again) {
    rig r;
    r.start();
    r.data(sse("task", task_json("t1"), "1"));
    r.data(sse("task", task_json("t1"), "2")); // while it runs
    BOOST_TEST(r.runs.size() == 1u);
    BOOST_TEST(r.status().duplicates == 1u);
    r.handler_done("t1");
    const std::string result = r.request(complete_line("t1")).body;
    r.respond(complete_line("t1"), 503);
    r.data(sse("task", task_json("t1"), "3")); // not accepted yet: the result again
    BOOST_TEST(r.runs.size() == 1u);
    BOOST_TEST(r.waiting(complete_line("t1")) == 1u);
    BOOST_TEST(r.request(complete_line("t1")).body == result);
    r.respond(complete_line("t1"), 200, accepted);
    r.data(sse("task", task_json("t1"), "4")); // accepted: only the fact that it ran is kept
    BOOST_TEST(r.runs.size() == 1u);
    BOOST_TEST(r.waiting(complete_line("t1")) == 0u);
    r.advance_to(2s);
    BOOST_TEST(r.waiting(complete_line("t1")) == 0u); // the earlier 503 left no retry behind
}

// docs/protocol.md "The task stream": at most max_concurrent_handlers handlers run at once;
// others wait in a bounded queue; an executor that refuses a task leaves it queued, tried
// again at the next dispatch.
BOOST_AUTO_TEST_CASE(at_most_max_concurrent_handlers_run_and_a_refused_one_waits_in_the_queue) {
    auto o = rig::defaults();
    o.max_concurrent_handlers = 2;
    rig r(o);
    r.start();
    r.data(sse("task", task_json("a"), "1") + sse("task", task_json("b"), "2") + sse("task", task_json("c"), "3"));
    BOOST_TEST(r.runs.size() == 2u);
    BOOST_TEST(r.status().queued == 1u);
    r.handler_done("a");
    BOOST_TEST(r.runs.size() == 3u);
    BOOST_TEST(r.runs.back().task_id == "c");
    r.core->on_handler_refused(r.runs.back()); // given back whole, its input included
    r.pump();
    BOOST_TEST(r.status().queued == 1u);
    r.advance();
    BOOST_TEST(r.runs.size() == 4u);
    BOOST_TEST(r.runs.back().task_id == "c");
    BOOST_TEST(r.runs.back().input == boost::json::parse(R"({"q":1})")); // the input came back with it
    BOOST_TEST(r.core->handler_starting("c", r.time.now()));
}

// Issue 11, item 4: the control work (a threaded driver's control thread) is not woken for
// each task: a task that starts and ends with its result accepted asks for no wake-up, since
// its deadline is later than what the control work waits for and its result went out from
// the handler's own call. Only a drain wakes it, to see whether it is over.
BOOST_AUTO_TEST_CASE(tasks_handled_one_by_one_do_not_wake_the_control_work) {
    rig r;
    r.start();
    r.advance();
    const int before = r.control_wakes;
    for (int i = 0; i < 20; ++i) {
        const std::string id = "t" + std::to_string(i);
        r.data(sse("task", task_json(id), std::to_string(i + 1)));
        BOOST_TEST_REQUIRE(r.runs.size() == static_cast<std::size_t>(i + 1));
        r.handler_done(id);
        r.respond(complete_line(id), 200, accepted);
    }
    BOOST_TEST(r.control_wakes == before);
    BOOST_TEST(r.status().completed == 20u);
    // A drain is woken for: the last handler's end may end it.
    r.data(sse("task", task_json("last"), "99"));
    r.core->begin_shutdown(ms(30000), "test", r.time.now());
    r.pump();
    const int at_drain = r.control_wakes;
    r.handler_done("last");
    BOOST_TEST(r.control_wakes > at_drain);
}

// docs/protocol.md "Results": failed with handler_timeout when the handler outlives its
// deadline; its stop token fires.
BOOST_AUTO_TEST_CASE(a_handler_past_its_deadline_is_cancelled_and_reported_handler_timeout) {
    auto o = rig::defaults();
    o.handler_timeout = ms(5000);
    rig r(o);
    r.start();
    r.data(sse("task", task_json("t1"), "1"));
    r.advance_to(5s - 1ms);
    BOOST_TEST(r.cancels.empty());
    r.advance_to(5s);
    BOOST_TEST(r.cancels.size() == 1u);
    const auto& req = r.request(complete_line("t1"));
    BOOST_TEST(body_of(req).at("status").as_string() == "failed");
    BOOST_TEST(error_code_in(req) == "handler_timeout");
    r.handler_done("t1"); // late: its result is already decided
    BOOST_TEST(r.waiting(complete_line("t1")) == 1u);
}

// ==== Results ===============================================================================

struct result_row {
    int status; // 0: a transport error
    std::string body;
    std::string retry_after;
    std::string outcome; // done, dropped, retried
    ms retry_in;
};
std::ostream& operator<<(std::ostream& os, const result_row& r) {
    return os << r.status << " " << r.body << " -> " << r.outcome;
}
const result_row result_rows[] = {
    {200, accepted, "", "done", 0ms},
    {201, accepted, "", "done", 0ms},
    {409, error_body("already_completed"), "", "done", 0ms},
    {200, R"({"accepted":false})", "", "dropped", 0ms},
    {404, error_body("unknown_task"), "", "dropped", 0ms},
    {400, error_body("invalid_request"), "", "dropped", 0ms},
    {422, error_body("invalid_request"), "", "dropped", 0ms},
    {503, "", "", "retried", 100ms},
    {500, "", "", "retried", 100ms},
    {429, "", "7", "retried", 7000ms},
    {200, "garbage", "", "retried", 100ms},
    {0, "", "", "retried", 100ms},
};

// docs/protocol.md "Results": a result is retried with backoff until accepted; 409 counts as
// done; 404 unknown_task and other permanent refusals drop it with a log line naming the
// task; a result is never dropped silently.
BOOST_DATA_TEST_CASE(result_answers_are_done_dropped_with_a_log_line_or_retried, bdata::make(result_rows), row) {
    rig r;
    r.start();
    r.data(sse("task", task_json("t1"), "1"));
    r.handler_done("t1", protocol::task_status::completed);
    const auto b = body_of(r.request(complete_line("t1")));
    BOOST_TEST(b.at("status").as_string() == "completed");
    BOOST_TEST(b.at("output").as_object().at("ok").as_bool());
    if (row.status == 0)
        r.fail(complete_line("t1"), errc::connection_lost);
    else
        r.respond(complete_line("t1"), row.status, row.body,
                  row.retry_after.empty() ? sekuire::header_list{} : sekuire::header_list{{"Retry-After", row.retry_after}});
    const auto s = r.status();
    if (row.outcome == "done") {
        BOOST_TEST(s.pending_results == 0u);
        BOOST_TEST(s.results_dropped == 0u);
    } else if (row.outcome == "dropped") {
        BOOST_TEST(s.pending_results == 0u);
        BOOST_TEST(s.results_dropped == 1u);
        BOOST_TEST(r.logged("task t1"));
    } else {
        BOOST_TEST(s.pending_results == 1u);
        r.advance_to(row.retry_in - 1ms);
        BOOST_TEST(r.waiting(complete_line("t1")) == 0u);
        r.advance_to(row.retry_in);
        BOOST_TEST(r.waiting(complete_line("t1")) == 1u);
        r.respond(complete_line("t1"), 200, accepted);
        BOOST_TEST(r.status().pending_results == 0u);
    }
    r.advance_to(1h);
    BOOST_TEST(r.waiting(complete_line("t1")) == 0u);
}

// docs/protocol.md "Results": retried with backoff (base 1 s, factor 2) until accepted; after a
// transient failure the other due results wait as long as the one that failed.
BOOST_AUTO_TEST_CASE(a_result_is_retried_with_backoff_and_the_others_wait_behind_it) {
    rig r;
    r.start();
    r.data(sse("task", task_json("a"), "1") + sse("task", task_json("b"), "2"));
    r.handler_done("a");
    r.handler_done("b");
    r.respond(complete_line("a"), 503);
    r.respond(complete_line("b"), 503);
    // Both wait in the queue; one goes at a time, and a failure holds the rest.
    r.advance_to(100ms);
    BOOST_TEST(r.outbox.size() == 1u + r.waiting(rig::heartbeat_line()));
    const std::string first = line_of(r.outbox.back().request);
    r.respond(first, 503); // its second failure: 200 ms
    r.advance_to(299ms);
    BOOST_TEST(r.waiting(complete_line("a")) + r.waiting(complete_line("b")) == 0u);
    r.advance_to(300ms);
    BOOST_TEST(r.waiting(complete_line("a")) + r.waiting(complete_line("b")) == 1u);
}

// docs/protocol.md "Results": when draining, pending results are retried at once and until the
// drain timeout, after which each unsent one is logged; no request outlives the drain.
BOOST_AUTO_TEST_CASE(draining_retries_pending_results_at_once_until_the_drain_timeout) {
    rig r;
    r.advance();
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.open_stream();
    *r.rnd.u = top;
    r.data(sse("task", task_json("t1"), "1"));
    r.handler_done("t1");
    r.respond(complete_line("t1"), 503); // due again in 1 s
    r.time.to(200ms);
    r.core->begin_shutdown(ms(5000), "test", r.time.now());
    r.pump();
    r.end();
    r.advance();
    BOOST_TEST(r.waiting(complete_line("t1")) == 1u); // at once
    BOOST_TEST(r.request(complete_line("t1")).timeout.count() == 5000); // ends with the drain
    BOOST_TEST(r.request(rig::heartbeat_line()).body.find("draining") != std::string::npos);
    r.respond(complete_line("t1"), 503);
    BOOST_TEST(!r.finished);
    r.advance_to(5200ms);
    BOOST_TEST(r.finished);
    BOOST_TEST(r.logged("result of task t1"));
    BOOST_TEST(r.status().results_dropped == 1u);
}

// docs/protocol.md "Results": one retry entry per task id; at max_pending_results new tasks are
// refused with rate_limited and further refusals are not kept (each logged and counted in
// results_dropped); a handler's result is always kept.
BOOST_AUTO_TEST_CASE(at_max_pending_results_new_tasks_are_refused_and_their_refusals_not_kept) {
    auto o = rig::defaults();
    o.max_pending_results = 1;
    rig r(o);
    r.start();
    r.data(sse("task", task_json("a"), "1") + sse("task", task_json("b"), "2"));
    r.handler_done("a");
    r.respond(complete_line("a"), 503);
    BOOST_TEST(r.status().pending_results == 1u);
    r.data(sse("task", task_json("c"), "3"));
    BOOST_TEST(error_code_in(r.request(complete_line("c"))) == "rate_limited");
    r.respond(complete_line("c"), 503);
    BOOST_TEST(r.status().pending_results == 1u);
    BOOST_TEST(r.status().results_dropped == 1u);
    BOOST_TEST(r.logged("result of task c could not be reported"));
    r.handler_done("b"); // a handler's result, over the limit: kept
    r.respond(complete_line("b"), 503);
    BOOST_TEST(r.status().pending_results == 2u);
    BOOST_TEST(r.status().results_dropped == 1u);
}

// docs/protocol.md "The task stream": lines and events are bounded to 1 MiB; a longer line
// ends the connection, which reconnects with the stream's pacing.
BOOST_AUTO_TEST_CASE(a_stream_line_over_the_limit_ends_the_connection_and_reconnects) {
    rig r;
    r.start();
    BOOST_TEST(!r.data("data: " + std::string((1u << 20) + 16, 'x')));
    r.end(errc::canceled);
    BOOST_TEST((r.status().last_error_code == errc::stream_line_too_long));
    BOOST_TEST((r.core->stream_next() == at(1s)));
}

// docs/protocol.md "Results": a 401 on a result refreshes the token once and sends it again.
BOOST_AUTO_TEST_CASE(a_401_on_a_result_refreshes_once_and_sends_it_again) {
    auto o = rig::defaults();
    o.runtime_token.clear();
    o.installation_id.clear();
    rig r(o);
    r.store = full_creds();
    r.advance();
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.open_stream();
    r.data(sse("task", task_json("t1"), "1"));
    r.handler_done("t1");
    r.respond(complete_line("t1"), 401, error_body("unauthorized"));
    r.respond(refresh_line, 200, refresh_body("srt_fresh"));
    BOOST_TEST(header(r.request(complete_line("t1")), "Authorization") == "Bearer srt_fresh");
    r.respond(complete_line("t1"), 200, accepted);
    BOOST_TEST(r.status().pending_results == 0u);
}

// ==== Worker heartbeats and the policy ======================================================

// docs/protocol.md "Worker heartbeats and the policy": every heartbeat_interval with the state
// (running, paused, draining), the counts and the policy hash; also while draining (at once
// when the drain begins).
BOOST_AUTO_TEST_CASE(worker_heartbeats_carry_state_counts_and_policy_hash_every_interval) {
    auto o = rig::defaults();
    o.heartbeat_interval = ms(10000);
    o.gateway = sekuire::policy_gateway(policy_for(setup::none));
    rig r(o);
    r.advance();
    auto b = body_of(r.request(rig::heartbeat_line()));
    BOOST_TEST(header(r.request(rig::heartbeat_line()), "Authorization") == "Bearer srt_live");
    BOOST_TEST(b.at("state").as_string() == "running");
    BOOST_TEST(b.at("in_flight").as_int64() == 0);
    BOOST_TEST(b.at("policy_hash").as_string() == "h1");
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.open_stream();
    r.data(sse("task", task_json("a"), "1") + sse("task", task_json("b"), "2") + sse("task", task_json("x", "nope"), "3"));
    r.handler_done("a");
    r.respond(complete_line("a"), 200, accepted);
    r.respond(complete_line("x"), 200, accepted);
    r.advance_to(10s - 1ms);
    BOOST_TEST(r.waiting(rig::heartbeat_line()) == 0u);
    r.advance_to(10s);
    b = body_of(r.request(rig::heartbeat_line()));
    BOOST_TEST(b.at("in_flight").as_int64() == 1);
    BOOST_TEST(b.at("completed").as_int64() == 1);
    BOOST_TEST(b.at("failed").as_int64() == 1); // the rejected one
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.core->set_paused(true);
    r.advance_to(20s);
    BOOST_TEST(body_of(r.request(rig::heartbeat_line())).at("state").as_string() == "paused");
    r.respond(rig::heartbeat_line(), 200, "{}");
    r.time.to(21s);
    r.core->begin_shutdown(30s, "test", r.time.now());
    r.pump();
    r.advance();
    BOOST_TEST(body_of(r.request(rig::heartbeat_line())).at("state").as_string() == "draining");
}

// docs/protocol.md "Kill switch and commands": the revoked shape in a worker heartbeat's answer
// revokes: the credentials are removed, the callback gets the reason and the timeout, the
// worker drains, and no worker heartbeat follows.
BOOST_AUTO_TEST_CASE(kill_switch_in_worker_heartbeat_response_stops_the_worker) {
    rig r;
    r.store = full_creds();
    r.advance();
    r.open_stream();
    r.respond(rig::heartbeat_line(), 200, R"({"revoked":true,"reason":"stolen","shutdown_timeout_ms":3000})");
    BOOST_REQUIRE(r.revocations.size() == 1u);
    BOOST_TEST(r.revocations[0].reason == "stolen");
    BOOST_TEST(r.revocations[0].shutdown_timeout.count() == 3000);
    BOOST_TEST(!r.store.has_value());
    BOOST_TEST(r.closes == 1);
    BOOST_TEST(r.status().revoked);
    r.end();
    r.advance_to(1h);
    BOOST_TEST(r.waiting(rig::heartbeat_line()) == 0u);
    BOOST_TEST(r.finished);
}

// docs/protocol.md "Worker heartbeats and the policy": the active policy is fetched at start
// and again only when an active_policy_hash (worker heartbeat, beacon heartbeat through the
// SDK, or a policy event) differs from the hash of the policy in force.
BOOST_AUTO_TEST_CASE(the_policy_is_fetched_at_start_and_again_only_when_the_hash_differs) {
    auto o = rig::defaults();
    o.fetch_policy = true;
    rig r(o);
    r.advance();
    BOOST_TEST(header(r.request(policy_line), "Authorization") == "Bearer srt_live");
    r.respond(policy_line, 200, R"({"hash":"h1","content":{}})");
    BOOST_TEST(r.status().policy_hash == "h1");
    r.respond(rig::heartbeat_line(), 200, R"({"active_policy_hash":"h1"})");
    r.advance_to(10s);
    BOOST_TEST(r.waiting(policy_line) == 0u);
    r.respond(rig::heartbeat_line(), 200, R"({"active_policy_hash":"h2"})");
    r.advance();
    BOOST_TEST(r.waiting(policy_line) == 1u);
    r.respond(policy_line, 200, R"({"hash":"h2","content":{}})");
    r.open_stream();
    r.data(sse("policy", R"({"active_policy_hash":"h2"})", "1"));
    r.advance();
    BOOST_TEST(r.waiting(policy_line) == 0u);
    r.data(sse("policy", R"({"active_policy_hash":"h3"})", "2"));
    r.advance();
    BOOST_TEST(r.waiting(policy_line) == 1u);
    r.respond(policy_line, 200, R"({"hash":"h3","content":{}})");
    r.core->apply_policy_hash("h3");
    r.advance();
    BOOST_TEST(r.waiting(policy_line) == 0u);
    r.core->apply_policy_hash("h4");
    r.advance();
    BOOST_TEST(r.waiting(policy_line) == 1u);
    BOOST_TEST(r.count("send " + policy_line) == 4u);
}

// docs/protocol.md "Kill switch and commands": commands from worker heartbeats or the stream
// reach the command callbacks once per command id, whichever part saw them first.
BOOST_AUTO_TEST_CASE(commands_reach_the_callbacks_once_per_id) {
    rig r;
    r.advance();
    r.open_stream();
    r.data(sse("command", R"({"id":"c1","type":"pause","reason":"maintenance"})", "1"));
    BOOST_TEST(r.commands.size() == 1u);
    BOOST_TEST(r.core->paused());
    r.respond(rig::heartbeat_line(), 200, R"({"command":{"id":"c1","type":"pause"}})");
    BOOST_TEST(r.commands.size() == 1u);
    protocol::command resume;
    resume.id = "c2";
    resume.type = protocol::command_type::resume;
    resume.type_name = "resume";
    r.core->apply_command(resume, r.time.now());
    r.pump();
    r.data(sse("command", R"({"id":"c2","type":"resume"})", "2"));
    BOOST_TEST(r.commands.size() == 2u);
    BOOST_TEST(!r.core->paused());
}

// docs/protocol.md "Kill switch and commands": unknown types are logged and ignored.
BOOST_AUTO_TEST_CASE(unknown_command_type_is_ignored_and_logged) {
    rig r;
    r.advance();
    r.open_stream();
    r.data(sse("command", R"({"id":"c1","type":"reboot"})", "1"));
    r.respond(rig::heartbeat_line(), 200, R"({"command":{"id":"c2","type":"self_destruct"}})");
    BOOST_TEST(r.commands.empty());
    BOOST_TEST(r.logged("reboot"));
    BOOST_TEST(r.logged("self_destruct"));
    BOOST_TEST(!r.core->paused());
    BOOST_TEST(!r.core->shutting_down());
    r.data(sse("task", task_json("t1"), "2"));
    BOOST_TEST(r.runs.size() == 1u); // still taking tasks
}

// docs/protocol.md "Kill switch and commands" and "Shutting down": a terminate command starts
// the drain with its shutdown_timeout_ms; handlers in flight are cancelled at the deadline
// and their results reported.
BOOST_AUTO_TEST_CASE(a_terminate_command_drains_and_cancels_the_handlers_left_at_its_deadline) {
    rig r;
    r.start();
    r.data(sse("task", task_json("t1"), "1") + sse("command", R"({"id":"c1","type":"terminate","shutdown_timeout_ms":4000})", "2"));
    BOOST_TEST(r.commands.size() == 1u);
    BOOST_TEST(r.core->shutting_down());
    BOOST_TEST(r.closes == 1);
    r.end();
    r.advance_to(4s - 1ms);
    BOOST_TEST(r.cancels.empty());
    r.advance_to(4s);
    BOOST_TEST(!r.cancels.empty());
    for (const auto& c : r.cancels) BOOST_TEST(c == "t1");
    const auto& req = r.request(complete_line("t1"));
    BOOST_TEST(body_of(req).at("status").as_string() == "failed");
    BOOST_TEST(error_code_in(req) == "shutting_down");
    BOOST_TEST(r.finished);
}

// docs/protocol.md "Shutting down": a revocation during a drain already under way brings its
// end forward to the revocation's shutdown_timeout_ms when that is sooner.
BOOST_AUTO_TEST_CASE(a_revocation_during_a_drain_brings_its_end_forward) {
    rig r;
    r.start();
    r.data(sse("task", task_json("t1"), "1"));
    r.core->begin_shutdown(30s, "test", r.time.now());
    r.pump();
    r.end();
    r.time.to(1s);
    protocol::revocation rv;
    rv.reason = "stolen";
    rv.shutdown_timeout_ms = 2000;
    r.core->apply_revocation(rv, r.time.now()); // the core last heard of time at 0 s
    r.pump();
    BOOST_TEST(r.revocations.at(0).shutdown_timeout.count() == 2000);
    r.advance_to(3s - 1ms);
    BOOST_TEST(r.cancels.empty());
    r.advance_to(3s);
    BOOST_TEST(!r.cancels.empty());
    for (const auto& c : r.cancels) BOOST_TEST(c == "t1");
    BOOST_TEST(r.finished);
    // The result computed before the end still goes out, with the last credentials.
    BOOST_TEST(header(r.request(complete_line("t1")), "Authorization") == "Bearer srt_live");
}

// docs/protocol.md "Kill switch and commands": after a revocation no worker heartbeat goes
// out, also one found earlier in the same step.
BOOST_AUTO_TEST_CASE(no_worker_heartbeat_after_a_revocation) {
    rig r;
    r.start();
    r.data(sse("revoked", R"({"reason":"stolen"})", "1"));
    r.end();
    r.advance_to(10s);
    r.advance_to(20s);
    BOOST_TEST(r.count("send " + rig::heartbeat_line()) == 1u);
}

// ==== The stream decoded without the core (stream_decoder, on_stream_chunk) =================

// What a driver sees of a core: every effect in order, every log line, every request, every
// handler run with its input, the status, the stream's pacing.
struct stream_step {
    enum kind { connect, head, data, end, advance, complete } what;
    std::string bytes; // data: the bytes; complete: the task id
    int status = 200;  // head
    error_code ec;     // end
    ms t{0};           // advance: to this time
};

std::string transcript(const sekuire::worker_options& o, const std::vector<stream_step>& steps, bool decoded) {
    rig r(o);
    if (decoded) r.decoder.emplace();
    std::string out;
    r.start();
    for (const auto& s : steps) {
        switch (s.what) {
        case stream_step::connect: {
            const auto req = r.connect();
            out += req ? "connect Last-Event-ID=" + header(*req, "Last-Event-ID") + "\n" : "connect: not now\n";
            break;
        }
        case stream_step::head: r.head(s.status); break;
        case stream_step::data: out += r.data(s.bytes) ? "data: go on\n" : "data: end\n"; break;
        case stream_step::end:
            r.end(s.ec);
            out += "stream_next +" +
                   std::to_string(std::chrono::duration_cast<ms>(r.core->stream_next() - at(0ms)).count()) + " ms\n";
            break;
        case stream_step::advance: r.advance_to(s.t); break;
        case stream_step::complete: r.handler_done(s.bytes); break;
        }
    }
    for (const auto& t : r.trace) out += "trace " + t + "\n";
    for (const auto& l : r.logs)
        out += "log " + std::to_string(static_cast<int>(l.level)) + " " + (l.event ? l.event : "") + " [" + l.task_id +
               "|" + l.capability + "|" + l.trace_id + "] " + l.text + "\n";
    for (const auto& q : r.sent) out += "sent " + line_of(q) + " " + header(q, "Authorization") + " " + q.body + "\n";
    for (const auto& t : r.runs)
        out += "run " + t.task_id + " " + t.capability + " " + boost::json::serialize(t.input) + "\n";
    for (const auto& c : r.commands) out += std::string("command ") + protocol::to_string(c.type) + "\n";
    const auto st = r.status();
    out += "status " + sekuire::to_string(st) + " received=" + std::to_string(st.received) +
           " duplicates=" + std::to_string(st.duplicates) + " rejected=" + std::to_string(st.rejected) +
           " last_event_id=" + st.last_event_id + " last_error=" + st.last_error + "\n";
    return out;
}

struct decoded_row {
    std::string name;
    std::vector<stream_step> steps;
    std::vector<std::string> expected; // in the transcript (so that the row tests what it names)
};
std::ostream& operator<<(std::ostream& os, const decoded_row& r) { return os << r.name; }

stream_step make_step(stream_step::kind k, std::string bytes = {}, int status = 200, error_code ec = {}, ms t = 0ms) {
    stream_step s{k, std::move(bytes), status, ec, t};
    return s;
}
stream_step data_step(std::string bytes) { return make_step(stream_step::data, std::move(bytes)); }
stream_step head_step(int status = 200) { return make_step(stream_step::head, {}, status); }
stream_step end_step(error_code ec = {}) { return make_step(stream_step::end, {}, 200, ec); }
stream_step advance_step(ms t) { return make_step(stream_step::advance, {}, 200, {}, t); }

const std::string mixed = "\xEF\xBB\xBF" ": comment\r\n" + sse("task", task_json("t1", "search", R"(,"trace_id":"tr1")"), "e1") +
                          "event: task\r\nid: e2\r\ndata: {\"task_id\":\"t2\",\r\ndata: \"capability\":\"search\",\"input\":[1,2]}\r\n\r\n" +
                          sse("policy", R"({"active_policy_hash":""})", "e3") + "garbage line\n\n" + "data: a message\n\n" +
                          sse("mystery", "{}", "e4") + sse("task", task_json("t3"), "e5");

const decoded_row decoded_rows[] = {
    {"tasks, comments, a BOM, CRLF, multi-line data, unknown events, in one chunk",
     {data_step(mixed)},
     {"run t1 search", "run t2 search [1,2]", "run t3", "last_event_id=e5"}},
    {"the same bytes cut into 7-byte chunks", {}, {"run t1 search", "run t2 search [1,2]", "run t3"}},
    {"malformed tasks: a readable id is rejected invalid_input, none is logged and ignored",
     {data_step(sse("task", R"({"task_id":"t9","capability":5,"input":{}})", "1") +
                sse("task", R"({"capability":"search"})", "2") + sse("task", "not json", "3") +
                "event: task\ndata: {\"task_id\":\"t8\",\ndata: \"input\":1}\n\n")},
     {"malformed task event", "; ignored", "POST /api/v1/tasks/t9/complete", "invalid_input",
      "POST /api/v1/tasks/t8/complete", "received=0"}},
    {"a duplicate runs once and a finished one gets its result again",
     {data_step(sse("task", task_json("t1"), "1")), make_step(stream_step::complete, "t1"),
      data_step(sse("task", task_json("t1"), "2") + sse("task", task_json("t1"), "3"))},
     {"duplicates=2", "run t1"}},
    {"refused tasks: no handler, and commands that pause and resume",
     {data_step(sse("task", task_json("t1", "other"), "1") +
                sse("command", R"({"id":"c1","type":"pause"})", "2") + sse("task", task_json("t2"), "3") +
                sse("command", R"({"id":"c2","type":"resume"})", "4") + sse("command", "{bad", "5") +
                sse("command", R"({"id":"c3","type":"dance"})", "6") + sse("task", task_json("t3"), "7"))},
     {"no_handler", "worker_paused", "command pause", "command resume", "malformed command", "run t3"}},
    {"a revoked event cuts the chunk: the rest is not handled, Last-Event-ID stays",
     {data_step(sse("task", task_json("t1"), "1") + sse("revoked", R"({"reason":"stolen"})", "2") +
                sse("task", task_json("t3"), "3"))},
     {"data: end", "trace revoked", "last_event_id=2"}},
    {"a terminate command cuts the chunk too",
     {data_step(sse("command", R"({"id":"c1","type":"terminate","shutdown_timeout_ms":5000})", "1") +
                sse("task", task_json("t2"), "2"))},
     {"data: end", "command terminate", "last_event_id=1"}},
    {"a line over the limit after an event ends the connection; the event before it counts",
     {data_step(sse("task", task_json("t1"), "1") + "data: " + std::string((1u << 20) + 16, 'x')),
      end_step(errc::canceled)},
     {"data: end", "run t1", "stream_next +1000 ms", "last_event_id=1"}},
    {"retry: in one connection sets the base of the reconnect, and carries over",
     {data_step("retry: 5000\n\n" + sse("task", task_json("t1"), "1")), end_step(),
      advance_step(5000ms), make_step(stream_step::connect), head_step(),
      data_step(sse("task", task_json("t2"))), end_step()},
     {"stream_next +5000 ms", "connect Last-Event-ID=1", "run t2", "last_event_id=1"}},
    {"an event cut by a reconnect is dropped; Last-Event-ID carries over connections",
     {data_step(sse("task", task_json("t1"), "a1") + "event: task\ndata: {\"task_id\":\"t2\""), end_step(),
      advance_step(2000ms), make_step(stream_step::connect), head_step(),
      data_step(",\"capability\":\"search\",\"input\":1}\n\n" + sse("task", task_json("t4")))},
     {"connect Last-Event-ID=a1", "run t4", "last_event_id=a1"}},
    {"a refused connection's body is read (the first 4 KiB) and decides what follows",
     {end_step(), advance_step(2000ms), make_step(stream_step::connect),
      head_step(403), data_step(error_body("installation_revoked", "gone for good")),
      data_step(std::string(5000, ' ')), end_step()},
     {"trace revoked", "gone for good"}},
    {"a 503's body over several chunks, then a retry",
     {end_step(), advance_step(2000ms), make_step(stream_step::connect),
      head_step(503), data_step(std::string(4000, ' ')), data_step(error_body("overloaded", "busy")),
      end_step()},
     {"task stream: "}},
};

// The decoded path (stream_decoder, then on_stream_chunk) does exactly what on_stream_data
// does with the same bytes: the same effects in the same order, the same log lines, requests,
// handler runs, status and pacing, also for garbage and malformed tasks.
BOOST_DATA_TEST_CASE(the_decoded_stream_acts_as_its_bytes, bdata::make(decoded_rows), row) {
    std::vector<stream_step> steps = row.steps;
    if (steps.empty()) // the same bytes as the first row, cut into 7-byte chunks
        for (std::size_t i = 0; i < mixed.size(); i += 7) steps.push_back(data_step(mixed.substr(i, 7)));
    const std::string bytes_path = transcript(rig::defaults(), steps, false);
    const std::string decoded_path = transcript(rig::defaults(), steps, true);
    BOOST_TEST(decoded_path == bytes_path);
    for (const auto& e : row.expected) BOOST_TEST(decoded_path.find(e) != std::string::npos, e);
}

BOOST_AUTO_TEST_CASE(the_decoder_decodes_tasks_and_keeps_what_it_could_not_decode) {
    sekuire::worker_core::stream_decoder d;
    sekuire::worker_core::stream_chunk c;
    d.start(200);
    d.decode(sse("task", task_json("t1"), "1") + sse("task", "{oops", "2") + "retry: 250\n" + sse("command", "{}"), c);
    BOOST_REQUIRE(c.events.size() == 3u);
    BOOST_REQUIRE(c.events[0].task.has_value());
    BOOST_TEST(c.events[0].task->task_id == "t1");
    BOOST_TEST(boost::json::serialize(c.events[0].task->input) == R"({"q":1})");
    BOOST_TEST(c.events[0].data.empty()); // decoded: not kept twice
    BOOST_TEST(!c.events[1].task.has_value());
    BOOST_TEST(c.events[1].data == "{oops");
    BOOST_TEST(!c.events[1].error.message().empty());
    BOOST_TEST(c.events[2].type == "command");
    BOOST_TEST(c.events[2].last_event_id == "2");
    BOOST_TEST(c.retry.has_value());
    BOOST_TEST(c.retry->count() == 250);
    BOOST_TEST(!c.line_error);
    // Over the limits: reported on every chunk until the next connection.
    c.clear();
    d.decode("data: " + std::string((1u << 20) + 1, 'x'), c);
    BOOST_TEST(c.line_error);
    c.clear();
    d.decode(sse("task", task_json("t2")), c);
    BOOST_TEST(c.line_error);
    BOOST_TEST(c.events.empty());
    c.clear();
    d.start(200);
    d.decode(sse("task", task_json("t2")), c);
    BOOST_TEST(!c.line_error);
    BOOST_REQUIRE(c.events.size() == 1u);
    BOOST_TEST(c.events[0].last_event_id == "2"); // kept from one connection to the next
    BOOST_TEST(c.retry->count() == 250);
    // A refused connection's body: its first 4 KiB, over several chunks.
    d.start(500);
    c.clear();
    d.decode(std::string(3000, 'a'), c);
    d.decode(std::string(3000, 'b'), c);
    BOOST_TEST(c.error_body.size() == 4096u);
    BOOST_TEST(c.events.empty());
    c.clear();
    d.decode("more", c);
    BOOST_TEST(c.error_body.empty());
}

BOOST_AUTO_TEST_CASE(a_decoded_chunk_of_a_connection_gone_is_refused) {
    rig r;
    r.decoder.emplace();
    r.start();
    const auto old = *r.stream;
    r.end();
    sekuire::worker_core::stream_decoder d;
    sekuire::worker_core::stream_chunk c;
    d.start(200);
    d.decode(sse("task", task_json("t1"), "1"), c);
    BOOST_TEST(!r.core->on_stream_chunk(old, c, r.time.now()));
    BOOST_TEST(!r.core->on_stream_chunk(old + 100, c, r.time.now()));
    r.pump();
    BOOST_TEST(r.runs.empty());
    BOOST_TEST(r.status().received == 0u);
}

// Bytes that complete nothing, fed later with the time they arrived (as basic_worker does
// without taking its mutex), keep the stream alive from that time, as the bytes would have.
BOOST_AUTO_TEST_CASE(stream_bytes_fed_later_count_from_when_they_arrived) {
    rig r;
    r.start();
    r.time.to(30s);
    r.core->on_stream_bytes(*r.stream, at(10s));      // arrived at 10 s, fed at 30 s
    r.core->on_stream_bytes(*r.stream, at(5s));       // older: changes nothing
    r.core->on_stream_bytes(*r.stream + 1, at(40s));  // not this connection: nothing
    r.advance_to(55s - 1ms);
    BOOST_TEST(r.closes == 0);
    r.advance_to(55s);
    BOOST_TEST(r.closes == 1);
    const auto op = *r.stream;
    r.end(errc::canceled);
    BOOST_TEST((r.status().last_error_code == errc::stream_idle));
    r.core->on_stream_bytes(op, at(60s)); // no connection open: nothing
    BOOST_TEST(r.core->effects().empty());
}

BOOST_AUTO_TEST_SUITE_END()
