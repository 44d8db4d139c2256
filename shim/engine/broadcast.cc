// The all-thread system call engine.
//
// Protocol (one broadcast; the engine lock serialises broadcasts):
//   1. The caller blocks every signal except ours and the synchronous fault
//      signals, so no application handler can run on it while it holds the
//      lock (a handler calling setuid() would otherwise deadlock on it).
//   2. The caller runs the system call on itself first.  If that fails, no
//      other thread is touched and the caller gets the kernel's answer.
//   3. Targets are every registered thread plus, when the process has more
//      threads than we account for, every thread listed in /proc/self/task.
//      Each target is sent kSignal with rt_tgsigqueueinfo carrying this
//      broadcast's cookie and the target's index.
//   4. A target's handler runs the call, stores its result, answers, and then
//      parks until the broadcast is over.  Parking is what makes discovery
//      exact: a parked thread cannot create a thread, so any thread that
//      appears during the broadcast was created by a thread that had not yet
//      run the call, carries the old credentials, and needs the call -- it is
//      found by the next round, and no thread ever runs the call twice.
//   5. Rounds repeat until every thread the kernel counts is accounted for
//      (or, without /proc, until the registry holds nobody new).
//   6. Failure policy: if any target's result differs from the caller's,
//      the process must not continue as if the call succeeded -- one line
//      names the call, the thread and both results on stderr, then SIGKILL
//      (it cannot be caught, blocked or turned into a half-done state).  A
//      thread that does not answer is named after one second and, after
//      PSXSHIM_TIMEOUT_MS, treated the same way.  Only psx_syscall() callers
//      that lowered libpsx's sensitivity get warnings or silence instead.
//   7. The caller releases the parked threads, drops the lock, restores its
//      signal mask and returns its own result.

#include "engine/broadcast.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/random.h>

#include <atomic>

#include "engine/chunked.h"
#include "engine/log.h"
#include "engine/procfs.h"
#include "engine/registry.h"
#include "sys/raw.h"
#include "sys/signal.h"

