// SPDX-License-Identifier: MIT
// A small Chrome DevTools Protocol client for the browser test: it starts headless
// Chromium with --remote-debugging-pipe (commands on the child's fd 3, answers and events
// on its fd 4, each a JSON text ended by a NUL byte) and drives one page: navigate,
// evaluate, click and type with real input events, take screenshots. No websocket, no
// port, no package beyond Boost.JSON.
#ifndef SEKUIRE_TESTS_BROWSER_CDP_HPP
#define SEKUIRE_TESTS_BROWSER_CDP_HPP

#include <boost/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace cdp {

namespace json = boost::json;
using namespace std::chrono_literals;

/// Decodes standard base64 (as CDP sends screenshots).
inline std::string base64_decode(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    out.reserve(in.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = value(c);
        if (v < 0) continue; // padding, line breaks
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

/// A JSON string literal for `s`, to put a value into JavaScript source safely.
inline std::string js_string(std::string_view s) { return json::serialize(json::value(json::string(s))); }

/// Headless Chromium and one page of it.
class browser {
public:
    browser() = default;
    browser(const browser&) = delete;
    browser& operator=(const browser&) = delete;
    ~browser() { close(); }

    /// Starts Chromium at `path` with a new profile directory; its output goes to `log`.
    /// Throws std::runtime_error when it cannot start or does not answer.
    void start(const std::string& path, const std::string& log) {
        profile_ = std::filesystem::temp_directory_path() / ("sekuire-chromium-" + std::to_string(::getpid()));
        std::filesystem::remove_all(profile_);
        std::filesystem::create_directories(profile_);
        int to_browser[2], from_browser[2];
        if (::pipe2(to_browser, O_CLOEXEC) != 0 || ::pipe2(from_browser, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe failed");
        // Out of the way of 3 and 4, which the child's ends become.
        const int child_in = ::fcntl(to_browser[0], F_DUPFD_CLOEXEC, 100);
        const int child_out = ::fcntl(from_browser[1], F_DUPFD_CLOEXEC, 100);
        ::close(to_browser[0]);
        ::close(from_browser[1]);
        to_ = to_browser[1];
        from_ = from_browser[0];
        const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, child_in, 3);
        posix_spawn_file_actions_adddup2(&actions, child_out, 4);
        if (log_fd >= 0) {
            posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
            posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
        }
        // The flags the brief names: without the background-networking ones, a machine
        // with a closed network makes Chromium hang.
        std::vector<std::string> args = {path,
                                         "--headless",
                                         "--no-sandbox",
                                         "--disable-gpu",
                                         "--disable-quic",
                                         "--no-first-run",
                                         "--disable-background-networking",
                                         "--disable-component-update",
                                         "--disable-sync",
                                         "--disable-extensions",
                                         "--disable-default-apps",
                                         "--mute-audio",
                                         "--hide-scrollbars",
                                         "--user-data-dir=" + profile_.string(),
                                         "--remote-debugging-pipe",
                                         "about:blank"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(child_in);
        ::close(child_out);
        if (log_fd >= 0) ::close(log_fd);
        if (rc != 0) {
            pid_ = -1;
            throw std::runtime_error("cannot start " + path);
        }
        call("Browser.getVersion", {}, {}, 30s);
    }

    /// Opens a page and attaches to it (flat session); the page's events are recorded.
    void open_page(int width, int height) {
        const auto target = call("Target.createTarget", {{"url", "about:blank"}});
        const auto attached = call("Target.attachToTarget", {{"targetId", target.at("targetId")}, {"flatten", true}});
        session_ = json::value_to<std::string>(attached.at("sessionId"));
        page("Page.enable");
        page("Runtime.enable");
        page("Log.enable");
        viewport(width, height, false);
    }

    /// Sets the page's viewport (a phone's with `mobile`).
    void viewport(int width, int height, bool mobile) {
        page("Emulation.setDeviceMetricsOverride",
             {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", mobile}});
    }

    /// Sends a command to the browser (or, with `session`, to a page); returns its result.
    /// Throws std::runtime_error for an error answer or no answer within `timeout`.
    json::object call(const std::string& method, json::object params = {}, const std::string& session = {},
                      std::chrono::milliseconds timeout = 10s) {
        const auto id = ++next_id_;
        json::object m{{"id", id}, {"method", method}, {"params", std::move(params)}};
        if (!session.empty()) m["sessionId"] = session;
        write(json::serialize(m));
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            json::object msg;
            if (!read_message(msg, deadline)) throw std::runtime_error(method + ": no answer from the browser");
            const auto* got = msg.if_contains("id");
            if (!got) {
                events_.push_back(std::move(msg));
                continue;
            }
            if (got->to_number<std::int64_t>() != id) continue;
            if (const auto* err = msg.if_contains("error")) throw std::runtime_error(method + ": " + json::serialize(*err));
            const auto* result = msg.if_contains("result");
            return result && result->is_object() ? result->as_object() : json::object();
        }
    }

    /// A command to the page.
    json::object page(const std::string& method, json::object params = {}, std::chrono::milliseconds timeout = 10s) {
        return call(method, std::move(params), session_, timeout);
    }

    /// Evaluates `expression` in the page (awaiting a promise); returns its value.
    /// Throws std::runtime_error when it throws.
    json::value eval(const std::string& expression) {
        const auto r = page("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
        if (const auto* ex = r.if_contains("exceptionDetails"))
            throw std::runtime_error("evaluation failed: " + json::serialize(*ex) + " in " + expression);
        const auto& result = r.at("result").as_object();
        const auto* v = result.if_contains("value");
        return v ? *v : json::value(nullptr);
    }

    /// Polls `predicate` (JavaScript, true when done) every 100 ms for at most `timeout`.
    bool wait_for(const std::string& predicate, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto v = eval("!!(" + predicate + ")");
            if (v.is_bool() && v.as_bool()) return true;
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(100ms);
        }
    }

    /// Navigates and waits (bounded) for the page to have loaded.
    void navigate(const std::string& url) {
        page("Page.navigate", {{"url", url}});
        if (!wait_for("document.readyState === 'complete' && location.href === " + js_string(url), 15s))
            throw std::runtime_error("the page did not load: " + url);
    }

    /// Clicks the element that `selector` finds, as a person would: scrolled into view, a
    /// mouse press and release at its centre. False when there is no such element.
    bool click(const std::string& selector) {
        const auto at = eval("(() => { const e = document.querySelector(" + js_string(selector) +
                             "); if (!e) return null; e.scrollIntoView({block: 'center'});"
                             " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()");
        if (!at.is_array()) return false;
        const double x = at.as_array().at(0).to_number<double>();
        const double y = at.as_array().at(1).to_number<double>();
        page("Input.dispatchMouseEvent", {{"type", "mouseMoved"}, {"x", x}, {"y", y}});
        page("Input.dispatchMouseEvent",
             {{"type", "mousePressed"}, {"x", x}, {"y", y}, {"button", "left"}, {"clickCount", 1}});
        page("Input.dispatchMouseEvent",
             {{"type", "mouseReleased"}, {"x", x}, {"y", y}, {"button", "left"}, {"clickCount", 1}});
        return true;
    }

    /// Focuses the field that `selector` finds, selects its text, and types `text` over it.
    bool type(const std::string& selector, const std::string& text) {
        const auto found = eval("(() => { const e = document.querySelector(" + js_string(selector) +
                                "); if (!e) return false; e.scrollIntoView({block: 'center'}); e.focus();"
                                " if (e.select) e.select(); return true; })()");
        if (!found.is_bool() || !found.as_bool()) return false;
        page("Input.insertText", {{"text", text}});
        return true;
    }

    /// Saves a PNG of the whole page to `file` (scrolled to the top first, so that sticky
    /// elements are drawn where they belong).
    void screenshot(const std::string& file) {
        eval("window.scrollTo(0, 0)");
        const auto metrics = page("Page.getLayoutMetrics");
        const auto& size = metrics.at("cssContentSize").as_object();
        const double width = size.at("width").to_number<double>();
        const double height = std::min(size.at("height").to_number<double>(), 8000.0);
        const auto shot = page("Page.captureScreenshot",
                               {{"format", "png"},
                                {"captureBeyondViewport", true},
                                {"clip", {{"x", 0}, {"y", 0}, {"width", width}, {"height", height}, {"scale", 1}}}},
                               30s);
        const auto& data = shot.at("data").as_string();
        std::ofstream(file, std::ios::binary) << base64_decode(std::string_view(data.data(), data.size()));
    }

    /// The events seen so far (method and params), also those of the page's session.
    const std::vector<json::object>& events() const { return events_; }

    /// Reads the events that arrived meanwhile, without waiting.
    void drain_events() {
        json::object msg;
        while (read_message(msg, std::chrono::steady_clock::now())) {
            if (!msg.if_contains("id")) events_.push_back(std::move(msg));
        }
    }

    /// Closes the browser (bounded: killed when it does not exit) and removes its profile.
    void close() noexcept {
        if (pid_ > 0) {
            try {
                call("Browser.close", {}, {}, 5s);
            } catch (...) {
            }
            const auto deadline = std::chrono::steady_clock::now() + 10s;
            int status = 0;
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (std::chrono::steady_clock::now() >= deadline) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(20ms);
            }
            pid_ = -1;
        }
        if (to_ >= 0) ::close(to_);
        if (from_ >= 0) ::close(from_);
        to_ = from_ = -1;
        std::error_code ec;
        if (!profile_.empty()) std::filesystem::remove_all(profile_, ec);
    }

private:
    void write(const std::string& text) {
        std::string data = text;
        data.push_back('\0');
        std::size_t done = 0;
        while (done < data.size()) {
            const ssize_t n = ::write(to_, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw std::runtime_error("the browser's pipe is closed");
            done += static_cast<std::size_t>(n);
        }
    }

    bool read_message(json::object& out, std::chrono::steady_clock::time_point deadline) {
        for (;;) {
            const auto nul = buffer_.find('\0');
            if (nul != std::string::npos) {
                const std::string text = buffer_.substr(0, nul);
                buffer_.erase(0, nul + 1);
                boost::system::error_code ec;
                auto v = json::parse(text, ec);
                if (ec || !v.is_object()) continue;
                out = std::move(v.as_object());
                return true;
            }
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
            pollfd p{from_, POLLIN, 0};
            const int ready = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) return false;
            char buf[65536];
            const ssize_t n = ::read(from_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            buffer_.append(buf, static_cast<std::size_t>(n));
        }
    }

    pid_t pid_ = -1;
    int to_ = -1;
    int from_ = -1;
    std::int64_t next_id_ = 0;
    std::string buffer_;
    std::string session_;
    std::vector<json::object> events_;
    std::filesystem::path profile_;
};

} // namespace cdp

#endif
