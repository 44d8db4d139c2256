// No thread runs the same call twice, and every thread runs it once, while
// threads are being created (by pthread_create and by raw clone) and exit
// during the call.  The call is dup(2) of a marker pipe, through
// psxshim_syscall(): every execution leaves exactly one new descriptor, so
// after each call the number of new descriptors must equal the number of
// threads psxshim reports having reached -- and that must be every thread
// still alive.  A thread reached twice would leave two.
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <vector>

#include "creds.h"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<long> g_born{0};

void *short_lived(void *) {
    g_born++;
    usleep(200);
    return nullptr;
}

// Creates threads that create threads, continuously.
void *spawner(void *) {
    while (!g_stop) {
        pthread_t t;
        if (pthread_create(&t, nullptr, short_lived, nullptr) == 0) pthread_detach(t);
        usleep(100);
    }
    return nullptr;
}

// Descriptors that refer to the marker pipe, other than its two ends (both
// ends of a pipe share one inode).
std::vector<int> copies_of(int keep, int other_end) {
    struct stat want;
    fstat(keep, &want);
    std::vector<int> out;
    DIR *d = opendir("/proc/self/fd");
    int dfd = dirfd(d);
    while (dirent *e = readdir(d)) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == keep || fd == other_end || fd == dfd) continue;
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_ino == want.st_ino && st.st_dev == want.st_dev) out.push_back(fd);
    }
    closedir(d);
    return out;
}

}  // namespace

int main(int, char **) {
    using SyscallFn = long (*)(long, long, long, long);
    using CountFn = int (*)();
    using SensitivityFn = int (*)(int);
    auto all_threads = reinterpret_cast<SyscallFn>(dlsym(RTLD_DEFAULT, "psx_syscall3"));
    auto reached = reinterpret_cast<CountFn>(dlsym(RTLD_DEFAULT, "psxshim_last_thread_count"));
    auto sensitivity = reinterpret_cast<SensitivityFn>(dlsym(RTLD_DEFAULT, "psx_set_sensitivity"));
    if (!all_threads || !reached || !sensitivity) return pt::skip("psxshim is not loaded (this case has no negative control)");
    if (sensitivity(0) != 0) return std::printf("FAIL: psx_set_sensitivity(PSX_IGNORE)\n"), 1;

    int marker[2];
    if (pipe(marker) != 0) return perror("pipe"), 1;
    pt::Sleepers sleepers(8);
    pt::start_raw_thread();
    pt::start_raw_thread();
    pthread_t spawners[2];
    for (auto &s : spawners) pthread_create(&s, nullptr, spawner, nullptr);

    int failures = 0;
    long total = 0;
    for (int round = 0; round < 300 && failures < 5; round++) {
        long fd = all_threads(SYS_dup, marker[0], 0, 0);
        if (fd < 0) return perror("psx_syscall3(dup)"), 1;
        std::vector<int> copies = copies_of(marker[0], marker[1]);
        int n = reached();
        if (static_cast<int>(copies.size()) != n) {
            std::printf("FAIL round %d: %zu threads ran dup, psxshim reports reaching %d (caller got %ld):", round, copies.size(), n, fd);
            for (int c : copies) std::printf(" %d", c);
            std::printf("\n");
            failures++;
        }
        if (n < 1 + 8 + 2 + 2) {
            std::printf("FAIL round %d: only %d threads reached; at least 13 are always alive\n", round, n);
            failures++;
        }
        total += n;
        for (int c : copies) close(c);
    }
    g_stop = true;
    for (auto &s : spawners) pthread_join(s, nullptr);
    pt::stop_raw_threads();
    if (failures) return 1;
    std::printf("PASS: 300 calls, %ld thread executions, each thread exactly once per call, "
                "%ld threads born meanwhile\n", total, g_born.load());
    return 0;
}
