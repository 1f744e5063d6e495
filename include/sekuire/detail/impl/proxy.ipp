// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_IMPL_PROXY_IPP
#define SEKUIRE_DETAIL_IMPL_PROXY_IPP

// The bodies of detail/proxy.hpp's functions: included by detail/proxy.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/detail/proxy.hpp>

namespace sekuire {

auto detail::base64_encode(std::string_view in) -> std::string {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (unsigned(static_cast<unsigned char>(in[i])) << 16) |
                           (unsigned(static_cast<unsigned char>(in[i + 1])) << 8) |
                           unsigned(static_cast<unsigned char>(in[i + 2]));
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
    }
    if (i < in.size()) {
        unsigned v = unsigned(static_cast<unsigned char>(in[i])) << 16;
        if (i + 1 < in.size()) v |= unsigned(static_cast<unsigned char>(in[i + 1])) << 8;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += i + 1 < in.size() ? table[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

auto detail::percent_decode(std::string_view in, std::string& out) -> bool {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        if (i + 2 >= in.size()) return false;
        const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) return false;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return true;
}

auto detail::parse_proxy_url(std::string_view text, proxy_endpoint& out, error_code& ec) -> bool {
    ec = {};
    auto fail = [&ec] {
        ec = errc::invalid_option;
        return false;
    };
    if (text.empty() || text.size() > 2048) return fail();
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '\\') return fail();
    }
    std::string_view rest = text;
    const std::size_t sep = rest.find("://");
    if (sep != std::string_view::npos) {
        if (!iequals(rest.substr(0, sep), "http")) return fail();
        rest.remove_prefix(sep + 3);
    }
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.find_first_of("/?#") != std::string_view::npos) return fail();

    out = proxy_endpoint{};
    const std::size_t at = rest.rfind('@');
    if (at != std::string_view::npos) {
        const std::string_view info = rest.substr(0, at);
        rest.remove_prefix(at + 1);
        const std::size_t colon = info.find(':');
        std::string user, password;
        if (!percent_decode(info.substr(0, colon), user)) return fail();
        if (colon != std::string_view::npos && !percent_decode(info.substr(colon + 1), password)) return fail();
        if (user.empty()) return fail();
        std::string pair = user;
        pair += ':';
        pair += password;
        out.authorization = "Basic " + base64_encode(pair);
    }

    // The authority parses as a base URL's would.
    parsed_url u;
    std::string as_url = "http://";
    as_url.append(rest.data(), rest.size());
    const std::size_t close = rest.rfind(']');
    const bool has_port = rest.find(':', close == std::string_view::npos ? 0 : close) != std::string_view::npos;
    if (!parse_base_url(as_url, u, ec)) return fail();
    out.host = std::move(u.host);
    out.port = has_port ? u.port : 1080;
    return true;
}

auto detail::parse_ip_prefix(std::string_view s) -> ip_prefix {
    ip_prefix p;
    int bits = -1;
    const std::size_t slash = s.find('/');
    if (slash != std::string_view::npos) {
        const std::string_view b = s.substr(slash + 1);
        if (b.empty() || b.size() > 3) return {};
        bits = 0;
        for (char c : b) {
            if (!is_digit(c)) return {};
            bits = bits * 10 + (c - '0');
        }
        s = s.substr(0, slash);
    }
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    std::array<unsigned char, 4> v4{};
    if (parse_ipv4(s, v4)) {
        if (bits > 32) return {};
        p.family = 4;
        for (std::size_t i = 0; i < 4; ++i) p.bytes[i] = v4[i];
        p.bits = bits < 0 ? 32 : bits;
        return p;
    }
    if (parse_ipv6(s, p.bytes)) {
        if (bits > 128) return {};
        p.family = 6;
        p.bits = bits < 0 ? 128 : bits;
        return p;
    }
    return {};
}

