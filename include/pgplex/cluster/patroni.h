// Patroni's REST API as the monitors use it (cluster/monitor.h): GET /primary, /replica and
// /sync on the node's host at the cluster's patroni_port. Patroni answers 200 when the node
// is what the path names and 503 when it is not, so the status line is all pgplex reads.
// Each GET is one small non-blocking state machine that the monitor thread drives from its
// poll(2) loop, beside the libpq connections; nothing here blocks or reads a body.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pgplex/base/unique_fd.h"

namespace pgplex::cluster {

// The longest status line read ("HTTP/1.1 200 OK" and a reason phrase); a longer one is
// not an HTTP answer pgplex understands.
inline constexpr size_t patroni_status_line_bytes_max = 256;

// One GET over plain HTTP/1.0 (Connection: close), answered by its status line alone.
class PatroniProbe {
  public:
    enum class State : uint8_t {
        Idle,        // no GET in flight: fd closed; status() is the last answer, 0 if it failed
        Connecting,  // fd open, connect(2) in progress: waits for POLLOUT
        Sending,     // connected, request_ sent up to sent_ < size: waits for POLLOUT
        Reading,     // request sent, status line incomplete in line_: waits for POLLIN
    };

    // Starts GET `path` at `address` with its port replaced by `port`. A Unix socket address
    // (or any error on the spot) ends the probe at once: Idle with status 0 and error() set.
    void start(const sockaddr_storage& address, uint16_t port, std::string_view host,
               std::string_view path);
    // Abandons a GET in flight (the check timed out): Idle with status 0 and `reason`.
    void abandon(std::string_view reason);
    // Moves on after poll(2) reported `revents` for fd(). Only called while not Idle.
    void advance(short revents);

    // The poll(2) events it waits for on fd(); 0 when Idle.
    short events() const;
    int fd() const { return fd_.get(); }
    bool idle() const { return state_ == State::Idle; }
    int status() const { return status_; }               // the HTTP status; 0: no answer
    const std::string& error() const { return error_; }  // why status() is 0

  private:
    void set_state(State next);
    void fail(std::string_view what, int error_number);
    void send_some();
    void read_some();
    void finish_line();

    State state_ = State::Idle;
    base::UniqueFd fd_;
    std::string request_;
    size_t sent_ = 0;
    std::string line_;
    int status_ = 0;
    std::string error_;
};

}  // namespace pgplex::cluster
