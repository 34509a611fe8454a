// The framer: messages cut out of a byte stream however the stream is split into buffers,
// each forwarded, dropped or assembled as its handler decides, and every length refused
// as soon as its header is complete.
#include <criterion/criterion.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "pgplex/base/limits.h"
#include "pgplex/proto/frame.h"
#include "pgplex/proto/message.h"

using namespace std::literals;
using pgplex::proto::BackendMessage;
using pgplex::proto::Direction;
using pgplex::proto::Fate;
using pgplex::proto::FeedResult;
using pgplex::proto::FeedStatus;
using pgplex::proto::FrameState;
using pgplex::proto::FrontendMessage;
using pgplex::proto::Verdict;
namespace limits = pgplex::limits;

namespace {

using Bytes = std::vector<uint8_t>;

struct Message {
    uint8_t type;
    Bytes body;
    bool operator==(const Message&) const = default;
};

// A handler that does what it is told per type byte and records everything it sees.
struct Recorder {
    Fate fates[256];
    bool pause_after[256] = {};
    int holds_left[256] = {};  // Hold this many times before taking fates[type]
    bool refuse_assembly = false;

    Bytes forwarded;  // every forwarded byte, concatenated
    int forward_calls_from_stash = 0;
    std::vector<Message> messages;
    std::vector<std::pair<uint8_t, uint32_t>> headers;  // decided headers, in order
    int on_header_calls = 0;
    int assembly_calls = 0;
    uint32_t assembly_size = 0;
    Bytes storage;
    const uint8_t* last_body = nullptr;

    Recorder() {
        for (Fate& fate : fates) fate = Fate::Forward;
    }

    Fate on_header(uint8_t type, uint32_t length) {
        ++on_header_calls;
        if (holds_left[type] > 0) {
            --holds_left[type];
            return Fate::Hold;
        }
        headers.emplace_back(type, length);
        return fates[type];
    }
    void forward(const uint8_t* data, uint32_t size, bool from_stash) {
        if (from_stash) ++forward_calls_from_stash;
        forwarded.insert(forwarded.end(), data, data + size);
    }
    uint8_t* assembly(uint32_t body_size) {
        ++assembly_calls;
        assembly_size = body_size;
        if (refuse_assembly) return nullptr;
        storage.assign(body_size, 0xee);
        return storage.data();
    }
    Verdict on_message(uint8_t type, const uint8_t* body, uint32_t body_size) {
        last_body = body;
        messages.push_back({type, Bytes(body, body + body_size)});
        return pause_after[type] ? Verdict::Pause : Verdict::Continue;
    }

    // Head: what on_head saw, and what it says of the rest. It forwards '#', the type
    // byte and the head, standing in for a rewritten header.
    Fate head_rest = Fate::Forward;
    std::vector<Message> heads;
    uint32_t head_body_size = 0;
    Fate on_head(uint8_t type, const uint8_t* head, uint32_t head_size, uint32_t body_size) {
        heads.push_back({type, Bytes(head, head + head_size)});
        head_body_size = body_size;
        forwarded.push_back('#');
        forwarded.push_back(type);
        forwarded.insert(forwarded.end(), head, head + head_size);
        return head_rest;
    }

    void set(uint8_t type, Fate fate) { fates[type] = fate; }
};

uint8_t t(FrontendMessage type) { return static_cast<uint8_t>(type); }
uint8_t t(BackendMessage type) { return static_cast<uint8_t>(type); }

void append_be32(Bytes& out, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(value >> shift));
}

// One message as on the wire; `length` overrides the length word when non-zero.
Bytes message(uint8_t type, std::string_view body, uint32_t length = 0) {
    Bytes out{type};
    append_be32(out, length != 0 ? length : uint32_t(body.size() + 4));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
}

// The extended-query flow of a client: Query, Parse, Bind, Execute, Sync, Terminate.
Bytes frontend_stream() {
    return concat({
        message(t(FrontendMessage::Query), "select 1\0"sv),
        message(t(FrontendMessage::Parse), "\0select $1::int\0\0\0"sv),
        message(t(FrontendMessage::Bind), "\0\0\0\0\0\0\0\0"sv),
        message(t(FrontendMessage::Execute), "\0\0\0\0\0"sv),
        message(t(FrontendMessage::Sync), ""sv),
        message(t(FrontendMessage::Terminate), ""sv),
    });
}

