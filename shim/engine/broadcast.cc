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
//      broadcast's cookie and the target's index -- by the caller, or by a
//      handler that has claimed its own (see "Relays").
//   4. A target's handler runs the call, stores its result and answers.
//      What it does next depends on how the broadcast can still account for
//      it (see "Who parks" below): most threads simply return; the others
//      park until the broadcast is over.  Either way no thread runs the call
//      twice, and every thread that appears during the broadcast either was
//      born with the new credentials (its creator had answered) or is found
//      by the next round.
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
//
// Who parks.  A thread that answered and returned to its program can create
// threads and can exit while the broadcast still runs.  Both are harmless if
// the broadcast can tell:
//   - Creation: the pthread_create wrapper gives the child its parent's
//     registry `applied` seq, read before the clone, and the handler sets
//     the thread's own `applied` after running the call.  A child whose
//     `applied` is this broadcast's seq was born with the new credentials
//     and is counted without being signalled.  A child whose parent answered
//     inside the wrapper's tiny window, or a raw clone made after answering,
//     reaches a later round, where the handler first compares the thread's
//     credentials with the caller's after-call state and runs the call only
//     if they differ ("conditional" targets).
//   - Exit: the round-ending check counts /proc/self/task against the
//     threads we know are alive.  A thread that answered and returned is
//     counted alive only while its registry slot is still held by it, and a
//     kTracked slot is freed by the thread itself as its start routine ends
//     (returns, pthread_exit, cancellation), before it dies; so it is never
//     counted after its death, and an unknown thread can never hide behind
//     a dead one in the count.
// That needs a call whose effect we can read back (the credential calls;
// see Check) and a kTracked thread -- or the initial thread, the thread
// group leader (tid == pid): the kernel counts it until the whole process
// ends, as a zombie after pthread_exit, so its slot, which nobody frees,
// never counts a dead thread either.  Everything else parks: threads found
// by /proc (raw clones, glibc helpers) and generic psx_syscall numbers.
// Threads that were running user code when the signal came (busy) park
// too, when there are more threads than CPUs: they would compete with the
// caller for a CPU, so sleeping until the end is cheaper for everybody --
// but not for ever: a thread that back-to-back broadcasts have kept parked
// without running one instruction of its own answers and returns once in
// a while (see starved_by_parking).

#include "engine/broadcast.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdlib.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/ucontext.h>

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

// ---- reading a call's effect back -------------------------------------------

// What a credential call changes, read with raw system calls so the signal
// handler can read it too.  Two threads with equal CredState for a call's
// Check would be left identical by running the call on both, so a thread
// whose state already equals the caller's after-call state needs nothing.
enum class Check : int {
    kNone,       // unknown effect: every target parks, nobody is conditional
    kUid,        // set*uid: r/e/s/fs uid, and the capabilities a uid change adjusts
    kGid,        // set*gid: r/e/s/fs gid
    kGroups,     // setgroups (up to kMaxGroups; more falls back to kNone)
    kCaps,       // capset
    kPrctlGet,   // a prctl whose state one prctl "get" returns (get[] = its arguments)
    kAmbientAll  // PR_CAP_AMBIENT_CLEAR_ALL: every ambient bit
};

constexpr int kMaxGroups = 64;

struct CredState {
    bool ok;
    int n;                       // values used
    long v[10];
    unsigned groups[kMaxGroups];
};

struct Classified {
    Check check;
    long get[3];  // kPrctlGet: prctl(get[0], get[1], get[2], 0, 0)
};

Classified classify(const Call &c) {
    switch (c.nr) {
    case SYS_setuid: case SYS_setreuid: case SYS_setresuid: return {Check::kUid, {}};
    case SYS_setgid: case SYS_setregid: case SYS_setresgid: return {Check::kGid, {}};
    case SYS_setgroups:
        if (c.args[0] >= 0 && c.args[0] <= kMaxGroups) return {Check::kGroups, {}};
        break;
    case SYS_capset: return {Check::kCaps, {}};
    case SYS_prctl:
        switch (c.args[0]) {
        case PR_SET_KEEPCAPS: return {Check::kPrctlGet, {PR_GET_KEEPCAPS, 0, 0}};
        case PR_SET_SECUREBITS: return {Check::kPrctlGet, {PR_GET_SECUREBITS, 0, 0}};
        case PR_SET_NO_NEW_PRIVS: return {Check::kPrctlGet, {PR_GET_NO_NEW_PRIVS, 0, 0}};
        case PR_CAPBSET_DROP: return {Check::kPrctlGet, {PR_CAPBSET_READ, c.args[1], 0}};
        case PR_CAP_AMBIENT:
            if (c.args[1] == PR_CAP_AMBIENT_RAISE || c.args[1] == PR_CAP_AMBIENT_LOWER) {
                return {Check::kPrctlGet, {PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c.args[2]}};
            }
            if (c.args[1] == PR_CAP_AMBIENT_CLEAR_ALL) return {Check::kAmbientAll, {}};
            break;
        }
        break;
    }
    return {Check::kNone, {}};
}

bool read_caps(CredState *st) {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2];
    if (sys::call(SYS_capget, reinterpret_cast<long>(&h), reinterpret_cast<long>(d)) < 0) return false;
    for (const auto &w : d) {
        st->v[st->n++] = w.effective;
        st->v[st->n++] = w.permitted;
        st->v[st->n++] = w.inheritable;
    }
    return true;
}

