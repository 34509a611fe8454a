// One libpq connection of the monitor thread, driven by poll(2) and libpq's non-blocking
// calls: log in, run one Query at a time and collect its results, and notice the server
// closing it while idle. A node's check connection (monitor.cc) and its action connection
// (failover.cc) are each one; what they send and how they read the answers is theirs.
// Internal to src/cluster.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pgplex::cluster::monitor_detail {

struct ConnectionClose {
    void operator()(PGconn* connection) const { PQfinish(connection); }
};
using Connection = std::unique_ptr<PGconn, ConnectionClose>;

struct ResultClear {
    void operator()(PGresult* result) const { PQclear(result); }
};
using Result = std::unique_ptr<PGresult, ResultClear>;

// Connection settings as libpq keywords; values from the config go in as parameters, never
// spliced into a conninfo string.
struct ConnectParameters {
    std::vector<std::string> keywords;
    std::vector<std::string> values;

    void add(const char* keyword, std::string value) {
        keywords.emplace_back(keyword);
        values.push_back(std::move(value));
    }
    // Every value, to tell whether a reload changed what a connection logged in with.
    std::string credentials() const;
};

// libpq's messages end in a newline and may span lines: one line of text.
std::string one_line(const char* message);
std::string connection_error(const PGconn* connection);

class PgConn {
  public:
    enum class State : uint8_t {
        Closed,      // no connection: connect() starts one
        Connecting,  // PQconnectPoll in progress: polled for what it wants
        Querying,    // a Query sent: flushing while it must, then reading its results
        Ready,       // logged in, nothing running: watched for the server closing it
    };
    // What advance() moved.
    enum class Progress : uint8_t {
        Waiting,   // nothing to act on yet
        LoggedIn,  // Connecting -> Ready: the first Query may go
        Answered,  // Querying -> Ready: take_results() has every result of the Query
        Failed,    // Connecting or Querying -> Closed: error() says why
        Dropped,   // Ready -> Closed: the server closed the idle connection
    };

    State state() const { return state_; }
    bool busy() const { return state_ == State::Connecting || state_ == State::Querying; }
    const std::string& error() const { return error_; }
    const std::string& connected_as() const { return connected_as_; }
    int socket() const { return connection_ ? PQsocket(connection_.get()) : -1; }

    // From Closed. False: it failed at once (error() says why) and the state is Closed.
    bool connect(const ConnectParameters& parameters);
    // From Ready: sends one Query. False: failed (error()), Closed.
    bool send(const std::string& sql);
    // The poll(2) events it waits for (0 when Closed), and what they moved.
    short events() const;
    Progress advance(short revents);
    std::vector<Result> take_results() { return std::move(results_); }
    void close() { set_state(State::Closed); }

  private:
    void set_state(State next);  // the one place the state changes: checks the edge
    bool fail(std::string why);  // -> Closed with why; false, for the callers' returns
    Progress poll_connect();
    Progress read();

    State state_ = State::Closed;
    Connection connection_;
    PostgresPollingStatusType connect_wants_ = PGRES_POLLING_WRITING;
    bool flushing_ = false;
    std::string connected_as_;
    std::vector<Result> results_;
    std::string error_;
};

}  // namespace pgplex::cluster::monitor_detail
