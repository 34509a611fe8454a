// The listener connection of each pool (transaction and statement pooling), and the
// messages between workers about LISTEN channels. pool/notify.h says why it is shaped so.
//
// A pool's listener lives on its home worker, in a server slot like any server of the pool
// (connect, login and close are theirs), but with `listener` set: it holds no place in the
// pool (pool_size does not count it), is never lent, and once logged in is Listening. Its
// Hub keeps, per channel, the workers that want it; the listener runs one Query per change,
// `LISTEN "channel"` when a channel becomes wanted and `UNLISTEN "channel"` when no worker
// wants it any more, and each ReadyForQuery settles the oldest. A worker waiting to hear
// that a channel is listened on is told once the LISTEN's ReadyForQuery came without an
// error. Every NotificationResponse goes, as is, to each worker that wants its channel.
//
// When the listener fails or is lost it is opened again after a backoff (0.5 s doubling to
// 30 s, back to 0.5 s after a login) and LISTENs again on every wanted channel; a channel
// newly wanted meanwhile opens it at once. Notifications sent while it was down are lost,
// as they would be for a client whose connection dropped. A listener no client needs is
// closed after server_idle_timeout.
//
// Hub steps change the hub first and send their messages last (send_all): a message to
// this very worker is handled at once, and may change the hub again.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/base/log.h"
#include "pgplex/client/client_listen.h"
#include "pgplex/pool/pool_table.h"
#include "pgplex/proto/error.h"
#include "pgplex/proto/sqlstate.h"
#include "pgplex/proto/writer.h"
#include "pgplex/server/internal.h"
#include "pgplex/server/server_lease.h"
#include "pgplex/server/server_listen.h"
#include "pgplex/server/server_work.h"
#include "pgplex/worker/worker.h"

