// Raw system calls for the engine and the signal handler.
//
// Everything here is async-signal-safe: no errno, no locks, no libc state.
// Results follow the kernel convention (>= 0 success, -errno failure), so
// the handler never has to save errno just to learn a result, and the
// broadcast compares exactly what the kernel said on each thread.
#pragma once

#include <sys/syscall.h>

namespace psxshim::sys {

#if defined(__x86_64__)
inline long call(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
inline long call(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) {
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#else
#error "psxshim: add a raw system call sequence for this architecture in shim/sys/raw.h"
#endif

inline int gettid() { return static_cast<int>(call(SYS_gettid)); }
inline int getpid() { return static_cast<int>(call(SYS_getpid)); }

// process_vm_readv on ourselves: copies n bytes, or reports -EFAULT instead
// of faulting.  Addressed by our tid, not our pid: once the main thread has
// called pthread_exit(), the pid names a zombie without an address space.
inline long copy_from_self(void *dst, const void *src, unsigned long n) {
    struct {
        const void *base;
        unsigned long len;
    } local = {dst, n}, remote = {src, n};  // struct iovec's layout
    return call(SYS_process_vm_readv, gettid(), reinterpret_cast<long>(&local), 1,
                reinterpret_cast<long>(&remote), 1, 0);
}

// Futex operations on a private 32-bit word.  Timeouts are relative.
long futex_wait(const void *word, unsigned expected, long timeout_ns = -1);
long futex_wake(const void *word, int count);

// Monotonic clock in nanoseconds (vDSO-backed clock_gettime is AS-safe).
long long now_ns();

}  // namespace psxshim::sys
