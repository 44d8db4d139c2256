// Thread discovery: every kind of thread a process can have must be reached
// by a credential change.  One case per run (--case=NAME):
//
//   pthread_before  pthreads (sleeping and spinning) started before the call
//   pthread_during  a thread creates threads (which create threads) in a loop
//                   while the main thread drops capabilities repeatedly
//   std_thread      std::thread and std::jthread
//   c11             C11 thrd_create (glibc calls its internal pthread_create)
//   timer           the glibc-internal timer_create(SIGEV_THREAD) helper thread
//                   and the callback thread it starts
//   aio             the glibc-internal POSIX AIO worker thread, blocked in read
//   dlopen          threads started by a dlopen()ed library (--module=PATH)
//   exiting         threads exiting while the call runs
//   main_exit       the main thread called pthread_exit(); another thread calls
//   exit_paths      thousands of threads end by returning, pthread_exit(),
//                   deferred and asynchronous cancellation: each must give
//                   its registry slot back as it ends (the process's memory
//                   stays flat: a slot kept per ended thread would map a new
//                   16 KiB chunk every 256 threads), then the call
//
// Each checks every thread through /proc (tt::differences) and each named
// thread explicitly; the negative control (no shim) must show divergence.
#include <aio.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <threads.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "tt.h"

namespace {

pt::Expect g_expect;
tt::Failures g_fail;

// A gate threads block on (futex, so it works in any kind of thread).
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

void check_all(const char *label, const std::vector<int> &tids) {
    for (int t : tids) tt::expect_tid(g_fail, g_expect, t, label);
}

// ---- pthread_before ------------------------------------------------------------

std::atomic<bool> g_spin_stop{false};
std::atomic<int> g_spin_tids[4];

void *spinner(void *p) {
    g_spin_tids[reinterpret_cast<long>(p)].store(gettid());
    while (!g_spin_stop.load()) {
    }
    return nullptr;
}

int case_pthread_before() {
    pt::Sleepers sleepers(16);
    pthread_t spin[4];
    for (long i = 0; i < 4; i++) pthread_create(&spin[i], nullptr, spinner, reinterpret_cast<void *>(i));
    for (auto &t : g_spin_tids)
        while (!t.load()) usleep(100);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("sleeping pthread", sleepers.tids());
    for (auto &t : g_spin_tids) tt::expect_tid(g_fail, g_expect, t.load(), "spinning pthread");
    g_spin_stop = true;
    for (auto &t : spin) pthread_join(t, nullptr);
    return g_fail.finish(g_expect, diff, "pthreads started before the call");
}

// ---- pthread_during ------------------------------------------------------------

Gate g_during_gate;
std::atomic<bool> g_during_stop{false};
std::atomic<int> g_during_made{0};
constexpr int kDuringMax = 400;

void *during_leaf(void *) {
    g_during_gate.wait();
    return nullptr;
}

void *during_node(void *) {
    // Each node makes one child of its own before sleeping: creation from
    // many threads, not just the spawner.
    pthread_t t;
    if (pthread_create(&t, nullptr, during_leaf, nullptr) == 0) {
        pthread_detach(t);
        g_during_made++;
    }
    g_during_gate.wait();
    return nullptr;
}

void *during_spawner(void *) {
    while (!g_during_stop.load() && g_during_made.load() < kDuringMax) {
        pthread_t t;
        if (pthread_create(&t, nullptr, during_node, nullptr) != 0) break;
        pthread_detach(t);
        g_during_made++;
        usleep(300);  // spread creation over many of the main thread's calls
    }
    return nullptr;
}

int case_pthread_during() {
    pt::Sleepers sleepers(2);  // so that the control diverges even if creation is slow
    pthread_t spawner;
    pthread_create(&spawner, nullptr, during_spawner, nullptr);
    int iterations = 0, checks = 0;
    for (int cap = 0; iterations < 300; iterations++) {
        if (tt::set_effective(CAP_NET_ADMIN, iterations % 2) != 0) g_fail.add("capset: %s", strerror(errno));
        if (iterations % 10 == 5 && cap < 8) {
            // Bounding-set drops: glibc never broadcasts prctl.
            int c = CAP_SYS_BOOT - cap++;
            if (prctl(PR_CAPBSET_DROP, c) != 0) g_fail.add("PR_CAPBSET_DROP %d: %s", c, strerror(errno));
        }
        if (iterations % 20 == 0 && g_expect == pt::Expect::kUniform) {
            // New threads inherit from changed threads, so even while the
            // spawner runs every thread must already agree.
            checks++;
            std::string d = tt::differences();
            if (!d.empty()) g_fail.add("after drop %d, while threads were being created:\n%s", iterations, d.c_str());
        }
    }
    g_during_stop = true;
    pthread_join(spawner, nullptr);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::printf("%d calls while %d threads were created; %d mid-way checks; %zu threads now\n", iterations,
                g_during_made.load(), checks, tt::task_tids().size());
    std::string diff = tt::differences();
    g_during_gate.release();
    return g_fail.finish(g_expect, diff, "pthreads created during repeated calls");
}

// ---- std_thread ------------------------------------------------------------------

int case_std_thread() {
    std::mutex m;
    std::condition_variable cv;
    bool stop = false;
    std::vector<int> tids;
    std::vector<std::thread> threads;
    std::vector<std::jthread> jthreads;
    auto body = [&] {
        std::unique_lock<std::mutex> l(m);
        tids.push_back(gettid());
        cv.notify_all();
        cv.wait(l, [&] { return stop; });
    };
    for (int i = 0; i < 6; i++) threads.emplace_back(body);
    for (int i = 0; i < 2; i++) jthreads.emplace_back(body);
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return tids.size() == 8; });
    }
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("std::thread", tids);
    {
        std::lock_guard<std::mutex> l(m);
        stop = true;
    }
    cv.notify_all();
    for (auto &t : threads) t.join();
    jthreads.clear();
    return g_fail.finish(g_expect, diff, "std::thread and std::jthread");
}

