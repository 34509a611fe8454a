// Encoding, decoding and sealing of gossip datagrams (layout in gossip/wire.h). One function
// per record kind lists its fields once; the same list drives the writer and the reader, so
// the two directions cannot drift apart. The reader checks every length before it reads and
// never trusts a count; the MAC is checked before anything is parsed.
#include "pgplex/gossip/wire.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

namespace pgplex::gossip {

namespace {

constexpr uint8_t magic[4] = {'P', 'G', 'X', 'G'};

// Appends big-endian fields; `ok` turns false when a string is too long for its u8 length.
struct Writer {
    std::vector<uint8_t>& out;
    bool ok = true;
    void u8(uint8_t value) { out.push_back(value); }
    void u16(uint16_t value) {
        out.push_back(uint8_t(value >> 8));
        out.push_back(uint8_t(value));
    }
    void u64(uint64_t value) {
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(uint8_t(value >> shift));
    }
    void i64(int64_t value) { u64(uint64_t(value)); }
    void str(const std::string& value) {
        if (value.size() > address_bytes_max) {
            ok = false;
            return;
        }
        u8(uint8_t(value.size()));
        out.insert(out.end(), value.begin(), value.end());
    }
    void flag(bool value) { u8(value ? 1 : 0); }
    void role(cluster::Role value) { u8(uint8_t(value)); }
    void state(MemberState value) { u8(uint8_t(value)); }
    void nodes(std::vector<NodeView>& value);
};

// Reads big-endian fields from a bounded span; `ok` turns false at the first field that
// does not fit or holds an impossible value, and every later read returns zeros.
struct Reader {
    std::span<const uint8_t> in;
    size_t at = 0;
    bool ok = true;
    bool need(size_t bytes) {
        if (!ok || in.size() - at < bytes) ok = false;
        return ok;
    }
    uint8_t u8_value() { return need(1) ? in[at++] : 0; }
    void u8(uint8_t& value) { value = u8_value(); }
    void u16(uint16_t& value) {
        value = need(2) ? uint16_t(in[at] << 8 | in[at + 1]) : 0;
        if (ok) at += 2;
    }
    void u64(uint64_t& value) {
        value = 0;
        if (!need(8)) return;
        for (int i = 0; i < 8; ++i) value = value << 8 | in[at++];
    }
    void i64(int64_t& value) {
        uint64_t raw = 0;
        u64(raw);
        value = int64_t(raw);
    }
    void str(std::string& value) {
        size_t length = u8_value();
        value.clear();
        if (!need(length)) return;
        value.assign(reinterpret_cast<const char*>(in.data() + at), length);
        at += length;
    }
    void flag(bool& value) {
        uint8_t raw = u8_value();
        if (raw > 1) ok = false;
        value = raw == 1;
    }
    void role(cluster::Role& value) {
        uint8_t raw = u8_value();
        if (raw > uint8_t(cluster::Role::Replica)) ok = false;
        value = cluster::Role(ok ? raw : 0);
    }
    void state(MemberState& value) {
        uint8_t raw = u8_value();
        if (raw > uint8_t(MemberState::Dead)) ok = false;
        value = MemberState(ok ? raw : 0);
    }
    void nodes(std::vector<NodeView>& value);
};

template <typename Io>
void node_fields(Io& io, NodeView& node) {
    io.str(node.name);
    io.flag(node.healthy);
    io.role(node.role);
    io.u64(node.replay_lsn);
    io.u64(node.current_lsn);
}

void Writer::nodes(std::vector<NodeView>& value) {
    if (value.size() > view_nodes_max) ok = false;
    u16(uint16_t(value.size()));
    for (NodeView& node : value) node_fields(*this, node);
}

void Reader::nodes(std::vector<NodeView>& value) {
    uint16_t count = 0;
    u16(count);
    value.clear();
    if (count > view_nodes_max) ok = false;
    for (uint16_t i = 0; ok && i < count; ++i) node_fields(*this, value.emplace_back());
}

template <typename Io>
void ballot_fields(Io& io, Ballot& ballot) {
    io.u64(ballot.round);
    io.str(ballot.proposer);
}

// The body of each record kind, in wire order: the single list both directions follow.
template <typename Io>
bool body_fields(Io& io, Record& r) {
    switch (r.kind) {
        case RecordKind::Ping:
        case RecordKind::Ack:
        case RecordKind::PingReq:
            io.u64(r.id);
            io.str(r.address);
            return true;
        case RecordKind::Member:
            io.str(r.address);
            io.state(r.state);
            io.u64(r.incarnation);
            io.u64(r.boot);
            return true;
        case RecordKind::View:
            io.str(r.address);
            io.str(r.cluster);
            io.i64(r.age_ms);
            io.nodes(r.nodes);
            return true;
        case RecordKind::State:
            io.str(r.address);
            io.str(r.cluster);
            io.u64(r.epoch);
            io.str(r.node);
            io.u64(r.id);
            return true;
        case RecordKind::Prepare:
        case RecordKind::Promise:
        case RecordKind::Accept:
        case RecordKind::Accepted:
        case RecordKind::Reject:
            io.str(r.cluster);
            io.u64(r.epoch);
            ballot_fields(io, r.ballot);
            ballot_fields(io, r.accepted);
            io.str(r.node);
            io.u64(r.id);
            return true;
        case RecordKind::LeaseRequest:
        case RecordKind::LeaseGrant:
            io.str(r.cluster);
            io.u64(r.epoch);
            io.str(r.node);
            io.u64(r.id);
            return true;
        case RecordKind::Cancel:
            io.u64(r.id);
            return true;
        case RecordKind::Demand:
            io.str(r.node);
            io.u64(r.id);
            io.u64(r.epoch);
            io.u64(r.boot);
            return true;
    }
    return false;  // an unknown kind byte read from the wire
}

bool known_kind(uint8_t raw) {
    return raw >= uint8_t(RecordKind::Ping) && raw <= uint8_t(RecordKind::Demand);
}

template <typename Io>
void header_fields(Io& io, Header& header) {
    io.str(header.sender);
    io.str(header.receiver);
    io.u64(header.boot);
    io.u64(header.seq);
    io.u64(header.incarnation);
    io.u64(header.receiver_boot);
}

void seal(std::span<const uint8_t> key, std::span<const uint8_t> body, uint8_t* mac) {
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), body.data(), body.size(), mac, &length);
}

