// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/auto_probe.hpp>

#include <boost/test/unit_test.hpp>

#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

static_assert(sekuire::is_platform_probe<sekuire::auto_probe>::value, "auto_probe is a PlatformProbe");
static_assert(sekuire::check_platform_probe<sekuire::auto_probe>::value, "auto_probe is a PlatformProbe");
static_assert(sekuire::is_platform_probe<sekuire::testing::fixed_probe>::value, "fixed_probe is a PlatformProbe");
static_assert(sekuire::check_platform_probe<sekuire::testing::fixed_probe>::value, "fixed_probe is a PlatformProbe");
#if SEKUIRE_HAS_CONCEPTS
static_assert(sekuire::platform_probe_policy<sekuire::auto_probe>);
static_assert(sekuire::platform_probe_policy<sekuire::testing::fixed_probe>);
#endif

namespace {

namespace pp = sekuire::protocol::platform;

// Container ids as the runtimes print them: 64 lowercase hex digits.
const std::string id_a = "c451ab51335f321904c15d93c0ba3889ba188fd528cb2a9cb902d831282d12f1";
const std::string id_b = "ca7916ceccfb0ac2daae91e9f8a2eca13b57568a657b839025cd25eea070ef81";
const std::string id_c = "6784eabc5ca9a4a1fa3b8eaa36be9eac47b8e443d910050a13bc51736b956262";
const std::string id_d = "abf50b3e419b7092672a6bc99d9564ca05a2a285a94639deb6efefbcb845b709";
const std::string ecs_task = "7fbbbe4616eba6678e137a776dc15fd8";

// A machine made of maps. file_exists is true for `existing` and for every key of `files`.
// Every name and path the probe asks for is recorded in `asked`.
struct fake_machine {
    std::map<std::string, std::string> env;
    std::map<std::string, std::string> files;
    std::set<std::string> existing;
    std::optional<std::string> hostname = std::string("host-1");
    std::optional<std::int64_t> pid = 321;
    std::string os = "linux";
    std::string arch = "x86_64";
    std::shared_ptr<std::vector<std::string>> asked = std::make_shared<std::vector<std::string>>();

    sekuire::probe_source source() const {
        sekuire::probe_source s;
        s.getenv = [env = env, asked = asked](const char* name) -> std::optional<std::string> {
            asked->push_back(name);
            const auto it = env.find(name);
            if (it == env.end()) return std::nullopt;
            return it->second;
        };
        s.read_file = [files = files, asked = asked](const char* path) -> std::optional<std::string> {
            asked->push_back(path);
            const auto it = files.find(path);
            if (it == files.end()) return std::nullopt;
            return it->second;
        };
        s.file_exists = [files = files, existing = existing, asked = asked](const char* path) {
            asked->push_back(path);
            return existing.count(path) != 0 || files.count(path) != 0;
        };
        s.hostname = [h = hostname] { return h; };
        s.pid = [p = pid] { return p; };
        s.os = os;
        s.arch = arch;
        return s;
    }

    sekuire::platform_info probe() const { return sekuire::auto_probe{source()}.probe(); }

    bool was_asked(std::string_view what) const {
        for (const auto& a : *asked)
            if (a == what) return true;
        return false;
    }
};

fake_machine kubernetes_machine() {
    fake_machine m;
    m.env[pp::env_kubernetes] = "10.96.0.1";
    return m;
}

fake_machine docker_machine() {
    fake_machine m;
    m.existing.insert(pp::file_dockerenv);
    return m;
}

std::string k(std::string_view key) { return std::string(key); }

std::vector<std::string> keys(const sekuire::platform_info& info) {
    std::vector<std::string> out;
    for (const auto& kv : info.attributes) out.push_back(kv.first);
    return out;
}

// The attribute's value, or "<absent>".
std::string attr(const sekuire::platform_info& info, std::string_view key) {
    const std::string* v = info.find(key);
    return v ? *v : std::string("<absent>");
}

bool has(const sekuire::platform_info& info, std::string_view key) { return info.find(key) != nullptr; }

std::string id_or_none(const std::optional<std::string>& id) { return id ? *id : std::string("<none>"); }

std::string cgroup_id(std::string_view text) { return id_or_none(sekuire::detail::container_id_from_cgroup(text)); }

std::string mountinfo_id(std::string_view text) {
    return id_or_none(sekuire::detail::container_id_from_mountinfo(text));
}

// A mountinfo line in the kernel's format with `root` mounted on `mount_point`.
std::string mount_line(const std::string& root, const std::string& mount_point) {
    return "1203 1185 259:2 " + root + " " + mount_point +
           " rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n";
}

} // namespace

