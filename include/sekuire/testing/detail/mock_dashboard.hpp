// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_DETAIL_MOCK_DASHBOARD_HPP
#define SEKUIRE_TESTING_DETAIL_MOCK_DASHBOARD_HPP

/// @file
/// The mock backend's fleet dashboard: the files of assets/dashboard/, embedded in
/// `mock_dashboard_files.hpp` (generated: scripts/embed-dashboard), and where they are
/// served. Users include `<sekuire/testing/mock_backend.hpp>`; docs/mock-backend.md
/// describes the page.

#include <sekuire/testing/detail/mock_dashboard_files.hpp>

#include <string>
#include <string_view>

namespace sekuire {
namespace testing {

/// Where the mock backend serves its dashboard (also at `/`).
inline constexpr std::string_view mock_dashboard_path = "/dashboard";

namespace detail {

/// The Content-Security-Policy of the dashboard's files: its own script, style and API
/// only (no inline script or style, no eval, no other origin, no framing, no form posts).
inline constexpr std::string_view mock_dashboard_csp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard file served at `path` (`/`, `/dashboard`, `/dashboard/` for the page,
/// `/dashboard/<name>` for the others), or null.
inline const mock_dashboard_file* mock_dashboard_find(std::string_view path) noexcept {
    std::string_view name;
    if (path == "/" || path == mock_dashboard_path || (path.size() == mock_dashboard_path.size() + 1 &&
                                                        path.substr(0, mock_dashboard_path.size()) == mock_dashboard_path &&
                                                        path.back() == '/')) {
        name = "index.html";
    } else if (path.size() > mock_dashboard_path.size() + 1 &&
               path.substr(0, mock_dashboard_path.size()) == mock_dashboard_path &&
               path[mock_dashboard_path.size()] == '/') {
        name = path.substr(mock_dashboard_path.size() + 1);
    } else {
        return nullptr;
    }
    for (const auto& f : mock_dashboard_files)
        if (f.name == name) return &f;
    return nullptr;
}

/// The content of a dashboard file.
inline std::string mock_dashboard_content(const mock_dashboard_file& f) {
    std::string out;
    for (std::size_t i = 0; i < f.chunk_count; ++i) out += f.chunks[i];
    return out;
}

} // namespace detail
} // namespace testing
} // namespace sekuire

#endif