// ---- c11 ---------------------------------------------------------------------------

mtx_t g_c11_m;
cnd_t g_c11_cv;
int g_c11_stop = 0;
std::vector<int> g_c11_tids;

int c11_body(void *) {
    mtx_lock(&g_c11_m);
    g_c11_tids.push_back(gettid());
    cnd_broadcast(&g_c11_cv);
    while (!g_c11_stop) cnd_wait(&g_c11_cv, &g_c11_m);
    mtx_unlock(&g_c11_m);
    return 0;
}

int case_c11() {
    mtx_init(&g_c11_m, mtx_plain);
    cnd_init(&g_c11_cv);
    thrd_t t[6];
    for (auto &x : t)
        if (thrd_create(&x, c11_body, nullptr) != thrd_success) return std::printf("thrd_create failed\n"), 1;
    mtx_lock(&g_c11_m);
    while (g_c11_tids.size() < 6) cnd_wait(&g_c11_cv, &g_c11_m);
    std::vector<int> tids = g_c11_tids;
    mtx_unlock(&g_c11_m);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("thrd_create", tids);
    mtx_lock(&g_c11_m);
    g_c11_stop = 1;
    cnd_broadcast(&g_c11_cv);
    mtx_unlock(&g_c11_m);
    for (auto &x : t) thrd_join(x, nullptr);
    return g_fail.finish(g_expect, diff, "C11 thrd_create threads");
}

// ---- timer ---------------------------------------------------------------------------

std::atomic<int> g_cb_tid{0};
std::atomic<int> g_cb_runs{0};
std::atomic<int> g_cb_has_raw{-1};  // callback's view of CAP_NET_RAW (effective)
Gate g_cb_gate;

