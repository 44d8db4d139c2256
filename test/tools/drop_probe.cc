// A privileged program that drops its privileges the way a daemon does,
// from one worker thread while other threads run, then reports whether every
// thread of the process agrees (from /proc/self/task/*/status).
//
//   drop_probe [--threads N] [--uid U]
//
// Run as root, or installed set-user-ID root and started by another user.
// The drop: PR_CAPBSET_DROP of every capability, setgroups(0), setresgid and
// setresuid to the target ids (the real ids; U and U when the real uid is
// 0), capset to nothing, PR_SET_NO_NEW_PRIVS.  glibc alone broadcasts the
// set*id and setgroups calls to its threads but not the bounding set or
// no_new_privs, so without libpsxshim the other threads keep those: that is
// the negative control.
//
// Prints "psxshim: active|inactive", one line per differing thread, then
// "verdict: agree" (exit 0) or "verdict: diverge" (exit 1); 2 on error.
// Self-contained on purpose: .ci/setuid-test compiles it on its own.
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

extern "C" int psxshim_active(void) __attribute__((weak));
extern "C" int capset(cap_user_header_t, const cap_user_data_t);

namespace {

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
bool g_done = false;
bool g_drop_finished = false;
bool g_dropped = false;  // the dropping thread really lost its privileges
uid_t g_uid;
gid_t g_gid;
int g_drop_error = 0;
const char *g_drop_step = "";

void *sleeper(void *) {
    pthread_mutex_lock(&g_mu);
    while (!g_done) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    return nullptr;
}

bool step(const char *what, int rc) {
    if (rc != 0 && !g_drop_error) {
        g_drop_error = errno;
        g_drop_step = what;
    }
    return rc == 0;
}

void drop() {
    long last = 0;
    {
        std::ifstream f("/proc/sys/kernel/cap_last_cap");
        if (!(f >> last)) last = 40;
    }
    for (long c = 0; c <= last; c++)
        if (!step("PR_CAPBSET_DROP", prctl(PR_CAPBSET_DROP, c, 0, 0, 0))) return;
    if (!step("setgroups", setgroups(0, nullptr))) return;
    if (!step("setresgid", setresgid(g_gid, g_gid, g_gid))) return;
    if (!step("setresuid", setresuid(g_uid, g_uid, g_uid))) return;
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (!step("capset", capset(&h, d))) return;
    if (!step("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))) return;
    // This thread must really have lost everything, or "agree" would prove
    // nothing.
    g_dropped = geteuid() == g_uid && prctl(PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0) == 0 &&
                prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
}

// Drops, then stays alive (like the sleepers) so that its credentials are
// compared with everybody else's.
void *dropper(void *) {
    drop();
    pthread_mutex_lock(&g_mu);
    g_drop_finished = true;
    pthread_cond_broadcast(&g_cv);
    while (!g_done) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    return nullptr;
}

// The fields a credential drop must make equal on every thread.
std::string creds_of(const std::string &status_path, bool *zombie) {
    std::ifstream f(status_path);
    std::string line, key;
    *zombie = false;
    while (std::getline(f, line)) {
        if (line.rfind("State:", 0) == 0 && line.find('Z') != std::string::npos) *zombie = true;
        for (const char *k : {"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
                              "NoNewPrivs:"})
            if (line.rfind(k, 0) == 0) key += line + "\n";
    }
    return key;
}

}  // namespace

int main(int argc, char **argv) {
    int nthreads = 4;
    long target = -1;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
            nthreads = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--uid") && i + 1 < argc)
            target = std::atol(argv[++i]);
        else {
            std::fprintf(stderr, "usage: drop_probe [--threads N] [--uid U]\n");
            return 2;
        }
    }
    std::printf("psxshim: %s\n", (&psxshim_active && psxshim_active()) ? "active" : "inactive");
    if (geteuid() != 0) {
        std::printf("error: needs effective uid 0 (run as root or set-user-ID root)\n");
        return 2;
    }
    g_uid = getuid();
    g_gid = getgid();
    if (g_uid == 0) {
        g_uid = target >= 0 ? static_cast<uid_t>(target) : 65534;
        g_gid = target >= 0 ? static_cast<gid_t>(target) : 65534;
    }

    std::vector<pthread_t> threads(static_cast<size_t>(nthreads));
    for (auto &t : threads)
        if (pthread_create(&t, nullptr, sleeper, nullptr) != 0) return std::perror("pthread_create"), 2;
    pthread_t d;
    if (pthread_create(&d, nullptr, dropper, nullptr) != 0) return std::perror("pthread_create"), 2;
    pthread_mutex_lock(&g_mu);
    while (!g_drop_finished) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);

    std::map<std::string, std::vector<std::string>> groups;  // credentials -> tids
    int seen = 0;
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return std::perror("/proc/self/task"), 2;
    while (dirent *e = readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        bool zombie;
        std::string k = creds_of(std::string("/proc/self/task/") + e->d_name + "/status", &zombie);
        if (!zombie && !k.empty()) {
            groups[k].push_back(e->d_name);
            seen++;
        }
    }
    closedir(dir);

    bool dropped = g_dropped;
    std::printf("threads: %d, distinct credential sets: %zu, dropped: %s\n", seen, groups.size(),
                dropped ? "yes" : "NO");
    if (groups.size() > 1)
        for (auto &[k, tids] : groups) {
            std::printf("tids");
            for (auto &t : tids) std::printf(" %s", t.c_str());
            std::printf(":\n%s", k.c_str());
        }

    pthread_mutex_lock(&g_mu);
    g_done = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    for (auto &t : threads) pthread_join(t, nullptr);
    pthread_join(d, nullptr);

    if (g_drop_error) {
        std::printf("error: %s: %s\n", g_drop_step, std::strerror(g_drop_error));
        return 2;
    }
    if (!dropped) {
        std::printf("error: the dropping thread still holds privileges\n");
        return 2;
    }
    bool agree = groups.size() == 1;
    std::printf("verdict: %s\n", agree ? "agree" : "diverge");
    return agree ? 0 : 1;
}