// A server's answer to a simple query.
Bytes backend_stream() {
    return concat({
        message(t(BackendMessage::RowDescription),
                "\0\1?column?\0\0\0\0\0\0\0\0\0\0\x17\0\4\xff\xff\xff\xff\0\0"sv),
        message(t(BackendMessage::DataRow), "\0\1\0\0\0\1" "1"sv),
        message(t(BackendMessage::CommandComplete), "SELECT 1\0"sv),
        message(t(BackendMessage::ParameterStatus), "TimeZone\0UTC\0"sv),
        message(t(BackendMessage::ReadyForQuery), "I"sv),
    });
}

// One of each fate over the frontend stream.
void mixed_frontend_fates(Recorder& recorder) {
    recorder.set(t(FrontendMessage::Query), Fate::Forward);
    recorder.set(t(FrontendMessage::Parse), Fate::Drop);
    recorder.set(t(FrontendMessage::Bind), Fate::Inspect);
    recorder.set(t(FrontendMessage::Execute), Fate::ForwardInspect);
    recorder.set(t(FrontendMessage::Sync), Fate::Inspect);
    recorder.set(t(FrontendMessage::Terminate), Fate::Forward);
}

void mixed_backend_fates(Recorder& recorder) {
    recorder.set(t(BackendMessage::RowDescription), Fate::Drop);
    recorder.set(t(BackendMessage::DataRow), Fate::Forward);
    recorder.set(t(BackendMessage::CommandComplete), Fate::Inspect);
    recorder.set(t(BackendMessage::ParameterStatus), Fate::ForwardInspect);
    recorder.set(t(BackendMessage::ReadyForQuery), Fate::ForwardInspect);
}

// Feeds `stream` cut at `cuts` (increasing offsets), each piece in its own heap buffer so
// ASan sees any read past it. Paused feeds are resumed with the rest of their buffer.
void feed_pieces(FrameState& state, Direction direction, const Bytes& stream,
                 const std::vector<uint32_t>& cuts, Recorder& recorder) {
    uint32_t start = 0;
    for (size_t i = 0; i <= cuts.size(); ++i) {
        uint32_t end = i < cuts.size() ? cuts[i] : uint32_t(stream.size());
        Bytes piece(stream.begin() + start, stream.begin() + end);
        uint32_t at = 0;
        for (int guard = 0; guard < 1000; ++guard) {
            FeedResult result = pgplex::proto::feed(state, direction, piece.data() + at,
                                                    end - start - at, recorder);
            cr_assert_neq(result.status, FeedStatus::Violation, "violation: %s", result.reason);
            at += result.consumed;
            if (result.status == FeedStatus::Done) break;
        }
        cr_assert_eq(at, end - start, "piece [%u, %u) not wholly consumed", start, end);
        start = end;
    }
}

struct Output {
    Bytes forwarded;
    std::vector<Message> messages;
    std::vector<std::pair<uint8_t, uint32_t>> headers;
    bool operator==(const Output&) const = default;
};

template <typename SetFates>
Output run(Direction direction, const Bytes& stream, const std::vector<uint32_t>& cuts,
           SetFates set_fates) {
    FrameState state;
    Recorder recorder;
    set_fates(recorder);
    feed_pieces(state, direction, stream, cuts, recorder);
    cr_assert(state.between_messages());
    return {recorder.forwarded, recorder.messages, recorder.headers};
}

FeedResult feed_once(FrameState& state, Direction direction, const Bytes& bytes,
                     Recorder& recorder) {
    return pgplex::proto::feed(state, direction, bytes.data(), uint32_t(bytes.size()), recorder);
}

// Feeds one message alone and returns the result.
FeedResult feed_alone(Direction direction, const Bytes& bytes, Recorder& recorder) {
    FrameState state;
    return feed_once(state, direction, bytes, recorder);
}

}  // namespace

