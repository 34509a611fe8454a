// The little HTTP/1.1 that the admin port (/metrics, /health) speaks: a request head
// parser and a response writer. Pure functions over bytes, so the fuzz target and the unit
// tests drive them without sockets (src/metrics/server.cc owns the sockets).
//
// Only what a Prometheus scraper, curl and a load balancer's health check send is
// accepted: GET, HEAD and OPTIONS without a body, a request line and headers in CRLF lines,
// the head bounded by request_head_bytes_max. Anything else is Bad (400) and the connection
// is closed; nothing in a request can make the parser read past what it was given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgplex::metrics {

// A scraper's request head is a few hundred bytes; 8 KiB is what most servers allow
// (nginx's large_client_header_buffers, HAProxy's tune.bufsize is larger but for proxying).
inline constexpr size_t request_head_bytes_max = 8192;
// Headers past this many are a client misbehaving.
inline constexpr int request_headers_max = 64;

enum class Method : uint8_t { Get, Head, Options, Other };

struct Request {
    Method method = Method::Other;
    std::string method_text;
    std::string path;   // the target up to '?', e.g. "/metrics"
    std::string query;  // after '?', possibly empty
    bool http_1_0 = false;
    bool close = false;  // "Connection: close" (or HTTP/1.0 without keep-alive)
};

enum class ParseResult : uint8_t {
    Incomplete,  // no blank line yet, and still under request_head_bytes_max
    Complete,    // a whole head; consumed says how many bytes it took
    Bad,         // not a request this server takes: answer 400 and close
    TooLarge,    // no end of the head within request_head_bytes_max: answer 431 and close
};

// Parses the head at the start of `bytes`.
ParseResult parse_request(std::string_view bytes, Request& out, size_t& consumed);

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string allow;  // the Allow header, for OPTIONS and 405; empty for none
};

// A plain-text answer with this status and body.
Response text_response(int status, std::string body);

// The status line, headers and (unless head_only, for HEAD) the body. Content-Length is the
// body's length either way, as RFC 9110 9.3.2 says a HEAD answer should be; a 204 has none.
std::string format_response(const Response& response, bool head_only, bool keep_alive);

const char* reason_phrase(int status);

}  // namespace pgplex::metrics
