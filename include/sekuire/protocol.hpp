// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_PROTOCOL_HPP
#define SEKUIRE_PROTOCOL_HPP

/// @file
/// The whole wire contract of protocol.md in one header: paths, header and field names,
/// environment variable names, and the typed messages with their JSON codec.
///
/// A change of the real backend's contract is a change of this file.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/error.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/time.hpp>
#include <sekuire/version.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {
namespace protocol {

// ---------------------------------------------------------------------------------------
// Section 0: conventions
// ---------------------------------------------------------------------------------------

/// The default base URL.
inline constexpr std::string_view default_api_url = "https://api.sekuire.ai";

/// Header and media type names.
namespace header {
/// `Bearer <runtime_token>` on installation-scoped calls.
inline constexpr std::string_view authorization = "Authorization";
/// The API key of the recovery bootstrap and the revoke call.
inline constexpr std::string_view api_key = "X-API-Key";
/// Always `application/json` on a request with a body.
inline constexpr std::string_view content_type = "Content-Type";
/// `application/json`, or `text/event-stream` on the task stream.
inline constexpr std::string_view accept = "Accept";
/// `sekuire-cpp/<version>` on every request.
inline constexpr std::string_view user_agent = "User-Agent";
/// Seconds or an HTTP date: the least wait before a retry.
inline constexpr std::string_view retry_after = "Retry-After";
/// The last task-stream event id, sent when resuming.
inline constexpr std::string_view last_event_id = "Last-Event-ID";
/// The backend's clock, from which the client learns its skew.
inline constexpr std::string_view date = "Date";
/// Sent as `no-cache` with the task stream request.
inline constexpr std::string_view cache_control = "Cache-Control";
/// What precedes the runtime token in `Authorization`.
inline constexpr std::string_view bearer_prefix = "Bearer ";
/// The media type of the JSON bodies.
inline constexpr std::string_view json_type = "application/json";
/// The media type of the task stream.
inline constexpr std::string_view event_stream_type = "text/event-stream";
} // namespace header

// ---------------------------------------------------------------------------------------
// Section 7: platform metadata
// ---------------------------------------------------------------------------------------

/// Platform types and keys, and the environment variables and files they are read from.
namespace platform {
/// `type` when `KUBERNETES_SERVICE_HOST` is set (checked first).
inline constexpr std::string_view type_kubernetes = "kubernetes";
/// `type` when `AWS_LAMBDA_FUNCTION_NAME` is set.
inline constexpr std::string_view type_lambda = "lambda";
/// `type` when `/.dockerenv` exists.
inline constexpr std::string_view type_docker = "docker";
/// `type` when nothing else matched.
inline constexpr std::string_view type_bare_metal = "bare_metal";

/// Key of the platform type (one of the `type_*` values).
inline constexpr std::string_view key_type = "type";
/// Kubernetes: the pod's name.
inline constexpr std::string_view key_pod_name = "pod_name";
/// Kubernetes: the pod's namespace.
inline constexpr std::string_view key_namespace = "namespace";
/// Kubernetes: the node's name.
inline constexpr std::string_view key_node = "node";
/// Lambda: the function's name.
inline constexpr std::string_view key_function_name = "function_name";
/// Lambda: the AWS region.
inline constexpr std::string_view key_region = "region";
/// Docker: the container id, from the cgroup or mountinfo file.
inline constexpr std::string_view key_container_id = "container_id";
/// Docker: the image, when `SEKUIRE_IMAGE` or `IMAGE` is set.
inline constexpr std::string_view key_image = "image";
/// Every type: the host name, where known.
inline constexpr std::string_view key_hostname = "hostname";
/// Every type: the operating system, where known.
inline constexpr std::string_view key_os = "os";
/// Every type: the CPU architecture, where known.
inline constexpr std::string_view key_arch = "arch";
/// Every type: the process id.
inline constexpr std::string_view key_pid = "pid";

/// Set inside a Kubernetes pod: detects `kubernetes`.
inline constexpr const char* env_kubernetes = "KUBERNETES_SERVICE_HOST";
/// The pod's name (else `HOSTNAME`).
inline constexpr const char* env_pod_name = "POD_NAME";
/// The pod's name when `POD_NAME` is not set.
inline constexpr const char* env_hostname = "HOSTNAME";
/// The pod's namespace (else the service-account file).
inline constexpr const char* env_pod_namespace = "POD_NAMESPACE";
/// The node's name.
inline constexpr const char* env_node_name = "NODE_NAME";
/// Set in AWS Lambda: detects `lambda`, and is the function name.
inline constexpr const char* env_lambda = "AWS_LAMBDA_FUNCTION_NAME";
/// Lambda's region.
inline constexpr const char* env_aws_region = "AWS_REGION";
/// Docker: the image name to report.
inline constexpr const char* env_image = "SEKUIRE_IMAGE";
/// Docker: the image name when `SEKUIRE_IMAGE` is not set.
inline constexpr const char* env_image_fallback = "IMAGE";

/// Exists in a Docker container: detects `docker`.
inline constexpr const char* file_dockerenv = "/.dockerenv";
/// The pod's namespace when `POD_NAMESPACE` is not set.
inline constexpr const char* file_service_account_namespace =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Where the Docker container id is looked for first.
inline constexpr const char* file_cgroup = "/proc/self/cgroup";
/// Where the Docker container id is looked for next.
inline constexpr const char* file_mountinfo = "/proc/self/mountinfo";
} // namespace platform

// ---------------------------------------------------------------------------------------
// Section 8: environment
// ---------------------------------------------------------------------------------------

/// Environment variable names.
namespace env {
/// The API base URL.
inline constexpr const char* api_url = "SEKUIRE_API_URL";
/// The agent's Sekuire id.
inline constexpr const char* agent_id = "SEKUIRE_AGENT_ID";
/// The one-time install token.
inline constexpr const char* install_token = "SEKUIRE_INSTALL_TOKEN";
/// The API key of the recovery bootstrap.
inline constexpr const char* api_key = "SEKUIRE_API_KEY";
/// The workspace id of the recovery bootstrap.
inline constexpr const char* workspace_id = "SEKUIRE_WORKSPACE_ID";
/// Recovery: the installation id.
inline constexpr const char* installation_id = "SEKUIRE_INSTALLATION_ID";
/// Recovery: the refresh token.
inline constexpr const char* refresh_token = "SEKUIRE_REFRESH_TOKEN";
/// Recovery: a runtime token, validated before use.
inline constexpr const char* runtime_token = "SEKUIRE_RUNTIME_TOKEN";
/// The heartbeat interval, in seconds.
inline constexpr const char* heartbeat_interval = "SEKUIRE_HEARTBEAT_INTERVAL";
/// The path of a `file_store` for the credentials.
inline constexpr const char* credentials_file = "SEKUIRE_CREDENTIALS_FILE";
/// Not in Sekuire's documentation: the startup jitter of this SDK, in seconds.
inline constexpr const char* startup_jitter = "SEKUIRE_STARTUP_JITTER";
/// Not in Sekuire's documentation: allows plain http to hosts other than loopback
/// (`transport_options::allow_insecure_http`); 1, true, yes, on or 0, false, no, off.
inline constexpr const char* allow_insecure_http = "SEKUIRE_ALLOW_INSECURE_HTTP";
} // namespace env

/// Error codes carried in error bodies (`{"error": {"code": ...}}`).
namespace error_code_name {
/// 401 on bootstrap: the install token is unknown.
inline constexpr std::string_view invalid_install_token = "invalid_install_token";
/// 409 on bootstrap: the install token was spent already.
inline constexpr std::string_view install_token_used = "install_token_used";
/// 410 on bootstrap: the install token expired.
inline constexpr std::string_view install_token_expired = "install_token_expired";
/// 403 on bootstrap: the token is another agent's.
inline constexpr std::string_view agent_mismatch = "agent_mismatch";
/// 401 on recovery: the API key is unknown.
inline constexpr std::string_view invalid_api_key = "invalid_api_key";
/// 403 on recovery: the key is another workspace's.
inline constexpr std::string_view workspace_mismatch = "workspace_mismatch";
/// 401 on refresh: the refresh token is dead.
inline constexpr std::string_view invalid_refresh_token = "invalid_refresh_token";
/// 403 on any call: the installation is revoked.
inline constexpr std::string_view installation_revoked = "installation_revoked";
/// 409 on completion: counts as success.
inline constexpr std::string_view already_completed = "already_completed";
/// 404 on completion: the result is dropped with a log line.
inline constexpr std::string_view unknown_task = "unknown_task";
/// 401: credentials missing or rejected.
inline constexpr std::string_view unauthorized = "unauthorized";
/// 404: no such resource.
inline constexpr std::string_view not_found = "not_found";
/// 400: the request was malformed.
inline constexpr std::string_view bad_request = "bad_request";
/// 429: too many requests.
inline constexpr std::string_view rate_limited = "rate_limited";
/// 503: the backend cannot serve now.
inline constexpr std::string_view unavailable = "unavailable";
} // namespace error_code_name

/// Timing rules of the protocol.
namespace timing {
/// `next_heartbeat_at` is never honoured sooner than this from now.
inline constexpr std::chrono::seconds min_heartbeat_delay{1};
/// Without `lease_expires_at`, a lease lasts this many heartbeat intervals.
inline constexpr int lease_intervals_when_unknown = 3;
/// The backend adds `refreshed_token` to heartbeats when the token is this close to expiry.
inline constexpr std::chrono::hours server_refresh_window{24 * 7};
/// A client refreshes on its own when no heartbeat refreshed the token this close to expiry.
inline constexpr std::chrono::hours client_refresh_window{24 * 6};
/// The backend sends a comment on the task stream at least this often.
inline constexpr std::chrono::seconds stream_keepalive{15};
/// A client that hears nothing on the task stream for this long reconnects.
inline constexpr std::chrono::seconds stream_idle_timeout{45};
/// Default beacon heartbeat interval.
inline constexpr std::chrono::seconds default_heartbeat_interval{60};
/// `shutdown_timeout_ms` values are clamped to this (a day) when decoded, so that no
/// deadline computed from one can overflow.
inline constexpr std::chrono::milliseconds max_shutdown_timeout{std::chrono::hours(24)};
/// Default worker heartbeat interval.
inline constexpr std::chrono::milliseconds default_worker_heartbeat_interval{10000};
/// Timestamps are read clamped to 1970-01-01T00:00:00Z .. 2200-01-01T00:00:00Z: a "never
/// expires" far in the future (`9999-12-31T23:59:59Z`) or a date before the epoch stays
/// usable, and the difference of any two timestamps stays far from overflowing.
inline constexpr wall_time_point earliest_timestamp{};
/// The latest timestamp read (2200-01-01T00:00:00Z); `earliest_timestamp` is the epoch.
inline constexpr wall_time_point latest_timestamp{std::chrono::seconds(7258118400)};
} // namespace timing

/** How a client reacts to an HTTP status (protocol.md section 0).

    | class               | statuses                                   |
    |---------------------|--------------------------------------------|
    | `ok`                | 2xx                                        |
    | `token_rejected`    | 401 on a Bearer call                       |
    | `revoked`           | 403 with code `installation_revoked`       |
    | `installation_gone` | 404 on an installation path                |
    | `transient`         | 408, 425, 429, 5xx (and 1xx, never valid)  |
    | `permanent`         | other 4xx, and 3xx (redirects are refused) |
*/
enum class status_class { ok, token_rejected, revoked, installation_gone, transient, permanent };

/// Classifies a status. `error_code` is the code of the error body (may be empty).
SEKUIRE_DECL status_class classify_status(int status, std::string_view error_code, bool bearer_call, bool installation_path) noexcept;

/// The `errc` that describes a non-2xx status and its error-body code, for status and logs.
SEKUIRE_DECL error_code status_error(int status, std::string_view code, bool bearer_call, bool installation_path);

// ---------------------------------------------------------------------------------------
// Paths (sections 1 to 6 and 9)
// ---------------------------------------------------------------------------------------

namespace detail {
/// Appends `s` to `out`, percent-encoding everything but RFC 3986 unreserved characters.
SEKUIRE_DECL void percent_encode_to(std::string& out, std::string_view s);

/// Percent-encodes everything but RFC 3986 unreserved characters.
SEKUIRE_DECL std::string percent_encode(std::string_view s);

// Writes the path into `out` (its storage reused; room for the longest encoding is
// reserved first, so one allocation at most).
SEKUIRE_DECL void installation_path_to(std::string& out, std::string_view installation_id, std::string_view tail);

SEKUIRE_DECL std::string installation_path(std::string_view installation_id, std::string_view tail);
} // namespace detail

/// Paths, and the matching route patterns (ECMAScript regular expressions with the ids
/// captured) used by servers such as the mock backend.
namespace path {
/// Section 1: bootstrap with an install token.
inline constexpr std::string_view bootstrap = "/api/v1/installations/bootstrap";
/// Section 2: recovery bootstrap with an API key.
inline constexpr std::string_view recover = "/api/v1/installations/recover";
/// Where every installation-scoped path starts.
inline constexpr std::string_view installations_prefix = "/api/v1/installations/";
/// Where every task path starts.
inline constexpr std::string_view tasks_prefix = "/api/v1/tasks/";

/// Section 3: the refresh path of an installation (its id percent-encoded).
SEKUIRE_DECL std::string refresh(std::string_view installation_id);
/// Section 5: the heartbeat path of an installation (its id percent-encoded).
inline std::string heartbeat(std::string_view installation_id) {
    return detail::installation_path(installation_id, "/heartbeat");
}
/// As `heartbeat(installation_id)`, written into `out` (replacing its contents, reusing its
/// storage: no allocation when it held a path as long before).
inline void heartbeat(std::string_view installation_id, std::string& out) {
    detail::installation_path_to(out, installation_id, "/heartbeat");
}
/// Section 6.3: the worker heartbeat path of an installation (its id percent-encoded).
inline std::string worker_heartbeat(std::string_view installation_id) {
    return detail::installation_path(installation_id, "/worker/heartbeat");
}
/// Section 9: the operator's revoke path of an installation (its id percent-encoded).
SEKUIRE_DECL std::string revoke(std::string_view installation_id);
/// The task stream, with `capabilities=a,b` (each name percent-encoded) when any are given.
SEKUIRE_DECL std::string task_stream(std::string_view installation_id, const std::vector<std::string>& capabilities);
/// Section 6.2: the completion path of a task (its id percent-encoded).
SEKUIRE_DECL std::string complete(std::string_view task_id);
/// Section 6.4: the active policy path of a workspace (its id percent-encoded).
SEKUIRE_DECL std::string active_policy(std::string_view workspace_id);

/// Route of `refresh()`; group 1 is the installation id.
inline constexpr const char* refresh_route = R"(/api/v1/installations/([^/]+)/refresh)";
/// Route of `heartbeat()`; group 1 is the installation id.
inline constexpr const char* heartbeat_route = R"(/api/v1/installations/([^/]+)/heartbeat)";
/// Route of `worker_heartbeat()`; group 1 is the installation id.
inline constexpr const char* worker_heartbeat_route = R"(/api/v1/installations/([^/]+)/worker/heartbeat)";
/// Route of `revoke()`; group 1 is the installation id.
inline constexpr const char* revoke_route = R"(/api/v1/installations/([^/]+)/revoke)";
/// Route of `task_stream()`, without the query; group 1 is the installation id.
inline constexpr const char* task_stream_route = R"(/api/v1/installations/([^/]+)/tasks/stream)";
/// Route of `complete()`; group 1 is the task id.
inline constexpr const char* complete_route = R"(/api/v1/tasks/([^/]+)/complete)";
/// Route of `active_policy()`; group 1 is the workspace id.
inline constexpr const char* active_policy_route = R"(/api/v1/workspaces/([^/]+)/policies/active)";
/// The query parameter of the task stream.
inline constexpr const char* capabilities_param = "capabilities";
} // namespace path

/// Event types of the task stream (section 6.1).
namespace event_type {
/// A task to run (`protocol::task`).
inline constexpr std::string_view task = "task";
/// A control command (`protocol::command`).
inline constexpr std::string_view command = "command";
/// A revocation (`protocol::revocation`): the kill switch.
inline constexpr std::string_view revoked = "revoked";
/// A changed active policy (`protocol::policy_event`).
inline constexpr std::string_view policy = "policy";
} // namespace event_type

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// The `sdk` object sent with bootstrap and heartbeat requests.
struct sdk_info {
    /// `sekuire-cpp`.
    std::string name{sekuire::sdk_name};
    /// This library's version, `SEKUIRE_VERSION_STRING`.
    std::string version{sekuire::sdk_version};
};

/// Section 1: `POST /api/v1/installations/bootstrap`.
struct bootstrap_request {
    /// The one-time install token (`skt_...`).
    std::string install_token;
    /// The agent's Sekuire id.
    std::string agent_id;
    /// The capabilities the agent offers.
    std::vector<std::string> capabilities;
    /// Where the agent runs (section 7).
    platform_info platform;
    /// This SDK's name and version.
    sdk_info sdk;
};

/// Section 2: `POST /api/v1/installations/recover` (API key in `X-API-Key`).
struct recover_request {
    /// The workspace the API key belongs to.
    std::string workspace_id;
    /// The agent's Sekuire id.
    std::string agent_id;
    /// The capabilities the agent offers.
    std::vector<std::string> capabilities;
    /// Where the agent runs (section 7).
    platform_info platform;
    /// This SDK's name and version.
    sdk_info sdk;
};

/// Sections 1 and 2: the 201 response.
struct bootstrap_response {
    /// The new installation's id (`inst_...`).
    std::string installation_id;
    /// The Bearer token of installation-scoped calls.
    std::string runtime_token;
    /// When the runtime token expires (backend's clock).
    wall_time_point runtime_token_expires_at{};
    /// The long-lived token that gets new runtime tokens.
    std::string refresh_token;
    /// When the lease ends unless a heartbeat renews it.
    wall_time_point lease_expires_at{};
    /// The backend's heartbeat interval, when it sets one.
    std::optional<std::int64_t> heartbeat_interval_seconds;
    /// A page of the installation in Sekuire, when given.
    std::optional<std::string> deployment_url;
};

/// Section 3: `POST /api/v1/installations/{id}/refresh`.
struct refresh_request {
    /// The current refresh token.
    std::string refresh_token;
};

/// Section 3: the 200 response; `refresh_token` is present when the backend rotated it.
struct refresh_response {
    /// The new runtime token.
    std::string runtime_token;
    /// When the new runtime token expires.
    wall_time_point expires_at{};
    /// Increases with every new runtime token.
    std::int64_t token_version = 0;
    /// The rotated refresh token; the old one is then dead.
    std::optional<std::string> refresh_token;
};

/// Section 5: heartbeat status.
enum class heartbeat_status { healthy, degraded, paused, draining, stopped };

/// Section 5: the `metrics` object.
struct heartbeat_metrics {
    /// Requests handled since start (a worker counts the tasks that ran: completed or failed).
    std::int64_t requests_handled = 0;
    /// Requests that failed since start (a worker counts its failed and rejected tasks).
    std::int64_t errors = 0;
    /// The mean handling time of the handled requests, in milliseconds.
    std::int64_t avg_latency_ms = 0;
};

/// Section 5: `POST /api/v1/installations/{id}/heartbeat`.
struct heartbeat_request {
    /// `stopped` in the final heartbeat (the shutdown signal).
    heartbeat_status status = heartbeat_status::healthy;
    /// Seconds since the beacon started.
    std::int64_t uptime_seconds = 0;
    /// Counts heartbeats; the first is the registration heartbeat.
    std::int64_t sequence = 0;
    /// Where the agent runs (section 7).
    platform_info platform;
    /// Counters of the agent's work.
    heartbeat_metrics metrics;
    /// The capabilities the agent offers.
    std::vector<std::string> capabilities;
    /// This SDK's name and version.
    sdk_info sdk;
};

/// Command types; `unknown` keeps a type this client does not know (it is ignored).
enum class command_type { pause, resume, terminate, unknown };

/// A control command (heartbeat responses, `command` events).
struct command {
    /// The command's id (`cmd_...`).
    std::string id;
    /// What to do.
    command_type type = command_type::unknown;
    /// The type as sent (useful when `type` is `unknown`).
    std::string type_name;
    /// Why, as the operator wrote it.
    std::string reason;
    /// For `terminate`: the time granted to shut down.
    std::optional<std::int64_t> shutdown_timeout_ms;
};

/// Section 5: `refreshed_token` in a heartbeat response.
struct refreshed_token {
    /// The new runtime token, to swap in and persist at once.
    std::string runtime_token;
    /// When it expires.
    wall_time_point expires_at{};
    /// Increases with every new runtime token.
    std::int64_t token_version = 0;
};

/// The revoked shape (heartbeat responses and `revoked` events).
struct revocation {
    /// Why, as the operator wrote it.
    std::string reason;
    /// The time granted for a graceful shutdown.
    std::optional<std::int64_t> shutdown_timeout_ms;
};

/// Section 5: the 200 response to a heartbeat; `revoked` is set for the revoked shape.
struct heartbeat_response {
    /// The installation the heartbeat was for.
    std::optional<std::string> installation_id;
    /// False when the lease was not renewed (as when revoked).
    std::optional<bool> lease_renewed;
    /// The lease's new expiry.
    std::optional<wall_time_point> lease_expires_at;
    /// When to send the next heartbeat (server-directed pacing).
    std::optional<wall_time_point> next_heartbeat_at;
    /// A control command to obey, if any.
    std::optional<protocol::command> command;
    /// A new runtime token, near the old one's expiry.
    std::optional<protocol::refreshed_token> refreshed_token;
    /// The hash of the workspace's active policy.
    std::optional<std::string> active_policy_hash;
    /// Set when the installation is revoked: shut down.
    std::optional<revocation> revoked;
};

/// Section 6.1: a `task` event.
struct task {
    /// The task's id (alias `id`); a repeated id runs once.
    std::string task_id;
    /// The capability asked for (alias `target_capability`).
    std::string capability;
    /// The handler's input, as sent.
    boost::json::value input;
    /// The workspace the task belongs to.
    std::optional<std::string> workspace_id;
    /// A trace id, passed back with the result.
    std::optional<std::string> trace_id;
    /// The agent that asked for the task, if any.
    std::optional<std::string> requester_agent_id;
    /// The task this one is part of, if any.
    std::optional<std::string> parent_task_id;
    /// The workflow this task is part of, if any.
    std::optional<std::string> workflow_id;
    /// When the result stops being wanted, if ever.
    std::optional<wall_time_point> deadline_at;
};

/// Section 6.1: a `policy` event.
struct policy_event {
    /// The hash of the new active policy.
    std::string active_policy_hash;
};

/// Section 6.2: completion status.
enum class task_status { completed, failed, rejected };

/// Section 6.2: completion error codes.
enum class task_error { handler_error, handler_timeout, invalid_input, no_handler, worker_paused,
                        rate_limited, capability_denied, shutting_down };

/// Section 6.2: the `error` object of a completion.
struct completion_error {
    /// What went wrong.
    task_error code = task_error::handler_error;
    /// A readable description.
    std::string message;
};

/// Section 6.2: `POST /api/v1/tasks/{task_id}/complete`.
struct completion_request {
    /// The reporting installation.
    std::string installation_id;
    /// `completed`, `failed` (handler error) or `rejected` (never ran).
    task_status status = task_status::completed;
    /// The handler's output (null unless `completed`).
    boost::json::value output;
    /// Set for `failed` and `rejected`.
    std::optional<completion_error> error;
    /// How long the handler ran, in milliseconds.
    std::int64_t execution_time_ms = 0;
    /// The task's trace id, when it had one.
    std::optional<std::string> trace_id;
};

/// Section 6.2: the 200 response.
struct completion_response {
    /// True when the backend took the result.
    bool accepted = false;
};

/// Section 6.3: worker state.
enum class worker_state { running, paused, draining };

/// Section 6.3: `POST /api/v1/installations/{id}/worker/heartbeat`.
struct worker_heartbeat_request {
    /// The worker's state.
    worker_state state = worker_state::running;
    /// Tasks running now.
    std::int64_t in_flight = 0;
    /// The capabilities the worker serves.
    std::vector<std::string> capabilities;
    /// Tasks completed since start.
    std::int64_t completed = 0;
    /// Tasks failed or rejected since start.
    std::int64_t failed = 0;
    /// The hash of the policy the worker enforces.
    std::optional<std::string> policy_hash;
};

/// Section 6.3: the 200 response; `revoked` is set for the revoked shape.
struct worker_heartbeat_response {
    /// When it differs from the worker's, the policy is fetched again.
    std::optional<std::string> active_policy_hash;
    /// A control command to obey, if any.
    std::optional<protocol::command> command;
    /// Set when the installation is revoked: shut down.
    std::optional<revocation> revoked;
};

/// Section 6.4: the rate limits of a policy.
struct rate_limits {
    /// Accepted tasks over a sliding minute, when limited.
    std::optional<std::int64_t> max_per_minute;
    /// Accepted tasks over a sliding hour, when limited.
    std::optional<std::int64_t> max_per_hour;
};

/// Section 6.4: `GET /api/v1/workspaces/{workspace_id}/policies/active`.
struct policy_document {
    /// The policy's id (`policy_...`).
    std::string policy_id;
    /// The workspace it governs.
    std::string workspace_id;
    /// Its version, as sent.
    std::string version;
    /// Its status (`active`).
    std::string status;
    /// Its hash, as in `active_policy_hash`.
    std::string hash;
    /// Capability patterns allowed (all when empty); `*` at the end matches a prefix.
    std::vector<std::string> allowed_tools;
    /// Capability patterns denied; they win over `allowed_tools`.
    std::vector<std::string> denied_tools;
    /// The limits on accepted tasks.
    protocol::rate_limits rate_limits;
    /// The whole `content` object, as sent.
    boost::json::object content;
};

/// Section 0: the body of an error response.
struct error_body {
    /// The machine-readable code (see `error_code_name`).
    std::string code;
    /// A readable description.
    std::string message;
};

/// Section 9: `POST /api/v1/installations/{id}/revoke` (API key in `X-API-Key`).
struct revoke_request {
    /// Why; the agent receives it.
    std::string reason;
    /// The time granted to the agent for a graceful shutdown.
    std::optional<std::int64_t> shutdown_timeout_ms;
};

// ---------------------------------------------------------------------------------------
// Enumerations as strings
// ---------------------------------------------------------------------------------------

/// The wire name of a heartbeat status.
inline const char* to_string(heartbeat_status s) noexcept {
    switch (s) {
    case heartbeat_status::healthy: return "healthy";
    case heartbeat_status::degraded: return "degraded";
    case heartbeat_status::paused: return "paused";
    case heartbeat_status::draining: return "draining";
    case heartbeat_status::stopped: return "stopped";
    }
    return "healthy";
}
/// The wire name of a command type (`unknown` for `unknown`).
SEKUIRE_DECL const char* to_string(command_type t) noexcept;
/// The wire name of a completion status.
SEKUIRE_DECL const char* to_string(task_status s) noexcept;
/// The wire name of a completion error code.
SEKUIRE_DECL const char* to_string(task_error e) noexcept;
/// The wire name of a worker state.
SEKUIRE_DECL const char* to_string(worker_state s) noexcept;

namespace detail {
template <class E, std::size_t N>
bool enum_from_string(std::string_view s, E& out, const E (&values)[N]) noexcept {
    for (E v : values)
        if (s == to_string(v)) {
            out = v;
            return true;
        }
    return false;
}
} // namespace detail

/// Reads a heartbeat status by its wire name into `out`; false (and `out` unchanged) for any other
/// text.
inline bool from_string(std::string_view s, heartbeat_status& out) noexcept {
    static constexpr heartbeat_status all[] = {heartbeat_status::healthy, heartbeat_status::degraded,
                                               heartbeat_status::paused, heartbeat_status::draining,
                                               heartbeat_status::stopped};
    return detail::enum_from_string(s, out, all);
}
/// Reads a command type by its wire name into `out`; false (and `out` unchanged) for any other
/// text, `unknown` included.
SEKUIRE_DECL bool from_string(std::string_view s, command_type& out) noexcept;
/// Reads a completion status by its wire name into `out`; false (and `out` unchanged) for any other
/// text.
SEKUIRE_DECL bool from_string(std::string_view s, task_status& out) noexcept;
/// Reads a completion error code by its wire name into `out`; false (and `out` unchanged) for any
/// other text.
SEKUIRE_DECL bool from_string(std::string_view s, task_error& out) noexcept;
/// Reads a worker state by its wire name into `out`; false (and `out` unchanged) for any other
/// text.
SEKUIRE_DECL bool from_string(std::string_view s, worker_state& out) noexcept;

// ---------------------------------------------------------------------------------------
// JSON codec
// ---------------------------------------------------------------------------------------

/** Why a body could not be decoded: the code, and the field it concerns (a dotted path
    such as `refreshed_token.expires_at`; `(body)` when the body is JSON but not an
    object; empty when it is too large or not JSON at all).
*/
struct decode_error {
    /// What is wrong (`errc::malformed_response`, ...).
    error_code code;
    /// The field concerned, as described above.
    std::string field;

