// SPDX-License-Identifier: MIT
// signal_watcher with real signals. Each case runs in a child process of its own (forked
// before it starts any thread), so that the signals cannot reach the test program's other
// threads.
// Test that header file is self-contained.
#include <sekuire/signals.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>

namespace {

using namespace std::chrono_literals;

// Runs `body` in a child process; returns its exit code (-1 when it died otherwise or ran
// past 20 s).
int in_child(const std::function<int()>& body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int code = 99;
        try {
            code = body();
        } catch (...) {
        }
        std::_Exit(code);
    }
    if (pid < 0) return -1;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(5ms);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

template <class Pred>
bool wait_until(Pred p) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!p()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

} // namespace

BOOST_AUTO_TEST_SUITE(signals)

BOOST_AUTO_TEST_CASE(sigterm_and_sigint_run_the_callback_instead_of_ending_the_process) {
    const int code = in_child([] {
        std::atomic<int> last{0}, calls{0};
        sekuire::signal_watcher w([&](int sig) {
            last = sig;
            ++calls;
        });
        // A thread started afterwards inherits the blocked mask: the signal cannot end the
        // process through it.
        std::thread other([] { std::this_thread::sleep_for(50ms); });
        ::kill(::getpid(), SIGTERM);
        if (!wait_until([&] { return calls.load() == 1; })) return 1;
        if (last != SIGTERM || w.last_signal() != SIGTERM) return 2;
        ::kill(::getpid(), SIGINT);
        if (!wait_until([&] { return calls.load() == 2; })) return 3;
        if (last != SIGINT || w.received() != 2u) return 4;
        other.join();
        w.stop();
        return 0;
    });
    BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_CASE(after_stop_the_callback_never_runs_and_a_signal_stays_pending) {
    const int code = in_child([] {
        std::atomic<int> calls{0};
        {
            sekuire::signal_watcher w([&](int) { ++calls; });
            w.stop();
            w.stop(); // twice is fine
        } // and the destructor after stop() too
        ::kill(::getpid(), SIGTERM); // blocked in this thread: pending, not fatal
        sigset_t pending;
        sigpending(&pending);
        if (!sigismember(&pending, SIGTERM)) return 1;
        return calls.load() == 0 ? 0 : 2;
    });
    BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_CASE(chosen_signals_and_a_throwing_callback) {
    const int code = in_child([] {
        std::atomic<int> calls{0};
        sekuire::signal_watcher w(
            [&](int) {
                ++calls;
                throw 1; // kept from ending the process
            },
            {SIGUSR1});
        ::kill(::getpid(), SIGUSR1);
        if (!wait_until([&] { return calls.load() == 1; })) return 1;
        ::kill(::getpid(), SIGUSR1);
        if (!wait_until([&] { return calls.load() == 2; })) return 2;
        return 0;
    });
    BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_SUITE_END()
