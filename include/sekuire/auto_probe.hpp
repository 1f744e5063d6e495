// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_AUTO_PROBE_HPP
#define SEKUIRE_AUTO_PROBE_HPP

/// @file
/// `auto_probe`, the default PlatformProbe: detects Kubernetes, AWS Lambda, Docker or bare
/// metal from the environment and a few files (protocol.md section 7), through an
/// injectable `probe_source` so that every rule can be tested without the real machine.

#include <sekuire/config.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#if defined(_WIN32)
#include <fstream>
#include <process.h>
#else
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace sekuire {

namespace detail {

// Bounds on what the probe reads: proc files and the namespace file are small, and a value
// longer than these is not what we are looking for.
inline constexpr std::size_t probe_max_file_size = std::size_t{64} * 1024;
inline constexpr std::size_t probe_max_line_length = 4096;
inline constexpr std::size_t probe_max_value_length = 1024;
inline constexpr std::size_t probe_max_namespace_length = 253;

inline bool probe_is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline std::string_view probe_trim(std::string_view s) noexcept {
    while (!s.empty() && probe_is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && probe_is_space(s.back())) s.remove_suffix(1);
    return s;
}

// Values go into JSON and dashboards: visible ASCII only, no whitespace, no control bytes.
inline bool probe_is_plausible_value(std::string_view s, std::size_t max_length = probe_max_value_length) noexcept {
    if (s.empty() || s.size() > max_length) return false;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e) return false;
    }
    return true;
}

// A Kubernetes namespace is a DNS name; anything else in its file is not a namespace.
inline bool probe_is_plausible_namespace(std::string_view s) noexcept {
    if (s.empty() || s.size() > probe_max_namespace_length) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
    return true;
}

