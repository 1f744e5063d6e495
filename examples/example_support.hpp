// SPDX-License-Identifier: MIT
// Small helpers shared by the examples (not part of the library).
#ifndef SEKUIRE_EXAMPLES_SUPPORT_HPP
#define SEKUIRE_EXAMPLES_SUPPORT_HPP

#include <boost/json.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <thread>

namespace examples {

/** Runs `on_signal` (once) when SIGINT or SIGTERM arrives. Create it first in main(),
    before any thread starts: the signals are blocked in every thread and taken by a
    watcher thread, so no async-signal-safety rules apply to the callback.
*/
class stop_on_signals {
public:
    explicit stop_on_signals(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        ::pthread_sigmask(SIG_BLOCK, &set_, nullptr);
        watcher_ = std::thread([this] {
            while (!done_) {
                timespec slice{0, 200 * 1000 * 1000};
                const int sig = ::sigtimedwait(&set_, nullptr, &slice);
                if (sig > 0) {
                    on_signal_(sig);
                    return;
                }
            }
        });
    }
    stop_on_signals(const stop_on_signals&) = delete;
    stop_on_signals& operator=(const stop_on_signals&) = delete;
    ~stop_on_signals() { stop(); }

    /// Stops watching (the callback has returned, or will never run); call it before what
    /// the callback uses goes away.
    void stop() {
        done_ = true;
        if (watcher_.joinable()) watcher_.join();
    }

private:
    sigset_t set_;
    std::function<void(int)> on_signal_;
    std::atomic<bool> done_{false};
    std::thread watcher_;
};

/// An environment variable, or "" when unset.
inline std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

/// The `text` string of a task input, or "".
inline std::string text_of(const boost::json::value& input) {
    if (const auto* o = input.if_object())
        if (const auto* t = o->if_contains("text"))
            if (const auto* s = t->if_string()) return std::string(*s);
    return {};
}

/// The first `n` characters (UTF-8 code points) of `s`.
inline std::string first_chars(const std::string& s, std::size_t n) {
    std::size_t i = 0, count = 0;
    while (i < s.size() && count < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        i += len;
        ++count;
    }
    return s.substr(0, std::min(i, s.size()));
}

/// The seed's `summarize` handler: the first 140 characters of `text`.
inline boost::json::value summarize(const boost::json::value& input) {
    return boost::json::value{{"summary", first_chars(text_of(input), 140)}};
}

} // namespace examples

#endif