BOOST_AUTO_TEST_SUITE(auto_probe)

// ------------------------------------------------------------------------------------
// Kubernetes
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(kubernetes_with_every_value_from_the_environment) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_pod_name] = "agent-5d8f7b-x2kqp";
    m.env[pp::env_hostname] = "hostname-env";
    m.env[pp::env_pod_namespace] = "agents";
    m.env[pp::env_node_name] = "ip-10-0-3-17.ec2.internal";
    m.files[pp::file_service_account_namespace] = "from-file";
    m.existing.insert(pp::file_dockerenv);
    m.hostname = "agent-5d8f7b-x2kqp";

    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_kubernetes));
    const std::vector<std::string> expected_keys{k(pp::key_pod_name), k(pp::key_namespace), k(pp::key_node),
                                                 k(pp::key_hostname), k(pp::key_os),        k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
    BOOST_TEST(attr(info, pp::key_pod_name) == "agent-5d8f7b-x2kqp");
    BOOST_TEST(attr(info, pp::key_namespace) == "agents");
    BOOST_TEST(attr(info, pp::key_node) == "ip-10-0-3-17.ec2.internal");
    BOOST_TEST(attr(info, pp::key_hostname) == "agent-5d8f7b-x2kqp");
    BOOST_TEST(attr(info, pp::key_os) == "linux");
    BOOST_TEST(attr(info, pp::key_arch) == "x86_64");
    BOOST_TEST(info.pid.value_or(-1) == 321);
    // POD_NAMESPACE was there: the namespace file is not read.
    BOOST_TEST(!m.was_asked(pp::file_service_account_namespace));
}

BOOST_AUTO_TEST_CASE(kubernetes_pod_name_falls_back_to_hostname_env) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_hostname] = "hostname-env";
    m.hostname = "from-gethostname";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(attr(info, pp::key_pod_name) == "hostname-env");
    BOOST_TEST(attr(info, pp::key_hostname) == "from-gethostname");
}

BOOST_AUTO_TEST_CASE(kubernetes_pod_name_falls_back_to_the_hostname) {
    fake_machine m = kubernetes_machine();
    m.hostname = "from-gethostname";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(attr(info, pp::key_pod_name) == "from-gethostname");
    BOOST_TEST(attr(info, pp::key_hostname) == "from-gethostname");
}

BOOST_AUTO_TEST_CASE(kubernetes_without_any_name_has_no_pod_name) {
    fake_machine m = kubernetes_machine();
    m.hostname.reset();
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_kubernetes));
    BOOST_TEST(!has(info, pp::key_pod_name));
    BOOST_TEST(!has(info, pp::key_hostname));
    const std::vector<std::string> expected_keys{k(pp::key_os), k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
}

BOOST_AUTO_TEST_CASE(kubernetes_namespace_from_the_service_account_file) {
    fake_machine m = kubernetes_machine();
    m.files[pp::file_service_account_namespace] = "team-a\n";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(attr(info, pp::key_namespace) == "team-a");
    BOOST_TEST(m.was_asked(pp::file_service_account_namespace));

    // Without a trailing newline, as kubelet writes it.
    m.files[pp::file_service_account_namespace] = "kube-system";
    BOOST_TEST(attr(m.probe(), pp::key_namespace) == "kube-system");
}

BOOST_AUTO_TEST_CASE(kubernetes_namespace_absent) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_pod_name] = "p";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(!has(info, pp::key_namespace));
    BOOST_TEST(!has(info, pp::key_node));
    const std::vector<std::string> expected_keys{k(pp::key_pod_name), k(pp::key_hostname), k(pp::key_os),
                                                 k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
}

BOOST_AUTO_TEST_CASE(kubernetes_implausible_namespace_file_is_ignored) {
    const std::vector<std::string> bad{
        "",
        " \n\t\n",
        "team a\n",
        "team\na\n",
        std::string(254, 'n'),
        std::string("team\0a", 6),
        "Team-A",
        "{\"namespace\":\"x\"}",
        "\x7f\x45\x4c\x46\x02\x01\x01",
    };
    for (const auto& content : bad) {
        fake_machine m = kubernetes_machine();
        m.files[pp::file_service_account_namespace] = content;
        BOOST_TEST(!has(m.probe(), pp::key_namespace), "content of size " << content.size());
    }
    // At the limit, and with surrounding whitespace, it is accepted.
    fake_machine m = kubernetes_machine();
    m.files[pp::file_service_account_namespace] = "  " + std::string(253, 'n') + "\r\n";
    BOOST_TEST(attr(m.probe(), pp::key_namespace) == std::string(253, 'n'));
}

