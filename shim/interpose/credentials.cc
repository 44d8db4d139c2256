// The wrapped libc credential calls.  Each one behaves as glibc's does for
// the calling thread (same value, same errno, for every input) and then, if
// it succeeded, takes effect on every other thread before returning.
#include <grp.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "engine/broadcast.h"
#include "interpose/export.h"
#include "sys/raw.h"

using psxshim::libc_result;
using psxshim::engine::broadcast;
using psxshim::engine::make_call;

namespace {

int all_threads(const char *name, long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
    return static_cast<int>(libc_result(broadcast(make_call(name, nr, a, b, c, d, e))));
}

constexpr long kNgroupsMax = 65536;  // the kernel's NGROUPS_MAX

}  // namespace

PSX_EXPORT int setuid(uid_t uid) noexcept { return all_threads("setuid", SYS_setuid, uid); }
PSX_EXPORT int setgid(gid_t gid) noexcept { return all_threads("setgid", SYS_setgid, gid); }

// glibc rejects -1 itself and implements these with setres*id.
PSX_EXPORT int seteuid(uid_t uid) noexcept {
    if (uid == static_cast<uid_t>(-1)) return static_cast<int>(libc_result(-EINVAL));
    return all_threads("seteuid", SYS_setresuid, -1L & 0xffffffffL, uid, -1L & 0xffffffffL);
}
PSX_EXPORT int setegid(gid_t gid) noexcept {
    if (gid == static_cast<gid_t>(-1)) return static_cast<int>(libc_result(-EINVAL));
    return all_threads("setegid", SYS_setresgid, -1L & 0xffffffffL, gid, -1L & 0xffffffffL);
}

PSX_EXPORT int setreuid(uid_t r, uid_t e) noexcept { return all_threads("setreuid", SYS_setreuid, r, e); }
PSX_EXPORT int setregid(gid_t r, gid_t e) noexcept { return all_threads("setregid", SYS_setregid, r, e); }
PSX_EXPORT int setresuid(uid_t r, uid_t e, uid_t s) noexcept {
    return all_threads("setresuid", SYS_setresuid, r, e, s);
}
PSX_EXPORT int setresgid(gid_t r, gid_t e, gid_t s) noexcept {
    return all_threads("setresgid", SYS_setresgid, r, e, s);
}

PSX_EXPORT int setgroups(size_t size, const gid_t *list) noexcept {
    auto call = make_call("setgroups", SYS_setgroups, static_cast<long>(size), reinterpret_cast<long>(list));
    // Larger sizes fail with EINVAL before the kernel reads the list.
    if (size <= static_cast<size_t>(kNgroupsMax)) {
        call.copy_arg = 1;
        call.copy_size = size * sizeof(gid_t);
    }
    return static_cast<int>(libc_result(broadcast(call)));
}

// glibc's initgroups reaches its setgroups through a private alias that no
// preload can replace, so it is rebuilt here on top of ours, with glibc's
// behaviour: ask getgrouplist (NSS) for the groups, then set as many as the
// kernel accepts.
PSX_EXPORT int initgroups(const char *user, gid_t group) {
    int n = 64;
    gid_t *groups = nullptr;
    for (;;) {
        auto *grown = static_cast<gid_t *>(realloc(groups, static_cast<size_t>(n) * sizeof(gid_t)));
        if (!grown) {
            free(groups);
            errno = ENOMEM;
            return -1;
        }
        groups = grown;
        int want = n;
        if (getgrouplist(user, group, groups, &want) >= 0) {
            n = want;
            break;
        }
        n = want > n ? want : n * 2;
    }
    long limit = sysconf(_SC_NGROUPS_MAX);
    if (limit > 0 && n > limit) n = static_cast<int>(limit);
    int r;
    do {
        r = setgroups(static_cast<size_t>(n), groups);
    } while (r == -1 && errno == EINVAL && --n > 0);
    int saved = errno;
    free(groups);
    errno = saved;
    return r;
}

// capset(2).  The caller runs the program's own call, so the kernel reads
// the program's header and data itself: a bad pointer gets EFAULT, an
// unknown version EINVAL with the preferred version written back, a header
// naming another thread EPERM -- exactly as without psxshim, and nobody else
// is touched.  Once it succeeded, the other threads are given the sets the
// caller now holds, read back with capget: the kernel's own reading of the
// program's memory, whatever version or length it used, and nothing the
// program changes meanwhile.  (Reading the memory ourselves first took a
// process_vm_readv, 1.7-2.1 us on the VM, more than the capset itself.)
PSX_EXPORT int capset(cap_user_header_t hdr, const cap_user_data_t data) noexcept {
    __user_cap_header_struct others = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct sets[2] = {};
    auto call = make_call("capset", SYS_capset, reinterpret_cast<long>(&others), reinterpret_cast<long>(sets));
    call.caller_args[0] = reinterpret_cast<long>(hdr);
    call.caller_args[1] = reinterpret_cast<long>(data);
    call.from_caller = [](const psxshim::engine::Call &c) {
        __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        return psxshim::sys::call(SYS_capget, reinterpret_cast<long>(&h), c.args[1]) == 0;
    };
    return static_cast<int>(libc_result(broadcast(call)));
}

// prctl(2): only the per-thread credential options are broadcast; every
// other option (PR_SET_NAME, PR_SET_PDEATHSIG, ...) is per-thread on purpose
// and goes straight to the kernel, as glibc would send it.
PSX_EXPORT int prctl(int option, ...) noexcept {
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long);
    unsigned long a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long);
    unsigned long a5 = va_arg(ap, unsigned long);
    va_end(ap);
    const char *name = nullptr;
    switch (option) {
    case PR_SET_KEEPCAPS: name = "prctl(PR_SET_KEEPCAPS)"; break;
    case PR_SET_SECUREBITS: name = "prctl(PR_SET_SECUREBITS)"; break;
    case PR_CAPBSET_DROP: name = "prctl(PR_CAPBSET_DROP)"; break;
    case PR_SET_NO_NEW_PRIVS: name = "prctl(PR_SET_NO_NEW_PRIVS)"; break;
    case PR_CAP_AMBIENT:
        if (a2 == PR_CAP_AMBIENT_RAISE) name = "prctl(PR_CAP_AMBIENT_RAISE)";
        if (a2 == PR_CAP_AMBIENT_LOWER) name = "prctl(PR_CAP_AMBIENT_LOWER)";
        if (a2 == PR_CAP_AMBIENT_CLEAR_ALL) name = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)";
        break;
    }
    long args[5] = {option, static_cast<long>(a2), static_cast<long>(a3), static_cast<long>(a4),
                    static_cast<long>(a5)};
    if (!name) {
        return static_cast<int>(
            libc_result(psxshim::sys::call(SYS_prctl, args[0], args[1], args[2], args[3], args[4])));
    }
    return all_threads(name, SYS_prctl, args[0], args[1], args[2], args[3], args[4]);
}
