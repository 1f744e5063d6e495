// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/mock_backend.hpp>

// The mock backend's fleet dashboard in a real headless Chromium: a person signs in with
// the admin key, watches an agent heartbeat, pauses and resumes it, enqueues a task from
// the form and sees it completed, revokes it and sees it stop; an installation that
// reports markup is shown as text; the page fits a phone. A screenshot of each step goes
// to $SEKUIRE_BROWSER_ARTIFACTS. Exits with 77 (CTest: skipped) when there is no Chromium.

#include "cdp.hpp"

#include <sekuire/protocol.hpp>
#include <sekuire/sdk.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace proto = sekuire::protocol;
namespace st = sekuire::testing;
using cdp::js_string;

// What an agent may report: markup and script, which the page must show as text.
const std::string hostile_host = "<script>window.__sekuire_xss = 1</script><img src=x onerror=\"window.__sekuire_xss = 2\">";
const std::string hostile_agent = "<b onmouseover=\"window.__sekuire_xss = 3\">bold-agent</b>";

// An installation that reports a hostile agent id and platform (over plain HTTP).
std::string hostile_installation(st::mock_backend& backend) {
    httplib::Client cli(backend.url());
    cli.set_connection_timeout(5, 0);
    cli.set_read_timeout(10, 0);
    proto::bootstrap_request boot;
    boot.install_token = backend.create_install_token();
    boot.agent_id = hostile_agent;
    boot.capabilities = {"ping"};
    auto r = cli.Post(std::string(proto::path::bootstrap), proto::encode(boot), std::string(proto::header::json_type));
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_EQUAL(r->status, 201);
    proto::bootstrap_response created;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(r->body, created, err));
    proto::heartbeat_request hb;
    hb.sequence = 1;
    hb.platform.type = "docker";
    hb.platform.set(std::string(proto::platform::key_hostname), hostile_host);
    hb.capabilities = {"ping"};
    auto beat = cli.Post(proto::path::heartbeat(created.installation_id),
                         {{std::string(proto::header::authorization),
                           std::string(proto::header::bearer_prefix) + created.runtime_token}},
                         proto::encode(hb), std::string(proto::header::json_type));
    BOOST_REQUIRE(beat);
    BOOST_REQUIRE_EQUAL(beat->status, 200);
    return created.installation_id;
}

// The card of an installation, as a selector.
std::string card(const std::string& installation_id) {
    return "[data-installation=" + js_string(installation_id) + "]";
}

// JavaScript: the text of the element `selector` finds, or ''.
std::string text_of(const std::string& selector) {
    return "((document.querySelector(" + js_string(selector) + ") || {}).textContent || '')";
}

} // namespace

BOOST_AUTO_TEST_SUITE(dashboard)

