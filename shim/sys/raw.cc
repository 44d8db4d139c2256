#include "sys/raw.h"

#include <linux/futex.h>
#include <time.h>

namespace psxshim::sys {

long futex_wait(const void *word, unsigned expected, long timeout_ns) {
    struct timespec ts;
    struct timespec *tp = nullptr;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        tp = &ts;
    }
    return call(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAIT_PRIVATE, expected,
                reinterpret_cast<long>(tp));
}

long futex_wake(const void *word, int count) {
    return call(SYS_futex, reinterpret_cast<long>(word), FUTEX_WAKE_PRIVATE, count);
}

long long now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace psxshim::sys
