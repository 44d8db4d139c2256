// A full signal queue.  The kernel queues a real-time signal sent with
// siginfo (rt_tgsigqueueinfo, tgkill) only while the real user's queued
// signals are below RLIMIT_SIGPENDING; past that the send fails with EAGAIN.
// The queue is counted per real user, so the tested program first becomes
// uid 1000000 + its pid (keeping CAP_SETUID): no other process, this test's
// other runs included, queues signals as that user.  It lowers its RLIMIT_SIGPENDING to what is queued now plus 16
// and fills the queue with SIGRTMIN sent to a "holder" thread that blocks
// it; two sleeping pthreads are the other threads.  Then the main thread
// calls setresuid(-1, -1, 4242).
//
//   --mode=drain  200 ms after the call starts, the holder takes its signals
//                 (sigtimedwait), which makes room.  Expected with the shim:
//                 setresuid returns 0 only after the holder began to drain
//                 (it waited for room rather than give up), and every
//                 thread has the new saved uid.
//                 Control (no shim): glibc's setresuid returns 0 with the
//                 other threads left on the old saved uid -- its tgkill
//                 failed with EAGAIN and it took them for exited threads.
//   --mode=full   the holder never drains (PSXSHIM_TIMEOUT_MS=1500).
//                 Expected with the shim: stderr names a thread and the full
//                 queue (EAGAIN, RLIMIT_SIGPENDING), the process is killed
//                 with SIGKILL and setresuid never returns.
//
// The driver runs the tested program
// (this binary, --role=tested) and checks its exit, stdout and stderr; a
// 60 s deadline only stops a hang.
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

constexpr int kRoom = 16;  // queue entries above what is queued at the start

std::atomic<int> g_holder_ready{0};
std::atomic<int> g_call_started{0};
std::atomic<int> g_draining{0};
std::atomic<int> g_drained{0};
bool g_drain = false;

void *holder(void *) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
    g_holder_ready = 1;
    if (!g_drain) {
        for (;;) pause();
    }
    while (!g_call_started.load()) usleep(1000);
    usleep(200 * 1000);
    g_draining = 1;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, nullptr, &zero) > 0) g_drained++;
    for (;;) pause();  // ended by the process exiting
}

// Single-threaded, before the test starts: every id becomes `user`, and
// CAP_SETUID stays permitted and effective for the call under test.
bool become_test_user(uid_t user) {
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setresuid(user, user, user) != 0) return false;
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (syscall(SYS_capget, &h, d) != 0) return false;
    d[0].effective = d[0].permitted;  // the uid change cleared the effective set
    d[1].effective = d[1].permitted;
    return capset(&h, d) == 0 && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) == 0;
}

int role_tested(const std::string &mode, pt::Expect expect) {
    g_drain = mode == "drain";
    uid_t user = 1000000 + static_cast<uid_t>(getpid());
    if (!become_test_user(user)) {
        // EINVAL: the uid is not mapped in this user namespace (a container).
        std::string why = "cannot become uid " + std::to_string(user) + ": " + strerror(errno);
        return errno == EINVAL ? pt::skip(why.c_str()) : (std::printf("FAIL: %s\n", why.c_str()), 1);
    }
    pt::Sleepers sleepers(2);
    pthread_t h;
    pthread_create(&h, nullptr, holder, nullptr);
    while (!g_holder_ready.load()) usleep(1000);

    long used = pt::self_status_number("SigQ:");  // the real user's queued signals ("3/95000")
    struct rlimit rl;
    getrlimit(RLIMIT_SIGPENDING, &rl);
    rl.rlim_cur = static_cast<rlim_t>(used + kRoom);
    if (used < 0 || setrlimit(RLIMIT_SIGPENDING, &rl) != 0)
        return std::printf("FAIL: cannot lower RLIMIT_SIGPENDING (SigQ %ld): %s\n", used, strerror(errno)), 1;
    union sigval v = {};
    int queued = 0, err = 0;
    while ((err = pthread_sigqueue(h, SIGRTMIN, v)) == 0) queued++;
    std::printf("queued %d signals to the holder, then %s (RLIMIT_SIGPENDING %ld)\n", queued, strerror(err),
                static_cast<long>(rl.rlim_cur));
    if (err != EAGAIN || queued == 0) return std::printf("FAIL: could not fill the signal queue\n"), 1;

    std::printf("CALLING setresuid(-1, -1, 4242)\n");
    std::fflush(stdout);
    g_call_started = 1;
    int r = setresuid(-1, -1, 4242);
    bool after_drain = g_draining.load();
    std::printf("RETURNED %d (%s the holder began to drain)\n", r, after_drain ? "after" : "before");
    std::string diff = pt::differences();
    std::printf("%s", diff.empty() ? "every thread agrees\n" : diff.c_str());
    if (r != 0) return std::printf("FAIL: setresuid failed: %s\n", strerror(errno)), 1;
    if (expect == pt::Expect::kUniform && !after_drain)
        return std::printf("FAIL: setresuid returned before its signals could be queued\n"), 1;
    return pt::finish(expect, diff, "setresuid while the signal queue is full");
}

int driver(const std::string &mode, pt::Expect expect) {
    hx::RunResult r = hx::run({hx::self_exe(), "--role=tested", "--mode=" + mode,
                               expect == pt::Expect::kUniform ? "--expect=uniform" : "--expect=diverge"},
                              hx::env_with({"PSXSHIM_TIMEOUT_MS=1500"}), 60);
    std::printf("tested program: %s\n--- stdout\n%s--- stderr\n%s---\n", r.describe().c_str(), r.out.c_str(),
                r.err.c_str());
    if (!r.timed_out && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 77) return 77;  // it said why
    bool exited0 = !r.timed_out && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    bool killed = !r.timed_out && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL;
    std::string problems;
    if (mode == "drain" || expect == pt::Expect::kDiverge) {
        if (!exited0) problems += "the tested program did not pass (see its stdout)\n";
    } else {
        if (!killed) problems += "expected the process to be killed by SIGKILL\n";
        if (r.out.find("RETURNED") != std::string::npos) problems += "setresuid returned with threads unreached\n";
        for (const char *want : {"signal queue is full", "EAGAIN", "RLIMIT_SIGPENDING", "did not answer within"})
            if (r.err.find(want) == std::string::npos) problems += std::string("stderr lacks \"") + want + "\"\n";
    }
    return hx::verdict(problems, "sigqueue-" + mode, expect == pt::Expect::kUniform);
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_SETUID}); rc >= 0) return rc;
    std::string mode = hx::arg(argc, argv, "mode", "drain");
    if (mode != "drain" && mode != "full") return std::printf("unknown --mode=%s\n", mode.c_str()), 2;
    if (hx::arg(argc, argv, "role") == "tested") return role_tested(mode, expect);
    return driver(mode, expect);
}
