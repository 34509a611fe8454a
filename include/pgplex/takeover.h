// pgplex --takeover: a new pgplex (a new binary, or the same one restarted) takes over from
// the running one without refusing a connection or dropping a client.
//
//   new                                   old (listening on takeover_socket)
//   Hello ─────────────────────────────▶
//        ◀───────────────── Listener × n   every listening socket (SCM_RIGHTS), then
//        ◀───────────────── ListenersEnd
//   (its workers accept on them)
//   Ready ─────────────────────────────▶  old stops accepting; as after SIGTERM it waits
//                                          for its clients, but hands each over as soon as
//        ◀──────────────────── Client × m  it is idle between transactions (socket and
//        ◀──────────────────────── Done    session, client/client_handover.h), then exits.
//
// Both sides run the channel on a thread of their own (io/handover.h is blocking).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pgplex/base/unique_fd.h"
#include "pgplex/config/config.h"
#include "pgplex/systemd.h"
#include "pgplex/worker/worker.h"

namespace pgplex::takeover {

// Where a pgplex offers to be taken over: takeover_socket, else
// "<unix_socket_dir>/.s.PGPLEX.<port of the first TCP listen address>"; empty for nowhere.
std::string socket_path(const config::Config& config);

// The running pgplex's side.
class Giver {
  public:
    ~Giver();
    // Listens on `path` (none when empty) and serves one takeover from a thread. `listeners`:
    // a descriptor of each listening socket and its role.
    void start(const std::string& path, worker::Shared& shared,
               std::vector<systemd::ActivatedSocket> listeners);
    // A new pgplex took over: its socket files are its now (not to be removed at exit).
    bool taken() const { return taken_.load(std::memory_order_acquire); }
    // The workers finished: the clients still queued are sent, then Done.
    void finish();

  private:
    void serve();
    bool hand_listeners(int socket);
    void send_clients(int socket);

    std::string path_;
    worker::Shared* shared_ = nullptr;
    std::vector<systemd::ActivatedSocket> listeners_;
    base::UniqueFd listener_;
    std::thread thread_;
    std::atomic<bool> taken_{false};
    std::atomic<bool> stop_{false};
    std::atomic<bool> workers_done_{false};
};

// The new pgplex's side.
class Taker {
  public:
    ~Taker();
    // Connects to `path`, says Hello and takes every listening socket of the running
    // pgplex that serves a listener of `config` (the others are logged and closed). False,
    // logged, when there is no pgplex there to take over from.
    bool take_listeners(const std::string& path, const config::Config& config,
                        std::vector<systemd::ActivatedSocket>& out);
    // The workers run: Ready, then the clients that come are given to the workers in turn.
    void receive_clients(worker::Shared& shared, uint32_t workers);
    void stop();

  private:
    base::UniqueFd socket_;
    std::thread thread_;
};

}  // namespace pgplex::takeover
