// Fidelity: every wrapped call returns exactly what glibc returns -- value and
// errno, the latter also when the call succeeds (errno untouched) -- for
// invalid inputs as well as valid no-op ones, and a call that fails on the
// calling thread changes no thread.  Run with the shim only.
//
// The reference is glibc's own function, taken from libc.so.6 itself
// (dlsym(RTLD_NEXT) from the executable would find the preloaded shim first),
// or the raw system call.  Every compared call either fails or changes
// nothing, so running the reference after the shim is harmless.  After each
// one, /proc is read for every thread: nothing may have changed.
//
// argv selects:
//   root         invalid inputs as root (EINVAL, EFAULT, EPERM from capset/prctl)
//   nonroot      the process first becomes uid/gid 1000 (all threads), then asks
//                for what it may not have (EPERM)
//   caller-only  the calling thread alone is made less privileged with raw
//                system calls, so the call fails on it and would succeed on
//                every other thread: no other thread may change
#include <dlfcn.h>
#include <grp.h>
#include <linux/securebits.h>
#include <sys/mman.h>

#include <cstdio>
#include <string>
#include <vector>

#include "calls_util.h"

namespace {

constexpr int kSentinel = 4242;  // errno before each call

struct Result {
    long ret;
    int err;
    bool operator==(const Result &o) const { return ret == o.ret && err == o.err; }
};

template <class F>
Result run(F f) {
    errno = kSentinel;
    long r = f();
    return {r, errno};
}

std::string show(Result r) {
    return "ret=" + std::to_string(r.ret) + " errno=" + (r.err == kSentinel ? "unchanged" : ct::errname(r.err));
}

ct::Failures g_f;
int g_checks = 0;

// Compares the shim's call with the reference, expects `want` from both, and
// checks that no thread changed.
template <class A, class B>
void same(const std::string &what, A shim, B ref, Result want) {
    g_checks++;
    ct::Snapshot before = ct::snapshot();
    Result s = run(shim);
    std::string changed = ct::changed_since(before);
    Result r = run(ref);
    if (!(s == r)) g_f.add(what + ": shim gives " + show(s) + ", glibc/kernel gives " + show(r));
    if (!(s == want)) g_f.add(what + ": shim gives " + show(s) + ", expected " + show(want));
    if (!changed.empty()) g_f.add(what + " (" + show(s) + ") changed a thread:\n" + changed);
}

Result fail(int e) { return {-1, e}; }
const Result kOk = {0, kSentinel};

template <class T>
T real(const char *name) {
    static void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void *p = libc ? dlsym(libc, name) : nullptr;
    if (!p) {
        std::printf("FAIL: glibc's %s not found: %s\n", name, dlerror());
        std::exit(1);
    }
    return reinterpret_cast<T>(p);
}

using setid1 = int (*)(unsigned);
using setid2 = int (*)(unsigned, unsigned);
using setid3 = int (*)(unsigned, unsigned, unsigned);
using setgroups_t = int (*)(size_t, const gid_t *);
using initgroups_t = int (*)(const char *, gid_t);
using capset_t = int (*)(cap_user_header_t, const cap_user_data_t);
using prctl_t = int (*)(int, ...);

// A page followed by an inaccessible one: pointers near its end make reads
// that start fine and fault part-way.
char *edge_page() {
    long pg = sysconf(_SC_PAGESIZE);
    auto *p = static_cast<char *>(mmap(nullptr, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return nullptr;
    mprotect(p + pg, pg, PROT_NONE);
    return p + pg;  // the inaccessible page; valid bytes end here
}

void prctl_cases(int cap, int cap_not_inh, bool root) {
    auto P = real<prctl_t>("prctl");
    auto both = [&](const std::string &what, long o, long a2, long a3, long a4, long a5, Result want) {
        same(what, [=] { return static_cast<long>(prctl(o, a2, a3, a4, a5)); },
             [=] { return static_cast<long>(P(o, a2, a3, a4, a5)); }, want);
        same(what + " (vs raw syscall)", [=] { return static_cast<long>(prctl(o, a2, a3, a4, a5)); },
             [=] { return syscall(SYS_prctl, o, a2, a3, a4, a5); }, want);
    };
    both("prctl(9999)", 9999, 0, 0, 0, 0, fail(EINVAL));
    both("prctl(PR_SET_KEEPCAPS, 2)", PR_SET_KEEPCAPS, 2, 0, 0, 0, fail(EINVAL));
    // CAP_SETPCAP is checked before the capability number.
    both("prctl(PR_CAPBSET_DROP, 9999)", PR_CAPBSET_DROP, 9999, 0, 0, 0, root ? fail(EINVAL) : fail(EPERM));
    both("prctl(PR_CAPBSET_DROP, -1)", PR_CAPBSET_DROP, -1, 0, 0, 0, root ? fail(EINVAL) : fail(EPERM));
    both("prctl(PR_CAP_AMBIENT, 99)", PR_CAP_AMBIENT, 99, 0, 0, 0, fail(EINVAL));
    both("prctl(PR_CAP_AMBIENT, RAISE, 9999)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 9999, 0, 0, fail(EINVAL));
    both("prctl(PR_CAP_AMBIENT, LOWER, 9999)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, 9999, 0, 0, fail(EINVAL));
    both("prctl(PR_CAP_AMBIENT, CLEAR_ALL, 1)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 1, 0, 0, fail(EINVAL));
    both("prctl(PR_CAP_AMBIENT, IS_SET, 9999)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 9999, 0, 0, fail(EINVAL));
    both("prctl(PR_SET_NO_NEW_PRIVS, 0)", PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0, fail(EINVAL));
    both("prctl(PR_SET_NO_NEW_PRIVS, 1, 1)", PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0, fail(EINVAL));
    both("prctl(PR_SET_SECUREBITS, 1<<20)", PR_SET_SECUREBITS, 1L << 20, 0, 0, 0, fail(EPERM));
    both("prctl(PR_GET_KEEPCAPS)", PR_GET_KEEPCAPS, 0, 0, 0, 0, {0, kSentinel});
    both("prctl(PR_GET_NO_NEW_PRIVS)", PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0, {0, kSentinel});
    both("prctl(PR_SET_KEEPCAPS, 0) (no-op)", PR_SET_KEEPCAPS, 0, 0, 0, 0, kOk);
    long sb = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
    both("prctl(PR_GET_SECUREBITS)", PR_GET_SECUREBITS, 0, 0, 0, 0, {sb, kSentinel});
    if (root) both("prctl(PR_SET_SECUREBITS, current) (no-op)", PR_SET_SECUREBITS, sb, 0, 0, 0, kOk);
    else both("prctl(PR_SET_SECUREBITS, current) as non-root", PR_SET_SECUREBITS, sb, 0, 0, 0, fail(EPERM));
    if (cap >= 0) {
        both("prctl(PR_CAPBSET_READ, cap)", PR_CAPBSET_READ, cap, 0, 0, 0, {1, kSentinel});
        both("prctl(PR_CAP_AMBIENT, IS_SET, cap)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0, {0, kSentinel});
        both("prctl(PR_CAP_AMBIENT, RAISE, cap, 1) (arg4 must be 0)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 1, 0,
             fail(EINVAL));
        both("prctl(PR_CAP_AMBIENT, LOWER, cap) (not raised: no-op)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap, 0, 0,
             kOk);
        if (!root) both("prctl(PR_CAPBSET_DROP, cap) as non-root", PR_CAPBSET_DROP, cap, 0, 0, 0, fail(EPERM));
    }
    if (cap_not_inh >= 0)
        both("prctl(PR_CAP_AMBIENT, RAISE, not inheritable)", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap_not_inh, 0, 0,
             fail(EPERM));
    // PR_SET_NAME passes straight through; same return and errno.  Not
    // under AddressSanitizer: its prctl interceptor, which runs before ours,
    // copies the name after the call and faults on the bad pointer itself.
#if defined(__SANITIZE_ADDRESS__)
    std::printf("note: AddressSanitizer build: prctl(PR_SET_NAME, bad pointer) left out (ASan's interceptor "
                "dereferences it); the plain build checks it\n");
#else
    both("prctl(PR_SET_NAME, bad pointer)", PR_SET_NAME, 8, 0, 0, 0, fail(EFAULT));
#endif
}

void capset_cases(bool root, int other_tid) {
    auto C = real<capset_t>("capset");
    auto cmp = [&](const std::string &what, __user_cap_header_struct h, const __user_cap_data_struct *d_in,
                   bool bad_hdr, Result want) {
        __user_cap_header_struct hs = h, hr = h;  // each call gets its own copy
        const __user_cap_data_struct *dps = d_in, *dpr = d_in;
        cap_user_header_t phs = bad_hdr ? nullptr : &hs;
        cap_user_header_t phr = bad_hdr ? nullptr : &hr;
        same(what, [&] { return static_cast<long>(capset(phs, const_cast<cap_user_data_t>(dps))); },
             [&] { return static_cast<long>(C(phr, const_cast<cap_user_data_t>(dpr))); }, want);
        if (!bad_hdr && (hs.version != hr.version || hs.pid != hr.pid)) {
            g_f.add(what + ": header after the shim's capset {version " + std::to_string(hs.version) + ", pid " +
                    std::to_string(hs.pid) + "}, after glibc's {version " + std::to_string(hr.version) + ", pid " +
                    std::to_string(hr.pid) + "}");
        }
    };
    ct::Caps cur = ct::get_caps();
    const __user_cap_data_struct *d = cur.d;
    __user_cap_header_struct v3 = {_LINUX_CAPABILITY_VERSION_3, 0};

    cmp("capset(NULL header)", v3, d, true, fail(EFAULT));
    cmp("capset(v3, NULL data)", v3, nullptr, false, fail(EFAULT));
    cmp("capset(v3, data = (void*)8)", v3, reinterpret_cast<const __user_cap_data_struct *>(8), false, fail(EFAULT));
    // Data whose second word runs into an inaccessible page.
    if (char *edge = edge_page()) {
        auto *half = reinterpret_cast<__user_cap_data_struct *>(edge - sizeof(__user_cap_data_struct));
        *half = cur.d[0];
        cmp("capset(v3, data straddling an unmapped page)", v3, half, false, fail(EFAULT));
        // A header straddling the edge.
        auto *hp = reinterpret_cast<__user_cap_header_struct *>(edge - 4);
        hp->version = _LINUX_CAPABILITY_VERSION_3;
        g_checks++;
        ct::Snapshot before = ct::snapshot();
        Result s = run([&] { return static_cast<long>(capset(hp, const_cast<cap_user_data_t>(d))); });
        Result r = run([&] { return static_cast<long>(C(hp, const_cast<cap_user_data_t>(d))); });
        if (!(s == r) || !(s == fail(EFAULT)))
            g_f.add("capset(header straddling an unmapped page): shim " + show(s) + ", glibc " + show(r) + ", expected EFAULT");
        std::string ch = ct::changed_since(before);
        if (!ch.empty()) g_f.add("capset(header straddling an unmapped page) changed a thread:\n" + ch);
    }
    // Unknown version: EINVAL, and the kernel writes its preferred version
    // back into the header (compared by cmp()).
    __user_cap_header_struct bad = {0x12345678, 0};
    cmp("capset(version 0x12345678)", bad, d, false, fail(EINVAL));
    __user_cap_header_struct v0 = {0, 0};
    cmp("capset(version 0)", v0, d, false, fail(EINVAL));
    __user_cap_header_struct badnull = {0x12345678, 0};
    cmp("capset(version 0x12345678, NULL data)", badnull, nullptr, false, fail(EINVAL));
    {
        __user_cap_header_struct h = bad;
        errno = 0;
        capset(&h, const_cast<cap_user_data_t>(d));
        if (h.version != _LINUX_CAPABILITY_VERSION_3)
            g_f.add("capset(bad version) wrote back version " + std::to_string(h.version) + ", expected _LINUX_CAPABILITY_VERSION_3");
    }
    // Another process, another thread of this process: EPERM.
    __user_cap_header_struct init = {_LINUX_CAPABILITY_VERSION_3, 1};
    cmp("capset(pid 1)", init, d, false, fail(EPERM));
    __user_cap_header_struct parent = {_LINUX_CAPABILITY_VERSION_3, getppid()};
    cmp("capset(parent process)", parent, d, false, fail(EPERM));
    if (other_tid > 0) {
        __user_cap_header_struct sib = {_LINUX_CAPABILITY_VERSION_3, other_tid};
        cmp("capset(another thread of this process)", sib, d, false, fail(EPERM));
    }
    __user_cap_header_struct neg = {_LINUX_CAPABILITY_VERSION_3, -5};
    cmp("capset(pid -5)", neg, d, false, fail(EPERM));
    // Effective not within permitted.
    int missing = -1;
    for (int c = 0; c <= CAP_LAST_CAP; c++) {
        if (!cur.has_prm(c)) {
            missing = c;
            break;
        }
    }
    if (missing >= 0) {
        ct::Caps more = cur;
        more.d[missing / 32].effective |= 1u << (missing % 32);
        cmp("capset(effective beyond permitted)", v3, more.d, false, fail(EPERM));
        ct::Caps raise = cur;
        raise.d[missing / 32].permitted |= 1u << (missing % 32);
        cmp("capset(raise permitted)", v3, raise.d, false, fail(EPERM));
    }
    // Inheritable outside the bounding set (as root, with CAP_SETPCAP, this is
    // the only thing stopping it).
    int unbounded = -1;
    for (int c = 0; c <= CAP_LAST_CAP; c++) {
        if (!ct::in_bounding(c) && !cur.has_inh(c)) {
            unbounded = c;
            break;
        }
    }
    if (unbounded >= 0) {
        ct::Caps inh = cur;
        inh.set_inh(unbounded);
        cmp("capset(inheritable outside bounding)", v3, inh.d, false, fail(EPERM));
    }
    // The current sets again: success, nothing changes.
    cmp("capset(current sets) (no-op)", v3, d, false, kOk);
    __user_cap_header_struct me = {_LINUX_CAPABILITY_VERSION_3, gettid()};
    cmp("capset(pid = own tid, current sets) (no-op)", me, d, false, kOk);
    if (!root) {
        ct::Caps all = cur;
        for (auto &w : all.d) w.permitted = w.effective = ~0u;
        cmp("capset(every capability) as non-root", v3, all.d, false, fail(EPERM));
    }
}

void setid_cases(bool root) {
    auto U1 = real<setid1>("setuid");
    auto G1 = real<setid1>("setgid");
    auto EU = real<setid1>("seteuid");
    auto EG = real<setid1>("setegid");
    auto RU = real<setid2>("setreuid");
    auto RG = real<setid2>("setregid");
    auto SU = real<setid3>("setresuid");
    auto SG = real<setid3>("setresgid");
    auto GR = real<setgroups_t>("setgroups");
    auto IG = real<initgroups_t>("initgroups");
    if (reinterpret_cast<void *>(U1) == reinterpret_cast<void *>(&setuid))
        g_f.add("setuid resolves to glibc's own function: the shim does not interpose it");
    const unsigned keep = static_cast<unsigned>(-1);

    same("seteuid(-1)", [] { return static_cast<long>(seteuid(-1)); }, [=] { return static_cast<long>(EU(-1)); }, fail(EINVAL));
    same("setegid(-1)", [] { return static_cast<long>(setegid(-1)); }, [=] { return static_cast<long>(EG(-1)); }, fail(EINVAL));

    std::vector<gid_t> big(65537, 0);
    // The kernel checks CAP_SETGID before the size: EPERM first for non-root.
    Result too_big = root ? fail(EINVAL) : fail(EPERM);
    same("setgroups(65537, list)", [&] { return static_cast<long>(setgroups(big.size(), big.data())); },
         [&] { return static_cast<long>(GR(big.size(), big.data())); }, too_big);
    same("setgroups((size_t)-1, list)", [&] { return static_cast<long>(setgroups(static_cast<size_t>(-1), big.data())); },
         [&] { return static_cast<long>(GR(static_cast<size_t>(-1), big.data())); }, too_big);
    same("setgroups(INT_MAX + 1, list)", [&] { return static_cast<long>(setgroups(size_t{1} << 31, big.data())); },
         [&] { return static_cast<long>(GR(size_t{1} << 31, big.data())); }, too_big);
    auto *bad = reinterpret_cast<const gid_t *>(8);
    same("setgroups(2, (gid_t*)8)", [=] { return static_cast<long>(setgroups(2, bad)); },
         [=] { return static_cast<long>(GR(2, bad)); }, root ? fail(EFAULT) : fail(EPERM));
    same("setgroups(1, NULL)", [] { return static_cast<long>(setgroups(1, nullptr)); },
         [=] { return static_cast<long>(GR(1, nullptr)); }, root ? fail(EFAULT) : fail(EPERM));
    if (char *edge = edge_page()) {
        auto *straddle = reinterpret_cast<gid_t *>(edge - sizeof(gid_t));
        *straddle = 0;
        same("setgroups(2, list straddling an unmapped page)", [=] { return static_cast<long>(setgroups(2, straddle)); },
             [=] { return static_cast<long>(GR(2, straddle)); }, root ? fail(EFAULT) : fail(EPERM));
        auto *edge_list = reinterpret_cast<gid_t *>(edge);
        same("setgroups(65536, unmapped)", [=] { return static_cast<long>(setgroups(65536, edge_list)); },
             [=] { return static_cast<long>(GR(65536, edge_list)); }, root ? fail(EFAULT) : fail(EPERM));
    }

    if (root) {
        // Valid no-ops as root: 0 and errno untouched.
        same("setuid(0) as root", [] { return static_cast<long>(setuid(0)); }, [=] { return static_cast<long>(U1(0)); }, kOk);
        same("setgid(0) as root", [] { return static_cast<long>(setgid(0)); }, [=] { return static_cast<long>(G1(0)); }, kOk);
        same("seteuid(0) as root", [] { return static_cast<long>(seteuid(0)); }, [=] { return static_cast<long>(EU(0)); }, kOk);
        same("setresuid(-1,-1,-1)", [=] { return static_cast<long>(setresuid(keep, keep, keep)); },
             [=] { return static_cast<long>(SU(keep, keep, keep)); }, kOk);
        same("setresgid(-1,-1,-1)", [=] { return static_cast<long>(setresgid(keep, keep, keep)); },
             [=] { return static_cast<long>(SG(keep, keep, keep)); }, kOk);
        same("setreuid(-1,-1)", [=] { return static_cast<long>(setreuid(keep, keep)); },
             [=] { return static_cast<long>(RU(keep, keep)); }, kOk);
        int n = getgroups(0, nullptr);
        std::vector<gid_t> g(n > 0 ? n : 1);
        n = getgroups(n, g.data());
        same("setgroups(current list) (no-op)", [&] { return static_cast<long>(setgroups(n, g.data())); },
             [&] { return static_cast<long>(GR(n, g.data())); }, kOk);
        return;
    }
    // Non-root: uid/gid 1000 everywhere.
    same("setuid(0)", [] { return static_cast<long>(setuid(0)); }, [=] { return static_cast<long>(U1(0)); }, fail(EPERM));
    same("setuid(2000)", [] { return static_cast<long>(setuid(2000)); }, [=] { return static_cast<long>(U1(2000)); }, fail(EPERM));
    same("setgid(0)", [] { return static_cast<long>(setgid(0)); }, [=] { return static_cast<long>(G1(0)); }, fail(EPERM));
    same("seteuid(0)", [] { return static_cast<long>(seteuid(0)); }, [=] { return static_cast<long>(EU(0)); }, fail(EPERM));
    same("setegid(0)", [] { return static_cast<long>(setegid(0)); }, [=] { return static_cast<long>(EG(0)); }, fail(EPERM));
    same("setreuid(0, -1)", [=] { return static_cast<long>(setreuid(0, keep)); }, [=] { return static_cast<long>(RU(0, keep)); }, fail(EPERM));
    same("setregid(-1, 0)", [=] { return static_cast<long>(setregid(keep, 0)); }, [=] { return static_cast<long>(RG(keep, 0)); }, fail(EPERM));
    same("setresuid(2000, 2000, 2000)", [] { return static_cast<long>(setresuid(2000, 2000, 2000)); },
         [=] { return static_cast<long>(SU(2000, 2000, 2000)); }, fail(EPERM));
    same("setresuid(-1, -1, 0)", [=] { return static_cast<long>(setresuid(keep, keep, 0)); },
         [=] { return static_cast<long>(SU(keep, keep, 0)); }, fail(EPERM));
    same("setresgid(2000, 2000, 2000)", [] { return static_cast<long>(setresgid(2000, 2000, 2000)); },
         [=] { return static_cast<long>(SG(2000, 2000, 2000)); }, fail(EPERM));
    gid_t zero = 0;
    same("setgroups(1, {0})", [&] { return static_cast<long>(setgroups(1, &zero)); },
         [&] { return static_cast<long>(GR(1, &zero)); }, fail(EPERM));
    same("initgroups(\"daemon\", 1)", [] { return static_cast<long>(initgroups("daemon", 1)); },
         [=] { return static_cast<long>(IG("daemon", 1)); }, fail(EPERM));
    // Allowed no-ops as non-root.
    same("setuid(1000) as 1000", [] { return static_cast<long>(setuid(1000)); }, [=] { return static_cast<long>(U1(1000)); }, kOk);
    same("setresuid(-1,-1,-1) as 1000", [=] { return static_cast<long>(setresuid(keep, keep, keep)); },
         [=] { return static_cast<long>(SU(keep, keep, keep)); }, kOk);
    same("setregid(1000, 1000) as 1000", [] { return static_cast<long>(setregid(1000, 1000)); },
         [=] { return static_cast<long>(RG(1000, 1000)); }, kOk);
}

// The calling thread alone loses a capability (raw capset/prctl, which the
// shim does not broadcast); the call then fails on it with EPERM and would
// have succeeded on every other thread.  Nothing may change anywhere.
void caller_only_cases(int cap) {
    ct::Caps full = ct::get_caps();
    auto without_eff = [&](int c) {
        ct::Caps x = full;
        x.clear_eff(c);
        if (ct::raw_capset(x) != 0) g_f.add("setup: raw capset failed: " + ct::errname(errno));
    };
    auto restore = [&] {
        if (ct::raw_capset(full) != 0) g_f.add("restore: raw capset failed: " + ct::errname(errno));
    };
    auto expect_eperm = [&](const std::string &what, auto f) {
        g_checks++;
        ct::Snapshot before = ct::snapshot();
        Result s = run(f);
        if (!(s == fail(EPERM))) g_f.add(what + ": " + show(s) + ", expected EPERM (it fails on the caller)");
        std::string ch = ct::changed_since(before);
        if (!ch.empty()) g_f.add(what + " failed on the caller but changed another thread:\n" + ch);
    };

    without_eff(CAP_SETUID);
    expect_eperm("setuid(1001) without CAP_SETUID on the caller", [] { return static_cast<long>(setuid(1001)); });
    expect_eperm("seteuid(1001) ...", [] { return static_cast<long>(seteuid(1001)); });
    expect_eperm("setreuid(1001, 1001) ...", [] { return static_cast<long>(setreuid(1001, 1001)); });
    expect_eperm("setresuid(1001, 1001, 1001) ...", [] { return static_cast<long>(setresuid(1001, 1001, 1001)); });
    restore();

    without_eff(CAP_SETGID);
    gid_t g = 77;
    expect_eperm("setgid(77) without CAP_SETGID on the caller", [] { return static_cast<long>(setgid(77)); });
    expect_eperm("setegid(77) ...", [] { return static_cast<long>(setegid(77)); });
    expect_eperm("setregid(77, 77) ...", [] { return static_cast<long>(setregid(77, 77)); });
    expect_eperm("setresgid(77, 77, 77) ...", [] { return static_cast<long>(setresgid(77, 77, 77)); });
    expect_eperm("setgroups(1, {77}) ...", [&] { return static_cast<long>(setgroups(1, &g)); });
    expect_eperm("initgroups(\"daemon\", 1) ...", [] { return static_cast<long>(initgroups("daemon", 1)); });
    restore();

    if (cap >= 0) {
        without_eff(CAP_SETPCAP);
        expect_eperm("prctl(PR_CAPBSET_DROP) without CAP_SETPCAP on the caller",
                     [=] { return static_cast<long>(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)); });
        long sb = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
        expect_eperm("prctl(PR_SET_SECUREBITS, +NOROOT) ...",
                     [=] { return static_cast<long>(prctl(PR_SET_SECUREBITS, sb | SECBIT_NOROOT, 0, 0, 0)); });
        restore();

        // Ambient raise: inheritable everywhere (broadcast), then cleared on
        // the caller alone.
        int other = ct::pick_cap({cap});
        ct::Caps everyone = full;
        everyone.set_inh(other >= 0 ? other : cap);
        // Every thread gets the inheritable bit through the shim's broadcast.
        __user_cap_header_struct h3 = {_LINUX_CAPABILITY_VERSION_3, 0};
        if (capset(&h3, everyone.d) != 0) g_f.add("setup: capset(inheritable) failed: " + ct::errname(errno));
        int amb = other >= 0 ? other : cap;
        ct::Caps caller_noinh = everyone;
        caller_noinh.clear_inh(amb);
        if (ct::raw_capset(caller_noinh) != 0) g_f.add("setup: raw capset failed");
        expect_eperm("prctl(PR_CAP_AMBIENT_RAISE) on a caller without the inheritable bit",
                     [=] { return static_cast<long>(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, amb, 0, 0)); });
        if (ct::raw_capset(everyone) != 0) g_f.add("restore: raw capset failed");

        // capset: the caller alone lacks `cap` in its permitted set; asking
        // for the old permitted set with `other` dropped from effective fails
        // on it, and would drop that effective bit on every other thread.
        // Irreversible (permitted cannot be raised again), so it comes after
        // everything that needs the caller restored.
        ct::Caps less = everyone;
        less.clear_eff(cap);
        less.clear_prm(cap);
        if (ct::raw_capset(less) != 0) g_f.add("setup: raw capset failed");
        if (other >= 0) {
            ct::Caps ask = everyone;
            ask.clear_eff(other);
            __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
            expect_eperm("capset(raise permitted back) on a caller that dropped it",
                         [&] { return static_cast<long>(capset(&h, ask.d)); });
        }
    }

    // Last, because it cannot be undone: lock keep-caps on the caller alone.
    long sb = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (syscall(SYS_prctl, PR_SET_SECUREBITS, sb | SECBIT_KEEP_CAPS_LOCKED, 0, 0, 0) == 0) {
        expect_eperm("prctl(PR_SET_KEEPCAPS, 1) with keep-caps locked on the caller",
                     [] { return static_cast<long>(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)); });
    } else {
        g_f.add("setup: could not lock keep-caps on the caller: " + ct::errname(errno));
    }
}

}  // namespace

int main(int argc, char **argv) {
    (void)pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (!pt::shim_loaded()) return std::printf("FAIL: this test checks the shim, which is not loaded\n"), 1;
    if (geteuid() != 0) return pt::skip("needs root to set up (CI runs as root)");
    int cap = ct::pick_cap();
    int cap_not_inh = -1;
    {
        ct::Caps c = ct::get_caps();
        for (int x = 0; x <= CAP_LAST_CAP; x++) {
            if (c.has_prm(x) && !c.has_inh(x)) {
                cap_not_inh = x;
                break;
            }
        }
    }

    if (which == "nonroot") {
        // Still single-threaded: every thread below starts as 1000.
        if (setgroups(0, nullptr) != 0 || setresgid(1000, 1000, 1000) != 0 || setresuid(1000, 1000, 1000) != 0)
            return std::perror("becoming uid 1000 (setup)"), 1;
    }
    ct::World world(3, 1);
    int other_tid = world.sleepers.tids().at(0);

    if (which == "root") {
        setid_cases(true);
        capset_cases(true, other_tid);
        prctl_cases(cap, cap_not_inh, true);
    } else if (which == "nonroot") {
        setid_cases(false);
        capset_cases(false, other_tid);
        prctl_cases(cap, -1, false);
    } else if (which == "caller-only") {
        if (cap < 0) std::printf("note: no spare capability; capset/prctl caller-only cases left out\n");
        caller_only_cases(cap);
    } else {
        return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    }
    if (!g_f.ok()) {
        std::printf("FAIL fidelity %s:\n%s", which.c_str(), g_f.text.c_str());
        return 1;
    }
    std::printf("PASS fidelity %s: %d checks (results as glibc/the kernel give them, no thread changed)\n", which.c_str(), g_checks);
    return 0;
}
