// psxbench: one process of the all-thread call benchmark (driven by bench.py).
//
// A process creates N extra threads in one state, then either times one
// all-thread method, verifies that the method changes every thread, measures
// pthread_create+join, or checks memory/fd/allocation use across many calls.
//
//   psxbench time   METHOD STATE N BUDGET_MS MIN_ITERS MAX_ITERS
//   psxbench verify METHOD STATE N
//   psxbench create ITERS PIN(0|1)
//   psxbench mem    METHOD N ITERS            (psxbench-alloc build only)
//   psxbench syscost ITERS                    (one raw call on one thread, no broadcast)
//
// Methods (each names how one call reaches every thread):
//   glibc           glibc's own setresuid(0,0,0) broadcast (no shim loaded)
//   glibc-commit    glibc's setresuid broadcast toggling the saved uid 0/4242,
//                   so that every thread commits new credentials -- the same
//                   kernel work per thread as capset and PR_SET_KEEPCAPS
//   hand            minimal hand-written broadcast: tgkill each thread once,
//                   the handler makes the syscall and decrements a counter,
//                   the last one wakes the caller's futex (lower bound)
//   shim-setresuid  setresuid(0,0,0) through psxshim (LD_PRELOAD)
//   shim-capset     capset() re-applying the current sets, through psxshim
//   shim-keepcaps   prctl(PR_SET_KEEPCAPS) toggling 1/0, through psxshim
//   libpsx          psx_syscall3(SYS_setresuid, 0, 0, 0) of libpsx, linked
//                   with its pkg-config flags (psxbench-libpsx build only)
//   libpsx-capset   psx_syscall3(SYS_capset, ...) re-applying the current sets
//   libpsx-keepcaps psx_syscall6(SYS_prctl, PR_SET_KEEPCAPS, 1/0, 0, 0, 0)
//                   (both psxbench-libpsx build only: the same calls as the
//                   shim's, for a like-for-like comparison)
//   raw             the syscall on the calling thread only (negative control
//                   for the verification pass; never timed)
//
// States of the extra threads:
//   idle  blocked in pthread_cond_wait
//   io    blocked in read() on a pipe (all threads share one pipe)
//   busy  spinning on an atomic load
//
// Output is line-oriented, "key value..." (see bench.py).

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#ifdef PSXBENCH_LIBPSX
#include <sys/psx_syscall.h>
#endif

extern "C" int capset(cap_user_header_t header, const cap_user_data_t data);
extern "C" int capget(cap_user_header_t header, cap_user_data_t data);

// ---- allocation counting (psxbench-alloc only) ------------------------------
//
// The executable comes first in symbol lookup, ahead of the preloaded shim and
// of libc, so these definitions see every malloc-family call in the process.
#ifdef PSXBENCH_COUNT_ALLOC
extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);
}
static std::atomic<long> g_allocs{0};
extern "C" {
void *malloc(size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
void *memalign(size_t a, size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(a, n);
}
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) { __libc_free(p); }
}
#endif

