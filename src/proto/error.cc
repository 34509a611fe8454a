// See error.h.
#include "pgplex/proto/error.h"

#include <cstring>

namespace pgplex::proto {

const char* to_string(Severity severity) {
    switch (severity) {
        case Severity::Error: return "ERROR";
        case Severity::Fatal: return "FATAL";
        case Severity::Notice: return "NOTICE";
        case Severity::Warning: return "WARNING";
        case Severity::Log: return "LOG";
    }
    return "ERROR";
}

void write_error(Writer& writer, Severity severity, const char* sqlstate, std::string_view message,
                 std::string_view detail, std::string_view hint) {
    bool is_error = severity == Severity::Error || severity == Severity::Fatal;
    writer.begin(is_error ? BackendMessage::ErrorResponse : BackendMessage::NoticeResponse);
    writer.int8('S');
    writer.cstring(to_string(severity));
    writer.int8('V');
    writer.cstring(to_string(severity));
    writer.int8('C');
    writer.cstring(sqlstate);
    writer.int8('M');
    writer.cstring(message);
    if (!detail.empty()) {
        writer.int8('D');
        writer.cstring(detail);
    }
    if (!hint.empty()) {
        writer.int8('H');
        writer.cstring(hint);
    }
    writer.int8(0);
    writer.end();
}

bool parse_error(const uint8_t* body, uint32_t size, ErrorFields& out) {
    out = ErrorFields{};
    uint32_t at = 0;
    while (at < size) {
        uint8_t field = body[at++];
        if (field == 0) return at == size;
        const void* nul = memchr(body + at, 0, size - at);
        if (nul == nullptr) return false;
        uint32_t end = uint32_t(static_cast<const uint8_t*>(nul) - body);
        std::string_view value(reinterpret_cast<const char*>(body + at), end - at);
        if (field == 'V') out.severity = value;
        else if (field == 'S' && out.severity.empty()) out.severity = value;
        else if (field == 'C') out.code = value;
        else if (field == 'M') out.message = value;
        at = end + 1;
    }
    return false;
}

void write_ready_for_query(Writer& writer, TransactionStatus status) {
    writer.begin(BackendMessage::ReadyForQuery);
    writer.int8(static_cast<uint8_t>(status));
    writer.end();
}

void write_parameter_status(Writer& writer, std::string_view name, std::string_view value) {
    writer.begin(BackendMessage::ParameterStatus);
    writer.cstring(name);
    writer.cstring(value);
    writer.end();
}

void write_backend_key_data(Writer& writer, uint32_t pid, uint32_t key) {
    writer.begin(BackendMessage::BackendKeyData);
    writer.int32(pid);
    writer.int32(key);
    writer.end();
}

void write_authentication(Writer& writer, AuthRequest request, const void* data, uint32_t size) {
    writer.begin(BackendMessage::Authentication);
    writer.int32(static_cast<uint32_t>(request));
    if (size > 0) writer.bytes(data, size);
    writer.end();
}

}  // namespace pgplex::proto
