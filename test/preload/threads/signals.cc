// Signals.  One case per run (--case=NAME):
//
//   blockall          every thread blocks every signal (sigprocmask,
//                     pthread_sigmask, full set); a capset must still reach all
//   rt_handlers       handlers for SIGRTMIN..SIGRTMAX and SIGSYS: every signal the
//                     application sends (thread- and process-directed) arrives
//                     exactly once, with its value, while broadcasts run
//   glibc_concurrent  glibc's own setresgid/setgroups broadcast (reached past the
//                     preload) loops in one thread while the shim's capset/prctl
//                     loop in another: both finish, every thread agrees
//   blocking          threads asleep in read(), a raw futex wait,
//                     pthread_cond_wait, nanosleep, epoll_wait and sigwaitinfo,
//                     plus one spinning on errno, are hit by broadcasts
//                     (--via=shim: capset; --via=glibc: glibc's setresgid).
//                     Asserted: read and futex waits see no EINTR, errno is
//                     preserved.  Reported: what nanosleep, epoll_wait and
//                     sigwaitinfo return (signal(7): never restarted).
#include <linux/futex.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <grp.h>

#include <atomic>
#include <thread>

#include "tt.h"

namespace {

pt::Expect g_expect;
tt::Failures g_fail;

struct Gate {
    std::atomic<int> open{0};
    void wait() {
        while (!open.load()) syscall(SYS_futex, &open, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    }
    void release() {
        open.store(1);
        syscall(SYS_futex, &open, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
    }
};

// ---- blockall ------------------------------------------------------------------------

Gate g_block_gate;
std::atomic<int> g_block_ready{0};
int g_block_tids[8];

void block_everything(bool via_sigprocmask) {
    sigset_t all;
    sigfillset(&all);
    for (int s = 1; s < NSIG; s++) sigaddset(&all, s);  // glibc refuses its own 32/33
    if (via_sigprocmask) sigprocmask(SIG_BLOCK, &all, nullptr);
    else pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

void blocked_body(int slot) {
    block_everything(slot % 2);
    g_block_tids[slot] = gettid();
    g_block_ready++;
    g_block_gate.wait();
}

void *blocked_pthread(void *p) {
    blocked_body(static_cast<int>(reinterpret_cast<long>(p)));
    return nullptr;
}

int case_blockall() {
    block_everything(true);  // main too, before any thread: they inherit it
    pthread_t t[6];
    for (long i = 0; i < 6; i++) pthread_create(&t[i], nullptr, blocked_pthread, reinterpret_cast<void *>(i));
    std::thread s1(blocked_body, 6), s2(blocked_body, 7);
    while (g_block_ready.load() < 8) usleep(1000);
    for (int tid : g_block_tids) {
        pt::ThreadCreds c = pt::read_thread(tid);
        std::printf("thread %d SigBlk %016llx\n", tid, static_cast<unsigned long long>(c.sig_blk));
    }
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0) g_fail.add("PR_CAPBSET_DROP: %s", strerror(errno));
    for (int i = 0; i < 20; i++)
        if (tt::set_effective(CAP_NET_ADMIN, i % 2) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    for (int tid : g_block_tids) tt::expect_tid(g_fail, g_expect, tid, "all-signals-blocked");
    g_block_gate.release();
    for (auto &x : t) pthread_join(x, nullptr);
    s1.join();
    s2.join();
    return g_fail.finish(g_expect, diff, "threads blocking every signal");
}

// ---- rt_handlers ------------------------------------------------------------------------

constexpr int kMaxSig = 65;
std::atomic<long> g_rt_received[kMaxSig];
std::atomic<long> g_rt_sent[kMaxSig];
std::atomic<long> g_rt_bad_value{0};
std::atomic<long> g_rt_bad_code{0};
std::atomic<int> g_rt_foreign{0};  // signals we never installed a handler for

void rt_handler(int sig, siginfo_t *info, void *) {
    int saved = errno;
    if (sig <= 0 || sig >= kMaxSig) {
        g_rt_foreign++;
    } else {
        g_rt_received[sig]++;
        // Everything we send carries sig * 1000 + 7 (SIGSYS goes by tgkill: SI_TKILL, no value).
        if (sig != SIGSYS && info->si_value.sival_int != sig * 1000 + 7) g_rt_bad_value++;
        if (sig != SIGSYS && info->si_code != SI_QUEUE) g_rt_bad_code++;
        if (sig == SIGSYS && info->si_code != SI_TKILL) g_rt_bad_code++;
    }
    errno = saved;
}

std::atomic<bool> g_rt_stop{false};

// Signals sent and not yet handled, across all numbers.
long rt_in_flight() {
    long n = 0;
    for (int sig = 1; sig < kMaxSig; sig++) n += g_rt_sent[sig].load() - g_rt_received[sig].load();
    return n;
}

// At most this many signals in flight before the sender waits.  Unbounded,
// the sender outran the threads that handle them: process-directed signals
// go to the main thread first, which then ran nothing but nested handlers,
// its backlog grew by thousands a second (SigQ) and the 300 calls never
// ended (a 40 s watchdog kill in CI, 1-4 s runs here, with the shim; it
// blocks the caller's signals for a broadcast, which starts the backlog).
// Four rounds' worth still keeps signals queued through every broadcast.
constexpr long kMaxInFlight = 128;

void rt_sender(std::vector<pthread_t> targets, std::vector<int> target_tids) {
    int round = 0;
    while (!g_rt_stop.load() || round < 20) {
        while (rt_in_flight() > kMaxInFlight) sched_yield();
        for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++) {
            sigval v;
            v.sival_int = sig * 1000 + 7;
            int r;
            if (round % 2) {
                r = pthread_sigqueue(targets[(round + sig) % targets.size()], sig, v);
            } else {
                r = sigqueue(getpid(), sig, v) == 0 ? 0 : errno;  // process-directed: any thread
            }
            if (r == 0) g_rt_sent[sig]++;
            else if (r != EAGAIN) g_fail.add("sending signal %d: %s", sig, strerror(r));
        }
        // SIGSYS is not queued: one at a time, each waited for.
        long before = g_rt_received[SIGSYS].load();
        int tid = target_tids[round % target_tids.size()];
        if (syscall(SYS_tgkill, getpid(), tid, SIGSYS) == 0) {
            g_rt_sent[SIGSYS]++;
            while (g_rt_received[SIGSYS].load() == before) sched_yield();
        }
        round++;
    }
}

int case_rt_handlers() {
    struct sigaction sa{};
    sa.sa_sigaction = rt_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
        if (sigaction(sig, &sa, nullptr) != 0) g_fail.add("sigaction(%d): %s", sig, strerror(errno));
    if (sigaction(SIGSYS, &sa, nullptr) != 0) g_fail.add("sigaction(SIGSYS): %s", strerror(errno));
    std::printf("handlers installed for %d..%d and SIGSYS\n", SIGRTMIN, SIGRTMAX);

    pt::Sleepers sleepers(4);
    std::vector<pthread_t> targets;
    std::vector<int> tids = sleepers.tids();
    // pthread_t handles of threads we own for pthread_sigqueue: start 3 more.
    Gate gate;
    std::atomic<int> ready{0};
    std::vector<std::thread> own;
    for (int i = 0; i < 3; i++)
        own.emplace_back([&] {
            ready++;
            gate.wait();
        });
    while (ready.load() < 3) usleep(1000);
    for (auto &t : own) targets.push_back(t.native_handle());
    targets.push_back(pthread_self());

    std::thread sender(rt_sender, targets, tids);
    int calls = 0;
    for (int i = 0; i < 300; i++, calls++)
        if (tt::set_effective(CAP_NET_ADMIN, i % 2) != 0) g_fail.add("capset: %s", strerror(errno));
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0) g_fail.add("PR_CAPBSET_DROP: %s", strerror(errno));
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    g_rt_stop = true;
    sender.join();

    // Queued signals still in flight: wait for them (the watchdog bounds this).
    long sent_total = 0, recv_total = 0;
    for (int spins = 0;; spins++) {
        bool all = true;
        for (int sig = 1; sig < kMaxSig; sig++)
            if (g_rt_received[sig].load() < g_rt_sent[sig].load()) all = false;
        if (all || spins > 20000) break;
        usleep(1000);
    }
    for (int sig = 1; sig < kMaxSig; sig++) {
        long s = g_rt_sent[sig].load(), r = g_rt_received[sig].load();
        sent_total += s;
        recv_total += r;
        if (s != r) g_fail.add("signal %d: sent %ld, handler ran %ld times", sig, s, r);
    }
    if (g_rt_bad_value.load()) g_fail.add("%ld deliveries carried a wrong si_value", g_rt_bad_value.load());
    if (g_rt_bad_code.load()) g_fail.add("%ld deliveries carried a wrong si_code", g_rt_bad_code.load());
    if (g_rt_foreign.load()) g_fail.add("%d deliveries of signals without our handler", g_rt_foreign.load());
    std::printf("%d credential calls; %ld application signals sent, %ld handled\n", calls, sent_total, recv_total);
    std::string diff = tt::differences();
    for (int tid : tids) tt::expect_tid(g_fail, g_expect, tid, "sleeping pthread");
    gate.release();
    for (auto &t : own) t.join();
    return g_fail.finish(g_expect, diff, "application real-time and SIGSYS handlers");
}

// ---- glibc_concurrent ---------------------------------------------------------------------

using SetresgidFn = int (*)(gid_t, gid_t, gid_t);
using SetgroupsFn = int (*)(size_t, const gid_t *);

int case_glibc_concurrent() {
    auto glibc_setresgid = tt::libc_fn<SetresgidFn>("setresgid");
    auto glibc_setgroups = tt::libc_fn<SetgroupsFn>("setgroups");
    pt::Sleepers sleepers(6);
    Gate start;
    constexpr int kIter = 300;
    std::thread glibc_thread([&] {
        start.wait();
        static const gid_t groups[2] = {4321, 4322};
        for (int i = 0; i < kIter; i++) {
            if (glibc_setresgid(static_cast<gid_t>(-1), i % 2 ? 1234 : 0, static_cast<gid_t>(-1)) != 0)
                g_fail.add("glibc setresgid: %s", strerror(errno));
            if (glibc_setgroups(i % 2 ? 2 : 0, groups) != 0) g_fail.add("glibc setgroups: %s", strerror(errno));
        }
        if (glibc_setresgid(static_cast<gid_t>(-1), 0, static_cast<gid_t>(-1)) != 0 || glibc_setgroups(0, groups) != 0)
            g_fail.add("glibc setresgid/setgroups (final): %s", strerror(errno));
    });
    std::thread shim_thread([&] {
        start.wait();
        for (int i = 0; i < kIter; i++) {
            if (tt::set_effective(CAP_NET_ADMIN, i % 2) != 0) g_fail.add("capset: %s", strerror(errno));
            if (i % 40 == 0 && prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT - i / 40) != 0)
                g_fail.add("PR_CAPBSET_DROP: %s", strerror(errno));
        }
    });
    start.release();
    glibc_thread.join();
    shim_thread.join();
    // The last change comes from main, so that the control (no shim) has
    // main differ from the sleepers.
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::printf("%d glibc setresgid+setgroups and %d shim capset/prctl calls ran concurrently\n", kIter, kIter);
    std::string diff = tt::differences();
    for (int tid : sleepers.tids()) tt::expect_tid(g_fail, g_expect, tid, "sleeping pthread");
    gid_t r, e, s;
    getresgid(&r, &e, &s);
    if (e != 0) g_fail.add("glibc's last setresgid did not stick on the main thread: egid %u", e);
    if (getgroups(0, nullptr) != 0) g_fail.add("glibc's last setgroups(0) did not stick: %d groups", getgroups(0, nullptr));
    return g_fail.finish(g_expect, diff, "glibc's setxid broadcast concurrent with the shim's");
}

// ---- blocking -------------------------------------------------------------------------------

constexpr int kSentinel = ENOTRECOVERABLE;  // an errno nothing here produces

struct Blocking {
    int pipe_r[2];    // read() thread
    int pipe_e[2];    // epoll thread's fd
    int epfd;
    std::atomic<int> fut{0};
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    bool cond_go = false;
    std::atomic<bool> stop{false};