// Async-signal-safe: raw system calls on the calling thread only.
void read_state(const Classified &k, CredState *st) {
    st->ok = false;
    st->n = 0;
    switch (k.check) {
    case Check::kNone: return;
    case Check::kUid:
    case Check::kGid: {
        unsigned ids[3];
        bool uid = k.check == Check::kUid;
        if (sys::call(uid ? SYS_getresuid : SYS_getresgid, reinterpret_cast<long>(&ids[0]),
                      reinterpret_cast<long>(&ids[1]), reinterpret_cast<long>(&ids[2])) < 0) return;
        for (unsigned id : ids) st->v[st->n++] = id;
        st->v[st->n++] = sys::call(uid ? SYS_setfsuid : SYS_setfsgid, -1);  // -1 only reads it
        if (uid && !read_caps(st)) return;
        break;
    }
    case Check::kGroups: {
        long n = sys::call(SYS_getgroups, kMaxGroups, reinterpret_cast<long>(st->groups));
        if (n < 0) return;  // more than kMaxGroups: cannot compare
        st->v[st->n++] = n;
        break;
    }
    case Check::kCaps:
        if (!read_caps(st)) return;
        break;
    case Check::kPrctlGet:
        st->v[st->n++] = sys::call(SYS_prctl, k.get[0], k.get[1], k.get[2], 0, 0);
        break;
    case Check::kAmbientAll: {
        unsigned long mask = 0;
        for (long cap = 0; cap < 64; cap++) {
            long r = sys::call(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0);
            if (r < 0) break;  // past the last capability
            if (r > 0) mask |= 1UL << cap;
        }
        st->v[st->n++] = static_cast<long>(mask);
        break;
    }
    }
    st->ok = true;
}

bool same_state(const CredState &a, const CredState &b, Check check) {
    if (!a.ok || !b.ok || a.n != b.n) return false;
    for (int i = 0; i < a.n; i++) {
        if (a.v[i] != b.v[i]) return false;
    }
    if (check == Check::kGroups) {
        for (long i = 0; i < a.v[0]; i++) {
            if (a.groups[i] != b.groups[i]) return false;
        }
    }
    return true;
}

enum TargetState : int { kPending = 0, kClaimed = 1, kDone = 2, kGone = 3, kZombie = 4 };

struct alignas(64) Target {
    std::atomic<int> tid;
    std::atomic<int> state;
    std::atomic<long> result;
    std::atomic<bool> sent;  // the signal was queued (EAGAIN leaves it to the wait loop)
    int slot;       // registry slot, or -1
    unsigned long long slot_state;  // the slot's state word when targeted
    bool park;      // must park after answering (see "Who parks")
    bool conditional;  // run the call only if the thread lacks its effect
};

// What the handlers read.  Written only by the broadcaster holding the lock,
// before the signals that make handlers read it -- except the words that
// the handlers themselves write, which have cache lines of their own: every
// answer is a read-modify-write of `pending`, and had it shared a line with
// the cookie and count that each arriving handler reads first, each answer
// would have cost the next handler a cache miss on another CPU.
struct Request {
    // Read by every handler, written by the caller only between rounds.
    const Call *call;
    std::atomic<unsigned> seq;       // broadcast number
    std::atomic<unsigned> cookie;    // high half of si_value; 0 = none running
    std::atomic<long> count;         // targets [0, count) are valid
    std::atomic<long> round_end;     // end of this round's signals (see next_send)
    std::atomic<bool> relaying;      // handlers relay in this round
    std::atomic<bool> spin;          // small rounds spin for their answers (see spin_for_answers)
    long mine;                       // the caller's result
    Classified kind;                 // how the call's effect is read back
    // Every answer: decremented by handlers, read by the waiting caller.
    alignas(64) std::atomic<int> pending;  // targets of this round yet to answer (futex)
    std::atomic<bool> sleeping;      // the caller is (about to be) in futex_wait on pending
    // The round's signals, [next_send, round_end), are sent by whoever takes
    // an index first: the caller, and every handler that claimed its own
    // target (see "Relays").  Set by the caller before the round's first
    // signal; a handler reads them only before it answers, so never across
    // rounds.
    alignas(64) std::atomic<long> next_send;
    // Parked threads.
    alignas(64) std::atomic<unsigned> released;  // last seq whose parked threads may go (futex)
    std::atomic<int> parked;         // handlers that parked in this broadcast
    CredState post;                  // the caller's state after its call (conditional targets)
};

constinit Request g_req{};
constinit ChunkedArray<Target, 8, 16384> g_targets;

// 0 = not initialised, 1 = in progress, 2 = done.
constinit std::atomic<int> g_init{0};
// The tid with which this thread last passed broadcast()'s fork and vfork
// check.  A vfork child runs on its parent thread's TLS but has a tid of
// its own, a fork child has a new tid, and a raw clone that shares its
// creator's TLS has its own tid too: each of them differs from this value
// and takes the full check (getpid).  Only the thread that stored it
// matches, and it is still in the process it checked -- one system call
// less per broadcast.  Broadcaster-only, never read by the signal handler.
__thread int t_checked_tid __attribute__((tls_model("initial-exec"))) = 0;
constinit int g_pid = 0;
// A page the kernel zeroes in the child of any fork (MADV_WIPEONFORK, Linux
// 4.14): fork(), _Fork(), a raw clone or fork system call.  A vfork child
// and any other clone sharing our memory see it unchanged.  *g_fork_mark is
// 1 in the process whose state this is and 0 in a fork child whose state
// still describes its parent -- which a plain load tells apart, where
// comparing pids costs a getpid on every pthread_create (about 0.1 us, 1-2%
// of a create+join on the bench VMs).  Null where the kernel refuses the
// advice; the pid comparison is then used instead.
constinit volatile unsigned char *g_fork_mark = nullptr;
constinit unsigned g_secret = 0;
constinit long g_timeout_ms = 10000;
constinit int g_cpus = 1;  // CPUs this process may run on, read at start-up
constinit std::atomic<bool> g_main_exited{false};
constinit std::atomic<int> g_last_threads{0};
constinit std::atomic<int> g_psx_policy{static_cast<int>(Policy::kKill)};
// Handlers help send the round's signals (see "Relays").  Off with
// PSXSHIM_RELAY=0, and for good once a handler's send fails for any reason
// but a vanished target: a thread whose seccomp filter or LSM refuses
// rt_tgsigqueueinfo must not be asked again.
constinit std::atomic<bool> g_relay{true};

// The engine lock: 0 free, 1 held, 2 held with waiters.  The only lock in
// psxshim.  Never taken by the signal handler.
constinit std::atomic<unsigned> g_lock{0};