namespace {

[[noreturn]] void fail(const char *what) {
    fprintf(stderr, "psxbench: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    _exit(2);
}

long long now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

long futex(void *word, int op, int val, const struct timespec *ts = nullptr) {
    return syscall(SYS_futex, word, op, val, ts, nullptr, 0);
}

bool shim_loaded() { return dlsym(RTLD_DEFAULT, "psxshim_version") != nullptr; }

// ---- the extra threads ------------------------------------------------------

enum class State { kIdle, kIo, kBusy };

State g_state;
std::vector<int> g_tids;
std::atomic<int> g_started{0};
std::atomic<int> g_go{0};     // futex: busy threads start spinning at 1
std::atomic<int> g_stop{0};
pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
int g_pipe[2] = {-1, -1};

void *worker(void *p) {
    long index = reinterpret_cast<long>(p);
    g_tids[index] = static_cast<int>(syscall(SYS_gettid));
    g_started.fetch_add(1, std::memory_order_release);
    switch (g_state) {
    case State::kIdle:
        pthread_mutex_lock(&g_mutex);
        while (!g_stop.load(std::memory_order_relaxed)) pthread_cond_wait(&g_cond, &g_mutex);
        pthread_mutex_unlock(&g_mutex);
        break;
    case State::kIo: {
        char c;
        while (read(g_pipe[0], &c, 1) < 0 && errno == EINTR) {
        }
        break;
    }
    case State::kBusy:
        while (g_go.load(std::memory_order_acquire) == 0) futex(&g_go, FUTEX_WAIT_PRIVATE, 0);
        while (!g_stop.load(std::memory_order_relaxed)) __builtin_ia32_pause();
        break;
    }
    return nullptr;
}

char task_state(int tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return '?';
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return '?';
    buf[n] = 0;
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

void start_threads(State state, int n) {
    g_state = state;
    g_tids.assign(static_cast<size_t>(n), 0);
    if (state == State::kIo && pipe2(g_pipe, O_CLOEXEC) < 0) fail("pipe2");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = pthread_create(&t, &attr, worker, reinterpret_cast<void *>(i));
        if (rc != 0) {
            errno = rc;
            fail("pthread_create");
        }
        pthread_detach(t);
    }
    pthread_attr_destroy(&attr);
    while (g_started.load(std::memory_order_acquire) < n) usleep(200);
    // Every thread must really be asleep in its blocking call before timing.
    if (state != State::kBusy) {
        long long deadline = now_ns() + 5000000000LL;
        for (;;) {
            int sleeping = 0;
            for (int tid : g_tids) sleeping += task_state(tid) == 'S';
            if (sleeping == n) break;
            if (now_ns() > deadline) {
                fprintf(stderr, "psxbench: only %d of %d threads asleep\n", sleeping, n);
                break;
            }
            usleep(1000);
        }
    } else {
        g_go.store(1, std::memory_order_release);
        futex(&g_go, FUTEX_WAKE_PRIVATE, 0x7fffffff);
        usleep(20000);
    }
}

// ---- the hand-written lower bound -------------------------------------------

constexpr int kHandSignal = 34;  // SIGRTMIN as the kernel numbers it; glibc keeps 32/33
std::atomic<int> g_hand_pending{0};
long g_hand_args[3];

void hand_handler(int) {
    int saved = errno;
    syscall(SYS_setresuid, g_hand_args[0], g_hand_args[1], g_hand_args[2]);
    if (g_hand_pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        futex(&g_hand_pending, FUTEX_WAKE_PRIVATE, 1);
    }
    errno = saved;
}

void hand_install() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hand_handler;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(kHandSignal, &sa, nullptr) < 0) fail("sigaction");
}

int hand_setresuid(long r, long e, long s) {
    long rc = syscall(SYS_setresuid, r, e, s);
    if (rc < 0) return -1;
    g_hand_args[0] = r;
    g_hand_args[1] = e;
    g_hand_args[2] = s;
    int n = static_cast<int>(g_tids.size());
    if (n == 0) return 0;
    g_hand_pending.store(n, std::memory_order_release);
    pid_t pid = getpid();
    for (int tid : g_tids) syscall(SYS_tgkill, pid, tid, kHandSignal);
    for (;;) {
        int p = g_hand_pending.load(std::memory_order_acquire);
        if (p == 0) break;
        futex(&g_hand_pending, FUTEX_WAIT_PRIVATE, p);
    }
    return 0;
}

// ---- methods ------------------------------------------------------------------

enum class Method {
    kGlibc,
    kGlibcCommit,
    kHand,
    kShimSetresuid,
    kShimCapset,
    kShimKeepcaps,
    kLibpsx,
    kLibpsxCapset,
    kLibpsxKeepcaps,
    kRaw
};

struct MethodName {
    const char *name;
    Method m;
};
constexpr MethodName kMethods[] = {
    {"glibc", Method::kGlibc},
    {"glibc-commit", Method::kGlibcCommit},
    {"hand", Method::kHand},
    {"shim-setresuid", Method::kShimSetresuid},
    {"shim-capset", Method::kShimCapset},
    {"shim-keepcaps", Method::kShimKeepcaps},
    {"libpsx", Method::kLibpsx},
    {"libpsx-capset", Method::kLibpsxCapset},
    {"libpsx-keepcaps", Method::kLibpsxKeepcaps},
    {"raw", Method::kRaw},
};