BOOST_AUTO_TEST_CASE(kubernetes_implausible_pod_namespace_env_falls_back_to_the_file) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_pod_namespace] = "has space";
    m.files[pp::file_service_account_namespace] = "team-b\n";
    BOOST_TEST(attr(m.probe(), pp::key_namespace) == "team-b");
}

BOOST_AUTO_TEST_CASE(kubernetes_node_present_and_absent) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_node_name] = "worker-3";
    BOOST_TEST(attr(m.probe(), pp::key_node) == "worker-3");
    m.env.erase(pp::env_node_name);
    BOOST_TEST(!has(m.probe(), pp::key_node));
}

BOOST_AUTO_TEST_CASE(kubernetes_wins_over_lambda_and_dockerenv) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_lambda] = "fn";
    m.existing.insert(pp::file_dockerenv);
    m.files[pp::file_cgroup] = "0::/kubepods.slice/cri-containerd-" + id_a + ".scope\n";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_kubernetes));
    BOOST_TEST(!has(info, pp::key_container_id));
    BOOST_TEST(!has(info, pp::key_function_name));
    BOOST_TEST(!m.was_asked(pp::file_cgroup));
}

// ------------------------------------------------------------------------------------
// Lambda
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(lambda_with_region) {
    fake_machine m;
    m.env[pp::env_lambda] = "order-processor";
    m.env[pp::env_aws_region] = "eu-west-1";
    m.hostname = "169.254.10.5";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_lambda));
    const std::vector<std::string> expected_keys{k(pp::key_function_name), k(pp::key_region), k(pp::key_hostname),
                                                 k(pp::key_os), k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
    BOOST_TEST(attr(info, pp::key_function_name) == "order-processor");
    BOOST_TEST(attr(info, pp::key_region) == "eu-west-1");
    BOOST_TEST(info.pid.value_or(-1) == 321);
}

BOOST_AUTO_TEST_CASE(lambda_without_region) {
    fake_machine m;
    m.env[pp::env_lambda] = "order-processor";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_lambda));
    BOOST_TEST(!has(info, pp::key_region));
    const std::vector<std::string> expected_keys{k(pp::key_function_name), k(pp::key_hostname), k(pp::key_os),
                                                 k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
}

BOOST_AUTO_TEST_CASE(lambda_wins_over_dockerenv) {
    fake_machine m = docker_machine();
    m.env[pp::env_lambda] = "fn";
    BOOST_TEST(m.probe().type == k(pp::type_lambda));
    BOOST_TEST(!m.was_asked(pp::file_dockerenv));
}

BOOST_AUTO_TEST_CASE(lambda_with_an_implausible_name_reports_no_function_name) {
    fake_machine m;
    m.env[pp::env_lambda] = "bad\x01name";
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_lambda));
    BOOST_TEST(!has(info, pp::key_function_name));
}

// ------------------------------------------------------------------------------------
// Docker
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(docker_with_a_cgroup_v1_line) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "13:misc:/\n"
                               "12:memory:/docker/" +
                               id_a +
                               "\n"
                               "1:name=systemd:/docker/" +
                               id_a + "\n";
    m.files[pp::file_mountinfo] = mount_line("/var/lib/docker/containers/" + id_b + "/hostname", "/etc/hostname");
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_docker));
    BOOST_TEST(attr(info, pp::key_container_id) == id_a);
    const std::vector<std::string> expected_keys{k(pp::key_container_id), k(pp::key_hostname), k(pp::key_os),
                                                 k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);
    // The cgroup answered: mountinfo is not read.
    BOOST_TEST(!m.was_asked(pp::file_mountinfo));
}

BOOST_AUTO_TEST_CASE(docker_with_a_cgroup_v2_line) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "0::/system.slice/docker-" + id_b + ".scope\n";
    BOOST_TEST(attr(m.probe(), pp::key_container_id) == id_b);
}

BOOST_AUTO_TEST_CASE(docker_with_a_mountinfo_line_when_the_cgroup_has_nothing) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "0::/\n";
    m.files[pp::file_mountinfo] =
        "1185 1077 0:312 / / rw,relatime master:9 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/"
        "QX4B:/var/lib/docker/overlay2/l/ZK2C,upperdir=/var/lib/docker/overlay2/" +
        id_d + "/diff,workdir=/var/lib/docker/overlay2/" + id_d +
        "/work\n"
        "1186 1185 0:315 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n" +
        mount_line("/var/lib/docker/containers/" + id_c + "/resolv.conf", "/etc/resolv.conf") +
        mount_line("/var/lib/docker/containers/" + id_c + "/hostname", "/etc/hostname") +
        mount_line("/var/lib/docker/containers/" + id_c + "/hosts", "/etc/hosts");
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_docker));
    BOOST_TEST(attr(info, pp::key_container_id) == id_c);
}