// glibc's (or anyone's) previous action for kSignal, to chain to.
constinit sys::KernelSigaction g_chain{};
// A real handler (glibc's) has been adopted into g_chain.
constinit std::atomic<bool> g_adopted_glibc{false};

// ---- targets and the per-broadcast tid set -------------------------------

// Open-addressed set of tids already targeted in this broadcast.  An entry is
// (seq << 32 | tid); entries of older broadcasts read as empty, so the set is
// never cleared.  Broadcaster-only.
constinit unsigned long long *g_seen = nullptr;
constinit unsigned long g_seen_cap = 0;  // power of two
constinit long g_seen_used = 0;
constinit bool g_post_read = false;  // g_req.post read for this broadcast

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

// Whether the signal interrupted user code rather than a system call.  On
// x86-64 the `syscall` instruction leaves the return address in rcx (and
// rflags in r11), so a thread signalled in or right after a system call has
// rcx == rip, or rip + 2 when the kernel rewound rip to restart the call.
// Registers only: reading the code at rip could fault on execute-only
// memory.  A heuristic for "busy"; a wrong answer costs time, never
// correctness.  Elsewhere every thread counts as not busy.
bool interrupted_user_code(void *uc) {
#if defined(__x86_64__)
    const greg_t *g = static_cast<ucontext_t *>(uc)->uc_mcontext.gregs;
    return g[REG_RCX] != g[REG_RIP] && g[REG_RCX] != g[REG_RIP] + 2;
#else
    (void)uc;
    return false;
#endif
}

// The interrupted user registers of a busy thread, folded into one word.
unsigned long user_registers_digest(void *uc) {
#if defined(__x86_64__)
    const greg_t *g = static_cast<ucontext_t *>(uc)->uc_mcontext.gregs;
    unsigned long h = 0xcbf29ce484222325UL;
    for (int i = REG_R8; i <= REG_EFL; i++) h = (h ^ static_cast<unsigned long>(g[i])) * 0x100000001b3UL;
    return h;
#else
    (void)uc;
    return 0;
#endif
}

// How many broadcasts in a row may park a busy thread that has not run one
// instruction of its own in between.
inline constexpr unsigned kMaxUnmovedParks = 32;

// Whether this busy thread must answer and return instead of parking,
// because parking has kept it from running for kMaxUnmovedParks broadcasts
// in a row.  A parked thread released when the next broadcast's signal is
// already queued runs the handler again before it gets back to its code:
// the kernel delivers the signal first.  So back-to-back broadcasts can
// keep a busy thread parked for as long as they last, and it is caught at
// the very same point every time -- every user register equal, which is
// how that is told apart from a thread that ran in between.  Measured in
// the progress test (five spinners, 3,000 broadcasts, 2 CPUs): runs of up
// to 128 broadcasts with nothing else running, 512 beside four CPU hogs,
// and in one series of 40 runs under such hogs 5 had a spinner with no
// progress at all.  Answering and returning costs the caller a CPU it
// would otherwise have had: letting the thread go at the first repeat made
// that test 7 times slower (3 s to 22 s), after 16 repeats 1.5 times, after
// 32 about 1.2 times.  A thread whose registers repeat by themselves (a
// jump-to-self loop; or without a digest for this architecture) only loses
// one park in 33.  Threads that park by choice have a registry slot of
// their own (see "Who parks"), which is where the count is kept; `s` is
// that slot, or nullptr for a thread without one (it never parks by choice).
[[gnu::noinline]] bool starved_by_parking(registry::Slot *s, unsigned seq, void *uc) {
    if (!s) return false;
    unsigned long digest = user_registers_digest(uc);
    bool unmoved = s->caught_seq == seq - 1 && s->caught_regs == digest;
    s->caught_seq = seq;
    s->caught_regs = digest;
    s->unmoved_parks = unmoved ? s->unmoved_parks + 1 : 0;
    if (s->unmoved_parks < kMaxUnmovedParks) return false;
    s->unmoved_parks = 0;
    return true;
}

// Count one target of the round as settled, and wake the caller if it
// sleeps: at the last answer, and -- when small rounds spin -- also when
// only as many are left as other CPUs can run at once, so that its wake-up
// overlaps their answers and it spins for them (see spin_for_answers).  A
// caller that is spinning needs no futex_wake (at 4 threads that was two
// system calls per broadcast on the answering CPUs), so the caller sets
// `sleeping` before it reads `pending` for its futex_wait, and both sides
// use seq_cst: either it sees our decrement, or we see it sleeping.
// Raw system calls and atomics only (signal handler).
void answered() {
    int left = g_req.pending.fetch_sub(1, std::memory_order_seq_cst) - 1;
    if (left == 0) {
        if (!g_req.sleeping.load(std::memory_order_seq_cst)) return;
        sys::futex_wake(&g_req.pending, 1);
    } else if (left == g_cpus - 1 && g_req.spin.load(std::memory_order_relaxed) &&
               g_req.sleeping.load(std::memory_order_seq_cst)) {
        sys::futex_wake(&g_req.pending, 1);
    }
}

long send(long i);

// The handler's stack.  It runs on whatever stack the thread had, below a
// kernel signal frame of a few KiB, so every byte of its frames is a byte
// more of each thread's stack that a broadcast touches -- on 1,024 idle
// threads one page more each is 4 MiB of RSS.  So what only some handlers
// need lives in frames of its own, entered only then: the credential
// snapshot of a conditional target, the relay's send, the relay's log line.

// A conditional target (see add_target) compares its credentials with the
// caller's after-call state: equal means it was born with the effect.
[[gnu::noinline]] bool has_effect_already() {
    CredState now;
    read_state(g_req.kind, &now);
    return same_state(now, g_req.post, g_req.kind.check);
}

[[gnu::noinline, gnu::cold]] void say_relays_off(long r) {
    if (!log::debug()) return;
    log::Line l;
    l << "relays off: thread " << sys::gettid() << " may not send signals (rt_tgsigqueueinfo: ";
    l.errname(r);
    l << "); the calling thread sends them from now on";
}

