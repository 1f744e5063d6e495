// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_IMPL_HTTP_COMMON_IPP
#define SEKUIRE_DETAIL_IMPL_HTTP_COMMON_IPP

// The bodies of detail/http_common.hpp's functions: included by detail/http_common.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/detail/http_common.hpp>

namespace sekuire {

auto detail::hex_value(char c) noexcept -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

auto detail::parse_ipv4(std::string_view s, std::array<unsigned char, 4>& out) noexcept -> bool {
    std::size_t part = 0, i = 0;
    while (part < 4) {
        const std::size_t begin = i;
        unsigned value = 0;
        while (i < s.size() && is_digit(s[i]) && i - begin < 3) value = value * 10 + static_cast<unsigned>(s[i++] - '0');
        const std::size_t len = i - begin;
        if (len == 0 || value > 255 || (len > 1 && s[begin] == '0')) return false;
        out[part++] = static_cast<unsigned char>(value);
        if (part < 4) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
    }
    return i == s.size();
}

auto detail::parse_ipv6(std::string_view s, std::array<unsigned char, 16>& out) noexcept -> bool {
    std::array<unsigned, 8> words{};
    int count = 0, gap = -1;
    std::size_t i = 0;
    if (s.size() < 2) return false;
    if (s[0] == ':') {
        if (s[1] != ':') return false;
        gap = 0;
        i = 2;
    }
    while (i < s.size()) {
        if (count == 8) return false;
        std::size_t j = i;
        unsigned value = 0;
        while (j < s.size() && hex_value(s[j]) >= 0 && j - i < 5) value = value * 16 + static_cast<unsigned>(hex_value(s[j++]));
        if (j == i) return false;
        if (j < s.size() && s[j] == '.') {
            std::array<unsigned char, 4> v4{};
            if (count > 6 || !parse_ipv4(s.substr(i), v4)) return false;
            words[static_cast<std::size_t>(count++)] = (unsigned(v4[0]) << 8) | v4[1];
            words[static_cast<std::size_t>(count++)] = (unsigned(v4[2]) << 8) | v4[3];
            i = s.size();
            break;
        }
        if (j - i > 4) return false;
        words[static_cast<std::size_t>(count++)] = value;
        i = j;
        if (i == s.size()) break;
        if (s[i] != ':') return false;
        ++i;
        if (i < s.size() && s[i] == ':') {
            if (gap >= 0) return false;
            gap = count;
            ++i;
        } else if (i == s.size()) {
            return false;
        }
    }
    if (gap < 0) {
        if (count != 8) return false;
    } else {
        if (count > 7) return false;
        const int tail = count - gap;
        for (int k = 0; k < tail; ++k)
            words[static_cast<std::size_t>(7 - k)] = words[static_cast<std::size_t>(count - 1 - k)];
        for (int k = gap; k < 8 - tail; ++k) words[static_cast<std::size_t>(k)] = 0;
    }
    for (std::size_t k = 0; k < 8; ++k) {
        out[2 * k] = static_cast<unsigned char>(words[k] >> 8);
        out[2 * k + 1] = static_cast<unsigned char>(words[k] & 0xff);
    }
    return true;
}

auto detail::is_loopback_host(std::string_view host) -> bool {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (iequals(host, "localhost")) return true;
    std::array<unsigned char, 4> v4{};
    if (parse_ipv4(host, v4)) return v4[0] == 127;
    std::array<unsigned char, 16> v6{};
    if (!parse_ipv6(host, v6)) return false;
    bool zero_head = true;
    for (std::size_t k = 0; k < 10; ++k) zero_head = zero_head && v6[k] == 0;
    if (!zero_head) return false;
    bool loop6 = v6[10] == 0 && v6[11] == 0 && v6[12] == 0 && v6[13] == 0 && v6[14] == 0 && v6[15] == 1;
    bool mapped127 = v6[10] == 0xff && v6[11] == 0xff && v6[12] == 127;
    return loop6 || mapped127;
}

auto detail::is_valid_host_name(std::string_view host) noexcept -> bool {
    if (host.empty() || host.size() > 253) return false;
    std::size_t begin = 0;
    std::string_view last;
    while (begin <= host.size()) {
        std::size_t end = host.find('.', begin);
        if (end == std::string_view::npos) end = host.size();
        const std::string_view label = host.substr(begin, end - begin);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        for (char c : label) {
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_';
            if (!ok) return false;
        }
        last = label;
        begin = end + 1;
    }
    bool numeric = std::all_of(last.begin(), last.end(), [](char c) { return is_digit(c); });
    if (!numeric && last.size() > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
        numeric = std::all_of(last.begin() + 2, last.end(), [](char c) { return hex_value(c) >= 0; });
    if (numeric) {
        std::array<unsigned char, 4> v4{};
        return parse_ipv4(host, v4);
    }
    return true;
}

auto detail::parse_base_url(std::string_view url, parsed_url& out, error_code& ec) -> bool {
    ec = {};
    auto fail = [&ec] {
        ec = errc::invalid_url;
        return false;
    };
    if (url.empty() || url.size() > 2048) return fail();
    for (char c : url) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '\\') return fail();
    }
    const std::size_t sep = url.find("://");
    if (sep == std::string_view::npos) return fail();
    std::string scheme(url.substr(0, sep));
    for (char& c : scheme) c = ascii_lower(c);
    if (scheme != "http" && scheme != "https") return fail();

