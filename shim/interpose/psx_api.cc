// libpsx's API (libcap's psx_syscall.h) and psxshim's own (psxshim.h), both
// served by the same engine.
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>

#include "engine/broadcast.h"
#include "interpose/export.h"
#include "psxshim.h"

using namespace psxshim;

namespace {

const char *syscall_name(long nr) {
    switch (nr) {
    case SYS_setuid: return "psx_syscall(setuid)";
    case SYS_setgid: return "psx_syscall(setgid)";
    case SYS_setreuid: return "psx_syscall(setreuid)";
    case SYS_setregid: return "psx_syscall(setregid)";
    case SYS_setresuid: return "psx_syscall(setresuid)";
    case SYS_setresgid: return "psx_syscall(setresgid)";
    case SYS_setgroups: return "psx_syscall(setgroups)";
    case SYS_capset: return "psx_syscall(capset)";
    case SYS_prctl: return "psx_syscall(prctl)";
    default: return "psx_syscall";
    }
}

long all_threads(long nr, long a1, long a2, long a3, long a4, long a5, long a6, engine::Policy policy) {
    auto call = engine::make_call(syscall_name(nr), nr, a1, a2, a3, a4, a5, a6);
    call.policy = policy;
    return libc_result(engine::broadcast(call));
}

}  // namespace

PSX_EXPORT long psx_syscall3(long nr, long a1, long a2, long a3) {
    return all_threads(nr, a1, a2, a3, 0, 0, 0, engine::psx_policy());
}

PSX_EXPORT long psx_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return all_threads(nr, a1, a2, a3, a4, a5, a6, engine::psx_policy());
}

// The psx_syscall() macro appends "6, 5, 4, 3, 2, 1, 0" to the arguments, so
// the seventh variadic value is the number of real arguments.  Unlike libpsx,
// arguments the caller did not pass are zero rather than those counters.
PSX_EXPORT long __psx_syscall(long nr, ...) {
    long arg[7];
    va_list ap;
    va_start(ap, nr);
    for (long &a : arg) a = va_arg(ap, long);
    va_end(ap);
    long count = arg[6];
    if (count < 0 || count > 6) {
        errno = EINVAL;
        return -1;
    }
    for (long i = count; i < 6; i++) arg[i] = 0;
    return all_threads(nr, arg[0], arg[1], arg[2], arg[3], arg[4], arg[5], engine::psx_policy());
}

PSX_EXPORT int psx_set_sensitivity(psx_sensitivity_t level) {
    switch (level) {
    case PSX_IGNORE: engine::set_psx_policy(engine::Policy::kIgnore); return 0;
    case PSX_WARNING: engine::set_psx_policy(engine::Policy::kWarn); return 0;
    case PSX_ERROR: engine::set_psx_policy(engine::Policy::kKill); return 0;
    }
    errno = EINVAL;
    return -1;
}

namespace {

// What libcap gets from psx_load_syscalls.  libcap (2.66 as shipped by
// Debian) reads the result of its hooked prctl and setuid/setgroups calls
// in the kernel convention -- `if (r < 0) { errno = -r; return -1; }` --
// while it returns its hooked capset's result to the caller as is.  libpsx
// hands it the libc convention (-1, errno), which is how cap_drop_bound(999)
// reports EPERM under libpsx where the kernel said EINVAL.  These adapters
// set errno and return -errno, except for capset, which returns -1: each of
// libcap's paths then reports exactly what the kernel said.
long libcap_result(long nr, long r) {
    if (r >= 0) return r;
    errno = static_cast<int>(-r);
    return nr == SYS_capset ? -1 : r;
}

long libcap_syscall3(long nr, long a1, long a2, long a3) {
    auto call = engine::make_call(syscall_name(nr), nr, a1, a2, a3);
    call.policy = engine::psx_policy();
    return libcap_result(nr, engine::broadcast(call));
}

long libcap_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    auto call = engine::make_call(syscall_name(nr), nr, a1, a2, a3, a4, a5, a6);
    call.policy = engine::psx_policy();
    return libcap_result(nr, engine::broadcast(call));
}

}  // namespace

// libcap declares this weak and calls it from its constructor: defining it
// routes cap_set_proc(), cap_setuid() and friends through the engine.  (A
// program calling it itself gets the same adapters; psx_syscall3/6 keep
// libpsx's syscall(2) convention.)
PSX_EXPORT void psx_load_syscalls(long (**syscall_fn)(long, long, long, long),
                                  long (**syscall6_fn)(long, long, long, long, long, long, long)) {
    *syscall_fn = libcap_syscall3;
    *syscall6_fn = libcap_syscall6;
}

PSX_EXPORT const char *psxshim_version(void) { return PSXSHIM_VERSION_STRING; }

PSX_EXPORT int psxshim_active(void) {
    engine::ensure_init();
    return 1;
}

PSX_EXPORT int psxshim_last_thread_count(void) { return engine::last_thread_count(); }

PSX_EXPORT long psxshim_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return all_threads(nr, a1, a2, a3, a4, a5, a6, engine::Policy::kKill);
}
