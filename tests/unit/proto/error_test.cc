// Messages pgplex writes itself (ErrorResponse, ReadyForQuery, ParameterStatus,
// BackendKeyData, Authentication) byte for byte as protocol-message-formats.html lays them
// out, and reading the fields of an ErrorResponse a server sent.
#include <criterion/criterion.h>

#include <string_view>
#include <vector>

#include "pgplex/proto/error.h"
#include "pgplex/proto/frame.h"
#include "pgplex/proto/message.h"
#include "pgplex/proto/writer.h"

using namespace std::literals;
using pgplex::proto::AuthRequest;
using pgplex::proto::BackendMessage;
using pgplex::proto::ErrorFields;
using pgplex::proto::parse_error;
using pgplex::proto::read_be32;
using pgplex::proto::Severity;
using pgplex::proto::TransactionStatus;
using pgplex::proto::Writer;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

Bytes written(const Writer& writer) {
    cr_assert(writer.ok());
    return Bytes(writer.data(), writer.data() + writer.size());
}

bool contains(const Bytes& haystack, std::string_view needle) {
    std::string_view text(reinterpret_cast<const char*>(haystack.data()), haystack.size());
    return text.find(needle) != std::string_view::npos;
}

}  // namespace

Test(error, written_error_reads_back_with_severity_code_and_message) {
    uint8_t buffer[512];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_error(writer, Severity::Fatal, "28P01",
                               "password authentication failed for user \"alice\"",
                               "Connection matched no rule.", "Check the auth file.");
    Bytes out = written(writer);
    cr_assert_eq(out[0], uint8_t(BackendMessage::ErrorResponse));
    cr_assert_eq(read_be32(out.data() + 1), out.size() - 1);
    cr_assert_eq(out.back(), 0);

    ErrorFields fields;
    cr_assert(parse_error(out.data() + 5, uint32_t(out.size() - 5), fields));
    cr_assert(fields.severity == "FATAL");
    cr_assert(fields.code == "28P01");
    cr_assert(fields.message == "password authentication failed for user \"alice\"");
    cr_assert(contains(out, "SFATAL\0VFATAL\0C28P01\0"sv));
    cr_assert(contains(out, "DConnection matched no rule.\0"sv));
    cr_assert(contains(out, "HCheck the auth file.\0\0"sv));
}

Test(error, notices_are_written_as_notice_response_without_empty_fields) {
    uint8_t buffer[256];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_error(writer, Severity::Warning, "01000", "pool is nearly full");
    Bytes out = written(writer);
    cr_assert_eq(out[0], uint8_t(BackendMessage::NoticeResponse));
    Bytes expected =
        bytes_of("N\0\0\0\x33" "SWARNING\0VWARNING\0C01000\0Mpool is nearly full\0\0"sv);
    cr_assert(out == expected);
}

Test(error, severity_prefers_the_non_localized_field) {
    Bytes body = bytes_of("SFEHLER\0VERROR\0C42601\0Msyntax error\0\0"sv);
    ErrorFields fields;
    cr_assert(parse_error(body.data(), uint32_t(body.size()), fields));
    cr_assert(fields.severity == "ERROR");
    body = bytes_of("VERROR\0SFEHLER\0C42601\0Msyntax error\0\0"sv);
    cr_assert(parse_error(body.data(), uint32_t(body.size()), fields));
    cr_assert(fields.severity == "ERROR");
    body = bytes_of("SFEHLER\0C42601\0Msyntax error\0Punknown\0\0"sv);
    cr_assert(parse_error(body.data(), uint32_t(body.size()), fields));
    cr_assert(fields.severity == "FEHLER", "a pre-9.6 server sends only the localized one");
}

Test(error, unterminated_fields_are_rejected) {
    ErrorFields fields;
    const std::string_view bad[] = {
        "SERROR\0C42601\0Msyntax error"sv,    // last field has no NUL
        "SERROR\0C42601\0Msyntax error\0"sv,  // no final terminator
        "SERROR\0M"sv,                        // field type with nothing after it
        "S"sv,
        ""sv,
        "SERROR\0\0extra"sv,                  // bytes after the terminator
    };
    for (std::string_view text : bad) {
        // Exactly sized, so ASan catches a read past the body.
        Bytes body = bytes_of(text);
        cr_assert_not(parse_error(body.data(), uint32_t(body.size()), fields), "accepted %zu",
                      text.size());
    }
    Bytes minimal = {0};
    cr_assert(parse_error(minimal.data(), 1, fields));
    cr_assert(fields.code.empty());
}

