// Issue 3, item 1: credential changes reach every thread when /proc is not
// usable by the process itself.  Every check is made from OUTSIDE the tested
// process (/proc/<pid>/task/*/status read by another process), because the
// tested process cannot see /proc.
//
//   --mode=chroot   pthreads and a raw-clone thread (seen by one /proc sweep
//                   beforehand), then chroot() into an empty directory and
//                   close_range(3, ~0U, 0) -- which also closes the shim's
//                   /proc/self/task fd -- then capset, setgroups, setresgid,
//                   setresuid.  A forked checker that kept /proc looks at
//                   every thread after each step; the two talk through shared
//                   memory because close_range closes every pipe.
//   --mode=chroot-keepfd  the same without close_range, and a raw-clone thread
//                   born inside the chroot: the kept /proc fd still finds it.
//   --mode=fork-chroot  four pthreads, then _Fork(), which runs no
//                   pthread_atfork handlers: the child still holds the shim's
//                   state of its parent.  The child chroots, closes every fd
//                   (the shim's /proc one too), starts three pthreads and
//                   drops a capability; the parent checks the child's threads.
//                   Only the registry can find them, so the shim must see it
//                   is in a fork child at that first pthread_create.
//   --mode=pidns    unshare(CLONE_NEWPID) + fork + exec: the tested program is
//                   pid 1 of a new PID namespace while /proc still belongs to
//                   the old one (/proc/self names another pid).  Pthreads
//                   only: nothing else is guaranteed without /proc.
//   --mode=hidepid  private mount namespace with /proc mounted hidepid=2; the
//                   tested program runs as uid 1000 with ambient
//                   CAP_SETUID/SETGID/SETPCAP/NET_RAW, changes uid (and so
//                   becomes non-dumpable), then starts a raw-clone thread that
//                   only a /proc sweep can find, and drops a capability and
//                   its gid: every thread, the late raw one included.
//
// --expect=uniform (shim preloaded) or --expect=diverge (negative control).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

constexpr uid_t kNobody = 65534;

bool self_has_cap(int cap) { return (hx::caps_permitted_of_self() >> cap) & 1; }

// ---- verdicts -----------------------------------------------------------------

struct Verdict {
    int steps = 0, uniform_steps = 0;
    bool broken = false;  // a call failed, a count was short, ...
    void step(const char *what, const std::string &diff, int count, int min_count) {
        steps++;
        if (count < min_count) {
            std::printf("  step '%s': only %d live threads seen from outside, expected at least %d\n", what, count,
                        min_count);
            broken = true;
        }
        if (diff.empty()) {
            uniform_steps++;
            std::printf("  step '%s': all %d threads agree (checked from outside)\n", what, count);
        } else {
            std::printf("  step '%s': threads disagree (checked from outside):\n%s", what, diff.c_str());
        }
    }
    int finish(pt::Expect expect, const char *what) {
        if (broken) {
            std::printf("FAIL %s: see above\n", what);
            return 1;
        }
        if (expect == pt::Expect::kUniform) {
            if (uniform_steps == steps) return std::printf("PASS %s: every thread changed at every step\n", what), 0;
            std::printf("FAIL %s: %d of %d steps left a thread with other credentials\n", what, steps - uniform_steps,
                        steps);
            return 1;
        }
        if (uniform_steps < steps) {
            std::printf("PASS %s (negative control): without the shim a thread kept its credentials\n", what);
            return 0;
        }
        std::printf("FAIL %s (negative control): every thread agreed even without the shim\n", what);
        return 1;
    }
};

void expect_ok(Verdict &v, int rc, const char *call) {
    if (rc != 0) {
        std::printf("  %s failed: %s\n", call, std::strerror(errno));
        v.broken = true;
    }
}

// ---- chroot + close_range ----------------------------------------------------------

struct Shared {
    std::atomic<int> cmd;   // step number asked for; -1 = quit
    std::atomic<int> done;  // step number answered
    int count;
    char diff[32768];
    char dir[256];
};

bool wait_for(std::atomic<int> &v, int want, int seconds) {
    for (int i = 0; i < seconds * 1000; i++) {
        if (v.load() == want) return true;
        usleep(1000);
    }
    return false;
}

