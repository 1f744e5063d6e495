// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_FILE_STORE_HPP
#define SEKUIRE_FILE_STORE_HPP

/// @file
/// `file_store`: a durable CredentialStore kept in one JSON file (POSIX).
///
/// @par File format
/// One JSON object, written with Boost.JSON:
/// ```json
/// {"format": 1, "installation_id": "...", "refresh_token": "...", "runtime_token": "...",
///  "runtime_token_expires_at": "2026-02-03T12:05:00Z",
///  "runtime_token_issued_at": "2026-01-03T12:05:00Z", "token_version": 3}
/// ```
/// `runtime_token_expires_at` and `runtime_token_issued_at` are omitted when unknown, and
/// are stored to the millisecond (RFC 3339, UTC). Reading is strict: the file is at most
/// `file_store::max_file_size` bytes; it must parse as a JSON object whose `format` is 1,
/// whose `installation_id` is a non-empty string, whose `refresh_token` and `runtime_token`
/// are strings, whose `token_version` is a 64-bit signed integer and whose expiry, when
/// present, is a valid RFC 3339 string. Anything else is `errc::store_corrupt`; keys this
/// version does not know are ignored.
///
/// @par Durability
/// `save()` writes a new file beside the target (`<path>.tmp-...`, created exclusively with
/// mode 0600 whatever the umask), syncs it, renames it over the target and syncs the
/// directory: readers see the old file or the new one, never a half-written one. A crash
/// between the creation and the rename can leave a `<path>.tmp-<pid>-<n>` file behind; it is
/// never read, and the next `save()` removes it once the process that wrote it is gone (or
/// it is an hour old).
///
/// @par Trust
/// `load()` reads only a file it can trust with credentials: it opens the path without
/// following a symbolic link (`O_NOFOLLOW`) and checks, on the open descriptor, that it is a
/// regular file owned by the effective user and not writable by group or others. Anything
/// else is `errc::store_insecure` (never taken as empty): whoever can write the directory
/// must not be able to inject credentials. The lock file `<path>.lock` is held to the same
/// rules.
///
/// @par Corrupt files are kept
/// When `save()` finds the existing file corrupt (as `load()` would report it), it first
/// keeps it as `<path>.corrupt-<UTC time, e.g. 20260203T120500Z>` (with `-1`, `-2`, ...
/// appended when that name is taken; an earlier kept file is never overwritten), then
/// writes the new file. The kept file is a hard link to the old one where the file system
/// allows it, so the target never disappears in between; elsewhere it is renamed aside.
/// sekuire never deletes kept files.

#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/time.hpp>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {

namespace detail {
namespace cred_file {

inline constexpr std::size_t max_size = std::size_t{64} * 1024;

// What failed, for the message of the throwing overloads. `reason` is always a literal, so
// that no byte of the file (a token) can reach an error message.
struct status {
    error_code ec;
    const char* reason = "";
    int sys = 0;
};

SEKUIRE_DECL void fail(status& s, errc e, const char* reason, int sys = 0) noexcept;

// The part of stat() that changes whenever the file is replaced or rewritten. The inode
// alone is not enough (a freed inode number is reused at once), hence size and mtime.
struct identity {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    std::int64_t mtime_sec = 0;
    long mtime_nsec = 0;

