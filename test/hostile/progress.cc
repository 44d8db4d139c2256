// Busy threads keep running between back-to-back broadcasts.
//
// Threads that are busy in user code when a broadcast reaches them may park
// in the handler until the broadcast ends (see broadcast.cc).  Parking must
// never turn into starvation: a thread released only once the next
// broadcast had already queued its signal takes that request before it runs
// one instruction of its own.  An engine revision did exactly that; under
// ASan the soak test's main thread then stopped for minutes, in the plain
// build such threads ran at about a thousandth of their rate.  Here the main
// thread and four pthreads spin, counting, while a fifth thread makes 3,000
// broadcasts back to back; every spinner's count must grow between broadcast
// 1,000 and broadcast 2,000.  That is a liveness check, not a fairness one:
// no rate or timing is asserted.  A final capset must reach every thread
// (the negative control, without the shim, must show a thread left behind).
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

constexpr int kSpinners = 5;  // the main thread and four pthreads
constexpr int kBroadcasts = 3000;

std::atomic<unsigned long> g_count[kSpinners];
std::atomic<bool> g_done{false};  // the broadcasts are over: the main thread stops spinning
std::atomic<bool> g_stop{false};  // the last check is done: the pthreads stop
unsigned long g_seen[2][kSpinners];
int g_failed_calls = 0;

void spin(int index, const std::atomic<bool> &until) {
    while (!until.load(std::memory_order_relaxed)) g_count[index].fetch_add(1, std::memory_order_relaxed);
}

void *spinner(void *arg) {
    spin(static_cast<int>(reinterpret_cast<long>(arg)), g_stop);
    return nullptr;
}

void *broadcaster(void *) {
    for (int i = 1; i <= kBroadcasts; i++) {
        if (prctl(PR_SET_KEEPCAPS, i & 1, 0, 0, 0) != 0) g_failed_calls++;
        if (i == 1000 || i == 2000) {
            for (int s = 0; s < kSpinners; s++) g_seen[i / 1000 - 1][s] = g_count[s].load(std::memory_order_relaxed);
        }
    }
    g_done.store(true);
    return nullptr;
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_NET_RAW}); rc >= 0) return rc;
    pid_t wd = hx::start_watchdog(240, "progress");

    pthread_t spinners[kSpinners - 1], bc;
    for (long i = 1; i < kSpinners; i++) pthread_create(&spinners[i - 1], nullptr, spinner, reinterpret_cast<void *>(i));
    for (int s = 1; s < kSpinners; s++) {
        while (g_count[s].load(std::memory_order_relaxed) == 0) usleep(1000);  // every one is spinning
    }
    pthread_create(&bc, nullptr, broadcaster, nullptr);
    spin(0, g_done);
    pthread_join(bc, nullptr);

    int starved = 0;
    for (int s = 0; s < kSpinners; s++) {
        unsigned long grew = g_seen[1][s] - g_seen[0][s];
        std::printf("spinner %d (%s): %lu iterations between broadcast 1,000 and 2,000\n", s,
                    s == 0 ? "main thread" : "pthread", grew);
        starved += grew == 0;
    }
    // The last change, while the spinners still exist.
    int last = hx::drop_cap(CAP_NET_RAW);
    std::string diff = pt::differences();
    g_stop.store(true);
    for (pthread_t t : spinners) pthread_join(t, nullptr);
    hx::stop_watchdog(wd);

    if (g_failed_calls || last != 0) return std::printf("FAIL: a wrapped call failed\n"), 1;
    // Without the shim the 1,000 calls take microseconds, too short a window
    // to expect every spinner on a CPU; the control only shows the divergence.
    if (starved && expect == pt::Expect::kUniform) {
        return std::printf("FAIL: %d of %d busy threads made no progress during the broadcasts\n", starved, kSpinners), 1;
    }
    return pt::finish(expect, diff, "busy threads progress between broadcasts, final capset reaches every thread");
}
