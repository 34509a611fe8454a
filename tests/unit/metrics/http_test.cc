// The admin port's HTTP parser and response writer: what scrapers and health checkers send
// is taken; garbage, bodies and oversized heads are refused without reading past the input.
#include <criterion/criterion.h>

#include "../support.h"

#include <string>

#include "pgplex/metrics/http.h"

using namespace pgplex::metrics;

namespace {

ParseResult parsed(const std::string& bytes, Request& request) {
    size_t consumed = 0;
    return parse_request(bytes, request, consumed);
}

ParseResult parsed(const std::string& bytes) {
    Request request;
    return parsed(bytes, request);
}

}  // namespace

Test(http, a_scrape_request_is_parsed_with_its_path_and_query) {
    Request request;
    std::string bytes = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nGET /";
    size_t consumed = 0;
    cr_assert_eq(parse_request(bytes, request, consumed), ParseResult::Complete);
    cr_assert_eq(consumed, bytes.size() - 5);
    cr_assert_eq(request.method, Method::Get);
    assert_text(request.path, "/metrics");
    assert_text(request.query, "x=1");
    cr_assert_not(request.close);
}

Test(http, head_options_and_connection_close_are_understood) {
    Request request;
    cr_assert_eq(parsed("HEAD /health HTTP/1.0\r\n\r\n", request), ParseResult::Complete);
    cr_assert_eq(request.method, Method::Head);
    cr_assert(request.close, "HTTP/1.0 closes unless keep-alive");
    cr_assert_eq(parsed("OPTIONS * HTTP/1.1\r\nConnection: close\r\n\r\n", request),
                 ParseResult::Complete);
    cr_assert_eq(request.method, Method::Options);
    cr_assert(request.close);
    cr_assert_eq(parsed("DELETE /x HTTP/1.1\r\n\r\n", request), ParseResult::Complete);
    cr_assert_eq(request.method, Method::Other);
}

Test(http, a_head_without_its_blank_line_is_incomplete_until_the_limit) {
    cr_assert_eq(parsed("GET /metrics HTTP/1.1\r\nHost: a\r\n"), ParseResult::Incomplete);
    cr_assert_eq(parsed(std::string(request_head_bytes_max, 'a')), ParseResult::TooLarge);
    std::string big =
        "GET / HTTP/1.1\r\nX: " + std::string(request_head_bytes_max, 'a') + "\r\n\r\n";
    cr_assert_eq(parsed(big), ParseResult::TooLarge);
}

Test(http, garbage_bodies_and_bad_lines_are_refused) {
    cr_assert_eq(parsed("\x16\x03\x01\x02\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET metrics HTTP/1.1\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET /metrics HTTP/2\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET /a b HTTP/1.1\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET * HTTP/1.1\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET / HTTP/1.1\r\nno colon\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET / HTTP/1.1\nHost: a\r\n\r\n"), ParseResult::Bad);
    cr_assert_eq(parsed("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), ParseResult::Bad);
}

Test(http, a_head_answer_has_the_length_but_no_body) {
    Response response;
    response.body = "serving\n";
    std::string full = format_response(response, false, true);
    std::string head = format_response(response, true, true);
    cr_assert(full.find("Content-Length: 8\r\n") != std::string::npos);
    cr_assert(head.find("Content-Length: 8\r\n") != std::string::npos);
    cr_assert(full.size() == head.size() + 8);
    cr_assert(head.rfind("\r\n\r\n") == head.size() - 4);
    response.status = 204;
    std::string empty = format_response(response, false, false);
    cr_assert(empty.find("Content-Length") == std::string::npos);
    cr_assert(empty.find("Connection: close") != std::string::npos);
}

Test(http, metrics_listen_is_off_by_default_and_checked_when_set) {
    config_test::TempDir dir;
    const char* base = "[pgplex]\nlisten = \"127.0.0.1:6432\"\nauth_type = \"trust\"\n";
    pgplex::config::LoadResult off = config_test::load_text(dir, base);
    cr_assert(config_test::loaded(off).metrics_listen.empty());
    pgplex::config::LoadResult on =
        config_test::load_text(dir, std::string(base) + "metrics_listen = \"127.0.0.1:9127\"\n");
    cr_assert_eq(config_test::loaded(on).metrics_endpoint.port, 9127);
    std::string error = config_test::refused(std::string(base) + "metrics_listen = \"nope\"\n");
    cr_assert(error.find("metrics_listen") != std::string::npos, "%s", error.c_str());
    error = config_test::refused(std::string(base) + "metrics_listen = \"/tmp:9127\"\n");
    cr_assert(error.find("TCP") != std::string::npos, "%s", error.c_str());
}
