// Helpers shared by the thread tests (test/preload/threads only): capability
// edits through the exported capset() (the shim's wrapper when preloaded),
// glibc's own functions reached past the preload, and a failure collector.
#pragma once

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "creds.h"
#include "watchdog.h"

extern "C" int capset(cap_user_header_t, const cap_user_data_t);
extern "C" int capget(cap_user_header_t, cap_user_data_t);

namespace tt {

// ---- failures ----------------------------------------------------------------

class Failures {
public:
    void add(const char *fmt, ...) __attribute__((format(printf, 2, 3))) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        std::lock_guard<std::mutex> g(m_);
        if (list_.size() < 50) list_.push_back(buf);
        count_++;
    }
    bool empty() {
        std::lock_guard<std::mutex> g(m_);
        return count_ == 0;
    }
    // Extra assertions first; then the uniform/diverge verdict of creds.h.
    int finish(pt::Expect expect, const std::string &diff, const char *what) {
        {
            std::lock_guard<std::mutex> g(m_);
            if (count_) {
                std::printf("FAIL %s: %d failed check(s) (shim %s):\n", what, count_,
                            pt::shim_loaded() ? "loaded" : "absent");
                for (auto &s : list_) std::printf("  %s\n", s.c_str());
                if (!diff.empty()) std::printf("thread differences:\n%s", diff.c_str());
                std::fflush(stdout);
                return 1;
            }
        }
        int rc = pt::finish(expect, diff, what);
        std::fflush(stdout);
        return rc;
    }

private:
    std::mutex m_;
    std::vector<std::string> list_;
    int count_ = 0;
};

// ---- capabilities --------------------------------------------------------------

struct Caps {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
};

inline Caps get_caps() {
    Caps c;
    if (capget(&c.h, c.d) != 0) {
        std::perror("capget");
        std::exit(1);
    }
    return c;
}

inline bool bit(const __user_cap_data_struct *d, int cap, unsigned __user_cap_data_struct::*set) {
    return (d[cap / 32].*set) & (1u << (cap % 32));
}

// Set or clear `cap` in the effective set (permitted untouched): repeatable
// forever.  Returns capset's result (errno preserved).
inline int set_effective(int cap, bool on) {
    Caps c = get_caps();
    if (on) c.d[cap / 32].effective |= 1u << (cap % 32);
    else c.d[cap / 32].effective &= ~(1u << (cap % 32));
    return capset(&c.h, c.d);
}

// Drop `cap` from the effective, permitted and inheritable sets.
inline int drop_cap(int cap) {
    Caps c = get_caps();
    unsigned m = ~(1u << (cap % 32));
    c.d[cap / 32].effective &= m;
    c.d[cap / 32].permitted &= m;
    c.d[cap / 32].inheritable &= m;
    return capset(&c.h, c.d);
}

inline bool have_effective(int cap) {
    Caps c = get_caps();
    return bit(c.d, cap, &__user_cap_data_struct::effective);
}

// Caps every test here toggles or drops; root in CI has all of them.
inline const char *need_root_caps() {
    if (geteuid() != 0) return "needs root (CI runs as root)";
    Caps c = get_caps();
    for (int cap : {CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_NICE, CAP_MKNOD, CAP_SYS_PTRACE, CAP_LEASE, CAP_AUDIT_WRITE,
                    CAP_WAKE_ALARM, CAP_SYS_BOOT, CAP_SETPCAP}) {
        if (!bit(c.d, cap, &__user_cap_data_struct::permitted) || !bit(c.d, cap, &__user_cap_data_struct::effective))
            return "a capability the test needs is not held at start";
    }
    if (prctl(PR_CAPBSET_READ, CAP_SYS_BOOT) != 1) return "CAP_SYS_BOOT not in the bounding set";
    return nullptr;
}

// ---- /proc --------------------------------------------------------------------