Test(frame, messages_in_one_buffer_are_forwarded_byte_exact) {
    Bytes stream = frontend_stream();
    FrameState state;
    Recorder recorder;
    FeedResult result = feed_once(state, Direction::Frontend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, stream.size());
    cr_assert(recorder.forwarded == stream);
    cr_assert_eq(recorder.headers.size(), 6);
    cr_assert_eq(recorder.headers[0].first, t(FrontendMessage::Query));
    cr_assert_eq(recorder.headers[0].second, 4 + 9);
    cr_assert_eq(recorder.forward_calls_from_stash, 0);
    cr_assert(recorder.messages.empty());
    cr_assert(state.between_messages());
}

Test(frame, server_responses_in_one_buffer_are_forwarded_byte_exact) {
    Bytes stream = backend_stream();
    FrameState state;
    Recorder recorder;
    FeedResult result = feed_once(state, Direction::Backend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, stream.size());
    cr_assert(recorder.forwarded == stream);
    cr_assert_eq(recorder.headers.size(), 5);
}

Test(frame, every_split_into_two_buffers_gives_the_same_output) {
    struct Case {
        Direction direction;
        Bytes stream;
        void (*fates)(Recorder&);
    };
    Case cases[] = {
        {Direction::Frontend, frontend_stream(), [](Recorder&) {}},
        {Direction::Frontend, frontend_stream(), mixed_frontend_fates},
        {Direction::Backend, backend_stream(), [](Recorder&) {}},
        {Direction::Backend, backend_stream(), mixed_backend_fates},
    };
    for (const Case& c : cases) {
        Output whole = run(c.direction, c.stream, {}, c.fates);
        cr_assert(!whole.headers.empty());
        for (uint32_t cut = 0; cut <= c.stream.size(); ++cut) {
            Output split = run(c.direction, c.stream, {cut}, c.fates);
            cr_assert(split == whole, "split at %u differs", cut);
        }
    }
}

Test(frame, one_byte_at_a_time_gives_the_same_output) {
    Bytes frontend = frontend_stream();
    Bytes backend = backend_stream();
    std::vector<uint32_t> every_frontend_byte, every_backend_byte;
    for (uint32_t i = 1; i < frontend.size(); ++i) every_frontend_byte.push_back(i);
    for (uint32_t i = 1; i < backend.size(); ++i) every_backend_byte.push_back(i);

    Output whole = run(Direction::Frontend, frontend, {}, mixed_frontend_fates);
    Output bytewise = run(Direction::Frontend, frontend, every_frontend_byte, mixed_frontend_fates);
    cr_assert(bytewise == whole);
    cr_assert_eq(whole.messages.size(), 3);  // Bind, Execute, Sync
    cr_assert_eq(whole.messages[2].type, t(FrontendMessage::Sync));

    whole = run(Direction::Backend, backend, {}, mixed_backend_fates);
    bytewise = run(Direction::Backend, backend, every_backend_byte, mixed_backend_fates);
    cr_assert(bytewise == whole);
    cr_assert_eq(whole.messages.size(), 3);  // CommandComplete, ParameterStatus, ReadyForQuery
}

Test(frame, every_three_way_split_gives_the_same_output) {
    Bytes stream = backend_stream();
    Output whole = run(Direction::Backend, stream, {}, mixed_backend_fates);
    for (uint32_t a = 0; a <= stream.size(); ++a)
        for (uint32_t b = a; b <= stream.size(); ++b)
            cr_assert(run(Direction::Backend, stream, {a, b}, mixed_backend_fates) == whole,
                      "split at %u, %u differs", a, b);
}

Test(frame, header_straddling_two_buffers_is_forwarded_from_the_stash) {
    Bytes query = message(t(FrontendMessage::Query), "select 1\0"sv);
    Bytes first(query.begin(), query.begin() + 3);
    Bytes second(query.begin() + 3, query.end());
    FrameState state;
    Recorder recorder;
    FeedResult result = feed_once(state, Direction::Frontend, first, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, 3);
    cr_assert(recorder.forwarded.empty(), "nothing is forwarded before the header is whole");
    cr_assert_eq(recorder.on_header_calls, 0);

    result = feed_once(state, Direction::Frontend, second, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, second.size());
    cr_assert_eq(recorder.forward_calls_from_stash, 1);
    cr_assert(recorder.forwarded == query);
    cr_assert(state.between_messages());
}