// Memory shared with the other process, and an empty directory to chroot
// into; null (with the reason printed) if either cannot be had.
Shared *make_shared() {
    auto *sh = static_cast<Shared *>(mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (sh == MAP_FAILED) return std::perror("mmap"), nullptr;
    std::snprintf(sh->dir, sizeof sh->dir, "/tmp/psxshim-chroot-XXXXXX");
    if (!mkdtemp(sh->dir)) return std::perror("mkdtemp"), nullptr;
    return sh;
}

int mode_chroot(pt::Expect expect, bool close_fds) {
    Shared *sh = make_shared();
    if (!sh) return 1;

    pt::Sleepers sleepers(4);
    pt::start_raw_thread();
    // One broadcast while /proc is reachable: its sweep finds the raw thread.
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return std::perror("prctl"), 1;
    const int base_threads = 1 + 4 + 1;

    pid_t tested = getpid();
    pid_t checker = fork();
    if (checker == 0) {
        // Outside observer: keeps /proc, answers each step.
        int last = 0;
        for (;;) {
            int c = sh->cmd.load();
            if (c == -1 || getppid() != tested) break;
            if (c == last) {
                usleep(1000);
                continue;
            }
            int n = 0;
            std::string d = hx::outside_differences(tested, tested, &n);
            std::snprintf(sh->diff, sizeof sh->diff, "%s", d.c_str());
            sh->count = n;
            sh->done.store(c);
            last = c;
        }
        rmdir(sh->dir);
        _exit(0);
    }

    Verdict v;
    if (chroot(sh->dir) != 0 || chdir("/") != 0) return std::perror("chroot"), 1;
    if (close_fds && syscall(SYS_close_range, 3, ~0U, 0) != 0) return std::perror("close_range"), 1;
    // Sanity: /proc is really out of reach now.
    if (opendir("/proc/self/task") != nullptr) {
        std::printf("FAIL: /proc/self/task still reachable inside the chroot\n");
        return 1;
    }
    int expected_threads = base_threads;
    if (!close_fds) {
        // The start-up fd is still open: even a raw thread born inside the
        // chroot is found.
        pt::start_raw_thread();
        expected_threads++;
    }
    std::printf("chroot(%s)%s: /proc unreachable by path, %d threads\n", sh->dir,
                close_fds ? " + close_range(3, ~0U)" : ", fds kept, a raw thread born inside", expected_threads);

    int step = 0;
    auto check = [&](const char *what) {
        sh->cmd.store(++step);
        if (!wait_for(sh->done, step, 30)) {
            std::printf("  checker did not answer step %d\n", step);
            v.broken = true;
            return;
        }
        v.step(what, sh->diff, sh->count, expected_threads);
    };

    expect_ok(v, hx::drop_cap(CAP_NET_RAW), "capset");
    if (self_has_cap(CAP_NET_RAW)) v.broken = true, std::printf("  caller still holds CAP_NET_RAW\n");
    check("capset drops CAP_NET_RAW");

    gid_t g = kNobody;
    expect_ok(v, setgroups(1, &g), "setgroups");
    expect_ok(v, setresgid(kNobody, kNobody, kNobody), "setresgid");
    expect_ok(v, setresuid(kNobody, kNobody, kNobody), "setresuid");
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    if (r != kNobody || e != kNobody || s != kNobody) v.broken = true, std::printf("  caller's uids did not change\n");
    check("setgroups + setresgid + setresuid to 65534");

    sh->cmd.store(-1);
    waitpid(checker, nullptr, 0);
    int rc = v.finish(expect, close_fds ? "chroot + close_range" : "chroot, fds kept");
    pt::stop_raw_threads();
    return rc;
}

// The child of _Fork() inherits the shim's registry of our five threads and
// no pthread_atfork reset.  Were its first pthread_create to register the
// new threads into that stale state, the reset at its first broadcast would
// forget them, and with /proc out of reach nothing would find them again.
int mode_fork_chroot(pt::Expect expect) {
    Shared *sh = make_shared();
    if (!sh) return 1;

    pt::Sleepers sleepers(4);
    pid_t child = _Fork();
    if (child == 0) {
        alarm(30);
        // One report: -1 = /proc still reachable (or set-up failed),
        // 0 = the drop failed, 1 = done; then wait to be checked.
        bool hidden = chroot(sh->dir) == 0 && chdir("/") == 0 && syscall(SYS_close_range, 3, ~0U, 0) == 0 &&
                      opendir("/proc/self/task") == nullptr;
        if (!hidden) {
            sh->count = -1;
            sh->cmd.store(1);
            _exit(1);
        }
        pt::Sleepers mine(3);
        sh->count = hx::drop_cap(CAP_NET_RAW) == 0 && !self_has_cap(CAP_NET_RAW);
        sh->cmd.store(1);
        wait_for(sh->done, 1, 30);
        _exit(0);  // no destructors: they belong to the parent's copy
    }
    if (child < 0) return std::perror("_Fork"), 1;

    Verdict v;
    if (!wait_for(sh->cmd, 1, 30)) {
        std::printf("  the _Fork child did not report\n");
        v.broken = true;
    } else if (sh->count < 0) {
        std::printf("  the _Fork child could not chroot and close its fds, or /proc stayed reachable\n");
        v.broken = true;
    } else {
        if (sh->count == 0) std::printf("  capset failed in the _Fork child\n"), v.broken = true;
        int n = 0;
        std::string d = hx::outside_differences(child, child, &n);
        v.step("_Fork child in a chroot: 3 pthreads, capset drops CAP_NET_RAW", d, n, 1 + 3);
    }
    sh->done.store(1);
    int st = 0;
    waitpid(child, &st, 0);
    rmdir(sh->dir);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::printf("  _Fork child ended abnormally (status %#x)\n", st);
        v.broken = true;
    }
    if (!self_has_cap(CAP_NET_RAW)) std::printf("  the parent lost CAP_NET_RAW\n"), v.broken = true;
    return v.finish(expect, "_Fork child, /proc out of reach");
}