    /// A readable message, e.g. `a required field is missing: 'runtime_token'`.
    std::string message() const {
        std::string m = code.message();
        if (!field.empty()) {
            m += ": '";
            m += field;
            m += '\'';
        }
        return m;
    }
};

/// Bounds applied before and during parsing.
struct decode_options {
    /// Larger bodies are refused before parsing (`errc::body_too_large`).
    std::size_t max_body_size = 1 << 20;
    /// Deeper nesting is refused while parsing (`errc::malformed_json`).
    std::size_t max_depth = 32;
};

namespace detail {

namespace json = boost::json;

// Boost.JSON reads a number too large for a double (1e400) as infinity and serializes it
// as `Infinity`, which is not JSON: a kept value with one would not encode again.
SEKUIRE_DECL bool all_numbers_finite(const json::value& root);

/// Reads fields of one JSON object, naming the first failure in a `decode_error`.
class reader {
public:
    reader(const json::object& obj, decode_error& err, std::string prefix = {})
        : obj_(obj), err_(err), prefix_(std::move(prefix)) {}

    bool fail(errc code, std::string_view key) {
        err_.code = code;
        err_.field = prefix_;
        err_.field += key;
        return false;
    }

    const json::value* find(std::string_view key) const {
        auto it = obj_.find(json::string_view(key.data(), key.size()));
        return it == obj_.end() ? nullptr : &it->value();
    }