Test(frame, header_straddling_two_buffers_is_dropped_whole) {
    Bytes stream = concat({message(t(FrontendMessage::Parse), "\0select 1\0\0\0"sv),
                           message(t(FrontendMessage::Sync), ""sv)});
    Recorder recorder;
    recorder.set(t(FrontendMessage::Parse), Fate::Drop);
    FrameState state;
    feed_pieces(state, Direction::Frontend, stream, {2}, recorder);
    cr_assert_eq(recorder.forward_calls_from_stash, 0);
    cr_assert(recorder.forwarded == message(t(FrontendMessage::Sync), ""sv));
    cr_assert_eq(recorder.headers.size(), 2);
}

Test(frame, inspected_body_across_buffers_is_assembled) {
    Bytes status = message(t(BackendMessage::ParameterStatus), "client_encoding\0UTF8\0"sv);
    Recorder recorder;
    recorder.set(t(BackendMessage::ParameterStatus), Fate::Inspect);
    FrameState state;
    feed_pieces(state, Direction::Backend, status, {5 + 3, 5 + 10}, recorder);
    cr_assert_eq(recorder.assembly_calls, 1);
    cr_assert_eq(recorder.assembly_size, status.size() - 5);
    cr_assert_eq(recorder.messages.size(), 1);
    cr_assert(recorder.messages[0].body == Bytes(status.begin() + 5, status.end()));
    cr_assert_eq(recorder.last_body, recorder.storage.data());
    cr_assert(recorder.forwarded.empty(), "an inspected message is not passed on");
}

Test(frame, inspected_body_whole_in_one_buffer_is_given_in_place) {
    Bytes status = message(t(BackendMessage::ParameterStatus), "DateStyle\0ISO, MDY\0"sv);
    // Whole with its header, and whole after a header that came in an earlier buffer.
    for (uint32_t cut : {0u, 2u, 5u}) {
        Recorder recorder;
        recorder.set(t(BackendMessage::ParameterStatus), Fate::Inspect);
        FrameState state;
        Bytes head(status.begin(), status.begin() + cut);
        Bytes rest(status.begin() + cut, status.end());
        FeedResult result = feed_once(state, Direction::Backend, head, recorder);
        cr_assert_eq(result.status, FeedStatus::Done);
        result = feed_once(state, Direction::Backend, rest, recorder);
        cr_assert_eq(result.status, FeedStatus::Done);
        cr_assert_eq(recorder.assembly_calls, 0, "cut %u: nothing to assemble", cut);
        cr_assert_eq(recorder.messages.size(), 1);
        cr_assert_eq(recorder.last_body, rest.data() + (5 - cut));
        cr_assert(recorder.messages[0].body == Bytes(status.begin() + 5, status.end()));
    }
}

Test(frame, forward_inspect_both_forwards_and_delivers) {
    Bytes ready = message(t(BackendMessage::ReadyForQuery), "T"sv);
    Bytes stream = concat({message(t(BackendMessage::CommandComplete), "COMMIT\0"sv), ready});
    for (uint32_t cut = 0; cut <= stream.size(); ++cut) {
        Output out = run(Direction::Backend, stream, {cut}, [](Recorder& recorder) {
            recorder.set(t(BackendMessage::ReadyForQuery), Fate::ForwardInspect);
        });
        cr_assert(out.forwarded == stream, "cut %u", cut);
        cr_assert_eq(out.messages.size(), 1);
        cr_assert_eq(out.messages[0].type, t(BackendMessage::ReadyForQuery));
        cr_assert(out.messages[0].body == Bytes{'T'});
    }
}

