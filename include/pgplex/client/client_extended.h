// Internal to client/: a pooled client's extended-protocol messages on their way to its
// server, with its named statements renamed to the server's (client_extended.cc).
#pragma once

#include <cstdint>
#include <string_view>

#include "pgplex/client/client.h"
#include "pgplex/proto/frame.h"
#include "pgplex/server/server.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

// A message from the client on its way to its server, and the buffer it arrived in.
struct Outbound {
    worker::Worker& worker;
    Client& client;
    server::Server& server;
    uint32_t buffer;
    const uint8_t* base;

    // Passes one whole message on unchanged: from the buffer when it lies there whole,
    // else copied.
    void pass(uint8_t type, const uint8_t* body, uint32_t size);
    void copy(const uint8_t* data, uint32_t size);
    // Keeps what was sent while a replay is being recorded (server.h, ReplayRecord).
    void record(const uint8_t* data, uint32_t size);
};

// Whether this client's named statements are renamed (transaction or statement pooling
// with max_prepared_statements > 0).
bool renames_statements(const worker::Worker& worker, const Client& client);
// Whether a Bind must be read: it may name one of the client's statements, pgplex's own
// unnamed one or portal, or the client's unnamed one that the server may lack.
bool has_statements(const Client& client);
// Whether an Execute may be of a portal pgplex answers for.
bool has_local_portal(const Client& client);

// The messages a renaming client's handler inspects (Parse up to
// limits::kept_statement_bytes_max, Describe, Close, Query) or cuts the head of (Bind,
// longer Parse).
void on_parse(Outbound& out, const uint8_t* body, uint32_t size);
proto::Fate on_parse_head(Outbound& out, const uint8_t* head, uint32_t head_size,
                          uint32_t body_size);
proto::Fate on_bind_head(Outbound& out, const uint8_t* head, uint32_t head_size,
                         uint32_t body_size);
void on_describe(Outbound& out, const uint8_t* body, uint32_t size);
void on_close(Outbound& out, const uint8_t* body, uint32_t size);
// A Query that is a DEALLOCATE of one of the client's protocol-level statements (drivers
// send one when their statement cache is full): answered by pgplex. False: not one.
bool on_deallocate(Outbound& out, std::string_view query);

// A statement that would create session state, refused (pin_on_session_state = false):
// 0A000 in its place, in order.
void refuse_session_state(Outbound& out, bool query, uint8_t kinds);

void on_execute(Outbound& out, const uint8_t* body, uint32_t size);
void on_sync(Client& client);
// A simple Query from the client: its unnamed statement is gone, as in PostgreSQL
// (protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY: "a simple Query message also destroys the
// unnamed statement"), whether or not the Query reaches a server.
void on_simple_query(worker::Worker& worker, Client& client);

// Between transactions: answers, without a server, a run of Parses of statements a server
// already accepted (and Closes) ended by a Sync, as drivers send to prepare (pgbench and
// psycopg wait for the answer before anything else, so a client that had to wait for a
// server here could hold up the very clients that would free one). Returns the bytes
// answered, 0 when the head of `data` needs a server.
uint32_t answer_between_transactions(worker::Worker& worker, Client& client, const uint8_t* data,
                                     uint32_t size);

// Drops every name the client holds (it is closing).
void drop_statements(worker::Worker& worker, Client& client);

}  // namespace pgplex::client