inline std::vector<int> task_tids() {
    std::vector<int> out;
    if (DIR *d = opendir("/proc/self/task")) {
        while (dirent *e = readdir(d)) {
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9') out.push_back(std::atoi(e->d_name));
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// pt::differences(), minus threads that vanished while being read: an
// exiting thread's status file can open fine and then read empty, which
// pt::read_thread turns into all-zero credentials (no State, no Name).
inline std::string differences() {
    pt::ThreadCreds mine = pt::read_thread(gettid());
    std::string out;
    for (const pt::ThreadCreds &c : pt::read_all()) {
        if (c.state.empty()) continue;
        if (c.key() != mine.key()) {
            out += "thread " + std::to_string(c.tid) + " (" + c.name + ", " + c.state + "): " + c.key() +
                   "\n  caller " + std::to_string(mine.tid) + ": " + mine.key() + "\n";
        }
    }
    return out;
}

// First number of /proc/self/task/<tid>/syscall: the system call the thread
// is blocked in (-1 running, -2 unknown).
inline long current_syscall(int tid) {
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/syscall");
    std::string w;
    if (!(f >> w)) return -2;
    if (w == "running") return -1;
    return std::strtol(w.c_str(), nullptr, 10);
}

// Wait (without a time limit: the watchdog bounds us) until thread `tid`
// sleeps in system call `nr`.
inline void wait_blocked_in(int tid, long nr) {
    for (;;) {
        std::string st;
        try {
            st = pt::read_thread(tid).state;
        } catch (...) {
            return;
        }
        if (!st.empty() && st[0] == 'S' && current_syscall(tid) == nr) return;
        usleep(1000);
    }
}

// Compare one thread with the caller.  In the uniform run it must match; in
// the negative control it must differ (so that the tested thread is one the
// shim had to reach).
inline void expect_tid(Failures &f, pt::Expect expect, int tid, const char *label) {
    pt::ThreadCreds mine = pt::read_thread(gettid());
    pt::ThreadCreds t;
    try {
        t = pt::read_thread(tid);
    } catch (...) {
        f.add("%s thread %d is not in /proc/self/task", label, tid);
        return;
    }
    if (!t.state.empty() && (t.state[0] == 'Z' || t.state[0] == 'X')) {
        f.add("%s thread %d is a zombie (%s)", label, tid, t.state.c_str());
        return;
    }
    bool same = t.key() == mine.key();
    if (expect == pt::Expect::kUniform && !same)
        f.add("%s thread %d kept old credentials: %s (caller %d: %s)", label, tid, t.key().c_str(), mine.tid,
              mine.key().c_str());
    if (expect == pt::Expect::kDiverge && same)
        f.add("control: %s thread %d got the caller's credentials without the shim: %s", label, tid, t.key().c_str());
}

// ---- glibc past the preload ----------------------------------------------------

// dlsym(RTLD_NEXT) from the executable would find the preloaded shim (it comes
// right after the executable in the search order); ask libc.so.6 itself.
template <typename Fn>
Fn libc_fn(const char *name) {
    static void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
    void *p = libc ? dlsym(libc, name) : nullptr;
    Dl_info info{};
    if (!p || !dladdr(p, &info) || !info.dli_fname || !std::strstr(info.dli_fname, "libc.so")) {
        std::printf("cannot find glibc's %s (%s)\n", name, p && info.dli_fname ? info.dli_fname : "null");
        std::exit(1);
    }
    return reinterpret_cast<Fn>(p);
}

inline const char *arg_case(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!std::strncmp(argv[i], "--case=", 7)) return argv[i] + 7;
    }
    return "";
}

inline const char *arg_value(int argc, char **argv, const char *prefix) {
    size_t n = std::strlen(prefix);
    for (int i = 1; i < argc; i++) {
        if (!std::strncmp(argv[i], prefix, n)) return argv[i] + n;
    }
    return nullptr;
}

}  // namespace tt