namespace psxshim::engine {

// SIGKILL: it cannot be caught, blocked or ignored, so no handler of the
// program can carry on with threads that disagree about credentials.
[[noreturn]] void die() {
    sys::call(SYS_kill, sys::getpid(), SIGKILL);
    for (;;) sys::call(SYS_exit_group, 127);
}

void die_with(const char *why) {
    log::Line() << why;
    die();
}

namespace {

// glibc's SIGSETXID.  glibc's own sigprocmask/pthread_sigmask strip it, its
// sigaction refuses it, and its internal helper threads (timer_create,
// mq_notify, AIO) block everything except it and SIGCANCEL -- so it is the
// one signal that reaches every thread and that applications cannot take.
// glibc uses it with SI_TKILL; we use SI_QUEUE plus a cookie and pass glibc's
// deliveries on to its handler.
constexpr int kSignal = 33;

enum TargetState : int { kPending = 0, kClaimed = 1, kDone = 2, kGone = 3, kZombie = 4 };

struct alignas(64) Target {
    std::atomic<int> tid;
    std::atomic<int> state;
    std::atomic<long> result;
    int slot;       // registry slot, or -1
    bool sent;      // the signal was queued (EAGAIN leaves it to the wait loop)
};

// What the handlers read.  Written only by the broadcaster holding the lock,
// before the signals that make handlers read it.
struct Request {
    const Call *call;
    std::atomic<unsigned> seq;       // broadcast number
    std::atomic<unsigned> cookie;    // high half of si_value; 0 = none running
    std::atomic<long> count;         // targets [0, count) are valid
    std::atomic<int> pending;        // targets of this round yet to answer (futex)
    std::atomic<unsigned> released;  // last seq whose parked threads may go (futex)
};

constinit Request g_req{};
constinit ChunkedArray<Target, 8, 16384> g_targets;

// 0 = not initialised, 1 = in progress, 2 = done.
constinit std::atomic<int> g_init{0};
constinit int g_pid = 0;
constinit unsigned g_secret = 0;
constinit long g_timeout_ms = 10000;
constinit std::atomic<bool> g_main_exited{false};
constinit std::atomic<int> g_last_threads{0};
constinit std::atomic<int> g_psx_policy{static_cast<int>(Policy::kKill)};

// The engine lock: 0 free, 1 held, 2 held with waiters.  The only lock in
// psxshim.  Never taken by the signal handler.
constinit std::atomic<unsigned> g_lock{0};

// glibc's (or anyone's) previous action for kSignal, to chain to.
constinit sys::KernelSigaction g_chain{};

// ---- targets and the per-broadcast tid set -------------------------------

// Open-addressed set of tids already targeted in this broadcast.  An entry is
// (seq << 32 | tid); entries of older broadcasts read as empty, so the set is
// never cleared.  Broadcaster-only.
constinit unsigned long long *g_seen = nullptr;
constinit unsigned long g_seen_cap = 0;  // power of two
constinit long g_seen_used = 0;

// Scratch for /proc listings.  Broadcaster-only.
constinit int *g_list = nullptr;
constinit long g_list_cap = 0;

// Copy of user memory a call reads (setgroups' list), so every thread applies
// the same bytes even if the program changes them meanwhile.
alignas(64) constinit unsigned char g_copy[65536 * sizeof(unsigned)] = {};

void *map_pages(unsigned long bytes) {
    long p = sys::call(SYS_mmap, 0, static_cast<long>(bytes), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return (p < 0 && p > -4096) ? nullptr : reinterpret_cast<void *>(p);
}

bool seen_grow() {
    unsigned long cap = g_seen_cap ? g_seen_cap * 2 : 1024;
    auto *fresh = static_cast<unsigned long long *>(map_pages(cap * sizeof(unsigned long long)));
    if (!fresh) return false;
    unsigned long long tag = static_cast<unsigned long long>(g_req.seq.load(std::memory_order_relaxed)) << 32;
    for (unsigned long i = 0; i < g_seen_cap; i++) {
        unsigned long long e = g_seen[i];
        if ((e & ~0xffffffffULL) != tag) continue;
        unsigned long h = (static_cast<unsigned>(e) * 2654435761u) & (cap - 1);
        while (fresh[h]) h = (h + 1) & (cap - 1);
        fresh[h] = e;
    }
    if (g_seen) sys::call(SYS_munmap, reinterpret_cast<long>(g_seen), static_cast<long>(g_seen_cap * sizeof *g_seen));
    g_seen = fresh;
    g_seen_cap = cap;
    return true;
}

// Insert tid; false if it was already there (or out of memory).
bool seen_insert(int tid) {
    if ((g_seen_used + 1) * 2 > static_cast<long>(g_seen_cap) && !seen_grow()) return false;
    unsigned long long entry = (static_cast<unsigned long long>(g_req.seq.load(std::memory_order_relaxed)) << 32) |
                               static_cast<unsigned>(tid);
    unsigned long long tag = entry & ~0xffffffffULL;
    unsigned long h = (static_cast<unsigned>(tid) * 2654435761u) & (g_seen_cap - 1);
    for (;;) {
        unsigned long long e = g_seen[h];
        if ((e & ~0xffffffffULL) != tag) {
            g_seen[h] = entry;
            g_seen_used++;
            return true;
        }
        if (e == entry) return false;
        h = (h + 1) & (g_seen_cap - 1);
    }
}

// ---- the signal handler ----------------------------------------------------

// A child whose clone() finished before its parent was signalled is invisible
// to the registry until somebody learns its tid.  The parent's handler does,
// before answering, so the next round targets the child.  If the clone had
// not happened yet, the child will be born after the parent's call and needs
// nothing.
void publish_child(int parent_slot) {
    registry::Slot *parent = registry::at(parent_slot);
    if (!parent) return;
    pthread_t *out = parent->creating.load(std::memory_order_acquire);
    if (!out) return;
    pthread_t child = *static_cast<volatile pthread_t *>(out);
    int tid = registry::tid_of(child);
    if (tid > 0) {
        registry::publish(parent->creating_child.load(std::memory_order_relaxed),
                          parent->creating_gen.load(std::memory_order_relaxed), tid);
    }
}

void chain(int sig, siginfo_t *info, void *uc) {
    unsigned long h = g_chain.handler;
    if (h == reinterpret_cast<unsigned long>(SIG_IGN)) return;
    if (h == reinterpret_cast<unsigned long>(SIG_DFL)) {
        // The default action of a real-time signal is to terminate; keep it.
        sys::KernelSigaction dfl{};
        dfl.handler = reinterpret_cast<unsigned long>(SIG_DFL);
        sys::sigaction(sig, &dfl, nullptr);
        sys::call(SYS_tgkill, sys::getpid(), sys::gettid(), sig);
        return;
    }
    if (g_chain.flags & SA_SIGINFO) {
        reinterpret_cast<void (*)(int, siginfo_t *, void *)>(h)(sig, info, uc);
    } else {
        reinterpret_cast<void (*)(int)>(h)(sig);
    }
}

// The signal handler contract:
//  - Runs on any thread, including raw-clone threads that share their
//    parent's TLS: it uses no TLS, no locks, no allocation, no libc state --
//    only atomics in g_req/g_targets/the registry and raw system calls.
//  - Ours only if si_code == SI_QUEUE, si_pid == our pid and the cookie in
//    si_value's high half is the running broadcast's; the low half indexes
//    g_targets, and the target must name this very thread.  A stale request
//    (cookie of a finished broadcast) is dropped.  Anything else -- glibc's
//    SI_TKILL setxid requests above all -- goes to the previous handler.
//  - Touches errno only around the chained handler, which may change it.
//    Our own path must not even save and restore it: errno is TLS, and a raw
//    clone thread made without CLONE_SETTLS shares its creator's, so a
//    restore after parking would overwrite the errno that the creator has
//    set since (the differential fuzz test caught exactly that).
//  - Runs with every signal blocked except the fault signals (sa_mask).
//  - Installed with SA_RESTART, so restartable system calls it interrupts
//    are restarted by the kernel.
void on_signal(int sig, siginfo_t *info, void *uc) {
    unsigned long v = reinterpret_cast<unsigned long>(info->si_value.sival_ptr);
    if (info->si_code != SI_QUEUE || info->si_pid != g_pid) {
        int saved_errno = errno;
        chain(sig, info, uc);
        errno = saved_errno;
        return;
    }
    unsigned cookie = static_cast<unsigned>(v >> 32);
    long index = static_cast<long>(v & 0xffffffffu);
    if (cookie == 0 || cookie != g_req.cookie.load(std::memory_order_acquire) ||
        index >= g_req.count.load(std::memory_order_acquire)) {
        return;
    }
    Target *t = g_targets.get(index);
    int me = sys::gettid();
    int expected = kPending;
    if (!t || t->tid.load(std::memory_order_relaxed) != me ||
        !t->state.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) {
        return;
    }
    unsigned seq = g_req.seq.load(std::memory_order_relaxed);
    const Call *c = g_req.call;
    long r = sys::call(c->nr, c->args[0], c->args[1], c->args[2], c->args[3], c->args[4], c->args[5]);
    if (t->slot >= 0) publish_child(t->slot);
    t->result.store(r, std::memory_order_relaxed);
    t->state.store(kDone, std::memory_order_release);
    if (g_req.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) sys::futex_wake(&g_req.pending, 1);

    // Park: see step 4 of the protocol.
    for (;;) {
        unsigned rel = g_req.released.load(std::memory_order_acquire);
        if (static_cast<int>(rel - seq) >= 0) break;
        sys::futex_wait(&g_req.released, rel);
    }
}

// Make sure kSignal is ours.  glibc installs its own SIGSETXID handler the
// first time any thread is created (its own helper threads included), which
// replaces ours; we then adopt its handler as the one to chain to.
void ensure_handler() {
    sys::KernelSigaction cur{};
    if (sys::sigaction(kSignal, nullptr, &cur) < 0) return;
    if (cur.handler == reinterpret_cast<unsigned long>(&on_signal)) return;
    g_chain = cur;
    sys::KernelSigaction act{};
    act.handler = reinterpret_cast<unsigned long>(&on_signal);
    act.flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    act.mask = sys::kAllButFaults;
    sys::sigaction(kSignal, &act, nullptr);
}

// ---- the lock and the caller's mask ----------------------------------------

void lock() {
    unsigned c = 0;
    if (g_lock.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    if (c != 2) c = g_lock.exchange(2, std::memory_order_acquire);
    while (c != 0) {
        // kSignal stays unblocked while we wait: the holder may be signalling
        // us, and it cannot finish until we answer.
        sys::futex_wait(&g_lock, 2);
        c = g_lock.exchange(2, std::memory_order_acquire);
    }
}

void unlock() {
    if (g_lock.exchange(0, std::memory_order_release) == 2) sys::futex_wake(&g_lock, 1);
}

// ---- one broadcast ----------------------------------------------------------


long add_target(int tid, int slot) {
    if (!seen_insert(tid)) return -1;
    long i = g_req.count.load(std::memory_order_relaxed);
    Target *t = g_targets.ensure(i);
    if (!t) {
        log::Line() << g_req.call->name << ": out of memory for " << i << " threads; ending the process";
        die();
    }
    t->tid.store(tid, std::memory_order_relaxed);
    t->state.store(kPending, std::memory_order_relaxed);
    t->result.store(0, std::memory_order_relaxed);
    t->slot = slot;
    t->sent = false;
    g_req.count.store(i + 1, std::memory_order_release);
    return i;
}

// Registered threads not yet targeted.
void gather_registry(int self) {
    int hw = registry::high_water();
    for (int i = 0; i < hw; i++) {
        registry::Slot *s = registry::at(i);
        if (!s) continue;
        int tid = s->tid();
        if (tid > 0 && tid != self) add_target(tid, i);
    }
}

// Threads listed by /proc not yet targeted; they are also registered, so
// they stay known if /proc later becomes unreachable.
void gather_procfs(int self) {
    for (;;) {
        long n = procfs::list(g_list, g_list_cap);
        if (n < 0) return;
        if (n < g_list_cap) {
            for (long i = 0; i < n; i++) {
                int tid = g_list[i];
                if (tid == self || (tid == g_pid && g_main_exited.load(std::memory_order_relaxed))) continue;
                if (add_target(tid, -1) >= 0) registry::add_live(tid, registry::kForeign);
            }
            return;
        }
        long cap = g_list_cap ? g_list_cap * 2 : 1024;
        int *fresh = static_cast<int *>(map_pages(static_cast<unsigned long>(cap) * sizeof(int)));
        if (!fresh) return;
        if (g_list) sys::call(SYS_munmap, reinterpret_cast<long>(g_list), g_list_cap * static_cast<long>(sizeof(int)));
        g_list = fresh;
        g_list_cap = cap;
    }
}

void send(long i) {
    Target *t = g_targets.get(i);
    siginfo_t si{};
    si.si_signo = kSignal;
    si.si_code = SI_QUEUE;
    si.si_pid = g_pid;
    unsigned long v = (static_cast<unsigned long>(g_req.cookie.load(std::memory_order_relaxed)) << 32) |
                      static_cast<unsigned long>(i);
    si.si_value.sival_ptr = reinterpret_cast<void *>(v);
    long r = sys::call(SYS_rt_tgsigqueueinfo, g_pid, t->tid.load(std::memory_order_relaxed), kSignal,
                       reinterpret_cast<long>(&si));
    if (r == -EAGAIN) return;  // queue full (RLIMIT_SIGPENDING): retried while waiting
    t->sent = true;
    if (r < 0) {
        // ESRCH: the thread is gone (exited since it was listed).
        int expected = kPending;
        if (t->state.compare_exchange_strong(expected, kGone, std::memory_order_acq_rel)) {
            g_req.pending.fetch_sub(1, std::memory_order_acq_rel);
            if (t->slot >= 0) registry::release(t->slot, t->tid.load(std::memory_order_relaxed));
        }
    }
}

void describe_straggler(const Target *t, long long waited_ms) {
    int tid = t->tid.load(std::memory_order_relaxed);
    char state[64] = "unknown (no /proc)";
    char blocked[32] = "";
    procfs::status_field(tid, "State:", state, sizeof state);
    bool have_mask = procfs::status_field(tid, "SigBlk:", blocked, sizeof blocked);
    bool ours_blocked = false;
    if (have_mask) {
        // Hex mask, most significant digit first; bit (kSignal - 1).
        unsigned long mask = 0;
        for (const char *p = blocked; *p; p++) {
            int d = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
            if (d >= 0) mask = (mask << 4) | static_cast<unsigned long>(d);
        }
        ours_blocked = mask & (1UL << (kSignal - 1));
    }
    log::Line l;
    l << g_req.call->name << ": thread " << tid << " has not answered after " << static_cast<long>(waited_ms)
      << " ms (State: " << state;
    if (have_mask) l << "; SigBlk: " << blocked << (ours_blocked ? ", signal 33 blocked" : ", signal 33 not blocked");
    l << ")";
    l.emit();
}

// A target that has not answered: gone, a zombie, or still to be waited for.
void check_straggler(Target *t, long long waited_ms) {
    int tid = t->tid.load(std::memory_order_relaxed);
    int mark = -1;
    if (sys::call(SYS_tgkill, g_pid, tid, 0) == -ESRCH) {
        mark = kGone;
    } else if (tid == g_pid) {
        // A main thread that called pthread_exit() is a zombie until the
        // process ends: listed, signalable, never answering.
        char state[8];
        if (procfs::status_field(tid, "State:", state, sizeof state) ? state[0] == 'Z'
                                                                      : (g_main_exited.load() && waited_ms >= 10)) {
            mark = kZombie;
        }
    }
    int expected = kPending;
    if (mark >= 0 && t->state.compare_exchange_strong(expected, mark, std::memory_order_acq_rel)) {
        g_req.pending.fetch_sub(1, std::memory_order_acq_rel);
        if (mark == kGone && t->slot >= 0) registry::release(t->slot, tid);
    }
}

void wait_round(long begin, long end, long long start_ns) {
    long long backoff_ns = 1000000;  // exiting threads never answer; look for them early
    bool diagnosed = false;
    long diag_ms = g_timeout_ms > 0 && g_timeout_ms < 1000 ? g_timeout_ms : 1000;
    for (;;) {
        int p = g_req.pending.load(std::memory_order_acquire);
        if (p <= 0) return;
        sys::futex_wait(&g_req.pending, static_cast<unsigned>(p), static_cast<long>(backoff_ns));
        if (g_req.pending.load(std::memory_order_acquire) <= 0) return;
        long long waited_ms = (sys::now_ns() - start_ns) / 1000000;
        for (long i = begin; i < end; i++) {
            Target *t = g_targets.get(i);
            if (t->state.load(std::memory_order_acquire) != kPending) continue;
            if (!t->sent) send(i);
            if (t->state.load(std::memory_order_acquire) == kPending) check_straggler(t, waited_ms);
        }
        if (backoff_ns < 100000000) backoff_ns *= 2;
        if (!diagnosed && waited_ms >= diag_ms && g_req.pending.load() > 0) {
            diagnosed = true;
            ensure_handler();  // in case it was replaced under us
            for (long i = begin; i < end; i++) {
                Target *t = g_targets.get(i);
                if (t->state.load(std::memory_order_acquire) == kPending) {
                    describe_straggler(t, waited_ms);
                    send(i);  // a duplicate is harmless: the handler claims each target once
                }
            }
        }
        if (g_timeout_ms > 0 && waited_ms >= g_timeout_ms) {
            for (long i = begin; i < end; i++) {
                Target *t = g_targets.get(i);
                if (t->state.load(std::memory_order_acquire) == kPending) {
                    log::Line() << g_req.call->name << ": thread " << t->tid.load() << " did not answer within "
                                << g_timeout_ms << " ms (PSXSHIM_TIMEOUT_MS); it may still hold the old "
                                << "credentials, so the process is being killed";
                }
            }
            die();
        }
    }
}

// Rounds until nobody new turns up.  Registered threads come first (cheap);
// /proc is listed only when the kernel's thread count says somebody is
// missing.  Every thread that answered is parked, so once the count matches
// the threads we reached, nobody can appear before we release them.
long run_rounds(int self, long long start_ns) {
    bool have_proc = procfs::usable(g_pid);
    long begin = 0;
    long alive = 0;    // targets that answered (parked, so alive until release)
    long zombies = 0;  // listed by the kernel but unable to answer
    for (;;) {
        gather_registry(self);
        if (g_req.count.load(std::memory_order_relaxed) == begin) {
            if (!have_proc) break;
            long kernel = procfs::thread_count();
            if (kernel == 1 + alive + zombies) break;
            gather_procfs(self);
        }
        long end = g_req.count.load(std::memory_order_relaxed);
        if (end == begin) break;  // the count included a thread that has exited since
        g_req.pending.store(static_cast<int>(end - begin), std::memory_order_release);
        for (long i = begin; i < end; i++) send(i);
        wait_round(begin, end, start_ns);
        for (long i = begin; i < end; i++) {
            int s = g_targets.get(i)->state.load(std::memory_order_acquire);
            alive += s == kDone;
            zombies += s == kZombie;
        }
        begin = end;
    }
    return alive;
}

void report_divergence(const Call &call, long mine) {
    long n = g_req.count.load(std::memory_order_relaxed);
    for (long i = 0; i < n; i++) {
        Target *t = g_targets.get(i);
        if (t->state.load(std::memory_order_acquire) != kDone) continue;
        long r = t->result.load(std::memory_order_relaxed);
        if (r == mine) continue;
        Policy policy = call.policy;
        if (policy == Policy::kIgnore) continue;
        log::Line l;
        l << call.name << ": thread " << t->tid.load() << " got ";
        if (r < 0) l.errname(r); else l << r;
        l << " where the calling thread " << sys::gettid() << " got ";
        if (mine < 0) l.errname(mine); else l << mine;
        if (policy == Policy::kKill) {
            l << "; threads now disagree about credentials, so the process is being killed";
            l.emit();
            die();
        }
        l << " (psx sensitivity: warning)";
        l.emit();
    }
}

void after_fork_in_child() {
    g_pid = sys::getpid();
    g_lock.store(0, std::memory_order_relaxed);
    g_req.cookie.store(0, std::memory_order_relaxed);
    g_req.released.store(g_req.seq.load(std::memory_order_relaxed), std::memory_order_relaxed);
    g_main_exited.store(false, std::memory_order_relaxed);
    registry::reset_in_child(g_pid);
    procfs::reset_in_child(g_pid);
}

// We run in a process whose pid is not the one we were initialised in, and
// pthread_atfork's child handler did not run: either a vfork child (sharing
// the parent's memory -- touching our state would corrupt the parent's) or
// the child of _Fork() or a raw clone() fork (a private copy).  A vfork
// child cannot have threads of its own, so a second thread proves a private
// copy, which is then reset as a fork child.  Returns true if it adopted.
bool adopt_forked_child() {
    long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/task"),
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    long r = sys::call(SYS_fstat, fd, reinterpret_cast<long>(&st));
    sys::call(SYS_close, fd);
    if (r < 0 || st.st_nlink <= 3) return false;  // one thread: this one is all there is
    after_fork_in_child();
    return true;
}

long env_long(const char *name, long fallback) {
    const char *v = secure_getenv(name);
    if (!v || !*v) return fallback;
    long n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9') return fallback;
        n = n * 10 + (*v - '0');
        if (n > 86400000L) return fallback;
    }
    return n;
}

void init_once() {
    g_pid = sys::getpid();
    log::init_from_environment();
    g_timeout_ms = env_long("PSXSHIM_TIMEOUT_MS", g_timeout_ms);
    if (getrandom(&g_secret, sizeof g_secret, GRND_NONBLOCK) != sizeof g_secret) {
        g_secret = static_cast<unsigned>(sys::now_ns()) ^ static_cast<unsigned>(g_pid) * 2654435761u;
    }
    int self = sys::gettid();
    registry::add_live(self, 0);
    bool have_proc = procfs::open_task_dir(g_pid);
    int others = 0;
    if (have_proc) {
        // Threads started before we were loaded or initialised (a library
        // constructor's, glibc's) are found here once and remembered.
        int tids[256];
        long n = procfs::list(tids, 256);
        for (long i = 0; i < n; i++) {
            if (tids[i] != self) {
                registry::add_live(tids[i], registry::kForeign);
                others++;
            }
        }
    }
    pthread_atfork(nullptr, nullptr, after_fork_in_child);
    ensure_handler();
    if (log::debug()) {
        log::Line() << "loaded in pid " << g_pid << " (/proc/self/task " << (have_proc ? "reachable" : "unreachable")
                    << ", " << others << " other threads already running, timeout " << g_timeout_ms << " ms)";
    }
}

}  // namespace

void ensure_init() {
    if (g_init.load(std::memory_order_acquire) == 2) return;
    int expected = 0;
    if (g_init.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        init_once();
        g_init.store(2, std::memory_order_release);
        sys::futex_wake(&g_init, 0x7fffffff);
        return;
    }
    while (g_init.load(std::memory_order_acquire) != 2) sys::futex_wait(&g_init, 1, 1000000);
}

long broadcast(const Call &call) {
    ensure_init();
    long long start = sys::now_ns();
    if (sys::getpid() != g_pid && !adopt_forked_child()) {
        // A vfork child shares our memory but not our threads: the call is
        // for this thread alone, and nothing of ours may be touched.
        return sys::call(call.nr, call.caller_args[0], call.caller_args[1], call.caller_args[2],
                         call.caller_args[3], call.caller_args[4], call.caller_args[5]);
    }

    sys::Sigset old;
    sys::sigprocmask(SIG_SETMASK, &sys::kAllButOursAndFaults, &old);
    lock();

    Call copy = call;
    if (call.copy_size && call.copy_size <= sizeof g_copy) {
        // The call reads user memory: take one snapshot and give every thread,
        // the caller included, the same bytes.  process_vm_readv reports a bad
        // pointer instead of faulting; then every thread gets the original
        // pointer and the kernel's EFAULT reaches the caller unchanged.
        long got = sys::copy_from_self(g_copy, reinterpret_cast<const void *>(call.args[call.copy_arg]),
                                       call.copy_size);
        if (got == static_cast<long>(call.copy_size)) {
            copy.args[call.copy_arg] = reinterpret_cast<long>(g_copy);
            copy.caller_args[call.copy_arg] = reinterpret_cast<long>(g_copy);
        }
    }
    const long *a = copy.caller_args;
    long mine = sys::call(call.nr, a[0], a[1], a[2], a[3], a[4], a[5]);

    long reached = 0;
    if (mine >= 0) {
        ensure_handler();
        g_req.call = &copy;
        unsigned seq = g_req.seq.load(std::memory_order_relaxed) + 1;
        g_req.seq.store(seq, std::memory_order_relaxed);
        unsigned cookie = (g_secret ^ (seq * 2654435761u)) | 1u;  // never 0
        g_req.count.store(0, std::memory_order_relaxed);
        g_seen_used = 0;
        g_req.cookie.store(cookie, std::memory_order_release);

        reached = run_rounds(sys::gettid(), start);
        report_divergence(copy, mine);

        g_req.cookie.store(0, std::memory_order_release);
        g_req.released.store(seq, std::memory_order_release);
        sys::futex_wake(&g_req.released, 0x7fffffff);
        g_last_threads.store(static_cast<int>(reached + 1), std::memory_order_relaxed);
    }

    unlock();
    sys::sigprocmask(SIG_SETMASK, &old, nullptr);

    if (log::debug()) {
        log::Line l;
        l << call.name << ": ";
        if (mine < 0) {
            l << "failed on the calling thread with ";
            l.errname(mine);
            l << ", no other thread touched";
        } else {
            l << "applied on " << reached + 1 << " threads in " << static_cast<long>((sys::now_ns() - start) / 1000) << " us";
        }
        l.emit();
    }
    return mine;
}

void before_pthread_create() {
    // vfork children cannot legally create threads, so a changed pid here
    // means a fork that skipped pthread_atfork (_Fork, raw clone).
    if (sys::getpid() != g_pid) after_fork_in_child();
}

void after_pthread_create() { ensure_handler(); }

void note_main_thread_exit() { g_main_exited.store(true, std::memory_order_release); }

void set_psx_policy(Policy p) { g_psx_policy.store(static_cast<int>(p), std::memory_order_relaxed); }
Policy psx_policy() { return static_cast<Policy>(g_psx_policy.load(std::memory_order_relaxed)); }

int last_thread_count() { return g_last_threads.load(std::memory_order_relaxed); }
bool active() { return g_init.load(std::memory_order_acquire) == 2; }
int current_pid() { return g_pid; }

}  // namespace psxshim::engine