// Relays.  Waking a sleeping thread costs the sender a system call and the
// woken thread's CPU a context switch; on a virtual machine it also costs the
// sleeping vCPU its wake-up.  A caller that sends every signal itself does
// all the sending on one CPU while the other CPUs wake, run one handler and
// fall idle again.  So each handler that claimed its own target first takes
// some of the round's unsent signals and sends them, before it runs the
// call; the caller takes the rest.  Each index is taken once
// (fetch_add), the wait loop resends whatever a relay took but could not
// queue, and a relay happens before its handler answers, so the round (and
// next_send/round_end) cannot change under it.  Only the signals' sender
// changes: threads of one process may always signal each other (the kernel's
// check_kill_permission), so a relay needs no credentials -- unless a
// seccomp filter or LSM refuses this thread the system call; that switches
// relays off for good (g_relay) and the caller sends instead.
// Small rounds do not relay: the caller's few sends are over in
// microseconds, and relaying handlers would only wake threads onto the CPUs
// the caller's targets are already queued on (measured on 2 CPUs: no gain
// at 4 threads, about level at 16, 10-30% less time per call at 256 and
// 1,024).
// How many: a handler woken from a system call sends one, replacing itself.
// Each signal to a blocked thread is a wake-up, and with two per handler the
// woken-but-not-yet-run threads doubled with every generation: a trace of
// 1,024 blocked threads on 2 CPUs showed all signals out by two thirds of
// the call, some 600 handlers still queued, and at the end one CPU idle for
// a quarter of a millisecond while the other ran the 50 left on its queue.
// One each keeps the queues short, and both CPUs finish together (capset
// against glibc's committing broadcast, paired ratios of interleaved A/B
// runs of 10-24 rounds: 1,024 threads 0.85-1.08x -> 0.78-0.97x, 256 and 64
// threads 0.88-0.94x -> 0.86x, 16 idle threads 0.92x -> 0.87x).
// A busy handler sends two: its targets are already running or runnable,
// so a signal wakes nobody, and what a busy thread waits for is its turn on
// a CPU -- a signal not yet sent when that turn comes costs it a whole
// scheduling round of the spinners.
constexpr int kRelayFanout = 1;
constexpr int kBusyRelayFanout = 2;

