// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CREDENTIAL_STORE_HPP
#define SEKUIRE_CREDENTIAL_STORE_HPP

/// @file
/// The CredentialStore policy, the installation credentials it holds, `memory_store`, and
/// `credential_store`, a type-erased handle that can hold any store.
///
/// @par Requirements
/// A type `S` is a CredentialStore when, for `s` an lvalue of `S`, `c` a
/// `const installation_credentials&` and `ec` an `error_code&`:
///
/// | expression            | type                                      | semantics |
/// |-----------------------|-------------------------------------------|-----------|
/// | `S(s)`                |                                           | a cheap handle: copies share one state, so a beacon and a worker holding copies see each other's writes at once |
/// | `s.load(ec)`          | `std::optional<installation_credentials>` | the stored credentials, or `nullopt` when there are none. A store that cannot be read sets `ec` (never reports a corrupt store as empty). |
/// | `s.save(c, ec)`       | `void`                                    | replaces the credentials; durable when the store is |
/// | `s.clear(ec)`         | `void`                                    | removes them (after a revocation) |
/// | `s.lock_refresh()`    | `void`                                    | blocks until this holder may refresh the runtime token; shared by all copies, so concurrent refreshes collapse into one |
/// | `s.unlock_refresh()`  | `void`                                    | ends what `lock_refresh()` began |
///
/// Optional members, used when present:
///
/// | expression                   | type   | semantics |
/// |------------------------------|--------|-----------|
/// | `s.try_lock_refresh(ec)`     | `bool` | takes the refresh lock if it is free and returns true; never waits. Returns false with `ec` set to `errc::store_locked` when another holder has it, or to another store error when the lock cannot be used at all. sekuire takes the lock only this way when a store offers it, so that no wait on a store is unbounded: a busy lock is a transient store error, retried with backoff. Without it, `lock_refresh()` is used (and may wait without limit). |
/// | `s.check_writable(ec)`       | `void` | whether `save()` can work now, without changing the stored credentials; checked before a single-use install token is spent, so that it is never spent on credentials that could not be kept |
/// | `s.describe()`               | `std::string` | a short description for messages (a file store: its path); never a token |
/// | `s.version()`                | `std::optional<std::uint64_t>` | a value that changes whenever the contents may have changed (through any copy, or, for a file, by another process); nullopt when unknown. A beacon or worker that saw a version loads again only when it differs, so a step costs no load (no file read, no parse) while nothing changed. Read it before `load()`. |
///
/// All members are thread-safe.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/error.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace sekuire {

/** What an installation needs to authenticate, and to persist across restarts.

    After a bootstrap, `installation_id` and `refresh_token` let a restarted agent recover
    without a new install token; the runtime token is optional (it may have expired).
*/
struct installation_credentials {
    /// The installation's id (`inst_...`).
    std::string installation_id;
    /// The long-lived token that gets new runtime tokens.
    std::string refresh_token;
    /// The Bearer token of installation-scoped calls (may be empty or expired).
    std::string runtime_token;
    /// Expiry of `runtime_token`, when known.
    std::optional<wall_time_point> runtime_token_expires_at;
    /// When `runtime_token` was issued (received), when known: with the expiry it gives the
    /// token's lifetime, which bounds how early a short-lived token is refreshed.
    std::optional<wall_time_point> runtime_token_issued_at;
    /// Version of `runtime_token` as the backend numbers it (0 when unknown).
    std::int64_t token_version = 0;

    /// True when the installation can refresh its runtime token.
    bool can_refresh() const noexcept { return !installation_id.empty() && !refresh_token.empty(); }

    /// True when every field is equal.
    friend bool operator==(const installation_credentials& a, const installation_credentials& b) {
        return a.installation_id == b.installation_id && a.refresh_token == b.refresh_token &&
               a.runtime_token == b.runtime_token && a.runtime_token_expires_at == b.runtime_token_expires_at &&
               a.runtime_token_issued_at == b.runtime_token_issued_at && a.token_version == b.token_version;
    }
    /// True when a field differs.
    friend bool operator!=(const installation_credentials& a, const installation_credentials& b) {
        return !(a == b);
    }
};

