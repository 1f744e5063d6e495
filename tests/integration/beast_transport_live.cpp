// SPDX-License-Identifier: MIT
// beast_transport against real httplib servers on 127.0.0.1 (ephemeral ports): the live
// tests every transport passes (transport_live_tests.inc), through its blocking members,
// then what only an asynchronous transport does.
#include <sekuire/beast_transport.hpp>

#include "transport_live_helpers.hpp"

#include <boost/test/unit_test.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#if defined(__cpp_impl_coroutine)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <string>
#include <thread>

namespace {

// An io_context run by one thread for the whole test program: the executor of the
// transports whose blocking members the shared tests call.
class io_thread {
public:
    io_thread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
    io_thread(const io_thread&) = delete;
    io_thread& operator=(const io_thread&) = delete;
    ~io_thread() {
        guard_.reset();
        io_.stop();
        thread_.join();
    }
    boost::asio::any_io_executor executor() { return io_.get_executor(); }

private:
    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

io_thread& shared_io() {
    static io_thread io;
    return io;
}

} // namespace

BOOST_AUTO_TEST_SUITE(beast_transport_live)

using transport_under_test = sekuire::beast_transport;

inline transport_under_test make_transport_under_test(const std::string& url, sekuire::transport_options o) {
    return transport_under_test(shared_io().executor(), url, std::move(o));
}

// Asio sends with MSG_NOSIGNAL: the disposition is left as it is.
constexpr bool transport_ignores_default_sigpipe = false;
// The completion carries only the error code.
constexpr bool transport_names_proxy_refusals = false;

#include "transport_live_tests.inc"

BOOST_AUTO_TEST_SUITE_END()
