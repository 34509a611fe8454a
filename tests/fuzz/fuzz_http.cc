// libFuzzer target for the admin port's HTTP request parser: any bytes give Incomplete,
// Complete (having consumed no more than it was given, within the head limit), Bad or
// TooLarge, never a crash; a Complete request's path is one the router can split.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pgplex/metrics/http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    pgplex::metrics::Request request;
    size_t consumed = 0;
    pgplex::metrics::ParseResult result = pgplex::metrics::parse_request(bytes, request, consumed);
    if (result == pgplex::metrics::ParseResult::Complete) {
        if (consumed == 0 || consumed > size) std::abort();
        if (consumed > pgplex::metrics::request_head_bytes_max) std::abort();
        if (request.path.empty() || (request.path[0] != '/' && request.path != "*")) std::abort();
        pgplex::metrics::Response response;
        response.body = request.path;
        std::string head = pgplex::metrics::format_response(
            response, request.method == pgplex::metrics::Method::Head, !request.close);
        if (head.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) std::abort();
    }
    if (result == pgplex::metrics::ParseResult::Incomplete &&
        size >= pgplex::metrics::request_head_bytes_max)
        std::abort();
    return 0;
}
