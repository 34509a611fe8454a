// See client/client_admin.h. Simple queries only, as PgBouncer's admin console: each Query is
// answered from the config and topology snapshots the worker holds.
#include "pgplex/client/client_admin.h"

#include <algorithm>
#include <vector>

#include "pgplex/admin/show.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_login.h"
#include "pgplex/client/client_work.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/server/server.h"
#include "pgplex/worker/worker.h"

namespace pgplex::client {

namespace {

using proto::FrontendMessage;
using proto::Severity;

void queue_writer(worker::Worker& worker, Client& client, std::vector<uint8_t>& bytes,
                  uint32_t used) {
    queue(worker, client, bytes.data(), used);
}

}  // namespace

void begin_admin(worker::Worker& worker, Client& client) {
    const config::Config& config = *worker.config;
    const std::string& user = client.session->user;
    if (std::find(config.admin_users.begin(), config.admin_users.end(), user) ==
        config.admin_users.end()) {
        fail(worker, client, CloseReason::LoginFailed, Severity::Fatal,
             sqlstate::insufficient_privilege,
             "user \"" + user + "\" may not use the pgplex management database", "",
             "List the user in admin_users in [pgplex].");
        return;
    }
    std::vector<uint8_t> bytes(1024);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    proto::write_authentication(writer, proto::AuthRequest::Ok);
    static constexpr std::pair<const char*, const char*> parameters[] = {
        {"server_version", "15.0 (pgplex " PGPLEX_VERSION ")"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"},
        {"application_name", ""},
    };
    for (const auto& [name, value] : parameters) proto::write_parameter_status(writer, name, value);
    client.cancel_key = worker.random_u32();
    proto::write_backend_key_data(writer, cancel_pid(worker.index, worker.client_slot(client)),
                                  client.cancel_key);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    queue_writer(worker, client, bytes, writer.size());
    client.login.reset();
    set_state(worker, client, ClientState::Idle);
    log_info("admin: user=%s on the management database (worker %u slot %u)", user.c_str(),
             worker.index, worker.client_slot(client));
}

namespace {

// What every worker last published (worker.h WorkerStats), for SHOW STATE and SHOW MEM.
std::vector<admin::WorkerState> worker_states(const worker::Worker& worker) {
    std::vector<admin::WorkerState> out;
    constexpr auto relaxed = std::memory_order_relaxed;
    for (uint32_t i = 0; worker.shared.stats && i < worker.shared.ring_fds.size(); ++i) {
        const worker::WorkerStats& stats = worker.shared.stats[i];
        if (!stats.published.load(std::memory_order_acquire)) continue;
        admin::WorkerState state;
        state.worker = i;
        for (size_t s = 1; s < stats.clients_in.size(); ++s)  // 0 is Free
            state.clients.emplace_back(to_string(ClientState(s)),
                                       stats.clients_in[s].load(relaxed));
        for (size_t s = 1; s < stats.servers_in.size(); ++s)
            state.servers.emplace_back(server::to_string(server::ServerState(s)),
                                       stats.servers_in[s].load(relaxed));
        state.pinned = stats.pinned.load(relaxed);
        state.ring_in_use = stats.ring_in_use.load(relaxed);
        state.ring_count = stats.ring_count.load(relaxed);
        state.buffer_size = stats.buffer_size.load(relaxed);
        state.out_in_use = stats.out_in_use.load(relaxed);
        state.out_count = stats.out_count.load(relaxed);
        state.chunks_in_use = stats.chunks_in_use.load(relaxed);
        state.chunk_count = stats.chunk_count.load(relaxed);
        state.bytes_queued = stats.bytes_queued.load(relaxed);
        out.push_back(std::move(state));
    }
    return out;
}

}  // namespace

uint32_t admin_consume(worker::Worker& worker, Client& client, const uint8_t* data, uint32_t size) {
    if (size < 5) return 0;
    uint32_t length = proto::read_be32(data + 1);
    if (length < 4 || length > (1u << 20)) {
        fail(worker, client, CloseReason::ProtocolViolation, Severity::Fatal,
             sqlstate::protocol_violation, "invalid message length");
        return size;
    }
    if (size < 1 + length) return 0;
    std::vector<uint8_t> out;
    switch (data[0]) {
        case uint8_t(FrontendMessage::Terminate):
            close(worker, client, CloseReason::ClientTerminated);
            return size;
        case uint8_t(FrontendMessage::Query): {
            std::string_view sql(reinterpret_cast<const char*>(data + 5), length - 4);
            sql = sql.substr(0, sql.find('\0'));
            std::vector<admin::WorkerState> workers = worker_states(worker);
            admin::Context context{*worker.config, worker.topology.get(), worker.now, &workers};
            admin::answer(sql, context, out);
            break;
        }
        case uint8_t(FrontendMessage::Sync): {
            out.resize(512);
            proto::Writer writer(out.data(), uint32_t(out.size()));
            proto::write_error(writer, Severity::Error, sqlstate::feature_not_supported,
                               "the pgplex database takes simple queries only");
            out.resize(writer.size());
            break;
        }
        default:
            return 1 + length;  // the extended protocol's other messages: answered at Sync
    }
    size_t at = out.size();
    out.resize(at + 6);
    proto::Writer writer(out.data() + at, 6);
    proto::write_ready_for_query(writer, proto::TransactionStatus::Idle);
    queue(worker, client, out.data(), uint32_t(out.size()));
    return 1 + length;
}

}  // namespace pgplex::client
