#include "creds.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace pt {

std::string ThreadCreds::key() const {
    std::ostringstream o;
    o << "uid=" << uid[0] << "," << uid[1] << "," << uid[2] << " gid=" << gid[0] << "," << gid[1] << ","
      << gid[2] << " groups=";
    for (gid_t g : groups) o << g << ",";
    o << std::hex << " inh=" << cap_inh << " prm=" << cap_prm << " eff=" << cap_eff << " bnd=" << cap_bnd
      << " amb=" << cap_amb << std::dec << " nnp=" << no_new_privs;
    return o.str();
}

ThreadCreds read_thread(int tid) {
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/status");
    if (!f) throw std::runtime_error("thread " + std::to_string(tid) + " vanished");
    ThreadCreds c;
    c.tid = tid;
    std::string line;
    while (std::getline(f, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, colon);
        std::istringstream v(line.substr(colon + 1));
        if (k == "Name") v >> c.name;
        else if (k == "State") std::getline(v >> std::ws, c.state);
        else if (k == "Uid") v >> c.uid[0] >> c.uid[1] >> c.uid[2] >> c.uid[3];
        else if (k == "Gid") v >> c.gid[0] >> c.gid[1] >> c.gid[2] >> c.gid[3];
        else if (k == "Groups") { gid_t g; while (v >> g) c.groups.push_back(g); }
        else if (k == "CapInh") v >> std::hex >> c.cap_inh;
        else if (k == "CapPrm") v >> std::hex >> c.cap_prm;
        else if (k == "CapEff") v >> std::hex >> c.cap_eff;
        else if (k == "CapBnd") v >> std::hex >> c.cap_bnd;
        else if (k == "CapAmb") v >> std::hex >> c.cap_amb;
        else if (k == "NoNewPrivs") v >> c.no_new_privs;
        else if (k == "Seccomp") v >> c.seccomp;
        else if (k == "SigBlk") v >> std::hex >> c.sig_blk;
    }
    // A thread that exits while we read leaves an empty file, not zeroes.
    if (c.state.empty()) throw std::runtime_error("thread " + std::to_string(tid) + " vanished");
    return c;
}

std::vector<ThreadCreds> read_all() {
    std::vector<ThreadCreds> out;
    DIR *d = opendir("/proc/self/task");
    if (!d) throw std::runtime_error("/proc/self/task unreadable");
    while (dirent *e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        try {
            ThreadCreds c = read_thread(std::atoi(e->d_name));
            if (!c.state.empty() && (c.state[0] == 'Z' || c.state[0] == 'X')) continue;
            out.push_back(c);
        } catch (const std::runtime_error &) {
            // exited while we listed: nothing to compare
        }
    }
    closedir(d);
    return out;
}

std::string differences() {
    int self = static_cast<int>(syscall(SYS_gettid));
    ThreadCreds mine = read_thread(self);
    std::string out;
    for (const ThreadCreds &c : read_all()) {
        if (c.key() != mine.key()) {
            out += "thread " + std::to_string(c.tid) + " (" + c.name + "): " + c.key() + "\n  caller " +
                   std::to_string(self) + ": " + mine.key() + "\n";
        }
    }
    return out;
}

// ---- raw clone threads --------------------------------------------------------

namespace {

// Shared with the raw threads, which may use nothing but these words and raw
// system calls (they share the creator's TLS, so no errno, no libc).
struct RawShared {
    std::atomic<int> request{0};  // bumped to ask for an answer; -1 to stop
    std::atomic<int> answered{0};
    RawAnswer answers[64];
    std::atomic<int> count{0};
};
RawShared g_raw;
std::vector<std::pair<void *, size_t>> g_raw_stacks;

long raw(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

int raw_main(void *arg) {
    int slot = static_cast<int>(reinterpret_cast<long>(arg));
    int tid = static_cast<int>(raw(SYS_gettid));
    int seen = 0;
    for (;;) {
        int r = g_raw.request.load();
        if (r == -1) break;
        if (r != seen) {
            seen = r;
            g_raw.answers[slot] = {tid, raw(SYS_prctl, PR_GET_KEEPCAPS), raw(SYS_prctl, PR_GET_SECUREBITS)};
            g_raw.answered.fetch_add(1);
            raw(SYS_futex, reinterpret_cast<long>(&g_raw.answered), FUTEX_WAKE_PRIVATE, 1);
            continue;
        }
        raw(SYS_futex, reinterpret_cast<long>(&g_raw.request), FUTEX_WAIT_PRIVATE, r, 0);
    }
    g_raw.answers[slot].tid = 0;
    raw(SYS_exit, 0);
    return 0;
}

}  // namespace

int start_raw_thread() {
    int slot = g_raw.count.fetch_add(1);
    if (slot >= 64) throw std::runtime_error("too many raw threads");
    size_t size = 256 * 1024;
    void *stack = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) throw std::runtime_error("mmap");
    g_raw_stacks.emplace_back(stack, size);
    g_raw.answers[slot] = {-1, -1, -1};
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    int tid = clone(raw_main, static_cast<char *>(stack) + size, flags, reinterpret_cast<void *>(static_cast<long>(slot)));
    if (tid < 0) throw std::runtime_error(std::string("clone: ") + strerror(errno));
    // Wait until it is running (it answers the first request).
    std::vector<RawAnswer> a = query_raw_threads();
    (void)a;
    return tid;
}