Method parse_method(const char *s) {
    for (const auto &m : kMethods)
        if (!strcmp(s, m.name)) return m.m;
    fprintf(stderr, "psxbench: unknown method %s\n", s);
    _exit(2);
}

State parse_state(const char *s) {
    if (!strcmp(s, "idle")) return State::kIdle;
    if (!strcmp(s, "io")) return State::kIo;
    if (!strcmp(s, "busy")) return State::kBusy;
    fprintf(stderr, "psxbench: unknown state %s\n", s);
    _exit(2);
}

bool is_libpsx(Method m) {
    return m == Method::kLibpsx || m == Method::kLibpsxCapset || m == Method::kLibpsxKeepcaps;
}

bool is_shim(Method m) {
    return m == Method::kShimSetresuid || m == Method::kShimCapset || m == Method::kShimKeepcaps;
}

void check_environment(Method m) {
    bool shim = shim_loaded();
    if (is_shim(m) && !shim) {
        fprintf(stderr, "psxbench: method needs LD_PRELOAD=libpsxshim.so\n");
        _exit(2);
    }
    if (!is_shim(m) && shim) {
        fprintf(stderr, "psxbench: this method must run without the shim\n");
        _exit(2);
    }
#ifdef PSXBENCH_LIBPSX
    if (!is_libpsx(m)) {
        fprintf(stderr, "psxbench-libpsx runs the libpsx methods only\n");
        _exit(2);
    }
#else
    if (is_libpsx(m)) {
        fprintf(stderr, "psxbench: the libpsx methods need the psxbench-libpsx build\n");
        _exit(2);
    }
#endif
}

int do_setresuid(Method m, long r, long e, long s) {
    switch (m) {
    case Method::kGlibc:
    case Method::kGlibcCommit:
    case Method::kShimSetresuid:
    case Method::kShimKeepcaps:  // verification only
        return setresuid(static_cast<uid_t>(r), static_cast<uid_t>(e), static_cast<uid_t>(s));
    case Method::kHand:
        return hand_setresuid(r, e, s);
    case Method::kLibpsx:
    case Method::kLibpsxCapset:   // verification only
    case Method::kLibpsxKeepcaps:
#ifdef PSXBENCH_LIBPSX
        return static_cast<int>(psx_syscall3(SYS_setresuid, r, e, s));
#else
        return -1;
#endif
    case Method::kRaw:
        return static_cast<int>(syscall(SYS_setresuid, r, e, s));
    default:
        return -1;
    }
}

struct __user_cap_header_struct g_cap_hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
struct __user_cap_data_struct g_caps[2];
int g_keep = 0;
int g_suid_toggle = 0;

// capset and PR_SET_KEEPCAPS of a shim or libpsx method.
int do_capset(Method m, struct __user_cap_data_struct *d) {
#ifdef PSXBENCH_LIBPSX
    if (is_libpsx(m)) {
        return static_cast<int>(psx_syscall3(SYS_capset, reinterpret_cast<long>(&g_cap_hdr), reinterpret_cast<long>(d), 0));
    }
#endif
    (void)m;
    return capset(&g_cap_hdr, d);
}

int do_keepcaps(Method m, int v) {
#ifdef PSXBENCH_LIBPSX
    if (is_libpsx(m)) return static_cast<int>(psx_syscall6(SYS_prctl, PR_SET_KEEPCAPS, v, 0, 0, 0, 0));
#endif
    (void)m;
    return prctl(PR_SET_KEEPCAPS, v, 0, 0, 0);
}

// One timed call of method m.
inline int call_once(Method m) {
    switch (m) {
    case Method::kShimCapset:
    case Method::kLibpsxCapset:
        return do_capset(m, g_caps);
    case Method::kShimKeepcaps:
    case Method::kLibpsxKeepcaps:
        g_keep ^= 1;
        return do_keepcaps(m, g_keep);
    case Method::kGlibcCommit:
        g_suid_toggle ^= 1;
        return setresuid(0, 0, g_suid_toggle ? 4242 : 0);
    default:
        return do_setresuid(m, 0, 0, 0);
    }
}

