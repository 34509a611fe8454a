// PostgreSQL v3 protocol message types, named as protocol-message-formats.html names them,
// split by direction: the same byte means different messages each way.
#pragma once

#include <cstdint>

namespace pgplex::proto {

enum class FrontendMessage : uint8_t {
    Bind = 'B',
    Close = 'C',
    CopyData = 'd',
    CopyDone = 'c',
    CopyFail = 'f',
    Describe = 'D',
    Execute = 'E',
    Flush = 'H',
    FunctionCall = 'F',
    Parse = 'P',
    PasswordMessage = 'p',  // also GSSResponse, SASLInitialResponse, SASLResponse
    Query = 'Q',
    Sync = 'S',
    Terminate = 'X',
};

enum class BackendMessage : uint8_t {
    Authentication = 'R',
    BackendKeyData = 'K',
    BindComplete = '2',
    CloseComplete = '3',
    CommandComplete = 'C',
    CopyData = 'd',
    CopyDone = 'c',
    CopyInResponse = 'G',
    CopyOutResponse = 'H',
    CopyBothResponse = 'W',
    DataRow = 'D',
    EmptyQueryResponse = 'I',
    ErrorResponse = 'E',
    FunctionCallResponse = 'V',
    NegotiateProtocolVersion = 'v',
    NoData = 'n',
    NoticeResponse = 'N',
    NotificationResponse = 'A',
    ParameterDescription = 't',
    ParameterStatus = 'S',
    ParseComplete = '1',
    PortalSuspended = 's',
    ReadyForQuery = 'Z',
    RowDescription = 'T',
};

// Authentication request codes (the int32 after Authentication's length).
enum class AuthRequest : int32_t {
    Ok = 0,
    KerberosV5 = 2,
    CleartextPassword = 3,
    MD5Password = 5,
    GSS = 7,
    GSSContinue = 8,
    SSPI = 9,
    SASL = 10,
    SASLContinue = 11,
    SASLFinal = 12,
};

// The 32-bit codes that open an untyped startup-phase packet.
enum class StartupCode : uint32_t {
    Protocol3 = 196608,        // 3 << 16 | 0
    CancelRequest = 80877102,  // 1234 << 16 | 5678
    SSLRequest = 80877103,     // 1234 << 16 | 5679
    GSSENCRequest = 80877104,  // 1234 << 16 | 5680
};

// ReadyForQuery's transaction status byte.
enum class TransactionStatus : uint8_t { Idle = 'I', InBlock = 'T', Failed = 'E' };

const char* to_string(FrontendMessage type);
const char* to_string(BackendMessage type);

// The largest total length (including the length word itself) a message of this type may
// have; 0 when the byte is not a message of that direction.
uint32_t frontend_length_max(uint8_t type);
uint32_t backend_length_max(uint8_t type);
// The smallest total length a message of this type may have (4 for most).
uint32_t frontend_length_min(uint8_t type);
uint32_t backend_length_min(uint8_t type);

}  // namespace pgplex::proto
