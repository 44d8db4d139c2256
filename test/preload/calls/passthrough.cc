// What the shim must NOT broadcast stays per-thread with the shim loaded.
// argv selects the case:
//   name          prctl(PR_SET_NAME) renames the calling thread only
//   pdeathsig     prctl(PR_SET_PDEATHSIG) is per-thread
//   timerslack    prctl(PR_SET_TIMERSLACK) is per-thread
//   fsuid         setfsuid() changes the calling thread's fs uid only
//   fsgid         setfsgid() likewise
//   raw-capset    syscall(SYS_capset, ...) is not broadcast
//   raw-prctl     syscall(SYS_prctl, PR_CAPBSET_DROP, ...) is not broadcast
//   raw-setresuid syscall(SYS_setresuid, ...) is not broadcast
// Each case acts from the main thread and, where it matters, from another
// thread too, and reads every thread back.  No negative control: without the
// shim these are per-thread as well; the point is that the shim leaves them so.
#include <signal.h>
#include <sys/fsuid.h>

#include <cstdio>
#include <string>

#include "calls_util.h"

namespace {

long prctl_get(int option) {
    unsigned long v = 0;
    long r = syscall(SYS_prctl, option, &v, 0, 0, 0);
    return r < 0 ? r : static_cast<long>(v);
}

}  // namespace

int main(int argc, char **argv) {
    (void)pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (!pt::shim_loaded()) return std::printf("FAIL: this test checks the shim, which is not loaded\n"), 1;
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    int cap = ct::pick_cap();

    ct::World world(2, 1);
    ct::Agents agents(2);
    ct::Failures f;
    int self = gettid();

    if (which == "name") {
        std::string before = pt::read_thread(agents.tid(0)).name;
        if (int r = prctl(PR_SET_NAME, "psx-main", 0, 0, 0); r != 0) f.add("PR_SET_NAME: " + ct::outcome(r, errno));
        agents.run(1, [] { return static_cast<long>(prctl(PR_SET_NAME, "psx-agent1", 0, 0, 0)); });
        for (const pt::ThreadCreds &c : pt::read_all()) {
            std::string want = c.tid == self ? "psx-main" : c.tid == agents.tid(1) ? "psx-agent1" : before;
            if (c.name != want) f.add("thread " + std::to_string(c.tid) + " is named '" + c.name + "', expected '" + want + "'");
        }
    } else if (which == "pdeathsig") {
        if (int r = prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0); r != 0) f.add("PR_SET_PDEATHSIG: " + ct::outcome(r, errno));
        agents.run(1, [] { return static_cast<long>(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0)); });
        long mine = prctl_get(PR_GET_PDEATHSIG);
        long a0 = agents.run(0, [] { return prctl_get(PR_GET_PDEATHSIG); });
        long a1 = agents.run(1, [] { return prctl_get(PR_GET_PDEATHSIG); });
        if (mine != SIGUSR1) f.add("caller's pdeathsig is " + std::to_string(mine) + ", expected SIGUSR1");
        if (a0 != 0) f.add("thread " + std::to_string(agents.tid(0)) + " pdeathsig " + std::to_string(a0) + ", expected 0");
        if (a1 != SIGUSR2) f.add("thread " + std::to_string(agents.tid(1)) + " pdeathsig " + std::to_string(a1) + ", expected SIGUSR2");
    } else if (which == "timerslack") {
        long before = agents.run(0, [] { return static_cast<long>(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)); });
        long want = before + 12345;
        if (int r = prctl(PR_SET_TIMERSLACK, want, 0, 0, 0); r != 0) f.add("PR_SET_TIMERSLACK: " + ct::outcome(r, errno));
        long mine = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
        long a0 = agents.run(0, [] { return static_cast<long>(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)); });
        if (mine != want) f.add("caller's timer slack " + std::to_string(mine) + ", expected " + std::to_string(want));
        if (a0 != before) f.add("thread " + std::to_string(agents.tid(0)) + " timer slack " + std::to_string(a0) + ", expected " + std::to_string(before));
    } else if (which == "fsuid" || which == "fsgid") {
        bool uid = which == "fsuid";
        auto set = [uid](unsigned id) { return static_cast<long>(uid ? setfsuid(id) : setfsgid(id)); };
        long prev = set(1234);
        if (prev != 0) f.add(which + "(1234) returned " + std::to_string(prev) + ", expected the previous id 0");
        long prev1 = agents.run(1, [set] { return set(4321); });
        if (prev1 != 0) f.add("agent " + which + "(4321) returned " + std::to_string(prev1) + ", expected 0");
        for (const pt::ThreadCreds &c : pt::read_all()) {
            unsigned got = uid ? c.uid[3] : c.gid[3];
            unsigned want = c.tid == self ? 1234 : c.tid == agents.tid(1) ? 4321 : 0;
            if (got != want) f.add("thread " + std::to_string(c.tid) + " has fs id " + std::to_string(got) + ", expected " + std::to_string(want));
        }
        // Setting it back works per-thread too.
        set(0);
        if ((uid ? pt::read_thread(self).uid[3] : pt::read_thread(self).gid[3]) != 0) f.add("could not reset the caller's fs id");
    } else if (which == "raw-capset" || which == "raw-prctl") {
        if (cap < 0) return pt::skip("no spare capability in effective, permitted and bounding sets");
        long r;
        if (which == "raw-capset") {
            ct::Caps c = ct::get_caps();
            c.clear_eff(cap);
            c.clear_prm(cap);
            r = ct::raw_capset(c);
        } else {
            r = syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        if (r != 0) f.add(which + ": " + ct::outcome(r, errno));
        for (const pt::ThreadCreds &c : pt::read_all()) {
            std::uint64_t bit = std::uint64_t{1} << cap;
            std::uint64_t set = which == "raw-capset" ? c.cap_prm : c.cap_bnd;
            bool want = c.tid != self;
            if (((set & bit) != 0) != want)
                f.add("thread " + std::to_string(c.tid) + (want ? " lost" : " kept") + " capability " + std::to_string(cap) +
                      (which == "raw-capset" ? " (permitted)" : " (bounding)"));
        }
    } else if (which == "raw-setresuid") {
        long r = syscall(SYS_setresuid, 1001, 1002, 1003);
        if (r != 0) f.add("syscall(SYS_setresuid): " + ct::outcome(r, errno));
        for (const pt::ThreadCreds &c : pt::read_all()) {
            bool me = c.tid == self;
            unsigned w[3] = {me ? 1001u : 0u, me ? 1002u : 0u, me ? 1003u : 0u};
            if (c.uid[0] != w[0] || c.uid[1] != w[1] || c.uid[2] != w[2])
                f.add("thread " + std::to_string(c.tid) + " uids " + std::to_string(c.uid[0]) + "," +
                      std::to_string(c.uid[1]) + "," + std::to_string(c.uid[2]) + ", expected " + std::to_string(w[0]) +
                      "," + std::to_string(w[1]) + "," + std::to_string(w[2]));
        }
    } else {
        return std::fprintf(stderr, "unknown case '%s'\n", which.c_str()), 2;
    }
    if (!f.ok()) {
        std::printf("FAIL pass-through %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::printf("PASS pass-through %s stays per-thread with the shim loaded\n", which.c_str());
    return 0;
}