// ---- two-process variants (pidns, hidepid): the launcher checks ---------------------

// Child side: after each step, write 'S' (or 'F' if the step failed) and wait
// for the launcher's 'k'.
void child_step(int out_fd, int in_fd, bool ok) {
    char c = ok ? 'S' : 'F';
    if (write(out_fd, &c, 1) != 1) _exit(3);
    if (read(in_fd, &c, 1) != 1) _exit(3);
}

// Launcher side: run the child to the end, checking every thread from outside
// after each step it reports.
int launch_and_check(pt::Expect expect, const char *what, pid_t child, int from_child, int to_child, const int *min_threads,
                     const char *const *step_names, int nsteps, pt::Watchdog &watchdog) {
    Verdict v;
    for (int i = 0;; i++) {
        char c;
        if (read(from_child, &c, 1) != 1) break;  // the child finished
        const char *name = i < nsteps ? step_names[i] : "extra step";
        if (c == 'F') {
            std::printf("  step '%s': a call failed in the tested process\n", name);
            v.broken = true;
        }
        int n = 0;
        std::string d = hx::outside_differences(child, child, &n);
        v.step(name, d, n, i < nsteps ? min_threads[i] : 0);
        if (write(to_child, "k", 1) != 1) break;
    }
    int st = 0;
    waitpid(child, &st, 0);
    watchdog.disarm();
    if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 77)) {
        std::printf("  tested process ended abnormally (status %#x)\n", st);
        v.broken = true;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) return pt::skip("the tested process skipped");
    if (v.steps != nsteps) {
        std::printf("  expected %d steps, saw %d\n", nsteps, v.steps);
        v.broken = true;
    }
    return v.finish(expect, what);
}

const char *const kPidnsSteps[] = {"capset drops CAP_NET_RAW", "setgroups + setresgid + setresuid to 65534"};
const int kPidnsMin[] = {1 + 4, 1 + 4};
const int kHidepidMin[] = {1 + 3 + 1, 1 + 3 + 2, 1 + 3 + 2};
const char *const kHidepidSteps[] = {"setresuid 1000 -> 1001", "capset drops CAP_NET_RAW (raw thread born after the uid change)",
                                     "setresgid 1000 -> 1001"};

int run_child_role(const char *role, int argc, char **argv, pid_t *child, int *from_child, int *to_child,
                   void (*before_exec)()) {
    int up[2], down[2];
    if (pipe(up) || pipe(down)) return std::perror("pipe"), 1;
    std::fflush(nullptr);
    pid_t p = fork();
    if (p < 0) return std::perror("fork"), 1;
    if (p == 0) {
        close(up[0]);
        close(down[1]);
        if (before_exec) before_exec();
        std::string exe = hx::self_exe();
        std::string r = std::string("--role=") + role, o = "--out=" + std::to_string(up[1]),
                    i = "--in=" + std::to_string(down[0]);
        std::string ex = "--expect=" + hx::arg(argc, argv, "expect", "uniform");
        execl(exe.c_str(), exe.c_str(), r.c_str(), o.c_str(), i.c_str(), ex.c_str(), nullptr);
        std::perror("execl");
        _exit(1);
    }
    close(up[1]);
    close(down[0]);
    *child = p;
    *from_child = up[0];
    *to_child = down[1];
    return 0;
}

int mode_pidns(pt::Expect expect, int argc, char **argv) {
    // Before unshare: a later fork would put the watchdog into the new
    // namespace, where pid 1's exit waits for it to be reaped.
    pt::Watchdog watchdog(60, "pidns");
    if (unshare(CLONE_NEWPID) != 0) {
        std::string why = std::string("unshare(CLONE_NEWPID): ") + std::strerror(errno);
        return pt::skip(why.c_str());
    }
    pid_t child;
    int from, to;
    if (run_child_role("pidns-child", argc, argv, &child, &from, &to, nullptr)) return 1;
    return launch_and_check(expect, "new PID namespace, /proc not remounted", child, from, to, kPidnsMin, kPidnsSteps, 2, watchdog);
}

