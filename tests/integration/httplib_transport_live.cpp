// SPDX-License-Identifier: MIT
// httplib_transport against real httplib servers on 127.0.0.1 (ephemeral ports): the live
// tests every transport passes (transport_live_tests.inc).
#include <sekuire/httplib_transport.hpp>

#include "transport_live_helpers.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

BOOST_AUTO_TEST_SUITE(httplib_transport_live)

using transport_under_test = sekuire::httplib_transport;

inline transport_under_test make_transport_under_test(const std::string& url, sekuire::transport_options o) {
    return transport_under_test(url, std::move(o));
}

// httplib writes without MSG_NOSIGNAL: the transport ignores a default SIGPIPE.
constexpr bool transport_ignores_default_sigpipe = true;
// The messages of the throwing calls name the status of a refused CONNECT.
constexpr bool transport_names_proxy_refusals = true;

#include "transport_live_tests.inc"

BOOST_AUTO_TEST_SUITE_END()
