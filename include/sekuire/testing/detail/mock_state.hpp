// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_DETAIL_MOCK_STATE_HPP
#define SEKUIRE_TESTING_DETAIL_MOCK_STATE_HPP

/// @file
/// The mock backend's state and rules, independent of any HTTP server: each route is a
/// function from (headers, body) to a reply, reading time from injected clock functions.
/// The public value types of the mock backend are declared here too; users include
/// `<sekuire/testing/mock_backend.hpp>`.

#include <sekuire/clock.hpp>
#include <sekuire/error.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/time.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {
namespace testing {

/// The install token a mock backend accepts when its options list none.
inline constexpr std::string_view mock_default_install_token = "skt_mock_default_install_token";
/// The default API key of a mock backend (admin API, recovery bootstrap, revocation).
inline constexpr std::string_view mock_default_api_key = "sk_live_mock_0123456789abcdef";
/// The default (and only) workspace of a mock backend.
inline constexpr std::string_view mock_default_workspace = "ws_mock";

/** Options of a mock backend. Every field has a usable default: an agent configured with
    `mock_default_install_token` connects to a backend built from `mock_backend_options{}`.
*/
struct mock_backend_options {
    /// The address to listen on.
    std::string host = "127.0.0.1";
    /// The port to listen on; 0 takes an ephemeral port (read it back with `port()`).
    int port = 0;
    /// The install tokens accepted from the start (each single-use, bound to no agent,
    /// never expiring). Empty: one token, `mock_default_install_token`.
    std::vector<std::string> install_tokens;
    /// The API key of the admin API, the recovery bootstrap and the revoke endpoint.
    std::string api_key{mock_default_api_key};
    /// The workspace every installation belongs to.
    std::string workspace_id{mock_default_workspace};
    /// Lifetime of each runtime token.
    std::chrono::seconds token_lifetime{30 * 24 * 3600};
    /// A heartbeat whose runtime token expires within this window gets `refreshed_token`.
    std::chrono::seconds refresh_window{protocol::timing::server_refresh_window};
    /// Lease granted by bootstrap and by each heartbeat.
    std::chrono::seconds lease{180};
    /// When set, sent as `heartbeat_interval_seconds` at bootstrap, and as
    /// `next_heartbeat_at` (now + interval) in heartbeat responses.
    std::optional<std::chrono::seconds> heartbeat_interval;
    /// A task stream sends a keep-alive comment after this long without writing anything
    /// (measured with the Clock's steady time).
    std::chrono::milliseconds keepalive{15000};
    /// A task delivered but not completed within this time (Clock steady time) is queued
    /// again.
    std::chrono::seconds redelivery_timeout{60};
    /// Whether a refresh rotates the refresh token (the old one then stops working).
    bool rotate_refresh_tokens = true;
    /// `shutdown_timeout_ms` of a revocation that does not give one.
    std::int64_t revoke_shutdown_timeout_ms = 5000;
    /// I/O threads of the server. Requests and task streams are served asynchronously, so
    /// a stream holds no thread: a few threads serve thousands of streams.
    std::size_t threads = 2;
    /// The listen backlog: how many connections the kernel queues before they are accepted
    /// (it caps the value at `net.core.somaxconn`). A large one lets a burst of agents
    /// connect at once without a dropped SYN.
    int listen_backlog = 4096;
    /// Largest accepted request body, in bytes (larger ones get 413).
    std::size_t max_body = 1 << 20;
    /// How long an idle keep-alive connection is kept open (`stop()` closes idle
    /// connections at once).
    std::chrono::seconds keep_alive_timeout{5};
    /// Most tasks kept; when full, the oldest finished tasks are forgotten, and new tasks
    /// are refused (429) when none is finished.
    std::size_t max_tasks = 100000;
};

/// The state of an installation, as the admin API reports it.
enum class mock_installation_state {
    healthy,   ///< the lease lives
    unhealthy, ///< the lease expired (no heartbeat in time)
    stopped,   ///< the last heartbeat had status `stopped`
    revoked,   ///< revoked (final)
};

/// The status of a task, as the admin API reports it.
enum class mock_task_status {
    queued,    ///< waiting for a stream that offers its capability
    delivered, ///< written to a task stream, not completed yet
    completed, ///< completed with status `completed`
    failed,    ///< completed with status `failed`
    rejected,  ///< completed with status `rejected`
};

/// The name of a state: `healthy`, `unhealthy`, `stopped` or `revoked`.
inline const char* to_string(mock_installation_state s) noexcept {
    switch (s) {
    case mock_installation_state::healthy: return "healthy";
    case mock_installation_state::unhealthy: return "unhealthy";
    case mock_installation_state::stopped: return "stopped";
    case mock_installation_state::revoked: return "revoked";
    }
    return "healthy";
}

/// The name of a status: `queued`, `delivered`, `completed`, `failed` or `rejected`.
inline const char* to_string(mock_task_status s) noexcept {
    switch (s) {
    case mock_task_status::queued: return "queued";
    case mock_task_status::delivered: return "delivered";
    case mock_task_status::completed: return "completed";
    case mock_task_status::failed: return "failed";
    case mock_task_status::rejected: return "rejected";
    }
    return "queued";
}

/// Parses a task status name; false when `s` names none.
inline bool from_string(std::string_view s, mock_task_status& out) noexcept {
    static constexpr mock_task_status all[] = {mock_task_status::queued, mock_task_status::delivered,
                                               mock_task_status::completed, mock_task_status::failed,
                                               mock_task_status::rejected};
    for (auto v : all)
        if (s == to_string(v)) {
            out = v;
            return true;
        }
    return false;
}

/// An install token to create (admin API).
struct mock_install_token_request {
    /// When set, only this agent id may bootstrap with the token (else 403 `agent_mismatch`).
    std::optional<std::string> agent_id;
    /// When set, the token expires this long after creation (then 410 `install_token_expired`).
    std::optional<std::chrono::seconds> ttl;
};

/// A task to queue (admin API). The optional fields are sent in the `task` event as given.
struct mock_task_request {
    std::string capability; ///< required: the capability that handles it (at most 256 bytes)
    boost::json::value input; ///< the task's input, any JSON value
    /// Default: the backend's workspace. Only installations of this workspace receive it.
    std::optional<std::string> workspace_id;
    std::optional<std::string> trace_id;           ///< sent as `trace_id`
    std::optional<std::string> requester_agent_id; ///< sent as `requester_agent_id`
    std::optional<std::string> parent_task_id;     ///< sent as `parent_task_id`
    std::optional<std::string> workflow_id;        ///< sent as `workflow_id`
    std::optional<wall_time_point> deadline_at;    ///< sent as `deadline_at`
};

/// The error of a failed or rejected task, as its completion reported it.
struct mock_task_error {
    std::string code;    ///< e.g. `handler_error`
    std::string message; ///< as sent
};

/// A task as the backend knows it.
struct mock_task_info {
    std::string task_id;                 ///< `task_...`
    std::string capability;              ///< as queued
    boost::json::value input;            ///< as queued
    std::string workspace_id;            ///< the workspace whose installations may receive it
    std::optional<std::string> trace_id; ///< as queued
    mock_task_status status = mock_task_status::queued; ///< where it is
    /// The completion's output (null until completed).
    boost::json::value output;
    std::optional<mock_task_error> error; ///< for `failed` and `rejected`
    std::int64_t execution_time_ms = 0;   ///< as the completion reported it
    /// How many times the task was written to a task stream (replays and redeliveries count).
    std::int64_t delivery_count = 0;
    /// The installation it was last delivered to (or that completed it); empty if none.
    std::string installation_id;
    wall_time_point created_at{};                ///< when it was queued
    std::optional<wall_time_point> completed_at; ///< when the first completion arrived
};

/// What an installation's last worker heartbeat said.
struct mock_worker_info {
    protocol::worker_state state = protocol::worker_state::running; ///< as sent
    std::int64_t in_flight = 0;              ///< as sent
    std::int64_t completed = 0;              ///< as sent
    std::int64_t failed = 0;                 ///< as sent
    std::vector<std::string> capabilities;   ///< as sent
    std::optional<std::string> policy_hash;  ///< as sent
    wall_time_point last_heartbeat_at{};     ///< when it arrived
};

/// One heartbeat, as an installation's timeline keeps it.
struct mock_heartbeat_mark {
    wall_time_point at{};                                           ///< when it arrived (Clock wall time)
    protocol::heartbeat_status status = protocol::heartbeat_status::healthy; ///< as sent
};

/// A command sent to an installation, and its delivery.
struct mock_command_info {
    std::string command_id;      ///< `cmd_...`
    std::string installation_id; ///< the installation it is for
    std::string type;            ///< the type as sent (`pause`, `resume`, `terminate`, or another name)
    std::string reason;          ///< as sent
    std::optional<std::int64_t> shutdown_timeout_ms; ///< as sent (clamped to 24 hours)
    wall_time_point created_at{};                    ///< when it was queued
    std::optional<wall_time_point> delivered_at;     ///< when it went out; empty while pending
    /// The channel that delivered it: `heartbeat`, `worker_heartbeat` or `task_stream`;
    /// empty while pending.
    std::string delivered_via;
};

/// An installation as the backend knows it (never its tokens).
struct mock_installation_info {
    std::string installation_id; ///< `inst_...`
    std::string agent_id;        ///< as sent at bootstrap
    std::string workspace_id;    ///< the backend's workspace
    mock_installation_state state = mock_installation_state::healthy; ///< computed when read
    /// The status of the last heartbeat; empty before the first.
    std::optional<protocol::heartbeat_status> last_status;
    std::int64_t sequence = 0;                        ///< of the last heartbeat
    std::int64_t uptime_seconds = 0;                  ///< of the last heartbeat
    std::optional<wall_time_point> last_heartbeat_at; ///< empty before the first
    wall_time_point lease_expires_at{};               ///< set by bootstrap and heartbeats
    platform_info platform;                           ///< as last sent
    std::vector<std::string> capabilities;            ///< as last sent (non-empty lists only)
    protocol::heartbeat_metrics metrics;              ///< of the last heartbeat
    protocol::sdk_info sdk;                           ///< as last sent
    std::int64_t token_version = 0;                   ///< of the current runtime token
    wall_time_point runtime_token_expires_at{};       ///< of the current runtime token
    std::optional<mock_worker_info> worker;           ///< empty before the first worker heartbeat
    std::size_t pending_commands = 0;                 ///< queued, not delivered yet
    std::size_t open_streams = 0;                     ///< open task streams
    std::optional<protocol::revocation> revocation;   ///< set once revoked
    wall_time_point created_at{};                     ///< bootstrap time
    std::int64_t heartbeats = 0;                      ///< beacon heartbeats received (revoked answers excluded)
    /// The last heartbeats (at most `mock_max_heartbeat_marks`), oldest first.
    std::vector<mock_heartbeat_mark> recent_heartbeats;
};

/// How many heartbeats an installation's timeline keeps.
inline constexpr std::size_t mock_max_heartbeat_marks = 120;
/// How many commands the backend's command log keeps (the oldest are forgotten).
inline constexpr std::size_t mock_max_command_log = 1000;

/** A fault to inject: the next `count` requests whose path starts with `path_prefix`
    (admin paths never) are affected. `delay` may be combined with one of `status`,
    `drop_connection` and `cut_stream_after_events`; with none of them the request is
    handled normally after the delay. A fault with `cut_stream_after_events` matches task
    stream requests only.
*/
struct mock_fault {
    /// Matched against the request path (percent-decoded); empty matches every path.
    std::string path_prefix;
    /// How many requests it affects (at least 1).
    std::size_t count = 1;
    /// Answer with this status (300 to 599) and an error body instead of handling.
    std::optional<int> status;
    /// With `status`: the `Retry-After` header value (seconds or an HTTP date).
    std::optional<std::string> retry_after;
    /// Wait this long (real time, at most 10 minutes; `stop()` interrupts it) first.
    std::chrono::milliseconds delay{0};
    /// End the exchange after the response headers, without a body.
    bool drop_connection = false;
    /// End a task stream abruptly after this many events.
    std::optional<std::size_t> cut_stream_after_events;
};

/// Admin API paths and route patterns of the mock backend (not part of the protocol).
namespace mock_admin_path {
/// Every admin path starts with this.
inline constexpr std::string_view prefix = "/admin/";
/// `POST`: create an install token.
inline constexpr std::string_view install_tokens = "/admin/v1/install-tokens";
/// `POST`: queue a task; `GET`: list tasks.
inline constexpr std::string_view tasks = "/admin/v1/tasks";
/// `GET`: list installations.
inline constexpr std::string_view installations = "/admin/v1/installations";
/// `PUT`: set the policy content; `GET`: the active policy.
inline constexpr std::string_view policy = "/admin/v1/policy";
/// `POST`: add a fault; `GET`: list faults; `DELETE`: clear them.
inline constexpr std::string_view faults = "/admin/v1/faults";
/// `GET`: the commands sent, and their delivery.
inline constexpr std::string_view commands_log = "/admin/v1/commands";

/// `/admin/v1/tasks/{task_id}`.
inline std::string task(std::string_view task_id) {
    std::string p(tasks);
    p += '/';
    p += protocol::detail::percent_encode(task_id);
    return p;
}
/// `/admin/v1/installations/{installation_id}`.
inline std::string installation(std::string_view installation_id) {
    std::string p(installations);
    p += '/';
    p += protocol::detail::percent_encode(installation_id);
    return p;
}
/// `/admin/v1/installations/{installation_id}/commands`.
inline std::string commands(std::string_view installation_id) { return installation(installation_id) + "/commands"; }

/// Route patterns (ECMAScript regular expressions, the id captured).
inline constexpr const char* task_route = R"(/admin/v1/tasks/([^/]+))";
/// See `task_route`.
inline constexpr const char* installation_route = R"(/admin/v1/installations/([^/]+))";
/// See `task_route`.
inline constexpr const char* commands_route = R"(/admin/v1/installations/([^/]+)/commands)";
} // namespace mock_admin_path

namespace detail {

// Field names of the admin API (the protocol's own names come from protocol.hpp).
namespace admin_key {
inline constexpr std::string_view install_token = "install_token";
inline constexpr std::string_view agent_id = "agent_id";
inline constexpr std::string_view ttl_seconds = "ttl_seconds";
inline constexpr std::string_view expires_at = "expires_at";
inline constexpr std::string_view capability = "capability";
inline constexpr std::string_view input = "input";
inline constexpr std::string_view workspace_id = "workspace_id";
inline constexpr std::string_view trace_id = "trace_id";
inline constexpr std::string_view requester_agent_id = "requester_agent_id";
inline constexpr std::string_view parent_task_id = "parent_task_id";
inline constexpr std::string_view workflow_id = "workflow_id";
inline constexpr std::string_view deadline_at = "deadline_at";
inline constexpr std::string_view task_id = "task_id";
inline constexpr std::string_view status = "status";
inline constexpr std::string_view output = "output";
inline constexpr std::string_view error = "error";
inline constexpr std::string_view code = "code";
inline constexpr std::string_view message = "message";
inline constexpr std::string_view execution_time_ms = "execution_time_ms";
inline constexpr std::string_view delivery_count = "delivery_count";
inline constexpr std::string_view installation_id = "installation_id";
inline constexpr std::string_view created_at = "created_at";
inline constexpr std::string_view completed_at = "completed_at";
inline constexpr std::string_view tasks = "tasks";
inline constexpr std::string_view type = "type";
inline constexpr std::string_view reason = "reason";
inline constexpr std::string_view shutdown_timeout_ms = "shutdown_timeout_ms";
inline constexpr std::string_view command_id = "command_id";
inline constexpr std::string_view installations = "installations";
inline constexpr std::string_view state = "state";
inline constexpr std::string_view last_status = "last_status";
inline constexpr std::string_view sequence = "sequence";
inline constexpr std::string_view uptime_seconds = "uptime_seconds";
inline constexpr std::string_view last_heartbeat_at = "last_heartbeat_at";
inline constexpr std::string_view lease_expires_at = "lease_expires_at";
inline constexpr std::string_view platform = "platform";
inline constexpr std::string_view capabilities = "capabilities";
inline constexpr std::string_view metrics = "metrics";
inline constexpr std::string_view requests_handled = "requests_handled";
inline constexpr std::string_view errors = "errors";
inline constexpr std::string_view avg_latency_ms = "avg_latency_ms";
inline constexpr std::string_view sdk = "sdk";
inline constexpr std::string_view token_version = "token_version";
inline constexpr std::string_view runtime_token_expires_at = "runtime_token_expires_at";
inline constexpr std::string_view worker = "worker";
inline constexpr std::string_view in_flight = "in_flight";
inline constexpr std::string_view completed = "completed";
inline constexpr std::string_view failed = "failed";
inline constexpr std::string_view policy_hash = "policy_hash";
inline constexpr std::string_view pending_commands = "pending_commands";
inline constexpr std::string_view open_streams = "open_streams";
inline constexpr std::string_view revoked = "revoked";
inline constexpr std::string_view content = "content";
inline constexpr std::string_view hash = "hash";
inline constexpr std::string_view version = "version";
inline constexpr std::string_view path_prefix = "path_prefix";
inline constexpr std::string_view count = "count";
inline constexpr std::string_view retry_after = "retry_after";
inline constexpr std::string_view delay_ms = "delay_ms";
inline constexpr std::string_view drop_connection = "drop_connection";
inline constexpr std::string_view cut_stream_after_events = "cut_stream_after_events";
inline constexpr std::string_view fault_id = "fault_id";
inline constexpr std::string_view faults = "faults";
inline constexpr std::string_view remaining = "remaining";
inline constexpr std::string_view cleared = "cleared";
inline constexpr std::string_view heartbeats = "heartbeats";
inline constexpr std::string_view recent_heartbeats = "recent_heartbeats";
inline constexpr std::string_view at = "at";
inline constexpr std::string_view commands = "commands";
inline constexpr std::string_view delivered_at = "delivered_at";
inline constexpr std::string_view delivered_via = "delivered_via";
} // namespace admin_key

// Token and id prefixes.
namespace mock_prefix {
inline constexpr std::string_view runtime_token = "srt_";
inline constexpr std::string_view refresh_token = "rft_";
inline constexpr std::string_view installation = "inst_";
inline constexpr std::string_view task = "task_";
inline constexpr std::string_view command = "cmd_";
inline constexpr std::string_view install_token = "skt_";
} // namespace mock_prefix

// Bounds on what a client can make the backend hold or scan.
inline constexpr std::size_t mock_max_id_length = 128;
inline constexpr std::size_t mock_max_token_length = 512;
inline constexpr std::size_t mock_max_capabilities = 256;
inline constexpr std::size_t mock_max_name_length = 256;
inline constexpr std::size_t mock_max_commands = 1000;
inline constexpr std::size_t mock_max_faults = 1000;
inline constexpr std::size_t mock_max_events_kept = 1024;
inline constexpr std::size_t mock_max_counted_paths = 4096;
inline constexpr std::size_t mock_max_listed_tasks = 1000;
inline constexpr std::chrono::milliseconds mock_max_fault_delay{600000};
inline constexpr std::chrono::seconds mock_max_install_token_ttl{100LL * 365 * 24 * 3600};
// The error code of a completion whose installation_id is not the runtime token's (403).
inline constexpr std::string_view mock_installation_mismatch = "installation_mismatch";
inline constexpr std::string_view mock_policy_id = "policy_mock";
inline constexpr std::string_view mock_policy_status = "active";
inline constexpr std::string_view mock_keepalive_frame = ": keep-alive\n\n";
// `next_frames()` adds no further frame once its output holds this many bytes (one frame
// may be larger): a stream with many large tasks pending writes them a few at a time,
// rather than copying all of them into one ever-growing buffer.
inline constexpr std::size_t mock_stream_write_budget = std::size_t(64) << 10;
inline constexpr std::string_view mock_other_paths = "(other)";

inline std::string hex_encode(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(digits[p[i] >> 4]);
        out.push_back(digits[p[i] & 15]);
    }
    return out;
}

inline std::string random_hex(std::size_t bytes) {
    std::vector<unsigned char> buf(bytes);
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
        std::random_device rd;
        for (auto& b : buf) b = static_cast<unsigned char>(rd() & 0xff);
    }
    return hex_encode(buf.data(), buf.size());
}

