// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_MAKE_POLICY_HPP
#define SEKUIRE_DETAIL_MAKE_POLICY_HPP

// The policies the options-only constructors build: a transport from the base URL and the
// transport options when the type can be built from them, a store from the credentials file.

#include <sekuire/credential_store.hpp>
#include <sekuire/file_store.hpp>
#include <sekuire/transport.hpp>

#include <string>
#include <type_traits>

namespace sekuire {
namespace detail {

/// Builds a default policy from the options when the policy can be built from them.
template <class Transport>
Transport make_transport(const std::string& base_url, const transport_options& o) {
    if constexpr (std::is_constructible<Transport, std::string, transport_options>::value) {
        return Transport(base_url, o);
    } else {
        return Transport();
    }
}

template <class Store>
Store make_store(const std::string& credentials_file) {
    if constexpr (std::is_same<Store, credential_store>::value) {
        if (!credentials_file.empty()) return credential_store(file_store(credentials_file));
        return credential_store();
    } else if constexpr (std::is_constructible<Store, std::string>::value) {
        return credentials_file.empty() ? Store() : Store(credentials_file);
    } else {
        return Store();
    }
}

} // namespace detail
} // namespace sekuire

#endif