BOOST_AUTO_TEST_CASE(docker_with_a_mountinfo_line_when_the_cgroup_is_missing) {
    fake_machine m = docker_machine();
    m.files[pp::file_mountinfo] = mount_line("/var/lib/docker/containers/" + id_c + "/hosts", "/etc/hosts");
    BOOST_TEST(attr(m.probe(), pp::key_container_id) == id_c);
    BOOST_TEST(m.was_asked(pp::file_cgroup));
}

BOOST_AUTO_TEST_CASE(docker_with_nothing_found_has_no_container_id) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "0::/\n";
    m.files[pp::file_mountinfo] = "1186 1185 0:315 / /proc rw,nosuid - proc proc rw\n";
    sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_docker));
    BOOST_TEST(!has(info, pp::key_container_id));
    const std::vector<std::string> expected_keys{k(pp::key_hostname), k(pp::key_os), k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);

    // Neither file readable at all.
    fake_machine bare = docker_machine();
    info = bare.probe();
    BOOST_TEST(info.type == k(pp::type_docker));
    BOOST_TEST(!has(info, pp::key_container_id));
    BOOST_TEST(bare.was_asked(pp::file_cgroup));
    BOOST_TEST(bare.was_asked(pp::file_mountinfo));
}

BOOST_AUTO_TEST_CASE(docker_image_precedence) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "0::/system.slice/docker-" + id_b + ".scope\n";
    m.env[pp::env_image] = "ghcr.io/acme/agent:1.4.2";
    m.env[pp::env_image_fallback] = "acme/agent:old";
    sekuire::platform_info info = m.probe();
    BOOST_TEST(attr(info, pp::key_image) == "ghcr.io/acme/agent:1.4.2");
    const std::vector<std::string> expected_keys{k(pp::key_container_id), k(pp::key_image), k(pp::key_hostname),
                                                 k(pp::key_os), k(pp::key_arch)};
    BOOST_TEST(keys(info) == expected_keys);

    m.env.erase(pp::env_image);
    BOOST_TEST(attr(m.probe(), pp::key_image) == "acme/agent:old");

    m.env[pp::env_image] = ""; // empty counts as unset
    BOOST_TEST(attr(m.probe(), pp::key_image) == "acme/agent:old");

    m.env.erase(pp::env_image);
    m.env.erase(pp::env_image_fallback);
    info = m.probe();
    BOOST_TEST(!has(info, pp::key_image));
    BOOST_TEST(has(info, pp::key_container_id));
}

BOOST_AUTO_TEST_CASE(image_is_reported_for_docker_only) {
    fake_machine m;
    m.env[pp::env_image] = "acme/agent:1";
    BOOST_TEST(!has(m.probe(), pp::key_image));
    m.env[pp::env_lambda] = "fn";
    BOOST_TEST(!has(m.probe(), pp::key_image));
}

// ------------------------------------------------------------------------------------
// Bare metal and common values
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bare_metal) {
    fake_machine m;
    m.hostname = "build-07";
    m.os = "darwin";
    m.arch = "aarch64";
    m.pid = 90210;
    const sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_bare_metal));
    const std::vector<std::pair<std::string, std::string>> expected{
        {k(pp::key_hostname), "build-07"}, {k(pp::key_os), "darwin"}, {k(pp::key_arch), "aarch64"}};
    BOOST_TEST((info.attributes == expected));
    BOOST_TEST(info.pid.value_or(-1) == 90210);
    // Nothing to read on bare metal.
    BOOST_TEST(!m.was_asked(pp::file_cgroup));
    BOOST_TEST(!m.was_asked(pp::file_mountinfo));
    BOOST_TEST(!m.was_asked(pp::file_service_account_namespace));
}

BOOST_AUTO_TEST_CASE(unknown_common_values_are_omitted) {
    fake_machine m;
    m.hostname.reset();
    m.pid.reset();
    m.os.clear();
    m.arch.clear();
    sekuire::platform_info info = m.probe();
    BOOST_TEST(info.type == k(pp::type_bare_metal));
    BOOST_TEST(info.attributes.empty());
    BOOST_TEST(!info.pid.has_value());

    // Implausible ones too: a hostname with a control byte, a pid that is not positive.
    m.hostname = std::string("host\x1b[2J");
    m.pid = 0;
    info = m.probe();
    BOOST_TEST(!has(info, pp::key_hostname));
    BOOST_TEST(!info.pid.has_value());
    m.pid = -5;
    BOOST_TEST(!m.probe().pid.has_value());
}