namespace detail {

template <class T, class = void>
struct store_has_load : std::false_type {};
template <class T>
struct store_has_load<T, std::void_t<decltype(std::declval<T&>().load(std::declval<error_code&>()))>>
    : std::is_same<decltype(std::declval<T&>().load(std::declval<error_code&>())),
                   std::optional<installation_credentials>> {};

template <class T, class = void>
struct store_has_save : std::false_type {};
template <class T>
struct store_has_save<T, std::void_t<decltype(std::declval<T&>().save(std::declval<const installation_credentials&>(),
                                                                    std::declval<error_code&>()))>>
    : std::true_type {};

template <class T, class = void>
struct store_has_clear : std::false_type {};
template <class T>
struct store_has_clear<T, std::void_t<decltype(std::declval<T&>().clear(std::declval<error_code&>()))>>
    : std::true_type {};

template <class T, class = void>
struct store_has_refresh_lock : std::false_type {};
template <class T>
struct store_has_refresh_lock<
    T, std::void_t<decltype(std::declval<T&>().lock_refresh()), decltype(std::declval<T&>().unlock_refresh())>>
    : std::true_type {};

template <class T, class = void>
struct store_has_try_lock_refresh : std::false_type {};
template <class T>
struct store_has_try_lock_refresh<T, std::void_t<decltype(std::declval<T&>().try_lock_refresh(std::declval<error_code&>()))>>
    : std::is_convertible<decltype(std::declval<T&>().try_lock_refresh(std::declval<error_code&>())), bool> {};

template <class T, class = void>
struct store_has_check_writable : std::false_type {};
template <class T>
struct store_has_check_writable<T, std::void_t<decltype(std::declval<T&>().check_writable(std::declval<error_code&>()))>>
    : std::true_type {};

template <class T, class = void>
struct store_has_describe : std::false_type {};
template <class T>
struct store_has_describe<T, std::void_t<decltype(std::declval<const T&>().describe())>>
    : std::is_convertible<decltype(std::declval<const T&>().describe()), std::string> {};

template <class T, class = void>
struct store_has_version : std::false_type {};
template <class T>
struct store_has_version<T, std::void_t<decltype(std::declval<const T&>().version())>>
    : std::is_convertible<decltype(std::declval<const T&>().version()), std::optional<std::uint64_t>> {};

/// The store's `version()`: a value that changes whenever its contents may have changed
/// (nullopt: unknown, load to know). Stores without `version()` always say nullopt.
template <class Store>
std::optional<std::uint64_t> store_version(const Store& s) {
    if constexpr (store_has_version<Store>::value) {
        return s.version();
    } else {
        return std::nullopt;
    }
}

/// Takes the refresh lock of `s` without waiting when the store can (`try_lock_refresh`),
/// else by `lock_refresh()`. True when taken.
template <class Store>
bool try_lock_refresh(Store& s, error_code& ec) {
    ec = {};
    if constexpr (store_has_try_lock_refresh<Store>::value) {
        return s.try_lock_refresh(ec);
    } else {
        s.lock_refresh();
        return true;
    }
}

/// Whether `save()` can work now (stores without `check_writable` always can).
template <class Store>
void check_writable(Store& s, error_code& ec) {
    ec = {};
    if constexpr (store_has_check_writable<Store>::value) s.check_writable(ec);
}

/// The store's description for messages (empty when it has none).
template <class Store>
std::string describe_store(const Store& s) {
    if constexpr (store_has_describe<Store>::value) {
        return s.describe();
    } else {
        return {};
    }
}

} // namespace detail

/// True when `T` meets the CredentialStore requirements.
template <class T>
struct is_credential_store
    : std::bool_constant<std::is_copy_constructible<T>::value && detail::store_has_load<T>::value &&
                         detail::store_has_save<T>::value && detail::store_has_clear<T>::value &&
                         detail::store_has_refresh_lock<T>::value> {};

