// Per-type length limits for both directions (protocol-message-formats.html).
//
// Fixed-size messages must have exactly their size; messages PostgreSQL itself reads with
// PQ_SMALL_MESSAGE_LIMIT get that limit; the rest may be as long as any v3 message.
#include "pgplex/proto/message.h"

#include "pgplex/base/limits.h"

namespace pgplex::proto {

namespace {

struct Limits {
    uint32_t min;
    uint32_t max;
};

constexpr Limits kNone{0, 0};
constexpr Limits kSmall{4, limits::small_message_bytes_max};
constexpr Limits kLarge{4, limits::message_bytes_max};
constexpr Limits exactly(uint32_t length) { return {length, length}; }

Limits frontend_limits(uint8_t type) {
    switch (static_cast<FrontendMessage>(type)) {
        case FrontendMessage::Bind: return kLarge;
        case FrontendMessage::Close: return {6, limits::small_message_bytes_max};
        case FrontendMessage::CopyData: return kLarge;
        case FrontendMessage::CopyDone: return exactly(4);
        case FrontendMessage::CopyFail: return {5, limits::small_message_bytes_max};
        case FrontendMessage::Describe: return {6, limits::small_message_bytes_max};
        case FrontendMessage::Execute: return {9, limits::small_message_bytes_max};
        case FrontendMessage::Flush: return exactly(4);
        case FrontendMessage::FunctionCall: return kLarge;
        case FrontendMessage::Parse: return {8, limits::message_bytes_max};
        case FrontendMessage::PasswordMessage: return kSmall;
        case FrontendMessage::Query: return {5, limits::message_bytes_max};
        case FrontendMessage::Sync: return exactly(4);
        case FrontendMessage::Terminate: return exactly(4);
    }
    return kNone;
}

Limits backend_limits(uint8_t type) {
    switch (static_cast<BackendMessage>(type)) {
        case BackendMessage::Authentication: return {8, 65535 + 8};
        case BackendMessage::BackendKeyData: return exactly(12);
        case BackendMessage::BindComplete: return exactly(4);
        case BackendMessage::CloseComplete: return exactly(4);
        case BackendMessage::CommandComplete: return {5, limits::small_message_bytes_max};
        case BackendMessage::CopyData: return kLarge;
        case BackendMessage::CopyDone: return exactly(4);
        case BackendMessage::CopyInResponse: return {7, limits::message_bytes_max};
        case BackendMessage::CopyOutResponse: return {7, limits::message_bytes_max};
        case BackendMessage::CopyBothResponse: return {7, limits::message_bytes_max};
        case BackendMessage::DataRow: return {6, limits::message_bytes_max};
        case BackendMessage::EmptyQueryResponse: return exactly(4);
        case BackendMessage::ErrorResponse: return {5, limits::message_bytes_max};
        case BackendMessage::FunctionCallResponse: return {8, limits::message_bytes_max};
        case BackendMessage::NegotiateProtocolVersion: return {12, limits::small_message_bytes_max};
        case BackendMessage::NoData: return exactly(4);
        case BackendMessage::NoticeResponse: return {5, limits::message_bytes_max};
        case BackendMessage::NotificationResponse: return {10, limits::message_bytes_max};
        case BackendMessage::ParameterDescription: return {6, limits::message_bytes_max};
        case BackendMessage::ParameterStatus: return {6, limits::message_bytes_max};
        case BackendMessage::ParseComplete: return exactly(4);
        case BackendMessage::PortalSuspended: return exactly(4);
        case BackendMessage::ReadyForQuery: return exactly(5);
        case BackendMessage::RowDescription: return {6, limits::message_bytes_max};
    }
    return kNone;
}

}  // namespace

uint32_t frontend_length_max(uint8_t type) { return frontend_limits(type).max; }
uint32_t backend_length_max(uint8_t type) { return backend_limits(type).max; }
uint32_t frontend_length_min(uint8_t type) { return frontend_limits(type).min; }
uint32_t backend_length_min(uint8_t type) { return backend_limits(type).min; }

const char* to_string(FrontendMessage type) {
    switch (type) {
        case FrontendMessage::Bind: return "Bind";
        case FrontendMessage::Close: return "Close";
        case FrontendMessage::CopyData: return "CopyData";
        case FrontendMessage::CopyDone: return "CopyDone";
        case FrontendMessage::CopyFail: return "CopyFail";
        case FrontendMessage::Describe: return "Describe";
        case FrontendMessage::Execute: return "Execute";
        case FrontendMessage::Flush: return "Flush";
        case FrontendMessage::FunctionCall: return "FunctionCall";
        case FrontendMessage::Parse: return "Parse";
        case FrontendMessage::PasswordMessage: return "PasswordMessage";
        case FrontendMessage::Query: return "Query";
        case FrontendMessage::Sync: return "Sync";
        case FrontendMessage::Terminate: return "Terminate";
    }
    return "unknown";
}

const char* to_string(BackendMessage type) {
    switch (type) {
        case BackendMessage::Authentication: return "Authentication";
        case BackendMessage::BackendKeyData: return "BackendKeyData";
        case BackendMessage::BindComplete: return "BindComplete";
        case BackendMessage::CloseComplete: return "CloseComplete";
        case BackendMessage::CommandComplete: return "CommandComplete";
        case BackendMessage::CopyData: return "CopyData";
        case BackendMessage::CopyDone: return "CopyDone";
        case BackendMessage::CopyInResponse: return "CopyInResponse";
        case BackendMessage::CopyOutResponse: return "CopyOutResponse";
        case BackendMessage::CopyBothResponse: return "CopyBothResponse";
        case BackendMessage::DataRow: return "DataRow";
        case BackendMessage::EmptyQueryResponse: return "EmptyQueryResponse";
        case BackendMessage::ErrorResponse: return "ErrorResponse";
        case BackendMessage::FunctionCallResponse: return "FunctionCallResponse";
        case BackendMessage::NegotiateProtocolVersion: return "NegotiateProtocolVersion";
        case BackendMessage::NoData: return "NoData";
        case BackendMessage::NoticeResponse: return "NoticeResponse";
        case BackendMessage::NotificationResponse: return "NotificationResponse";
        case BackendMessage::ParameterDescription: return "ParameterDescription";
        case BackendMessage::ParameterStatus: return "ParameterStatus";
        case BackendMessage::ParseComplete: return "ParseComplete";
        case BackendMessage::PortalSuspended: return "PortalSuspended";
        case BackendMessage::ReadyForQuery: return "ReadyForQuery";
        case BackendMessage::RowDescription: return "RowDescription";
    }
    return "unknown";
}

}  // namespace pgplex::proto