[[gnu::noinline]] void relay(int fanout) {
    if (!g_req.relaying.load(std::memory_order_relaxed) || !g_relay.load(std::memory_order_relaxed)) return;
    long end = g_req.round_end.load(std::memory_order_acquire);
    for (int k = 0; k < fanout;) {
        long i = g_req.next_send.fetch_add(1, std::memory_order_acq_rel);
        if (i >= end) return;
        // Targets that need no signal (born with the effect, already
        // answered) do not count: one relay per handler must not end a
        // chain on them.
        if (g_targets.get(i)->state.load(std::memory_order_acquire) != kPending) continue;
        k++;
        long r = send(i);
        if (r == -EAGAIN) return;  // signal queue full: the wait loop resends
        if (r < 0 && r != -ESRCH) {
            if (g_relay.exchange(false, std::memory_order_relaxed)) say_relays_off(r);
            return;
        }
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
    // Everything the handler needs from t is read before it answers: once
    // pending drops to zero the broadcaster may finish and reuse the target.
    unsigned seq = g_req.seq.load(std::memory_order_relaxed);
    const Call *c = g_req.call;
    // Busy threads park only when the process has more threads than CPUs:
    // otherwise nobody competes with the caller, and a thread put to sleep
    // would only answer the next broadcast later, from an idle CPU.  Nor
    // when parking has left them no time to run (starved_by_parking).
    bool busy = interrupted_user_code(uc);
    bool park = t->park;
    // The handler's own slot, if it has one: it cannot be freed under us,
    // since we free it ourselves (as our start routine ends) and the
    // broadcaster frees only the slots of threads that are gone.
    registry::Slot *mine = t->slot >= 0 ? registry::at(t->slot) : nullptr;
    if (mine && mine->tid() != me) mine = nullptr;
    if (!park && busy && g_req.count.load(std::memory_order_relaxed) >= g_cpus) park = !starved_by_parking(mine, seq, uc);
    // Busy threads relay too.  With more spinning threads than CPUs, the
    // fair scheduler bills the caller for every microsecond it runs while
    // the spinners wait parked; a caller that sent all 64 signals itself
    // ended each broadcast in debt and then waited behind 64 time slices
    // before it could run again (busy/64: calls alternated between 1 ms and
    // 250 ms).  A relay preempted between taking an index and sending it
    // holds that signal back until the wait loop's first timeout
    // (kFirstWaitNs), which resends whatever is still unsent.
    relay(busy ? kBusyRelayFanout : kRelayFanout);
    long r;
    if (t->conditional && g_req.post.ok && has_effect_already()) {
        r = g_req.mine;  // born with the effect already: running it again would be a second run
    } else {
        r = sys::call(c->nr, c->args[0], c->args[1], c->args[2], c->args[3], c->args[4], c->args[5]);
    }
    if (t->slot >= 0) publish_child(t->slot);
    // Children this thread creates from now on are born with the effect.
    if (mine) mine->applied.store(seq, std::memory_order_release);
    if (park) g_req.parked.fetch_add(1, std::memory_order_relaxed);
    t->result.store(r, std::memory_order_relaxed);
    t->state.store(kDone, std::memory_order_release);
    answered();
    if (!park) return;

    // Park until the broadcast is over (see "Who parks").
    for (;;) {
        unsigned rel = g_req.released.load(std::memory_order_acquire);
        if (static_cast<int>(rel - seq) >= 0) break;
        sys::futex_wait(&g_req.released, rel);
    }
    // Pass the release on.  The caller woke only one of us: waking every
    // parked thread itself made them all runnable at the moment it wanted
    // its CPU back to return, and with 16 or 64 busy threads it then waited
    // a whole scheduling round (measured: busy/64 120-130 ms per call, about
    // glibc's; with the release passed on, 4-100 ms).  Everyone is still
    // woken at once, by the first of us to run -- unlike leaving parked
    // threads asleep until the next broadcast, which starved them (see the
    // progress test).  Later leavers find nobody waiting: a cheap call.
    // `released` is stored before any wake-up and compared by futex_wait,
    // so no wake-up is lost; should the chain stall anyway (a parked thread
    // stopped by a tracer), wait_round wakes everybody when a later
    // broadcast stops getting answers.
    sys::futex_wake(&g_req.released, 0x7fffffff);
}

// Make sure kSignal is ours.  glibc installs its own SIGSETXID handler the
// first time any thread is created (its own helper threads included), which
// replaces ours; we then adopt its handler as the one to chain to.
void ensure_handler() {
    sys::KernelSigaction cur{};
    if (sys::sigaction(kSignal, nullptr, &cur) < 0) return;
    if (cur.handler == reinterpret_cast<unsigned long>(&on_signal)) return;
    g_chain = cur;
    if (cur.handler != reinterpret_cast<unsigned long>(SIG_DFL) &&
        cur.handler != reinterpret_cast<unsigned long>(SIG_IGN)) {
        g_adopted_glibc.store(true, std::memory_order_release);
    }
    sys::KernelSigaction act{};
    act.handler = reinterpret_cast<unsigned long>(&on_signal);
    act.flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    act.mask = sys::kAllButFaults;
    sys::sigaction(kSignal, &act, nullptr);
}

// ensure_handler() for the hot paths (every broadcast, every pthread_create).
// glibc installs its SIGSETXID handler once per process, when it creates its
// first thread -- through pthread_create or for one of its own helpers,
// which we do not see -- so until we have adopted it every call checks.
// After that nobody can legitimately replace ours (glibc's sigaction refuses
// signal 33), and create+join and each broadcast stay free of an
// rt_sigaction.  A raw rt_sigaction that replaces it anyway makes threads
// stop answering; wait_round's one-second diagnosis reinstalls it.
void ensure_handler_until_adopted() {
    if (!g_adopted_glibc.load(std::memory_order_acquire)) ensure_handler();
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


// A new target, or -1 if tid is already one (or out of memory is fatal).
// A conditional target compares its state with the caller's after-call
// state, which is read here, once, when the first one appears.
// A target `done` already has the effect and is never signalled.
long add_target(int tid, int slot, unsigned long long slot_state, bool park, bool conditional, bool done = false) {
    if (!seen_insert(tid)) return -1;
    long i = g_req.count.load(std::memory_order_relaxed);
    Target *t = g_targets.ensure(i);
    if (!t) {
        log::Line() << g_req.call->name << ": out of memory for " << i << " threads; ending the process";
        die();
    }
    if (conditional && !g_post_read) {
        read_state(g_req.kind, &g_req.post);
        g_post_read = true;
    }
    t->tid.store(tid, std::memory_order_relaxed);
    t->result.store(done ? g_req.mine : 0, std::memory_order_relaxed);
    t->slot = slot;
    t->slot_state = slot_state;
    t->sent.store(done, std::memory_order_relaxed);
    t->park = park;
    t->conditional = conditional;
    // Release: a handler whose claim reads this state then reads the fields
    // above and this broadcast's seq and call -- even one whose cookie and
    // count checks passed for the previous broadcast just before it ended
    // (a late duplicate signal for the same index and thread), which has
    // not synchronised with this broadcast's count.  A plain store on x86.
    t->state.store(done ? kDone : kPending, std::memory_order_release);
    g_req.count.store(i + 1, std::memory_order_release);
    return i;
}

// Registered threads not yet targeted.  `later` is true after the first
// round, when a thread may have been cloned by one that already answered.
void gather_registry(int self, bool later) {
    bool known = g_req.kind.check != Check::kNone;
    unsigned seq = g_req.seq.load(std::memory_order_relaxed);
    int hw = registry::high_water();
    for (int i = 0; i < hw; i++) {
        registry::Slot *s = registry::at(i);
        if (!s) continue;
        unsigned long long st = s->state.load(std::memory_order_acquire);
        int tid = registry::tid_of_state(st);
        if (tid <= 0 || tid == self) continue;
        unsigned flags = s->flags.load(std::memory_order_acquire);
        bool free = known && (((flags & registry::kTracked) && !(flags & registry::kForeign)) || tid == g_pid);
        bool born_with_it = free && s->applied.load(std::memory_order_acquire) == seq;
        // Cloned after its parent ran the call: counted, never signalled.
        add_target(tid, i, st, !free, known && later && !born_with_it, born_with_it);
    }
}

// Threads listed by /proc not yet targeted; they are also registered, so
// they stay known if /proc later becomes unreachable.  They park, and they
// are conditional: a raw clone made by a thread that had answered and
// returned was born with the call's effect.
void gather_procfs(int self) {
    bool known = g_req.kind.check != Check::kNone;
    for (;;) {
        long n = procfs::list(g_list, g_list_cap);
        if (n < 0) return;
        if (n < g_list_cap) {
            for (long i = 0; i < n; i++) {
                int tid = g_list[i];
                if (tid == self || (tid == g_pid && g_main_exited.load(std::memory_order_relaxed))) continue;
                if (add_target(tid, -1, 0, true, known) >= 0) registry::add_live(tid, registry::kForeign);
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

// Queue kSignal for target i; returns rt_tgsigqueueinfo's result.  Called
// by the caller and by relaying handlers (raw system call and atomics only).
// A target that has exited (ESRCH) is settled here; EAGAIN (the signal queue
// is full, RLIMIT_SIGPENDING) leaves it unsent for the wait loop; any other
// error is the sender's to handle.
long send(long i) {
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
    if (r == 0 || r == -ESRCH) t->sent.store(true, std::memory_order_release);
    if (r == -ESRCH) {
        // The thread is gone (exited since it was listed).
        int expected = kPending;
        if (t->state.compare_exchange_strong(expected, kGone, std::memory_order_acq_rel)) {
            if (t->slot >= 0) registry::release(t->slot, t->tid.load(std::memory_order_relaxed));
            answered();  // last: the round may end, and t be reused, right after
        }
    }
    return r;
}

// The caller's send.  A thread the caller may not signal (a seccomp filter
// or an LSM refusing rt_tgsigqueueinfo) would keep its old credentials, and
// counting it as gone would report success: the process is killed instead.
void send_or_die(long i) {
    long r = send(i);
    if (r >= 0 || r == -EAGAIN || r == -ESRCH) return;
    log::Line l;
    l << g_req.call->name << ": cannot signal thread " << g_targets.get(i)->tid.load(std::memory_order_relaxed)
      << " (rt_tgsigqueueinfo: ";
    l.errname(r);
    l << "); it would keep the old credentials, so the process is being killed";
    l.emit();
    die();
}

// A target whose signal is still unsent when the wait loop looks at it has
// just had it refused with EAGAIN: every other failure is settled or fatal
// in send_or_die.  The kernel queues a real-time signal sent with
// siginfo only while the real user's queued signals are below
// RLIMIT_SIGPENDING (no override, unlike kill()), so a program -- or any
// process of the same user -- that keeps the queue full keeps the thread
// from being asked.  glibc's broadcast skips such a thread and reports
// success; we retry at every timeout and name the cause.
//
// The queue's use ("16/16") is the same for every waiting thread: one
// report reads it from /proc once, when the first such thread is named.
struct QueueUse {
    char text[32] = "";
    bool read = false;
};

[[gnu::cold]] void say_queue_full(log::Line &l, QueueUse &q) {
    if (!q.read) {
        q.read = true;
        procfs::status_field(sys::gettid(), "SigQ:", q.text, sizeof q.text);  // stays "" if unreadable
    }
    l << "its signal cannot be queued: the user's signal queue is full (rt_tgsigqueueinfo: EAGAIN; ";
    if (q.text[0]) l << "SigQ " << q.text << ", ";
    l << "RLIMIT_SIGPENDING)";
}

void describe_straggler(const Target *t, long long waited_ms, QueueUse &q) {
    int tid = t->tid.load(std::memory_order_relaxed);
    if (!t->sent.load(std::memory_order_acquire)) {
        log::Line l;
        l << g_req.call->name << ": thread " << tid << " has not answered after " << static_cast<long>(waited_ms)
          << " ms: ";
        say_queue_full(l, q);
        l << "; retrying until the queue has room";
        return;
    }
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

// Spinning for the answers of a small round.  With at most two threads per
// CPU still to answer, their answers are microseconds away, and a caller
// that sleeps for them pays its own wake-up after the last one.  On a VM
// whose vCPUs halt when idle that wake-up is the expensive part: over 20 us
// on the 2-vCPU bench machine, where glibc's one-thread broadcast, which
// sleeps, takes 45-90 us and ours about 20.  (It is 3-4 us only while some
// other process keeps the vCPUs awake.  An earlier version measured its
// wake-ups and slept when they were cheap; measured again with nothing else
// running, always spinning was 3-27% faster at 1 and 4 threads and never
// slower.)  PSXSHIM_SPIN=0 makes every round sleep instead.
// A spin is bounded (kSpinNs), never runs on one CPU -- every thread needs
// the caller's -- and never calls sched_yield.  It also ends when no answer
// has come for kStallNs: a thread queued on the caller's own CPU cannot
// answer while the caller spins there (a trace at 16 idle threads showed the
// caller spinning its full 50 us in one call of seven, the last thread
// runnable on the same CPU).  The first answer after the signals go out may
// need a sleeping vCPU to wake, hence the longer first stall bound.
// No pause instruction: under a hypervisor a pause loop exits to the host
// (pause-loop exiting), which may then run something else on the CPU the
// answering thread needs; the benchmark measured a bimodal 15/75 us per call
// with one busy thread with it, 15-20 us without.
constexpr long long kSpinNs = 50000;
constexpr long long kFirstStallNs = 30000;
constexpr long long kStallNs = 15000;

// Small rounds spin: more than one CPU, and PSXSHIM_SPIN is not 0.  Set
// once at start-up.
constinit bool g_spin_small_rounds = false;

void spin_for_answers(long long first_stall_ns) {
    long long now = sys::now_ns();
    long long deadline = now + kSpinNs;
    long long stall = now + first_stall_ns;
    int last = g_req.pending.load(std::memory_order_acquire);
    for (unsigned i = 1;; i++) {
        int p = g_req.pending.load(std::memory_order_acquire);
        if (p <= 0) return;
        if (p != last) {
            last = p;
            stall = sys::now_ns() + kStallNs;
        }
        if ((i & 63) == 0) {
            now = sys::now_ns();
            if (now > deadline || now > stall) return;
        }
    }
}

// The first sleep's timeout.  Exiting threads never answer, so they are
// looked for early -- but not earlier than a scheduler tick: on the VM, a
// futex_wait whose timeout fell before the next tick (1 ms, with HZ=250)
// cost every sleeping caller about 10 us more to wake than an untimed one
// (one busy thread: 18-28 us per call against 9 us; from 4.5 ms up, 9.3-9.7
// us).  5 ms is past the tick of every common HZ but 100.
constexpr long long kFirstWaitNs = 5000000;

void wait_round(long begin, long end, long long start_ns) {
    long long backoff_ns = kFirstWaitNs;
    bool diagnosed = false;
    long diag_ms = g_timeout_ms > 0 && g_timeout_ms < 1000 ? g_timeout_ms : 1000;
    // Spin twice at most: once when the round's few signals are out, once
    // more after a handler woke us for the last answers (see answered()).
    int spins = 0;
    bool may_spin = g_req.spin.load(std::memory_order_relaxed);
    for (;;) {
        int p = g_req.pending.load(std::memory_order_acquire);
        if (p <= 0) return;
        if (may_spin && spins < 2 && p <= 2 * g_cpus) {
            spin_for_answers(spins == 0 ? kFirstStallNs : kStallNs);
            spins++;
            may_spin = false;
            continue;
        }
        // Handlers wake us only while this says we sleep (see answered()).
        g_req.sleeping.store(true, std::memory_order_seq_cst);
        p = g_req.pending.load(std::memory_order_seq_cst);
        long r = p <= 0 ? -EAGAIN : sys::futex_wait(&g_req.pending, static_cast<unsigned>(p), static_cast<long>(backoff_ns));
        g_req.sleeping.store(false, std::memory_order_relaxed);
        if (g_req.pending.load(std::memory_order_acquire) <= 0) return;
        // Woken early (answers came in) or the count moved: wait on.  The
        // checks below run when the wait times out, i.e. answers stopped.
        if (r != -ETIMEDOUT) {
            may_spin = g_req.spin.load(std::memory_order_relaxed);
            continue;
        }
        // A thread still parked from an earlier broadcast has our signal
        // blocked until it leaves the handler: make sure it has been let go
        // (see the end of on_signal).
        sys::futex_wake(&g_req.released, 0x7fffffff);
        long long waited_ms = (sys::now_ns() - start_ns) / 1000000;
        for (long i = begin; i < end; i++) {
            Target *t = g_targets.get(i);
            if (t->state.load(std::memory_order_acquire) != kPending) continue;
            if (!t->sent.load(std::memory_order_acquire)) send_or_die(i);
            if (t->state.load(std::memory_order_acquire) == kPending) check_straggler(t, waited_ms);
        }
        if (backoff_ns < 100000000) backoff_ns *= 2;
        if (!diagnosed && waited_ms >= diag_ms && g_req.pending.load() > 0) {
            diagnosed = true;
            ensure_handler();  // in case it was replaced under us
            QueueUse q;
            for (long i = begin; i < end; i++) {
                Target *t = g_targets.get(i);
                if (t->state.load(std::memory_order_acquire) == kPending) {
                    describe_straggler(t, waited_ms, q);
                    send(i);  // a duplicate is harmless: the handler claims each target once
                }
            }
        }
        if (g_timeout_ms > 0 && waited_ms >= g_timeout_ms) {
            QueueUse q;
            for (long i = begin; i < end; i++) {
                Target *t = g_targets.get(i);
                if (t->state.load(std::memory_order_acquire) == kPending) {
                    log::Line l;
                    l << g_req.call->name << ": thread " << t->tid.load() << " did not answer within " << g_timeout_ms
                      << " ms (PSXSHIM_TIMEOUT_MS)";
                    if (!t->sent.load(std::memory_order_acquire)) {
                        l << ", ";
                        say_queue_full(l, q);
                    }
                    l << "; it may still hold the old credentials, so the process is being killed";
                }
            }
            die();
        }
    }
}

// Threads we can vouch for right now, to compare with the kernel's count
// read just before: zombies, parked threads (alive until released), and
// threads that answered and returned (or were born with the effect) whose
// kTracked slot they still hold -- freed before death, so never counted
// dead.  Any thread the kernel counts beyond these is unknown.
long accounted() {
    long n = g_req.count.load(std::memory_order_relaxed);
    long alive = 0;
    for (long i = 0; i < n; i++) {
        Target *t = g_targets.get(i);
        int s = t->state.load(std::memory_order_acquire);
        if (s == kZombie) {
            alive++;
        } else if (s == kDone) {
            if (t->park) {
                alive++;
            } else {
                registry::Slot *slot = registry::at(t->slot);
                alive += slot && slot->state.load(std::memory_order_seq_cst) == t->slot_state;
            }
        }
    }
    return alive;
}

// Rounds until nobody new turns up.  Registered threads come first (cheap);
// /proc is listed only when the kernel's thread count says somebody is
// missing.  Returns how many threads other than the caller have the effect.
long run_rounds(int self, long long start_ns) {
    long begin = 0;
    for (;;) {
        // After a round the kernel's count is asked first: it usually says
        // that nobody is left, and that spares a scan of the whole registry
        // -- cache misses on slots the handlers wrote, with every other CPU
        // idle: the time from the last answer to the end of the rounds fell
        // from 27-41 to 15-20 us at 1,024 threads.  Otherwise the round ends
        // as it always has, after the scan.
        if (begin > 0) {
            long kernel = procfs::usable_count(g_pid);
            if (kernel >= 0 && kernel == 1 + accounted()) break;
        }
        gather_registry(self, begin > 0);
        if (g_req.count.load(std::memory_order_relaxed) == begin) {
            long kernel = procfs::usable_count(g_pid);
            if (kernel < 0) break;  // no /proc: the registry is all we have
            if (kernel == 1 + accounted()) break;
            gather_procfs(self);
        }
        long end = g_req.count.load(std::memory_order_relaxed);
        if (end == begin) break;  // the count included a thread that has exited since
        int pending = 0;
        for (long i = begin; i < end; i++) {
            pending += g_targets.get(i)->state.load(std::memory_order_relaxed) == kPending;
        }
        g_req.pending.store(pending, std::memory_order_release);
        g_req.round_end.store(end, std::memory_order_relaxed);
        g_req.relaying.store(g_relay.load(std::memory_order_relaxed) && end - begin > 2L * g_cpus,
                             std::memory_order_relaxed);
        g_req.next_send.store(begin, std::memory_order_release);
        // Relaying handlers take indices from the same counter (see "Relays").
        for (;;) {
            long i = g_req.next_send.fetch_add(1, std::memory_order_acq_rel);
            if (i >= end) break;
            if (g_targets.get(i)->state.load(std::memory_order_acquire) == kPending) send_or_die(i);
        }
        wait_round(begin, end, start_ns);
        begin = end;
    }
    long reached = 0;
    for (long i = 0; i < begin; i++) reached += g_targets.get(i)->state.load(std::memory_order_acquire) == kDone;
    return reached;
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
    if (g_fork_mark) *g_fork_mark = 1;  // this copy's state is its own from here on
    g_pid = sys::getpid();
    g_lock.store(0, std::memory_order_relaxed);
    g_req.cookie.store(0, std::memory_order_relaxed);
    g_req.released.store(g_req.seq.load(std::memory_order_relaxed), std::memory_order_relaxed);
    g_main_exited.store(false, std::memory_order_relaxed);
    registry::reset_in_child(g_pid);
    procfs::reset_in_child(g_pid);
}

void make_fork_mark() {
    auto *page = static_cast<volatile unsigned char *>(map_pages(4096));
    if (!page) return;
    if (sys::call(SYS_madvise, reinterpret_cast<long>(page), 4096, MADV_WIPEONFORK) < 0) {
        sys::call(SYS_munmap, reinterpret_cast<long>(page), 4096);
        return;
    }
    *page = 1;
    g_fork_mark = page;
}

// We run in a process whose pid is not the one we were initialised in, and
// pthread_atfork's child handler did not run: either a vfork child (sharing
// the parent's memory -- touching our state would corrupt the parent's) or
// the child of _Fork() or a raw clone() fork (a private copy), which is
// reset as a fork child.  The fork mark tells which.  Without it, a second
// thread proves a private copy, since a vfork child cannot have threads of
// its own; a copy with one thread is then left alone, which for a call on
// that one thread comes to the same.  Returns true if it adopted.
bool adopt_forked_child() {
    if (g_fork_mark) {
        if (*g_fork_mark != 0) return false;  // memory shared with our parent: vfork
        after_fork_in_child();
        return true;
    }
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
    make_fork_mark();
    log::init_from_environment();
    g_timeout_ms = env_long("PSXSHIM_TIMEOUT_MS", g_timeout_ms);
    if (env_long("PSXSHIM_RELAY", 1) == 0) g_relay.store(false, std::memory_order_relaxed);
    if (getrandom(&g_secret, sizeof g_secret, GRND_NONBLOCK) != sizeof g_secret) {
        g_secret = static_cast<unsigned>(sys::now_ns()) ^ static_cast<unsigned>(g_pid) * 2654435761u;
    }
    unsigned long cpus[16] = {};  // up to 1,024 CPUs
    if (sys::call(SYS_sched_getaffinity, 0, sizeof cpus, reinterpret_cast<long>(cpus)) > 0) {
        int n = 0;
        for (unsigned long w : cpus) n += __builtin_popcountl(w);
        g_cpus = n > 0 ? n : 1;
    }
    g_spin_small_rounds = g_cpus > 1 && env_long("PSXSHIM_SPIN", 1) != 0;
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
    int self = sys::gettid();
    if (self != t_checked_tid) {
        if (sys::getpid() != g_pid && !adopt_forked_child()) {
            // A vfork child shares our memory but not our threads: the call
            // is for this thread alone, and nothing of ours may be touched.
            return sys::call(call.nr, call.caller_args[0], call.caller_args[1], call.caller_args[2],
                             call.caller_args[3], call.caller_args[4], call.caller_args[5]);
        }
        t_checked_tid = self;
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
    if (mine >= 0 && copy.from_caller && !copy.from_caller(copy)) {
        log::Line() << call.name << ": succeeded on the calling thread, but its new state could not be read back "
                    << "for the other threads; the process is being killed";
        die();
    }

    long reached = 0;
    bool spun = false;
    if (mine >= 0) {
        ensure_handler_until_adopted();
        g_req.call = &copy;
        unsigned seq = g_req.seq.load(std::memory_order_relaxed) + 1;
        g_req.seq.store(seq, std::memory_order_relaxed);
        unsigned cookie = (g_secret ^ (seq * 2654435761u)) | 1u;  // never 0
        g_req.count.store(0, std::memory_order_relaxed);
        g_req.kind = classify(copy);
        g_req.mine = mine;
        g_req.parked.store(0, std::memory_order_relaxed);
        g_req.spin.store(g_spin_small_rounds, std::memory_order_relaxed);
        g_post_read = false;
        g_seen_used = 0;
        g_req.cookie.store(cookie, std::memory_order_release);

        reached = run_rounds(self, start);
        report_divergence(copy, mine);

        g_req.cookie.store(0, std::memory_order_release);
        g_req.released.store(seq, std::memory_order_release);
        // Handlers count themselves before answering, so after the last
        // answer this is exact: nobody parked, nobody to wake.  We wake one;
        // each parked thread wakes the rest as it leaves (see on_signal), so
        // the caller is not the one that makes dozens of threads runnable at
        // once on its own way out.  Every thread it wakes may land on its
        // CPU and preempt it, and a preempted caller among 64 spinners waits
        // for their time slices before it can return: waking one instead of
        // one per CPU took busy/64 from 4-16 ms to 2.5-4.3 ms per call
        // (medians; capset, interleaved runs) and busy/16's p75 from 8-27 ms
        // to 0.6-7 ms.  A thread stopped by a tracer is not on the futex
        // queue, so the one woken is always one that can run.
        if (g_req.parked.load(std::memory_order_acquire) > 0) sys::futex_wake(&g_req.released, 1);
        g_last_threads.store(static_cast<int>(reached + 1), std::memory_order_relaxed);
        spun = g_req.spin.load(std::memory_order_relaxed);
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
            l << "applied on " << reached + 1 << " threads in " << static_cast<long>((sys::now_ns() - start) / 1000)
              << " us (caller " << (spun ? "spins" : "sleeps") << " for small rounds)";
        }
        l.emit();
    }
    return mine;
}

void before_pthread_create() {
    // A fork child that skipped pthread_atfork (_Fork, a raw fork) must be
    // reset before it registers threads.  The fork mark says so with a load;
    // without it a changed pid does (vfork children cannot legally create
    // threads).
    if (g_fork_mark ? *g_fork_mark == 0 : sys::getpid() != g_pid) after_fork_in_child();
}

void after_pthread_create() { ensure_handler_until_adopted(); }

void note_main_thread_exit() { g_main_exited.store(true, std::memory_order_release); }

void set_psx_policy(Policy p) { g_psx_policy.store(static_cast<int>(p), std::memory_order_relaxed); }
Policy psx_policy() { return static_cast<Policy>(g_psx_policy.load(std::memory_order_relaxed)); }

int last_thread_count() { return g_last_threads.load(std::memory_order_relaxed); }
bool active() { return g_init.load(std::memory_order_acquire) == 2; }
int current_pid() { return g_pid; }

}  // namespace psxshim::engine
