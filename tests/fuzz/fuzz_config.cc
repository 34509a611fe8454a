// libFuzzer target for config::load: arbitrary bytes as pgplex.toml must give a Config or a
// "file:line: reason" error, never a crash or an escaped exception. load() reads a path, so
// each input is written to one temporary file made once per process (removed at exit).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "pgplex/config/config.h"

namespace {

// A plain array, so the exit handler can still read it after static destructors ran.
char input_path[] = "/tmp/pgplex-fuzz-config-XXXXXX";

void remove_input() {
    unlink(input_path);
}

void make_input_file() {
    int fd = mkstemp(input_path);
    if (fd < 0) std::abort();
    close(fd);
    std::atexit(remove_input);
}

void write_input(const uint8_t* data, size_t size) {
    static bool made = (make_input_file(), true);
    (void)made;
    int fd = open(input_path, O_WRONLY | O_TRUNC);
    if (fd < 0) std::abort();
    while (size > 0) {
        ssize_t written = write(fd, data, size);
        if (written <= 0) std::abort();
        data += written;
        size -= size_t(written);
    }
    close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    write_input(data, size);
    pgplex::config::LoadResult result = pgplex::config::load(input_path);
    // Exactly one of config and error is set, and an error names the file.
    if ((result.config == nullptr) == result.error.empty()) std::abort();
    if (result.config == nullptr && result.error.rfind(input_path, 0) != 0) std::abort();
    return 0;
}
