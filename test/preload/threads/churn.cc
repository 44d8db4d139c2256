// Churn: several creator threads start short-lived threads continuously
// (joined, detached, std::thread, some making a grandchild, some ending in
// pthread_exit) while the main thread toggles an effective capability with
// capset (--calls=N, default 3000) and drops bounding capabilities.  After every
// call all live threads must agree (new threads inherit from changed
// threads), checked every few calls while the churn goes on, and at the end.
// Bounded to about 8 s of calls (--seconds=N to change).
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <thread>

#include "tt.h"

namespace {

pt::Expect g_expect;
tt::Failures g_fail;
std::atomic<bool> g_stop{false};
std::atomic<long> g_created{0};

void *grandchild(void *) { return nullptr; }

void *worker(void *p) {
    long kind = reinterpret_cast<long>(p);
    for (int i = 0; i < static_cast<int>(kind % 5) * 500; i++) __asm__ volatile("");
    if (kind % 7 == 0) {
        pthread_t g;
        if (pthread_create(&g, nullptr, grandchild, nullptr) == 0) {
            g_created++;
            pthread_join(g, nullptr);
        }
    }
    if (kind % 3 == 0) pthread_exit(nullptr);
    return nullptr;
}

void creator(int id) {
    long n = id;
    while (!g_stop.load()) {
        pthread_t t[4];
        int made = 0;
        for (int i = 0; i < 4; i++, n += 3) {
            if (pthread_create(&t[made], nullptr, worker, reinterpret_cast<void *>(n)) == 0) {
                g_created++;
                if (n % 4 == 1) pthread_detach(t[made]);
                else made++;
            }
        }
        std::thread s([] {});
        g_created++;
        s.join();
        for (int i = 0; i < made; i++) pthread_join(t[i], nullptr);
    }
}

double now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

}  // namespace

int main(int argc, char **argv) {
    g_expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    const char *sec = tt::arg_value(argc, argv, "--seconds=");
    double budget = sec ? std::atof(sec) : 8.0;
    const char *ncalls = tt::arg_value(argc, argv, "--calls=");
    int max_calls = ncalls ? std::atoi(ncalls) : 3000;
    pt::Watchdog wd(static_cast<int>(budget) + 40, "churn");

    pt::Sleepers sleepers(4);
    std::vector<std::thread> creators;
    for (int i = 0; i < 3; i++) creators.emplace_back(creator, i);
    while (g_created.load() < 50) usleep(1000);

    double t0 = now();
    int calls = 0, checks = 0, bset = 0;
    for (; calls < max_calls && now() - t0 < budget; calls++) {
        if (tt::set_effective(CAP_NET_ADMIN, calls % 2) != 0) g_fail.add("capset #%d: %s", calls, strerror(errno));
        if (calls % 200 == 100 && bset < 8) {
            int cap = CAP_SYS_BOOT - bset++;
            if (prctl(PR_CAPBSET_DROP, cap) != 0) g_fail.add("PR_CAPBSET_DROP %d: %s", cap, strerror(errno));
        }
        if (calls % 25 == 0 && g_expect == pt::Expect::kUniform) {
            checks++;
            std::string d = tt::differences();
            if (!d.empty()) g_fail.add("after call %d, during the churn:\n%s", calls, d.c_str());
        }
    }
    double elapsed = now() - t0;
    if (tt::drop_cap(CAP_NET_RAW) != 0) g_fail.add("capset: %s", strerror(errno));
    std::string during = tt::differences();  // creators still running
    g_stop = true;
    for (auto &t : creators) t.join();
    std::string after = tt::differences();
    std::printf("%d calls in %.2f s while %ld threads were created and exited; %d mid-way checks\n", calls, elapsed,
                g_created.load(), checks);
    if (g_expect == pt::Expect::kUniform && !during.empty())
        g_fail.add("right after the last call, creators still running:\n%s", during.c_str());
    for (int tid : sleepers.tids()) tt::expect_tid(g_fail, g_expect, tid, "sleeping pthread");
    return g_fail.finish(g_expect, after, "churn: threads created and exiting during repeated calls");
}
