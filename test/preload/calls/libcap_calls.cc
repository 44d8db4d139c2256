// libcap's process-changing calls, from the main thread while pthreads and
// raw-clone threads sleep.  Under the shim libcap finds psx_load_syscalls and
// routes these through the engine, so every thread changes; without it (the
// negative control) libcap makes per-thread system calls.  argv selects:
//   set_proc, drop_bound, set_ambient, reset_ambient, set_secbits, set_mode,
//   setuid, setgroups, iab_set_proc
//   drop_bound_einval   cap_drop_bound(invalid) fails with EINVAL, as the kernel
//                       says (not EPERM), and changes nothing (no control)
//   set_ambient_einval  the same for cap_set_ambient(invalid, CAP_SET)
#include <linux/securebits.h>
#include <sys/capability.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "calls_util.h"

namespace {

std::vector<gid_t> my_groups() {
    int n = getgroups(0, nullptr);
    std::vector<gid_t> g(n > 0 ? n : 0);
    if (n > 0) getgroups(n, g.data());
    std::sort(g.begin(), g.end());
    return g;
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    int cap = ct::pick_cap();
    int cap2 = ct::pick_cap({cap});
    if (cap < 0 || cap2 < 0) return pt::skip("fewer than two spare capabilities in effective, permitted and bounding");

    // ---- single-threaded preconditions ----
    if (which == "set_ambient" || which == "reset_ambient") {
        ct::Caps c = ct::get_caps();
        c.set_inh(cap);
        if (ct::raw_capset(c) != 0) return std::perror("capset inheritable (setup)"), 1;
        if (which == "reset_ambient" && syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0)
            return std::perror("ambient raise (setup)"), 1;
    }
    long sb0 = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (which == "set_secbits" && (sb0 & SECBIT_NOROOT)) return pt::skip("SECBIT_NOROOT already set at start");
    if (which == "setgroups" && my_groups() == std::vector<gid_t>{1001, 1002}) return pt::skip("already in 1001,1002");

    ct::World world(4, 2);
    ct::Failures f;
    int rc = 0;
    errno = 0;
    if (which == "set_proc") {
        cap_t c = cap_get_proc();
        cap_value_t v[] = {cap};
        cap_set_flag(c, CAP_EFFECTIVE, 1, v, CAP_CLEAR);
        cap_set_flag(c, CAP_PERMITTED, 1, v, CAP_CLEAR);
        rc = cap_set_proc(c);
        cap_free(c);
        if (ct::get_caps().has_prm(cap)) f.add("capability " + std::to_string(cap) + " still permitted on the caller");
    } else if (which == "drop_bound") {
        rc = cap_drop_bound(cap);
        if (ct::in_bounding(cap)) f.add("capability " + std::to_string(cap) + " still in the caller's bounding set");
    } else if (which == "set_ambient") {
        rc = cap_set_ambient(cap, CAP_SET);
        if (cap_get_ambient(cap) != 1) f.add("capability " + std::to_string(cap) + " not ambient on the caller");
    } else if (which == "reset_ambient") {
        rc = cap_reset_ambient();
        if (cap_get_ambient(cap) != 0) f.add("capability " + std::to_string(cap) + " still ambient on the caller");
    } else if (which == "set_secbits") {
        rc = cap_set_secbits(static_cast<unsigned>(sb0 | SECBIT_NOROOT));
        if (cap_get_secbits() != static_cast<unsigned>(sb0 | SECBIT_NOROOT)) f.add("caller's securebits not set");
    } else if (which == "set_mode") {
        rc = cap_set_mode(CAP_MODE_NOPRIV);
        if (rc == 0 && cap_get_mode() != CAP_MODE_NOPRIV)
            f.add(std::string("caller's mode is ") + cap_mode_name(cap_get_mode()) + ", expected NOPRIV");
    } else if (which == "setuid") {
        rc = cap_setuid(1000);
        uid_t r, e, s;
        getresuid(&r, &e, &s);
        if (r != 1000 || e != 1000 || s != 1000) f.add("caller's uids are not 1000 after cap_setuid(1000)");
    } else if (which == "setgroups") {
        gid_t g[] = {1002, 1001};
        rc = cap_setgroups(1000, 2, g);
        gid_t r, e, s;
        getresgid(&r, &e, &s);
        if (r != 1000 || e != 1000 || s != 1000) f.add("caller's gids are not 1000 after cap_setgroups");
        if (my_groups() != std::vector<gid_t>{1001, 1002}) f.add("caller's groups are not 1001,1002 after cap_setgroups");
    } else if (which == "iab_set_proc") {
        cap_iab_t iab = cap_iab_init();
        if (cap_iab_set_vector(iab, CAP_IAB_INH, cap, CAP_SET) != 0 ||
            cap_iab_set_vector(iab, CAP_IAB_BOUND, cap2, CAP_SET) != 0) {
            f.add("cap_iab_set_vector failed");
        }
        rc = cap_iab_set_proc(iab);
        cap_free(iab);
        if (!ct::get_caps().has_inh(cap)) f.add("capability " + std::to_string(cap) + " not inheritable on the caller");
        if (ct::in_bounding(cap2)) f.add("capability " + std::to_string(cap2) + " still in the caller's bounding set");
    } else if (which == "drop_bound_einval" || which == "set_ambient_einval") {
        // libcap's prctl wrappers turn the hooked function's negative result
        // into errno themselves; the caller must see the kernel's EINVAL.
        bool bound = which == "drop_bound_einval";
        const char *call = bound ? "cap_drop_bound(999)" : "cap_set_ambient(999, CAP_SET)";
        ct::Snapshot before = ct::snapshot();
        errno = 0;
        int r = bound ? cap_drop_bound(999) : cap_set_ambient(999, CAP_SET);
        int e = errno;
        errno = 0;
        long k = bound ? syscall(SYS_prctl, PR_CAPBSET_DROP, 999, 0, 0, 0)
                       : syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 999, 0, 0);
        int ke = errno;
        if (r != -1 || e != EINVAL)
            f.add(std::string(call) + ": " + ct::outcome(r, e) + ", expected ret=-1 errno=EINVAL (the kernel gives " +
                  ct::outcome(k, ke) + ")");
        std::string ch = ct::changed_since(before);
        if (!ch.empty()) f.add(std::string(call) + " changed a thread:\n" + ch);
        if (!f.ok()) {
            std::printf("FAIL libcap %s:\n%s", which.c_str(), f.text.c_str());
            return 1;
        }
        std::printf("PASS libcap %s fails with EINVAL and changes nothing\n", call);
        return 0;
    } else {
        return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    }
    if (rc != 0) f.add("cap_" + which + " returned " + ct::outcome(rc, errno) + ", expected 0");
    if (!f.ok()) {
        std::printf("FAIL libcap %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::string what = "libcap cap_" + which + " reaches every thread";
    return pt::finish(expect, world.differences(), what.c_str());
}