void timer_cb(sigval v) {
    g_cb_tid.store(gettid());
    g_cb_has_raw.store(tt::have_effective(CAP_NET_RAW));
    g_cb_runs++;
    if (v.sival_int == 1) g_cb_gate.wait();
}

void arm(timer_t t) {
    itimerspec its{};
    its.it_value.tv_nsec = 1000000;
    if (timer_settime(t, 0, &its, nullptr) != 0) {
        std::perror("timer_settime");
        std::exit(1);
    }
}

int case_timer() {
    pt::Sleepers sleepers(2);
    std::vector<int> before = tt::task_tids();
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = timer_cb;
    sev.sigev_value.sival_int = 1;  // first expiry: the callback stays blocked
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) return std::perror("timer_create"), 1;
    arm(timer);
    while (g_cb_runs.load() < 1) usleep(1000);
    std::vector<int> helpers;
    for (int t : tt::task_tids())
        if (!std::binary_search(before.begin(), before.end(), t) && t != g_cb_tid.load()) helpers.push_back(t);
    std::printf("timer helper thread(s):");
    for (int t : helpers) std::printf(" %d", t);
    std::printf("; blocked callback thread %d\n", g_cb_tid.load());
    if (helpers.empty()) g_fail.add("no glibc timer helper thread appeared in /proc/self/task");

    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("timer helper", helpers);
    tt::expect_tid(g_fail, g_expect, g_cb_tid.load(), "timer callback (blocked)");

    // The helper creates a fresh callback thread per expiry: started after
    // the drop, it must not have the capability if the helper was changed.
    int first_cb = g_cb_tid.load();
    g_cb_gate.release();
    timer_delete(timer);
    sev.sigev_value.sival_int = 2;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) return std::perror("timer_create"), 1;
    arm(timer);
    while (g_cb_runs.load() < 2) usleep(1000);
    bool later_has = g_cb_has_raw.load() == 1;
    std::printf("second callback thread %d (first %d) holds CAP_NET_RAW: %s\n", g_cb_tid.load(), first_cb,
                later_has ? "yes" : "no");
    if (g_expect == pt::Expect::kUniform && later_has)
        g_fail.add("callback thread %d started after the drop still holds CAP_NET_RAW", g_cb_tid.load());
    for (int t : helpers) tt::expect_tid(g_fail, g_expect, t, "timer helper (after second expiry)");
    timer_delete(timer);
    return g_fail.finish(g_expect, diff, "glibc timer_create(SIGEV_THREAD) helper threads");
}

// ---- aio -------------------------------------------------------------------------------

int case_aio() {
    pt::Sleepers sleepers(1);
    int p[2];
    if (pipe(p) != 0) return std::perror("pipe"), 1;
    std::vector<int> before = tt::task_tids();
    char buf[8];
    aiocb cb{};
    cb.aio_fildes = p[0];
    cb.aio_buf = buf;
    cb.aio_nbytes = 1;
    cb.aio_sigevent.sigev_notify = SIGEV_NONE;
    if (aio_read(&cb) != 0) return std::perror("aio_read"), 1;
    std::vector<int> workers;
    while (workers.empty()) {
        for (int t : tt::task_tids())
            if (!std::binary_search(before.begin(), before.end(), t)) workers.push_back(t);
        if (workers.empty()) usleep(1000);
    }
    for (int t : workers) tt::wait_blocked_in(t, SYS_read);
    std::printf("AIO worker thread(s):");
    for (int t : workers) std::printf(" %d", t);
    std::printf("\n");
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("AIO worker", workers);
    if (write(p[1], "x", 1) != 1) return std::perror("write"), 1;
    const aiocb *list[1] = {&cb};
    while (aio_error(&cb) == EINPROGRESS) aio_suspend(list, 1, nullptr);
    ssize_t got = aio_return(&cb);
    if (got != 1) g_fail.add("aio_read of the blocked worker returned %zd (errno %d) instead of 1", got, aio_error(&cb));
    return g_fail.finish(g_expect, diff, "glibc AIO worker threads");
}

