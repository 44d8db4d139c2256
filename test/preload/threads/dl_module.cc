// Loaded with dlopen() by discovery --case=dlopen: starts threads from inside
// a library the shim never saw at start-up (pthread_create and std::thread).
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {
std::atomic<int> g_stop{0};
std::atomic<int> g_next{0};     // index of the next thread's tid in g_tids
std::atomic<int> g_started{0};  // threads whose tid is in g_tids
int g_tids[64];
std::vector<pthread_t> g_threads;
std::vector<std::thread> g_std;

void body() {
    // The tid is stored before the thread counts as started: counting first
    // let the caller read a 0 tid now and then (a CI failure).
    int i = g_next.fetch_add(1);
    g_tids[i] = static_cast<int>(syscall(SYS_gettid));
    g_started.fetch_add(1);
    syscall(SYS_futex, &g_started, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
    while (!g_stop.load()) syscall(SYS_futex, &g_stop, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

void *pbody(void *) {
    body();
    return nullptr;
}
}  // namespace

// n pthreads plus one std::thread; their tids go to `tids`; returns how many.
extern "C" __attribute__((visibility("default"))) int dl_start_threads(int n, int *tids) {
    for (int i = 0; i < n && i < 32; i++) {
        pthread_t t;
        if (pthread_create(&t, nullptr, pbody, nullptr) == 0) g_threads.push_back(t);
    }
    g_std.emplace_back(body);
    int want = static_cast<int>(g_threads.size() + g_std.size());
    for (;;) {
        int s = g_started.load();
        if (s >= want) break;
        syscall(SYS_futex, &g_started, FUTEX_WAIT_PRIVATE, s, nullptr, nullptr, 0);
    }
    for (int i = 0; i < want; i++) tids[i] = g_tids[i];
    return want;
}

extern "C" __attribute__((visibility("default"))) void dl_stop_threads() {
    g_stop.store(1);
    syscall(SYS_futex, &g_stop, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
    for (pthread_t t : g_threads) pthread_join(t, nullptr);
    for (auto &t : g_std) t.join();
    g_threads.clear();
    g_std.clear();
}