BOOST_AUTO_TEST_CASE(empty_env_values_are_treated_as_unset) {
    fake_machine m;
    m.env[pp::env_kubernetes] = "";
    m.env[pp::env_lambda] = "  ";
    BOOST_TEST(m.probe().type == k(pp::type_bare_metal));

    fake_machine k8s = kubernetes_machine();
    k8s.env[pp::env_pod_name] = "";
    k8s.env[pp::env_hostname] = "\t";
    k8s.env[pp::env_pod_namespace] = "";
    k8s.env[pp::env_node_name] = "";
    k8s.files[pp::file_service_account_namespace] = "ns-from-file";
    k8s.hostname = "real-host";
    const sekuire::platform_info info = k8s.probe();
    BOOST_TEST(info.type == k(pp::type_kubernetes));
    BOOST_TEST(attr(info, pp::key_pod_name) == "real-host");
    BOOST_TEST(attr(info, pp::key_namespace) == "ns-from-file");
    BOOST_TEST(!has(info, pp::key_node));

    fake_machine lambda;
    lambda.env[pp::env_lambda] = "fn";
    lambda.env[pp::env_aws_region] = "";
    BOOST_TEST(!has(lambda.probe(), pp::key_region));
}

BOOST_AUTO_TEST_CASE(env_values_are_trimmed_and_validated) {
    fake_machine m = kubernetes_machine();
    m.env[pp::env_pod_name] = " pod-1\n";
    BOOST_TEST(attr(m.probe(), pp::key_pod_name) == "pod-1");

    // A value with a control byte, a space inside, or over 1024 bytes falls through to the
    // next source.
    for (const std::string& bad : {std::string("pod\nX-Injected: 1"), std::string("two words"),
                                  std::string(1025, 'p'), std::string("caf\xc3\xa9")}) {
        m.env[pp::env_pod_name] = bad;
        m.env[pp::env_hostname] = "hostname-env";
        BOOST_TEST(attr(m.probe(), pp::key_pod_name) == "hostname-env");
    }
    m.env[pp::env_pod_name] = std::string(1024, 'p');
    BOOST_TEST(attr(m.probe(), pp::key_pod_name) == std::string(1024, 'p'));
}

BOOST_AUTO_TEST_CASE(hostile_file_contents_give_no_container_id) {
    const std::string good = "0::/system.slice/docker-" + id_a + ".scope\n";
    const std::vector<std::string> hostile{
        std::string("\0\0\0\0", 4),
        good.substr(0, good.size() - 1),                                // no newline
        std::string("0::/docker/") + id_a + std::string("\0\n", 2),     // a NUL in the line
        good + std::string("\0", 1),                                    // a NUL anywhere refuses all
        std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\n", 17) + good,       // binary, then a good line
        "0::/" + std::string(5000, 'x') + "/docker/" + id_a + "\n",     // a huge line
        std::string(70000, '\n').append(good),                          // beyond the first 64 KiB
        std::string(100000, 'z'),                                       // one huge line, no newline
        "0::/docker/" + std::string(64, 'A') + "\n",                    // uppercase
        "0::/docker/" + id_a.substr(1) + "\n",                          // 63 digits
        "0::/docker/" + id_a + "0\n",                                   // 65 digits
    };
    for (const auto& content : hostile) {
        fake_machine m = docker_machine();
        m.files[pp::file_cgroup] = content;
        m.files[pp::file_mountinfo] = content;
        const sekuire::platform_info info = m.probe();
        BOOST_TEST(info.type == k(pp::type_docker));
        BOOST_TEST(!has(info, pp::key_container_id), "content of size " << content.size());
    }
    // A hostile cgroup file does not stop a good mountinfo.
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = std::string(100000, '\0');
    m.files[pp::file_mountinfo] = mount_line("/var/lib/docker/containers/" + id_c + "/hostname", "/etc/hostname");
    BOOST_TEST(attr(m.probe(), pp::key_container_id) == id_c);
}

