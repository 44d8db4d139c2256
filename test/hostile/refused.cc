// Threads that may not send signals: a seccomp filter makes rt_tgsigqueueinfo
// fail with EPERM.
//
//   --mode=relay   24 pthreads, each under its own filter, sleep in a
//                  condition wait while the (unfiltered) main thread calls
//                  setresuid and capset.  The engine lets handlers relay
//                  signals to other threads; these handlers' relays fail.
//                  Expected with the shim: both calls return 0, every thread
//                  changes, and the debug log says relays were switched off
//                  (so the fallback really ran).  The caller sends instead.
//   --mode=norelay the same with PSXSHIM_RELAY=0: every thread changes and
//                  no handler ever tried to relay (no "relays off" line).
//   --mode=caller  the main thread itself is under the filter and drops a
//                  capability with capset while two pthreads sleep.  Its own
//                  capset succeeds, but it cannot signal anyone: expected
//                  with the shim, a line naming the thread and EPERM, then
//                  SIGKILL; capset never returns.  Counting the unreachable
//                  threads as gone would return success with two threads
//                  still holding the capability.
//
// Negative controls (no shim): glibc does not broadcast capset, so in both
// modes capset returns 0 and the other threads keep the capability.
//
// The driver runs the tested program (this binary, --role=tested) with
// PSXSHIM_DEBUG=1 and checks its exit, stdout and stderr; a 60 s deadline
// only stops a hang.
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "creds.h"
#include "hostile.h"

namespace {

constexpr int kFiltered = 24;

// This thread only: rt_tgsigqueueinfo fails with EPERM, everything else is
// allowed.  CAP_SYS_ADMIN lets us install it without no_new_privs (which
// would itself be a per-thread credential difference).
bool refuse_signals_on_this_thread() {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_tgsigqueueinfo, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        std::perror("seccomp(SECCOMP_SET_MODE_FILTER)");
        return false;
    }
    return true;
}

pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
bool g_release = false;
std::atomic<int> g_ready{0};
std::atomic<int> g_filter_failed{0};

void *filtered_sleeper(void *) {
    if (!refuse_signals_on_this_thread()) g_filter_failed.fetch_add(1);
    pthread_mutex_lock(&g_mutex);
    g_ready.fetch_add(1);
    while (!g_release) pthread_cond_wait(&g_cond, &g_mutex);
    pthread_mutex_unlock(&g_mutex);
    return nullptr;
}

int role_relay(pt::Expect expect) {
    std::vector<pthread_t> threads(kFiltered);
    for (auto &t : threads) pthread_create(&t, nullptr, filtered_sleeper, nullptr);
    while (g_ready.load() < kFiltered) usleep(1000);
    if (g_filter_failed.load()) return std::printf("FAIL: could not install the filter\n"), 1;
    usleep(20000);  // every sleeper is inside pthread_cond_wait (it released the mutex)

    int a = setresuid(0, 0, 4242);
    int b = hx::drop_cap(CAP_NET_RAW);
    std::printf("setresuid: %d, capset: %d\n", a, b);
    std::string diff = pt::differences();

    pthread_mutex_lock(&g_mutex);
    g_release = true;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_mutex);
    for (pthread_t t : threads) pthread_join(t, nullptr);
    if (a != 0 || b != 0) return std::printf("FAIL: a call failed\n"), 1;
    return pt::finish(expect, diff, "threads that may not signal get setresuid and capset");
}

int role_caller() {
    pt::Sleepers sleepers(2);
    if (!refuse_signals_on_this_thread()) return 1;
    std::printf("CALLING capset\n");
    std::fflush(stdout);
    int r = hx::drop_cap(CAP_NET_RAW);
    std::printf("RETURNED %d\n", r);
    std::string diff = pt::differences();
    std::printf("%s", diff.empty() ? "every thread agrees\n" : diff.c_str());
    return diff.empty() ? 0 : 3;  // 3: capset "succeeded", threads differ
}

int driver(const std::string &mode, pt::Expect expect) {
    hx::RunResult r = hx::run({hx::self_exe(), "--role=tested", "--mode=" + mode,
                               expect == pt::Expect::kUniform ? "--expect=uniform" : "--expect=diverge"},
                              hx::env_with({"PSXSHIM_DEBUG=1", mode == "norelay" ? "PSXSHIM_RELAY=0" : "PSXSHIM_RELAY=1"}), 60);
    std::printf("tested program: %s\n--- stdout\n%s--- stderr\n%s---\n", r.describe().c_str(), r.out.c_str(),
                r.err.c_str());
    bool exited0 = !r.timed_out && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    bool killed = !r.timed_out && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL;
    bool returned = r.out.find("RETURNED") != std::string::npos;
    std::string problems;
    if (mode == "relay" || mode == "norelay") {
        if (!exited0) problems += "the tested program did not pass (see its stdout)\n";
        bool off = r.err.find("relays off") != std::string::npos;
        if (expect == pt::Expect::kUniform && mode == "relay" && !off) {
            problems += "no log line says relays were switched off: the refused relays were not exercised\n";
        }
        if (mode == "norelay" && off) problems += "PSXSHIM_RELAY=0, yet a handler tried to relay\n";
    } else if (expect == pt::Expect::kUniform) {
        if (!killed) problems += "expected the process to be killed by SIGKILL\n";
        if (returned) problems += "capset returned although threads could not be reached\n";
        if (r.err.find("cannot signal thread") == std::string::npos || r.err.find("EPERM") == std::string::npos) {
            problems += "stderr does not name the unreachable thread and EPERM\n";
        }
    } else {
        if (r.out.find("RETURNED 0") == std::string::npos || WEXITSTATUS(r.status) != 3) {
            problems += "negative control: expected capset to return 0 with threads left behind\n";
        }
    }
    return hx::verdict(problems, "refused-" + mode, expect == pt::Expect::kUniform);
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_NET_RAW, CAP_SYS_ADMIN}); rc >= 0) return rc;
    std::string mode = hx::arg(argc, argv, "mode", "relay");
    if (hx::arg(argc, argv, "role") == "tested") return mode == "caller" ? role_caller() : role_relay(expect);
    return driver(mode, expect);
}