std::vector<RawAnswer> query_raw_threads() {
    int n = g_raw.count.load();
    int before = g_raw.answered.load();
    g_raw.request.fetch_add(1);
    raw(SYS_futex, reinterpret_cast<long>(&g_raw.request), FUTEX_WAKE_PRIVATE, 0x7fffffff);
    for (;;) {
        int a = g_raw.answered.load();
        if (a - before >= n) break;
        raw(SYS_futex, reinterpret_cast<long>(&g_raw.answered), FUTEX_WAIT_PRIVATE, a, 0);
    }
    return std::vector<RawAnswer>(g_raw.answers, g_raw.answers + n);
}

void stop_raw_threads() {
    g_raw.request.store(-1);
    raw(SYS_futex, reinterpret_cast<long>(&g_raw.request), FUTEX_WAKE_PRIVATE, 0x7fffffff);
    for (int i = 0; i < g_raw.count.load(); i++) {
        while (g_raw.answers[i].tid != 0) usleep(1000);
    }
    usleep(10000);  // let the kernel finish the exits before the stacks go
}

// ---- sleeping pthreads ------------------------------------------------------

struct Sleepers::Impl {
    std::mutex m;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
    bool stop = false;
    int request = 0;
    int answered = 0;
    std::vector<RawAnswer> answers;
    std::vector<pthread_t> threads;
    std::vector<int> tids;
    int started = 0;

    static void *run(void *p) {
        auto *self = static_cast<Impl *>(p);
        pthread_mutex_lock(&self->pm);
        int slot = self->started++;
        self->tids[slot] = static_cast<int>(syscall(SYS_gettid));
        pthread_cond_broadcast(&self->cv);
        int seen = 0;
        while (!self->stop) {
            if (self->request != seen) {
                seen = self->request;
                self->answers[slot] = {self->tids[slot], prctl(PR_GET_KEEPCAPS), prctl(PR_GET_SECUREBITS)};
                self->answered++;
                pthread_cond_broadcast(&self->cv);
                continue;
            }
            pthread_cond_wait(&self->cv, &self->pm);
        }
        pthread_mutex_unlock(&self->pm);
        return nullptr;
    }
};

Sleepers::Sleepers(int n) : impl_(new Impl) {
    impl_->answers.resize(n);
    impl_->tids.resize(n);
    impl_->threads.resize(n);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&impl_->threads[i], nullptr, Impl::run, impl_) != 0) throw std::runtime_error("pthread_create");
    }
    pthread_mutex_lock(&impl_->pm);
    while (impl_->started < n) pthread_cond_wait(&impl_->cv, &impl_->pm);
    pthread_mutex_unlock(&impl_->pm);
}

Sleepers::~Sleepers() {
    pthread_mutex_lock(&impl_->pm);
    impl_->stop = true;
    pthread_cond_broadcast(&impl_->cv);
    pthread_mutex_unlock(&impl_->pm);
    for (pthread_t t : impl_->threads) pthread_join(t, nullptr);
    delete impl_;
}

std::vector<RawAnswer> Sleepers::query() {
    pthread_mutex_lock(&impl_->pm);
    int want = impl_->answered + static_cast<int>(impl_->threads.size());
    impl_->request++;
    pthread_cond_broadcast(&impl_->cv);
    while (impl_->answered < want) pthread_cond_wait(&impl_->cv, &impl_->pm);
    std::vector<RawAnswer> out = impl_->answers;
    pthread_mutex_unlock(&impl_->pm);
    return out;
}

std::vector<int> Sleepers::tids() const { return impl_->tids; }

// ---- plumbing -----------------------------------------------------------------

Expect parse_expect(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--expect=uniform")) return Expect::kUniform;
        if (!strcmp(argv[i], "--expect=diverge")) return Expect::kDiverge;
    }
    return shim_loaded() ? Expect::kUniform : Expect::kDiverge;
}

bool shim_loaded() { return dlsym(RTLD_DEFAULT, "psxshim_active") != nullptr; }

long self_status_number(const char *field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    size_t n = std::strlen(field);
    while (std::getline(f, line))
        if (line.compare(0, n, field) == 0) return std::strtol(line.c_str() + n, nullptr, 10);
    return -1;
}

int finish(Expect expect, const std::string &diff, const char *what) {
    bool uniform = diff.empty();
    if (expect == Expect::kUniform) {
        if (uniform) {
            std::printf("PASS %s: every thread agrees (shim %s)\n", what, shim_loaded() ? "loaded" : "absent");
            return 0;
        }
        std::printf("FAIL %s: threads disagree (shim %s):\n%s", what, shim_loaded() ? "loaded" : "absent", diff.c_str());
        return 1;
    }
    if (!uniform) {
        std::printf("PASS %s: negative control shows the divergence without the shim:\n%s", what, diff.c_str());
        return 0;
    }
    std::printf("FAIL %s: negative control: expected a thread to keep the old credentials (shim %s)\n", what,
                shim_loaded() ? "loaded" : "absent");
    return 1;
}

int skip(const char *why) {
    std::printf("SKIP: %s\n", why);
    return 77;
}

}  // namespace pt
