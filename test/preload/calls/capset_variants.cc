// capset() beyond the plain case in capset_drop.cc.  argv selects:
//   v1           _LINUX_CAPABILITY_VERSION_1 header (one data word)
//   v2           _LINUX_CAPABILITY_VERSION_2 header
//   self-pid     header.pid = the caller's own tid instead of 0
//   inheritable  raise a bit in the inheritable set (nothing dropped)
//   effective    drop a capability from the effective set only
// With the shim every thread ends with the caller's sets; without it (the
// negative control) every other thread keeps the old ones.
#include <cstdio>
#include <string>

#include "calls_util.h"

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    // v1 has 32 bits only: the capability must be below 32.
    int cap = ct::pick_cap();
    if (cap < 0 || cap >= 32) return pt::skip("no spare capability below 32 in effective, permitted and bounding");
    ct::Caps start = ct::get_caps();
    if (which == "inheritable" && start.has_inh(cap)) return pt::skip("capability already inheritable at start");

    ct::World world(4, 2);
    ct::Failures f;
    ct::Caps want = start;
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2];
    int rc;
    errno = 0;
    if (which == "v1" || which == "v2") {
        h.version = which == "v1" ? _LINUX_CAPABILITY_VERSION_1 : _LINUX_CAPABILITY_VERSION_2;
        want.clear_eff(cap);
        want.clear_prm(cap);
        d[0] = want.d[0];
        d[1] = want.d[1];
        if (which == "v1") d[1] = {0xdeadbeef, 0xdeadbeef, 0xdeadbeef};  // must not be read
        rc = capset(&h, d);
    } else if (which == "self-pid") {
        h.pid = gettid();
        want.clear_eff(cap);
        want.clear_prm(cap);
        d[0] = want.d[0];
        d[1] = want.d[1];
        rc = capset(&h, d);
    } else if (which == "inheritable") {
        want.set_inh(cap);
        d[0] = want.d[0];
        d[1] = want.d[1];
        rc = capset(&h, d);
    } else if (which == "effective") {
        want.clear_eff(cap);
        d[0] = want.d[0];
        d[1] = want.d[1];
        rc = capset(&h, d);
    } else {
        return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    }
    if (rc != 0) f.add("capset " + which + ": " + ct::outcome(rc, errno));
    ct::Caps now = ct::get_caps();
    // A v1 header carries one word: the kernel reads the upper 32 bits of
    // every set as zero, so the caller loses capabilities 32 and up too.
    if (which == "v1") want.d[1] = {0, 0, 0};
    bool same = now.eff() == want.eff() && now.prm() == want.prm() && now.inh() == want.inh();
    if (!same) {
        f.add("caller's sets after capset " + which + ": eff " + std::to_string(now.eff()) + " prm " +
              std::to_string(now.prm()) + " inh " + std::to_string(now.inh()) + ", expected eff " +
              std::to_string(want.eff()) + " prm " + std::to_string(want.prm()) + " inh " + std::to_string(want.inh()));
    }
    if (!f.ok()) {
        std::printf("FAIL capset %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::string what = "capset " + which + " reaches every thread";
    return pt::finish(expect, world.differences(), what.c_str());
}