/// True when `s` is a 64-character lowercase hexadecimal container id.
inline bool is_container_id(std::string_view s) noexcept {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

inline bool probe_starts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool probe_ends_with(std::string_view s, std::string_view suffix) noexcept {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Yields the complete lines of proc-style text. The last line without its newline is
// dropped (it may be cut by the read bound); over-long lines and lines with control or
// non-ASCII bytes are skipped, so a stray long overlay mount line does not hide the rest.
class probe_line_reader {
public:
    explicit probe_line_reader(std::string_view text) noexcept : rest_(text) {}

    bool next(std::string_view& line) noexcept {
        for (;;) {
            const auto nl = rest_.find('\n');
            if (nl == std::string_view::npos) {
                rest_ = {};
                return false;
            }
            line = rest_.substr(0, nl);
            rest_.remove_prefix(nl + 1);
            if (line.size() <= probe_max_line_length && is_text(line)) return true;
        }
    }

private:
    static bool is_text(std::string_view line) noexcept {
        for (char c : line) {
            const auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u > 0x7e) return false;
        }
        return true;
    }

    std::string_view rest_;
};

// Splits `path` on '/' and calls `f` with each non-empty component, last to first, until
// `f` returns true.
template <class F>
bool probe_find_component_backwards(std::string_view path, F f) {
    while (!path.empty()) {
        const auto slash = path.rfind('/');
        const std::string_view component = slash == std::string_view::npos ? path : path.substr(slash + 1);
        if (!component.empty() && f(component)) return true;
        if (slash == std::string_view::npos) break;
        path = path.substr(0, slash);
    }
    return false;
}

// The cgroup path components that name a container: a bare id (cgroupfs drivers: docker,
// kubepods, ECS) or a runtime's systemd scope or cgroupfs leaf. `crio-conmon-<id>` is the
// monitor process, not the container, and is refused by the id check.
inline std::optional<std::string> container_id_from_cgroup_component(std::string_view c) {
    if (is_container_id(c)) return std::string(c);
    static constexpr std::string_view prefixes[] = {"docker-", "cri-containerd-", "crio-", "libpod-"};
    for (std::string_view prefix : prefixes) {
        if (!probe_starts_with(c, prefix)) continue;
        std::string_view id = c.substr(prefix.size());
        if (probe_ends_with(id, ".scope")) id.remove_suffix(6);
        if (is_container_id(id)) return std::string(id);
    }
    return std::nullopt;
}

/** The container id named in the text of `/proc/self/cgroup`, or nullopt.

    Reads cgroup v1 lines (`12:memory:/docker/<id>`), cgroup v2 lines
    (`0::/system.slice/docker-<id>.scope`) and the containerd, CRI-O and Podman forms
    (`cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`,
    `/kubepods/.../<id>`). The first line that names a container wins; within a line, the
    innermost (last) component. Only a 64-character lowercase hex id is accepted. Text with
    a NUL byte is refused whole.
*/
inline std::optional<std::string> container_id_from_cgroup(std::string_view text) {
    if (text.find('\0') != std::string_view::npos) return std::nullopt;
    probe_line_reader lines(text);
    std::string_view line;
    while (lines.next(line)) {
        const auto first = line.find(':');
        if (first == std::string_view::npos || first == 0) continue;
        const auto second = line.find(':', first + 1);
        if (second == std::string_view::npos) continue;
        const std::string_view path = line.substr(second + 1);
        if (path.empty() || path.front() != '/') continue;
        std::optional<std::string> id;
        probe_find_component_backwards(path, [&](std::string_view c) {
            id = container_id_from_cgroup_component(c);
            return id.has_value();
        });
        if (id) return id;
    }
    return std::nullopt;
}

/** The container id named in the text of `/proc/self/mountinfo`, or nullopt.

    Looks for the files a container runtime bind-mounts from its per-container directory:
    a mount of `.../containers/<id>/{hostname,resolv.conf,hosts}` (Docker) or
    `.../<driver>-containers/<id>/userdata/{hostname,resolv.conf,hosts}` (Podman) on
    `/etc/hostname`, `/etc/resolv.conf` or `/etc/hosts`. Layer directories (also 64 hex
    digits) are never taken. Text with a NUL byte is refused whole.
*/
inline std::optional<std::string> container_id_from_mountinfo(std::string_view text) {
    if (text.find('\0') != std::string_view::npos) return std::nullopt;
    probe_line_reader lines(text);
    std::string_view line;
    while (lines.next(line)) {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source super
        std::string_view fields[5];
        std::size_t count = 0;
        bool separator = false;
        std::string_view rest = line;
        while (!rest.empty()) {
            const auto space = rest.find(' ');
            const std::string_view field = rest.substr(0, space);
            if (count < 5)
                fields[count] = field;
            else if (field == "-")
                separator = true;
            ++count;
            if (space == std::string_view::npos) break;
            rest.remove_prefix(space + 1);
        }
        if (count < 5 || !separator) continue;
        const std::string_view root = fields[3];
        const std::string_view mount_point = fields[4];

        const auto name_slash = root.rfind('/');
        if (name_slash == std::string_view::npos) continue;
        const std::string_view name = root.substr(name_slash + 1);
        if (name != "hostname" && name != "resolv.conf" && name != "hosts") continue;
        if (!probe_starts_with(mount_point, "/etc/") || mount_point.substr(5) != name) continue;

        std::string_view dir = root.substr(0, name_slash);
        auto pop = [&dir]() {
            const auto slash = dir.rfind('/');
            const std::string_view last = slash == std::string_view::npos ? dir : dir.substr(slash + 1);
            dir = slash == std::string_view::npos ? std::string_view{} : dir.substr(0, slash);
            return last;
        };
        std::string_view id = pop();
        const bool podman = id == "userdata";
        if (podman) id = pop();
        if (!is_container_id(id)) continue;
        const std::string_view parent = pop();
        if (podman ? probe_ends_with(parent, "-containers") : parent == "containers") return std::string(id);
    }
    return std::nullopt;
}

inline std::optional<std::string> probe_system_getenv(const char* name) {
#if defined(_MSC_VER)
#pragma warning(push)
#pragma warning(disable : 4996)
#endif
    const char* value = std::getenv(name);
#if defined(_MSC_VER)
#pragma warning(pop)
#endif
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

#if defined(_WIN32)

inline std::optional<std::string> probe_system_read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string out(probe_max_file_size, '\0');
    in.read(&out[0], static_cast<std::streamsize>(out.size()));
    if (in.bad()) return std::nullopt;
    out.resize(static_cast<std::size_t>(in.gcount()));
    return out;
}

inline bool probe_system_file_exists(const char* path) { return static_cast<bool>(std::ifstream(path)); }

// gethostname needs Winsock started; the hostname is omitted on Windows.
inline std::optional<std::string> probe_system_hostname() { return std::nullopt; }

inline std::optional<std::int64_t> probe_system_pid() { return static_cast<std::int64_t>(::_getpid()); }

#else

// POSIX read rather than ifstream: O_NONBLOCK and the regular-file check keep a FIFO or a
// device at a probed path from blocking or streaming forever (proc files are regular).
inline std::optional<std::string> probe_system_read_file(const char* path) {
    int fd = -1;
    do {
        fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return std::nullopt;
    struct ::stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return std::nullopt;
    }
    std::string out(probe_max_file_size, '\0');
    std::size_t got = 0;
    while (got < out.size()) {
        const ::ssize_t n = ::read(fd, &out[got], out.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            ::close(fd);
            return std::nullopt;
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    out.resize(got);
    return out;
}

inline bool probe_system_file_exists(const char* path) {
    struct ::stat st {};
    return ::stat(path, &st) == 0;
}

inline std::optional<std::string> probe_system_hostname() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::nullopt;
    buf[sizeof buf - 1] = '\0'; // POSIX leaves a truncated name unterminated
    std::string name(buf);
    if (name.empty()) return std::nullopt;
    return name;
}

inline std::optional<std::int64_t> probe_system_pid() { return static_cast<std::int64_t>(::getpid()); }

#endif

inline const char* probe_target_os() noexcept {
#if defined(__ANDROID__)
    return "android";
#elif defined(__linux__)
    return "linux";
#elif defined(__APPLE__)
    return "darwin";
#elif defined(_WIN32)
    return "windows";
#elif defined(__FreeBSD__)
    return "freebsd";
#elif defined(__OpenBSD__)
    return "openbsd";
#elif defined(__NetBSD__)
    return "netbsd";
#else
    return "";
#endif
}

inline const char* probe_target_arch() noexcept {
#if defined(__x86_64__) || defined(_M_X64) || defined(_M_AMD64)
    return "x86_64";
#elif defined(__aarch64__) || defined(_M_ARM64)
    return "aarch64";
#elif defined(__i386__) || defined(_M_IX86)
    return "x86";
#elif defined(__arm__) || defined(_M_ARM)
    return "arm";
#elif defined(__riscv) && defined(__riscv_xlen) && __riscv_xlen == 64
    return "riscv64";
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
    return "ppc64le";
#elif defined(__powerpc64__)
    return "ppc64";
#elif defined(__s390x__)
    return "s390x";
#else
    return "";
#endif
}

// A source member that is empty or throws reads as "not found": the probe never fails.
template <class R, class F, class... Args>
std::optional<R> probe_call(const F& f, Args... args) noexcept {
    if (!f) return std::nullopt;
    try {
        return f(args...);
    } catch (...) {
        return std::nullopt;
    }
}

} // namespace detail

/** Where `auto_probe` reads from: the environment, files, the host name and the process id.

    `system()` reads the real process; tests build one from lambdas. A member that is empty,
    or that throws, reads as "not found".

    @par Thread Safety
    `system()`'s members are safe to call from any thread, except that `getenv` races with
    a concurrent `setenv` or `putenv` in the process (as `std::getenv` does).
*/
struct probe_source {
    /// The variable's value; nullopt when unset.
    std::function<std::optional<std::string>(const char* name)> getenv;
    /// The file's contents; nullopt when missing or unreadable. Should be bounded:
    /// `auto_probe` looks at no more than the first 64 KiB either way.
    std::function<std::optional<std::string>(const char* path)> read_file;
    /// Whether `path` exists.
    std::function<bool(const char* path)> file_exists;
    /// This machine's host name; nullopt when unknown.
    std::function<std::optional<std::string>()> hostname;
    /// This process's id; nullopt when unknown.
    std::function<std::optional<std::int64_t>()> pid;
    /// The operating system of the compile target (`"linux"`, ...); empty when unknown.
    std::string os;
    /// The processor architecture of the compile target (`"x86_64"`, ...); empty when unknown.
    std::string arch;

    /** The real process: `std::getenv`; a bounded (64 KiB) read of regular files only, never
        blocking on a FIFO or device; `stat`; `gethostname` (omitted on Windows); `getpid`;
        `os` and `arch` from the compiler's predefined macros (`linux`, `darwin`, `windows`,
        `android`, `freebsd`, `openbsd`, `netbsd`; `x86_64`, `aarch64`, `x86`, `arm`,
        `riscv64`, `ppc64le`, `ppc64`, `s390x`), empty for a target not in these lists.
    */
    static probe_source system() {
        probe_source s;
        s.getenv = &detail::probe_system_getenv;
        s.read_file = &detail::probe_system_read_file;
        s.file_exists = &detail::probe_system_file_exists;
        s.hostname = &detail::probe_system_hostname;
        s.pid = &detail::probe_system_pid;
        s.os = detail::probe_target_os();
        s.arch = detail::probe_target_arch();
        return s;
    }
};

/** The default PlatformProbe: detects what the agent runs on (protocol.md section 7).

    The first rule that matches wins:
    1. `kubernetes` when `KUBERNETES_SERVICE_HOST` is set: `pod_name` (`POD_NAME`, else
       `HOSTNAME`, else the host name), `namespace` (`POD_NAMESPACE`, else the
       service-account namespace file, trimmed), `node` (`NODE_NAME`).
    2. `lambda` when `AWS_LAMBDA_FUNCTION_NAME` is set: `function_name`, `region`
       (`AWS_REGION`).
    3. `docker` when `/.dockerenv` exists: `container_id` (from `/proc/self/cgroup`, else
       `/proc/self/mountinfo`; see `detail::container_id_from_cgroup` and
       `detail::container_id_from_mountinfo`), `image` (`SEKUIRE_IMAGE`, else `IMAGE`).
    4. `bare_metal` otherwise.

    Every type then reports `hostname`, `os` and `arch`, and `pid` in `platform_info::pid`.
    Attributes come in exactly the order listed here (type-specific keys first).

    Values are trimmed of surrounding whitespace; an empty value counts as unset (detection
    needs only a non-empty variable; its value is checked where it is reported). A value
    that is implausible counts as unset too and the next source is tried: more than 1024
    bytes, or any byte outside visible ASCII; a namespace that is not a Kubernetes name
    (`[a-z0-9.-]`, at most 253 characters). A value that cannot be found is omitted, never
    invented: a docker platform whose id cannot be read has no `container_id`. Only the
    first 64 KiB of a file are looked at.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe when the source's members are (those of
    `probe_source::system()` are).

    @par Exceptions
    `probe()` throws nothing for anything it reads (only `std::bad_alloc`).
*/
class auto_probe {
public:
    /// Probes the real process (`probe_source::system()`).
    auto_probe() : auto_probe(probe_source::system()) {}

    /// Probes through `source`.
    explicit auto_probe(probe_source source) : source_(std::move(source)) {}

    /// Detects the platform now.
    platform_info probe() const {
        namespace pp = protocol::platform;
        platform_info info;
        const std::optional<std::string> host = checked(detail::probe_call<std::string>(source_.hostname));

        if (env_present(pp::env_kubernetes)) {
            info.type = std::string(pp::type_kubernetes);
            std::optional<std::string> pod = env(pp::env_pod_name);
            if (!pod) pod = env(pp::env_hostname);
            if (!pod) pod = host;
            add(info, pp::key_pod_name, pod);
            std::optional<std::string> ns = env(pp::env_pod_namespace, &detail::probe_is_plausible_namespace);
            if (!ns) ns = file_value(pp::file_service_account_namespace, &detail::probe_is_plausible_namespace);
            add(info, pp::key_namespace, ns);
            add(info, pp::key_node, env(pp::env_node_name));
        } else if (env_present(pp::env_lambda)) {
            info.type = std::string(pp::type_lambda);
            add(info, pp::key_function_name, env(pp::env_lambda));
            add(info, pp::key_region, env(pp::env_aws_region));
        } else if (detail::probe_call<bool>(source_.file_exists, pp::file_dockerenv).value_or(false)) {
            info.type = std::string(pp::type_docker);
            std::optional<std::string> id;
            if (auto text = file(pp::file_cgroup)) id = detail::container_id_from_cgroup(*text);
            if (!id)
                if (auto text = file(pp::file_mountinfo)) id = detail::container_id_from_mountinfo(*text);
            add(info, pp::key_container_id, id);
            std::optional<std::string> image = env(pp::env_image);
            if (!image) image = env(pp::env_image_fallback);
            add(info, pp::key_image, image);
        } else {
            info.type = std::string(pp::type_bare_metal);
        }

        add(info, pp::key_hostname, host);
        add(info, pp::key_os, checked(source_.os));
        add(info, pp::key_arch, checked(source_.arch));
        const std::optional<std::int64_t> pid = detail::probe_call<std::int64_t>(source_.pid);
        if (pid && *pid > 0) info.pid = pid;
        return info;
    }

private:
    using validator = bool (*)(std::string_view) noexcept;

    static bool plausible(std::string_view s) noexcept { return detail::probe_is_plausible_value(s); }

    static std::optional<std::string> checked(const std::optional<std::string>& raw, validator valid = &plausible) {
        if (!raw) return std::nullopt;
        const std::string_view v = detail::probe_trim(*raw);
        if (!valid(v)) return std::nullopt;
        return std::string(v);
    }

    // Detection only asks whether a variable is set to something; its value is checked
    // where it is reported.
    bool env_present(const char* name) const {
        const auto raw = detail::probe_call<std::string>(source_.getenv, name);
        return raw && !detail::probe_trim(*raw).empty();
    }

    std::optional<std::string> env(const char* name, validator valid = &plausible) const {
        return checked(detail::probe_call<std::string>(source_.getenv, name), valid);
    }

    std::optional<std::string> file(const char* path) const {
        std::optional<std::string> text = detail::probe_call<std::string>(source_.read_file, path);
        if (text && text->size() > detail::probe_max_file_size) text->resize(detail::probe_max_file_size);
        return text;
    }

    std::optional<std::string> file_value(const char* path, validator valid) const {
        return checked(file(path), valid);
    }

    static void add(platform_info& info, std::string_view key, const std::optional<std::string>& value) {
        if (value) info.attributes.emplace_back(std::string(key), *value);
    }

    probe_source source_;
};

} // namespace sekuire

#endif