void prepare(Method m) {
    if (m == Method::kHand) hand_install();
    if (capget(&g_cap_hdr, g_caps) < 0) fail("capget");
}

// ---- verification through /proc ---------------------------------------------

struct TaskView {
    int tid;
    std::string uid, capprm, capeff;
};

std::vector<TaskView> read_tasks() {
    std::vector<TaskView> out;
    DIR *d = opendir("/proc/self/task");
    if (!d) fail("opendir /proc/self/task");
    while (struct dirent *e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        TaskView v;
        v.tid = atoi(e->d_name);
        char line[512];
        while (fgets(line, sizeof line, f)) {
            std::string l(line);
            while (!l.empty() && (l.back() == '\n')) l.pop_back();
            auto value = [&](const char *key) {
                std::string s = l.substr(strlen(key));
                size_t i = s.find_first_not_of(" \t");
                s = i == std::string::npos ? "" : s.substr(i);
                for (char &c : s)
                    if (c == '\t') c = ' ';
                return s;
            };
            if (!l.compare(0, 4, "Uid:")) v.uid = value("Uid:");
            if (!l.compare(0, 7, "CapPrm:")) v.capprm = value("CapPrm:");
            if (!l.compare(0, 7, "CapEff:")) v.capeff = value("CapEff:");
        }
        fclose(f);
        out.push_back(v);
    }
    closedir(d);
    return out;
}

// Counts threads whose field differs from `want`; prints the first few.
int mismatches(const char *label, std::string TaskView::*field, const std::string &want, int *checked) {
    auto tasks = read_tasks();
    int bad = 0;
    for (const auto &t : tasks) {
        if (t.*field != want) {
            if (bad < 3) fprintf(stderr, "  %s: thread %d has '%s', want '%s'\n", label, t.tid, (t.*field).c_str(), want.c_str());
            bad++;
        }
    }
    *checked = static_cast<int>(tasks.size());
    return bad;
}

std::string hex_caps(unsigned lo, unsigned hi) {
    char buf[32];
    snprintf(buf, sizeof buf, "%016llx", (static_cast<unsigned long long>(hi) << 32) | lo);
    return buf;
}

int verify(Method m, int n) {
    int checked = 0, bad = 0, total_checked = 0;
    auto step = [&](const char *label, std::string TaskView::*field, const std::string &want) {
        int b = mismatches(label, field, want, &checked);
        if (checked != n + 1) {
            fprintf(stderr, "  %s: saw %d threads, expected %d\n", label, checked, n + 1);
            b++;
        }
        bad += b;
        total_checked += checked;
    };
    switch (m) {
    case Method::kShimCapset:
    case Method::kLibpsxCapset: {
        // Drop CAP_NET_RAW (13) from the effective set, check, restore.
        struct __user_cap_data_struct d[2];
        memcpy(d, g_caps, sizeof d);
        d[0].effective &= ~(1u << 13);
        if (do_capset(m, d) != 0) fail("capset drop");
        step("capset drop", &TaskView::capeff, hex_caps(d[0].effective, d[1].effective));
        if (do_capset(m, g_caps) != 0) fail("capset restore");
        step("capset restore", &TaskView::capeff, hex_caps(g_caps[0].effective, g_caps[1].effective));
        break;
    }
    case Method::kShimKeepcaps:
    case Method::kLibpsxKeepcaps: {
        // keep-caps is invisible in /proc, so test its effect: with it set on
        // every thread, giving up uid 0 keeps the permitted set everywhere.
        if (do_keepcaps(m, 1) != 0) fail("prctl keepcaps");
        if (do_setresuid(m, 4242, 4242, 4242) != 0) fail("setresuid 4242");
        step("keepcaps uid", &TaskView::uid, "4242 4242 4242 4242");
        step("keepcaps CapPrm kept", &TaskView::capprm, hex_caps(g_caps[0].permitted, g_caps[1].permitted));
        break;
    }
    default: {
        if (do_setresuid(m, 0, 0, 4242) != 0) fail("setresuid(0,0,4242)");
        step("setresuid(0,0,4242)", &TaskView::uid, "0 0 4242 0");
        if (do_setresuid(m, 0, 0, 0) != 0) fail("setresuid(0,0,0)");
        step("setresuid(0,0,0)", &TaskView::uid, "0 0 0 0");
        break;
    }
    }
    printf("verify %s %d %d\n", bad ? "FAIL" : "ok", total_checked, bad);
    return bad ? 1 : 0;
}