    std::atomic<int> tid_read{0}, tid_futex{0}, tid_cond{0}, tid_sleep{0}, tid_epoll{0}, tid_sigwait{0}, tid_busy{0};
    // Outcomes.
    long read_ret = 0;
    int read_errno = 0;
    std::atomic<int> futex_eintr{0}, futex_spurious{0};
    int futex_errno = 0;
    int cond_ret = -1, cond_errno = 0;
    std::atomic<int> cond_wakeups{0};
    std::atomic<int> sleep_eintr{0}, sleep_other{0}, sleep_bad_errno{0};
    std::atomic<int> epoll_eintr{0}, epoll_bad_errno{0};
    std::atomic<int> sigwait_eintr{0};
    std::atomic<long> busy_loops{0}, busy_bad{0};
} B;

void *t_read(void *) {
    B.tid_read = gettid();
    char c;
    errno = kSentinel;
    B.read_ret = read(B.pipe_r[0], &c, 1);
    B.read_errno = errno;
    return nullptr;
}

void *t_futex(void *) {
    B.tid_futex = gettid();
    errno = kSentinel;
    while (B.fut.load() == 0) {
        long r = syscall(SYS_futex, &B.fut, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
        if (r == -1 && errno == EINTR) {
            B.futex_eintr++;
            errno = kSentinel;
        } else if (r == -1 && errno == EAGAIN) {
            errno = kSentinel;  // the word changed before we slept: legitimate
        } else if (r == 0 && B.fut.load() == 0) {
            B.futex_spurious++;
        }
    }
    B.futex_errno = errno;
    return nullptr;
}

void *t_cond(void *) {
    B.tid_cond = gettid();
    pthread_mutex_lock(&B.m);
    errno = kSentinel;
    while (!B.cond_go) {
        B.cond_ret = pthread_cond_wait(&B.cv, &B.m);
        B.cond_wakeups++;
        if (B.cond_ret != 0) break;
    }
    B.cond_errno = errno;
    pthread_mutex_unlock(&B.m);
    return nullptr;
}

void *t_sleep(void *) {
    B.tid_sleep = gettid();
    while (!B.stop.load()) {
        timespec req = {0, 300 * 1000 * 1000}, rem;
        errno = kSentinel;
        int r = nanosleep(&req, &rem);
        if (r == -1 && errno == EINTR) B.sleep_eintr++;
        else if (r == -1) B.sleep_other++;
        else if (errno != kSentinel) B.sleep_bad_errno++;
    }
    return nullptr;
}

void *t_epoll(void *) {
    B.tid_epoll = gettid();
    epoll_event ev;
    for (;;) {
        errno = kSentinel;
        int r = epoll_wait(B.epfd, &ev, 1, -1);
        if (r == -1 && errno == EINTR) {
            B.epoll_eintr++;
            continue;
        }
        if (r == -1) {
            B.epoll_bad_errno++;
            continue;
        }
        if (errno != kSentinel) B.epoll_bad_errno++;
        break;  // the pipe became readable: done
    }
    return nullptr;
}

void *t_sigwait(void *) {
    B.tid_sigwait = gettid();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    for (;;) {
        siginfo_t info;
        int r = sigwaitinfo(&s, &info);
        if (r == -1 && errno == EINTR) {
            B.sigwait_eintr++;
            continue;
        }
        break;
    }
    return nullptr;
}

void *t_busy(void *) {
    B.tid_busy = gettid();
    int k = 1;
    while (!B.stop.load(std::memory_order_relaxed)) {
        errno = k;
        __asm__ volatile("" ::: "memory");
        for (int i = 0; i < 50; i++) __asm__ volatile("");
        if (errno != k) B.busy_bad++;
        k = k % 4000 + 1;
        B.busy_loops++;
    }
    return nullptr;
}

using SetresgidFn2 = int (*)(gid_t, gid_t, gid_t);

int case_blocking(bool via_glibc) {
    // SIGUSR2 is waited for with sigwaitinfo: blocked everywhere.
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
    if (pipe(B.pipe_r) || pipe(B.pipe_e)) return std::perror("pipe"), 1;
    B.epfd = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(B.epfd, EPOLL_CTL_ADD, B.pipe_e[0], &ev);

    pthread_t t[7];
    void *(*bodies[7])(void *) = {t_read, t_futex, t_cond, t_sleep, t_epoll, t_sigwait, t_busy};
    for (int i = 0; i < 7; i++) pthread_create(&t[i], nullptr, bodies[i], nullptr);
    for (auto *x : {&B.tid_read, &B.tid_futex, &B.tid_cond, &B.tid_sleep, &B.tid_epoll, &B.tid_sigwait, &B.tid_busy})
        while (!x->load()) usleep(1000);

    auto glibc_setresgid = tt::libc_fn<SetresgidFn2>("setresgid");
    constexpr int kCalls = 20;
    for (int i = 0; i < kCalls; i++) {
        // Each broadcast must find each thread asleep in its call.
        tt::wait_blocked_in(B.tid_read, SYS_read);
        tt::wait_blocked_in(B.tid_futex, SYS_futex);
        tt::wait_blocked_in(B.tid_cond, SYS_futex);
        tt::wait_blocked_in(B.tid_sleep, SYS_clock_nanosleep);
        tt::wait_blocked_in(B.tid_epoll, SYS_epoll_wait);
        tt::wait_blocked_in(B.tid_sigwait, SYS_rt_sigtimedwait);
        int r = via_glibc ? glibc_setresgid(static_cast<gid_t>(-1), i % 2 ? 0 : 1234, static_cast<gid_t>(-1))
                          : tt::set_effective(CAP_NET_ADMIN, i % 2);
        if (r != 0) g_fail.add("%s: %s", via_glibc ? "glibc setresgid" : "capset", strerror(errno));
    }
    if (!via_glibc && tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    // Every blocked thread must have been reached (its credentials changed
    // while it slept in its call).
    std::string diff = tt::differences();
    const std::pair<const char *, int> who[] = {{"read()", B.tid_read},         {"futex wait", B.tid_futex},
                                                {"pthread_cond_wait", B.tid_cond}, {"nanosleep", B.tid_sleep},
                                                {"epoll_wait", B.tid_epoll},      {"sigwaitinfo", B.tid_sigwait},
                                                {"errno spinner", B.tid_busy}};
    if (!via_glibc)
        for (auto &w : who) tt::expect_tid(g_fail, g_expect, w.second, w.first);

    // Release everybody.
    if (write(B.pipe_r[1], "x", 1) != 1) std::perror("write");
    B.fut.store(1);
    syscall(SYS_futex, &B.fut, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    pthread_mutex_lock(&B.m);
    B.cond_go = true;
    pthread_cond_signal(&B.cv);
    pthread_mutex_unlock(&B.m);
    B.stop = true;
    if (write(B.pipe_e[1], "x", 1) != 1) std::perror("write");
    pthread_kill(t[5], SIGUSR2);
    for (auto &x : t) pthread_join(x, nullptr);

    // Guaranteed: restartable calls restart, errno survives.
    if (B.read_ret != 1) g_fail.add("read() returned %ld (errno %d %s) instead of 1", B.read_ret, B.read_errno,
                                    strerror(B.read_errno));
    if (B.read_errno != kSentinel) g_fail.add("errno after read() is %d (%s), was %d", B.read_errno,
                                              strerror(B.read_errno), kSentinel);
    if (B.futex_eintr.load()) g_fail.add("raw FUTEX_WAIT returned EINTR %d times", B.futex_eintr.load());
    if (B.futex_errno != kSentinel) g_fail.add("errno after futex wait is %d (%s)", B.futex_errno, strerror(B.futex_errno));
    if (B.cond_ret != 0) g_fail.add("pthread_cond_wait returned %d", B.cond_ret);
    if (B.cond_errno != kSentinel) g_fail.add("errno after pthread_cond_wait is %d (%s)", B.cond_errno,
                                              strerror(B.cond_errno));
    if (B.sleep_other.load() || B.sleep_bad_errno.load())
        g_fail.add("nanosleep: %d failures other than EINTR, %d successes with errno changed", B.sleep_other.load(),
                   B.sleep_bad_errno.load());
    if (B.epoll_bad_errno.load()) g_fail.add("epoll_wait: %d unexpected errors or errno changes", B.epoll_bad_errno.load());
    if (B.busy_bad.load()) g_fail.add("errno changed under a running thread %ld times in %ld loops", B.busy_bad.load(),
                                      B.busy_loops.load());
    std::printf("%d broadcasts via %s, each hitting every thread asleep in its call:\n", kCalls,
                via_glibc ? "glibc's setresgid" : "the shim's capset");
    std::printf("  read(): returned %ld, errno kept: %s\n", B.read_ret, B.read_errno == kSentinel ? "yes" : "no");
    std::printf("  raw FUTEX_WAIT: %d EINTR, %d spurious 0 returns\n", B.futex_eintr.load(), B.futex_spurious.load());
    std::printf("  pthread_cond_wait: %d returns before the signal\n", B.cond_wakeups.load() - 1);
    std::printf("  nanosleep: %d EINTR returns (not restarted: signal(7))\n", B.sleep_eintr.load());
    std::printf("  epoll_wait: %d EINTR returns (not restarted: signal(7))\n", B.epoll_eintr.load());
    std::printf("  sigwaitinfo: %d EINTR returns\n", B.sigwait_eintr.load());
    std::printf("  errno spinner: %ld loops, errno changed %ld times\n", B.busy_loops.load(), B.busy_bad.load());
    if (via_glibc) {
        // glibc's broadcast is uniform by construction; the verdict is only
        // about the assertions above (plus every thread agreeing).
        return g_fail.finish(pt::Expect::kUniform, diff, "blocking calls hit by glibc's setxid broadcast");
    }
    return g_fail.finish(g_expect, diff, "blocking calls hit by the shim's broadcast");
}

}  // namespace

int main(int argc, char **argv) {
    g_expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    std::string c = tt::arg_case(argc, argv);
    pt::Watchdog wd(40, "signals " + c);
    if (c == "blockall") return case_blockall();
    if (c == "rt_handlers") return case_rt_handlers();
    if (c == "glibc_concurrent") return case_glibc_concurrent();
    if (c == "blocking") {
        const char *via = tt::arg_value(argc, argv, "--via=");
        return case_blocking(via && !std::strcmp(via, "glibc"));
    }
    return std::printf("unknown --case=%s\n", c.c_str()), 1;
}
