// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_STORE_EFFECTS_HPP
#define SEKUIRE_DETAIL_STORE_EFFECTS_HPP

// Performs the credential-store effects a core asks for, at once, and feeds their results
// back: every driver of a core (the synchronous templates, the asynchronous ones) does it
// the same way. Store operations never wait (the refresh lock is only tried), so they run
// inline on the driver's thread.

#include <sekuire/core/common.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/auth.hpp>

#include <optional>
#include <utility>

namespace sekuire {
namespace detail {

/// Whether `e` is a store effect (one `perform_store_effect` performs).
template <class Effect>
bool is_store_effect(const Effect& e) noexcept {
    using t = typename Effect::type;
    switch (e.what) {
    case t::lock_refresh:
    case t::unlock_refresh:
    case t::save:
    case t::clear:
    case t::adopt_token:
    case t::forget_token:
    case t::check_writable: return true;
    default: return false;
    }
}

/** Performs `e` on `store` and feeds its result to `core`, reading `clock` for the time of
    the result. Returns false (doing nothing) when `e` is not a store effect.
*/
template <class Store, class Core, class Effect, class Clock>
bool perform_store_effect(Store& store, Core& core, const Effect& e, Clock& clock) {
    using t = typename Effect::type;
    error_code ec;
    switch (e.what) {
    case t::lock_refresh: {
        const bool owned = try_lock_refresh(store, ec);
        std::optional<installation_credentials> stored;
        if (owned) stored = store.load(ec);
        core.on_refresh_lock(e.op, owned, std::move(stored), ec, read_clock(clock));
        return true;
    }
    case t::unlock_refresh: store.unlock_refresh(); return true;
    case t::save:
        if (e.credentials) store.save(*e.credentials, ec);
        core.on_stored(e.op, ec, read_clock(clock));
        return true;
    case t::clear:
        store.clear(ec);
        core.on_stored(e.op, ec, read_clock(clock));
        return true;
    case t::adopt_token: {
        adopt_result r;
        if (e.credentials) r = adopt_runtime_token(store, *e.credentials, e.token, e.when);
        core.on_adopted(e.op, std::move(r), read_clock(clock));
        return true;
    }
    case t::forget_token: {
        std::optional<installation_credentials> c = forget_runtime_token(store, e.text, ec);
        core.on_forgot(e.op, std::move(c), ec, read_clock(clock));
        return true;
    }
    case t::check_writable:
        check_writable(store, ec);
        core.on_writable(e.op, ec, describe_store(store), read_clock(clock));
        return true;
    default: return false;
    }
}

} // namespace detail
} // namespace sekuire

#endif