namespace pgplex::server {

namespace {

using pool::Hub;
using pool::HubChannel;
using pool::HubState;
using pool::HubWorker;
using pool::ListenMessage;
using proto::BackendMessage;

// Messages a hub step sends, to their workers, once it is done.
using Outbox = std::vector<std::pair<uint32_t, std::unique_ptr<ListenMessage>>>;

bool stopping(const worker::Worker& worker) {
    return worker.shared.shutdown.load(std::memory_order_acquire) ||
           worker.shared.immediate.load(std::memory_order_acquire);
}

std::unique_ptr<ListenMessage> make(ListenMessage::Kind kind, const worker::Worker& worker,
                                    const pool::Pool& pool, std::string_view channel,
                                    uint64_t seq) {
    auto message = std::make_unique<ListenMessage>();
    message->kind = kind;
    message->pool_id = pool.id;
    message->worker = worker.index;
    message->seq = seq;
    message->channel.assign(channel);
    return message;
}

void dispatch(worker::Worker& worker, std::unique_ptr<ListenMessage> message);

void send_all(worker::Worker& worker, Outbox& outbox) {
    for (auto& [target, message] : outbox) {
        if (target == worker.index) {
            dispatch(worker, std::move(message));
            continue;
        }
        // Shutting down, a worker may be gone: nothing is sent that no one would free.
        if (stopping(worker) || target >= worker.shared.ring_fds.size()) continue;
        ListenMessage* sent = message.release();
        io_uring_sqe* sqe = worker.ring.sqe();
        io_uring_prep_msg_ring(sqe, worker.shared.ring_fds[target], 0,
                               io::pack_pointer(io::Op::Listen, sent), 0);
        io_uring_sqe_set_data64(sqe, io::pack_pointer(io::Op::ListenSent, sent));
    }
    outbox.clear();
}

// An ErrorResponse body of severity ERROR: the clients whose LISTEN failed carry on.
std::string error_body(const char* sqlstate, std::string_view message) {
    uint8_t bytes[1024];
    proto::Writer writer(bytes, sizeof bytes);
    proto::write_error(writer, proto::Severity::Error, sqlstate, message.substr(0, 900));
    PGPLEX_ASSERT(writer.ok());
    return std::string(reinterpret_cast<const char*>(bytes) + 5, writer.size() - 5);
}

// What a client whose LISTEN failed is told: the server's words when it sent some.
std::string client_error(const uint8_t* error, uint32_t size, const std::string& why) {
    proto::ErrorFields fields;
    if (error != nullptr && proto::parse_error(error, size, fields))
        return error_body(std::string(fields.code).c_str(), fields.message);
    return error_body(sqlstate::sqlclient_unable_to_establish_sqlconnection,
                      "pgplex could not open its LISTEN connection to the server: " + why);
}

Hub& hub_of(worker::Worker& worker, const pool::Pool& pool) {
    pool::PoolListen& listens = pool_listen(worker, pool.id);
    if (!listens.hub) listens.hub = std::make_unique<Hub>();
    return *listens.hub;
}

bool allowed(HubState from, HubState to) {
    switch (to) {
        case HubState::Connecting:
            return from == HubState::Off || from == HubState::Backoff;
        case HubState::Ready:
            return from == HubState::Connecting;
        case HubState::Backoff:
            return from != HubState::Backoff;
        case HubState::Off:
            return from != HubState::Off;
    }
    return false;
}

void set_state(worker::Worker& worker, Hub& hub, HubState state) {
    PGPLEX_ASSERT(allowed(hub.state, state));
    PGPLEX_ASSERT((state == HubState::Connecting || state == HubState::Ready) ==
                  (hub.server != io::nil));
    hub.state = state;
    hub.since = worker.now;
    hub.unwanted_since = 0;
}

HubWorker* find_worker(HubChannel& channel, uint32_t worker) {
    for (HubWorker& entry : channel.workers)
        if (entry.worker == worker) return &entry;
    return nullptr;
}

void send_command(worker::Worker& worker, Hub& hub, HubChannel& channel, pool::ListenKind kind,
                  const std::string& name) {
    PGPLEX_ASSERT(hub.state == HubState::Ready);
    std::string sql = pool::listen_sql(kind, name);
    std::vector<uint8_t> bytes(sql.size() + 16);
    proto::Writer writer(bytes.data(), uint32_t(bytes.size()));
    writer.begin(proto::FrontendMessage::Query);
    writer.cstring(sql);
    writer.end();
    PGPLEX_ASSERT(writer.ok());
    queue(worker, worker.server(hub.server), writer.data(), writer.size());
    hub.commands.push_back(name);
    ++channel.inflight;
    channel.sent_listen = kind == pool::ListenKind::Listen;
    channel.listening = false;
}

// The workers waiting for the channel hear that it failed, and no longer want it.
void fail_waiters(const worker::Worker& worker, const pool::Pool& pool, const std::string& name,
                  HubChannel& channel, const std::string& error, Outbox& outbox) {
    std::vector<HubWorker>& workers = channel.workers;
    for (size_t i = 0; i < workers.size();) {
        if (!workers[i].awaiting) {
            ++i;
            continue;
        }
        auto message = make(ListenMessage::Kind::Failed, worker, pool, name, workers[i].seq);
        message->bytes = error;
        outbox.emplace_back(workers[i].worker, std::move(message));
        workers[i] = workers.back();
        workers.pop_back();
    }
}

void fail_all_waiters(const worker::Worker& worker, const pool::Pool& pool, Hub& hub,
                      const std::string& error, Outbox& outbox) {
    for (auto& [name, channel] : hub.channels)
        fail_waiters(worker, pool, name, channel, error, outbox);
}

// Channels no worker wants and no command is in flight for are forgotten.
void drop_unwanted(Hub& hub) {
    for (auto it = hub.channels.begin(); it != hub.channels.end();) {
        bool unwanted = it->second.workers.empty() && it->second.inflight == 0;
        it = unwanted ? hub.channels.erase(it) : std::next(it);
    }
}

void log_name(const pool::Pool& pool, char (&out)[160]) {
    snprintf(out, sizeof out, "%s/%s@%s", pool.target.dbname.c_str(), pool.target.user.c_str(),
             pool.target.endpoint.to_string().c_str());
}

// The listener is gone, or never came: what it LISTENed on is forgotten, and while channels
// are wanted a new one is opened after the backoff.
void listener_lost(worker::Worker& worker, const pool::Pool& pool, Hub& hub) {
    hub.server = io::nil;
    hub.commands.clear();
    hub.command_error.clear();
    for (auto it = hub.channels.begin(); it != hub.channels.end();) {
        HubChannel& channel = it->second;
        channel.inflight = 0;
        channel.sent_listen = channel.listening = false;
        it = channel.workers.empty() ? hub.channels.erase(it) : std::next(it);
    }
    if (hub.channels.empty() || stopping(worker)) {
        set_state(worker, hub, HubState::Off);
        return;
    }
    if (hub.backoff_ms == 0) hub.backoff_ms = limits::listener_retry_ms_min;
    hub.retry_ms = worker.now + hub.backoff_ms;
    char name[160];
    log_name(pool, name);
    log_info("listener of %s: opening it again in %lld ms (%zu channels wanted)", name,
             (long long)hub.backoff_ms, hub.channels.size());
    hub.backoff_ms = std::min<int64_t>(hub.backoff_ms * 2, limits::listener_retry_ms_max);
    set_state(worker, hub, HubState::Backoff);
}

void open_listener(worker::Worker& worker, pool::Pool& pool, Hub& hub) {
    if (stopping(worker)) return;
    uint32_t slot = worker.server_acquire();
    if (slot == io::nil) {
        log_warning("worker %u: no free server slot for a listener", worker.index);
        Outbox outbox;
        fail_all_waiters(worker, pool, hub, client_error(nullptr, 0, "no free server slot"),
                         outbox);
        drop_unwanted(hub);
        hub.retry_ms = worker.now + limits::listener_retry_ms_max;
        if (hub.state == HubState::Off && !hub.channels.empty())
            set_state(worker, hub, HubState::Backoff);
        send_all(worker, outbox);
        return;
    }
    Server& server = claim(worker, slot, ServerState::Connecting, pool);
    server.listener = true;
    hub.server = slot;
    set_state(worker, hub, HubState::Connecting);
    std::string reason;
    if (!open_socket(worker, server, slot, reason)) {
        server.conn.file = io::nil;
        listener_login_failed(worker, server, nullptr, 0, reason.c_str());
        return;
    }
    submit_connect(worker, server);
}

// Closes the listener politely (a Terminate first), as an idle server at shutdown.
void say_goodbye(worker::Worker& worker, Server& server) {
    static const uint8_t terminate[5] = {uint8_t(proto::FrontendMessage::Terminate), 0, 0, 0, 4};
    queue(worker, server, terminate, sizeof terminate);
    server.conn.close_when_sent = true;
    set_state(worker, server, ServerState::Closing);
}

void want(worker::Worker& worker, pool::Pool& pool, Hub& hub, const ListenMessage& message,
          Outbox& outbox) {
    auto it = hub.channels.try_emplace(message.channel).first;
    HubChannel& channel = it->second;
    HubWorker* entry = find_worker(channel, message.worker);
    if (entry != nullptr && entry->seq > message.seq) return;  // a newer message spoke
    if (entry == nullptr) {
        entry = &channel.workers.emplace_back();
        entry->worker = message.worker;
    }
    entry->seq = message.seq;
    entry->awaiting = !channel.listening;
    if (channel.listening) {
        outbox.emplace_back(message.worker, make(ListenMessage::Kind::Confirmed, worker, pool,
                                                 message.channel, message.seq));
        return;
    }
    if (hub.state == HubState::Ready && !channel.sent_listen)
        send_command(worker, hub, channel, pool::ListenKind::Listen, it->first);
    else if (hub.state == HubState::Off || hub.state == HubState::Backoff)
        open_listener(worker, pool, hub);  // last: it may fail, and fail the waiters, at once
}

void unwant(worker::Worker& worker, Hub& hub, const ListenMessage& message) {
    auto it = hub.channels.find(message.channel);
    if (it == hub.channels.end()) return;
    HubChannel& channel = it->second;
    HubWorker* entry = find_worker(channel, message.worker);
    if (entry == nullptr || entry->seq > message.seq) return;
    *entry = channel.workers.back();
    channel.workers.pop_back();
    if (!channel.workers.empty()) return;
    if (hub.state == HubState::Ready && channel.sent_listen)
        send_command(worker, hub, channel, pool::ListenKind::Unlisten, it->first);
    else if (channel.inflight == 0)
        hub.channels.erase(it);
}

void hub_want(worker::Worker& worker, pool::Pool& pool, const ListenMessage& message) {
    Hub& hub = hub_of(worker, pool);
    Outbox outbox;
    if (message.wanted)
        want(worker, pool, hub, message, outbox);
    else
        unwant(worker, hub, message);
    send_all(worker, outbox);
}

// The listener's oldest LISTEN/UNLISTEN got its ReadyForQuery.
void command_done(worker::Worker& worker, const pool::Pool& pool, Hub& hub) {
    if (hub.commands.empty()) return;
    std::string name = std::move(hub.commands.front());
    hub.commands.pop_front();
    std::string error = std::move(hub.command_error);
    hub.command_error.clear();
    auto it = hub.channels.find(name);
    if (it == hub.channels.end()) return;
    HubChannel& channel = it->second;
    if (--channel.inflight > 0) return;  // a later command for it decides
    Outbox outbox;
    if (channel.sent_listen && error.empty()) {
        channel.listening = true;
        for (HubWorker& entry : channel.workers) {
            if (!entry.awaiting) continue;
            entry.awaiting = false;
            outbox.emplace_back(
                entry.worker, make(ListenMessage::Kind::Confirmed, worker, pool, name, entry.seq));
        }
    } else if (channel.sent_listen) {
        char pool_name[160];
        log_name(pool, pool_name);
        std::string reply = client_error(reinterpret_cast<const uint8_t*>(error.data()),
                                         uint32_t(error.size()), "LISTEN failed");
        log_warning("listener of %s: LISTEN \"%s\" failed", pool_name, name.c_str());
        channel.sent_listen = false;
        fail_waiters(worker, pool, name, channel, reply, outbox);
    }
    if (channel.workers.empty() && !channel.sent_listen) hub.channels.erase(it);
    send_all(worker, outbox);
}

// A NotificationResponse: to every worker that wants its channel, as is.
void hub_notify(worker::Worker& worker, const pool::Pool& pool, Hub& hub, const uint8_t* body,
                uint32_t size) {
    if (size < 6) return;
    const char* channel = reinterpret_cast<const char*>(body) + 4;
    size_t channel_size = strnlen(channel, size - 4);
    if (channel_size == size - 4) return;
    auto it = hub.channels.find(std::string_view(channel, channel_size));
    if (it == hub.channels.end() || it->second.workers.empty()) return;
    std::string message(5 + size, '\0');
    message[0] = char(BackendMessage::NotificationResponse);
    uint32_t length = size + 4;
    for (int i = 0; i < 4; ++i) message[1 + i] = char(uint8_t(length >> (24 - 8 * i)));
    memcpy(message.data() + 5, body, size);
    Outbox outbox;
    for (const HubWorker& entry : it->second.workers) {
        auto delivery = make(ListenMessage::Kind::Notification, worker, pool, it->first, 0);
        delivery->bytes = message;
        outbox.emplace_back(entry.worker, std::move(delivery));
    }
    send_all(worker, outbox);
}

// What the listener receives: notifications, and the replies to its LISTEN/UNLISTEN.
struct ListenerHandler {
    worker::Worker& worker;
    Server& server;
    Hub& hub;