    friend bool operator==(const identity& a, const identity& b) noexcept {
        return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_sec == b.mtime_sec &&
               a.mtime_nsec == b.mtime_nsec;
    }
    friend bool operator!=(const identity& a, const identity& b) noexcept { return !(a == b); }
};

// Whether a file with identity `id`, read when the wall clock said `read_at`, may be taken
// as unchanged while its identity stays the same. A file whose mtime is that recent could
// be replaced within the same timestamp tick by a file of the same size reusing the freed
// inode number, which stat() cannot tell apart (git's "racy" index entries). Any write
// after the read gets a newer mtime once the read was more than one tick (2 s on FAT)
// after the old mtime, hence the margin.
SEKUIRE_DECL bool stable_since(const identity& id, std::int64_t read_at) noexcept;

inline std::int64_t wall_seconds() noexcept { return static_cast<std::int64_t>(std::time(nullptr)); }

SEKUIRE_DECL identity identity_of(const struct stat& sb) noexcept;

// Whether an open file may be trusted with credentials: a regular file owned by the
// effective user, not writable by group or others. Sets `st` when not.
SEKUIRE_DECL bool private_file(const struct stat& sb, status& st) noexcept;

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    void reset(int fd) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // close() can report a deferred write error (NFS); a writer must see it.
    int close() noexcept {
        const int fd = fd_;
        fd_ = -1;
        return fd >= 0 ? ::close(fd) : 0;
    }

private:
    int fd_ = -1;
};

SEKUIRE_DECL int open_retry(const char* path, int flags, mode_t mode = 0) noexcept;

// An empty path, an embedded NUL (which the C API would silently cut at) or a trailing
// slash cannot name a file.
SEKUIRE_DECL bool valid_path(const std::string& p) noexcept;

SEKUIRE_DECL std::string dir_of(const std::string& p);

SEKUIRE_DECL std::string base_of(const std::string& p);

// Removes "." and ".." and repeated slashes from an absolute path, without touching the
// disk (used only when the directory cannot be resolved).
SEKUIRE_DECL std::string lexically_normal(const std::string& abs);

// The key under which every file_store of this process on the same file shares one refresh
// lock: the resolved directory plus the file name.
SEKUIRE_DECL std::string canonical_key(const std::string& path);

SEKUIRE_DECL bool write_all(int fd, const char* data, std::size_t n, int& err) noexcept;

// Reads at most `limit + 1` bytes, so that the caller can tell an oversized file.
SEKUIRE_DECL bool read_bounded(int fd, std::size_t limit, std::string& out, int& err);

// On macOS fsync() does not flush the drive's cache; F_FULLFSYNC does.
SEKUIRE_DECL int full_sync(int fd) noexcept;

SEKUIRE_DECL bool sync_dir(const std::string& dir, status& st);

SEKUIRE_DECL std::string encode(const installation_credentials& c);

SEKUIRE_DECL bool string_field(const boost::json::object& o, std::string_view key, std::string& out, const char*& reason);

// Strict decoding; returns null on success, else why the text is not a credentials file.
SEKUIRE_DECL const char* decode(std::string_view text, installation_credentials& out);

enum class read_outcome { missing, ok, corrupt, io };

// Reads and decodes the file; `id` is the identity of what was read (valid for `ok` and
// `corrupt`).
SEKUIRE_DECL read_outcome read_file(const std::string& path, installation_credentials& out, identity& id, status& st);

SEKUIRE_DECL std::string utc_stamp();

// Keeps the corrupt file (dev/ino `bad`) as <path>.corrupt-<stamp>[-N]. A hard link keeps
// the target in place, so a concurrent reader never sees the credentials vanish; and since
// link() refuses an existing name, no earlier kept file is overwritten. Without hard links,
// rename() after a check that the name is free (racy only against another writer picking
// the same name in the same second, on such a file system).
SEKUIRE_DECL bool keep_aside(const std::string& path, const identity& bad, status& st);

SEKUIRE_DECL unsigned long next_temp_number() noexcept;

// Writes `bytes` to a new file and renames it over `path`; `id` is the identity of the new
// file. On failure before the rename, the temporary file is removed.
SEKUIRE_DECL bool write_atomically(const std::string& path, const std::string& bytes, identity& id, status& st);

// The process id in a temporary file name `<base>.tmp-<pid>-<n>`, or -1 when `name` is not one.
SEKUIRE_DECL long temp_owner(const std::string& name, const std::string& base) noexcept;

// Removes the temporary files a crashed writer left beside `path`: ours, in the directory,
// whose process is gone (or that are an hour old, for a process id reused since). A live
// writer's file is left alone: its rename must not fail.
SEKUIRE_DECL void remove_stale_temps(const std::string& path);

// Whether a file can be created beside `path` now (what save() needs), without touching
// the credentials: creates and removes an empty temporary file.
SEKUIRE_DECL bool probe_writable(const std::string& path, status& st);

// A binary semaphore (not a mutex: unlock_refresh() may come from another thread than
// lock_refresh()) plus the flock()ed lock file while held.
struct lock_entry {
    std::mutex mutex;
    std::condition_variable cv;
    bool held = false;
    int fd = -1;
};

struct lock_registry {
    std::mutex mutex;
    std::map<std::string, std::weak_ptr<lock_entry>> entries;
};

// Counts the times a refresh lock had to wait (in this process, or on the lock file held by
// another process), so that tests can see a contender block without sleeping.
struct lock_waits {
    std::mutex mutex;
    std::condition_variable changed;
    std::uint64_t in_process = 0;
    std::uint64_t on_file = 0;
};

SEKUIRE_DECL lock_waits& waits();

SEKUIRE_DECL void count_wait(std::uint64_t lock_waits::*counter);

/// Waits (real time, bounded) until at least `n` waits of the kind were counted.
SEKUIRE_DECL bool wait_for_waits(std::uint64_t lock_waits::*counter, std::uint64_t n, std::chrono::milliseconds timeout);

SEKUIRE_DECL std::uint64_t wait_count(std::uint64_t lock_waits::*counter);

SEKUIRE_DECL lock_registry& registry();

SEKUIRE_DECL std::shared_ptr<lock_entry> lock_entry_for(const std::string& key);

// Opens the lock file, creating it with mode 0600; -1 when it cannot be (the caller then
// relies on the in-process lock alone), -2 with `st` set when it exists but is not
// private (another user could hold it, or swap it, for ever).
SEKUIRE_DECL int open_lock_file(const std::string& lock_path, status& st) noexcept;

// Takes the lock file without waiting: the descriptor, -1 when no lock file can be used
// (in-process exclusion only), -2 with `st` set when it cannot be taken (held by another
// process: errc::store_locked; not private: errc::store_insecure).
SEKUIRE_DECL int try_lock_file(const std::string& lock_path, status& st) noexcept;

// Blocks until the lock file is taken (for the blocking lock_refresh() only); -1 when no
// lock file can be used.
SEKUIRE_DECL int lock_file(const std::string& lock_path) noexcept;

} // namespace cred_file
} // namespace detail

