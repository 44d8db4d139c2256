// Raw signal plumbing: the kernel's sigaction layout and 64-bit masks.
//
// glibc's sigaction() refuses signal 33 and its sigprocmask() silently drops
// 32 and 33 from any set, so the engine talks to the kernel directly.
#pragma once

#include <signal.h>

#include "sys/raw.h"

namespace psxshim::sys {

// The kernel's mask: one 64-bit word on the architectures we support.
using Sigset = unsigned long;

constexpr Sigset bit(int sig) { return 1UL << (sig - 1); }

// Synchronous fault signals stay deliverable: blocking them while a fault
// happens makes the kernel kill the process without a trace.
constexpr Sigset kFaults = bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGFPE) | bit(SIGTRAP) | bit(SIGSYS);
constexpr Sigset kAllButFaults = ~kFaults;
// What a broadcaster blocks: everything but the faults and signal 33, which
// must stay open for glibc's own setxid requests and for a broadcaster that
// is waiting for our lock to answer ours.
constexpr Sigset kAllButOursAndFaults = ~(kFaults | bit(33));

// struct sigaction as the kernel reads it (rt_sigaction).
struct KernelSigaction {
    unsigned long handler;
    unsigned long flags;
    unsigned long restorer;
    Sigset mask;
};

// rt_sigaction; installs our own restorer where the ABI needs one.
long sigaction(int sig, const KernelSigaction *act, KernelSigaction *old);

inline long sigprocmask(int how, const Sigset *set, Sigset *old) {
    return call(SYS_rt_sigprocmask, how, reinterpret_cast<long>(set), reinterpret_cast<long>(old),
                sizeof(Sigset));
}

}  // namespace psxshim::sys
