// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/transport.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(transport)

BOOST_AUTO_TEST_CASE(method_names) {
    BOOST_TEST(std::string(sekuire::to_string(sekuire::http_method::get)) == "GET");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::http_method::post)) == "POST");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::http_method::put)) == "PUT");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::http_method::delete_)) == "DELETE");
}

BOOST_AUTO_TEST_CASE(header_lookup_is_case_insensitive_and_first_wins) {
    sekuire::header_list h{{"Content-Type", "a"}, {"retry-after", "5"}, {"CONTENT-TYPE", "b"}};
    BOOST_TEST_REQUIRE(sekuire::find_header(h, "content-type") != nullptr);
    BOOST_TEST(*sekuire::find_header(h, "content-type") == "a");
    BOOST_TEST(*sekuire::find_header(h, "Retry-After") == "5");
    BOOST_TEST(sekuire::find_header(h, "Retry") == nullptr);
    BOOST_TEST(sekuire::find_header({}, "x") == nullptr);
    BOOST_TEST(sekuire::detail::iequals("", ""));
    BOOST_TEST(!sekuire::detail::iequals("a", "ab"));
    BOOST_TEST(!sekuire::detail::iequals("[", "{")); // not letters: no folding
}

BOOST_AUTO_TEST_CASE(defaults) {
    sekuire::http_request r;
    BOOST_TEST((r.method == sekuire::http_method::get));
    BOOST_TEST(r.timeout.count() == 10000);
    sekuire::transport_options o;
    BOOST_TEST(o.tls.verify_peer);
    BOOST_TEST(!o.allow_insecure_http);
    BOOST_TEST(o.max_response_size == (1u << 20));
}

BOOST_AUTO_TEST_SUITE_END()
