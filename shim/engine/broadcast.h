// The all-thread system call engine ("psx").
//
// broadcast() runs one system call on the calling thread and then on every
// other thread of the process, and returns the caller's result in the kernel
// convention (>= 0, or -errno).  See broadcast.cc for the protocol, the
// signal-handler contract and the failure policy.
#pragma once

namespace psxshim::engine {

// What a broadcast does when another thread's result differs from the caller's.
enum class Policy { kKill, kWarn, kIgnore };

struct Call {
    const char *name;  // for diagnostics: "setresuid", "prctl(PR_CAPBSET_DROP)", ...
    long nr;
    long args[6];         // what every other thread runs
    long caller_args[6];  // what the calling thread runs (capset: its own pid)
    int copy_arg = 0;              // args[copy_arg] points to copy_size bytes the
    unsigned long copy_size = 0;   // kernel reads; every thread gets one snapshot
    Policy policy = Policy::kKill;
    // Run on the calling thread right after its own call succeeded, before
    // any other thread is signalled: fills what args point to from the
    // caller's new state (capset: the sets it now has), so that the others
    // get what the kernel applied rather than a second read of memory the
    // program may change.  Raw system calls only; false fails closed.
    bool (*from_caller)(const Call &) = nullptr;
};

inline Call make_call(const char *name, long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0,
                      long f = 0) {
    return Call{name, nr, {a, b, c, d, e, f}, {a, b, c, d, e, f}};
}

long broadcast(const Call &call);

// The failure policy's last step: one line on stderr, then SIGKILL.
[[noreturn]] void die();
[[noreturn]] void die_with(const char *why);

// Run once per process before anything else is used; idempotent and cheap,
// so every entry point calls it (a library constructor may call
// pthread_create before ours has run).
void ensure_init();

// Around the real pthread_create: before, notice a fork child that skipped
// pthread_atfork; after, glibc may have just replaced our signal handler.
void before_pthread_create();
void after_pthread_create();
// Called when the main thread leaves through pthread_exit(): it stays a
// zombie that can no longer answer signals.
void note_main_thread_exit();

// Policy for psx_syscall (libpsx's "sensitivity"); wrapped libc calls always kill.
void set_psx_policy(Policy p);
Policy psx_policy();

// Introspection for the public API.
int last_thread_count();
bool active();
int current_pid();

}  // namespace psxshim::engine
