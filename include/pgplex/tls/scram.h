// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it (protocol-flow.html#SASL),
// both as the server (pgplex authenticating a client) and as the client (pgplex
// authenticating to a node). Both roles bind to the TLS channel (SCRAM-SHA-256-PLUS,
// tls-server-end-point, RFC 5929) when the connection is TLS: the server offers it, the
// client uses it when the node offers it.
//
// These run at login only; they may allocate.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "pgplex/base/base64.h"

namespace pgplex::tls::scram {

inline constexpr int default_iterations = 4096;  // PostgreSQL's scram_iterations default

using Key = std::array<uint8_t, 32>;

// A stored SCRAM secret, as in pg_authid.rolpassword:
// "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
struct Secret {
    int iterations = 0;
    std::string salt;  // raw bytes
    Key stored_key{};
    Key server_key{};
};

bool is_secret(std::string_view text);  // starts with "SCRAM-SHA-256$"
bool parse_secret(std::string_view text, Secret& out);
// Derives a secret from a plain password (SASLprep is applied only to ASCII input, which
// it leaves unchanged; other input is used as is, as PostgreSQL does when SASLprep fails).
Secret make_secret(std::string_view password, std::string_view salt, int iterations);
std::string format_secret(const Secret& secret);
// The ClientKey of a plain password under a secret's salt and iterations: what lets pgplex
// log in to a node with that secret after a client proved the password in clear.
Key client_key_of(std::string_view password, const Secret& secret);

using base::base64_decode;
using base::base64_encode;

// Test only (tests/unit/tls/scram_test.cc replays RFC 7677's example exchange): while set,
// nonces made on this thread are `nonce` instead of random ones, and a ClientExchange names
// `user` in its client-first-message instead of an empty name. Empty strings restore the
// normal behaviour.
void set_nonce_for_test(std::string_view nonce, std::string_view user = {});

// pgplex as the SCRAM server. Usage:
//   ServerExchange exchange(secret);
//   exchange.handle_client_first(SASLInitialResponse data) → server-first-message, or error
//   exchange.handle_client_final(SASLResponse data)        → server-final-message, or error
class ServerExchange {
  public:
    explicit ServerExchange(Secret secret);

    // Over TLS: SCRAM-SHA-256-PLUS is offered, binding to this tls-server-end-point data
    // (tls::Session::server_end_point). Before handle_client_first.
    void offer_channel_binding(std::string server_end_point);
    bool offers_channel_binding() const { return !binding_.empty(); }
    // The mechanism the client chose in its SASLInitialResponse.
    void choose_plus(bool plus) { chose_plus_ = plus; }

    // Returns false with reason on a malformed message.
    bool handle_client_first(std::string_view message, std::string& server_first,
                             std::string& reason);
    // Returns false when the message is malformed or the proof is wrong (reason says which;
    // a wrong proof is reason "password authentication failed").
    bool handle_client_final(std::string_view message, std::string& server_final,
                             std::string& reason);
    bool proof_was_wrong() const { return proof_wrong_; }

    // After a successful exchange: the client's ClientKey, recovered from its proof. It
    // lets pgplex log in to a node holding the same secret without the plain password.
    const Key& client_key() const { return client_key_; }

  private:
    // Where the exchange stands; each handler runs in exactly one step.
    enum class Step : uint8_t {
        AwaitingClientFirst,  // nothing received yet
        AwaitingClientFinal,  // server_first_ sent; gs2_header_, nonce_ hold the client's
        Finished,             // client_final handled (successfully or not); nothing more
    };
    Step step_ = Step::AwaitingClientFirst;
    Secret secret_;
    std::string gs2_header_;  // "n,,", "y,," or "p=tls-server-end-point,,": c= encodes it
    std::string binding_;     // tls-server-end-point data; empty: -PLUS not offered
    bool chose_plus_ = false;
    std::string client_first_bare_;
    std::string server_first_;
    std::string nonce_;  // client nonce + server nonce
    Key client_key_{};
    bool proof_wrong_ = false;
};

// What a SCRAM client says of channel binding in its gs2 header (RFC 5802 6, 7).
enum class Binding : uint8_t {
    None,       // "n,,": the client cannot bind (no TLS, or binding turned off)
    Supported,  // "y,,": it could, but the server offered no SCRAM-SHA-256-PLUS
    EndPoint,   // "p=tls-server-end-point,,": bound to the server certificate's hash
};

// pgplex as the SCRAM client of a node. Either a plain password or a ClientKey (+ the
// ServerKey when known, to verify the server) is enough.
class ClientExchange {
  public:
    static ClientExchange with_password(std::string_view password);
    static ClientExchange with_keys(const Key& client_key, const Key& server_key);

    // Before client_first: how the exchange binds. EndPoint takes the server certificate's
    // tls-server-end-point hash (tls::Session::peer_end_point, not empty) and makes the
    // mechanism SCRAM-SHA-256-PLUS.
    void bind(Binding binding, std::string server_end_point = {});
    Binding binding() const { return binding_; }
    const char* mechanism() const;  // "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS"
    // The SASLInitialResponse payload: "<gs2 header>n=,r=<nonce>".
    std::string client_first();
    // From AuthenticationSASLContinue data; returns the SASLResponse payload.
    bool handle_server_first(std::string_view message, std::string& client_final,
                             std::string& reason);
    // From AuthenticationSASLFinal data: verifies the server signature.
    bool handle_server_final(std::string_view message, std::string& reason);
    // The server proved it knows the secret (and, with EndPoint, that the channel was ours).
    bool finished() const { return finished_; }

  private:
    ClientExchange() = default;
    std::string gs2_header() const;
    Binding binding_ = Binding::None;
    std::string end_point_;  // with EndPoint: the server certificate's hash
    bool finished_ = false;
    std::string password_;
    bool have_keys_ = false;
    Key client_key_{};
    Key server_key_{};
    std::string client_nonce_;
    std::string client_first_bare_;
    std::string expected_server_signature_;  // raw bytes
};

}  // namespace pgplex::tls::scram
