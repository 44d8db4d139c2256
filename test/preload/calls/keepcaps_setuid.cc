// PR_SET_KEEPCAPS(1) and then a uid change away from root: every thread --
// not just the caller -- keeps its permitted capabilities (effective ones are
// cleared by the kernel), and then capset() can raise the effective set again
// on every thread.  argv selects the uid call: setuid, setreuid, setresuid.
//
// Negative control: without the shim keep-caps is set on the caller only, and
// glibc's setuid broadcast then strips the pthreads of every capability while
// the raw-clone threads stay root.
#include <cstdio>
#include <string>

#include "calls_util.h"

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    if (syscall(SYS_prctl, PR_GET_KEEPCAPS, 0, 0, 0, 0) != 0) return pt::skip("keep-caps already set at start");
    ct::Caps start = ct::get_caps();
    if (start.prm() == 0) return pt::skip("no permitted capabilities at start");
    const uid_t kUid = 1000;

    ct::World world(4, 2);
    ct::Failures f;
    if (int rc = prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0); rc != 0) f.add("PR_SET_KEEPCAPS: " + ct::outcome(rc, errno));
    int rc;
    if (which == "setuid") rc = setuid(kUid);
    else if (which == "setreuid") rc = setreuid(kUid, kUid);
    else if (which == "setresuid") rc = setresuid(kUid, kUid, kUid);
    else return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    if (rc != 0) f.add(which + "(" + std::to_string(kUid) + "): " + ct::outcome(rc, errno));

    // Phase 1: every thread is uid kUid with the original permitted set.
    std::string diff;
    for (const pt::ThreadCreds &c : pt::read_all()) {
        if (c.uid[0] != kUid || c.uid[1] != kUid || c.uid[2] != kUid || c.cap_prm != start.prm() || c.cap_eff != 0) {
            diff += "after keep-caps + " + which + ": thread " + std::to_string(c.tid) + ": uids " +
                    std::to_string(c.uid[0]) + "," + std::to_string(c.uid[1]) + "," + std::to_string(c.uid[2]) +
                    " CapPrm " + std::to_string(c.cap_prm) + " CapEff " + std::to_string(c.cap_eff) +
                    "; expected uid " + std::to_string(kUid) + ", CapPrm " + std::to_string(start.prm()) +
                    " (kept), CapEff 0\n";
        }
    }
    diff += world.differences();

    // Phase 2: raise the effective set back from the kept permitted set.
    ct::Caps now = ct::get_caps();
    if (now.prm() == start.prm()) {
        for (auto &w : now.d) w.effective = w.permitted;
        __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        if (int r = capset(&h, now.d); r != 0) f.add("capset(effective = permitted) as uid 1000: " + ct::outcome(r, errno));
        for (const pt::ThreadCreds &c : pt::read_all()) {
            if (c.cap_eff != start.prm()) {
                diff += "after capset: thread " + std::to_string(c.tid) + " CapEff " + std::to_string(c.cap_eff) +
                        ", expected " + std::to_string(start.prm()) + "\n";
            }
        }
        diff += world.differences();
    } else {
        f.add("caller lost its permitted set despite keep-caps: " + std::to_string(now.prm()));
    }

    if (!f.ok()) {
        std::printf("FAIL keepcaps+%s:\n%s%s", which.c_str(), f.text.c_str(), diff.c_str());
        return 1;
    }
    std::string what = "PR_SET_KEEPCAPS + " + which + " keeps permitted capabilities on every thread";
    return pt::finish(expect, diff, what.c_str());
}
