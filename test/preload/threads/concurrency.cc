// Concurrency: several threads call capset, prctl and set*id at the same time
// (plus one thread whose signal handler calls capset).  Every call must
// succeed, nothing may deadlock (watchdog), and afterwards every thread --
// callers, sleepers, raw-clone threads -- has the same credentials, keep-caps
// and securebits.
#include <grp.h>
#include <pthread.h>

#include <atomic>
#include <thread>

#include "tt.h"

namespace {

pt::Expect g_expect;
tt::Failures g_fail;
constexpr int kIter = 150;

struct Start {
    std::atomic<int> go{0};
    void wait() {
        while (!go.load()) sched_yield();
    }
} g_start;

void caller_capset(int cap) {
    g_start.wait();
    for (int i = 0; i < kIter; i++)
        if (tt::set_effective(cap, i % 2) != 0) g_fail.add("capset(%d) from %d: %s", cap, gettid(), strerror(errno));
}

void caller_prctl() {
    g_start.wait();
    for (int i = 0; i < kIter; i++) {
        int cap = CAP_SYS_BOOT - (i % 8);  // 22..15, dropped again and again
        if (prctl(PR_CAPBSET_DROP, cap) != 0) g_fail.add("PR_CAPBSET_DROP %d: %s", cap, strerror(errno));
        if (prctl(PR_SET_KEEPCAPS, (i + 1) % 2) != 0) g_fail.add("PR_SET_KEEPCAPS: %s", strerror(errno));
    }
    // Final keep-caps: 0 (i = kIter - 1 is odd... make it explicit).
    if (prctl(PR_SET_KEEPCAPS, 0) != 0) g_fail.add("PR_SET_KEEPCAPS: %s", strerror(errno));
}

void caller_setid() {
    g_start.wait();
    static const gid_t groups[3] = {5001, 5002, 5003};
    for (int i = 0; i < kIter; i++) {
        if (setresgid(static_cast<gid_t>(-1), i % 2 ? 2345 : 0, static_cast<gid_t>(-1)) != 0)
            g_fail.add("setresgid: %s", strerror(errno));
        if (setgroups(i % 3, groups) != 0) g_fail.add("setgroups: %s", strerror(errno));
        if (setresuid(0, 0, 0) != 0) g_fail.add("setresuid: %s", strerror(errno));
    }
}

// SIGUSR1's handler makes a call itself: a broadcast started from a signal
// handler, on a thread that also broadcasts from normal context.
std::atomic<int> g_handled{0};

void usr1(int) {
    int saved = errno;
    if (tt::set_effective(CAP_LEASE, g_handled.load() % 2) != 0) g_fail.add("capset in handler: %s", strerror(errno));
    g_handled++;
    errno = saved;
}

std::atomic<int> g_handler_tid{0};
std::atomic<bool> g_handler_thread_stop{false};

void handler_thread() {
    g_handler_tid = gettid();
    g_start.wait();
    int i = 0;
    while (!g_handler_thread_stop.load()) {
        if (tt::set_effective(CAP_WAKE_ALARM, i++ % 2) != 0) g_fail.add("capset: %s", strerror(errno));
    }
}

}  // namespace

int main(int argc, char **argv) {
    g_expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    pt::Watchdog wd(40, "concurrency");
    struct sigaction sa{};
    sa.sa_handler = usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, nullptr);

    pt::Sleepers sleepers(6);
    pt::start_raw_thread();
    pt::start_raw_thread();
    std::vector<std::thread> callers;
    callers.emplace_back(caller_capset, CAP_NET_ADMIN);
    callers.emplace_back(caller_capset, CAP_SYS_NICE);
    callers.emplace_back(caller_capset, CAP_MKNOD);
    callers.emplace_back(caller_prctl);
    callers.emplace_back(caller_setid);
    std::thread h(handler_thread);
    while (!g_handler_tid.load()) usleep(100);
    pthread_t hp = h.native_handle();
    g_start.go = 1;
    // Main interrupts the handler thread with SIGUSR1 100 times, one at a time.
    for (int i = 0; i < 100; i++) {
        int before = g_handled.load();
        pthread_kill(hp, SIGUSR1);
        while (g_handled.load() == before) sched_yield();
    }
    for (auto &t : callers) t.join();
    g_handler_thread_stop = true;
    h.join();
    // A last change from main: the negative control's divergence.
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::printf("%d callers x %d iterations, %d calls from a signal handler\n", 5, kIter, g_handled.load());

    std::string diff = tt::differences();
    if (g_expect == pt::Expect::kUniform) {
        long kc = prctl(PR_GET_KEEPCAPS), sb = prctl(PR_GET_SECUREBITS);
        for (const pt::RawAnswer &a : sleepers.query())
            if (a.keepcaps != kc || a.securebits != sb)
                g_fail.add("sleeper %d: keepcaps %ld securebits %ld; main %ld %ld", a.tid, a.keepcaps, a.securebits, kc, sb);
        for (const pt::RawAnswer &a : pt::query_raw_threads())
            if (a.keepcaps != kc || a.securebits != sb)
                g_fail.add("raw thread %d: keepcaps %ld securebits %ld; main %ld %ld", a.tid, a.keepcaps, a.securebits, kc,
                           sb);
    }
    int rc = g_fail.finish(g_expect, diff, "concurrent callers");
    pt::stop_raw_threads();
    return rc;
}
