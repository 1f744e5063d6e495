// SPDX-License-Identifier: MIT
// The seed's "Using Beacon Directly" and "Credential Recovery for Ephemeral Compute": a
// beacon with explicit options bootstraps, shows its status, hands over the credentials to
// persist, stops; then a second beacon restarts from those credentials alone, without
// consuming a new install token.
//
// The credentials are secrets: they are written to a file readable by this user only
// (SEKUIRE_EXAMPLE_CREDENTIALS, default ./sekuire-credentials.env, in the KEY=value form an
// env file wants), and only shown masked. A configuration error ends it with one line and
// exit code 2.
#include <sekuire/beacon.hpp>
#include <sekuire/config_error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <string_view>

namespace {

// An environment variable, or "" when unset.
std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

bool write_secret_file(const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    ::fchmod(fd, 0600);
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    return ::close(fd) == 0 && ok;
}

std::map<std::string, std::string> read_env_file(const std::string& path) {
    std::map<std::string, std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return out;
}

int run() {
    sekuire::beacon_options options;
    options.api_base_url = env("SEKUIRE_API_URL").empty() ? "https://api.sekuire.ai" : env("SEKUIRE_API_URL");
    options.agent_id = env("SEKUIRE_AGENT_ID");
    options.install_token = env("SEKUIRE_INSTALL_TOKEN");
    // Optional fallback when the install token is invalid or expired:
    options.api_key = env("SEKUIRE_API_KEY");
    options.workspace_id = env("SEKUIRE_WORKSPACE_ID");
    options.heartbeat_interval = std::chrono::seconds(60);
    options.capabilities = {"summarize", "classify"};
    options.on_status_change = [](const sekuire::beacon_status& s) {
        std::cout << "status: " << sekuire::to_string(s) << std::endl;
    };

    const std::string file = env("SEKUIRE_EXAMPLE_CREDENTIALS").empty() ? "sekuire-credentials.env"
                                                                        : env("SEKUIRE_EXAMPLE_CREDENTIALS");
    std::string installation_id;
    {
        sekuire::beacon beacon{options};
        beacon.start();
        std::cout << "first run: " << sekuire::to_string(beacon.get_status()) << std::endl;
        const auto creds = beacon.get_installation_credentials();
        if (!creds) {
            std::cerr << "no installation: " << beacon.get_status().last_error << std::endl;
            return 1;
        }
        installation_id = creds->installation_id;
        const std::string text = "SEKUIRE_INSTALLATION_ID=" + creds->installation_id + "\n" +
                                 "SEKUIRE_REFRESH_TOKEN=" + creds->refresh_token + "\n" +
                                 "SEKUIRE_RUNTIME_TOKEN=" + creds->runtime_token + "\n"; // optional
        if (!write_secret_file(file, text)) {
            std::cerr << "cannot write " << file << std::endl;
            return 1;
        }
        std::cout << "credentials to persist written to " << file << ":\n"
                  << "  SEKUIRE_INSTALLATION_ID=" << creds->installation_id << "\n"
                  << "  SEKUIRE_REFRESH_TOKEN=" << sekuire::mask_token(creds->refresh_token) << "\n"
                  << "  SEKUIRE_RUNTIME_TOKEN=" << sekuire::mask_token(creds->runtime_token) << std::endl;
        beacon.stop();
    }

    // A restart on ephemeral compute: only the persisted credentials, no install token.
    auto saved = read_env_file(file);
    sekuire::beacon_options again = options;
    again.install_token.clear();
    again.installation_id = saved["SEKUIRE_INSTALLATION_ID"];
    again.refresh_token = saved["SEKUIRE_REFRESH_TOKEN"];
    again.runtime_token = saved["SEKUIRE_RUNTIME_TOKEN"];
    again.recovered_from_env = true;
    sekuire::beacon beacon{again};
    beacon.start();
    const auto s = beacon.get_status();
    std::cout << "restarted: " << sekuire::to_string(s) << std::endl;
    const bool same = s.installation_id == installation_id && beacon.is_connected();
    std::cout << (same ? "recovered the same installation without a new install token" : "recovery failed")
              << std::endl;
    beacon.stop();
    return same ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        const std::string_view arg = argv[1];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: beacon_direct\n\n"
                         "The seed's \"Using Beacon Directly\" and credential recovery: a beacon bootstraps,\n"
                         "its credentials are saved (0600, SEKUIRE_EXAMPLE_CREDENTIALS, default\n"
                         "./sekuire-credentials.env), and a second beacon recovers from them alone.\n"
                         "Environment: SEKUIRE_API_URL, SEKUIRE_AGENT_ID, SEKUIRE_INSTALL_TOKEN,\n"
                         "SEKUIRE_API_KEY and SEKUIRE_WORKSPACE_ID (optional fallback).\n"
                         "Exit status: 0 when the same installation was recovered; 2 for a configuration\n"
                         "error; 1 otherwise.\n";
            return 0;
        }
        std::cerr << "beacon_direct: unknown argument '" << arg << "'; try 'beacon_direct --help'\n";
        return 2;
    }
    try {
        return run();
    } catch (const std::exception& e) {
        return sekuire::report_error("beacon_direct", e); // one line; 2 for a configuration error
    }
}
