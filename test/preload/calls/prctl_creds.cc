// The credential prctl options, from the main thread while pthreads and
// raw-clone threads sleep.  argv selects the option:
//   keepcaps        PR_SET_KEEPCAPS 1             (checked through each thread's PR_GET_KEEPCAPS)
//   securebits      PR_SET_SECUREBITS +NOROOT      (PR_GET_SECUREBITS on each thread)
//   capbset-drop    PR_CAPBSET_DROP               (CapBnd in /proc)
//   ambient-raise   PR_CAP_AMBIENT_RAISE          (CapAmb)
//   ambient-lower   PR_CAP_AMBIENT_LOWER
//   ambient-clear   PR_CAP_AMBIENT_CLEAR_ALL
//   no-new-privs    PR_SET_NO_NEW_PRIVS           (NoNewPrivs)
// Preconditions (inheritable bits, ambient bits to lower) are set while the
// process is still single-threaded, so every thread starts out identical and
// the negative control can only diverge because of the call under test.
// glibc does not broadcast prctl: without the shim every other thread diverges.
#include <linux/securebits.h>
#include <sys/prctl.h>

#include <cstdio>
#include <string>

#include "calls_util.h"

namespace {

long get(int option, long arg = 0) { return syscall(SYS_prctl, option, arg, 0, 0, 0); }

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");

    // ---- single-threaded setup ----
    int cap = ct::pick_cap();
    int cap2 = ct::pick_cap({cap});
    bool needs_cap = which != "keepcaps" && which != "securebits" && which != "no-new-privs";
    if (needs_cap && cap < 0) return pt::skip("no spare capability in effective, permitted and bounding sets");
    if (which == "ambient-raise" || which == "ambient-lower" || which == "ambient-clear") {
        ct::Caps c = ct::get_caps();
        c.set_inh(cap);
        if (cap2 >= 0) c.set_inh(cap2);
        if (ct::raw_capset(c) != 0) return std::perror("capset inheritable (setup)"), 1;
    }
    if (which == "ambient-lower" || which == "ambient-clear") {
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0)
            return std::perror("ambient raise (setup)"), 1;
        if (which == "ambient-clear" && cap2 >= 0 &&
            syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap2, 0, 0) != 0)
            return std::perror("ambient raise (setup)"), 1;
    }
    long sb0 = get(PR_GET_SECUREBITS);
    if (which == "keepcaps" && get(PR_GET_KEEPCAPS) != 0) return pt::skip("keep-caps already set at start");
    if (which == "securebits" && (sb0 & SECBIT_NOROOT)) return pt::skip("SECBIT_NOROOT already set at start");
    if (which == "no-new-privs" && get(PR_GET_NO_NEW_PRIVS) != 0) return pt::skip("no_new_privs already set at start");

    ct::World world(4, 2);
    ct::Failures f;
    int rc = 0;
    errno = 0;
    if (which == "keepcaps") {
        rc = prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
        if (get(PR_GET_KEEPCAPS) != 1) f.add("PR_GET_KEEPCAPS is " + std::to_string(get(PR_GET_KEEPCAPS)) + " after setting it");
    } else if (which == "securebits") {
        rc = prctl(PR_SET_SECUREBITS, sb0 | SECBIT_NOROOT, 0, 0, 0);
        if (get(PR_GET_SECUREBITS) != (sb0 | SECBIT_NOROOT))
            f.add("PR_GET_SECUREBITS is " + std::to_string(get(PR_GET_SECUREBITS)) + ", expected " +
                  std::to_string(sb0 | SECBIT_NOROOT));
    } else if (which == "capbset-drop") {
        rc = prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
        if (ct::in_bounding(cap)) f.add("capability " + std::to_string(cap) + " still in the caller's bounding set");
    } else if (which == "ambient-raise") {
        rc = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 1)
            f.add("capability " + std::to_string(cap) + " not in the caller's ambient set after raising it");
    } else if (which == "ambient-lower") {
        rc = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap, 0, 0);
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 0)
            f.add("capability " + std::to_string(cap) + " still in the caller's ambient set after lowering it");
    } else if (which == "ambient-clear") {
        rc = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if (pt::read_thread(gettid()).cap_amb != 0) f.add("caller's ambient set not empty after CLEAR_ALL");
    } else if (which == "no-new-privs") {
        rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (get(PR_GET_NO_NEW_PRIVS) != 1) f.add("PR_GET_NO_NEW_PRIVS is not 1 after setting it");
    } else {
        std::fprintf(stderr, "unknown case '%s'\n", which.c_str());
        return 2;
    }
    if (rc != 0) f.add(which + " returned " + ct::outcome(rc, errno) + ", expected 0");
    if (!f.ok()) {
        std::printf("FAIL %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::string what = "prctl " + which + " reaches every thread (pthreads and raw-clone threads)";
    return pt::finish(expect, world.differences(), what.c_str());
}