bool write_record(Writer& writer, const Record& record) {
    Record copy = record;  // body_fields takes a mutable record for the reader's sake
    writer.u8(uint8_t(record.kind));
    size_t length_at = writer.out.size();
    writer.u16(0);
    body_fields(writer, copy);
    size_t length = writer.out.size() - length_at - 2;
    if (length > 0xffff) return false;
    writer.out[length_at] = uint8_t(length >> 8);
    writer.out[length_at + 1] = uint8_t(length);
    return writer.ok;
}

bool read_record(Reader& reader, Record& record) {
    uint8_t kind = reader.u8_value();
    uint16_t length = 0;
    reader.u16(length);
    if (!reader.ok || !known_kind(kind) || !reader.need(length)) return false;
    Reader body{reader.in.subspan(reader.at, length)};
    record.kind = RecordKind(kind);
    body_fields(body, record);
    reader.at += length;
    return body.ok && body.at == length;  // a body must be read exactly
}

}  // namespace

const char* to_string(RecordKind kind) {
    switch (kind) {
        case RecordKind::Ping:
            return "Ping";
        case RecordKind::Ack:
            return "Ack";
        case RecordKind::PingReq:
            return "PingReq";
        case RecordKind::Member:
            return "Member";
        case RecordKind::View:
            return "View";
        case RecordKind::State:
            return "State";
        case RecordKind::Prepare:
            return "Prepare";
        case RecordKind::Promise:
            return "Promise";
        case RecordKind::Accept:
            return "Accept";
        case RecordKind::Accepted:
            return "Accepted";
        case RecordKind::Reject:
            return "Reject";
        case RecordKind::LeaseRequest:
            return "LeaseRequest";
        case RecordKind::LeaseGrant:
            return "LeaseGrant";
        case RecordKind::Cancel:
            return "Cancel";
        case RecordKind::Demand:
            return "Demand";
    }
    return "?";
}

size_t record_size(const Record& record) {
    std::vector<uint8_t> scratch;
    Writer writer{scratch};
    write_record(writer, record);
    return scratch.size();
}

bool encode(const Header& header, std::span<const Record> records, std::span<const uint8_t> key,
            std::vector<uint8_t>& out) {
    out.clear();
    Writer writer{out};
    for (uint8_t byte : magic) writer.u8(byte);
    writer.u8(wire_version);
    Header copy = header;
    header_fields(writer, copy);
    writer.u16(uint16_t(records.size()));
    bool ok = writer.ok && records.size() <= 0xffff;
    for (size_t i = 0; ok && i < records.size(); ++i) ok = write_record(writer, records[i]);
    if (!ok || out.size() + mac_bytes > datagram_bytes_max) {
        out.clear();
        return false;
    }
    size_t body = out.size();
    out.resize(body + mac_bytes);
    seal(key, std::span(out.data(), body), out.data() + body);
    return true;
}

DecodeResult decode(std::span<const uint8_t> bytes, std::span<const uint8_t> key, Header& header,
                    std::vector<Record>& records) {
    records.clear();
    if (bytes.size() < 4 + 1 + mac_bytes || bytes.size() > datagram_bytes_max)
        return DecodeResult::Forged;
    size_t body = bytes.size() - mac_bytes;
    uint8_t mac[mac_bytes];
    seal(key, bytes.first(body), mac);
    if (CRYPTO_memcmp(mac, bytes.data() + body, mac_bytes) != 0) return DecodeResult::Forged;
    Reader reader{bytes.first(body)};
    if (std::memcmp(bytes.data(), magic, 4) != 0) return DecodeResult::Malformed;
    reader.at = 4;
    if (reader.u8_value() != wire_version) return DecodeResult::Malformed;
    header_fields(reader, header);
    uint16_t count = 0;
    reader.u16(count);
    for (uint16_t i = 0; reader.ok && i < count; ++i) {
        if (!read_record(reader, records.emplace_back())) reader.ok = false;
    }
    if (!reader.ok || reader.at != body) {
        records.clear();
        return DecodeResult::Malformed;
    }
    return DecodeResult::Ok;
}

ReplayGuard::Verdict ReplayGuard::check(uint64_t boot, uint64_t seq) const {
    if (boot < boot_) return Verdict::OldBoot;
    if (boot > boot_ || seq > top_) return seq == 0 ? Verdict::Replayed : Verdict::Fresh;
    uint64_t behind = top_ - seq;
    if (behind >= replay_window) return Verdict::Replayed;
    return (bitmap_ >> behind) & 1 ? Verdict::Replayed : Verdict::Fresh;
}

void ReplayGuard::accept(uint64_t boot, uint64_t seq) {
    if (boot > boot_) {
        boot_ = boot;
        top_ = 0;
        bitmap_ = 0;
    }
    if (seq > top_) {
        uint64_t shift = seq - top_;
        bitmap_ = shift >= replay_window ? 0 : bitmap_ << shift;
        top_ = seq;
    }
    bitmap_ |= uint64_t(1) << (top_ - seq);
}

}  // namespace pgplex::gossip