/// Instantiating this names every CredentialStore requirement that `T` misses.
template <class T>
struct check_credential_store {
    static_assert(std::is_copy_constructible<T>::value,
                  "CredentialStore requirements not met: T must be copy constructible (a handle to shared state)");
    static_assert(detail::store_has_load<T>::value,
                  "CredentialStore requirements not met: missing `std::optional<installation_credentials> "
                  "load(error_code&)`");
    static_assert(detail::store_has_save<T>::value,
                  "CredentialStore requirements not met: missing `void save(const installation_credentials&, "
                  "error_code&)`");
    static_assert(detail::store_has_clear<T>::value,
                  "CredentialStore requirements not met: missing `void clear(error_code&)`");
    static_assert(detail::store_has_refresh_lock<T>::value,
                  "CredentialStore requirements not met: missing `void lock_refresh()` and `void unlock_refresh()`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The CredentialStore requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept credential_store_policy = is_credential_store<T>::value;
/// Names `credential_store_policy` in a template head of your own:
/// `template <SEKUIRE_CREDENTIAL_STORE T>`. Plain `class` before C++20.
#define SEKUIRE_CREDENTIAL_STORE ::sekuire::credential_store_policy
#else
#define SEKUIRE_CREDENTIAL_STORE class
#endif

/** Tries to take the refresh lock of a store for a scope, without waiting when the store
    offers `try_lock_refresh` (see the optional members). `owns()` says whether it was
    taken; `error()` why not.
 */
template <class Store>
class refresh_lock {
public:
    /// Tries to take `s`'s refresh lock, without waiting where the store allows it; released by the
    /// destructor when taken.
    explicit refresh_lock(Store& s) : store_(s) { owns_ = detail::try_lock_refresh(store_, ec_); }
    ~refresh_lock() {
        if (owns_) store_.unlock_refresh();
    }
    refresh_lock(const refresh_lock&) = delete;
    refresh_lock& operator=(const refresh_lock&) = delete;

    /// Whether the lock is held.
    bool owns() const noexcept { return owns_; }
    /// Why it is not (`errc::store_locked` when another holder has it).
    const error_code& error() const noexcept { return ec_; }

private:
    Store& store_;
    error_code ec_;
    bool owns_ = false;
};

/** An in-memory CredentialStore. Copies share one state.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class memory_store {
public:
    /// An empty store.
    memory_store() : state_(std::make_shared<state>()) {}

    /// A store holding `initial`.
    explicit memory_store(installation_credentials initial) : memory_store() {
        state_->creds = std::move(initial);
    }

    /// The stored credentials, or `nullopt`. Never fails.
    std::optional<installation_credentials> load(error_code& ec) const {
        ec = {};
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->creds;
    }

    /// Replaces the stored credentials. Never fails.
    void save(const installation_credentials& c, error_code& ec) {
        ec = {};
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->creds = c;
        state_->version.fetch_add(1, std::memory_order_release);
    }

    /// Removes the stored credentials. Never fails.
    void clear(error_code& ec) {
        ec = {};
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->creds.reset();
        state_->version.fetch_add(1, std::memory_order_release);
    }

    /// Changes with every `save()` and `clear()` through any copy: a holder that saw this
    /// version has seen the contents (see the CredentialStore requirements).
    std::optional<std::uint64_t> version() const noexcept { return state_->version.load(std::memory_order_acquire); }

    /// Serialises token refreshes among the holders of this store.
    void lock_refresh() { state_->refresh_mutex.lock(); }
    /// Takes the refresh lock if it is free; else false with `errc::store_locked`. Never waits.
    bool try_lock_refresh(error_code& ec) {
        ec = {};
        if (state_->refresh_mutex.try_lock()) return true;
        ec = errc::store_locked;
        return false;
    }
    /// Ends `lock_refresh()` or a successful `try_lock_refresh()`.
    void unlock_refresh() { state_->refresh_mutex.unlock(); }

private:
    struct state {
        std::mutex mutex;
        std::mutex refresh_mutex;
        std::optional<installation_credentials> creds;
        std::atomic<std::uint64_t> version{0};
    };
    std::shared_ptr<state> state_;
};

/** A type-erased CredentialStore: a cheap handle to any store.

    The default typedefs (`sekuire::beacon`, `sekuire::worker`) use it, so that the store
    can be chosen at run time (`SEKUIRE_CREDENTIALS_FILE` selects a `file_store`) and one
    store is shared by a beacon and a worker whatever its kind. A default-constructed
    `credential_store` holds a new `memory_store`.

    @par Thread Safety
    As thread-safe as the store it holds (every store shipped with sekuire is).
*/
class credential_store {
public:
    /// Holds a new, empty `memory_store`.
    credential_store() : credential_store(memory_store{}) {}

    /// Holds a copy of `store` (which shares state with `store`).
    // std::conjunction stops before asking whether credential_store itself is a store (which
    // would ask whether it is copyable, which would consider this very constructor).
    template <class Store, class = std::enable_if_t<std::conjunction<
                               std::negation<std::is_same<std::decay_t<Store>, credential_store>>,
                               is_credential_store<std::decay_t<Store>>>::value>>
    credential_store(Store store) : impl_(std::make_shared<model<Store>>(std::move(store))) {}

    /// See the CredentialStore requirements.
    std::optional<installation_credentials> load(error_code& ec) const { return impl_->load(ec); }
    /// See the CredentialStore requirements.
    void save(const installation_credentials& c, error_code& ec) { impl_->save(c, ec); }
    /// See the CredentialStore requirements.
    void clear(error_code& ec) { impl_->clear(ec); }
    /// See the CredentialStore requirements.
    void lock_refresh() { impl_->lock_refresh(); }
    /// See the CredentialStore requirements.
    void unlock_refresh() { impl_->unlock_refresh(); }
    /// The held store's `try_lock_refresh`, or its `lock_refresh()` when it has none.
    bool try_lock_refresh(error_code& ec) { return impl_->try_lock_refresh(ec); }
    /// The held store's `check_writable` (nothing to check when it has none).
    void check_writable(error_code& ec) { impl_->check_writable(ec); }
    /// The held store's `describe()` (empty when it has none).
    std::string describe() const { return impl_->describe(); }
    /// The held store's `version()` (nullopt when it has none).
    std::optional<std::uint64_t> version() const { return impl_->version(); }

private:
    struct concept_t {
        virtual ~concept_t() = default;
        virtual std::optional<installation_credentials> load(error_code& ec) = 0;
        virtual void save(const installation_credentials& c, error_code& ec) = 0;
        virtual void clear(error_code& ec) = 0;
        virtual void lock_refresh() = 0;
        virtual void unlock_refresh() = 0;
        virtual bool try_lock_refresh(error_code& ec) = 0;
        virtual void check_writable(error_code& ec) = 0;
        virtual std::string describe() const = 0;
        virtual std::optional<std::uint64_t> version() const = 0;
    };
    template <class Store>
    struct model final : concept_t {
        explicit model(Store s) : store(std::move(s)) {}
        std::optional<installation_credentials> load(error_code& ec) override { return store.load(ec); }
        void save(const installation_credentials& c, error_code& ec) override { store.save(c, ec); }
        void clear(error_code& ec) override { store.clear(ec); }
        void lock_refresh() override { store.lock_refresh(); }
        void unlock_refresh() override { store.unlock_refresh(); }
        bool try_lock_refresh(error_code& ec) override { return detail::try_lock_refresh(store, ec); }
        void check_writable(error_code& ec) override { detail::check_writable(store, ec); }
        std::string describe() const override { return detail::describe_store(store); }
        std::optional<std::uint64_t> version() const override { return detail::store_version(store); }
        Store store;
    };
    std::shared_ptr<concept_t> impl_;
};

} // namespace sekuire

#endif
