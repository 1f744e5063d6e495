// SPDX-License-Identifier: MIT
// A memory store whose loads or saves fail on demand, as a file store does on EIO or a full
// disk. Copies share the counters and the stored credentials.
#ifndef SEKUIRE_TESTS_FAILING_STORE_HPP
#define SEKUIRE_TESTS_FAILING_STORE_HPP

#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>

#include <atomic>
#include <memory>
#include <optional>

namespace store_test {

struct failing_store {
    sekuire::memory_store inner;
    /// How many of the next loads (saves) fail with `errc::store_io`.
    std::shared_ptr<std::atomic<int>> failing_loads = std::make_shared<std::atomic<int>>(0);
    std::shared_ptr<std::atomic<int>> failing_saves = std::make_shared<std::atomic<int>>(0);

    std::optional<sekuire::installation_credentials> load(sekuire::error_code& ec) const {
        if (take(*failing_loads)) {
            ec = sekuire::errc::store_io;
            return std::nullopt;
        }
        return inner.load(ec);
    }
    void save(const sekuire::installation_credentials& c, sekuire::error_code& ec) {
        if (take(*failing_saves)) {
            ec = sekuire::errc::store_io;
            return;
        }
        inner.save(c, ec);
    }
    void clear(sekuire::error_code& ec) { inner.clear(ec); }
    void lock_refresh() { inner.lock_refresh(); }
    /// Never waits, as every store shipped with sekuire (a store without it is locked with
    /// the blocking lock_refresh(), under the beacon's or worker's own lock).
    bool try_lock_refresh(sekuire::error_code& ec) { return inner.try_lock_refresh(ec); }
    void unlock_refresh() { inner.unlock_refresh(); }

private:
    static bool take(std::atomic<int>& n) {
        int v = n.load();
        while (v > 0)
            if (n.compare_exchange_weak(v, v - 1)) return true;
        return false;
    }
};

} // namespace store_test

#endif
