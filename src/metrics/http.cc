// See http.h. The head is checked line by line against RFC 9112's grammar, strictly: a
// token method, an origin-form target of visible ASCII (or "*" for OPTIONS), HTTP/1.0 or
// HTTP/1.1, and "name: value" header lines. A body (Content-Length other than 0, or any
// Transfer-Encoding) is refused, so no request can leave bytes the server must skip.
#include "pgplex/metrics/http.h"

#include <cstdio>
#include <utility>

namespace pgplex::metrics {

namespace {

bool is_token_char(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view text) {
    if (text.empty()) return false;
    for (char c : text)
        if (!is_token_char(c)) return false;
    return true;
}

bool is_visible(std::string_view text) {
    for (char c : text)
        if (c <= 0x20 || c >= 0x7f) return false;
    return true;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i] >= 'A' && a[i] <= 'Z' ? char(a[i] - 'A' + 'a') : a[i];
        char y = b[i] >= 'A' && b[i] <= 'Z' ? char(b[i] - 'A' + 'a') : b[i];
        if (x != y) return false;
    }
    return true;
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

bool parse_request_line(std::string_view line, Request& out) {
    size_t first = line.find(' ');
    size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos) return false;
    std::string_view method = line.substr(0, first);
    std::string_view target = line.substr(first + 1, second - first - 1);
    std::string_view version = line.substr(second + 1);
    if (!is_token(method) || target.empty() || !is_visible(target)) return false;
    if (version == "HTTP/1.0")
        out.http_1_0 = true;
    else if (version != "HTTP/1.1")
        return false;
    out.method_text = std::string(method);
    out.method = method == "GET"       ? Method::Get
                 : method == "HEAD"    ? Method::Head
                 : method == "OPTIONS" ? Method::Options
                                       : Method::Other;
    if (target == "*") {
        if (out.method != Method::Options) return false;
        out.path = "*";
        return true;
    }
    if (target.front() != '/') return false;
    size_t question = target.find('?');
    out.path = std::string(target.substr(0, question));
    if (question != std::string_view::npos) out.query = std::string(target.substr(question + 1));
    out.close = out.http_1_0;
    return true;
}

bool parse_header(std::string_view line, Request& out) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return false;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trimmed(line.substr(colon + 1));
    for (char c : value)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    if (equals_ignoring_case(name, "content-length")) return value == "0";
    if (equals_ignoring_case(name, "transfer-encoding")) return false;
    if (equals_ignoring_case(name, "connection")) {
        if (equals_ignoring_case(value, "close")) out.close = true;
        if (equals_ignoring_case(value, "keep-alive")) out.close = false;
    }
    return true;
}

}  // namespace

ParseResult parse_request(std::string_view bytes, Request& out, size_t& consumed) {
    size_t end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos)
        return bytes.size() >= request_head_bytes_max ? ParseResult::TooLarge
                                                      : ParseResult::Incomplete;
    if (end + 4 > request_head_bytes_max) return ParseResult::TooLarge;
    std::string_view head = bytes.substr(0, end + 2);  // every line ends in CRLF
    out = Request{};
    int lines = 0;
    while (!head.empty()) {
        size_t eol = head.find("\r\n");
        std::string_view line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos)
            return ParseResult::Bad;
        bool good = lines == 0 ? parse_request_line(line, out) : parse_header(line, out);
        if (!good || ++lines > request_headers_max + 1) return ParseResult::Bad;
    }
    consumed = end + 4;
    return ParseResult::Complete;
}

Response text_response(int status, std::string body) {
    Response response;
    response.status = status;
    response.body = std::move(body);
    return response;
}

const char* reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 431:
            return "Request Header Fields Too Large";
        case 503:
            return "Service Unavailable";
        default:
            return "Unknown";
    }
}

std::string format_response(const Response& response, bool head_only, bool keep_alive) {
    char status[64];
    snprintf(status, sizeof status, "HTTP/1.1 %d %s\r\n", response.status,
             reason_phrase(response.status));
    std::string out = status;
    out += "Server: pgplex\r\n";
    out += "Cache-Control: no-store\r\n";
    if (!response.allow.empty()) out += "Allow: " + response.allow + "\r\n";
    if (response.status != 204) {
        out += "Content-Type: " + response.content_type + "\r\n";
        out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
    }
    out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    out += "\r\n";
    if (!head_only && response.status != 204) out += response.body;
    return out;
}

}  // namespace pgplex::metrics