    const std::string_view rest = url.substr(sep + 3);
    const std::size_t authority_end = rest.find_first_of("/?#");
    const std::string_view authority = rest.substr(0, authority_end);
    const std::string_view path = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
    if (!path.empty() && path.front() != '/') return fail(); // a query or fragment
    if (path.find_first_of("?#") != std::string_view::npos) return fail();
    if (authority.empty() || authority.find_first_of("@%") != std::string_view::npos) return fail();

    std::string_view host, port_text;
    bool has_port = false;
    if (authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return fail();
        host = authority.substr(1, close - 1);
        std::array<unsigned char, 16> v6{};
        if (!parse_ipv6(host, v6)) return fail();
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail();
            has_port = true;
            port_text = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = authority.substr(colon + 1);
        }
        if (!is_valid_host_name(host)) return fail();
    }

    int port = scheme == "https" ? 443 : 80;
    if (has_port) {
        if (port_text.empty() || port_text.size() > 5) return fail();
        int value = 0;
        for (char c : port_text) {
            if (!is_digit(c)) return fail();
            value = value * 10 + (c - '0');
        }
        if (value < 1 || value > 65535) return fail();
        port = value;
    }

    std::string_view prefix = path;
    while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);

    out.scheme = std::move(scheme);
    out.host.assign(host.begin(), host.end());
    for (char& c : out.host) c = ascii_lower(c);
    out.port = port;
    out.path_prefix.assign(prefix.begin(), prefix.end());
    out.loopback = is_loopback_host(out.host);
    return true;
}

auto detail::host_header_value(const parsed_url& u) -> std::string {
    std::string v = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    if (u.port != (u.scheme == "https" ? 443 : 80)) v += ":" + std::to_string(u.port);
    return v;
}

auto detail::is_token_char(char c) noexcept -> bool {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

auto detail::is_valid_header_name(std::string_view name) noexcept -> bool {
    return !name.empty() && std::all_of(name.begin(), name.end(), is_token_char);
}

auto detail::is_valid_header_value(std::string_view value) noexcept -> bool {
    return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

auto detail::is_valid_target(std::string_view target) noexcept -> bool {
    if (target.empty() || target.front() != '/' || target.size() > 8192) return false;
    for (char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '#') return false;
    }
    return true;
}

auto detail::validate_request(const http_request& req, error_code& ec) noexcept -> bool {
    ec = {};
    if (!is_valid_target(req.target)) {
        ec = errc::invalid_url;
        return false;
    }
    if (req.timeout <= std::chrono::milliseconds::zero()) {
        ec = errc::invalid_argument;
        return false;
    }
    for (const auto& h : req.headers) {
        if (!is_valid_header_name(h.name) || !is_valid_header_value(h.value) || iequals(h.name, "Content-Length") ||
            iequals(h.name, "Transfer-Encoding")) {
            ec = errc::invalid_argument;
            return false;
        }
    }
    return true;
}

auto detail::prepare_request(const http_request& req, const std::string& user_agent, const std::string& host, header_list& out, error_code& ec) -> bool {
    out.clear();
    if (!validate_request(req, ec)) return false;
    out.reserve(req.headers.size() + 3);
    for_each_request_field(req, user_agent, host, [&out](std::string_view n, std::string_view v) {
        out.push_back({std::string(n), std::string(v)});
    });
    return true;
}

auto detail::cap_timeout(std::chrono::milliseconds t) noexcept -> std::chrono::milliseconds {
    return (std::min)(t, std::chrono::milliseconds(std::chrono::hours(24)));
}

auto detail::declared_length_exceeds(const std::string& value, std::size_t limit) noexcept -> bool {
    std::size_t n = 0;
    bool any = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') continue;
        if (!is_digit(c)) return false; // malformed: left to the HTTP parser
        any = true;
        const auto d = static_cast<std::size_t>(c - '0');
        if (n > (limit - d) / 10) return true;
        n = n * 10 + d;
    }
    return any && n > limit;
}

} // namespace sekuire

#endif