    /// A nested reader for an object field, its failures prefixed by `key.`.
    reader nested(const json::object& obj, std::string_view key) const {
        std::string p = prefix_;
        p += key;
        p += '.';
        return reader(obj, err_, std::move(p));
    }

    bool required_string(std::string_view key, std::string& out, bool allow_empty = false) {
        const json::value* v = find(key);
        if (!v) return fail(errc::missing_field, key);
        if (!v->is_string()) return fail(errc::wrong_type, key);
        const auto& s = v->get_string();
        if (s.empty() && !allow_empty) return fail(errc::invalid_value, key);
        out.assign(s.data(), s.size());
        return true;
    }

    /// Absent or null leaves `out` as it is.
    bool optional_string(std::string_view key, std::string& out) {
        const json::value* v = find(key);
        if (!v || v->is_null()) return true;
        if (!v->is_string()) return fail(errc::wrong_type, key);
        out.assign(v->get_string().data(), v->get_string().size());
        return true;
    }

    bool optional_string(std::string_view key, std::optional<std::string>& out) {
        const json::value* v = find(key);
        if (!v || v->is_null()) {
            out.reset();
            return true;
        }
        if (!v->is_string()) return fail(errc::wrong_type, key);
        out.emplace(v->get_string().data(), v->get_string().size());
        return true;
    }