inline std::string make_id(std::string_view prefix, std::size_t bytes = 8) {
    std::string s(prefix);
    s += random_hex(bytes);
    return s;
}

/// SHA-256 of `data` in lower-case hex (empty if OpenSSL fails).
inline std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
    return hex_encode(md, len);
}

/// The policy hash of a content object: SHA-256 of its serialization.
inline std::string policy_hash_of(const boost::json::object& content) {
    return sha256_hex(boost::json::serialize(content));
}

/// The token of an `Authorization: Bearer <token>` header, or empty.
inline std::string_view bearer_token(std::string_view header) noexcept {
    const std::string_view prefix = protocol::header::bearer_prefix;
    if (header.size() <= prefix.size() || header.size() > prefix.size() + mock_max_token_length) return {};
    if (!sekuire::detail::iequals(header.substr(0, prefix.size()), prefix)) return {};
    return header.substr(prefix.size());
}

/// A `Last-Event-ID` header as a number, or empty when it is not one.
inline std::optional<std::uint64_t> parse_event_id(std::string_view s) noexcept {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

/// Visible ASCII (and spaces) only: what may go into a header or a token.
inline bool is_printable(std::string_view s) noexcept {
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
    return true;
}

/// The options' problem, or empty when they are valid.
inline std::string validate_options(const mock_backend_options& o) {
    using namespace std::chrono;
    if (o.host.empty() || o.host.size() > 255 || !is_printable(o.host)) return "host must be a host name or address";
    if (o.port < 0 || o.port > 65535) return "port must be within 0..65535";
    for (const auto& t : o.install_tokens)
        if (t.empty() || t.size() > mock_max_token_length || !is_printable(t) || t.find(' ') != std::string::npos)
            return "install tokens must be non-empty printable strings without spaces";
    if (o.api_key.empty() || o.api_key.size() > mock_max_token_length || !is_printable(o.api_key))
        return "api_key must be a non-empty printable string";
    if (o.workspace_id.empty() || o.workspace_id.size() > mock_max_id_length || !is_printable(o.workspace_id))
        return "workspace_id must be a non-empty printable string";
    if (o.token_lifetime < seconds(1) || o.token_lifetime > hours(24 * 365 * 100))
        return "token_lifetime must be within 1 s..100 years";
    if (o.refresh_window < seconds(0) || o.refresh_window > hours(24 * 365 * 100))
        return "refresh_window must be within 0..100 years";
    if (o.lease < seconds(1) || o.lease > hours(24 * 365)) return "lease must be within 1 s..1 year";
    if (o.heartbeat_interval && (*o.heartbeat_interval < seconds(1) || *o.heartbeat_interval > hours(24 * 365)))
        return "heartbeat_interval must be within 1 s..1 year";
    if (o.keepalive < milliseconds(1) || o.keepalive > hours(1)) return "keepalive must be within 1 ms..1 h";
    if (o.redelivery_timeout < seconds(1) || o.redelivery_timeout > hours(24 * 365))
        return "redelivery_timeout must be within 1 s..1 year";
    if (o.revoke_shutdown_timeout_ms < 0) return "revoke_shutdown_timeout_ms must not be negative";
    if (o.threads < 1 || o.threads > 4096) return "threads must be within 1..4096";
    if (o.listen_backlog < 1 || o.listen_backlog > 65535) return "listen_backlog must be within 1..65535";
    if (o.max_body < 1024 || o.max_body > (std::size_t(1) << 30)) return "max_body must be within 1 KiB..1 GiB";
    if (o.keep_alive_timeout < seconds(1) || o.keep_alive_timeout > hours(1))
        return "keep_alive_timeout must be within 1 s..1 h";
    if (o.max_tasks < 1) return "max_tasks must be at least 1";
    return {};
}

/// The fault's problem, or empty when it is valid.
inline std::string validate_fault(const mock_fault& f) {
    if (f.path_prefix.size() > 1024) return "path_prefix is too long";
    if (f.count < 1 || f.count > 1000000) return "count must be within 1..1000000";
    if (f.status && (*f.status < 300 || *f.status > 599)) return "status must be within 300..599";
    if (f.retry_after && !f.status) return "retry_after needs a status";
    if (f.retry_after && (f.retry_after->empty() || f.retry_after->size() > 64 || !is_printable(*f.retry_after)))
        return "retry_after must be a short printable string";
    if (f.delay < std::chrono::milliseconds(0) || f.delay > mock_max_fault_delay)
        return "delay must be within 0..600000 ms";
    const int effects = (f.status ? 1 : 0) + (f.drop_connection ? 1 : 0) + (f.cut_stream_after_events ? 1 : 0);
    if (effects > 1) return "status, drop_connection and cut_stream_after_events exclude each other";
    if (effects == 0 && f.delay == std::chrono::milliseconds(0))
        return "a fault needs status, delay_ms, drop_connection or cut_stream_after_events";
    return {};
}

/// Time sources of the core, so that the core itself is no template.
struct mock_clock_fns {
    std::function<wall_time_point()> wall;
    std::function<steady_time_point()> steady;
};

/// A reply to an HTTP request: status, JSON body (may be empty), extra headers.
struct mock_reply {
    int status = 200;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

inline mock_reply json_reply(int status, const boost::json::object& o) {
    return mock_reply{status, boost::json::serialize(o), {}};
}

template <class Message>
mock_reply message_reply(int status, const Message& m) {
    return mock_reply{status, protocol::encode(m), {}};
}

inline mock_reply error_reply(int status, std::string_view code, std::string_view message) {
    protocol::error_body b;
    b.code = std::string(code);
    b.message = std::string(message);
    return message_reply(status, b);
}

inline mock_reply bad_request(const protocol::decode_error& err) {
    return error_reply(400, protocol::error_code_name::bad_request, err.message());
}

/** Parses an admin body (bounded, an object) and reads its fields with `read`, a callable
    `bool(protocol::detail::reader&, const boost::json::object&)`. An empty body reads as
    `{}` when `empty_ok`.
*/
template <class Read>
bool read_admin_body(std::string_view body, std::size_t max_body, bool empty_ok, protocol::decode_error& err,
                     Read&& read) noexcept {
    namespace json = boost::json;
    err = {};
    try {
        if (body.empty() && empty_ok) {
            const json::object empty;
            protocol::detail::reader r(empty, err);
            return read(r, empty);
        }
        if (body.size() > max_body) {
            err.code = errc::body_too_large;
            return false;
        }
        json::parse_options po;
        po.max_depth = 32;
        boost::system::error_code ec;
        const json::value v = json::parse(json::string_view(body.data(), body.size()), ec, json::storage_ptr(), po);
        if (ec) {
            err.code = errc::malformed_json;
            return false;
        }
        if (!v.is_object()) {
            err.code = errc::wrong_type;
            err.field = "(body)";
            return false;
        }
        protocol::detail::reader r(v.get_object(), err);
        return read(r, v.get_object());
    } catch (...) {
        err.code = errc::malformed_json;
        return false;
    }
}

inline boost::json::value time_or_null(const std::optional<wall_time_point>& t) {
    return t ? boost::json::value(format_rfc3339(*t)) : boost::json::value(nullptr);
}

inline boost::json::value string_or_null(const std::optional<std::string>& s) {
    return s ? boost::json::value(protocol::detail::jsv(*s)) : boost::json::value(nullptr);
}

inline boost::json::array string_array(const std::vector<std::string>& v) { return protocol::detail::to_json_array(v); }

inline boost::json::object to_admin_json(const mock_task_info& t) {
    namespace k = admin_key;
    using protocol::detail::jsv;
    boost::json::object o;
    o[jsv(k::task_id)] = jsv(t.task_id);
    o[jsv(k::capability)] = jsv(t.capability);
    o[jsv(k::input)] = t.input;
    o[jsv(k::workspace_id)] = jsv(t.workspace_id);
    o[jsv(k::trace_id)] = string_or_null(t.trace_id);
    o[jsv(k::status)] = to_string(t.status);
    o[jsv(k::output)] = t.output;
    if (t.error) {
        boost::json::object e;
        e[jsv(k::code)] = jsv(t.error->code);
        e[jsv(k::message)] = jsv(t.error->message);
        o[jsv(k::error)] = std::move(e);
    } else {
        o[jsv(k::error)] = nullptr;
    }
    o[jsv(k::execution_time_ms)] = t.execution_time_ms;
    o[jsv(k::delivery_count)] = t.delivery_count;
    o[jsv(k::installation_id)] =
        t.installation_id.empty() ? boost::json::value(nullptr) : boost::json::value(jsv(t.installation_id));
    o[jsv(k::created_at)] = format_rfc3339(t.created_at);
    o[jsv(k::completed_at)] = time_or_null(t.completed_at);
    return o;
}

inline boost::json::object to_admin_json(const mock_installation_info& i) {
    namespace k = admin_key;
    using protocol::detail::jsv;
    boost::json::object o;
    o[jsv(k::installation_id)] = jsv(i.installation_id);
    o[jsv(k::agent_id)] = jsv(i.agent_id);
    o[jsv(k::workspace_id)] = jsv(i.workspace_id);
    o[jsv(k::state)] = to_string(i.state);
    o[jsv(k::last_status)] =
        i.last_status ? boost::json::value(protocol::to_string(*i.last_status)) : boost::json::value(nullptr);
    o[jsv(k::sequence)] = i.sequence;
    o[jsv(k::uptime_seconds)] = i.uptime_seconds;
    o[jsv(k::last_heartbeat_at)] = time_or_null(i.last_heartbeat_at);
    o[jsv(k::lease_expires_at)] = format_rfc3339(i.lease_expires_at);
    o[jsv(k::platform)] = protocol::to_json(i.platform);
    o[jsv(k::capabilities)] = string_array(i.capabilities);
    boost::json::object m;
    m[jsv(k::requests_handled)] = i.metrics.requests_handled;
    m[jsv(k::errors)] = i.metrics.errors;
    m[jsv(k::avg_latency_ms)] = i.metrics.avg_latency_ms;
    o[jsv(k::metrics)] = std::move(m);
    o[jsv(k::sdk)] = protocol::to_json(i.sdk);
    o[jsv(k::token_version)] = i.token_version;
    o[jsv(k::runtime_token_expires_at)] = format_rfc3339(i.runtime_token_expires_at);
    if (i.worker) {
        boost::json::object w;
        w[jsv(k::state)] = protocol::to_string(i.worker->state);
        w[jsv(k::in_flight)] = i.worker->in_flight;
        w[jsv(k::completed)] = i.worker->completed;
        w[jsv(k::failed)] = i.worker->failed;
        w[jsv(k::capabilities)] = string_array(i.worker->capabilities);
        w[jsv(k::policy_hash)] = string_or_null(i.worker->policy_hash);
        w[jsv(k::last_heartbeat_at)] = format_rfc3339(i.worker->last_heartbeat_at);
        o[jsv(k::worker)] = std::move(w);
    } else {
        o[jsv(k::worker)] = nullptr;
    }
    o[jsv(k::pending_commands)] = i.pending_commands;
    o[jsv(k::open_streams)] = i.open_streams;
    if (i.revocation) {
        boost::json::object r;
        r[jsv(k::reason)] = jsv(i.revocation->reason);
        r[jsv(k::shutdown_timeout_ms)] = i.revocation->shutdown_timeout_ms
                                             ? boost::json::value(*i.revocation->shutdown_timeout_ms)
                                             : boost::json::value(nullptr);
        o[jsv(k::revoked)] = std::move(r);
    } else {
        o[jsv(k::revoked)] = nullptr;
    }
    o[jsv(k::created_at)] = format_rfc3339(i.created_at);
    o[jsv(k::heartbeats)] = i.heartbeats;
    boost::json::array marks;
    for (const auto& m : i.recent_heartbeats)
        marks.push_back(boost::json::object{{jsv(k::at), format_rfc3339(m.at)},
                                            {jsv(k::status), protocol::to_string(m.status)}});
    o[jsv(k::recent_heartbeats)] = std::move(marks);
    return o;
}

inline boost::json::object to_admin_json(const mock_command_info& c) {
    namespace k = admin_key;
    using protocol::detail::jsv;
    boost::json::object o;
    o[jsv(k::command_id)] = jsv(c.command_id);
    o[jsv(k::installation_id)] = jsv(c.installation_id);
    o[jsv(k::type)] = jsv(c.type);
    o[jsv(k::reason)] = jsv(c.reason);
    o[jsv(k::shutdown_timeout_ms)] =
        c.shutdown_timeout_ms ? boost::json::value(*c.shutdown_timeout_ms) : boost::json::value(nullptr);
    o[jsv(k::created_at)] = format_rfc3339(c.created_at);
    o[jsv(k::delivered_at)] = time_or_null(c.delivered_at);
    o[jsv(k::delivered_via)] =
        c.delivered_via.empty() ? boost::json::value(nullptr) : boost::json::value(jsv(c.delivered_via));
    return o;
}

inline boost::json::object to_admin_json(std::uint64_t id, const mock_fault& f, std::size_t remaining) {
    namespace k = admin_key;
    using protocol::detail::jsv;
    boost::json::object o;
    o[jsv(k::fault_id)] = id;
    o[jsv(k::path_prefix)] = jsv(f.path_prefix);
    o[jsv(k::remaining)] = remaining;
    o[jsv(k::status)] = f.status ? boost::json::value(*f.status) : boost::json::value(nullptr);
    o[jsv(k::retry_after)] = string_or_null(f.retry_after);
    o[jsv(k::delay_ms)] = f.delay.count();
    o[jsv(k::drop_connection)] = f.drop_connection;
    o[jsv(k::cut_stream_after_events)] = f.cut_stream_after_events
                                             ? boost::json::value(*f.cut_stream_after_events)
                                             : boost::json::value(nullptr);
    return o;
}

/// How a task stream ends after the frames of one `next_frames` call.
enum class mock_stream_end {
    none, ///< keep going
    done, ///< end the response cleanly (after a `revoked` event)
    cut,  ///< drop the connection (stop, cut fault, stream gone)
};

/** The state and rules of the mock backend. Every public member locks one mutex; none
    blocks on I/O while holding it.

    Streams: the HTTP layer opens a stream with a `wake` function and pulls its frames with
    `next_frames()`, which never blocks. The core calls `wake` (outside its lock, possibly
    from any thread, so it must only schedule a pull) whenever the stream may have something
    to write: a task chosen for it, a command, a `policy` or `revoked` event, shutdown.
    Time-driven output (keep-alive comments, redeliveries, a fake clock that moved) is found
    by `wake_ready_streams()`, which the HTTP layer calls periodically.
*/
class mock_core {
public:
    mock_core(mock_backend_options options, mock_clock_fns clock)
        : opts_(std::move(options)), clock_(std::move(clock)) {
        if (opts_.install_tokens.empty()) opts_.install_tokens.emplace_back(mock_default_install_token);
        for (const auto& t : opts_.install_tokens) install_tokens_[t] = install_token_rec{};
        policy_hash_ = policy_hash_of(policy_content_);
    }

    mock_core(const mock_core&) = delete;
    mock_core& operator=(const mock_core&) = delete;

    const mock_backend_options& options() const noexcept { return opts_; }

    // -- lifecycle -----------------------------------------------------------------------

    /// Ends every stream (their next `next_frames()` says `cut`) and wakes every waiter;
    /// later waits return at once.
    void shutdown() {
        {
            std::lock_guard<std::mutex> lk(m_);
            shutdown_ = true;
            for (auto& kv : streams_) mark_locked(kv.second);
        }
        notify();
    }

    bool is_shut_down() const {
        std::lock_guard<std::mutex> lk(m_);
        return shutdown_;
    }

    /// Queues again the tasks whose delivery timed out (Clock steady time).
    void tick() {
        bool changed = false;
        {
            std::lock_guard<std::mutex> lk(m_);
            changed = tick_locked(clock_.steady());
        }
        if (changed) notify();
    }

    /// Runs the redelivery check and wakes every stream that has something to write now,
    /// a keep-alive comment included (Clock steady time). Called periodically by the HTTP
    /// layer, so that time-driven output needs no timer per stream.
    void wake_ready_streams() {
        {
            std::lock_guard<std::mutex> lk(m_);
            const auto steady = clock_.steady();
            tick_locked(steady);
            for (auto& kv : streams_)
                if (stream_ready_locked(kv.second, steady)) mark_locked(kv.second);
        }
        notify();
    }

    /// Counts one request to `path`.
    void count_request(std::string_view path) {
        std::lock_guard<std::mutex> lk(m_);
        auto it = request_counts_.find(path);
        if (it != request_counts_.end()) {
            ++it->second;
        } else if (request_counts_.size() < mock_max_counted_paths) {
            request_counts_.emplace(std::string(path), 1);
        } else {
            ++request_counts_[std::string(mock_other_paths)];
        }
    }

    std::size_t request_count(std::string_view path) const {
        std::lock_guard<std::mutex> lk(m_);
        auto it = request_counts_.find(path);
        return it == request_counts_.end() ? 0 : it->second;
    }

    std::map<std::string, std::size_t, std::less<>> request_counts() const {
        std::lock_guard<std::mutex> lk(m_);
        return request_counts_;
    }

    // -- section 1 and 2 -----------------------------------------------------------------

    mock_reply bootstrap(std::string_view body) {
        protocol::bootstrap_request req;
        protocol::decode_error err;
        if (!protocol::decode(body, req, err, decode_opts())) return bad_request(err);
        namespace n = protocol::error_code_name;
        mock_reply reply;
        {
            std::lock_guard<std::mutex> lk(m_);
            const auto now = clock_.wall();
            auto it = install_tokens_.find(req.install_token);
            if (it == install_tokens_.end())
                return error_reply(401, n::invalid_install_token, "the install token is not valid");
            if (it->second.used) return error_reply(409, n::install_token_used, "the install token was already used");
            if (it->second.expires_at && now >= *it->second.expires_at)
                return error_reply(410, n::install_token_expired, "the install token has expired");
            if (it->second.agent_id && *it->second.agent_id != req.agent_id)
                return error_reply(403, n::agent_mismatch, "the install token belongs to another agent");
            it->second.used = true;
            reply = create_installation_locked(req.agent_id, std::move(req.capabilities), std::move(req.platform),
                                               std::move(req.sdk), now);
            dispatch_locked();
        }
        notify();
        return reply;
    }

    mock_reply recover(std::string_view api_key, std::string_view body) {
        namespace n = protocol::error_code_name;
        if (api_key != opts_.api_key) return error_reply(401, n::invalid_api_key, "the API key is not valid");
        protocol::recover_request req;
        protocol::decode_error err;
        if (!protocol::decode(body, req, err, decode_opts())) return bad_request(err);
        if (req.workspace_id != opts_.workspace_id)
            return error_reply(403, n::workspace_mismatch, "the API key does not belong to this workspace");
        mock_reply reply;
        {
            std::lock_guard<std::mutex> lk(m_);
            reply = create_installation_locked(req.agent_id, std::move(req.capabilities), std::move(req.platform),
                                               std::move(req.sdk), clock_.wall());
            dispatch_locked();
        }
        notify();
        return reply;
    }

    // -- section 3 -----------------------------------------------------------------------

    mock_reply refresh(std::string_view installation_id, std::string_view body) {
        namespace n = protocol::error_code_name;
        protocol::refresh_request req;
        protocol::decode_error err;
        const bool decoded = protocol::decode(body, req, err, decode_opts());
        std::lock_guard<std::mutex> lk(m_);
        auto it = installations_.find(installation_id);
        if (it == installations_.end()) return unknown_installation();
        if (!decoded) return bad_request(err);
        auto& in = it->second;
        if (req.refresh_token != in.refresh_token)
            return error_reply(401, n::invalid_refresh_token, "the refresh token is not valid");
        if (in.revoked) return error_reply(403, n::installation_revoked, "the installation was revoked");
        const auto now = clock_.wall();
        issue_token_locked(in, now);
        protocol::refresh_response resp;
        resp.runtime_token = in.current.value;
        resp.expires_at = in.current.expires_at;
        resp.token_version = in.current.version;
        if (opts_.rotate_refresh_tokens) {
            in.refresh_token = make_id(mock_prefix::refresh_token, 24);
            resp.refresh_token = in.refresh_token;
        }
        return message_reply(200, resp);
    }

    // -- section 5 -----------------------------------------------------------------------

    mock_reply heartbeat(std::string_view installation_id, std::string_view authorization, std::string_view body) {
        protocol::heartbeat_request req;
        protocol::decode_error err;
        const bool decoded = protocol::decode(body, req, err, decode_opts());
        const notify_on_exit notifier{*this}; // a heartbeat's capabilities can make tasks deliverable
        std::lock_guard<std::mutex> lk(m_);
        const auto now = clock_.wall();
        installation_rec* in = nullptr;
        const token_rec* presented = nullptr;
        if (auto denied = authenticate_locked(installation_id, authorization, now, in, presented)) return *denied;
        protocol::heartbeat_response resp;
        if (in->revoked) {
            resp.revoked = in->revoked;
            return message_reply(200, resp);
        }
        if (!decoded) return bad_request(err);
        in->last_status = req.status;
        in->stopped = req.status == protocol::heartbeat_status::stopped;
        in->sequence = req.sequence;
        in->uptime_seconds = req.uptime_seconds;
        if (req.platform != platform_info()) in->platform = std::move(req.platform);
        in->metrics = req.metrics;
        in->sdk = std::move(req.sdk);
        if (!req.capabilities.empty()) in->capabilities = std::move(req.capabilities);
        in->last_heartbeat = now;
        ++in->heartbeat_count;
        in->recent_heartbeats.push_back(mock_heartbeat_mark{now, req.status});
        while (in->recent_heartbeats.size() > mock_max_heartbeat_marks) in->recent_heartbeats.pop_front();
        in->lease_expires_at = now + opts_.lease;

        resp.installation_id = in->id;
        resp.lease_renewed = true;
        resp.lease_expires_at = in->lease_expires_at;
        if (opts_.heartbeat_interval) resp.next_heartbeat_at = now + *opts_.heartbeat_interval;
        resp.command = pop_command_locked(*in, "heartbeat", now);
        resp.active_policy_hash = policy_hash_;
        if (presented->expires_at - now <= opts_.refresh_window) {
            // A client that missed a refreshed token presents the previous one: give it the
            // current token when that one is still fresh, else a new one.
            if (presented == &in->current || in->current.expires_at - now <= opts_.refresh_window)
                issue_token_locked(*in, now);
            protocol::refreshed_token rt;
            rt.runtime_token = in->current.value;
            rt.expires_at = in->current.expires_at;
            rt.token_version = in->current.version;
            resp.refreshed_token = std::move(rt);
        }
        dispatch_locked();
        return message_reply(200, resp);
    }

    // -- section 6.3 and 6.4 -------------------------------------------------------------

    mock_reply worker_heartbeat(std::string_view installation_id, std::string_view authorization,
                                std::string_view body) {
        protocol::worker_heartbeat_request req;
        protocol::decode_error err;
        const bool decoded = protocol::decode(body, req, err, decode_opts());
        std::lock_guard<std::mutex> lk(m_);
        const auto now = clock_.wall();
        installation_rec* in = nullptr;
        const token_rec* presented = nullptr;
        if (auto denied = authenticate_locked(installation_id, authorization, now, in, presented)) return *denied;
        protocol::worker_heartbeat_response resp;
        if (in->revoked) {
            resp.revoked = in->revoked;
            return message_reply(200, resp);
        }
        if (!decoded) return bad_request(err);
        mock_worker_info w;
        w.state = req.state;
        w.in_flight = req.in_flight;
        w.completed = req.completed;
        w.failed = req.failed;
        w.capabilities = std::move(req.capabilities);
        w.policy_hash = std::move(req.policy_hash);
        w.last_heartbeat_at = now;
        in->worker = std::move(w);
        resp.active_policy_hash = policy_hash_;
        resp.command = pop_command_locked(*in, "worker_heartbeat", now);
        return message_reply(200, resp);
    }

    mock_reply active_policy(std::string_view workspace_id, std::string_view authorization) {
        std::lock_guard<std::mutex> lk(m_);
        installation_rec* in = nullptr;
        if (auto denied = authenticate_token_locked(authorization, clock_.wall(), in)) return *denied;
        if (in->revoked) return revoked_error();
        if (workspace_id != in->workspace_id)
            return error_reply(404, protocol::error_code_name::not_found, "no such workspace");
        return message_reply(200, policy_locked());
    }

    // -- section 6.2 ---------------------------------------------------------------------

    mock_reply complete(std::string_view task_id, std::string_view authorization, std::string_view body) {
        namespace n = protocol::error_code_name;
        protocol::completion_request req;
        protocol::decode_error err;
        const bool decoded = protocol::decode(body, req, err, decode_opts());
        bool changed = false;
        mock_reply reply;
        {
            std::lock_guard<std::mutex> lk(m_);
            installation_rec* in = nullptr;
            if (auto denied = authenticate_token_locked(authorization, clock_.wall(), in)) return *denied;
            // A revoked agent shuts down gracefully (protocol.md section 5): results it
            // computed are still taken until its shutdown timeout has passed.
            if (in->revoked &&
                clock_.wall() > in->revoked_at + std::chrono::milliseconds(in->revoked->shutdown_timeout_ms.value_or(0)))
                return revoked_error();
            if (!decoded) return bad_request(err);
            // Not a token problem (a 401 would send the client to refresh it): the result
            // names an installation the token is not for, which no retry changes.
            if (req.installation_id != in->id)
                return error_reply(403, mock_installation_mismatch,
                                   "the result names another installation than the runtime token's");
            auto it = tasks_.find(task_id);
            if (it == tasks_.end()) return error_reply(404, n::unknown_task, "no such task");
            auto& t = it->second;
            const mock_task_status status = req.status == protocol::task_status::completed ? mock_task_status::completed
                                            : req.status == protocol::task_status::failed  ? mock_task_status::failed
                                                                                           : mock_task_status::rejected;
            std::optional<mock_task_error> error;
            if (req.error) error = mock_task_error{protocol::to_string(req.error->code), req.error->message};
            if (is_finished(t.info.status)) {
                const bool same = t.info.status == status && t.info.output == req.output &&
                                  t.info.error.has_value() == error.has_value() &&
                                  (!error || (t.info.error->code == error->code && t.info.error->message == error->message));
                if (!same) return error_reply(409, n::already_completed, "the task was completed with another result");
            } else {
                t.info.status = status;
                t.info.output = std::move(req.output);
                t.info.error = std::move(error);
                t.info.execution_time_ms = req.execution_time_ms;
                t.info.installation_id = in->id;
                t.info.completed_at = clock_.wall();
                t.assigned_stream = 0;
                in_flight_.erase(t.info.task_id);
                changed = true;
            }
            protocol::completion_response resp;
            resp.accepted = true;
            reply = message_reply(200, resp);
        }
        if (changed) notify();
        return reply;
    }

    // -- section 9 -----------------------------------------------------------------------

    mock_reply revoke_route(std::string_view installation_id, std::string_view api_key, std::string_view body) {
        namespace n = protocol::error_code_name;
        if (api_key != opts_.api_key) return error_reply(401, n::invalid_api_key, "the API key is not valid");
        protocol::revoke_request req;
        protocol::decode_error err;
        const bool decoded = protocol::decode(body, req, err, decode_opts());
        mock_reply reply;
        {
            std::lock_guard<std::mutex> lk(m_);
            auto it = installations_.find(installation_id);
            if (it == installations_.end()) return unknown_installation();
            if (!decoded) return bad_request(err);
            revoke_locked(it->second, std::move(req.reason), req.shutdown_timeout_ms);
            reply = message_reply(200, *it->second.revoked);
        }
        notify();
        return reply;
    }

    // -- section 6.1: the task stream ----------------------------------------------------

    /// Opens a stream: `id` is non-zero on success, else `error` is the reply.
    struct stream_open {
        std::uint64_t id = 0;
        mock_reply error;
    };

    /// `wake` is called (outside the core's lock) when the stream may have frames to write.
    stream_open open_stream(std::string_view installation_id, std::string_view authorization,
                            const std::optional<std::string>& capabilities, std::string_view last_event_id,
                            std::optional<std::size_t> cut_after, std::function<void()> wake = {}) {
        stream_open result;
        {
            std::lock_guard<std::mutex> lk(m_);
            if (shutdown_) {
                result.error = error_reply(503, protocol::error_code_name::unavailable, "the backend is stopping");
                return result;
            }
            installation_rec* in = nullptr;
            const token_rec* presented = nullptr;
            if (auto denied = authenticate_locked(installation_id, authorization, clock_.wall(), in, presented)) {
                result.error = *denied;
                return result;
            }
            if (in->revoked) {
                result.error = revoked_error();
                return result;
            }
            stream_rec s;
            s.id = ++next_stream_id_;
            s.installation_id = in->id;
            s.installation = in;
            if (capabilities && !capabilities->empty()) {
                std::vector<std::string> caps;
                std::string_view rest(*capabilities);
                while (!rest.empty() && caps.size() < mock_max_capabilities) {
                    const auto comma = rest.find(',');
                    const auto name = rest.substr(0, comma);
                    if (!name.empty() && name.size() <= mock_max_name_length) caps.emplace_back(name);
                    if (comma == std::string_view::npos) break;
                    rest.remove_prefix(comma + 1);
                }
                s.capabilities = std::move(caps);
            }
            s.cut_after = cut_after;
            s.wake = std::move(wake);
            s.last_write = clock_.steady();
            if (const auto from = parse_event_id(last_event_id)) {
                for (auto e = in->events.upper_bound(*from); e != in->events.end(); ++e) {
                    if (e->second.task_id.empty() && e->second.command_data.empty()) continue;
                    pending_frame f;
                    f.fixed_id = e->first;
                    f.task_id = e->second.task_id;
                    f.data = e->second.command_data;
                    f.type = std::string(f.task_id.empty() ? protocol::event_type::command : protocol::event_type::task);
                    s.outbox.push_back(std::move(f));
                }
            }
            result.id = s.id;
            streams_.emplace(s.id, std::move(s));
            dispatch_locked();
        }
        notify();
        return result;
    }

    /** Appends to `out` the frames the stream should write now (possibly none, possibly a
        keep-alive comment); never blocks. Tells how the stream ends after them. Adds no
        further frame once `out` holds `mock_stream_write_budget` bytes: the rest comes with
        the next call (the caller pulls again after each write).
    */
    mock_stream_end next_frames(std::uint64_t stream_id, std::string& out) {
        mock_stream_end end = mock_stream_end::none;
        bool produced = false;
        {
            std::lock_guard<std::mutex> lk(m_);
            if (shutdown_) return mock_stream_end::cut;
            auto it = streams_.find(stream_id);
            if (it == streams_.end()) return mock_stream_end::cut;
            auto& s = it->second;
            const auto steady = clock_.steady();
            if (tick_locked(steady)) produced = true;
            for (;;) {
                if (s.cut_after && s.events_sent >= *s.cut_after) {
                    end = mock_stream_end::cut;
                    break;
                }
                if (out.size() >= mock_stream_write_budget || !pop_frame_locked(s, steady, out)) break;
                produced = true;
            }
            if (end == mock_stream_end::none && s.closing && s.outbox.empty()) end = mock_stream_end::done;
            if (out.empty() && end == mock_stream_end::none && steady - s.last_write >= opts_.keepalive)
                out += mock_keepalive_frame;
            if (!out.empty()) s.last_write = steady;
        }
        if (produced) notify();
        return end;
    }

    /// Forgets a stream (its connection ended); tasks chosen for it but not written go back
    /// to the queue. Idempotent.
    void close_stream(std::uint64_t stream_id) {
        {
            std::lock_guard<std::mutex> lk(m_);
            auto it = streams_.find(stream_id);
            if (it == streams_.end()) return;
            unassign_locked(it->second);
            streams_.erase(it);
            dispatch_locked();
        }
        notify();
    }

    std::size_t open_streams() const {
        std::lock_guard<std::mutex> lk(m_);
        return streams_.size();
    }

    std::size_t open_streams(std::string_view installation_id) const {
        std::lock_guard<std::mutex> lk(m_);
        return streams_of_locked(installation_id);
    }

    bool wait_for_open_streams(std::size_t n, std::chrono::milliseconds real_timeout) {
        std::unique_lock<std::mutex> lk(m_);
        return cv_.wait_for(lk, real_timeout, [&] { return streams_.size() >= n; });
    }

    // -- faults --------------------------------------------------------------------------

    std::uint64_t add_fault(const mock_fault& f, error_code& ec) {
        ec = {};
        if (!validate_fault(f).empty()) {
            ec = errc::invalid_option;
            return 0;
        }
        std::lock_guard<std::mutex> lk(m_);
        if (faults_.size() >= mock_max_faults) {
            ec = errc::invalid_option;
            return 0;
        }
        faults_.push_back(fault_rec{++next_fault_id_, f, f.count});
        return next_fault_id_;
    }

    std::size_t clear_faults() {
        std::lock_guard<std::mutex> lk(m_);
        const auto n = faults_.size();
        faults_.clear();
        return n;
    }

    /// Takes one use of the first fault matching `path`, if any.
    std::optional<mock_fault> take_fault(std::string_view path, bool is_stream) {
        std::lock_guard<std::mutex> lk(m_);
        for (auto it = faults_.begin(); it != faults_.end(); ++it) {
            if (path.substr(0, it->fault.path_prefix.size()) != it->fault.path_prefix) continue;
            if (it->fault.cut_stream_after_events && !is_stream) continue;
            mock_fault f = it->fault;
            if (--it->remaining == 0) faults_.erase(it);
            return f;
        }
        return std::nullopt;
    }

    // -- direct admin functions ----------------------------------------------------------

    std::string create_install_token(const mock_install_token_request& r) {
        install_token_rec rec;
        rec.agent_id = r.agent_id;
        std::lock_guard<std::mutex> lk(m_);
        if (r.ttl) {
            // Clamped to a century either way, so that the expiry cannot overflow.
            const auto ttl = std::clamp(*r.ttl, -mock_max_install_token_ttl, mock_max_install_token_ttl);
            rec.expires_at = clock_.wall() + ttl;
        }
        std::string token = make_id(mock_prefix::install_token, 24);
        install_tokens_[token] = std::move(rec);
        return token;
    }

    std::string enqueue_task(mock_task_request r, error_code& ec) {
        ec = {};
        if (r.capability.empty() || r.capability.size() > mock_max_name_length) {
            ec = errc::invalid_option;
            return {};
        }
        std::string id;
        {
            std::lock_guard<std::mutex> lk(m_);
            if (tasks_.size() >= opts_.max_tasks && !evict_finished_task_locked()) {
                ec = errc::rate_limited;
                return {};
            }
            id = make_id(mock_prefix::task);
            task_rec t;
            t.info.task_id = id;
            t.info.capability = std::move(r.capability);
            t.info.input = std::move(r.input);
            t.info.workspace_id = r.workspace_id ? std::move(*r.workspace_id) : opts_.workspace_id;
            t.info.trace_id = r.trace_id;
            t.info.created_at = clock_.wall();
            t.requester_agent_id = std::move(r.requester_agent_id);
            t.parent_task_id = std::move(r.parent_task_id);
            t.workflow_id = std::move(r.workflow_id);
            t.deadline_at = r.deadline_at;
            tasks_.emplace(id, std::move(t));
            task_order_.push_back(id);
            queue_.push_back(id);
            dispatch_locked();
        }
        notify();
        return id;
    }

    std::optional<mock_task_info> task(std::string_view id) {
        tick();
        std::lock_guard<std::mutex> lk(m_);
        auto it = tasks_.find(id);
        if (it == tasks_.end()) return std::nullopt;
        return it->second.info;
    }

    std::vector<mock_task_info> tasks() {
        tick();
        std::lock_guard<std::mutex> lk(m_);
        std::vector<mock_task_info> out;
        const std::size_t skip = task_order_.size() > mock_max_listed_tasks ? task_order_.size() - mock_max_listed_tasks : 0;
        for (std::size_t i = skip; i < task_order_.size(); ++i) {
            auto it = tasks_.find(task_order_[i]);
            if (it != tasks_.end()) out.push_back(it->second.info);
        }
        return out;
    }

    /// Waits (real time) until the task has `status`; false on timeout or unknown task.
    bool wait_for_task(std::string_view id, mock_task_status status, std::chrono::milliseconds real_timeout) {
        const auto deadline = std::chrono::steady_clock::now() + real_timeout;
        std::unique_lock<std::mutex> lk(m_);
        for (;;) {
            tick_locked(clock_.steady());
            auto it = tasks_.find(id);
            if (it == tasks_.end()) return false;
            if (it->second.info.status == status) return true;
            if (shutdown_ || std::chrono::steady_clock::now() >= deadline) return false;
            // Sliced: with a fake clock a redelivery becomes due without a notification.
            cv_.wait_for(lk, std::chrono::milliseconds(20));
        }
    }

    std::string send_command(std::string_view installation_id, std::string type, std::string reason,
                             std::optional<std::int64_t> shutdown_timeout_ms, error_code& ec) {
        ec = {};
        if (type.empty() || type.size() > 64 || reason.size() > 4096 ||
            (shutdown_timeout_ms && *shutdown_timeout_ms < 0)) {
            ec = errc::invalid_option;
            return {};
        }
        std::string id;
        {
            std::lock_guard<std::mutex> lk(m_);
            auto it = installations_.find(installation_id);
            if (it == installations_.end()) {
                ec = errc::installation_not_found;
                return {};
            }
            if (it->second.revoked) {
                ec = errc::revoked;
                return {};
            }
            if (it->second.commands.size() >= mock_max_commands) {
                ec = errc::rate_limited;
                return {};
            }
            protocol::command c;
            c.id = make_id(mock_prefix::command);
            c.type_name = std::move(type);
            if (!protocol::from_string(c.type_name, c.type)) c.type = protocol::command_type::unknown;
            c.reason = std::move(reason);
            c.shutdown_timeout_ms = shutdown_timeout_ms;
            protocol::detail::clamp_shutdown_timeout(c.shutdown_timeout_ms);
            id = c.id;
            mock_command_info logged;
            logged.command_id = c.id;
            logged.installation_id = it->second.id;
            logged.type = c.type_name;
            logged.reason = c.reason;
            logged.shutdown_timeout_ms = c.shutdown_timeout_ms;
            logged.created_at = clock_.wall();
            command_log_.emplace(id, std::move(logged));
            command_log_order_.push_back(id);
            while (command_log_order_.size() > mock_max_command_log) {
                command_log_.erase(command_log_order_.front());
                command_log_order_.pop_front();
            }
            it->second.commands.push_back(std::move(c));
            for (auto& kv : streams_)
                if (kv.second.installation_id == it->second.id) mark_locked(kv.second);
        }
        notify();
        return id;
    }

    std::vector<mock_installation_info> installations() const {
        std::lock_guard<std::mutex> lk(m_);
        const auto now = clock_.wall();
        std::vector<const installation_rec*> ordered;
        ordered.reserve(installations_.size());
        for (const auto& kv : installations_) ordered.push_back(&kv.second);
        std::sort(ordered.begin(), ordered.end(),
                  [](const installation_rec* a, const installation_rec* b) { return a->number < b->number; });
        std::vector<mock_installation_info> out;
        out.reserve(ordered.size());
        for (const auto* in : ordered) out.push_back(info_locked(*in, now));
        return out;
    }

    std::optional<mock_installation_info> installation(std::string_view id) const {
        std::lock_guard<std::mutex> lk(m_);
        auto it = installations_.find(id);
        if (it == installations_.end()) return std::nullopt;
        return info_locked(it->second, clock_.wall());
    }

    /// The commands sent (at most `mock_max_command_log`), oldest first.
    std::vector<mock_command_info> commands() const {
        std::lock_guard<std::mutex> lk(m_);
        std::vector<mock_command_info> out;
        out.reserve(command_log_order_.size());
        for (const auto& id : command_log_order_) {
            auto it = command_log_.find(id);
            if (it != command_log_.end()) out.push_back(it->second);
        }
        return out;
    }

    /// Replaces the policy content; returns the new hash. A changed hash sends a `policy`
    /// event on every open stream.
    std::string set_policy(boost::json::object content) {
        std::string hash = policy_hash_of(content);
        bool changed = false;
        {
            std::lock_guard<std::mutex> lk(m_);
            if (hash != policy_hash_) {
                policy_content_ = std::move(content);
                policy_hash_ = hash;
                ++policy_version_;
                changed = true;
                protocol::policy_event ev;
                ev.active_policy_hash = policy_hash_;
                const std::string data = protocol::encode(ev);
                for (auto& kv : streams_) {
                    if (kv.second.closing) continue;
                    if (kv.second.installation->workspace_id != opts_.workspace_id) continue;
                    pending_frame f;
                    f.type = std::string(protocol::event_type::policy);
                    f.data = data;
                    kv.second.outbox.push_back(std::move(f));
                    mark_locked(kv.second);
                }
            }
        }
        if (changed) notify();
        return hash;
    }

    protocol::policy_document policy() const {
        std::lock_guard<std::mutex> lk(m_);
        return policy_locked();
    }

    bool revoke(std::string_view installation_id, std::string reason, std::optional<std::int64_t> shutdown_timeout_ms,
                error_code& ec) {
        ec = {};
        if (shutdown_timeout_ms && *shutdown_timeout_ms < 0) {
            ec = errc::invalid_option;
            return false;
        }
        {
            std::lock_guard<std::mutex> lk(m_);
            auto it = installations_.find(installation_id);
            if (it == installations_.end()) {
                ec = errc::installation_not_found;
                return false;
            }
            revoke_locked(it->second, std::move(reason), shutdown_timeout_ms);
        }
        notify();
        return true;
    }

    // -- admin routes (JSON in, JSON out); the caller checked the API key ------------------

    mock_reply admin_create_install_token(std::string_view body) {
        namespace k = admin_key;
        mock_install_token_request r;
        protocol::decode_error err;
        const bool ok = read_admin_body(body, opts_.max_body, true, err, [&](protocol::detail::reader& rd, const boost::json::object&) {
            std::optional<std::int64_t> ttl;
            if (!rd.optional_string(k::agent_id, r.agent_id) || !rd.optional_int(k::ttl_seconds, ttl)) return false;
            if (r.agent_id && (r.agent_id->empty() || r.agent_id->size() > mock_max_name_length))
                return rd.fail(errc::invalid_value, k::agent_id);
            if (ttl) {
                if (*ttl > mock_max_install_token_ttl.count()) return rd.fail(errc::invalid_value, k::ttl_seconds);
                r.ttl = std::chrono::seconds(*ttl);
            }
            return true;
        });
        if (!ok) return bad_request(err);
        const auto token = create_install_token(r);
        boost::json::object o;
        o[protocol::detail::jsv(k::install_token)] = protocol::detail::jsv(token);
        if (r.ttl) {
            std::lock_guard<std::mutex> lk(m_);
            auto it = install_tokens_.find(token);
            if (it != install_tokens_.end() && it->second.expires_at)
                o[protocol::detail::jsv(k::expires_at)] = format_rfc3339(*it->second.expires_at);
        }
        return json_reply(201, o);
    }

    mock_reply admin_enqueue_task(std::string_view body) {
        namespace k = admin_key;
        mock_task_request r;
        protocol::decode_error err;
        const bool ok = read_admin_body(body, opts_.max_body, false, err, [&](protocol::detail::reader& rd, const boost::json::object&) {
            if (!rd.required_string(k::capability, r.capability) || !rd.any_value(k::input, r.input) ||
                !rd.optional_string(k::workspace_id, r.workspace_id) || !rd.optional_string(k::trace_id, r.trace_id) ||
                !rd.optional_string(k::requester_agent_id, r.requester_agent_id) ||
                !rd.optional_string(k::parent_task_id, r.parent_task_id) ||
                !rd.optional_string(k::workflow_id, r.workflow_id) || !rd.optional_time(k::deadline_at, r.deadline_at))
                return false;
            if (r.capability.size() > mock_max_name_length) return rd.fail(errc::invalid_value, k::capability);
            if (r.workspace_id && r.workspace_id->empty()) return rd.fail(errc::invalid_value, k::workspace_id);
            if (!rd.find(k::input)) r.input = boost::json::object();
            return true;
        });
        if (!ok) return bad_request(err);
        error_code ec;
        const auto id = enqueue_task(std::move(r), ec);
        if (ec == errc::rate_limited)
            return error_reply(429, protocol::error_code_name::rate_limited, "too many unfinished tasks");
        if (ec) return error_reply(400, protocol::error_code_name::bad_request, ec.message());
        boost::json::object o;
        o[protocol::detail::jsv(k::task_id)] = protocol::detail::jsv(id);
        return json_reply(201, o);
    }

    mock_reply admin_task(std::string_view id) {
        auto t = task(id);
        if (!t) return error_reply(404, protocol::error_code_name::not_found, "no such task");
        return json_reply(200, to_admin_json(*t));
    }

    mock_reply admin_tasks() {
        boost::json::array a;
        for (const auto& t : tasks()) a.push_back(to_admin_json(t));
        boost::json::object o;
        o[protocol::detail::jsv(admin_key::tasks)] = std::move(a);
        return json_reply(200, o);
    }

    mock_reply admin_send_command(std::string_view installation_id, std::string_view body) {
        namespace k = admin_key;
        std::string type, reason;
        std::optional<std::int64_t> timeout;
        protocol::decode_error err;
        const bool ok = read_admin_body(body, opts_.max_body, false, err, [&](protocol::detail::reader& rd, const boost::json::object&) {
            if (!rd.required_string(k::type, type) || !rd.optional_string(k::reason, reason) ||
                !rd.optional_int(k::shutdown_timeout_ms, timeout))
                return false;
            if (type.size() > 64) return rd.fail(errc::invalid_value, k::type);
            if (reason.size() > 4096) return rd.fail(errc::invalid_value, k::reason);
            return true;
        });
        {
            std::lock_guard<std::mutex> lk(m_);
            if (installations_.find(installation_id) == installations_.end()) return unknown_installation();
        }
        if (!ok) return bad_request(err);
        error_code ec;
        const auto id = send_command(installation_id, std::move(type), std::move(reason), timeout, ec);
        if (ec == errc::revoked) return error_reply(409, protocol::error_code_name::installation_revoked, "the installation was revoked");
        if (ec == errc::installation_not_found) return unknown_installation();
        if (ec == errc::rate_limited)
            return error_reply(429, protocol::error_code_name::rate_limited, "too many pending commands");
        if (ec) return error_reply(400, protocol::error_code_name::bad_request, ec.message());
        boost::json::object o;
        o[protocol::detail::jsv(k::command_id)] = protocol::detail::jsv(id);
        return json_reply(201, o);
    }

    mock_reply admin_installations() const {
        boost::json::array a;
        for (const auto& i : installations()) a.push_back(to_admin_json(i));
        boost::json::object o;
        o[protocol::detail::jsv(admin_key::installations)] = std::move(a);
        return json_reply(200, o);
    }

    mock_reply admin_commands() const {
        boost::json::array a;
        for (const auto& c : commands()) a.push_back(to_admin_json(c));
        boost::json::object o;
        o[protocol::detail::jsv(admin_key::commands)] = std::move(a);
        return json_reply(200, o);
    }

    mock_reply admin_installation(std::string_view id) const {
        auto i = installation(id);
        if (!i) return unknown_installation();
        return json_reply(200, to_admin_json(*i));
    }

    mock_reply admin_set_policy(std::string_view body) {
        namespace k = admin_key;
        boost::json::object content;
        protocol::decode_error err;
        const bool ok = read_admin_body(body, opts_.max_body, false, err, [&](protocol::detail::reader& rd, const boost::json::object&) {
            const boost::json::object* c = nullptr;
            if (!rd.required_object(k::content, c)) return false;
            content = boost::json::object(*c, boost::json::storage_ptr());
            return true;
        });
        if (!ok) return bad_request(err);
        set_policy(std::move(content));
        return json_reply(200, protocol::to_json(policy()));
    }

    mock_reply admin_policy() const { return json_reply(200, protocol::to_json(policy())); }

    mock_reply admin_add_fault(std::string_view body) {
        namespace k = admin_key;
        mock_fault f;
        protocol::decode_error err;
        const bool ok = read_admin_body(body, opts_.max_body, false, err, [&](protocol::detail::reader& rd, const boost::json::object&) {
            std::int64_t count = 1, delay = 0;
            std::optional<std::int64_t> status, cut;
            std::optional<bool> drop;
            if (!rd.optional_string(k::path_prefix, f.path_prefix) || !rd.optional_int(k::count, count, 1) ||
                !rd.optional_int(k::status, status) || !rd.optional_int(k::delay_ms, delay) ||
                !rd.optional_bool(k::drop_connection, drop) || !rd.optional_int(k::cut_stream_after_events, cut))
                return false;
            // Retry-After may be given as a number of seconds or as a string.
            if (const auto* ra = rd.find(k::retry_after); ra && !ra->is_null()) {
                if (ra->is_string()) {
                    f.retry_after = std::string(ra->get_string().data(), ra->get_string().size());
                } else {
                    std::int64_t secs = 0;
                    if (!rd.int_value(*ra, k::retry_after, 0, secs)) return false;
                    f.retry_after = std::to_string(secs);
                }
            }
            if (count > 1000000) return rd.fail(errc::invalid_value, k::count);
            f.count = static_cast<std::size_t>(count);
            if (status) {
                if (*status < 300 || *status > 599) return rd.fail(errc::invalid_value, k::status);
                f.status = static_cast<int>(*status);
            }
            if (delay > mock_max_fault_delay.count()) return rd.fail(errc::invalid_value, k::delay_ms);
            f.delay = std::chrono::milliseconds(delay);
            f.drop_connection = drop.value_or(false);
            if (cut) {
                if (*cut > 1000000) return rd.fail(errc::invalid_value, k::cut_stream_after_events);
                f.cut_stream_after_events = static_cast<std::size_t>(*cut);
            }
            return true;
        });
        if (!ok) return bad_request(err);
        if (auto problem = validate_fault(f); !problem.empty())
            return error_reply(400, protocol::error_code_name::bad_request, problem);
        error_code ec;
        const auto id = add_fault(f, ec);
        if (ec) return error_reply(429, protocol::error_code_name::rate_limited, "too many faults");
        boost::json::object o;
        o[protocol::detail::jsv(k::fault_id)] = id;
        return json_reply(201, o);
    }

    mock_reply admin_faults() const {
        boost::json::array a;
        {
            std::lock_guard<std::mutex> lk(m_);
            for (const auto& f : faults_) a.push_back(to_admin_json(f.id, f.fault, f.remaining));
        }
        boost::json::object o;
        o[protocol::detail::jsv(admin_key::faults)] = std::move(a);
        return json_reply(200, o);
    }

    mock_reply admin_clear_faults() {
        boost::json::object o;
        o[protocol::detail::jsv(admin_key::cleared)] = clear_faults();
        return json_reply(200, o);
    }

    static mock_reply unknown_installation() {
        return error_reply(404, protocol::error_code_name::not_found, "no such installation");
    }

private:
    struct install_token_rec {
        std::optional<std::string> agent_id;
        std::optional<wall_time_point> expires_at;
        bool used = false;
    };

    struct token_rec {
        std::string value;
        wall_time_point expires_at{};
        std::int64_t version = 0;
    };

    // One event written on a stream, kept for Last-Event-ID replay: a task (by id) or a
    // command (its data). Other events are not replayed and not kept.
    struct event_rec {
        std::string task_id;
        std::string command_data;
    };

    struct installation_rec {
        std::uint64_t number = 0; // creation order
        std::string id;
        std::string agent_id;
        std::string workspace_id;
        std::vector<std::string> capabilities;
        platform_info platform;
        protocol::heartbeat_metrics metrics;
        protocol::sdk_info sdk;
        std::optional<protocol::heartbeat_status> last_status;
        std::int64_t sequence = 0;
        std::int64_t uptime_seconds = 0;
        std::optional<wall_time_point> last_heartbeat;
        wall_time_point lease_expires_at{};
        wall_time_point created_at{};
        bool stopped = false;
        std::optional<protocol::revocation> revoked;
        wall_time_point revoked_at{};
        token_rec current;
        std::optional<token_rec> previous;
        std::string refresh_token;
        std::optional<mock_worker_info> worker;
        std::deque<protocol::command> commands;
        std::uint64_t next_event_id = 1;
        std::map<std::uint64_t, event_rec> events;
        std::int64_t heartbeat_count = 0;
        std::deque<mock_heartbeat_mark> recent_heartbeats;
    };

    struct task_rec {
        mock_task_info info;
        std::optional<std::string> requester_agent_id;
        std::optional<std::string> parent_task_id;
        std::optional<std::string> workflow_id;
        std::optional<wall_time_point> deadline_at;
        std::uint64_t assigned_stream = 0; // chosen, not written yet
        std::uint64_t delivered_event = 0; // event id of the last delivery
        steady_time_point delivered_at{};
    };

    struct pending_frame {
        std::string type;
        std::string data;
        std::optional<std::uint64_t> fixed_id; // replays keep their id
        std::string task_id;                   // task replays: encoded when written
    };

    struct stream_rec {
        std::uint64_t id = 0;
        std::string installation_id;
        installation_rec* installation = nullptr; // never null: installations are never erased
        std::optional<std::vector<std::string>> capabilities; // from the query, else the installation's
        std::deque<pending_frame> outbox;                     // replays, policy, revoked
        std::deque<std::string> assigned;                     // task ids chosen for this stream
        bool closing = false;                                 // end after the outbox
        std::optional<std::size_t> cut_after;
        std::size_t events_sent = 0;
        steady_time_point last_write{};
        std::function<void()> wake; // from the HTTP layer: schedules a pull
        bool wake_marked = false;   // in wake_ids_
    };

    struct fault_rec {
        std::uint64_t id = 0;
        mock_fault fault;
        std::size_t remaining = 0;
    };

    static bool is_finished(mock_task_status s) noexcept {
        return s == mock_task_status::completed || s == mock_task_status::failed || s == mock_task_status::rejected;
    }

    protocol::decode_options decode_opts() const noexcept {
        protocol::decode_options d;
        d.max_body_size = opts_.max_body;
        return d;
    }

    static mock_reply revoked_error() {
        return error_reply(403, protocol::error_code_name::installation_revoked, "the installation was revoked");
    }

    static mock_reply unauthorized(std::string_view why) {
        return error_reply(401, protocol::error_code_name::unauthorized, why);
    }

    // 404 for an unknown installation, 401 for a missing, unknown, foreign or expired token.
    std::optional<mock_reply> authenticate_locked(std::string_view installation_id, std::string_view authorization,
                                                  wall_time_point now, installation_rec*& in,
                                                  const token_rec*& presented) {
        auto it = installations_.find(installation_id);
        if (it == installations_.end()) return unknown_installation();
        const auto token = bearer_token(authorization);
        if (token.empty()) return unauthorized("a Bearer runtime token is required");
        auto& rec = it->second;
        const token_rec* t = nullptr;
        if (token == rec.current.value) {
            t = &rec.current;
        } else if (rec.previous && token == rec.previous->value) {
            t = &*rec.previous;
        }
        if (!t) return unauthorized("the runtime token is not valid for this installation");
        if (now >= t->expires_at) return unauthorized("the runtime token has expired");
        in = &rec;
        presented = t;
        return std::nullopt;
    }

    // For routes without an installation in the path: the token names the installation.
    std::optional<mock_reply> authenticate_token_locked(std::string_view authorization, wall_time_point now,
                                                        installation_rec*& in) {
        const auto token = bearer_token(authorization);
        if (token.empty()) return unauthorized("a Bearer runtime token is required");
        auto owner = token_owner_.find(token);
        if (owner == token_owner_.end()) return unauthorized("the runtime token is not valid");
        const token_rec* presented = nullptr;
        return authenticate_locked(owner->second, authorization, now, in, presented);
    }

    void issue_token_locked(installation_rec& in, wall_time_point now) {
        if (in.previous) token_owner_.erase(in.previous->value);
        if (!in.current.value.empty()) in.previous = in.current;
        token_rec t;
        t.value = make_id(mock_prefix::runtime_token, 24);
        t.expires_at = now + opts_.token_lifetime;
        t.version = in.current.version + 1;
        in.current = std::move(t);
        token_owner_[in.current.value] = in.id;
    }

    mock_reply create_installation_locked(std::string agent_id, std::vector<std::string> capabilities,
                                          platform_info platform, protocol::sdk_info sdk, wall_time_point now) {
        installation_rec in;
        in.number = ++installations_created_;
        in.id = make_id(mock_prefix::installation);
        in.agent_id = std::move(agent_id);
        in.workspace_id = opts_.workspace_id;
        if (capabilities.size() > mock_max_capabilities) capabilities.resize(mock_max_capabilities);
        in.capabilities = std::move(capabilities);
        in.platform = std::move(platform);
        in.sdk = std::move(sdk);
        in.created_at = now;
        in.lease_expires_at = now + opts_.lease;
        in.refresh_token = make_id(mock_prefix::refresh_token, 24);
        issue_token_locked(in, now);
        protocol::bootstrap_response resp;
        resp.installation_id = in.id;
        resp.runtime_token = in.current.value;
        resp.runtime_token_expires_at = in.current.expires_at;
        resp.refresh_token = in.refresh_token;
        resp.lease_expires_at = in.lease_expires_at;
        if (opts_.heartbeat_interval) resp.heartbeat_interval_seconds = opts_.heartbeat_interval->count();
        const std::string id = in.id;
        installations_.emplace(id, std::move(in));
        return message_reply(201, resp);
    }

    std::optional<protocol::command> pop_command_locked(installation_rec& in, std::string_view via,
                                                        wall_time_point now) {
        if (in.commands.empty()) return std::nullopt;
        protocol::command c = std::move(in.commands.front());
        in.commands.pop_front();
        log_delivery_locked(c.id, via, now);
        return c;
    }

    void log_delivery_locked(const std::string& command_id, std::string_view via, wall_time_point now) {
        auto it = command_log_.find(command_id);
        if (it == command_log_.end() || it->second.delivered_at) return;
        it->second.delivered_at = now;
        it->second.delivered_via = std::string(via);
    }

    void revoke_locked(installation_rec& in, std::string reason, std::optional<std::int64_t> shutdown_timeout_ms) {
        if (in.revoked) return;
        protocol::revocation r;
        r.reason = reason.empty() ? std::string("revoked by an operator") : std::move(reason);
        r.shutdown_timeout_ms = shutdown_timeout_ms ? *shutdown_timeout_ms : opts_.revoke_shutdown_timeout_ms;
        protocol::detail::clamp_shutdown_timeout(r.shutdown_timeout_ms); // as a client decoding it would
        in.revoked = r;
        in.revoked_at = clock_.wall();
        const std::string data = protocol::encode(r);
        for (auto& kv : streams_) {
            auto& s = kv.second;
            if (s.installation_id != in.id || s.closing) continue;
            pending_frame f;
            f.type = std::string(protocol::event_type::revoked);
            f.data = data;
            s.outbox.push_back(std::move(f));
            s.closing = true;
            mark_locked(s);
            unassign_locked(s);
        }
        dispatch_locked();
    }

    protocol::policy_document policy_locked() const {
        protocol::policy_document p;
        p.policy_id = std::string(mock_policy_id);
        p.workspace_id = opts_.workspace_id;
        p.version = std::to_string(policy_version_);
        p.status = std::string(mock_policy_status);
        p.hash = policy_hash_;
        p.content = policy_content_;
        return p;
    }

    std::size_t streams_of_locked(std::string_view installation_id) const {
        std::size_t n = 0;
        for (const auto& kv : streams_)
            if (kv.second.installation_id == installation_id) ++n;
        return n;
    }

    mock_installation_info info_locked(const installation_rec& in, wall_time_point now) const {
        mock_installation_info i;
        i.installation_id = in.id;
        i.agent_id = in.agent_id;
        i.workspace_id = in.workspace_id;
        i.state = in.revoked                     ? mock_installation_state::revoked
                  : in.stopped                   ? mock_installation_state::stopped
                  : now >= in.lease_expires_at   ? mock_installation_state::unhealthy
                                                 : mock_installation_state::healthy;
        i.last_status = in.last_status;
        i.sequence = in.sequence;
        i.uptime_seconds = in.uptime_seconds;
        i.last_heartbeat_at = in.last_heartbeat;
        i.lease_expires_at = in.lease_expires_at;
        i.platform = in.platform;
        i.capabilities = in.capabilities;
        i.metrics = in.metrics;
        i.sdk = in.sdk;
        i.token_version = in.current.version;
        i.runtime_token_expires_at = in.current.expires_at;
        i.worker = in.worker;
        i.pending_commands = in.commands.size();
        i.open_streams = streams_of_locked(in.id);
        i.revocation = in.revoked;
        i.created_at = in.created_at;
        i.heartbeats = in.heartbeat_count;
        i.recent_heartbeats.assign(in.recent_heartbeats.begin(), in.recent_heartbeats.end());
        return i;
    }

    bool evict_finished_task_locked() {
        for (auto it = task_order_.begin(); it != task_order_.end(); ++it) {
            auto t = tasks_.find(*it);
            if (t == tasks_.end()) continue;
            if (!is_finished(t->second.info.status)) continue;
            tasks_.erase(t);
            task_order_.erase(it);
            return true;
        }
        return false;
    }

    // Tasks chosen for a stream that will not write them go back to the queue, in order.
    void unassign_locked(stream_rec& s) {
        for (auto it = s.assigned.rbegin(); it != s.assigned.rend(); ++it) {
            auto t = tasks_.find(*it);
            if (t == tasks_.end() || t->second.info.status != mock_task_status::queued ||
                t->second.assigned_stream != s.id)
                continue;
            t->second.assigned_stream = 0;
            queue_.push_front(*it);
        }
        s.assigned.clear();
    }

    bool stream_offers_locked(const stream_rec& s, const installation_rec& in, const std::string& capability) const {
        const auto& caps = s.capabilities ? *s.capabilities : in.capabilities;
        return std::find(caps.begin(), caps.end(), capability) != caps.end();
    }

    bool eligible_locked(const stream_rec& s, const task_rec& t) const {
        if (s.closing) return false;
        const auto& in = *s.installation;
        return !in.revoked && in.workspace_id == t.info.workspace_id && stream_offers_locked(s, in, t.info.capability);
    }

    // Chooses a stream for each queued task, round-robin among the eligible ones: the first
    // eligible stream after the one chosen last (in opening order), wrapping around. With
    // most streams eligible, a choice costs O(log n), so that a burst of tasks over
    // thousands of streams is not quadratic.
    void dispatch_locked() {
        if (queue_.empty() || streams_.empty()) return;
        std::deque<std::string> rest;
        for (auto& id : queue_) {
            auto t = tasks_.find(id);
            if (t == tasks_.end() || t->second.info.status != mock_task_status::queued ||
                t->second.assigned_stream != 0)
                continue;
            stream_rec* chosen = nullptr;
            for (auto it = streams_.upper_bound(rr_last_); it != streams_.end() && !chosen; ++it)
                if (eligible_locked(it->second, t->second)) chosen = &it->second;
            for (auto it = streams_.begin(); it != streams_.end() && it->first <= rr_last_ && !chosen; ++it)
                if (eligible_locked(it->second, t->second)) chosen = &it->second;
            if (!chosen) {
                rest.push_back(std::move(id));
                continue;
            }
            rr_last_ = chosen->id;
            t->second.assigned_stream = chosen->id;
            chosen->assigned.push_back(t->first);
            mark_locked(*chosen);
        }
        queue_ = std::move(rest);
    }

    // Requeues deliveries older than the redelivery timeout; true when any was.
    bool tick_locked(steady_time_point steady) {
        // Nothing can be due before the earliest redelivery: skip the scan (a burst of N
        // tasks would otherwise cost N scans of N).
        if (steady < next_redelivery_) return false;
        next_redelivery_ = steady_time_point::max();
        bool changed = false;
        for (auto it = in_flight_.begin(); it != in_flight_.end();) {
            auto t = tasks_.find(*it);
            if (t == tasks_.end() || t->second.info.status != mock_task_status::delivered) {
                it = in_flight_.erase(it);
                continue;
            }
            if (steady - t->second.delivered_at >= opts_.redelivery_timeout) {
                t->second.info.status = mock_task_status::queued;
                t->second.assigned_stream = 0;
                queue_.push_back(t->first);
                it = in_flight_.erase(it);
                changed = true;
                continue;
            }
            next_redelivery_ = std::min(next_redelivery_, t->second.delivered_at + opts_.redelivery_timeout);
            ++it;
        }
        if (changed) dispatch_locked();
        return changed;
    }

    // Remembers to wake stream `s` once the lock is released (see notify()).
    void mark_locked(stream_rec& s) {
        if (!s.wake || s.wake_marked) return;
        s.wake_marked = true;
        wake_ids_.push_back(s.id);
    }

    // Wakes the waiters, then calls the wake functions of the streams marked meanwhile,
    // outside the lock: they schedule work on the HTTP layer's threads, never wait for it.
    void notify() noexcept {
        std::vector<std::function<void()>> calls;
        try {
            std::lock_guard<std::mutex> lk(m_);
            calls.reserve(wake_ids_.size());
            for (auto id : wake_ids_) {
                auto it = streams_.find(id);
                if (it == streams_.end()) continue;
                it->second.wake_marked = false;
                calls.push_back(it->second.wake);
            }
            wake_ids_.clear();
        } catch (...) {
            // Out of memory: the periodic wake_ready_streams() catches up.
        }
        cv_.notify_all();
        for (auto& f : calls) {
            try {
                f();
            } catch (...) {
            }
        }
    }

    // Calls notify() when it goes out of scope: declared before a lock_guard, after it.
    struct notify_on_exit {
        mock_core& core;
        ~notify_on_exit() { core.notify(); }
    };

    // Whether next_frames() on `s` would write or end something now.
    bool stream_ready_locked(const stream_rec& s, steady_time_point steady) const {
        if (shutdown_ || s.closing || !s.outbox.empty() || !s.assigned.empty()) return true;
        if (s.cut_after && s.events_sent >= *s.cut_after) return true;
        if (steady - s.last_write >= opts_.keepalive) return true;
        return !s.installation->commands.empty();
    }

    static void append_frame_head(std::string& out, std::uint64_t id, std::string_view type) {
        out += "id: ";
        out += std::to_string(id);
        out += "\nevent: ";
        out += type;
        out += "\ndata: ";
    }

    static void append_frame(std::string& out, std::uint64_t id, std::string_view type, std::string_view data) {
        append_frame_head(out, id, type);
        out += data;
        out += "\n\n";
    }

    // Serializes `v` at the end of `out`, with no text in between.
    static void append_json(std::string& out, const boost::json::value& v) {
        boost::json::serializer sr;
        sr.reset(&v);
        while (!sr.done()) {
            const std::size_t used = out.size();
            // Grow geometrically (resize() to capacity never reallocates).
            if (out.capacity() - used < 4096) out.reserve((std::max)(out.capacity() * 2, used + 4096));
            out.resize(out.capacity());
            const auto written = sr.read(&out[used], out.size() - used);
            out.resize(used + written.size());
        }
    }

    // The frame of task `t` (protocol::encode of its `task` message, written straight into
    // `out`). The input, which may be large, is lent to the message and given back, never
    // copied: `t` is unchanged afterwards, even when this throws.
    static void append_task_frame(std::string& out, std::uint64_t id, task_rec& t) {
        protocol::task m;
        m.task_id = t.info.task_id;
        m.capability = t.info.capability;
        m.workspace_id = t.info.workspace_id;
        m.trace_id = t.info.trace_id;
        m.requester_agent_id = t.requester_agent_id;
        m.parent_task_id = t.parent_task_id;
        m.workflow_id = t.workflow_id;
        m.deadline_at = t.deadline_at;
        boost::json::value body = protocol::to_json(m); // "input": null, in its place
        boost::json::value& slot = body.get_object()["input"];
        // value::swap of two values on the same memory resource exchanges pointers and
        // cannot throw; on different ones it would copy, so then the input is copied.
        const bool same = *slot.storage() == *t.info.input.storage();
        struct lend {
            boost::json::value* a = nullptr;
            boost::json::value* b = nullptr;
            lend() = default;
            lend(const lend&) = delete;
            lend& operator=(const lend&) = delete;
            ~lend() {
                if (a) a->swap(*b);
            }
        } lent;
        if (same) {
            slot.swap(t.info.input);
            lent.a = &slot;
            lent.b = &t.info.input;
        } else {
            slot = t.info.input;
        }
        append_frame_head(out, id, protocol::event_type::task);
        append_json(out, body);
        out += "\n\n";
    }

    void record_event_locked(installation_rec& in, std::uint64_t id, event_rec ev) {
        in.events[id] = std::move(ev);
        while (in.events.size() > mock_max_events_kept) in.events.erase(in.events.begin());
    }

    void mark_delivered_locked(task_rec& t, const installation_rec& in, std::uint64_t event_id, steady_time_point steady) {
        t.info.status = mock_task_status::delivered;
        t.info.installation_id = in.id;
        ++t.info.delivery_count;
        t.assigned_stream = 0;
        t.delivered_event = event_id;
        t.delivered_at = steady;
        in_flight_.insert(t.info.task_id);
        next_redelivery_ = std::min(next_redelivery_, steady + opts_.redelivery_timeout);
    }

    // Appends the next frame of stream `s`, if any: its outbox (replays, policy, revoked),
    // then the installation's commands, then the tasks chosen for it.
    bool pop_frame_locked(stream_rec& s, steady_time_point steady, std::string& out) {
        auto& in = *s.installation;
        while (!s.outbox.empty()) {
            pending_frame f = std::move(s.outbox.front());
            s.outbox.pop_front();
            if (!f.task_id.empty()) {
                // A task replay is relevant while that delivery is the task's current one.
                auto t = tasks_.find(f.task_id);
                if (t == tasks_.end() || t->second.info.status != mock_task_status::delivered ||
                    t->second.info.installation_id != in.id || t->second.delivered_event != *f.fixed_id)
                    continue;
                mark_delivered_locked(t->second, in, *f.fixed_id, steady);
                append_task_frame(out, *f.fixed_id, t->second);
            } else if (f.fixed_id) {
                append_frame(out, *f.fixed_id, f.type, f.data);
            } else {
                append_frame(out, in.next_event_id++, f.type, f.data);
            }
            ++s.events_sent;
            return true;
        }
        if (s.closing) return false;
        if (!in.commands.empty()) {
            const std::string data = protocol::encode(in.commands.front());
            log_delivery_locked(in.commands.front().id, "task_stream", clock_.wall());
            in.commands.pop_front();
            const auto id = in.next_event_id++;
            record_event_locked(in, id, event_rec{std::string(), data});
            append_frame(out, id, protocol::event_type::command, data);
            ++s.events_sent;
            return true;
        }
        while (!s.assigned.empty()) {
            const std::string task_id = std::move(s.assigned.front());
            s.assigned.pop_front();
            auto t = tasks_.find(task_id);
            if (t == tasks_.end() || t->second.info.status != mock_task_status::queued ||
                t->second.assigned_stream != s.id)
                continue;
            const auto id = in.next_event_id++;
            mark_delivered_locked(t->second, in, id, steady);
            record_event_locked(in, id, event_rec{task_id, std::string()});
            append_task_frame(out, id, t->second);
            ++s.events_sent;
            return true;
        }
        return false;
    }

    mock_backend_options opts_;
    mock_clock_fns clock_;

    mutable std::mutex m_;
    std::condition_variable cv_;
    bool shutdown_ = false;

    std::map<std::string, install_token_rec, std::less<>> install_tokens_;
    std::map<std::string, installation_rec, std::less<>> installations_;
    std::uint64_t installations_created_ = 0;
    std::map<std::string, std::string, std::less<>> token_owner_; // runtime token -> installation
    std::map<std::string, task_rec, std::less<>> tasks_;
    std::vector<std::string> task_order_;
    std::deque<std::string> queue_;    // queued tasks not yet given to a stream
    std::set<std::string> in_flight_;  // delivered tasks, watched for redelivery
    steady_time_point next_redelivery_ = steady_time_point::max(); // no redelivery is due before
    std::map<std::uint64_t, stream_rec> streams_;
    std::vector<std::uint64_t> wake_ids_; // streams to wake once the lock is released
    std::uint64_t next_stream_id_ = 0;
    std::uint64_t rr_last_ = 0; // the stream chosen last (round-robin)
    std::deque<fault_rec> faults_;
    std::map<std::string, mock_command_info, std::less<>> command_log_;
    std::deque<std::string> command_log_order_; // oldest first
    std::uint64_t next_fault_id_ = 0;
    std::map<std::string, std::size_t, std::less<>> request_counts_;
    boost::json::object policy_content_;
    std::string policy_hash_;
    std::int64_t policy_version_ = 1;
};

} // namespace detail
} // namespace testing
} // namespace sekuire

#endif
