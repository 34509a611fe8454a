// See log.h. The level is process-wide and set from the config on load and reload.
#include "pgplex/base/log.h"

#include <cstring>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "pgplex/base/assert.h"

namespace pgplex::base {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};

const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::Error:
            return "ERROR";
        case LogLevel::Warning:
            return "WARNING";
        case LogLevel::Notice:
            return "NOTICE";
        case LogLevel::Info:
            return "LOG";
        case LogLevel::Debug:
            return "DEBUG";
    }
    return "LOG";
}
}  // namespace

void log_set_level(LogLevel level) {
    g_level.store(static_cast<int>(level));
}

bool log_enabled(LogLevel level) {
    return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

void log_write(LogLevel level, const char* format, ...) {
    char line[2048];
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    int used =
        snprintf(line, sizeof line, "<%d>%04d-%02d-%02d %02d:%02d:%02d.%03ld UTC %s ",
                 static_cast<int>(level), utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                 utc.tm_hour, utc.tm_min, utc.tm_sec, now.tv_nsec / 1000000, level_name(level));
    va_list args;
    va_start(args, format);
    int body = vsnprintf(line + used, sizeof line - used - 1, format, args);
    va_end(args);
    if (body < 0) body = 0;
    used += body;
    if (used > static_cast<int>(sizeof line) - 2) used = sizeof line - 2;
    line[used++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
}

void assert_fail(const char* file, int line, const char* expression) {
    log_write(LogLevel::Error, "assertion failed at %s:%d: %s", file, line, expression);
    abort();
}

void LogText::add(const char* key, const char* value, size_t size) {
    size_t at = strnlen(text, sizeof text);
    bool quote = size == 0;
    for (size_t i = 0; i < size && !quote; ++i)
        quote = value[i] == ' ' || value[i] == '\t' || value[i] == '"' || value[i] == '=';
    auto put = [&](char c) {
        if (at + 1 < sizeof text) text[at++] = c;
    };
    if (at > 0) put(' ');
    for (const char* k = key; *k != 0; ++k) put(*k);
    put('=');
    if (quote) put('"');
    for (size_t i = 0; i < size; ++i) {
        char c = value[i] == '\n' || value[i] == '\r' ? ' ' : value[i];
        if (quote && (c == '"' || c == '\\')) put('\\');
        put(c);
    }
    if (quote) put('"');
    text[at] = 0;
}

}  // namespace pgplex::base
