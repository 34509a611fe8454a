// See pg_conn.h.
#include "pg_conn.h"

#include <poll.h>

#include "pgplex/base/assert.h"
#include "pgplex/base/log.h"

namespace pgplex::cluster::monitor_detail {

namespace {

// libpq prints notices to stderr unless told otherwise; the monitor's belong in the log.
void log_notice_text(void*, const char* message) {
    log_debug("monitor: server notice: %s", one_line(message).c_str());
}

}  // namespace

std::string ConnectParameters::credentials() const {
    std::string text;
    for (const std::string& value : values) text += value + '\0';
    return text;
}

std::string one_line(const char* message) {
    std::string text = message != nullptr ? message : "";
    for (char& c : text) {
        if (c == '\n' || c == '\t') c = ' ';
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    size_t doubled = 0;
    while ((doubled = text.find("  ")) != std::string::npos) text.erase(doubled, 1);
    return text;
}

std::string connection_error(const PGconn* connection) {
    std::string text = one_line(PQerrorMessage(connection));
    return text.empty() ? "connection failed" : text;
}

void PgConn::set_state(State next) {
    switch (next) {
        case State::Closed:
            connection_.reset();
            flushing_ = false;
            results_.clear();
            break;
        case State::Connecting:
            PGPLEX_ASSERT(state_ == State::Closed && connection_ != nullptr);
            break;
        case State::Querying:
            PGPLEX_ASSERT(state_ == State::Ready);
            break;
        case State::Ready:
            PGPLEX_ASSERT((state_ == State::Querying && !flushing_) || state_ == State::Connecting);
            break;
    }
    state_ = next;
}

bool PgConn::fail(std::string why) {
    error_ = std::move(why);
    set_state(State::Closed);
    return false;
}

bool PgConn::connect(const ConnectParameters& parameters) {
    PGPLEX_ASSERT(state_ == State::Closed);
    error_.clear();
    std::vector<const char*> keywords;
    std::vector<const char*> values;
    for (size_t i = 0; i < parameters.keywords.size(); ++i) {
        keywords.push_back(parameters.keywords[i].c_str());
        values.push_back(parameters.values[i].c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* connection = PQconnectStartParams(keywords.data(), values.data(), 0);
    if (connection == nullptr) return fail("out of memory");
    connection_.reset(connection);
    PQsetNoticeProcessor(connection, log_notice_text, nullptr);
    connected_as_ = parameters.credentials();
    if (PQstatus(connection) == CONNECTION_BAD) return fail(connection_error(connection));
    // libpq-connect.html#LIBPQ-PQCONNECTSTARTPARAMS: before the first PQconnectPoll, act as
    // if it had returned PGRES_POLLING_WRITING.
    connect_wants_ = PGRES_POLLING_WRITING;
    set_state(State::Connecting);
    return true;
}

bool PgConn::send(const std::string& sql) {
    PGPLEX_ASSERT(state_ == State::Ready);
    error_.clear();
    results_.clear();
    if (PQsendQuery(connection_.get(), sql.c_str()) == 0)
        return fail(connection_error(connection_.get()));
    set_state(State::Querying);
    int flushed = PQflush(connection_.get());
    if (flushed < 0) return fail(connection_error(connection_.get()));
    flushing_ = flushed == 1;
    return true;
}

short PgConn::events() const {
    switch (state_) {
        case State::Closed:
            return 0;
        case State::Connecting:
            return connect_wants_ == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        case State::Querying:
            return short(POLLIN | (flushing_ ? POLLOUT : 0));
        case State::Ready:
            return POLLIN;
    }
    return 0;
}

PgConn::Progress PgConn::poll_connect() {
    PostgresPollingStatusType polled = PQconnectPoll(connection_.get());
    switch (polled) {
        case PGRES_POLLING_OK:
            if (PQsetnonblocking(connection_.get(), 1) != 0) {
                fail(connection_error(connection_.get()));
                return Progress::Failed;
            }
            set_state(State::Ready);
            return Progress::LoggedIn;
        case PGRES_POLLING_FAILED:
            fail(connection_error(connection_.get()));
            return Progress::Failed;
        case PGRES_POLLING_READING:
        case PGRES_POLLING_WRITING:
            connect_wants_ = polled;
            return Progress::Waiting;
        case PGRES_POLLING_ACTIVE:  // unused by libpq; poll again when writable
            connect_wants_ = PGRES_POLLING_WRITING;
            return Progress::Waiting;
    }
    return Progress::Waiting;
}

// Takes every result libpq has complete; PQgetResult's null ends the Query.
PgConn::Progress PgConn::read() {
    PGconn* connection = connection_.get();
    if (PQconsumeInput(connection) == 0) {
        fail(connection_error(connection));
        return Progress::Failed;
    }
    while (PQisBusy(connection) == 0) {
        Result result(PQgetResult(connection));
        if (result == nullptr) {
            set_state(State::Ready);
            return Progress::Answered;
        }
        results_.push_back(std::move(result));
    }
    return Progress::Waiting;
}

PgConn::Progress PgConn::advance(short revents) {
    switch (state_) {
        case State::Connecting:
            return poll_connect();
        case State::Querying:
            if (flushing_ && (revents & POLLOUT) != 0) {
                int flushed = PQflush(connection_.get());
                if (flushed < 0) {
                    fail(connection_error(connection_.get()));
                    return Progress::Failed;
                }
                flushing_ = flushed == 1;
            }
            if ((revents & (POLLIN | POLLERR | POLLHUP)) == 0) return Progress::Waiting;
            return read();
        case State::Ready: {
            // A notice, or the server closing it (shutdown, pg_terminate_backend): a closed
            // one is dropped now, so the next use logs in afresh instead of failing on a
            // dead socket.
            PGconn* connection = connection_.get();
            if (PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK) {
                set_state(State::Closed);
                return Progress::Dropped;
            }
            while (PQisBusy(connection) == 0) {
                Result result(PQgetResult(connection));
                if (result == nullptr) break;
            }
            return Progress::Waiting;
        }
        case State::Closed:
            break;
    }
    PGPLEX_UNREACHABLE();
}

}  // namespace pgplex::cluster::monitor_detail
