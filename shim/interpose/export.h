// Helpers shared by the exported thunks.
#pragma once

#include <errno.h>

#define PSX_EXPORT extern "C" __attribute__((visibility("default")))

namespace psxshim {

// Kernel convention to libc convention: -errno becomes -1 with errno set.
inline long libc_result(long r) {
    if (r < 0) {
        errno = static_cast<int>(-r);
        return -1;
    }
    return r;
}

}  // namespace psxshim