auto detail::prefix_contains(const ip_prefix& net, const ip_prefix& addr) noexcept -> bool {
    if (net.family == 0 || net.family != addr.family) return false;
    int bits = net.bits;
    for (std::size_t i = 0; bits > 0; ++i, bits -= 8) {
        const unsigned mask = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
        if ((net.bytes[i] & mask) != (addr.bytes[i] & mask)) return false;
    }
    return true;
}

auto detail::no_proxy_matches(std::string_view list, std::string_view host, int port) -> bool {
    const ip_prefix host_ip = parse_ip_prefix(host);
    std::size_t begin = 0;
    while (begin <= list.size()) {
        std::size_t end = list.find(',', begin);
        if (end == std::string_view::npos) end = list.size();
        std::string_view entry = list.substr(begin, end - begin);
        begin = end + 1;
        while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
        while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
        if (entry.empty()) continue;
        if (entry == "*") return true;

        // An optional :port. A bare IPv6 address has colons of its own: a port needs brackets.
        int entry_port = 0;
        const std::size_t colon = entry.rfind(':');
        const bool bracketed = entry.front() == '[';
        if (colon != std::string_view::npos && (bracketed ? colon > 0 && entry[colon - 1] == ']'
                                                          : entry.find(':') == colon)) {
            const std::string_view p = entry.substr(colon + 1);
            if (p.empty() || p.size() > 5) continue;
            bool ok = true;
            for (char c : p) {
                ok = ok && is_digit(c);
                entry_port = entry_port * 10 + (c - '0');
            }
            if (!ok) continue;
            entry = entry.substr(0, colon);
        }
        if (entry_port != 0 && entry_port != port) continue;

        const ip_prefix net = parse_ip_prefix(entry);
        if (net.family != 0) {
            if (prefix_contains(net, host_ip)) return true;
            continue;
        }
        if (entry.size() >= 2 && entry[0] == '*' && entry[1] == '.') entry.remove_prefix(1);
        while (!entry.empty() && entry.front() == '.') entry.remove_prefix(1);
        while (!entry.empty() && entry.back() == '.') entry.remove_suffix(1);
        if (entry.empty() || host_ip.family != 0) continue;
        std::string_view h = host;
        while (!h.empty() && h.back() == '.') h.remove_suffix(1);
        if (iequals(h, entry)) return true;
        if (h.size() > entry.size() && h[h.size() - entry.size() - 1] == '.' &&
            iequals(h.substr(h.size() - entry.size()), entry))
            return true;
    }
    return false;
}

auto detail::connect_authority(const parsed_url& target) -> std::string {
    std::string v = target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host;
    v += ':';
    v += std::to_string(target.port);
    return v;
}

auto detail::connect_request(const parsed_url& target, const proxy_endpoint& proxy, std::string_view user_agent) -> std::string {
    const std::string authority = connect_authority(target);
    std::string r;
    r.reserve(96 + 2 * authority.size() + proxy.authorization.size() + user_agent.size());
    r += "CONNECT ";
    r += authority;
    r += " HTTP/1.1\r\nHost: ";
    r += authority;
    r += "\r\nUser-Agent: ";
    r.append(user_agent.data(), user_agent.size());
    r += "\r\n";
    if (!proxy.authorization.empty()) {
        r += "Proxy-Authorization: ";
        r += proxy.authorization;
        r += "\r\n";
    }
    r += "\r\n";
    return r;
}

auto detail::connect_reply_status(std::string_view head) noexcept -> int {
    if (head.size() < 12 || head.substr(0, 7) != "HTTP/1." || !is_digit(head[7]) || head[8] != ' ') return -1;
    if (!is_digit(head[9]) || !is_digit(head[10]) || !is_digit(head[11])) return -1;
    if (head.size() > 12 && head[12] != ' ' && head[12] != '\r') return -1;
    return (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
}

auto detail::connect_refused_message(int status) -> std::string {
    if (status == 407) return "the proxy refused the tunnel: 407 Proxy Authentication Required";
    if (status < 0) return "the proxy did not answer CONNECT with HTTP";
    return "the proxy refused the tunnel with status " + std::to_string(status);
}

} // namespace sekuire

#endif