Test(error, ready_for_query_is_written_as_documented) {
    uint8_t buffer[18];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_ready_for_query(writer, TransactionStatus::Idle);
    pgplex::proto::write_ready_for_query(writer, TransactionStatus::InBlock);
    pgplex::proto::write_ready_for_query(writer, TransactionStatus::Failed);
    cr_assert(written(writer) == bytes_of("Z\0\0\0\5IZ\0\0\0\5TZ\0\0\0\5E"sv));
}

Test(error, parameter_status_is_written_as_documented) {
    uint8_t buffer[64];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_parameter_status(writer, "client_encoding", "UTF8");
    cr_assert(written(writer) == bytes_of("S\0\0\0\x19" "client_encoding\0UTF8\0"sv));
}

Test(error, backend_key_data_is_written_as_documented) {
    uint8_t buffer[16];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_backend_key_data(writer, 0x00400007, 0xcafef00d);
    cr_assert(written(writer) == bytes_of("K\0\0\0\x0c\x00\x40\x00\x07\xca\xfe\xf0\x0d"sv));
}

Test(error, authentication_requests_are_written_as_documented) {
    uint8_t buffer[128];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_authentication(writer, AuthRequest::Ok);
    cr_assert(written(writer) == bytes_of("R\0\0\0\x08\0\0\0\0"sv));

    Writer md5(buffer, sizeof buffer);
    const uint8_t salt[4] = {0x01, 0x02, 0x03, 0x04};
    pgplex::proto::write_authentication(md5, AuthRequest::MD5Password, salt, sizeof salt);
    cr_assert(written(md5) == bytes_of("R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04"sv));

    Writer cleartext(buffer, sizeof buffer);
    pgplex::proto::write_authentication(cleartext, AuthRequest::CleartextPassword);
    cr_assert(written(cleartext) == bytes_of("R\0\0\0\x08\0\0\0\x03"sv));

    Writer sasl(buffer, sizeof buffer);
    std::string_view mechanisms = "SCRAM-SHA-256\0\0"sv;
    pgplex::proto::write_authentication(sasl, AuthRequest::SASL, mechanisms.data(),
                                        uint32_t(mechanisms.size()));
    cr_assert(written(sasl) == bytes_of("R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"sv));
}

Test(error, untyped_packet_has_only_a_length_word) {
    uint8_t buffer[16];
    Writer writer(buffer, sizeof buffer);
    writer.begin_untyped();
    writer.int32(80877103);  // SSLRequest
    writer.end();
    cr_assert(written(writer) == bytes_of("\0\0\0\x08\x04\xd2\x16\x2f"sv));
}

Test(error, writer_overflow_marks_it_not_ok) {
    uint8_t buffer[32];
    Writer writer(buffer, sizeof buffer);
    pgplex::proto::write_error(writer, Severity::Error, "53300",
                               "sorry, too many clients already");
    cr_assert_not(writer.ok());
    cr_assert_leq(writer.size(), sizeof buffer);

    // Full to the last byte is still ok; one more is not, and stays not ok.
    uint8_t exact[7];
    Writer fits(exact, sizeof exact);
    pgplex::proto::write_ready_for_query(fits, TransactionStatus::Idle);
    fits.int8(0);
    cr_assert(fits.ok());
    cr_assert_eq(fits.size(), 7);
    fits.int8(0);
    cr_assert_not(fits.ok());
    cr_assert_eq(fits.size(), 7);
    fits.int8(0);
    cr_assert_not(fits.ok());

    // A message cut short in its header never gets a length written past the end.
    uint8_t tiny[3] = {0xaa, 0xaa, 0xaa};
    Writer cut(tiny, sizeof tiny);
    pgplex::proto::write_ready_for_query(cut, TransactionStatus::Idle);
    cr_assert_not(cut.ok());
}

Test(error, an_open_message_is_not_ok) {
    uint8_t buffer[16];
    Writer writer(buffer, sizeof buffer);
    writer.begin(BackendMessage::NoData);
    cr_assert_not(writer.ok());
    writer.end();
    cr_assert(writer.ok());
    cr_assert(written(writer) == bytes_of("n\0\0\0\x04"sv));
}
