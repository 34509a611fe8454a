// Logging to stderr with syslog priority prefixes ("<6>"), so journald keeps the levels.
//
// One line is formatted into a stack buffer and written with a single write(2), so lines
// from different threads never interleave. Logging is for events (a login, a close, a
// reload), never per message.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <string>

namespace pgplex::base {

enum class LogLevel : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void log_set_level(LogLevel level);
bool log_enabled(LogLevel level);
void log_write(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

// The context of a log line (a client's, a server's) as key=value pairs, built on the stack.
struct LogText {
    char text[256] = "";
    const char* c_str() const { return text; }
    // Appends " key=value" (no blank before the first pair), quoting a value with a blank,
    // a quote or an equals sign; a value too long is cut.
    void add(const char* key, const char* value, size_t size);
    void add(const char* key, const std::string& value) { add(key, value.data(), value.size()); }
};

}  // namespace pgplex::base

#define PGPLEX_LOG(level, ...)                                                       \
    do {                                                                             \
        if (::pgplex::base::log_enabled(::pgplex::base::LogLevel::level))            \
            ::pgplex::base::log_write(::pgplex::base::LogLevel::level, __VA_ARGS__); \
    } while (0)
#define log_error(...) PGPLEX_LOG(Error, __VA_ARGS__)
#define log_warning(...) PGPLEX_LOG(Warning, __VA_ARGS__)
#define log_notice(...) PGPLEX_LOG(Notice, __VA_ARGS__)
#define log_info(...) PGPLEX_LOG(Info, __VA_ARGS__)
#define log_debug(...) PGPLEX_LOG(Debug, __VA_ARGS__)
