// Issue 3, item 4: wrapped calls made from inside signal handlers.
//
// Thread A loops on wrapped calls (capset toggling an effective bit,
// prctl(PR_SET_KEEPCAPS) toggling).  Thread B bombards A -- and the main
// thread -- with SIGUSR1 through pthread_kill.  The SIGUSR1 handler makes
// wrapped calls itself (setgid(0), setuid(0), capset), so it regularly runs
// in the middle of A's own wrapped calls (before the engine masked signals,
// or right after).  Thread C broadcasts concurrently (setresgid), so
// handlers also start broadcasts while another broadcaster holds the engine.
// Finally A's handler, on a pthread_sigqueue'd "final" SIGUSR1, drops
// CAP_NET_RAW with capset.
//
// Checks: no deadlock (watchdog process), every wrapped call made by a
// handler succeeded, handlers did run wrapped calls, and at the end every
// thread agrees with the caller and CAP_NET_RAW is gone from every thread.
// Negative control (no shim): the final capset reaches only thread A.  (Its
// handlers make capset calls only: glibc's own set*id deadlocks when called
// from a handler that interrupted another set*id.)
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "creds.h"
#include "hostile.h"


namespace {

constexpr long kFinal = 0x5eed;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_final_done{false};
std::atomic<bool> g_release_a{false};  // A stays alive until its state was checked
std::atomic<long> g_handler_calls{0};     // wrapped calls made by handlers
std::atomic<long> g_handler_failures{0};
std::atomic<long> g_handler_runs{0};
std::atomic<long> g_loop_calls{0};
std::atomic<long> g_loop_failures{0};
std::atomic<int> g_final_rc{-2};
std::atomic<long> g_signals_sent{0};
bool g_shim = false;

// capset with CAP_SYS_NICE's effective bit on or off (permitted unchanged).
int toggle_nice(bool on) {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    if (on) d[0].effective |= 1u << CAP_SYS_NICE;
    else d[0].effective &= ~(1u << CAP_SYS_NICE);
    return capset(&h, d);
}

void on_usr1(int, siginfo_t *si, void *) {
    int saved = errno;
    g_handler_runs.fetch_add(1, std::memory_order_relaxed);
    if (si->si_code == SI_QUEUE && si->si_value.sival_int == kFinal) {
        // The last change of the test, made by a handler.
        __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct d[2];
        syscall(SYS_capget, &h, d);
        d[0].permitted &= ~(1u << CAP_NET_RAW);
        d[0].effective &= ~(1u << CAP_NET_RAW);
        g_final_rc.store(capset(&h, d));
        g_final_done.store(true);
        errno = saved;
        return;
    }
    long n = g_handler_runs.load(std::memory_order_relaxed);
    int rc;
    // Without the shim (negative control) glibc's set*id from a handler that
    // interrupted another set*id deadlocks on glibc's lock -- that is the
    // problem the shim solves, but the control is about the final state, so
    // its handlers use capset only.
    switch (g_shim ? n % 3 : 2) {
    case 0: rc = setgid(0); break;
    case 1: rc = setuid(0); break;
    default: rc = toggle_nice(n & 1); break;
    }
    g_handler_calls.fetch_add(1, std::memory_order_relaxed);
    if (rc != 0) g_handler_failures.fetch_add(1, std::memory_order_relaxed);
    errno = saved;
}

std::atomic<pthread_t> g_a{};

void *thread_a(void *arg) {
    g_shim = pt::shim_loaded();
    long iterations = *static_cast<long *>(arg);
    for (long i = 0; i < iterations; i++) {
        int rc = (i & 1) ? toggle_nice(i & 2) : prctl(PR_SET_KEEPCAPS, (i >> 1) & 1, 0, 0, 0);
        g_loop_calls.fetch_add(1, std::memory_order_relaxed);
        if (rc != 0) g_loop_failures.fetch_add(1, std::memory_order_relaxed);
    }
    while (!g_final_done.load() || !g_release_a.load()) usleep(1000);
    return nullptr;
}

void *thread_b(void *arg) {
    pthread_t main_thread = *static_cast<pthread_t *>(arg);
    unsigned seed = 1;
    long i = 0;
    while (!g_stop.load(std::memory_order_relaxed)) {
        long before = g_handler_runs.load();
        pthread_kill(g_a.load(), SIGUSR1);
        g_signals_sent.fetch_add(1, std::memory_order_relaxed);
        if ((++i & 7) == 0) pthread_kill(main_thread, SIGUSR1);
        // Paced: wait for a handler to have run, then a short random pause,
        // so that A's own loop still progresses (each handler run is a whole
        // broadcast) and the signals land at varying points of A's calls.
        while (g_handler_runs.load() == before && !g_stop.load(std::memory_order_relaxed)) usleep(20);
        usleep(rand_r(&seed) % 200);
    }
    return nullptr;
}

void *thread_c(void *) {
    while (!g_stop.load(std::memory_order_relaxed)) {
        if (setresgid(0, 0, 0) != 0) g_loop_failures.fetch_add(1);
        usleep(1000);
    }
    return nullptr;
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_NET_RAW, CAP_SYS_NICE}); rc >= 0) return rc;
    g_shim = pt::shim_loaded();
    long iterations = std::atol(hx::arg(argc, argv, "iterations", "20000").c_str());
    pt::Watchdog wd(90, "signal-handler test (a deadlock?)");

    struct sigaction sa = {};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);

    pt::Sleepers sleepers(3);
    pthread_t self = pthread_self(), a, b, c;
    pthread_create(&a, nullptr, thread_a, &iterations);
    g_a.store(a);
    pthread_create(&b, nullptr, thread_b, &self);
    pthread_create(&c, nullptr, thread_c, nullptr);

    // The main thread broadcasts too, and is itself a SIGUSR1 target.
    long main_calls = 0;
    while (g_loop_calls.load() < iterations) {
        if (setuid(0) != 0) g_loop_failures.fetch_add(1);
        main_calls++;
        usleep(500);
        if (main_calls % 5000 == 0)
            std::printf("progress: A %ld calls, handler calls %ld\n", g_loop_calls.load(), g_handler_calls.load());
    }
    g_stop.store(true);
    pthread_join(b, nullptr);
    pthread_join(c, nullptr);
    sigval v;
    v.sival_int = static_cast<int>(kFinal);
    pthread_sigqueue(a, SIGUSR1, v);
    while (!g_final_done.load()) usleep(1000);
    // Let any SIGUSR1 still pending on the main thread run now.
    usleep(10000);

    // Thread A is still alive here: without the shim it is the one thread
    // that lost CAP_NET_RAW, which is what the negative control must see.
    std::string diff = pt::differences();
    bool net_raw_gone = !((hx::caps_permitted_of_self() >> CAP_NET_RAW) & 1);
    g_release_a.store(true);
    pthread_join(a, nullptr);
    wd.disarm();
    std::printf("thread A wrapped calls: %ld (%ld failed, all threads' loops), main thread calls: %ld\n",
                g_loop_calls.load(), g_loop_failures.load(), main_calls);
    std::printf("SIGUSR1 sent to A: %ld\n", g_signals_sent.load());
    std::printf("SIGUSR1 handler runs: %ld, wrapped calls made by handlers: %ld (%ld failed), final capset in handler: %d\n",
                g_handler_runs.load(), g_handler_calls.load(), g_handler_failures.load(), g_final_rc.load());

    bool sound = g_handler_failures.load() == 0 && g_loop_failures.load() == 0 && g_handler_calls.load() > 0 &&
                 g_final_rc.load() == 0;
    if (!sound) {
        std::printf("FAIL signal handlers: a wrapped call failed, or no handler made a wrapped call\n");
        return 1;
    }
    if (expect == pt::Expect::kUniform) {
        if (!net_raw_gone) {
            std::printf("FAIL signal handlers: the handler's capset on thread A did not reach the main thread\n");
            return 1;
        }
    }
    return pt::finish(expect, diff, "wrapped calls from signal handlers, final capset from a handler");
}
