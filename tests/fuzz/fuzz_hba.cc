// libFuzzer target for auth_hba_file (config/hba.h): any text either parses into rules or
// is refused with "hba.conf:LINE: reason"; rules that parse are matched against a few
// peers (IPv4, IPv6, mapped IPv4, unknown address, local, TLS or not). Nothing may crash.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pgplex/config/hba.h"

namespace config = pgplex::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    config::HbaRules rules;
    std::string error;
    if (!config::parse_hba("hba.conf", text, rules, error)) {
        if (!error.starts_with("hba.conf:")) std::abort();
        return 0;
    }
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &v6.sin6_addr);
    sockaddr_in6 v6b{};
    v6b.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &v6b.sin6_addr);
    const sockaddr* addresses[] = {reinterpret_cast<const sockaddr*>(&v4),
                                   reinterpret_cast<const sockaddr*>(&v6),
                                   reinterpret_cast<const sockaddr*>(&v6b), nullptr};
    for (const sockaddr* address : addresses) {
        for (int flags = 0; flags < 4; ++flags) {
            config::HbaPeer peer;
            peer.local = flags & 1;
            peer.tls = flags & 2;
            peer.address = address;
            peer.database = "app";
            peer.user = flags & 1 ? "app" : "alice";
            const config::HbaRule* rule = rules.match(peer);
            if (rule != nullptr && (rule->line == 0 || rule->line > size + 1)) std::abort();
        }
    }
    return 0;
}