// ---- timing -----------------------------------------------------------------

void print_samples(const char *key, const std::vector<long long> &v) {
    printf("%s", key);
    for (long long x : v) printf(" %lld", x);
    printf("\n");
}

int run_time(Method m, int n, long budget_ms, long min_iters, long max_iters) {
    // Warm-up: first calls map the engine's tables; their median sizes the run.
    // Slow calls (busy threads: the scheduler decides) get a single warm-up.
    std::vector<long long> warm;
    for (int i = 0; i < 5; i++) {
        long long t0 = now_ns();
        if (call_once(m) != 0) fail("call");
        warm.push_back(now_ns() - t0);
        if (warm[0] * 8 > budget_ms * 1000000LL) break;
    }
    std::sort(warm.begin(), warm.end());
    long long est = std::max(warm[warm.size() / 2], 1LL);
    long iters = static_cast<long>(budget_ms * 1000000LL / est);
    iters = std::clamp(iters, min_iters, max_iters);
    std::vector<long long> samples;
    samples.reserve(static_cast<size_t>(iters));
    for (long i = 0; i < iters; i++) {
        long long t0 = now_ns();
        int rc = call_once(m);
        long long t1 = now_ns();
        if (rc != 0) fail("call");
        samples.push_back(t1 - t0);
    }
    printf("threads %d\n", n);
    print_samples("samples_ns", samples);
    return 0;
}

// ---- pthread_create + join ----------------------------------------------------

void *trivial(void *) { return nullptr; }

int run_create(long iters, bool pin) {
    if (pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity");
    }
    std::vector<long long> samples;
    samples.reserve(static_cast<size_t>(iters));
    for (long i = 0; i < iters + 200; i++) {
        pthread_t t;
        long long t0 = now_ns();
        if (pthread_create(&t, nullptr, trivial, nullptr) != 0) fail("pthread_create");
        pthread_join(t, nullptr);
        long long t1 = now_ns();
        if (i >= 200) samples.push_back(t1 - t0);  // the first ones fill glibc's stack cache
    }
    printf("shim %d\n", shim_loaded() ? 1 : 0);
    print_samples("samples_ns", samples);
    return 0;
}

// ---- memory, descriptors, allocations -----------------------------------------

#ifdef PSXBENCH_COUNT_ALLOC
int count_fds() {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (struct dirent *e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;  // the directory's own descriptor
}

long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k)) v = atol(line + k);
    fclose(f);
    return v;
}
#endif

int run_mem(Method m, int n, long iters) {
#ifndef PSXBENCH_COUNT_ALLOC
    (void)m;
    (void)n;
    (void)iters;
    fprintf(stderr, "psxbench: mem needs the psxbench-alloc build\n");
    return 2;
#else
    for (int i = 0; i < 200; i++)
        if (call_once(m) != 0) fail("call");
    int fds0 = count_fds();
    long rss0 = status_kb("VmRSS:"), vm0 = status_kb("VmSize:");
    long a0 = g_allocs.load();
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++)
        if (call_once(m) != 0) fail("call");
    long long t1 = now_ns();
    long a1 = g_allocs.load();
    int fds1 = count_fds();
    long rss1 = status_kb("VmRSS:"), vm1 = status_kb("VmSize:");
    printf("mem threads=%d iters=%ld allocs=%ld fds_before=%d fds_after=%d rss_kb_before=%ld rss_kb_after=%ld "
           "vmsize_kb_before=%ld vmsize_kb_after=%ld us_per_call=%.1f\n",
           n, iters, a1 - a0, fds0, fds1, rss0, rss1, vm0, vm1, (t1 - t0) / 1000.0 / iters);
    return 0;
