// Linked into ctor_thread: its constructor starts threads before the
// preloaded shim's own constructor has run (the executable's dependencies
// are initialised first).  One thread goes through the exported
// pthread_create (the shim's wrapper when preloaded), one through glibc's
// pthread_create found with dlsym(RTLD_NEXT) from this library (past the
// shim, which precedes us in the search order), so the shim can only find it
// through /proc.
#include <dlfcn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {
std::atomic<int> g_stop{0};
std::atomic<int> g_started{0};
int g_tids[2];
pthread_t g_threads[2];
int g_count = 0;
int g_shim_init_seen = -1;

void *body(void *p) {
    g_tids[reinterpret_cast<long>(p)] = static_cast<int>(syscall(SYS_gettid));
    g_started.fetch_add(1);
    syscall(SYS_futex, &g_started, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
    while (!g_stop.load()) syscall(SYS_futex, &g_stop, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    return nullptr;
}

using CreateFn = int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

__attribute__((constructor)) void start_threads_early() {
    // Does the process already contain the shim's marker symbol?  (Not
    // called: calling it would initialise the shim.)
    g_shim_init_seen = dlsym(RTLD_DEFAULT, "psxshim_active") != nullptr;
    auto real = reinterpret_cast<CreateFn>(dlsym(RTLD_NEXT, "pthread_create"));
    if (real && real(&g_threads[g_count], nullptr, body, reinterpret_cast<void *>(static_cast<long>(g_count))) == 0)
        g_count++;
    if (pthread_create(&g_threads[g_count], nullptr, body, reinterpret_cast<void *>(static_cast<long>(g_count))) == 0)
        g_count++;
    for (;;) {
        int s = g_started.load();
        if (s >= g_count) break;
        syscall(SYS_futex, &g_started, FUTEX_WAIT_PRIVATE, s, nullptr, nullptr, 0);
    }
}
}  // namespace

// The tids of the constructor's threads (first: glibc's pthread_create
// directly; second: the exported one).  Returns how many.
extern "C" __attribute__((visibility("default"))) int ctor_thread_tids(int *out) {
    for (int i = 0; i < g_count; i++) out[i] = g_tids[i];
    return g_count;
}

extern "C" __attribute__((visibility("default"))) int ctor_saw_shim() { return g_shim_init_seen; }

extern "C" __attribute__((visibility("default"))) void ctor_stop_threads() {
    g_stop.store(1);
    syscall(SYS_futex, &g_stop, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
    for (int i = 0; i < g_count; i++) pthread_join(g_threads[i], nullptr);
}
