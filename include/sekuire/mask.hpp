// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_MASK_HPP
#define SEKUIRE_MASK_HPP

/// @file
/// Masking of tokens for display: in status, logs and error messages a token appears only
/// masked.

#include <string>
#include <string_view>

namespace sekuire {

namespace detail {
// Only known type prefixes are shown. A generic rule ("leading lower-case words ending in
// `_`") also matches the start of a random secret, since base64url secrets contain both
// lower-case letters and `_`, and would then show up to 8 characters of it.
inline constexpr std::string_view token_type_prefixes[] = {"sk_live_", "skt_", "srt_", "rt_"};
} // namespace detail

/** Masks a token so that a person can recognise it but nobody can use it.

    The result keeps the token's non-secret type prefix when it has one of the known ones
    (`skt_` install tokens, `sk_live_` API keys, `srt_` runtime and `rt_` refresh tokens)
    and, when the secret part is at least 16 characters long and its last 4 are printable
    ASCII, those last 4 characters: `srt_...9f2c`. Otherwise the secret shows none of its
    characters: `srt_***`. A prefix is shown only when at least 8 secret characters follow
    it (`skt_abc` gives `***`). An empty token gives an empty string. At most 4 secret
    characters are ever shown, and never more than a quarter of the secret.

    @par Thread Safety
    Pure function.
*/
inline std::string mask_token(std::string_view token) {
    if (token.empty()) return std::string();
    std::string_view prefix;
    for (const std::string_view p : detail::token_type_prefixes) {
        if (token.substr(0, p.size()) == p) {
            prefix = p;
            break;
        }
    }
    // A prefix that leaves little secret is not shown: it would tell how short the secret is.
    if (token.size() - prefix.size() < 8) prefix = std::string_view();
    const std::string_view secret = token.substr(prefix.size());
    std::string out(prefix);
    bool show_tail = secret.size() >= 16;
    const std::string_view tail = show_tail ? secret.substr(secret.size() - 4) : std::string_view();
    // Control characters or partial UTF-8 would corrupt the log line that shows the mask.
    for (const char c : tail)
        if (c < '!' || c > '~') show_tail = false;
    if (show_tail) {
        out += "...";
        out += tail;
    } else {
        out += "***";
    }
    return out;
}

} // namespace sekuire

#endif
