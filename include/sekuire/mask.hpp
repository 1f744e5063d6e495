// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_MASK_HPP
#define SEKUIRE_MASK_HPP

/// @file
/// Masking of tokens for display: in status, logs and error messages a token appears only
/// masked.

#include <string>
#include <string_view>

namespace sekuire {

/** Masks a token so that a person can recognise it but nobody can use it.

    The result keeps the token's non-secret type prefix (the leading lower-case words
    ending in `_`, at most 8 characters, such as `skt_`, `srt_` or `sk_live_`) and, when
    the secret part is at least 16 characters long, its last 4 characters:
    `srt_...9f2c`. A shorter secret shows none of its characters: `srt_***`. An empty
    token gives an empty string. At most 4 secret characters are ever shown, and never more
    than a quarter of the secret.

    @par Thread Safety
    Pure function.
*/
inline std::string mask_token(std::string_view token) {
    if (token.empty()) return std::string();
    std::size_t prefix = 0;
    for (std::size_t i = 0; i < token.size() && i < 8; ++i) {
        const char c = token[i];
        if (c == '_') {
            prefix = i + 1;
        } else if (c < 'a' || c > 'z') {
            break;
        }
    }
    // A "prefix" that leaves no secret is not a prefix.
    if (token.size() - prefix < 8) prefix = 0;
    const std::string_view secret = token.substr(prefix);
    std::string out(token.substr(0, prefix));
    if (secret.size() >= 16) {
        out += "...";
        out += secret.substr(secret.size() - 4);
    } else {
        out += "***";
    }
    return out;
}

} // namespace sekuire

#endif