    proto::Fate on_header(uint8_t type, uint32_t length) {
        switch (type) {
            case uint8_t(BackendMessage::NotificationResponse):
            case uint8_t(BackendMessage::ErrorResponse):
            case uint8_t(BackendMessage::ReadyForQuery):
                return inspect_if_small(length);
            default:
                return proto::Fate::Drop;
        }
    }
    void forward(const uint8_t*, uint32_t, bool) {}
    uint8_t* assembly(uint32_t size) { return server::assembly(server, size); }
    proto::Verdict on_message(uint8_t type, const uint8_t* body, uint32_t size) {
        switch (type) {
            case uint8_t(BackendMessage::NotificationResponse):
                hub_notify(worker, *server.pool, hub, body, size);
                break;
            case uint8_t(BackendMessage::ErrorResponse):
                on_error(body, size);
                break;
            case uint8_t(BackendMessage::ReadyForQuery):
                server.status = static_cast<proto::TransactionStatus>(body[0]);
                command_done(worker, *server.pool, hub);
                break;
            default:
                break;
        }
        return proto::Verdict::Continue;
    }
    void on_error(const uint8_t* body, uint32_t size) {
        if (!hub.commands.empty()) {
            if (hub.command_error.empty())
                hub.command_error.assign(reinterpret_cast<const char*>(body), size);
            return;
        }
        proto::ErrorFields fields;
        char name[160];
        log_name(*server.pool, name);
        if (proto::parse_error(body, size, fields))
            log_warning("listener of %s: %.*s", name, int(fields.message.size()),
                        fields.message.data());
    }
};

void dispatch(worker::Worker& worker, std::unique_ptr<ListenMessage> message) {
    pool::Pool* pool = worker.shared.pools.by_id(message->pool_id);
    if (pool == nullptr) return;
    switch (message->kind) {
        case ListenMessage::Kind::Want:
            hub_want(worker, *pool, *message);
            return;
        case ListenMessage::Kind::Confirmed:
            client::on_listen_confirmed(worker, *pool, message->channel, message->seq);
            return;
        case ListenMessage::Kind::Failed:
            client::on_listen_failed(worker, *pool, message->channel, message->seq, message->bytes);
            return;
        case ListenMessage::Kind::Notification:
            client::on_notification(worker, *pool, message->channel, message->bytes);
            return;
    }
}

}  // namespace

pool::PoolListen& pool_listen(worker::Worker& worker, uint32_t pool_id) {
    std::unique_ptr<pool::PoolListen>& listens = worker.pools[pool_id].listen;
    if (!listens) listens = std::make_unique<pool::PoolListen>();
    return *listens;
}

uint32_t listen_home(const worker::Worker& worker, const pool::Pool& pool) {
    return pool.id % uint32_t(worker.shared.ring_fds.size());
}

void want_channel(worker::Worker& worker, pool::Pool& pool, std::string_view channel, bool wanted,
                  uint64_t seq) {
    Outbox outbox;
    auto message = make(ListenMessage::Kind::Want, worker, pool, channel, seq);
    message->wanted = wanted;
    outbox.emplace_back(listen_home(worker, pool), std::move(message));
    send_all(worker, outbox);
}

void on_listen_message(worker::Worker& worker, ListenMessage* message) {
    dispatch(worker, std::unique_ptr<ListenMessage>(message));
}

void on_listen_sent(worker::Worker&, ListenMessage* message, int result) {
    if (result >= 0) return;  // the receiver owns it (and may have freed it already)
    log_warning("a LISTEN message to another worker was not delivered: %s", strerror(-result));
    delete message;
}

void listener_logged_in(worker::Worker& worker, Server& server) {
    Hub& hub = hub_of(worker, *server.pool);
    if (hub.server != worker.server_slot(server) || stopping(worker)) {
        say_goodbye(worker, server);
        return;
    }
    set_state(worker, server, ServerState::Listening);
    set_state(worker, hub, HubState::Ready);
    hub.backoff_ms = 0;
    size_t count = 0;
    for (auto& [name, channel] : hub.channels) {
        if (channel.workers.empty()) continue;
        send_command(worker, hub, channel, pool::ListenKind::Listen, name);
        ++count;
    }
    char name[160];
    log_name(*server.pool, name);
    log_info("listener of %s: logged in (backend pid %u, worker %u); LISTEN on %zu channels", name,
             server.backend_pid, worker.index, count);
}

void listener_login_failed(worker::Worker& worker, Server& server, const uint8_t* error,
                           uint32_t error_size, const char* why) {
    pool::Pool& pool = *server.pool;
    Hub& hub = hub_of(worker, pool);
    char name[160];
    log_name(pool, name);
    proto::ErrorFields fields;
    if (error != nullptr && proto::parse_error(error, error_size, fields))
        log_warning("listener of %s: login failed: %s: %.*s", name, why, int(fields.message.size()),
                    fields.message.data());
    else
        log_warning("listener of %s: login failed: %s", name, why);
    Outbox outbox;
    if (hub.server == worker.server_slot(server)) {
        fail_all_waiters(worker, pool, hub, client_error(error, error_size, why), outbox);
        listener_lost(worker, pool, hub);
    }
    close(worker, server, CloseReason::LoginFailed);
    send_all(worker, outbox);
}

uint32_t listener_consume(worker::Worker& worker, Server& server, const uint8_t* data,
                          uint32_t size) {
    ListenerHandler handler{worker, server, hub_of(worker, *server.pool)};
    proto::FeedResult result =
        proto::feed(server.conn.frame, proto::Direction::Backend, data, size, handler);
    if (result.status == proto::FeedStatus::Violation) {
        char name[160];
        log_name(*server.pool, name);
        log_warning("listener of %s: protocol violation: %s", name, result.reason);
        close(worker, server, CloseReason::ProtocolViolation);
        return size;
    }
    return result.consumed;
}

void listener_closed(worker::Worker& worker, Server& server) {
    Hub& hub = hub_of(worker, *server.pool);
    if (hub.server != worker.server_slot(server)) return;  // already let go
    char name[160];
    log_name(*server.pool, name);
    log_warning("listener of %s: connection lost: %s", name, to_string(server.close_reason));
    listener_lost(worker, *server.pool, hub);
}

void listener_shutdown(worker::Worker& worker, Server& server) {
    Hub& hub = hub_of(worker, *server.pool);
    if (hub.server == worker.server_slot(server)) {
        hub.server = io::nil;
        set_state(worker, hub, HubState::Off);
    }
    say_goodbye(worker, server);
}

void listen_tick(worker::Worker& worker, pool::Pool& pool) {
    std::unique_ptr<pool::PoolListen>& listens = worker.pools[pool.id].listen;
    if (!listens || !listens->hub) return;
    Hub& hub = *listens->hub;
    switch (hub.state) {
        case HubState::Off:
            if (!hub.channels.empty()) open_listener(worker, pool, hub);
            return;
        case HubState::Backoff:
            if (hub.channels.empty())
                set_state(worker, hub, HubState::Off);
            else if (worker.now >= hub.retry_ms)
                open_listener(worker, pool, hub);
            return;
        case HubState::Connecting:
            return;
        case HubState::Ready:
            break;
    }
    int64_t idle_ms = worker.config->server_idle_timeout_ms;
    if (!hub.channels.empty() || idle_ms <= 0) {
        hub.unwanted_since = 0;
        return;
    }
    if (hub.unwanted_since == 0) hub.unwanted_since = worker.now;
    if (worker.now - hub.unwanted_since < idle_ms) return;
    char name[160];
    log_name(pool, name);
    log_info("listener of %s: no client listens any more: closing it", name);
    Server& server = worker.server(hub.server);
    hub.server = io::nil;
    set_state(worker, hub, HubState::Off);
    say_goodbye(worker, server);
}

}  // namespace pgplex::server