// ---- dlopen ----------------------------------------------------------------------------

int case_dlopen(const char *path) {
    if (!path) return std::printf("--module=PATH missing\n"), 1;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return std::printf("dlopen: %s\n", dlerror()), 1;
    auto start = reinterpret_cast<int (*)(int, int *)>(dlsym(h, "dl_start_threads"));
    auto stop = reinterpret_cast<void (*)()>(dlsym(h, "dl_stop_threads"));
    if (!start || !stop) return std::printf("module lacks dl_start_threads/dl_stop_threads\n"), 1;
    int tids[16];
    int n = start(8, tids);
    std::vector<int> v(tids, tids + n);
    std::printf("the module started %d threads\n", n);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("dlopen()ed library's", v);
    stop();
    return g_fail.finish(g_expect, diff, "threads started by a dlopen()ed library");
}

// ---- exiting ------------------------------------------------------------------------------

struct Exiter {
    Gate *gate;
    int how;
};

void *exiter(void *p) {
    auto *e = static_cast<Exiter *>(p);
    e->gate->wait();
    // Exit at slightly different moments and in different ways.
    for (int i = 0; i < (e->how % 4) * 2000; i++) __asm__ volatile("");
    if (e->how % 3 == 0) pthread_exit(nullptr);
    return nullptr;
}

int case_exiting() {
    pt::Sleepers sleepers(2);
    int calls = 0;
    // Static: detached exiters may still read them after their round.
    static Gate gates[150];
    static Exiter exs[150][12];
    for (int round = 0; round < 150; round++) {
        Gate &gate = gates[round];
        Exiter *ex = exs[round];
        pthread_t t[12];
        for (int i = 0; i < 12; i++) {
            ex[i] = {&gate, i + round};
            pthread_create(&t[i], nullptr, exiter, &ex[i]);
            if (i % 4 == 3) pthread_detach(t[i]);
        }
        gate.release();  // they all start exiting now, while we call
        if (tt::set_effective(CAP_NET_ADMIN, round % 2) != 0) g_fail.add("capset: %s", strerror(errno));
        calls++;
        for (int i = 0; i < 12; i++)
            if (i % 4 != 3) pthread_join(t[i], nullptr);
    }
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::printf("%d calls made while threads exited\n", calls);
    std::string diff = tt::differences();
    check_all("sleeping pthread", sleepers.tids());
    return g_fail.finish(g_expect, diff, "threads exiting while the call runs");
}

// ---- exit_paths ----------------------------------------------------------------------------

enum class Ending { kReturn, kExit, kCancelDeferred, kCancelAsync };

std::atomic<bool> g_ending_ready{false};

void *ender(void *p) {
    switch (static_cast<Ending>(reinterpret_cast<long>(p))) {
    case Ending::kReturn: return nullptr;
    case Ending::kExit: pthread_exit(nullptr);
    case Ending::kCancelDeferred:
        g_ending_ready = true;
        for (;;) pause();  // a cancellation point
    case Ending::kCancelAsync:
        pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, nullptr);
        g_ending_ready = true;
        for (;;) __asm__ volatile("");
    }
    return nullptr;
}

// One thread at a time, each ending the given way; false if one misbehaved.
bool run_enders(Ending how, int n) {
    for (int i = 0; i < n; i++) {
        g_ending_ready = false;
        pthread_t t;
        if (pthread_create(&t, nullptr, ender, reinterpret_cast<void *>(static_cast<long>(how))) != 0) {
            g_fail.add("pthread_create: %s", strerror(errno));
            return false;
        }
        bool cancel = how == Ending::kCancelDeferred || how == Ending::kCancelAsync;
        if (cancel) {
            while (!g_ending_ready) sched_yield();
            pthread_cancel(t);
        }
        void *ret = nullptr;
        pthread_join(t, &ret);
        if (cancel && ret != PTHREAD_CANCELED) {
            g_fail.add("a cancelled thread did not end cancelled");
            return false;
        }
    }
    return true;
}

