// Helpers shared by the programs in test/preload/calls/ (header-only; the
// common library in test/common/ is not changed for them).
//
//   - capability bookkeeping for the calling thread (capget, bounding set),
//     and picking a capability that the starting state really holds;
//   - keep-caps / securebits comparison across every thread (not in /proc):
//     pthreads through pt::Sleepers::query(), raw-clone threads through
//     pt::query_raw_threads();
//   - per-thread snapshots, to prove that a failed call changed no thread;
//   - Agents: pthreads that run an arbitrary function on request, to read
//     per-thread state /proc does not show (PR_GET_PDEATHSIG, ...).
#pragma once

#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "creds.h"

extern "C" int capset(cap_user_header_t, const cap_user_data_t);
extern "C" int capget(cap_user_header_t, cap_user_data_t);

namespace ct {

// ---- failures ---------------------------------------------------------------

// Collects failed assertions; every line names the thread that saw it.
struct Failures {
    std::string text;
    void add(const std::string &s) { text += "  [tid " + std::to_string(gettid()) + "] " + s + "\n"; }
    bool ok() const { return text.empty(); }
};

inline std::string errname(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : std::to_string(e);
}

// "ret=-1 errno=EINVAL" style, for messages.
inline std::string outcome(long ret, int err) {
    if (ret == -1) return "ret=-1 errno=" + errname(err);
    return "ret=" + std::to_string(ret);
}

// ---- capabilities of the calling thread --------------------------------------

struct Caps {
    __user_cap_data_struct d[2] = {};
    bool has_eff(int c) const { return d[c / 32].effective & (1u << (c % 32)); }
    bool has_prm(int c) const { return d[c / 32].permitted & (1u << (c % 32)); }
    bool has_inh(int c) const { return d[c / 32].inheritable & (1u << (c % 32)); }
    std::uint64_t prm() const { return d[0].permitted | (std::uint64_t{d[1].permitted} << 32); }
    std::uint64_t eff() const { return d[0].effective | (std::uint64_t{d[1].effective} << 32); }
    std::uint64_t inh() const { return d[0].inheritable | (std::uint64_t{d[1].inheritable} << 32); }
    void clear_eff(int c) { d[c / 32].effective &= ~(1u << (c % 32)); }
    void clear_prm(int c) { d[c / 32].permitted &= ~(1u << (c % 32)); }
    void set_inh(int c) { d[c / 32].inheritable |= 1u << (c % 32); }
    void clear_inh(int c) { d[c / 32].inheritable &= ~(1u << (c % 32)); }
};

inline Caps get_caps() {
    Caps c;
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    if (syscall(SYS_capget, &h, c.d) != 0) std::perror("capget");
    return c;
}

// The calling thread only, whatever is preloaded.
inline long raw_capset(const Caps &c) {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    return syscall(SYS_capset, &h, c.d);
}

inline bool in_bounding(int c) { return syscall(SYS_prctl, PR_CAPBSET_READ, c, 0, 0, 0) == 1; }

// A capability the calling thread holds in effective, permitted and bounding,
// that the tests can give up without losing the ability to go on.  -1 if none
// (the caller then skips with a printed reason).
inline int pick_cap(std::initializer_list<int> exclude = {}) {
    static const int prefer[] = {CAP_NET_RAW, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SYS_TTY_CONFIG, CAP_LEASE,
                                 CAP_SYS_BOOT, CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND, CAP_SYSLOG, CAP_NET_BIND_SERVICE,
                                 CAP_IPC_LOCK, CAP_SYS_PACCT};
    Caps c = get_caps();
    for (int cap : prefer) {
        bool skip = false;
        for (int x : exclude) skip |= x == cap;
        if (!skip && c.has_eff(cap) && c.has_prm(cap) && in_bounding(cap)) return cap;
    }
    return -1;
}

// ---- keep-caps and securebits of every thread ----------------------------------

// Empty if every pthread in `s` and every raw-clone thread reports the same
// keep-caps and securebits as the calling thread.
inline std::string flag_differences(pt::Sleepers *s) {
    long kc = syscall(SYS_prctl, PR_GET_KEEPCAPS, 0, 0, 0, 0);
    long sb = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
    std::string out;
    auto check = [&](const char *kind, const pt::RawAnswer &a) {
        if (a.tid <= 0) return;
        if (a.keepcaps != kc || a.securebits != sb) {
            out += std::string(kind) + " thread " + std::to_string(a.tid) + ": keepcaps=" + std::to_string(a.keepcaps) +
                   " securebits=" + std::to_string(a.securebits) + "\n  caller " + std::to_string(gettid()) +
                   ": keepcaps=" + std::to_string(kc) + " securebits=" + std::to_string(sb) + "\n";
        }
    };
    if (s) for (const pt::RawAnswer &a : s->query()) check("pthread", a);
    for (const pt::RawAnswer &a : pt::query_raw_threads()) check("raw-clone", a);
    return out;
}

// /proc differences plus keep-caps/securebits differences.
inline std::string all_differences(pt::Sleepers *s) { return pt::differences() + flag_differences(s); }

// ---- snapshots: did anything change? ------------------------------------------

inline std::string full_key(const pt::ThreadCreds &c) {
    return c.key() + " fsuid=" + std::to_string(c.uid[3]) + " fsgid=" + std::to_string(c.gid[3]);
}

using Snapshot = std::map<int, std::string>;

inline Snapshot snapshot() {
    Snapshot s;
    for (const pt::ThreadCreds &c : pt::read_all()) s[c.tid] = full_key(c);
    return s;
}

// One line per thread whose credentials differ from `before`.
inline std::string changed_since(const Snapshot &before) {
    std::string out;
    Snapshot now = snapshot();
    for (const auto &[tid, key] : before) {
        auto it = now.find(tid);
        if (it == now.end()) {
            out += "thread " + std::to_string(tid) + " vanished\n";
        } else if (it->second != key) {
            out += "thread " + std::to_string(tid) + " changed:\n    before: " + key + "\n    after:  " + it->second + "\n";
        }
    }
    return out;
}

// ---- the usual cast of threads ---------------------------------------------------

// pthreads parked in a condvar plus raw-clone threads that glibc cannot see.
struct World {
    pt::Sleepers sleepers;
    explicit World(int pthreads = 4, int raw = 2) : sleepers(pthreads) {
        for (int i = 0; i < raw; i++) pt::start_raw_thread();
    }
    ~World() { pt::stop_raw_threads(); }
    std::string differences() { return all_differences(&sleepers); }
};

// ---- agents: run any function on a particular pthread ----------------------------

class Agents {
public:
    explicit Agents(int n) {
        for (int i = 0; i < n; i++) agents_.push_back(std::make_unique<Agent>());
        for (auto &a : agents_) {
            a->thread = std::thread([p = a.get()] { p->loop(); });
            std::unique_lock<std::mutex> l(a->m);
            a->cv.wait(l, [&] { return a->tid != 0; });
        }
    }
    ~Agents() {
        for (auto &a : agents_) {
            {
                std::lock_guard<std::mutex> l(a->m);
                a->stop = true;
            }
            a->cv.notify_all();
            a->thread.join();
        }
    }
    int size() const { return static_cast<int>(agents_.size()); }
    int tid(int i) const { return agents_[i]->tid; }
    // Runs f on agent i and returns its result.
    long run(int i, std::function<long()> f) {
        Agent &a = *agents_[i];
        std::unique_lock<std::mutex> l(a.m);
        a.task = std::move(f);
        a.has_task = true;
        a.cv.notify_all();
        a.cv.wait(l, [&] { return !a.has_task; });
        return a.result;
    }

private:
    struct Agent {
        std::mutex m;
        std::condition_variable cv;
        std::thread thread;
        int tid = 0;
        bool stop = false;
        bool has_task = false;
        std::function<long()> task;
        long result = 0;
        void loop() {
            std::unique_lock<std::mutex> l(m);
            tid = gettid();
            cv.notify_all();
            for (;;) {
                cv.wait(l, [&] { return stop || has_task; });
                if (stop) return;
                result = task();
                has_task = false;
                cv.notify_all();
            }
        }
    };
    std::vector<std::unique_ptr<Agent>> agents_;
};

// Argument selecting the case: the first argv entry that is not --expect=...
inline std::string case_arg(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (std::strncmp(argv[i], "--expect=", 9) != 0) return argv[i];
    }
    return "";
}

}  // namespace ct
