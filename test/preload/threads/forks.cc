// fork and vfork.  One case per run (--case=NAME):
//
//   fork_single       a fork child, single-threaded, drops capabilities (must
//                     succeed, not hang); the parent is unaffected
//   fork_threads      a fork child starts threads of its own and drops
//                     capabilities: all of the child's threads agree; parent
//                     unaffected
//   fork_from_thread  the same, forked from a secondary thread of the parent
//   fork_during       a thread forks repeatedly (children as in fork_threads)
//                     while the main thread broadcasts in a loop
//   _Fork_single      fork_single, but made with _Fork(), which runs no
//                     pthread_atfork handlers: the shim finds out it is in a
//                     fork child at the child's first credential call
//   _Fork_threads     the same child starts its threads first, so the shim
//                     finds out at its first pthread_create
//   vfork             a vfork child calls setuid() and PR_CAPBSET_DROP: only the
//                     child changes; the parent's threads keep uid 0 and the
//                     bounding capability
//
// In every case the parent finally drops a capability itself, which gives the
// negative control (no shim) its divergence.
#include <pthread.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "tt.h"

namespace {

pt::Expect g_expect;
tt::Failures g_fail;

// Child exit statuses.
constexpr int kChildUniform = 0;
constexpr int kChildError = 1;
constexpr int kChildDiverged = 3;

// Every thread of the parent still holds `cap` in its effective set and
// CAP_SYS_BOOT in its bounding set, and has uid 0.
void parent_unaffected(const char *when, int cap) {
    for (const pt::ThreadCreds &c : pt::read_all()) {
        if (!(c.cap_eff & (1ull << cap)))
            g_fail.add("%s: parent thread %d lost capability %d: %s", when, c.tid, cap, c.key().c_str());
        if (!(c.cap_bnd & (1ull << CAP_SYS_BOOT)))
            g_fail.add("%s: parent thread %d lost CAP_SYS_BOOT from its bounding set: %s", when, c.tid, c.key().c_str());
        if (c.uid[0] || c.uid[1] || c.uid[2])
            g_fail.add("%s: parent thread %d changed uid: %s", when, c.tid, c.key().c_str());
    }
}

// Runs in a fork child: drop, optionally with threads of our own; exit with
// a status the parent checks.  Without `drop_first` the child's first call
// into the shim is the pthread_create of its threads.
[[noreturn]] void child_body(bool with_threads, bool drop_first = true) {
    alarm(20);  // a hung child must not outlive the test
    int self = gettid();
    if (self != getpid()) {
        std::printf("child: thread %d is not the child's main thread %d\n", self, getpid());
        std::fflush(stdout);
        _exit(kChildError);
    }
    if (drop_first && (tt::drop_cap(CAP_NET_RAW) != 0 || prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0)) {
        std::printf("child %d: single-threaded drop failed: %s\n", getpid(), strerror(errno));
        std::fflush(stdout);
        _exit(kChildError);
    }
    if (drop_first && tt::have_effective(CAP_NET_RAW)) _exit(kChildError);
    if (!with_threads) _exit(tt::differences().empty() ? kChildUniform : kChildDiverged);
    int status;
    {
        pt::Sleepers sleepers(3);
        std::atomic<bool> stop{false};
        std::thread spin([&] {
            while (!stop.load()) {
            }
        });
        for (int i = 0; i < 10; i++) {
            if (tt::set_effective(CAP_NET_ADMIN, i % 2) != 0) {
                std::printf("child %d: capset: %s\n", getpid(), strerror(errno));
                std::fflush(stdout);
                _exit(kChildError);
            }
        }
        if (tt::drop_cap(CAP_MKNOD) != 0) _exit(kChildError);
        std::string d = tt::differences();
        stop = true;
        spin.join();
        if (!d.empty() && g_expect == pt::Expect::kUniform)
            std::printf("child %d: threads disagree:\n%s", getpid(), d.c_str());
        status = d.empty() ? kChildUniform : kChildDiverged;
    }
    std::fflush(stdout);
    _exit(status);
}

void check_child(pid_t pid, bool with_threads) {
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) {
        g_fail.add("waitpid(%d): %s", pid, strerror(errno));
        return;
    }
    if (!WIFEXITED(st)) {
        g_fail.add("fork child %d died: %s", pid, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "?");
        return;
    }
    int code = WEXITSTATUS(st);
    // Without threads the child is uniform either way; with threads, only
    // the shim makes it so (the control must see its divergence).
    int want = !with_threads || g_expect == pt::Expect::kUniform ? kChildUniform : kChildDiverged;
    if (code != want) g_fail.add("fork child %d exited %d, expected %d", pid, code, want);
}

int parent_finish(const char *what) {
    parent_unaffected("after the children", CAP_NET_RAW);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    return g_fail.finish(g_expect, tt::differences(), what);
}

int case_fork(bool with_threads, bool from_thread) {
    pt::Sleepers sleepers(4);
    pid_t pid = -1;
    if (from_thread) {
        std::thread t([&] {
            pid = fork();
            if (pid == 0) child_body(with_threads);
        });
        t.join();
    } else {
        pid = fork();
        if (pid == 0) child_body(with_threads);
    }
    if (pid < 0) return std::perror("fork"), 1;
    check_child(pid, with_threads);
    return parent_finish(with_threads ? "fork child with threads of its own" : "single-threaded fork child");
}

