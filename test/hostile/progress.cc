// Busy threads keep running between back-to-back broadcasts.
//
// Threads that are busy in user code when a broadcast reaches them may park
// in the handler until the broadcast ends (see broadcast.cc).  Parking must
// never turn into starvation: a thread released only once the next
// broadcast had already queued its signal takes that request before it runs
// one instruction of its own.  An engine revision did exactly that; under
// ASan the soak test's main thread then stopped for minutes, in the plain
// build such threads ran at about a thousandth of their rate.  With four CPU
// hogs beside it, this test still failed in 5 of 40 runs of one series (a
// spinner with no progress at all): the main thread parked in every
// broadcast, and a parked thread whose release found the next signal queued
// parked again, up to hundreds of times in a row (see starved_by_parking in
// broadcast.cc).  Here the main
// thread and four pthreads spin, counting, while another thread makes 3,000
// broadcasts back to back; every spinner's count must grow between the first
// and the second third of them.  That is a liveness check, not a fairness
// one: no rate or timing is asserted.  A final capset must reach every thread
// (the negative control, without the shim, must show a thread left behind).
// --spinners=N --broadcasts=M change the cast: with many more spinners than
// CPUs, the parked threads pass their release on to each other instead of
// all being woken by the caller (broadcast.cc), and must still all run.
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

constexpr int kMaxSpinners = 64;
int g_spinners = 5;  // the main thread and four pthreads
int g_broadcasts = 3000;

std::atomic<unsigned long> g_count[kMaxSpinners];
std::atomic<bool> g_done{false};  // the broadcasts are over: the main thread stops spinning
std::atomic<bool> g_stop{false};  // the last check is done: the pthreads stop
unsigned long g_seen[2][kMaxSpinners];
int g_failed_calls = 0;

void spin(int index, const std::atomic<bool> &until) {
    while (!until.load(std::memory_order_relaxed)) g_count[index].fetch_add(1, std::memory_order_relaxed);
}

void *spinner(void *arg) {
    spin(static_cast<int>(reinterpret_cast<long>(arg)), g_stop);
    return nullptr;
}

void *broadcaster(void *) {
    int third = g_broadcasts / 3;
    for (int i = 1; i <= g_broadcasts; i++) {
        if (prctl(PR_SET_KEEPCAPS, i & 1, 0, 0, 0) != 0) g_failed_calls++;
        if (i == third || i == 2 * third) {
            for (int s = 0; s < g_spinners; s++) g_seen[i / third - 1][s] = g_count[s].load(std::memory_order_relaxed);
        }
    }
    g_done.store(true);
    return nullptr;
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_NET_RAW}); rc >= 0) return rc;
    pt::Watchdog wd(240, "progress");

    g_spinners = std::atoi(hx::arg(argc, argv, "spinners", "5").c_str());
    g_broadcasts = std::atoi(hx::arg(argc, argv, "broadcasts", "3000").c_str());
    if (g_spinners < 2 || g_spinners > kMaxSpinners || g_broadcasts < 3) {
        return std::printf("FAIL: --spinners must be 2..%d and --broadcasts at least 3\n", kMaxSpinners), 1;
    }
    pthread_t spinners[kMaxSpinners], bc;
    for (long i = 1; i < g_spinners; i++) pthread_create(&spinners[i - 1], nullptr, spinner, reinterpret_cast<void *>(i));
    for (int s = 1; s < g_spinners; s++) {
        while (g_count[s].load(std::memory_order_relaxed) == 0) usleep(1000);  // every one is spinning
    }
    pthread_create(&bc, nullptr, broadcaster, nullptr);
    spin(0, g_done);
    pthread_join(bc, nullptr);

    int starved = 0;
    for (int s = 0; s < g_spinners; s++) {
        unsigned long grew = g_seen[1][s] - g_seen[0][s];
        std::printf("spinner %d (%s): %lu iterations between broadcast %d and %d\n", s,
                    s == 0 ? "main thread" : "pthread", grew, g_broadcasts / 3, 2 * (g_broadcasts / 3));
        starved += grew == 0;
    }
    // The last change, while the spinners still exist.
    int last = hx::drop_cap(CAP_NET_RAW);
    std::string diff = pt::differences();
    g_stop.store(true);
    for (int i = 0; i + 1 < g_spinners; i++) pthread_join(spinners[i], nullptr);
    wd.disarm();

    if (g_failed_calls || last != 0) return std::printf("FAIL: a wrapped call failed\n"), 1;
    // Without the shim the 1,000 calls take microseconds, too short a window
    // to expect every spinner on a CPU; the control only shows the divergence.
    if (starved && expect == pt::Expect::kUniform) {
        return std::printf("FAIL: %d of %d busy threads made no progress during the broadcasts\n", starved, g_spinners), 1;
    }
    return pt::finish(expect, diff, "busy threads progress between broadcasts, final capset reaches every thread");
}
