// libcap-ng's process-changing calls, from the main thread while pthreads and
// raw-clone threads sleep.  libcap-ng calls capset/prctl/setresuid/setgroups
// through libc, so under the shim every thread changes; without it (the
// negative control) capset and prctl stay on the caller.  argv selects:
//   apply      capng_apply(CAPNG_SELECT_BOTH): drop one capability from the
//              effective/permitted sets and another from the bounding set
//   change_id  capng_change_id(1000, 1000, DROP_SUPP_GRP | CLEAR_BOUNDING),
//              keeping one capability across the uid change
#include <cap-ng.h>

#include <cstdio>
#include <string>

#include "calls_util.h"

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    int cap = ct::pick_cap();
    int cap2 = ct::pick_cap({cap});
    if (cap < 0 || cap2 < 0) return pt::skip("fewer than two spare capabilities in effective, permitted and bounding");

    ct::World world(4, 2);
    ct::Failures f;
    int rc;
    errno = 0;
    if (which == "apply") {
        if (capng_get_caps_process() != 0) f.add("capng_get_caps_process failed");
        capng_update(CAPNG_DROP, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED), cap);
        capng_update(CAPNG_DROP, CAPNG_BOUNDING_SET, cap2);
        rc = capng_apply(CAPNG_SELECT_BOTH);
        if (rc != 0) f.add("capng_apply returned " + std::to_string(rc) + " (errno " + ct::errname(errno) + ")");
        if (ct::get_caps().has_prm(cap)) f.add("capability " + std::to_string(cap) + " still permitted on the caller");
        if (ct::in_bounding(cap2)) f.add("capability " + std::to_string(cap2) + " still in the caller's bounding set");
    } else if (which == "change_id") {
        capng_clear(CAPNG_SELECT_BOTH);
        capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED), cap);
        rc = capng_change_id(1000, 1000, static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING));
        if (rc != 0) f.add("capng_change_id returned " + std::to_string(rc) + " (errno " + ct::errname(errno) + ")");
        pt::ThreadCreds me = pt::read_thread(gettid());
        std::uint64_t only = std::uint64_t{1} << cap;
        if (me.uid[0] != 1000 || me.uid[1] != 1000 || me.uid[2] != 1000 || me.gid[0] != 1000 || me.gid[1] != 1000 ||
            me.gid[2] != 1000 || !me.groups.empty() || me.cap_prm != only || me.cap_eff != only) {
            f.add("caller after capng_change_id: " + me.key() + "; expected uid/gid 1000, no groups, prm=eff=" +
                  std::to_string(only));
        }
        if (me.cap_bnd & ~only) f.add("caller's bounding set not cleared: " + std::to_string(me.cap_bnd));
    } else {
        return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    }
    if (!f.ok()) {
        std::printf("FAIL libcap-ng %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::string what = "libcap-ng capng_" + which + " reaches every thread";
    return pt::finish(expect, world.differences(), what.c_str());
}
