// A process for psxaudit(1) to inspect: N sleeping threads, one of them
// named with characters that JSON must escape.  With --diverge one thread
// changes its own credentials with raw system calls (which libpsxshim does
// not intercept): it sets no_new_privs and, when it can, drops CAP_NET_RAW.
// Prints "ready" once everything is in place and sleeps until killed.
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
pthread_barrier_t g_ready;
bool g_diverge = false;

void *sleeper(void *arg) {
    if (arg) {
        pthread_setname_np(pthread_self(), "q\"b\\t\x01z");
        if (g_diverge) {
            syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
            __user_cap_data_struct d[2];
            if (syscall(SYS_capget, &h, d) == 0 && (d[0].permitted & (1u << CAP_NET_RAW))) {
                d[0].permitted &= ~(1u << CAP_NET_RAW);
                d[0].effective &= ~(1u << CAP_NET_RAW);
                d[0].inheritable &= ~(1u << CAP_NET_RAW);
                syscall(SYS_capset, &h, d);
            }
        }
    }
    pthread_barrier_wait(&g_ready);
    for (;;) pause();
    return nullptr;
}
}  // namespace

int main(int argc, char **argv) {
    int n = 3;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--diverge")) g_diverge = true;
        else n = std::atoi(argv[i]);
    }
    pthread_barrier_init(&g_ready, nullptr, static_cast<unsigned>(n + 1));
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, nullptr, sleeper, i == n - 1 ? &g_ready : nullptr) != 0) return 2;
    }
    pthread_barrier_wait(&g_ready);
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) pause();
}