BOOST_AUTO_TEST_CASE(a_person_watches_and_drives_the_fleet_in_a_browser) {
    const char* chromium = std::getenv("SEKUIRE_CHROMIUM");
    if (!chromium || ::access(chromium, X_OK) != 0) {
        std::cout << "browser test skipped: no Chromium (set SEKUIRE_CHROMIUM; scripts/setup-deps installs it)"
                  << std::endl;
        std::exit(77);
    }
    const char* artifacts_env = std::getenv("SEKUIRE_BROWSER_ARTIFACTS");
    const std::filesystem::path artifacts = artifacts_env ? artifacts_env : "browser-artifacts";
    std::filesystem::create_directories(artifacts);
    for (const auto& f : std::filesystem::directory_iterator(artifacts))
        if (f.path().extension() == ".png") std::filesystem::remove(f.path());
    ::signal(SIGPIPE, SIG_IGN); // a browser that died must fail the test, not kill it

    // -- the backend and an agent on it --------------------------------------------------
    st::mock_backend_options mo;
    mo.keep_alive_timeout = 1s;
    st::mock_backend backend{mo};
    backend.start();

    sekuire::sdk_options so;
    so.api_base_url = backend.url();
    so.agent_id = "browser-agent";
    so.install_token = std::string(st::mock_default_install_token);
    so.workspace_id = std::string(st::mock_default_workspace);
    so.capabilities = {"summarize"};
    so.heartbeat_interval = 1s;
    so.startup_jitter = 0ms;
    sekuire::sdk sdk(so);
    sdk.start();
    BOOST_REQUIRE_MESSAGE(sdk.is_connected(), "the agent did not connect: " << sdk.get_beacon_status().last_error);
    const std::string installation = sdk.get_beacon_status().installation_id;
    sekuire::worker_options wo;
    wo.heartbeat_interval = 1s;
    auto& worker = sdk.create_task_worker(wo);
    worker.on_task("summarize", [](const sekuire::task_context&, const json::value& input) {
        const auto* text = input.is_object() ? input.as_object().if_contains("text") : nullptr;
        const std::string s = text && text->is_string() ? std::string(text->as_string()) : std::string();
        return json::value{{"summary", s.substr(0, 20)}, {"length", s.size()}};
    });
    worker.start();
    BOOST_REQUIRE(backend.wait_for_open_streams(1, 10s));
    const std::string hostile = hostile_installation(backend);

    // -- the browser ---------------------------------------------------------------------
    cdp::browser b;
    b.start(chromium, (artifacts / "chromium.log").string());
    b.open_page(1280, 900);
    const std::string url = backend.url() + std::string(st::mock_dashboard_path);
    b.navigate(url);
    BOOST_REQUIRE(b.wait_for("document.querySelector('#api-key') !== null", 5s));
    b.screenshot((artifacts / "01-sign-in.png").string());

    // A wrong key is refused, and the page says so.
    BOOST_REQUIRE(b.type("#api-key", "not-the-key"));
    BOOST_REQUIRE(b.click("#connect"));
    BOOST_TEST(b.wait_for(text_of("#key-error") + ".includes('refused')", 5s));

    // -- sign in: the installation appears healthy, its heartbeats counting up ----------
    BOOST_REQUIRE(b.type("#api-key", std::string(st::mock_default_api_key)));
    BOOST_REQUIRE(b.click("#connect"));
    BOOST_REQUIRE_MESSAGE(b.wait_for(text_of(card(installation) + " .state") + " === 'healthy'", 10s),
                          "the installation did not appear healthy");
    BOOST_TEST(b.eval(text_of(card(installation) + " .agent")).as_string() == "browser-agent");
    BOOST_TEST(b.eval(text_of(card(installation) + " .capabilities")).as_string() == "summarize");
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .lease") + ".startsWith('expires in')", 5s));
    const auto beats = [&] { return std::stoi(std::string(b.eval(text_of(card(installation) + " .heartbeats") + " || '0'").as_string())); };
    const int first_count = beats();
    BOOST_TEST(first_count >= 1);
    BOOST_TEST(b.wait_for("Number(" + text_of(card(installation) + " .heartbeats") + ") >= " +
                              std::to_string(first_count + 2),
                          10s),
               "the heartbeat count did not rise from " << first_count);
    BOOST_TEST(b.wait_for("document.querySelectorAll(" + js_string(card(installation) + " .timeline .beat") +
                              ").length >= 2",
                          5s));
    b.screenshot((artifacts / "02-healthy.png").string());

    // -- pause: the agent reports paused ---------------------------------------------------
    BOOST_REQUIRE(b.click(card(installation) + " button[data-action='pause']"));
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .reported") + ".startsWith('paused')", 10s),
               "the agent did not report paused");
    BOOST_TEST(worker.is_paused());
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .worker") + ".startsWith('paused')", 10s));
    BOOST_TEST(b.wait_for("[...document.querySelectorAll('#commands tbody tr')].some(r => r.querySelector('.type')."
                          "textContent === 'pause' && !r.querySelector('.delivered').textContent.startsWith('pending'))",
                          5s),
               "the pause command is not listed as delivered");
    b.screenshot((artifacts / "03-paused.png").string());

    // -- resume, then a task from the form: completed ------------------------------------
    BOOST_REQUIRE(b.click(card(installation) + " button[data-action='resume']"));
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .reported") + ".startsWith('healthy')", 10s));
    BOOST_TEST(!worker.is_paused());
    BOOST_REQUIRE(b.type("#task-capability", "summarize"));
    BOOST_REQUIRE(b.type("#task-input", R"({"text": "typed into the dashboard"})"));
    BOOST_REQUIRE(b.click("#enqueue"));
    BOOST_REQUIRE(b.wait_for(text_of("#status") + ".includes('queued')", 5s));
    const std::string status_line = std::string(b.eval(text_of("#status")).as_string());
    const auto id_at = status_line.find("task_");
    BOOST_REQUIRE(id_at != std::string::npos);
    const std::string task_id = status_line.substr(id_at, status_line.find(' ', id_at) - id_at);
    const std::string row = "#tasks tr[data-task=" + js_string(task_id) + "]";
    BOOST_TEST(b.wait_for(text_of(row + " .status") + " === 'completed'", 10s), "the task did not show completed");
    BOOST_TEST(b.eval(text_of(row + " .output")).as_string() == R"({"summary":"typed into the dashb","length":24})");
    BOOST_TEST(b.eval(text_of(row + " .deliveries")).as_string() == "1");
    const auto done = backend.task(task_id);
    BOOST_REQUIRE(done);
    BOOST_TEST((done->status == st::mock_task_status::completed));
    BOOST_TEST(json::serialize(done->input) == R"({"text":"typed into the dashboard"})");
    b.screenshot((artifacts / "04-task-completed.png").string());

    // -- revoke, with a shutdown timeout: the state changes, the agent stops -------------
    BOOST_REQUIRE(b.type(card(installation) + " input.timeout", "2000"));
    BOOST_REQUIRE(b.click(card(installation) + " button[data-action='revoke']"));
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .state") + " === 'revoked'", 10s));
    BOOST_TEST(b.wait_for(text_of(card(installation) + " .revoked") + ".includes('2000 ms')", 5s));
    BOOST_TEST(sdk.wait_for(15s), "the agent did not stop after the revocation");
    BOOST_TEST(sdk.get_beacon_status().revoked);
    const auto revoked = backend.installation(installation);
    BOOST_REQUIRE(revoked && revoked->revocation);
    BOOST_TEST(revoked->revocation->shutdown_timeout_ms.value_or(0) == 2000);
    BOOST_TEST(b.eval("document.querySelector(" + js_string(card(installation) + " button[data-action='pause']") +
                      ").disabled")
                   .as_bool());
    b.screenshot((artifacts / "05-revoked.png").string());

    // -- what an agent reports is text, never markup --------------------------------------
    BOOST_REQUIRE(b.wait_for("document.querySelector(" + js_string(card(hostile)) + ") !== null", 5s));
    BOOST_TEST(b.eval(text_of(card(hostile) + " .platform")).as_string() == "docker \u00b7 hostname=" + hostile_host);
    BOOST_TEST(b.eval(text_of(card(hostile) + " .agent")).as_string() == hostile_agent);
    BOOST_TEST(b.eval("document.querySelectorAll(" + js_string(card(hostile) + " script, " + card(hostile) + " img, " +
                      card(hostile) + " b") +
                      ").length")
                   .to_number<int>() == 0);
    BOOST_TEST(b.eval("window.__sekuire_xss === undefined").as_bool());
    b.eval("document.querySelector(" + js_string(card(hostile)) + ").scrollIntoView()");
    b.screenshot((artifacts / "06-reported-markup-is-text.png").string());

    // -- mint an install token (an agent bootstraps with it), inject and clear a fault ---
    BOOST_REQUIRE(b.type("#token-agent", "minted-agent"));
    BOOST_REQUIRE(b.click("#mint"));
    BOOST_REQUIRE(b.wait_for(text_of("#minted-token") + ".startsWith('skt_')", 5s));
    const std::string minted = std::string(b.eval(text_of("#minted-token")).as_string());
    {
        httplib::Client cli(backend.url());
        proto::bootstrap_request boot;
        boot.install_token = minted;
        boot.agent_id = "minted-agent";
        auto r = cli.Post(std::string(proto::path::bootstrap), proto::encode(boot), std::string(proto::header::json_type));
        BOOST_REQUIRE(r);
        BOOST_TEST(r->status == 201);
    }
    BOOST_REQUIRE(b.type("#fault-prefix", "/api/v1/tasks/"));
    BOOST_REQUIRE(b.type("#fault-count", "3"));
    BOOST_REQUIRE(b.type("#fault-retry", "7"));
    BOOST_REQUIRE(b.click("#inject"));
    BOOST_TEST(b.wait_for(text_of("#faults") + ".includes('/api/v1/tasks/: answer 503 (Retry-After 7), 3 request(s) left')",
                          5s),
               "the fault is not listed: " << b.eval(text_of("#faults")));
    BOOST_REQUIRE(b.click("#clear-faults"));
    BOOST_TEST(b.wait_for(text_of("#status") + ".startsWith('1 fault(s) cleared')", 5s));
    BOOST_TEST(backend.clear_faults() == 0u); // the page cleared it
    BOOST_TEST(b.wait_for(text_of("#faults li") + " === 'none'", 5s));
    b.screenshot((artifacts / "07-token-and-fault.png").string());

    // -- a phone's screen: nothing wider than the screen ---------------------------------
    // (Mobile emulation widens the layout viewport to the content: compare with the screen.)
    constexpr int phone_width = 390;
    b.viewport(phone_width, 844, true);
    BOOST_TEST(b.wait_for("document.documentElement.scrollWidth <= " + std::to_string(phone_width), 5s),
               "the page is wider than a phone's " << phone_width << " px: "
                                                   << b.eval("document.documentElement.scrollWidth"));
    b.screenshot((artifacts / "08-phone.png").string());

    // -- no script error, no refused resource (the CSP would report one) -----------------
    b.drain_events();
    for (const auto& e : b.events()) {
        const auto method = json::value_to<std::string>(e.at("method"));
        BOOST_TEST(method != "Runtime.exceptionThrown", json::serialize(e));
        if (method == "Log.entryAdded") {
            const auto& entry = e.at("params").at("entry").as_object();
            const auto level = json::value_to<std::string>(entry.at("level"));
            const auto text = json::value_to<std::string>(entry.at("text"));
            // The wrong key's 401 is logged by the browser as a failed resource: expected.
            const bool expected_401 = text.find("401") != std::string::npos;
            BOOST_TEST((level != "error" || expected_401), text);
        }
        if (method == "Runtime.consoleAPICalled")
            BOOST_TEST(json::value_to<std::string>(e.at("params").at("type")) != "error", json::serialize(e));
    }
    b.close();
    sdk.shutdown();
    backend.stop();
}

BOOST_AUTO_TEST_SUITE_END()
