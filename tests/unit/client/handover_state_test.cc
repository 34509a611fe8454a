// A handed-over client's state (client/handover_state.h) decodes to what was encoded, and
// any cut or change of the bytes that breaks the format is refused.
#include <criterion/criterion.h>

#include <memory>
#include <string>
#include <vector>

#include "pgplex/client/handover_state.h"

using pgplex::client::HandedClient;

namespace {

HandedClient sample() {
    HandedClient client;
    client.cluster = "main";
    client.service = "primary";
    client.connected = 123456;
    client.addresses_known = true;
    client.peer[0] = 2;
    client.pid = 1u << 30 | 5;
    client.cancel_key = 0xdeadbeef;
    client.user = "payam";
    client.database = "payam_db";
    client.mode = 1;
    client.startup = {{"application_name", "SET application_name = E'x'", "x", nullptr}};
    client.has_settings = true;
    client.settings = {{"search_path", "SET search_path = a, b", "", nullptr}};
    auto context = std::make_shared<const std::vector<pgplex::pool::Setting>>(client.settings);
    client.sql_prepared = {{"mine", "PREPARE mine AS SELECT 1", "", context}};
    client.secret = "SCRAM-SHA-256$4096:salt$a:b";
    client.scram_keys = true;
    client.scram_client_key[3] = 9;
    client.intent = 2;
    client.ryw_lsn = 0x1234;
    client.statements = {{"s1", std::string("SELECT $1\0\0\1\0\0\0\x17", 15)}};
    client.has_unnamed = true;
    client.unnamed = std::string("SELECT 2\0\0\0", 11);
    client.parses = {{"p1", "body"}};
    client.input = std::string("Q\0\0\0\x0dSELECT 1\0", 14);
    return client;
}

}  // namespace

Test(handover_state, round_trips) {
    HandedClient in = sample();
    std::string bytes = pgplex::client::encode(in);
    HandedClient out;
    cr_assert(pgplex::client::decode(bytes, out));
    cr_assert_eq(pgplex::client::encode(out), bytes);
    cr_assert_eq(out.cluster, "main");
    cr_assert_eq(out.pid, in.pid);
    cr_assert_eq(out.sql_prepared.size(), 1u);
    cr_assert(out.sql_prepared[0].context != nullptr);
    cr_assert_eq(out.sql_prepared[0].context->at(0).sql, "SET search_path = a, b");
    cr_assert_eq(out.statements[0].second, in.statements[0].second);
    cr_assert_eq(out.input, in.input);
    cr_assert_eq(out.parses[0].first, "p1");
}

Test(handover_state, every_truncation_is_refused) {
    std::string bytes = pgplex::client::encode(sample());
    for (size_t size = 0; size < bytes.size(); ++size) {
        HandedClient out;
        cr_assert_not(pgplex::client::decode(bytes.substr(0, size), out), "cut at %zu", size);
    }
    HandedClient out;
    cr_assert_not(pgplex::client::decode(bytes + "x", out), "trailing bytes accepted");
}

Test(handover_state, an_unknown_pool_mode_or_format_is_refused) {
    HandedClient bad = sample();
    bad.mode = 7;
    HandedClient out;
    cr_assert_not(pgplex::client::decode(pgplex::client::encode(bad), out));
    std::string bytes = pgplex::client::encode(sample());
    bytes[0] = 2;  // format 2
    cr_assert_not(pgplex::client::decode(bytes, out));
}