#endif
}

// ---- what one system call costs the kernel, on one thread -------------------
//
// The timed methods do not all make the same system call: setresuid(0,0,0)
// changes nothing and the kernel returns early, while capset and
// PR_SET_KEEPCAPS always prepare and commit a new set of credentials, as does
// setresuid toggling the saved uid (glibc-commit).  This puts a number on
// that difference, which every thread of a broadcast pays.
// It also prices the fixed system calls of one broadcast that differ between
// psxshim and glibc: psxshim's two rt_sigprocmask (the caller's mask while it
// holds the engine lock), its fstat of /proc/self/task (the kernel's thread
// count) and a gettid on each side, against glibc's getpid on each side and
// its futex_wake calls (here with nobody waiting).
int run_syscost(long iters) {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) fail("capget");
    int task = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (task < 0) fail("open /proc/self/task");
    auto per_call = [iters](auto &&fn) {
        for (long i = 0; i < iters / 10; i++) fn(i);
        long long t0 = now_ns();
        for (long i = 0; i < iters; i++) fn(i);
        return static_cast<double>(now_ns() - t0) / static_cast<double>(iters);
    };
    double su = per_call([](long) { syscall(SYS_setresuid, 0, 0, 0); });
    double cs = per_call([&](long) { syscall(SYS_capset, &h, d); });
    double kc = per_call([](long i) { syscall(SYS_prctl, PR_SET_KEEPCAPS, i & 1, 0, 0, 0); });
    double sc = per_call([](long i) { syscall(SYS_setresuid, 0, 0, (i & 1) ? 4242 : 0); });
    syscall(SYS_setresuid, 0, 0, 0);
    unsigned long masks[2] = {0, ~0UL}, old;
    double mask = per_call([&](long i) { syscall(SYS_rt_sigprocmask, SIG_SETMASK, &masks[i & 1], &old, 8); });
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &masks[0], nullptr, 8);
    struct stat st;
    double fs = per_call([&](long) { syscall(SYS_fstat, task, &st); });
    double tid = per_call([](long) { syscall(SYS_gettid); });
    double pid = per_call([](long) { syscall(SYS_getpid); });
    int word = 0;
    double wake = per_call([&](long) { futex(&word, FUTEX_WAKE_PRIVATE, 1); });
    close(task);
    printf("syscost setresuid=%.0f capset=%.0f keepcaps=%.0f setresuid_commit=%.0f rt_sigprocmask=%.0f "
           "fstat_task=%.0f gettid=%.0f getpid=%.0f futex_wake=%.0f\n",
           su, cs, kc, sc, mask, fs, tid, pid, wake);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    if (argc < 2) {
        fprintf(stderr, "usage: see the comment at the top of psxbench.cc\n");
        return 2;
    }
    std::string mode = argv[1];
    int rc = 2;
    if (mode == "syscost" && argc == 3) {
        rc = run_syscost(atol(argv[2]));
    } else if (mode == "create" && argc == 4) {
        rc = run_create(atol(argv[2]), atoi(argv[3]) != 0);
    } else if ((mode == "time" && argc == 8) || (mode == "verify" && argc == 5) || (mode == "mem" && argc == 5)) {
        Method m = parse_method(argv[2]);
        check_environment(m);
        prepare(m);
        if (mode == "mem") {
            int n = atoi(argv[3]);
            start_threads(State::kIdle, n);
            rc = run_mem(m, n, atol(argv[4]));
        } else {
            State s = parse_state(argv[3]);
            int n = atoi(argv[4]);
            start_threads(s, n);
            rc = mode == "time" ? run_time(m, n, atol(argv[5]), atol(argv[6]), atol(argv[7])) : verify(m, n);
        }
    } else {
        fprintf(stderr, "psxbench: bad arguments\n");
    }
    fflush(stdout);
    fflush(stderr);
    _exit(rc);  // threads are still blocked or spinning: end them all at once
}
