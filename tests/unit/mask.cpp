// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/mask.hpp>

#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using sekuire::mask_token;

// The documented type prefixes, the only ones a mask may show.
const std::vector<std::string> type_prefixes = {"skt_", "srt_", "sk_live_", "rt_"};

std::string random_string(std::mt19937_64& gen, std::size_t n, std::string_view alphabet) {
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += alphabet[pick(gen)];
    return s;
}

// What a mask reveals, read back from its text.
struct parsed_mask {
    bool well_formed = false;
    std::string prefix; // the type prefix shown
    std::string tail;   // the secret characters shown
};

parsed_mask parse(const std::string& m) {
    parsed_mask p;
    if (m.size() >= 3 && m.compare(m.size() - 3, 3, "***") == 0) {
        p.prefix = m.substr(0, m.size() - 3);
        p.well_formed = true;
    } else if (m.size() >= 7 && m.compare(m.size() - 7, 3, "...") == 0) {
        p.prefix = m.substr(0, m.size() - 7);
        p.tail = m.substr(m.size() - 4);
        p.well_formed = true;
    }
    return p;
}

bool is_type_prefix(const std::string& p) {
    if (p.empty()) return true;
    for (const auto& t : type_prefixes)
        if (p == t) return true;
    return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(mask)

BOOST_AUTO_TEST_CASE(documented_examples) {
    BOOST_TEST(mask_token("") == "");
    BOOST_TEST(mask_token("srt_a1b2c3d4e5f6a7b89f2c") == "srt_...9f2c");
    BOOST_TEST(mask_token("srt_a1b2c3d4") == "srt_***");
    BOOST_TEST(mask_token("skt_0123456789abcdef") == "skt_...cdef");
    BOOST_TEST(mask_token("sk_live_0123456789abcdefXYZW") == "sk_live_...XYZW");
    BOOST_TEST(mask_token("rt_0123456789abcdef") == "rt_...cdef");
    // A prefix with little secret behind it is not shown.
    BOOST_TEST(mask_token("skt_abc") == "***");
    BOOST_TEST(mask_token("skt_abcdefg") == "***");
    BOOST_TEST(mask_token("skt_abcdefgh") == "skt_***");
    // Without a known prefix.
    BOOST_TEST(mask_token("x") == "***");
    BOOST_TEST(mask_token("0123456789abcde") == "***");
    BOOST_TEST(mask_token("0123456789abcdef") == "...cdef");
    BOOST_TEST(mask_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl") == "...dXJl");
}

BOOST_AUTO_TEST_CASE(secret_words_are_not_prefixes) {
    // Lower-case words ending in '_' at the start of a secret are part of the secret
    // (base64url secrets have both), and a mask shows none of them.
    BOOST_TEST(mask_token("ab_cd_ef_0123456789ABCDEF") == "...CDEF");
    BOOST_TEST(mask_token("skt_ab_cd_0123456789ABCDEF") == "skt_...CDEF");
    BOOST_TEST(mask_token("abcdefg_0123456789ABCDEF") == "...CDEF");
    BOOST_TEST(mask_token("sk_test_0123456789ABCDEF") == "...CDEF");
    BOOST_TEST(mask_token("inst_0123456789ABCDEF") == "...CDEF");
}

BOOST_AUTO_TEST_CASE(unprintable_tails_are_hidden) {
    // A tail with control characters, spaces or partial UTF-8 is not shown.
    BOOST_TEST(mask_token("srt_0123456789abcd\r\nXY") == "srt_***");
    BOOST_TEST(mask_token("srt_0123456789abcdef \x01z") == "srt_***");
    BOOST_TEST(mask_token("srt_0123456789abc\xC3\xA9xy") == "srt_***");
    BOOST_TEST(mask_token(std::string_view("srt_0123456789abcdef\0abc", 24)) == "srt_***");
    BOOST_TEST(mask_token("srt_0123456789abcd~!z9") == "srt_...~!z9");
}

BOOST_AUTO_TEST_CASE(generated_tokens_never_leak) {
    // Secrets of every length from 0 to 200, drawn from base64url (which has lower-case
    // letters and '_'), from an alphabet made to look like type words, and from bytes.
    const std::vector<std::string> alphabets = {
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        "ab_",
        "skt_rliveab",
        std::string("\x01\x1f\x7f\x80\xff azAZ09_~", 14),
    };
    std::vector<std::string> prefixes = type_prefixes;
    prefixes.insert(prefixes.begin(), "");
    std::mt19937_64 gen(0x5e6b01e5);
    int checked = 0;
    for (std::size_t len = 0; len <= 200; ++len) {
        for (const auto& prefix : prefixes) {
            for (const auto& alphabet : alphabets) {
                const std::string secret = random_string(gen, len, alphabet);
                const std::string token = prefix + secret;
                const std::string m = mask_token(token);
                const parsed_mask p = parse(m);
                ++checked;
                BOOST_TEST_CONTEXT("token of " << token.size() << " bytes, prefix '" << prefix << "', mask '" << m
                                                << "'") {
                    // Stable: the same token always gives the same mask.
                    BOOST_TEST_REQUIRE(mask_token(token) == m);
                    if (token.empty()) {
                        BOOST_TEST_REQUIRE(m.empty());
                        continue;
                    }
                    // Shape: a documented type prefix, then "***" or "..." and 4 characters.
                    BOOST_TEST_REQUIRE(p.well_formed);
                    BOOST_TEST_REQUIRE(is_type_prefix(p.prefix));
                    BOOST_TEST_REQUIRE(token.compare(0, p.prefix.size(), p.prefix) == 0);
                    BOOST_TEST_REQUIRE(m.size() <= 15u);
                    // What follows the shown prefix is the secret; at most 4 of its
                    // characters show, the last ones, and only out of 16 or more.
                    const std::string shown_secret = token.substr(p.prefix.size());
                    BOOST_TEST_REQUIRE(p.tail.size() <= 4u);
                    if (!p.tail.empty()) {
                        BOOST_TEST_REQUIRE(shown_secret.size() >= 16u);
                        BOOST_TEST_REQUIRE(p.tail == shown_secret.substr(shown_secret.size() - 4));
                        for (const char c : p.tail) BOOST_TEST_REQUIRE((c >= '!' && c <= '~'));
                    }
                    // The generated secret: at most 4 of its characters are shown, and no
                    // run of more than 4 of them appears in the mask. (A secret drawn
                    // without a prefix may itself begin with a type prefix: then it is a
                    // token of that type, and the prefix is not secret.)
                    const bool starts_typed = prefix.empty() && !p.prefix.empty();
                    if (!starts_typed) {
                        BOOST_TEST_REQUIRE(p.prefix == prefix.substr(0, p.prefix.size()));
                        BOOST_TEST_REQUIRE(p.tail.size() <= 4u);
                    }
                    std::size_t leaked_run_at = std::string::npos;
                    for (std::size_t i = 0; i + 5 <= secret.size() && leaked_run_at == std::string::npos; ++i) {
                        if (m.find(secret.substr(i, 5)) != std::string::npos) leaked_run_at = i;
                    }
                    BOOST_TEST_REQUIRE(leaked_run_at == std::string::npos);
                    // A known prefix is shown whenever 8 or more secret characters follow it.
                    if (!prefix.empty() && secret.size() >= 8) BOOST_TEST_REQUIRE(p.prefix == prefix);
                }
            }
        }
    }
    BOOST_TEST(checked == 201 * 5 * 4);
}

BOOST_AUTO_TEST_CASE(masks_do_not_identify_the_middle) {
    // Two tokens that differ only inside the secret have the same mask.
    BOOST_TEST(mask_token("srt_AAAAAAAAAAAAAAAAwxyz") == mask_token("srt_BBBBBBBBBBBBBBBBwxyz"));
    // A mask never equals the token it masks.
    for (const char* t : {"a", "srt_x", "skt_0123456789abcdef", "...abcd", "srt_...abcd"}) {
        BOOST_TEST(mask_token(t) != t, t);
    }
}

BOOST_AUTO_TEST_SUITE_END()
