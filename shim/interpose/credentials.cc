// The wrapped libc credential calls.  Each one behaves as glibc's does for
// the calling thread (same value, same errno, for every input) and then, if
// it succeeded, takes effect on every other thread before returning.
#include <grp.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/uio.h>
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

// Read n bytes of the caller's memory without risking a fault; false only if
// the memory is not readable (the kernel would then say EFAULT too).
bool read_user(void *dst, const void *src, unsigned long n) {
    long r = psxshim::sys::copy_from_self(dst, src, n);
    if (r == static_cast<long>(n)) return true;
    if (r == -EFAULT || r >= 0) return false;
    // process_vm_readv itself is unavailable (a seccomp filter, say): the
    // kernel is about to read the same bytes for the caller, so read them.
    __builtin_memcpy(dst, src, n);
    return true;
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

// capset(2): the caller's header may name the caller itself (pid == its tid);
// every other thread must say 0 ("myself") instead.  An unknown version is
// left to the kernel alone, on the caller only: it fails with EINVAL and
// writes the preferred version back into the caller's header.
PSX_EXPORT int capset(cap_user_header_t hdr, const cap_user_data_t data) noexcept {
    __user_cap_header_struct h;
    __user_cap_data_struct d[2];
    int words = 0;
    // The usual call, a v3 header and its two data words, takes one read of
    // both; anything short of all of it (a v1 header with one word before an
    // unmapped page, a bad pointer) is read again piece by piece below.
    const psxshim::sys::IoSpan local[2] = {{&h, sizeof h}, {d, sizeof d}};
    const psxshim::sys::IoSpan remote[2] = {{hdr, sizeof h}, {data, sizeof d}};
    bool have_data = psxshim::sys::copy_from_self(local, remote, 2) == static_cast<long>(sizeof h + sizeof d);
    if (have_data || read_user(&h, hdr, sizeof h)) {
        if (h.version == _LINUX_CAPABILITY_VERSION_1) words = 1;
        if (h.version == _LINUX_CAPABILITY_VERSION_2 || h.version == _LINUX_CAPABILITY_VERSION_3) words = 2;
    }
    if (words == 0 || (!have_data && !read_user(d, data, sizeof d[0] * static_cast<unsigned>(words)))) {
        // The kernel refuses these (EFAULT, or EINVAL with the version written
        // back), so the caller alone asks it.  Should it succeed after all
        // (the memory was mapped in between), nobody else has the change and
        // we cannot read what it was: fail closed.
        long r = psxshim::sys::call(SYS_capset, reinterpret_cast<long>(hdr), reinterpret_cast<long>(data));
        if (r < 0) return static_cast<int>(libc_result(r));
        psxshim::engine::die_with("capset: succeeded on memory psxshim could not read; the other threads "
                                  "kept their capabilities, so the process is being killed");
    }
    __user_cap_header_struct others = {h.version, 0};
    auto call = make_call("capset", SYS_capset, reinterpret_cast<long>(&others), reinterpret_cast<long>(d));
    call.caller_args[0] = reinterpret_cast<long>(hdr);
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
