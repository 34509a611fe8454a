// SCRAM-SHA-256: RFC 7677's example exchange reproduced byte for byte, secrets exactly as
// PostgreSQL writes them (the one below was made by PostgreSQL 15 for the password
// "correct horse"), both halves of pgplex talking to each other with a password and with
// keys, and every kind of malformed message refused with a reason.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>

#include "pgplex/tls/scram.h"

using pgplex::tls::scram::base64_decode;
using pgplex::tls::scram::base64_encode;
using pgplex::tls::scram::ClientExchange;
using pgplex::tls::scram::Key;
using pgplex::tls::scram::Secret;
using pgplex::tls::scram::ServerExchange;
namespace scram = pgplex::tls::scram;

namespace {

// RFC 7677 section 3.
constexpr const char* rfc_client_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// CREATE ROLE alice PASSWORD 'correct horse' on PostgreSQL 15; pg_authid.rolpassword.
constexpr const char* postgres_secret =
    "SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==$X0HFWsITk7XQUUte4Nn2CICeo0ekIwKqSyyKacCi95g=:"
    "FlV5zPoYmFY314qfgLe5Wl2/yL/z6x7VDUfY85fr2HI=";

Secret rfc_secret() {
    std::string salt;
    cr_assert(base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", salt));
    return scram::make_secret("pencil", salt, 4096);
}

Secret parsed(const char* text) {
    Secret secret;
    cr_assert(scram::parse_secret(text, secret), "cannot parse %s", text);
    return secret;
}

// Runs a whole exchange; returns the reason of the first step that failed, or "".
std::string exchange(ServerExchange& server, ClientExchange& client) {
    std::string server_first, client_final, server_final, reason;
    if (!server.handle_client_first(client.client_first(), server_first, reason)) return reason;
    if (!client.handle_server_first(server_first, client_final, reason)) return reason;
    if (!server.handle_client_final(client_final, server_final, reason)) return reason;
    if (!client.handle_server_final(server_final, reason)) return reason;
    return "";
}

// A server exchange that has answered a well-formed client-first-message.
ServerExchange started_server(const char* client_first = "n,,n=,r=clientnonce") {
    ServerExchange server(parsed(postgres_secret));
    std::string server_first, reason;
    cr_assert(server.handle_client_first(client_first, server_first, reason), "%s", reason.c_str());
    return server;
}

std::string client_first_refusal(const char* message) {
    ServerExchange server(parsed(postgres_secret));
    std::string server_first, reason;
    cr_assert_not(server.handle_client_first(message, server_first, reason), "accepted %s",
                  message);
    cr_assert_not(reason.empty());
    return reason;
}

std::string client_final_refusal(const std::string& message) {
    scram::set_nonce_for_test("servernonce");
    ServerExchange server = started_server();
    scram::set_nonce_for_test("");
    std::string server_final, reason;
    cr_assert_not(server.handle_client_final(message, server_final, reason), "accepted %s",
                  message.c_str());
    cr_assert_not(server.proof_was_wrong());
    return reason;
}

std::string server_first_refusal(const char* message) {
    scram::set_nonce_for_test("clientnonce");
    ClientExchange client = ClientExchange::with_keys(Key{}, Key{});
    client.client_first();
    scram::set_nonce_for_test("");
    std::string client_final, reason;
    cr_assert_not(client.handle_server_first(message, client_final, reason), "accepted %s",
                  message);
    cr_assert_not(reason.empty());
    return reason;
}

bool contains(const std::string& text, const char* part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

Test(scram, rfc7677_example_is_reproduced_by_both_sides) {
    scram::set_nonce_for_test(rfc_client_nonce, "user");
    ClientExchange client = ClientExchange::with_password("pencil");
    std::string client_first = client.client_first();
    assert_text(client_first, rfc_client_first);

    scram::set_nonce_for_test(rfc_server_nonce);
    ServerExchange server(rfc_secret());
    std::string server_first, client_final, server_final, reason;
    cr_assert(server.handle_client_first(client_first, server_first, reason), "%s", reason.c_str());
    scram::set_nonce_for_test("");
    assert_text(server_first, rfc_server_first);

    cr_assert(client.handle_server_first(server_first, client_final, reason), "%s", reason.c_str());
    assert_text(client_final, rfc_client_final);
    cr_assert(server.handle_client_final(client_final, server_final, reason), "%s", reason.c_str());
    assert_text(server_final, rfc_server_final);
    cr_assert(client.handle_server_final(server_final, reason), "%s", reason.c_str());
}

Test(scram, server_recovers_the_client_key_from_the_rfc7677_proof) {
    scram::set_nonce_for_test(rfc_server_nonce);
    Secret secret = rfc_secret();
    ServerExchange server(secret);
    std::string server_first, server_final, reason;
    cr_assert(server.handle_client_first(rfc_client_first, server_first, reason));
    scram::set_nonce_for_test("");
    cr_assert(server.handle_client_final(rfc_client_final, server_final, reason), "%s",
              reason.c_str());

    // A client holding only that ClientKey (and the ServerKey) logs in again.
    ServerExchange again(secret);
    ClientExchange client = ClientExchange::with_keys(server.client_key(), secret.server_key);
    assert_text(exchange(again, client), "");
}

Test(scram, make_secret_matches_the_secret_postgresql_stores) {
    Secret from_postgres = parsed(postgres_secret);
    Secret made = scram::make_secret("correct horse", from_postgres.salt, 4096);
    assert_text(scram::format_secret(made), postgres_secret);
}

Test(scram, secret_survives_parse_then_format_unchanged) {
    Secret secret = parsed(postgres_secret);
    cr_assert_eq(secret.iterations, 4096);
    cr_assert_eq(secret.salt.size(), 16u);
    assert_text(scram::format_secret(secret), postgres_secret);
    cr_assert(scram::is_secret(postgres_secret));
    cr_assert_not(scram::is_secret("md53175bce1d3201d16594cebf9d7eb3f9d"));
}

Test(scram, postgresql_secret_accepts_the_right_password) {
    ServerExchange server(parsed(postgres_secret));
    ClientExchange client = ClientExchange::with_password("correct horse");
    assert_text(exchange(server, client), "");
    cr_assert_not(server.proof_was_wrong());
}

Test(scram, postgresql_secret_rejects_a_wrong_password) {
    ServerExchange server(parsed(postgres_secret));
    ClientExchange client = ClientExchange::with_password("correct horse battery");
    assert_text(exchange(server, client), "password authentication failed");
    cr_assert(server.proof_was_wrong());
}

Test(scram, client_and_server_agree_with_a_plain_password_secret) {
    Secret secret = scram::make_secret("s3cr3t", "0123456789abcdef", 1000);
    ServerExchange server(secret);
    ClientExchange client = ClientExchange::with_password("s3cr3t");
    assert_text(exchange(server, client), "");
}

Test(scram, client_with_keys_logs_in_with_a_key_recovered_from_a_password_login) {
    Secret secret = parsed(postgres_secret);
    ServerExchange first(secret);
    ClientExchange with_password = ClientExchange::with_password("correct horse");
    assert_text(exchange(first, with_password), "");

    ServerExchange second(secret);
    ClientExchange with_keys = ClientExchange::with_keys(first.client_key(), secret.server_key);
    assert_text(exchange(second, with_keys), "");
}

Test(scram, client_with_keys_refuses_a_server_that_does_not_know_the_server_key) {
    Secret secret = parsed(postgres_secret);
    ServerExchange first(secret);
    ClientExchange with_password = ClientExchange::with_password("correct horse");
    assert_text(exchange(first, with_password), "");

    Secret impostor = secret;
    impostor.server_key[0] ^= 1;
    ServerExchange second(impostor);
    ClientExchange with_keys = ClientExchange::with_keys(first.client_key(), secret.server_key);
    cr_assert(contains(exchange(second, with_keys), "server signature"));
}

// tls-server-end-point data as both ends of one TLS connection would see it.
const std::string end_point(32, '\x42');

Test(scram, client_bound_to_the_end_point_logs_in_with_scram_sha_256_plus) {
    Secret secret = parsed(postgres_secret);
    ServerExchange server(secret);
    server.offer_channel_binding(end_point);
    server.choose_plus(true);
    ClientExchange client = ClientExchange::with_password("correct horse");
    client.bind(scram::Binding::EndPoint, end_point);
    cr_assert_str_eq(client.mechanism(), "SCRAM-SHA-256-PLUS");
    cr_assert_not(client.finished());
    assert_text(exchange(server, client), "");
    cr_assert(client.finished());
}

Test(scram, client_bound_with_keys_logs_in_with_scram_sha_256_plus) {
    Secret secret = parsed(postgres_secret);
    ServerExchange first(secret);
    ClientExchange with_password = ClientExchange::with_password("correct horse");
    assert_text(exchange(first, with_password), "");

    ServerExchange second(secret);
    second.offer_channel_binding(end_point);
    second.choose_plus(true);
    ClientExchange with_keys = ClientExchange::with_keys(first.client_key(), secret.server_key);
    with_keys.bind(scram::Binding::EndPoint, end_point);
    assert_text(exchange(second, with_keys), "");
}

Test(scram, client_bound_to_another_certificate_is_refused_by_the_server) {
    // A man in the middle with its own certificate relays the exchange: the hashes differ.
    ServerExchange server(parsed(postgres_secret));
    server.offer_channel_binding(end_point);
    server.choose_plus(true);
    ClientExchange client = ClientExchange::with_password("correct horse");
    client.bind(scram::Binding::EndPoint, std::string(32, '\x43'));
    std::string reason = exchange(server, client);
    cr_assert(contains(reason, "channel binding"), "%s", reason.c_str());
    cr_assert_not(client.finished());
}

Test(scram, client_gs2_header_and_c_attribute_follow_the_binding) {
    scram::set_nonce_for_test("clientnonce");
    ClientExchange none = ClientExchange::with_password("x");
    ClientExchange supported = ClientExchange::with_password("x");
    supported.bind(scram::Binding::Supported);
    ClientExchange bound = ClientExchange::with_password("x");
    bound.bind(scram::Binding::EndPoint, "ab");
    assert_text(none.client_first(), "n,,n=,r=clientnonce");
    assert_text(supported.client_first(), "y,,n=,r=clientnonce");
    assert_text(bound.client_first(), "p=tls-server-end-point,,n=,r=clientnonce");
    scram::set_nonce_for_test("");
    const char* server_first = "r=clientnonceserver,s=c2FsdA==,i=1";
    std::string final_message, reason;
    cr_assert(supported.handle_server_first(server_first, final_message, reason));
    cr_assert(final_message.starts_with("c=eSws,"), "%s", final_message.c_str());  // "y,,"
    cr_assert(bound.handle_server_first(server_first, final_message, reason));
    std::string expected = "c=" + base64_encode("p=tls-server-end-point,,ab") + ",";
    cr_assert(final_message.starts_with(expected), "%s", final_message.c_str());
}

Test(scram, a_client_that_could_bind_is_refused_by_a_server_offering_plus) {
    // "y,," while the server offered -PLUS: someone in between removed it from the list.
    ServerExchange server(parsed(postgres_secret));
    server.offer_channel_binding(end_point);
    ClientExchange client = ClientExchange::with_password("correct horse");
    client.bind(scram::Binding::Supported);
    std::string reason = exchange(server, client);
    cr_assert(contains(reason, "negotiation error"), "%s", reason.c_str());
}

Test(scram, nonces_are_24_base64_characters_and_differ_each_time) {
    ClientExchange a = ClientExchange::with_password("x");
    ClientExchange b = ClientExchange::with_password("x");
    std::string first_a = a.client_first(), first_b = b.client_first();
    cr_assert(first_a.starts_with("n,,n=,r="));
    std::string nonce = first_a.substr(8), raw;
    cr_assert_eq(nonce.size(), 24u);
    cr_assert(base64_decode(nonce, raw));
    cr_assert_eq(raw.size(), 18u);
    cr_assert_str_neq(first_a.c_str(), first_b.c_str());
}

Test(scram, server_first_extends_the_client_nonce_and_names_salt_and_iterations) {
    ServerExchange server(parsed(postgres_secret));
    std::string server_first, reason;
    cr_assert(server.handle_client_first("y,,n=alice,r=abc,x=ext", server_first, reason));
    cr_assert(server_first.starts_with("r=abc"));
    cr_assert(contains(server_first, ",s=/YcsYoPFv+gHomyTYw35lw==,i=4096"));
    cr_assert_eq(server_first.size(),
                 std::string("r=abc,s=/YcsYoPFv+gHomyTYw35lw==,i=4096").size() + 24);
}

Test(scram, client_first_with_channel_binding_is_refused_with_a_clear_reason) {
    std::string reason = client_first_refusal("p=tls-server-end-point,,n=,r=abc");
    cr_assert(contains(reason, "channel binding"), "%s", reason.c_str());
}

Test(scram, malformed_client_first_messages_are_refused) {
    cr_assert(contains(client_first_refusal("n,a=bob,n=,r=abc"), "authorization identity"));
    cr_assert(contains(client_first_refusal("m,,n=,r=abc"), "channel-binding flag"));
    cr_assert(contains(client_first_refusal("n,,m=ext,n=,r=abc"), "extension"));
    cr_assert(contains(client_first_refusal("n,,n=,r="), "nonce"));
    cr_assert(contains(client_first_refusal("n,,n=,r=a b"), "nonce"));
    client_first_refusal("");
    client_first_refusal("n");
    client_first_refusal("n,");
    client_first_refusal("n,,");
    client_first_refusal("n,,r=abc");
    client_first_refusal("n,,n=,r=abc,");
    client_first_refusal("n,,n=,r=abc,,x=1");
}

Test(scram, client_final_with_the_wrong_channel_binding_is_refused) {
    std::string reason = client_final_refusal(
        "c=eSws,r=clientnonceservernonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    cr_assert(contains(reason, "channel binding"), "%s", reason.c_str());
}

Test(scram, client_final_with_another_nonce_is_refused) {
    std::string reason = client_final_refusal(
        "c=biws,r=clientnonceOTHER,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    cr_assert(contains(reason, "nonce does not match"), "%s", reason.c_str());
}

Test(scram, malformed_client_final_messages_are_refused) {
    cr_assert(contains(client_final_refusal("c=biws,r=clientnonceservernonce,p=AAAA"), "proof"));
    client_final_refusal("");
    client_final_refusal("c=biws,r=clientnonceservernonce");
    client_final_refusal("r=clientnonceservernonce,c=biws,p=AAAA");
    client_final_refusal(
        "c=biws,r=clientnonceservernonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1");
    client_final_refusal(
        "c=biws,r=clientnonceservernonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ");
    client_final_refusal(
        "c=biws,r=clientnonceservernonce,,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
}

Test(scram, messages_out_of_order_are_refused) {
    ServerExchange server(parsed(postgres_secret));
    std::string out, reason;
    cr_assert_not(server.handle_client_final("c=biws,r=x,p=AAAA", out, reason));
    cr_assert(contains(reason, "unexpected"));

    ServerExchange twice = started_server();
    cr_assert_not(twice.handle_client_first("n,,n=,r=abc", out, reason));
    cr_assert(contains(reason, "unexpected"));

    ClientExchange client = ClientExchange::with_password("x");
    cr_assert_not(client.handle_server_final("v=AAAA", reason));
    cr_assert(contains(reason, "unexpected"));
}

Test(scram, client_refuses_a_server_nonce_that_does_not_extend_its_own) {
    cr_assert(contains(server_first_refusal("r=clientnonce,s=AAAA,i=4096"), "nonce"));
    cr_assert(contains(server_first_refusal("r=othernonceXYZ,s=AAAA,i=4096"), "nonce"));
}

Test(scram, malformed_server_first_messages_are_refused) {
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=AAAA,i=0"), "iteration"));
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=AAAA,i=-1"), "iteration"));
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=AAAA,i=99999999999"), "iteration"));
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=AAAA,i=4096x"), "iteration"));
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=A,i=4096"), "salt"));
    cr_assert(contains(server_first_refusal("r=clientnonceX,s=,i=4096"), "salt"));
    server_first_refusal("r=clientnonceX,s=AAAA,i=4096,x=1");
    server_first_refusal("r=clientnonceX,i=4096,s=AAAA");
    server_first_refusal("");
}

Test(scram, client_reports_an_error_the_server_sends_in_server_final) {
    Secret secret = scram::make_secret("pw", "saltsalt", 16);
    ServerExchange server(secret);
    ClientExchange client = ClientExchange::with_password("pw");
    std::string server_first, client_final, reason;
    cr_assert(server.handle_client_first(client.client_first(), server_first, reason));
    cr_assert(client.handle_server_first(server_first, client_final, reason));
    cr_assert_not(client.handle_server_final("e=invalid-proof", reason));
    cr_assert(contains(reason, "invalid-proof"), "%s", reason.c_str());
}

Test(scram, malformed_secrets_are_not_parsed) {
    Secret secret;
    const char* keys =
        "X0HFWsITk7XQUUte4Nn2CICeo0ekIwKqSyyKacCi95g=:"
        "FlV5zPoYmFY314qfgLe5Wl2/yL/z6x7VDUfY85fr2HI=";
    auto with = [&](const std::string& head) { return scram::parse_secret(head + keys, secret); };
    cr_assert(with("SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(with("SCRAM-SHA-1$4096:/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(with("SCRAM-SHA-256$0:/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(with("SCRAM-SHA-256$-1:/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(with("SCRAM-SHA-256$40x:/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(with("SCRAM-SHA-256$4096:$"));
    cr_assert_not(with("SCRAM-SHA-256$4096:not base64$"));
    cr_assert_not(with("SCRAM-SHA-256$4096/YcsYoPFv+gHomyTYw35lw==$"));
    cr_assert_not(
        scram::parse_secret("SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==$AAAA:AAAA", secret));
    cr_assert_not(scram::parse_secret("SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==", secret));
    cr_assert_not(scram::parse_secret("", secret));
}

Test(scram, base64_encodes_every_tail_length_with_padding) {
    assert_text(base64_encode(""), "");
    assert_text(base64_encode("f"), "Zg==");
    assert_text(base64_encode("fo"), "Zm8=");
    assert_text(base64_encode("foo"), "Zm9v");
    assert_text(base64_encode("foobar"), "Zm9vYmFy");
    assert_text(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
    assert_text(base64_encode("n,,"), "biws");
}

Test(scram, base64_decodes_what_it_encodes) {
    std::string all;
    for (int i = 0; i < 256; i++) all.push_back(char(i));
    for (size_t length = 0; length <= all.size(); length += 37) {
        std::string out;
        cr_assert(base64_decode(base64_encode(all.substr(0, length)), out));
        cr_assert(out == all.substr(0, length));
    }
}

Test(scram, base64_decode_rejects_bad_input) {
    std::string out;
    cr_assert(base64_decode("", out));
    cr_assert(out.empty());
    cr_assert_not(base64_decode("Zg", out));    // no padding
    cr_assert_not(base64_decode("Zg=", out));   // short padding
    cr_assert_not(base64_decode("Z===", out));  // too much padding
    cr_assert_not(base64_decode("====", out));
    cr_assert_not(base64_decode("Zg==Zg==", out));  // padding in the middle
    cr_assert_not(base64_decode("Zm=v", out));
    cr_assert_not(base64_decode("Zm9v YmFy", out));  // whitespace
    cr_assert_not(base64_decode("Zm9v\n", out));
    cr_assert_not(base64_decode("Zm9-", out));  // URL-safe alphabet
    cr_assert_not(base64_decode("Zh==", out));  // non-zero unused bits
    cr_assert_not(base64_decode("Zm9=", out));
    cr_assert_not(base64_decode(std::string("Zm9\0", 4), out));
}