BOOST_AUTO_TEST_CASE(source_members_that_are_empty_or_throw_read_as_not_found) {
    // A default probe_source has no members at all.
    sekuire::platform_info info = sekuire::auto_probe{sekuire::probe_source{}}.probe();
    BOOST_TEST(info.type == k(pp::type_bare_metal));
    BOOST_TEST(info.attributes.empty());
    BOOST_TEST(!info.pid.has_value());

    sekuire::probe_source throwing;
    throwing.getenv = [](const char*) -> std::optional<std::string> { throw std::runtime_error("getenv"); };
    throwing.read_file = [](const char*) -> std::optional<std::string> { throw std::runtime_error("read"); };
    throwing.file_exists = [](const char*) -> bool { throw std::runtime_error("exists"); };
    throwing.hostname = []() -> std::optional<std::string> { throw std::runtime_error("hostname"); };
    throwing.pid = []() -> std::optional<std::int64_t> { throw std::runtime_error("pid"); };
    throwing.os = "linux";
    BOOST_CHECK_NO_THROW(info = sekuire::auto_probe{throwing}.probe());
    BOOST_TEST(info.type == k(pp::type_bare_metal));
    const std::vector<std::string> expected_keys{k(pp::key_os)};
    BOOST_TEST(keys(info) == expected_keys);
    BOOST_TEST(!info.pid.has_value());

    // Docker detected, but the files cannot be read.
    fake_machine m = docker_machine();
    sekuire::probe_source s = m.source();
    s.read_file = [](const char*) -> std::optional<std::string> { throw std::runtime_error("read"); };
    BOOST_CHECK_NO_THROW(info = sekuire::auto_probe{s}.probe());
    BOOST_TEST(info.type == k(pp::type_docker));
    BOOST_TEST(!has(info, pp::key_container_id));
}

BOOST_AUTO_TEST_CASE(only_the_protocol_names_are_consulted) {
    const std::set<std::string> allowed{
        pp::env_kubernetes, pp::env_pod_name,       pp::env_hostname,  pp::env_pod_namespace,
        pp::env_node_name,  pp::env_lambda,         pp::env_aws_region, pp::env_image,
        pp::env_image_fallback, pp::file_dockerenv, pp::file_service_account_namespace, pp::file_cgroup,
        pp::file_mountinfo,
    };
    std::vector<fake_machine> machines{fake_machine{}, kubernetes_machine(), docker_machine()};
    machines.emplace_back();
    machines.back().env[pp::env_lambda] = "fn";
    for (const auto& m : machines) {
        m.probe();
        BOOST_TEST(!m.asked->empty());
        for (const auto& name : *m.asked) BOOST_TEST(allowed.count(name) == 1u, name);
    }
}

BOOST_AUTO_TEST_CASE(copies_probe_alike) {
    fake_machine m = docker_machine();
    m.files[pp::file_cgroup] = "0::/system.slice/docker-" + id_b + ".scope\n";
    const sekuire::auto_probe probe{m.source()};
    const sekuire::auto_probe copy = probe; // NOLINT(performance-unnecessary-copy-initialization)
    BOOST_TEST((copy.probe() == probe.probe()));
    BOOST_TEST((probe.probe() == probe.probe()));
}

// ------------------------------------------------------------------------------------
// Container id extraction, on sample lines in the formats the runtimes write
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cgroup_v1_docker) {
    const std::string text = "12:devices:/docker/" + id_a + "\n11:pids:/docker/" + id_a +
                             "\n10:cpu,cpuacct:/docker/" + id_a + "\n1:name=systemd:/docker/" + id_a +
                             "\n0::/system.slice/containerd.service\n";
    BOOST_TEST(cgroup_id(text) == id_a);
}

BOOST_AUTO_TEST_CASE(cgroup_v2_systemd_scopes) {
    BOOST_TEST(cgroup_id("0::/system.slice/docker-" + id_b + ".scope\n") == id_b);
    BOOST_TEST(cgroup_id("0::/kubepods.slice/kubepods-burstable.slice/"
                         "kubepods-burstable-pod0a921bf2_2c0b_4d2a_8d3d_b1d594c18fc6.slice/cri-containerd-" +
                         id_c + ".scope\n") == id_c);
    BOOST_TEST(cgroup_id("0::/kubepods.slice/kubepods-besteffort.slice/"
                         "kubepods-besteffort-pod0a921bf2_2c0b_4d2a_8d3d_b1d594c18fc6.slice/crio-" +
                         id_d + ".scope\n") == id_d);
    BOOST_TEST(cgroup_id("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id_a +
                         ".scope/container\n") == id_a);
    // cgroup namespaces show paths relative to the namespace root.
    BOOST_TEST(cgroup_id("0::/../../kubepods-besteffort-pod1.slice/cri-containerd-" + id_b + ".scope\n") == id_b);
}

BOOST_AUTO_TEST_CASE(cgroup_cgroupfs_leaves) {
    BOOST_TEST(cgroup_id("11:cpuset:/kubepods/besteffort/pod0a921bf2-2c0b-4d2a-8d3d-b1d594c18fc6/" + id_c + "\n") ==
               id_c);
    BOOST_TEST(cgroup_id("9:perf_event:/ecs/" + ecs_task + "/" + id_d + "\n") == id_d);
    BOOST_TEST(cgroup_id("3:memory:/libpod_parent/libpod-" + id_b + "\n") == id_b);
    BOOST_TEST(cgroup_id("0::/docker/" + id_a + "\n") == id_a);
    // Docker in Docker: the innermost container is ours.
    BOOST_TEST(cgroup_id("4:memory:/docker/" + id_a + "/docker/" + id_b + "\n") == id_b);
}