    bool int_value(const json::value& v, std::string_view key, std::int64_t min, std::int64_t& out) {
        std::int64_t r = 0;
        if (v.is_int64()) {
            r = v.get_int64();
        } else if (v.is_uint64()) {
            if (v.get_uint64() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                return fail(errc::invalid_value, key);
            r = static_cast<std::int64_t>(v.get_uint64());
        } else if (v.is_double()) {
            const double d = v.get_double();
            // Only integral values that an int64 holds exactly enough.
            if (!(d >= -9.0e18 && d <= 9.0e18) || static_cast<double>(static_cast<std::int64_t>(d)) != d)
                return fail(errc::invalid_value, key);
            r = static_cast<std::int64_t>(d);
        } else {
            return fail(errc::wrong_type, key);
        }
        if (r < min) return fail(errc::invalid_value, key);
        out = r;
        return true;
    }

    bool required_int(std::string_view key, std::int64_t& out, std::int64_t min = 0) {
        const json::value* v = find(key);
        if (!v) return fail(errc::missing_field, key);
        return int_value(*v, key, min, out);
    }

    bool optional_int(std::string_view key, std::int64_t& out, std::int64_t min = 0) {
        const json::value* v = find(key);
        if (!v || v->is_null()) return true;
        return int_value(*v, key, min, out);
    }

    bool optional_int(std::string_view key, std::optional<std::int64_t>& out, std::int64_t min = 0) {
        const json::value* v = find(key);
        if (!v || v->is_null()) {
            out.reset();
            return true;
        }
        std::int64_t r = 0;
        if (!int_value(*v, key, min, r)) return false;
        out = r;
        return true;
    }

    bool optional_bool(std::string_view key, std::optional<bool>& out) {
        const json::value* v = find(key);
        if (!v || v->is_null()) {
            out.reset();
            return true;
        }
        if (!v->is_bool()) return fail(errc::wrong_type, key);
        out = v->get_bool();
        return true;
    }

    bool time_value(const json::value& v, std::string_view key, wall_time_point& out) {
        if (!v.is_string()) return fail(errc::wrong_type, key);
        const auto& s = v.get_string();
        const auto t = parse_rfc3339_clamped(std::string_view(s.data(), s.size()), timing::earliest_timestamp,
                                             timing::latest_timestamp);
        if (!t) return fail(errc::invalid_timestamp, key);
        out = *t;
        return true;
    }

    bool required_time(std::string_view key, wall_time_point& out) {
        const json::value* v = find(key);
        if (!v) return fail(errc::missing_field, key);
        return time_value(*v, key, out);
    }

    bool optional_time(std::string_view key, std::optional<wall_time_point>& out) {
        const json::value* v = find(key);
        if (!v || v->is_null()) {
            out.reset();
            return true;
        }
        wall_time_point t{};
        if (!time_value(*v, key, t)) return false;
        out = t;
        return true;
    }

    bool optional_string_array(std::string_view key, std::vector<std::string>& out) {
        const json::value* v = find(key);
        if (!v || v->is_null()) return true;
        if (!v->is_array()) return fail(errc::wrong_type, key);
        std::vector<std::string> r;
        r.reserve(v->get_array().size());
        for (const auto& e : v->get_array()) {
            if (!e.is_string()) return fail(errc::wrong_type, key);
            r.emplace_back(e.get_string().data(), e.get_string().size());
        }
        out = std::move(r);
        return true;
    }

    /// Sets `out` to the object, or null when absent or null.
    bool optional_object(std::string_view key, const json::object*& out) {
        out = nullptr;
        const json::value* v = find(key);
        if (!v || v->is_null()) return true;
        if (!v->is_object()) return fail(errc::wrong_type, key);
        out = &v->get_object();
        return true;
    }

    bool required_object(std::string_view key, const json::object*& out) {
        const json::value* v = find(key);
        if (!v) return fail(errc::missing_field, key);
        if (!v->is_object()) return fail(errc::wrong_type, key);
        out = &v->get_object();
        return true;
    }

    /// Copies any value (absent: null) into `out`, which owns its memory; moves it instead
    /// when the reader was given the object with `lend()`.
    bool any_value(std::string_view key, json::value& out) {
        const json::value* v = find(key);
        if (v && !all_numbers_finite(*v)) return fail(errc::invalid_value, key);
        if (!v) {
            out = nullptr;
        } else if (lent_) {
            // The object being read is not const (see lend()): the value moves out, leaving
            // null behind; without a copy when both are on the same memory resource.
            out = std::move(const_cast<json::value&>(*v));
        } else {
            out = json::value(*v, json::storage_ptr());
        }
        return true;
    }

    /// Lets `any_value` move values out of the object being read (which must not be const),
    /// instead of copying them.
    void lend() noexcept { lent_ = true; }

    template <class E>
    bool required_enum(std::string_view key, E& out) {
        std::string s;
        if (!required_string(key, s)) return false;
        if (!from_string(s, out)) return fail(errc::invalid_value, key);
        return true;
    }

private:
    const json::object& obj_;
    decode_error& err_;
    std::string prefix_;
    bool lent_ = false;
};

inline json::string_view jsv(std::string_view s) noexcept { return json::string_view(s.data(), s.size()); }

SEKUIRE_DECL json::array to_json_array(const std::vector<std::string>& v);

SEKUIRE_DECL json::value optional_to_json(const std::optional<std::string>& s);

// -- platform and sdk ---------------------------------------------------------------------

SEKUIRE_DECL json::object to_json(const platform_info& p);

SEKUIRE_DECL bool read(reader& r, const json::object& o, platform_info& p);

SEKUIRE_DECL json::object to_json(const sdk_info& s);

SEKUIRE_DECL bool read_platform_and_sdk(reader& r, platform_info& platform, sdk_info& sdk);

// -- sections 1 to 3 ----------------------------------------------------------------------

SEKUIRE_DECL json::object to_json(const bootstrap_request& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, bootstrap_request& m);

SEKUIRE_DECL json::object to_json(const recover_request& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, recover_request& m);

SEKUIRE_DECL json::object to_json(const bootstrap_response& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, bootstrap_response& m);

SEKUIRE_DECL json::object to_json(const refresh_request& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, refresh_request& m);

SEKUIRE_DECL json::object to_json(const refresh_response& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, refresh_response& m);

// -- section 5 ----------------------------------------------------------------------------

inline json::object to_json(const heartbeat_request& m) {
    json::object o;
    o.reserve(7);
    o["status"] = to_string(m.status);
    o["uptime_seconds"] = m.uptime_seconds;
    o["sequence"] = m.sequence;
    o["platform"] = to_json(m.platform);
    json::object metrics;
    metrics["requests_handled"] = m.metrics.requests_handled;
    metrics["errors"] = m.metrics.errors;
    metrics["avg_latency_ms"] = m.metrics.avg_latency_ms;
    o["metrics"] = std::move(metrics);
    o["capabilities"] = to_json_array(m.capabilities);
    o["sdk"] = to_json(m.sdk);
    return o;
}
inline bool read(reader& r, const json::object&, heartbeat_request& m) {
    if (!r.required_enum("status", m.status) || !r.optional_int("uptime_seconds", m.uptime_seconds) ||
        !r.optional_int("sequence", m.sequence) || !r.optional_string_array("capabilities", m.capabilities) ||
        !read_platform_and_sdk(r, m.platform, m.sdk))
        return false;
    const json::object* metrics = nullptr;
    if (!r.optional_object("metrics", metrics)) return false;
    if (metrics) {
        reader mr = r.nested(*metrics, "metrics");
        if (!mr.optional_int("requests_handled", m.metrics.requests_handled) ||
            !mr.optional_int("errors", m.metrics.errors) ||
            !mr.optional_int("avg_latency_ms", m.metrics.avg_latency_ms))
            return false;
    }
    return true;
}

SEKUIRE_DECL json::object to_json(const command& c);
SEKUIRE_DECL void clamp_shutdown_timeout(std::optional<std::int64_t>& ms) noexcept;

SEKUIRE_DECL bool read(reader& r, const json::object&, command& c);

SEKUIRE_DECL json::object to_json(const revocation& v);
SEKUIRE_DECL bool read(reader& r, const json::object&, revocation& v);

/// Reads the revoked shape when `revoked` is true.
SEKUIRE_DECL bool read_revoked(reader& r, const json::object& o, std::optional<revocation>& out);

SEKUIRE_DECL bool read_command_field(reader& r, std::optional<command>& out);

inline json::object to_json(const heartbeat_response& m) {
    if (m.revoked) return to_json(*m.revoked);
    json::object o;
    if (m.installation_id) o["installation_id"] = jsv(*m.installation_id);
    o["lease_renewed"] = m.lease_renewed.value_or(true);
    if (m.lease_expires_at) o["lease_expires_at"] = format_rfc3339(*m.lease_expires_at);
    if (m.next_heartbeat_at) o["next_heartbeat_at"] = format_rfc3339(*m.next_heartbeat_at);
    o["command"] = m.command ? json::value(to_json(*m.command)) : json::value(nullptr);
    if (m.refreshed_token) {
        json::object t;
        t["runtime_token"] = jsv(m.refreshed_token->runtime_token);
        t["expires_at"] = format_rfc3339(m.refreshed_token->expires_at);
        t["token_version"] = m.refreshed_token->token_version;
        o["refreshed_token"] = std::move(t);
    }
    if (m.active_policy_hash) o["active_policy_hash"] = jsv(*m.active_policy_hash);
    return o;
}
inline bool read(reader& r, const json::object& o, heartbeat_response& m) {
    if (!read_revoked(r, o, m.revoked) || !r.optional_string("installation_id", m.installation_id) ||
        !r.optional_bool("lease_renewed", m.lease_renewed) || !r.optional_time("lease_expires_at", m.lease_expires_at) ||
        !r.optional_time("next_heartbeat_at", m.next_heartbeat_at) || !read_command_field(r, m.command) ||
        !r.optional_string("active_policy_hash", m.active_policy_hash))
        return false;
    const json::object* t = nullptr;
    if (!r.optional_object("refreshed_token", t)) return false;
    m.refreshed_token.reset();
    if (t) {
        reader tr = r.nested(*t, "refreshed_token");
        refreshed_token rt;
        if (!tr.required_string("runtime_token", rt.runtime_token) || !tr.required_time("expires_at", rt.expires_at) ||
            !tr.optional_int("token_version", rt.token_version))
            return false;
        m.refreshed_token = std::move(rt);
    }
    return true;
}

// -- section 6 ----------------------------------------------------------------------------

SEKUIRE_DECL json::object to_json(const task& t);
SEKUIRE_DECL bool read(reader& r, const json::object&, task& t);

SEKUIRE_DECL json::object to_json(const policy_event& e);
SEKUIRE_DECL bool read(reader& r, const json::object&, policy_event& e);

SEKUIRE_DECL json::object to_json(const completion_request& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, completion_request& m);

SEKUIRE_DECL json::object to_json(const completion_response& m);
SEKUIRE_DECL bool read(reader& r, const json::object& o, completion_response& m);

inline json::object to_json(const worker_heartbeat_request& m) {
    json::object o;
    o["state"] = to_string(m.state);
    o["in_flight"] = m.in_flight;
    o["capabilities"] = to_json_array(m.capabilities);
    o["completed"] = m.completed;
    o["failed"] = m.failed;
    o["policy_hash"] = optional_to_json(m.policy_hash);
    return o;
}
inline bool read(reader& r, const json::object&, worker_heartbeat_request& m) {
    return r.required_enum("state", m.state) && r.optional_int("in_flight", m.in_flight) &&
           r.optional_string_array("capabilities", m.capabilities) && r.optional_int("completed", m.completed) &&
           r.optional_int("failed", m.failed) && r.optional_string("policy_hash", m.policy_hash);
}

inline json::object to_json(const worker_heartbeat_response& m) {
    if (m.revoked) return to_json(*m.revoked);
    json::object o;
    o["active_policy_hash"] = optional_to_json(m.active_policy_hash);
    o["command"] = m.command ? json::value(to_json(*m.command)) : json::value(nullptr);
    return o;
}
inline bool read(reader& r, const json::object& o, worker_heartbeat_response& m) {
    return read_revoked(r, o, m.revoked) && r.optional_string("active_policy_hash", m.active_policy_hash) &&
           read_command_field(r, m.command);
}

// The typed fields are written into `content` (over what it holds), so that a document
// built from them and one decoded from JSON encode alike.
SEKUIRE_DECL json::object to_json(const policy_document& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, policy_document& m);

SEKUIRE_DECL json::object to_json(const error_body& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, error_body& m);

SEKUIRE_DECL json::object to_json(const revoke_request& m);
SEKUIRE_DECL bool read(reader& r, const json::object&, revoke_request& m);

} // namespace detail

/** Decodes a JSON body into a message.

    Strict and total: the body must be at most `opts.max_body_size` bytes (checked before
    parsing), valid UTF-8 JSON nested at most `opts.max_depth` deep, an object, with every
    required field present and of the right type; unknown fields are ignored and the
    documented aliases accepted. On failure returns false, leaves `out` unchanged, and
    `err` names the code and the field. Never throws.

    @tparam T one of the message types of this header.
*/
template <class T>
bool decode(std::string_view body, T& out, decode_error& err, const decode_options& opts = {}) noexcept {
    namespace json = boost::json;
    err = {};
    if (body.size() > opts.max_body_size) {
        err.code = errc::body_too_large;
        return false;
    }
    try {
        unsigned char buffer[4096];
        json::monotonic_resource mr(buffer, sizeof(buffer));
        json::parse_options po;
        po.max_depth = opts.max_depth;
        boost::system::error_code ec;
        // A task larger than the buffer is parsed on the default resource, and its input
        // moved out of the tree rather than copied (an input may be megabytes).
        const bool lend = std::is_same<T, task>::value && body.size() > sizeof(buffer);
        json::value v = json::parse(json::string_view(body.data(), body.size()), ec,
                                    lend ? json::storage_ptr() : json::storage_ptr(&mr), po);
        if (ec) {
            err.code = errc::malformed_json;
            return false;
        }
        if (!v.is_object()) {
            err.code = errc::wrong_type;
            err.field = "(body)";
            return false;
        }
        T tmp;
        detail::reader r(v.get_object(), err);
        if (lend) r.lend();
        if (!detail::read(r, v.get_object(), tmp)) return false;
        out = std::move(tmp);
        return true;
    } catch (const std::bad_alloc&) {
        err.code = errc::body_too_large;
        return false;
    } catch (...) {
        err.code = errc::malformed_json;
        return false;
    }
}

/// Encodes a message as a JSON object.
template <class T>
boost::json::object to_json(const T& message) {
    return detail::to_json(message);
}

/// Encodes a message as a JSON text.
template <class T>
std::string encode(const T& message) {
    return boost::json::serialize(detail::to_json(message));
}

/** Writes heartbeat bodies straight to text, the same text as `encode(heartbeat_request)`,
    byte for byte. What does not change between heartbeats (the platform, the capabilities,
    the SDK) is encoded once, at construction; each beat writes only its status, uptime,
    sequence and metrics, into one string: no JSON tree, one allocation.
*/
class heartbeat_encoder {
public:
    /// Encodes the parts that stay the same.
    heartbeat_encoder(const platform_info& platform, const std::vector<std::string>& capabilities,
                      const sdk_info& sdk = sdk_info{}) {
        platform_ = ",\"platform\":" + boost::json::serialize(detail::to_json(platform)) + ",\"metrics\":";
        tail_ = ",\"capabilities\":" + boost::json::serialize(detail::to_json_array(capabilities)) +
                ",\"sdk\":" + boost::json::serialize(detail::to_json(sdk)) + "}";
    }

