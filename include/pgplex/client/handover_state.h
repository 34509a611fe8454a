// What a client takes with it when pgplex hands it to the pgplex taking over (pgplex
// --takeover, client_handover.h): who it is, the session state pgplex keeps for it between
// transactions, its cancel key, and the bytes it sent that the old pgplex read and did not
// process. Encoded with base/codec.h; decode() checks every field (a fuzz target feeds it).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgplex/pool/session_state.h"

namespace pgplex::client {

struct HandedClient {
    // Its listener's role: the main listener (empty) or a service.
    std::string cluster;
    std::string service;
    bool local = false;
    int64_t connected = 0;  // CLOCK_MONOTONIC ms, the same in both processes
    bool addresses_known = false;
    std::array<uint8_t, 28> peer{};  // CompactAddress, as is
    std::array<uint8_t, 28> local_address{};
    uint32_t peer_uid = 0xffffffffu;
    uint32_t pid = 0;  // the BackendKeyData it was given, which its cancels carry
    uint32_t cancel_key = 0;
    std::string user;
    std::string database;
    uint8_t mode = 0;  // config::PoolMode
    std::vector<pool::Setting> startup;
    bool has_settings = false;
    std::vector<pool::Setting> settings;
    std::vector<pool::Setting> sql_prepared;
    uint8_t lost = 0;  // TransactionLost
    std::string lost_where;
    // The secret it logged in with (what the pool's target password came from), and the
    // SCRAM keys it proved at its login (pass-through), if any.
    std::string secret;
    bool scram_keys = false;
    std::array<uint8_t, 32> scram_client_key{};
    std::array<uint8_t, 32> scram_server_key{};
    // A routed client: its intent (route::Intent) and read-your-writes position.
    uint8_t intent = 0;
    uint64_t ryw_lsn = 0;
    std::vector<std::pair<std::string, std::string>> statements;  // name, Parse tail
    bool has_unnamed = false;
    std::string unnamed;  // Parse tail
    // Session pooling: its named protocol-level statements (name, Parse body), given to its
    // next server with its settings (SessionKept).
    std::vector<std::pair<std::string, std::string>> parses;
    std::string input;  // bytes read from it and not processed
};

std::string encode(const HandedClient& client);
// False when the bytes are not a whole, well-formed HandedClient.
bool decode(std::string_view bytes, HandedClient& client);

}  // namespace pgplex::client