// _Fork() (glibc 2.34) runs no pthread_atfork handlers, so the shim's fork
// child reset does not run either; the child still holds the parent's
// registry of five threads.  It must find out by itself, at whichever of
// its calls reaches the shim first, and must not signal tids of the parent.
int case_Fork(bool with_threads) {
    pt::Sleepers sleepers(4);
    pid_t pid = _Fork();
    if (pid == 0) child_body(with_threads, !with_threads);
    if (pid < 0) return std::perror("_Fork"), 1;
    check_child(pid, with_threads);
    return parent_finish(with_threads ? "_Fork child starting threads of its own" : "single-threaded _Fork child");
}

int case_fork_during() {
    pt::Sleepers sleepers(3);
    std::atomic<bool> stop{false};
    std::atomic<int> forks{0};
    std::thread forker([&] {
        while (!stop.load() || forks.load() < 10) {
            pid_t pid = fork();
            if (pid == 0) child_body(true);
            if (pid < 0) {
                g_fail.add("fork: %s", strerror(errno));
                break;
            }
            check_child(pid, true);
            forks++;
        }
    });
    int calls = 0;
    for (; calls < 200 || forks.load() < 10; calls++) {
        // NET_ADMIN is what the children toggle; the parent toggles SYS_NICE.
        if (tt::set_effective(CAP_SYS_NICE, calls % 2) != 0) g_fail.add("capset: %s", strerror(errno));
        if (calls > 2000) break;
    }
    stop = true;
    forker.join();
    if (tt::set_effective(CAP_SYS_NICE, true) != 0) g_fail.add("capset: %s", strerror(errno));
    std::printf("%d forks (each child: drop, 4 threads, 11 calls) during %d parent calls\n", forks.load(), calls);
    return parent_finish("fork children forked while the parent broadcasts");
}

// ---- vfork --------------------------------------------------------------------------

volatile int g_v_setuid = -2, g_v_errno = 0, g_v_bset = -2;
volatile uid_t g_v_uid[3];
volatile long g_v_has_bset = -2;

int case_vfork() {
    pt::Sleepers sleepers(4);
    std::vector<int> parent_tids = tt::task_tids();
    pid_t pid = vfork();
    if (pid == 0) {
        // Shares our memory; writes results into it.  The shim's setuid
        // must act on this process (the child) alone.
        g_v_setuid = setuid(65534);
        g_v_errno = errno;
        uid_t r, e, s;
        getresuid(&r, &e, &s);
        g_v_uid[0] = r;
        g_v_uid[1] = e;
        g_v_uid[2] = s;
        _exit(0);
    }
    if (pid < 0) return std::perror("vfork"), 1;
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st)) g_fail.add("vfork child died: %s", WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "?");
    if (g_v_setuid != 0) g_fail.add("setuid(65534) in the vfork child returned %d (%s)", g_v_setuid, strerror(g_v_errno));
    if (g_v_uid[0] != 65534 || g_v_uid[1] != 65534 || g_v_uid[2] != 65534)
        g_fail.add("vfork child's uids after setuid: %u %u %u", g_v_uid[0], g_v_uid[1], g_v_uid[2]);

    // A second vfork child: the bounding set.
    pid = vfork();
    if (pid == 0) {
        g_v_bset = prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT);
        g_v_has_bset = prctl(PR_CAPBSET_READ, CAP_SYS_BOOT);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    if (g_v_bset != 0 || g_v_has_bset != 0)
        g_fail.add("PR_CAPBSET_DROP in the vfork child: %d, then PR_CAPBSET_READ %ld", g_v_bset, g_v_has_bset);

    std::printf("vfork children: setuid -> %d (uids %u %u %u), PR_CAPBSET_DROP -> %d\n", g_v_setuid, g_v_uid[0],
                g_v_uid[1], g_v_uid[2], g_v_bset);
    if (tt::task_tids() != parent_tids) g_fail.add("the parent's thread list changed across the vfork");
    parent_unaffected("after the vfork children", CAP_NET_RAW);
    if (getuid() != 0 || prctl(PR_CAPBSET_READ, CAP_SYS_BOOT) != 1)
        g_fail.add("parent's main thread changed: uid %u, CAP_SYS_BOOT bounding %d", getuid(),
                   prctl(PR_CAPBSET_READ, CAP_SYS_BOOT));
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    return g_fail.finish(g_expect, tt::differences(), "vfork child's setuid changes only the child");
}

}  // namespace

int main(int argc, char **argv) {
    g_expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    std::string c = tt::arg_case(argc, argv);
    pt::Watchdog wd(40, "forks " + c);
    if (c == "fork_single") return case_fork(false, false);
    if (c == "fork_threads") return case_fork(true, false);
    if (c == "fork_from_thread") return case_fork(true, true);
    if (c == "fork_during") return case_fork_during();
    if (c == "_Fork_single") return case_Fork(false);
    if (c == "_Fork_threads") return case_Fork(true);
    if (c == "vfork") return case_vfork();
    return std::printf("unknown --case=%s\n", c.c_str()), 1;
}
