// Time as the data path sees it: a monotonic millisecond count read once per loop turn.
#pragma once

#include <cstdint>
#include <ctime>

namespace pgplex::base {

using Milliseconds = int64_t;

inline Milliseconds monotonic_ms() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return static_cast<Milliseconds>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

// The wall clock, for timestamps people read (SHOW CLIENTS); never for durations.
inline Milliseconds wall_ms() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    return static_cast<Milliseconds>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

}  // namespace pgplex::base
