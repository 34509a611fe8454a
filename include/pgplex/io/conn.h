// What every socket pgplex drives has, client or server: its fixed file, the operations in
// flight on it, its send queue, the bytes it sent that are not processed yet, and the
// framer state of what it sends.
#pragma once

#include <cstdint>
#include <memory>

#include "pgplex/io/buffers.h"
#include "pgplex/proto/frame.h"
#include "pgplex/tls/session.h"

namespace pgplex::io {

struct Conn {
    uint32_t generation = 0;
    uint32_t file = nil;        // fixed-file index; nil when none
    uint16_t inflight = 0;      // operations whose last completion has not arrived
    bool recv_armed = false;    // a multishot recv is live
    bool recv_paused = false;   // flow control: we want no recv until the peer drains
    bool recv_starved = false;  // the recv ended with -ENOBUFS: rearm when buffers return
    bool send_busy = false;     // a sendmsg is in flight
    bool dirty = false;         // on the worker's list of sockets with output to send
    bool closing = false;       // close requested: no new ops but shutdown and close
    bool close_submitted = false;
    bool close_when_sent = false;  // close once the send queue is empty
    bool eof = false;              // the peer closed or reset its side
    uint32_t send_op = nil;        // index of the SendOp carrying the send in flight
    ChunkQueue out;                // bytes to send to this socket (plaintext under TLS)
    ChunkQueue held_in;            // bytes received from it, not yet processed
    proto::FrameState frame;       // framing of the bytes received from it
    // TLS (io::Loop::start_tls): what is received is decrypted before anyone sees it, and
    // `out` is encrypted into `sealed`, which is what goes on the wire.
    std::unique_ptr<tls::Session> tls;
    ChunkQueue sealed;

    // The queue sends are made from.
    ChunkQueue& wire() { return tls ? sealed : out; }
    // Nothing queued, nothing in flight.
    bool all_sent() const { return out.empty() && sealed.empty() && !send_busy; }
};

}  // namespace pgplex::io
