// libFuzzer target for the userlist.txt parser: any bytes give users or a "path:line:
// reason" error, never a crash; a failed parse leaves the map as it was.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pgplex/config/auth_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::unordered_map<std::string, std::string> users{{"before", "x"}};
    std::string error;
    bool ok = pgplex::config::parse_auth_file("userlist.txt", text, users, error);
    if (ok != error.empty()) std::abort();
    if (!ok && (users.size() != 1 || error.rfind("userlist.txt:", 0) != 0)) std::abort();
    for (const auto& [user, secret] : users) {
        if (user.empty() && ok) std::abort();
    }
    return 0;
}