BOOST_AUTO_TEST_CASE(cgroup_without_a_container) {
    BOOST_TEST(cgroup_id("") == "<none>");
    BOOST_TEST(cgroup_id("0::/\n") == "<none>");
    BOOST_TEST(cgroup_id("0::/init.scope\n") == "<none>");
    BOOST_TEST(cgroup_id("0::/user.slice/user-1000.slice/session-3.scope\n") == "<none>");
    BOOST_TEST(cgroup_id("9:name=systemd:/\n8:pids:/\n") == "<none>");
    // The conmon monitor of CRI-O is not the container.
    BOOST_TEST(cgroup_id("0::/system.slice/crio-conmon-" + id_a + ".scope\n") == "<none>");
    // Runtime names that are not on the list, and ids with something after them.
    BOOST_TEST(cgroup_id("0::/system.slice/other-" + id_a + ".scope\n") == "<none>");
    BOOST_TEST(cgroup_id("0::/system.slice/docker-" + id_a + ".scope.bak\n") == "<none>");
    BOOST_TEST(cgroup_id("0::/system.slice/" + id_a + ".scope\n") == "<none>");
    BOOST_TEST(cgroup_id("0::/system.slice/docker-" + id_a + "x\n") == "<none>");
    // Malformed lines.
    BOOST_TEST(cgroup_id("/docker/" + id_a + "\n") == "<none>");
    BOOST_TEST(cgroup_id(":memory:/docker/" + id_a + "\n") == "<none>");
    BOOST_TEST(cgroup_id("0:docker/" + id_a + "\n") == "<none>");
    BOOST_TEST(cgroup_id("0::docker/" + id_a + "\n") == "<none>");
}

BOOST_AUTO_TEST_CASE(cgroup_odd_lines_are_skipped) {
    // An over-long or binary line is skipped; a good line after it still counts.
    const std::string good = "0::/docker/" + id_a + "\n";
    BOOST_TEST(cgroup_id("1:x:/" + std::string(5000, 'a') + "\n" + good) == id_a);
    BOOST_TEST(cgroup_id("1:x:/\x01\x02\n" + good) == id_a);
    BOOST_TEST(cgroup_id("1:x:/docker/" + id_b + "\r\n" + good) == id_a);
    // The last line without its newline may have been cut by the read bound.
    BOOST_TEST(cgroup_id("0::/\n0::/docker/" + id_a) == "<none>");
}

BOOST_AUTO_TEST_CASE(mountinfo_docker_and_podman) {
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + id_a + "/hostname", "/etc/hostname")) ==
               id_a);
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + id_a + "/resolv.conf",
                                       "/etc/resolv.conf")) == id_a);
    BOOST_TEST(mountinfo_id(mount_line("/docker/containers/" + id_b + "/hosts", "/etc/hosts")) == id_b);
    // A data root with a space, escaped as the kernel does.
    BOOST_TEST(mountinfo_id(mount_line("/srv/docker\\040data/containers/" + id_c + "/hostname", "/etc/hostname")) ==
               id_c);
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/containers/storage/overlay-containers/" + id_d +
                                           "/userdata/hostname",
                                       "/etc/hostname")) == id_d);
    BOOST_TEST(mountinfo_id(mount_line("/home/dev/.local/share/containers/storage/overlay-containers/" + id_d +
                                           "/userdata/resolv.conf",
                                       "/etc/resolv.conf")) == id_d);
    // Optional fields (shared:, master:) sit before the separator.
    BOOST_TEST(mountinfo_id("612 593 254:1 /var/lib/docker/containers/" + id_a +
                            "/hostname /etc/hostname rw,relatime shared:1 master:2 - ext4 /dev/vda1 rw\n") == id_a);
}