int role_pidns_child(int out_fd, int in_fd) {
    char link[64] = {};
    readlink("/proc/self", link, sizeof link - 1);
    if (getpid() != 1 || std::atoi(link) == 1) {
        std::printf("pidns child: pid %d, /proc/self -> %s: not the stale-/proc situation\n", getpid(), link);
        _exit(1);
    }
    std::printf("pidns child: pid %d in the new namespace, /proc/self names %s\n", getpid(), link);
    pt::Sleepers sleepers(4);
    child_step(out_fd, in_fd, hx::drop_cap(CAP_NET_RAW) == 0 && !self_has_cap(CAP_NET_RAW));
    gid_t g = kNobody;
    bool ok = setgroups(1, &g) == 0 && setresgid(kNobody, kNobody, kNobody) == 0 &&
              setresuid(kNobody, kNobody, kNobody) == 0 && getuid() == kNobody;
    child_step(out_fd, in_fd, ok);
    return 0;
}

void become_uid_1000_with_ambient_caps() {
    const int caps[] = {CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_NET_RAW};
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setgroups(0, nullptr) || setresgid(1000, 1000, 1000) ||
        setresuid(1000, 1000, 1000)) {
        std::perror("dropping to uid 1000");
        _exit(1);
    }
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    syscall(SYS_capget, &h, d);
    d[0].effective = d[0].permitted;
    d[1].effective = d[1].permitted;
    for (int c : caps) d[c / 32].inheritable |= 1u << (c % 32);
    if (capset(&h, d) != 0) {
        std::perror("capset before exec");
        _exit(1);
    }
    for (int c : caps) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0) {
            std::perror("PR_CAP_AMBIENT_RAISE");
            _exit(1);
        }
    }
}

int mode_hidepid(pt::Expect expect, int argc, char **argv) {
    pt::Watchdog watchdog(60, "hidepid");
    if (unshare(CLONE_NEWNS) != 0) {
        std::string why = std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
        return pt::skip(why.c_str());
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") != 0) {
        std::string why = std::string("mounting /proc hidepid=2: ") + std::strerror(errno);
        return pt::skip(why.c_str());
    }
    pid_t child;
    int from, to;
    if (run_child_role("hidepid-child", argc, argv, &child, &from, &to, become_uid_1000_with_ambient_caps)) return 1;
    return launch_and_check(expect, "/proc mounted hidepid=2, non-root uid", child, from, to, kHidepidMin, kHidepidSteps,
                            3, watchdog);
}

int role_hidepid_child(int out_fd, int in_fd) {
    if (getuid() != 1000 || !self_has_cap(CAP_SETUID) || !self_has_cap(CAP_NET_RAW)) {
        std::printf("hidepid child: expected uid 1000 with ambient capabilities (uid %d)\n", getuid());
        _exit(1);
    }
    // Sanity: hidepid=2 is in force for us (init, a root process, is hidden).
    if (access("/proc/1/status", F_OK) == 0) {
        std::printf("hidepid child: /proc/1 is visible; hidepid=2 not in force\n");
        _exit(1);
    }
    pt::Sleepers sleepers(3);
    pt::start_raw_thread();
    child_step(out_fd, in_fd, setresuid(1001, 1001, 1001) == 0 && geteuid() == 1001);
    // Born after the uid change (the process is now non-dumpable): only a
    // /proc sweep can find it.
    pt::start_raw_thread();
    child_step(out_fd, in_fd, hx::drop_cap(CAP_NET_RAW) == 0 && !self_has_cap(CAP_NET_RAW));
    child_step(out_fd, in_fd, setresgid(1001, 1001, 1001) == 0 && getegid() == 1001);
    pt::stop_raw_threads();
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string role = hx::arg(argc, argv, "role");
    int out_fd = std::atoi(hx::arg(argc, argv, "out", "-1").c_str());
    int in_fd = std::atoi(hx::arg(argc, argv, "in", "-1").c_str());
    if (role == "pidns-child") return role_pidns_child(out_fd, in_fd);
    if (role == "hidepid-child") return role_hidepid_child(out_fd, in_fd);

    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    if (!self_has_cap(CAP_NET_RAW) || !self_has_cap(CAP_SYS_ADMIN)) return pt::skip("needs CAP_NET_RAW and CAP_SYS_ADMIN");
    std::string mode = hx::arg(argc, argv, "mode");
    std::printf("shim %s\n", pt::shim_loaded() ? "loaded" : "absent");
    if (mode == "chroot") return mode_chroot(expect, true);
    if (mode == "chroot-keepfd") return mode_chroot(expect, false);
    if (mode == "fork-chroot") return mode_fork_chroot(expect);
    if (mode == "pidns") return mode_pidns(expect, argc, argv);
    if (mode == "hidepid") return mode_hidepid(expect, argc, argv);
    std::printf("usage: %s --mode=chroot|chroot-keepfd|fork-chroot|pidns|hidepid [--expect=uniform|diverge]\n", argv[0]);
    return 1;
}
