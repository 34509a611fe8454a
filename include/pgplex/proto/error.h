// ErrorResponse and NoticeResponse: building them with a SQLSTATE, and reading the fields
// pgplex needs from one a server sent (protocol-error-fields.html).
#pragma once

#include <cstdint>
#include <string_view>

#include "pgplex/proto/writer.h"

namespace pgplex::proto {

enum class Severity : uint8_t { Error, Fatal, Notice, Warning, Log };
const char* to_string(Severity severity);

// Appends one ErrorResponse (Error/Fatal) or NoticeResponse (the others).
void write_error(Writer& writer, Severity severity, const char* sqlstate, std::string_view message,
                 std::string_view detail = {}, std::string_view hint = {});

struct ErrorFields {
    std::string_view severity;  // 'V' (non-localized), else 'S'
    std::string_view code;      // 'C'
    std::string_view message;   // 'M'
};
// Reads an ErrorResponse/NoticeResponse body. Returns false when it is malformed.
bool parse_error(const uint8_t* body, uint32_t size, ErrorFields& out);

void write_ready_for_query(Writer& writer, TransactionStatus status);
void write_parameter_status(Writer& writer, std::string_view name, std::string_view value);
void write_backend_key_data(Writer& writer, uint32_t pid, uint32_t key);
void write_authentication(Writer& writer, AuthRequest request, const void* data = nullptr,
                          uint32_t size = 0);

}  // namespace pgplex::proto