/** A durable CredentialStore: the credentials live in one JSON file (see the file comment
    for the format, the durability guarantees and the keeping of corrupt files).

    A cheap handle: copies share one state, so a beacon and a worker holding copies see
    each other's writes at once. The last value loaded or saved is cached, and the file is
    read again only when `stat()` shows it changed (device, inode, size or modification
    time to the nanosecond), so a heartbeat does not parse the file each time while a write
    by another process or another `file_store` is still seen. A file modified less than a
    few seconds before it was read is read again on every `load()` until it is older: within
    one file system timestamp tick, a replacement of the same size that reuses the freed
    inode number would look unchanged to `stat()`.

    The directory of `path` must exist; the file is created by the first `save()`. A
    symbolic link at `path` is replaced by a regular file on `save()`. The file is created
    with mode 0600, owned by the writing user.

    @par Refresh lock
    `lock_refresh()` excludes every holder of the same file: copies, other `file_store`
    objects of this process naming the same file (a process-wide registry keyed by the
    resolved path), and other processes (an exclusive `flock()` on `<path>.lock`, created
    with mode 0600 and never removed). When the lock file cannot be created or locked (a
    read-only directory, a file system without `flock`), only the in-process exclusion
    applies.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class file_store {
public:
    /// The largest file `load()` accepts; a larger one is corrupt.
    static constexpr std::size_t max_file_size = detail::cred_file::max_size;

    /// A store kept in the file `path`. Touches nothing on disk.
    explicit file_store(std::string path) : state_(std::make_shared<state>(std::move(path))) {}

    /** The stored credentials, or `nullopt` when the file does not exist.

        Sets `ec` to `errc::store_corrupt` when the file is not a valid credentials file
        (never reported as empty), to `errc::store_insecure` when it is not private (a
        symbolic link, a non-regular file, another owner, writable by group or others: see
        the file comment) and to `errc::store_io` when it cannot be read (an unreadable file,
        a path through a regular file). Never throws for these.
    */
    SEKUIRE_DECL std::optional<installation_credentials> load(error_code& ec) const;

    /** Replaces the stored credentials, durably (see the file comment).

        A corrupt existing file is first kept aside as `<path>.corrupt-<time>[-N]`. Sets
        `ec` to `errc::store_io` when the file cannot be written (the old file is then left
        as it was) or when the directory cannot be synced after the new file took its place,
        and to `errc::invalid_argument` without touching the disk when `c` cannot be stored
        faithfully: an empty `installation_id`, text that is not valid UTF-8, or an expiry
        that cannot be written as RFC 3339. An expiry is stored truncated to whole
        milliseconds, and loads (from this handle too) return it so truncated.
    */
    SEKUIRE_DECL void save(const installation_credentials& c, error_code& ec);

    /// Removes the file (a missing file is fine) and syncs its directory. Sets `ec` to
    /// `errc::store_io` when the file cannot be removed.
    SEKUIRE_DECL void clear(error_code& ec);

    /// As `load(error_code&)`, but throws `sekuire::error` on failure.
    SEKUIRE_DECL std::optional<installation_credentials> load() const;

    /// As `save(const installation_credentials&, error_code&)`, but throws `sekuire::error`.
    SEKUIRE_DECL void save(const installation_credentials& c);

    /// As `clear(error_code&)`, but throws `sekuire::error`.
    SEKUIRE_DECL void clear();

    /** Blocks, without a time limit, until no other holder of this file (in this process
        or another) holds the refresh lock, then takes it. Not recursive: a holder that calls
        it again waits for itself. Never fails: without a usable (or a trustworthy) lock file
        it falls back to the in-process lock (see the class comment). sekuire itself only
        uses `try_lock_refresh()`, which never waits.
    */
    SEKUIRE_DECL void lock_refresh();

    /** Takes the refresh lock if no other holder of this file (in this process or another)
        has it, without waiting. Returns false with `ec` set to `errc::store_locked` when
        another holder has it, and to `errc::store_insecure` when the lock file is a symbolic
        link or is not private to this user (a lock file another user controls could be
        held by them for ever). Without a usable lock file (a read-only directory, a file
        system without `flock`) only the in-process exclusion applies.
    */
    SEKUIRE_DECL bool try_lock_refresh(error_code& ec);

    /** Whether `save()` can create its file now: creates and removes an empty temporary
        file beside the path. Sets `ec` to `errc::store_io` when it cannot (a directory that
        does not exist or is not writable). Never touches the credentials.
    */
    SEKUIRE_DECL void check_writable(error_code& ec);

    /// "file <path>", for messages.
    std::string describe() const { return "file " + state_->path; }

    /** The version of the contents last loaded or saved through this handle or a copy,
        while `stat()` shows the file unchanged since (the same test as the cache of
        `load()`: device, inode, size, modification time, owner and mode); nullopt when the
        file changed, is missing, is too recent to judge, or cannot be checked: `load()`
        then tells. One `lstat()`; nothing is read.
    */
    SEKUIRE_DECL std::optional<std::uint64_t> version() const;

    /// Releases the refresh lock taken by `lock_refresh()` on this store or a copy of it,
    /// from any thread. Precondition: the lock is held.
    SEKUIRE_DECL void unlock_refresh();

    /// The path given to the constructor.
    const std::string& path() const noexcept { return state_->path; }

private:
    struct state {
        explicit state(std::string p) : path(std::move(p)) {}
        const std::string path;
        std::mutex mutex;
        bool cache_valid = false;
        detail::cred_file::identity cached_id;
        installation_credentials cached;
        std::uint64_t generation = 0; // counts the contents remembered: version()
        std::shared_ptr<detail::cred_file::lock_entry> refresh;
    };

    SEKUIRE_DECL std::shared_ptr<detail::cred_file::lock_entry> refresh_entry() const;

    // Caller holds state_->mutex.
    SEKUIRE_DECL void remember(installation_credentials c, const detail::cred_file::identity& id, std::int64_t seen_at) const;

    SEKUIRE_DECL std::optional<installation_credentials> load_impl(detail::cred_file::status& st) const;

    SEKUIRE_DECL void save_impl(const installation_credentials& c, detail::cred_file::status& st);

    SEKUIRE_DECL void clear_impl(detail::cred_file::status& st);

    SEKUIRE_DECL void throw_on(const detail::cred_file::status& st, const char* op) const;

    std::shared_ptr<state> state_;
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/file_store.ipp>
#endif

#endif