Test(frame, length_below_four_is_a_violation) {
    Recorder recorder;
    FeedResult result =
        feed_alone(Direction::Frontend, message(t(FrontendMessage::Query), ""sv, 3), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "invalid message length");
    cr_assert_eq(recorder.on_header_calls, 0);
    result = feed_alone(Direction::Backend, message(t(BackendMessage::DataRow), ""sv, 3), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_eq(recorder.on_header_calls, 0);
}

Test(frame, fixed_size_messages_must_have_exactly_their_length) {
    struct Case {
        Direction direction;
        uint8_t type;
        uint32_t length;
    };
    Case cases[] = {
        {Direction::Frontend, t(FrontendMessage::Sync), 4},
        {Direction::Frontend, t(FrontendMessage::Flush), 4},
        {Direction::Frontend, t(FrontendMessage::Terminate), 4},
        {Direction::Frontend, t(FrontendMessage::CopyDone), 4},
        {Direction::Backend, t(BackendMessage::ReadyForQuery), 5},
        {Direction::Backend, t(BackendMessage::BackendKeyData), 12},
        {Direction::Backend, t(BackendMessage::ParseComplete), 4},
        {Direction::Backend, t(BackendMessage::BindComplete), 4},
        {Direction::Backend, t(BackendMessage::NoData), 4},
    };
    for (const Case& c : cases) {
        Bytes body(c.length - 4 + 1, 'x');
        std::string_view exact(reinterpret_cast<const char*>(body.data()), c.length - 4);
        std::string_view over(reinterpret_cast<const char*>(body.data()), c.length - 3);
        Recorder recorder;
        FeedResult result = feed_alone(c.direction, message(c.type, exact), recorder);
        cr_assert_eq(result.status, FeedStatus::Done, "%c length %u", c.type, c.length);
        cr_assert_eq(result.consumed, 1 + c.length);

        result = feed_alone(c.direction, message(c.type, over), recorder);
        cr_assert_eq(result.status, FeedStatus::Violation, "%c one over", c.type);
        cr_assert_str_eq(result.reason, "message too long for its type");
        cr_assert_eq(result.consumed, 5, "refused at the header");

        if (c.length > 4) {
            result = feed_alone(c.direction, message(c.type, exact.substr(1)), recorder);
            cr_assert_eq(result.status, FeedStatus::Violation, "%c one under", c.type);
            cr_assert_str_eq(result.reason, "invalid message length");
        }
        cr_assert_eq(recorder.on_header_calls, 1, "only the exact length reaches the handler");
    }
}

Test(frame, variable_messages_below_their_minimum_are_violations) {
    Recorder recorder;
    // Execute is at least a portal name's terminator and a row count.
    FeedResult result = feed_alone(Direction::Frontend,
                                   message(t(FrontendMessage::Execute), "\0\0\0\0"sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    result = feed_alone(Direction::Frontend,
                        message(t(FrontendMessage::Execute), "\0\0\0\0\0"sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    // Query is at least its terminator.
    result = feed_alone(Direction::Frontend, message(t(FrontendMessage::Query), ""sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
}

Test(frame, small_messages_at_the_limit_are_accepted) {
    Recorder recorder;
    FrameState state;
    Bytes header = message(t(FrontendMessage::Execute), ""sv, limits::small_message_bytes_max);
    FeedResult result = feed_once(state, Direction::Frontend, header, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, 5);
    cr_assert_eq(recorder.on_header_calls, 1);
    cr_assert_eq(state.body_left, limits::small_message_bytes_max - 4);
}

Test(frame, execute_one_byte_over_the_small_limit_is_refused_before_its_body) {
    Recorder recorder;
    FrameState state;
    // Only the header is fed: the refusal must not wait for any of the body.
    Bytes header = message(t(FrontendMessage::Execute), ""sv, limits::small_message_bytes_max + 1);
    cr_assert_eq(header.size(), 5);
    FeedResult result = feed_once(state, Direction::Frontend, header, recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "message too long for its type");
    cr_assert_eq(result.consumed, 5);
    cr_assert_eq(recorder.on_header_calls, 0);
    cr_assert(recorder.forwarded.empty());
}

Test(frame, large_messages_at_the_protocol_limit_are_accepted_and_one_over_refused) {
    Recorder recorder;
    FeedResult result = feed_alone(
        Direction::Frontend, message(t(FrontendMessage::Query), ""sv, limits::message_bytes_max),
        recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    result = feed_alone(Direction::Frontend,
                        message(t(FrontendMessage::Query), ""sv, limits::message_bytes_max + 1),
                        recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    result = feed_alone(Direction::Backend,
                        message(t(BackendMessage::DataRow), ""sv, 0xffffffffu), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "message too long for its type");
}

Test(frame, unknown_message_types_are_violations) {
    Recorder recorder;
    FeedResult result = feed_alone(Direction::Frontend, message('!', "x"sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "invalid frontend message type");
    // ReadyForQuery is a backend message only.
    result = feed_alone(Direction::Frontend, message(t(BackendMessage::ReadyForQuery), "I"sv),
                        recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "invalid frontend message type");

    result = feed_alone(Direction::Backend, message('!', "x"sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "invalid backend message type");
    // Parse is a frontend message only.
    result = feed_alone(Direction::Backend, message(t(FrontendMessage::Parse), "\0x\0\0\0"sv),
                        recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "invalid backend message type");
    // A NUL where a type byte belongs, as when a startup packet arrives mid-session.
    result = feed_alone(Direction::Frontend, message(0, "\0\3\0\0"sv), recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_eq(recorder.on_header_calls, 0);
}

Test(frame, violation_after_good_messages_reports_them_consumed) {
    Bytes good = message(t(FrontendMessage::Sync), ""sv);
    Bytes stream = concat({good, message('!', "x"sv)});
    Recorder recorder;
    FeedResult result = feed_alone(Direction::Frontend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert(recorder.forwarded == good);
    cr_assert_geq(result.consumed, good.size());
}

Test(frame, hold_pauses_at_the_start_of_the_held_header) {
    Bytes query = message(t(FrontendMessage::Query), "begin\0"sv);
    Bytes sync = message(t(FrontendMessage::Sync), ""sv);
    Bytes stream = concat({query, sync});
    FrameState state;
    Recorder recorder;
    recorder.holds_left[t(FrontendMessage::Sync)] = 1;
    FeedResult result = feed_once(state, Direction::Frontend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, query.size());
    cr_assert(recorder.forwarded == query);
    cr_assert(state.between_messages());

    Bytes rest(stream.begin() + result.consumed, stream.end());
    result = feed_once(state, Direction::Frontend, rest, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, sync.size());
    cr_assert(recorder.forwarded == stream);
    cr_assert_eq(recorder.on_header_calls, 3);
}

Test(frame, held_header_straddling_buffers_is_decided_again_on_the_next_feed) {
    Bytes query = message(t(FrontendMessage::Query), "select 2\0"sv);
    Bytes first(query.begin(), query.begin() + 2);
    Bytes second(query.begin() + 2, query.end());
    FrameState state;
    Recorder recorder;
    recorder.holds_left[t(FrontendMessage::Query)] = 2;
    FeedResult result = feed_once(state, Direction::Frontend, first, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, 2);

    // The header's tail is taken into the stash; the body stays in the buffer.
    result = feed_once(state, Direction::Frontend, second, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, 3);
    cr_assert(recorder.forwarded.empty());
    Bytes body(second.begin() + 3, second.end());

    // Held again without taking a byte.
    result = feed_once(state, Direction::Frontend, body, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, 0);

    result = feed_once(state, Direction::Frontend, body, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, body.size());
    cr_assert_eq(recorder.forward_calls_from_stash, 1);
    cr_assert(recorder.forwarded == query);
    cr_assert_eq(recorder.on_header_calls, 3);
    cr_assert(state.between_messages());
}

Test(frame, held_header_ending_its_buffer_is_decided_on_an_empty_feed) {
    // Sync has no body: once released, nothing more need arrive for it to be passed on.
    Bytes sync = message(t(FrontendMessage::Sync), ""sv);
    FrameState state;
    Recorder recorder;
    recorder.holds_left[t(FrontendMessage::Sync)] = 1;
    recorder.set(t(FrontendMessage::Sync), Fate::Inspect);
    Bytes first(sync.begin(), sync.begin() + 1);
    Bytes second(sync.begin() + 1, sync.end());
    cr_assert_eq(feed_once(state, Direction::Frontend, first, recorder).status, FeedStatus::Done);
    FeedResult result = feed_once(state, Direction::Frontend, second, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, 4);

    result = pgplex::proto::feed(state, Direction::Frontend, second.data() + 4, 0, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, 0);
    cr_assert_eq(recorder.messages.size(), 1);
    cr_assert(state.between_messages());
}

Test(frame, pause_from_on_message_stops_after_that_message) {
    Bytes query = message(t(FrontendMessage::Query), "select 3\0"sv);
    Bytes terminate = message(t(FrontendMessage::Terminate), ""sv);
    Bytes sync = message(t(FrontendMessage::Sync), ""sv);
    Bytes stream = concat({query, terminate, sync});
    FrameState state;
    Recorder recorder;
    recorder.set(t(FrontendMessage::Terminate), Fate::Inspect);
    recorder.pause_after[t(FrontendMessage::Terminate)] = true;
    FeedResult result = feed_once(state, Direction::Frontend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, query.size() + terminate.size());
    cr_assert(recorder.forwarded == query, "nothing after the paused message is passed on");
    cr_assert_eq(recorder.messages.size(), 1);
    cr_assert_eq(recorder.headers.size(), 2);
    cr_assert(state.between_messages());

    Bytes rest(stream.begin() + result.consumed, stream.end());
    result = feed_once(state, Direction::Frontend, rest, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert(recorder.forwarded == concat({query, sync}));
}

Test(frame, pause_after_an_assembled_message_reports_its_last_byte_consumed) {
    Bytes status = message(t(BackendMessage::ParameterStatus), "is_superuser\0off\0"sv);
    Bytes ready = message(t(BackendMessage::ReadyForQuery), "I"sv);
    Bytes stream = concat({status, ready});
    FrameState state;
    Recorder recorder;
    recorder.set(t(BackendMessage::ParameterStatus), Fate::Inspect);
    recorder.pause_after[t(BackendMessage::ParameterStatus)] = true;
    Bytes first(stream.begin(), stream.begin() + 9);
    Bytes second(stream.begin() + 9, stream.end());
    cr_assert_eq(feed_once(state, Direction::Backend, first, recorder).status, FeedStatus::Done);
    FeedResult result = feed_once(state, Direction::Backend, second, recorder);
    cr_assert_eq(result.status, FeedStatus::Paused);
    cr_assert_eq(result.consumed, status.size() - 9);
    cr_assert(recorder.messages[0].body == Bytes(status.begin() + 5, status.end()));
}

Test(frame, zero_length_bodies_are_delivered_to_inspect) {
    Bytes stream = concat({message(t(FrontendMessage::Sync), ""sv),
                           message(t(FrontendMessage::Flush), ""sv)});
    for (uint32_t cut = 0; cut <= stream.size(); ++cut) {
        Output out = run(Direction::Frontend, stream, {cut}, [](Recorder& recorder) {
            recorder.set(t(FrontendMessage::Sync), Fate::Inspect);
            recorder.set(t(FrontendMessage::Flush), Fate::ForwardInspect);
        });
        cr_assert_eq(out.messages.size(), 2, "cut %u", cut);
        cr_assert_eq(out.messages[0].type, t(FrontendMessage::Sync));
        cr_assert(out.messages[0].body.empty());
        cr_assert_eq(out.messages[1].type, t(FrontendMessage::Flush));
        cr_assert(out.forwarded == message(t(FrontendMessage::Flush), ""sv));
    }
}

Test(frame, refused_assembly_is_a_violation_and_forwards_nothing_unconsumed) {
    Bytes status = message(t(BackendMessage::ParameterStatus), "application_name\0psql\0"sv);
    FrameState state;
    Recorder recorder;
    recorder.set(t(BackendMessage::ParameterStatus), Fate::ForwardInspect);
    recorder.refuse_assembly = true;
    Bytes first(status.begin(), status.begin() + 8);
    FeedResult result = feed_once(state, Direction::Backend, first, recorder);
    cr_assert_eq(result.status, FeedStatus::Violation);
    cr_assert_str_eq(result.reason, "message too large");
    cr_assert_eq(recorder.assembly_calls, 1);
    cr_assert_eq(recorder.forwarded.size(), result.consumed);
}

Test(frame, dropped_and_inspected_bytes_are_consumed_but_not_forwarded) {
    Bytes stream = backend_stream();
    Recorder recorder;
    for (Fate& fate : recorder.fates) fate = Fate::Drop;
    FeedResult result = feed_alone(Direction::Backend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(result.consumed, stream.size());
    cr_assert(recorder.forwarded.empty());
    cr_assert(recorder.messages.empty());
}

namespace {

// A Bind whose body is `size` bytes: names first, then filler.
Bytes long_bind(uint32_t size) {
    std::string body("portal\0stmt\0"sv);
    while (body.size() < size) body.push_back(char('a' + body.size() % 26));
    return message(t(FrontendMessage::Bind), body);
}

}  // namespace

Test(frame, head_of_a_short_message_is_its_whole_body) {
    Bytes stream = concat({long_bind(40), message(t(FrontendMessage::Sync), ""sv)});
    Recorder recorder;
    recorder.set(t(FrontendMessage::Bind), Fate::Head);
    FeedResult result = feed_alone(Direction::Frontend, stream, recorder);
    cr_assert_eq(result.status, FeedStatus::Done);
    cr_assert_eq(recorder.heads.size(), 1);
    cr_assert_eq(recorder.heads[0].body.size(), 40);
    cr_assert_eq(recorder.head_body_size, 40);
    Bytes expected{'#', t(FrontendMessage::Bind)};
    expected.insert(expected.end(), stream.begin() + 5, stream.begin() + 45);
    expected.insert(expected.end(), stream.begin() + 45, stream.end());  // the Sync
    cr_assert(recorder.forwarded == expected);
}

Test(frame, head_of_a_long_message_is_cut_and_the_rest_forwarded_however_split) {
    Bytes bind = long_bind(3000);
    Bytes stream = concat({bind, message(t(FrontendMessage::Sync), ""sv)});
    Bytes expected{'#', t(FrontendMessage::Bind)};
    expected.insert(expected.end(), bind.begin() + 5, bind.end());
    expected.insert(expected.end(), stream.begin() + long(bind.size()), stream.end());
    for (uint32_t cut = 0; cut <= stream.size(); cut += 7) {
        FrameState state;
        Recorder recorder;
        recorder.set(t(FrontendMessage::Bind), Fate::Head);
        feed_pieces(state, Direction::Frontend, stream, {cut}, recorder);
        cr_assert_eq(recorder.heads.size(), 1, "cut %u", cut);
        cr_assert_eq(recorder.heads[0].body.size(), pgplex::proto::head_bytes_max);
        cr_assert(recorder.forwarded == expected, "cut %u", cut);
        cr_assert(state.between_messages());
    }
}

Test(frame, rest_of_a_head_message_may_be_dropped) {
    Bytes bind = long_bind(5000);
    Bytes stream = concat({bind, message(t(FrontendMessage::Sync), ""sv)});
    for (uint32_t cut : {3u, 700u, 1029u, 1030u, 4000u}) {
        FrameState state;
        Recorder recorder;
        recorder.set(t(FrontendMessage::Bind), Fate::Head);
        recorder.head_rest = Fate::Drop;
        feed_pieces(state, Direction::Frontend, stream, {cut}, recorder);
        Bytes expected{'#', t(FrontendMessage::Bind)};
        expected.insert(expected.end(), bind.begin() + 5, bind.begin() + 5 + 1024);
        expected.insert(expected.end(), stream.end() - 5, stream.end());
        cr_assert(recorder.forwarded == expected, "cut %u", cut);
    }
}

Test(frame, head_split_across_buffers_refused_storage_is_a_violation) {
    Bytes bind = long_bind(100);
    Recorder recorder;
    recorder.set(t(FrontendMessage::Bind), Fate::Head);
    recorder.refuse_assembly = true;
    FrameState state;
    FeedResult first = pgplex::proto::feed(state, Direction::Frontend, bind.data(), 20, recorder);
    cr_assert_eq(first.status, FeedStatus::Violation);
    cr_assert(recorder.forwarded.empty());
}