    /// The body of one heartbeat.
    std::string encode(heartbeat_status status, std::int64_t uptime_seconds, std::int64_t sequence,
                       const heartbeat_metrics& metrics) const {
        std::string out;
        encode_to(out, status, uptime_seconds, sequence, metrics);
        return out;
    }

    /// As `encode()`, written into `out` (replacing its contents, reusing its storage: no
    /// allocation when it held a body of this encoder before).
    void encode_to(std::string& out, heartbeat_status status, std::int64_t uptime_seconds, std::int64_t sequence,
                   const heartbeat_metrics& metrics) const {
        const std::string_view st = to_string(status);
        out.clear();
        out.reserve(platform_.size() + tail_.size() + st.size() + 160);
        out += "{\"status\":\"";
        out += st;
        out += "\",\"uptime_seconds\":";
        append(out, uptime_seconds);
        out += ",\"sequence\":";
        append(out, sequence);
        out += platform_;
        out += "{\"requests_handled\":";
        append(out, metrics.requests_handled);
        out += ",\"errors\":";
        append(out, metrics.errors);
        out += ",\"avg_latency_ms\":";
        append(out, metrics.avg_latency_ms);
        out += '}';
        out += tail_;
    }

private:
    static void append(std::string& out, std::int64_t v) {
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }

    std::string platform_; // `,"platform":{...},"metrics":`
    std::string tail_;     // `,"capabilities":[...],"sdk":{...}}`
};

/** Reads the code of an error body leniently: any body, including none, HTML or JSON of
    another shape, gives an empty string rather than an error.
*/
SEKUIRE_DECL std::string error_code_of(std::string_view body);

/** Reads the id of a task event that cannot be decoded as a task (`task_id`, or its alias
    `id`): a non-empty string of at most 256 bytes, else an empty string. With it the
    client reports the task `rejected` with `invalid_input` instead of leaving it unanswered.
*/
SEKUIRE_DECL std::string task_id_of(std::string_view data);

/** The message of an error body, bounded and stripped of control characters, for logs;
    empty when the body has none.
*/
SEKUIRE_DECL std::string error_message_of(std::string_view body);


} // namespace protocol
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/protocol.ipp>
#endif

#endif