BOOST_AUTO_TEST_CASE(mountinfo_without_a_container) {
    BOOST_TEST(mountinfo_id("") == "<none>");
    // Layer directories are 64 hex digits too, and are never taken.
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/overlay2/" + id_a + "/merged", "/")) == "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/overlay2/" + id_a + "/hostname", "/etc/hostname")) ==
               "<none>");
    // Other files from the container directory, and the right file at another place.
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + id_a + "/mounts/secrets", "/run/secrets")) ==
               "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + id_a + "/hostname", "/data/hostname")) ==
               "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + id_a + "/hostname", "/etc/hosts")) ==
               "<none>");
    // The directory above the id must be the runtime's.
    BOOST_TEST(mountinfo_id(mount_line("/srv/mycontainers/" + id_a + "/hostname", "/etc/hostname")) == "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/" + id_a + "/hostname", "/etc/hostname")) == "<none>");
    BOOST_TEST(mountinfo_id(mount_line("hostname", "/etc/hostname")) == "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/containers/" + id_a + "/userdata/hostname", "/etc/hostname")) ==
               "<none>");
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/docker/containers/" + std::string(64, 'A') + "/hostname",
                                       "/etc/hostname")) == "<none>");
    // Kubernetes mounts its own hosts file, without a container id.
    BOOST_TEST(mountinfo_id(mount_line("/var/lib/kubelet/pods/0a921bf2-2c0b-4d2a-8d3d-b1d594c18fc6/etc-hosts",
                                       "/etc/hosts")) == "<none>");
    // Not mountinfo: too few fields, or no separator.
    BOOST_TEST(mountinfo_id("/var/lib/docker/containers/" + id_a + "/hostname /etc/hostname\n") == "<none>");
    BOOST_TEST(mountinfo_id("1 2 3:4 /var/lib/docker/containers/" + id_a + "/hostname /etc/hostname rw ext4\n") ==
               "<none>");
    // No newline, or a NUL anywhere.
    const std::string good = mount_line("/var/lib/docker/containers/" + id_a + "/hostname", "/etc/hostname");
    BOOST_TEST(mountinfo_id(good.substr(0, good.size() - 1)) == "<none>");
    BOOST_TEST(mountinfo_id(good + std::string("\0", 1)) == "<none>");
}

BOOST_AUTO_TEST_CASE(container_id_shape) {
    using sekuire::detail::is_container_id;
    BOOST_TEST(is_container_id(id_a));
    BOOST_TEST(is_container_id(std::string(64, '0')));
    BOOST_TEST(!is_container_id(""));
    BOOST_TEST(!is_container_id(id_a.substr(1)));
    BOOST_TEST(!is_container_id(id_a + "a"));
    BOOST_TEST(!is_container_id(std::string(64, 'g')));
    BOOST_TEST(!is_container_id(std::string(63, 'a') + "F"));
}

// ------------------------------------------------------------------------------------
// The real process
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(system_source_on_this_machine) {
    const sekuire::platform_info info = sekuire::auto_probe{}.probe();
    const std::set<std::string> known{k(pp::type_kubernetes), k(pp::type_lambda), k(pp::type_docker),
                                      k(pp::type_bare_metal)};
    BOOST_TEST(known.count(info.type) == 1u, info.type);
    BOOST_TEST(has(info, pp::key_hostname));
    BOOST_TEST(!attr(info, pp::key_hostname).empty());
    BOOST_TEST(info.pid.has_value());
    BOOST_TEST(info.pid.value_or(0) > 0);
    // os and arch come from the compile target, and hostname, os, arch close the list.
    const std::string os = sekuire::detail::probe_target_os();
    const std::string arch = sekuire::detail::probe_target_arch();
    std::vector<std::string> tail{k(pp::key_hostname)};
    if (!os.empty()) {
        BOOST_TEST(attr(info, pp::key_os) == os);
        tail.push_back(k(pp::key_os));
    }
    if (!arch.empty()) {
        BOOST_TEST(attr(info, pp::key_arch) == arch);
        tail.push_back(k(pp::key_arch));
    }
    const std::vector<std::string> names = keys(info);
    BOOST_TEST_REQUIRE(names.size() >= tail.size());
    const std::vector<std::string> last(names.end() - static_cast<std::ptrdiff_t>(tail.size()), names.end());
    BOOST_TEST(last == tail);
}

#if !defined(_WIN32)
BOOST_AUTO_TEST_CASE(system_read_file_is_bounded_and_reads_regular_files_only) {
    const sekuire::probe_source s = sekuire::probe_source::system();
    BOOST_TEST(!s.read_file("/nonexistent/sekuire-probe-test").has_value());
    BOOST_TEST(!s.read_file("/").has_value());        // a directory
    BOOST_TEST(!s.read_file("/dev/zero").has_value()); // a device
    BOOST_TEST(s.file_exists("/"));
    BOOST_TEST(!s.file_exists("/nonexistent/sekuire-probe-test"));
    // This test program is larger than the bound.
    const auto exe = s.read_file("/proc/self/exe");
    if (exe) BOOST_TEST(exe->size() == sekuire::detail::probe_max_file_size);
    BOOST_TEST(!s.getenv("SEKUIRE_PROBE_TEST_SURELY_UNSET_VARIABLE").has_value());
}
#endif

BOOST_AUTO_TEST_SUITE_END()