int case_exit_paths() {
    constexpr int kThreads = 1500;  // per way; kept slots would map 16 KiB every 256
    pt::Sleepers sleepers(2);
#ifdef __SANITIZE_ADDRESS__
    // AddressSanitizer keeps about 170 bytes of bookkeeping per thread that
    // ever ran, with or without the shim (measured: VmSize +240-270 kB over
    // 1,500 threads either way), so memory cannot tell here whether slots
    // are given back.  The plain build checks it.
    const bool check_memory = false;
    std::printf("note: VmSize is not checked under AddressSanitizer (its own per-thread bookkeeping grows)\n");
#else
    const bool check_memory = true;
#endif
    const struct {
        Ending how;
        const char *name;
    } endings[] = {{Ending::kReturn, "return"},
                   {Ending::kExit, "pthread_exit"},
                   {Ending::kCancelDeferred, "deferred cancellation"},
                   {Ending::kCancelAsync, "asynchronous cancellation"}};
    for (const auto &e : endings) {
        // Warm up first: glibc's stack cache and the shim's first chunk.
        if (!run_enders(e.how, 300)) break;
        long before = pt::self_status_number("VmSize:");
        if (!run_enders(e.how, kThreads)) break;
        long after = pt::self_status_number("VmSize:");
        std::printf("%d threads ending by %s: VmSize %ld -> %ld kB\n", kThreads, e.name, before, after);
        if (check_memory && (before < 0 || after - before >= 16))
            g_fail.add("VmSize grew by %ld kB over %d threads ending by %s: slots not given back", after - before,
                       kThreads, e.name);
    }
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("sleeping pthread", sleepers.tids());
    return g_fail.finish(g_expect, diff, "threads that ended every way a thread can");
}

// ---- main_exit ------------------------------------------------------------------------------

int g_main_pid;

void *survivor(void *) {
    // Wait until the main thread is a zombie.
    for (;;) {
        pt::ThreadCreds c;
        try {
            c = pt::read_thread(g_main_pid);
        } catch (...) {
            break;
        }
        if (!c.state.empty() && c.state[0] == 'Z') break;
        usleep(1000);
    }
    std::printf("main thread %d has exited (zombie); calling from thread %d\n", g_main_pid, gettid());
    auto *sleepers = new pt::Sleepers(4);
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0) g_fail.add("PR_CAPBSET_DROP: %s", strerror(errno));
    for (int i = 0; i < 20; i++)
        if (tt::set_effective(CAP_NET_ADMIN, i % 2) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string diff = tt::differences();
    check_all("sleeping pthread", sleepers->tids());
    std::exit(g_fail.finish(g_expect, diff, "after the main thread called pthread_exit"));
}

int case_main_exit() {
    g_main_pid = getpid();
    pthread_t t;
    pthread_create(&t, nullptr, survivor, nullptr);
    pthread_exit(nullptr);
}

}  // namespace

int main(int argc, char **argv) {
    g_expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    std::string c = tt::arg_case(argc, argv);
    // Heap-allocated: main_exit's pthread_exit unwinds main's frame.
    auto *wd = new pt::Watchdog(30, "discovery " + c);
    int rc;
    if (c == "pthread_before") rc = case_pthread_before();
    else if (c == "pthread_during") rc = case_pthread_during();
    else if (c == "std_thread") rc = case_std_thread();
    else if (c == "c11") rc = case_c11();
    else if (c == "timer") rc = case_timer();
    else if (c == "aio") rc = case_aio();
    else if (c == "dlopen") rc = case_dlopen(tt::arg_value(argc, argv, "--module="));
    else if (c == "exiting") rc = case_exiting();
    else if (c == "main_exit") rc = case_main_exit();
    else if (c == "exit_paths") rc = case_exit_paths();
    else return std::printf("unknown --case=%s\n", c.c_str()), 1;
    delete wd;
    return rc;
}
