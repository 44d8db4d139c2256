#include "engine/registry.h"

#include <time.h>

#include "engine/chunked.h"

namespace psxshim::registry {

namespace {
// 256 slots (16 KiB) per chunk, up to 4M threads: the kernel's PID_MAX_LIMIT.
constinit ChunkedArray<Slot, 8, 16384> g_slots;
// Indices [0, high water) have been handed out at least once.
constinit std::atomic<int> g_high_water{0};
// Where the last slot was freed: the next reserve() usually finds it there,
// so create+join loops cost O(1) however many threads are alive.
constinit std::atomic<int> g_free_hint{0};

// Take a free slot, bump its generation and mark it reserved.
int claim(unsigned *gen) {
    int hint = g_free_hint.load(std::memory_order_relaxed);
    int hw = g_high_water.load(std::memory_order_acquire);
    for (int n = 0; n < hw; n++) {
        int i = (hint + n) % hw;
        Slot *s = g_slots.get(i);
        if (!s) continue;
        unsigned long long cur = s->state.load(std::memory_order_relaxed);
        if (tid_of_state(cur) != kFree) continue;
        unsigned g = gen_of_state(cur) + 1;
        if (s->state.compare_exchange_strong(cur, make_state(g, kReserved), std::memory_order_acq_rel)) {
            *gen = g;
            return i;
        }
    }
    int i = g_high_water.fetch_add(1, std::memory_order_acq_rel);
    Slot *s = g_slots.ensure(i);
    if (!s) return -1;
    *gen = 1;
    s->state.store(make_state(1, kReserved), std::memory_order_release);
    return i;
}
}  // namespace

Slot *at(int index) { return g_slots.get(index); }
int high_water() { return g_high_water.load(std::memory_order_acquire); }

int reserve(unsigned *gen) {
    int i = claim(gen);
    if (Slot *s = at(i)) {
        s->flags.store(0, std::memory_order_relaxed);
        s->applied.store(0, std::memory_order_relaxed);
        s->creating.store(nullptr, std::memory_order_relaxed);
    }
    return i;
}

int add_live(int tid, unsigned flags) {
    unsigned gen;
    int i = claim(&gen);
    Slot *s = at(i);
    if (!s) return -1;
    s->flags.store(flags, std::memory_order_relaxed);
    s->applied.store(0, std::memory_order_relaxed);
    s->creating.store(nullptr, std::memory_order_relaxed);
    publish(i, gen, tid);
    return i;
}

bool publish(int index, unsigned gen, int tid) {
    Slot *s = at(index);
    unsigned long long expected = make_state(gen, kReserved);
    return s && s->state.compare_exchange_strong(expected, make_state(gen, tid), std::memory_order_acq_rel);
}

void release(int index, int tid) {
    Slot *s = at(index);
    if (!s) return;
    unsigned long long cur = s->state.load(std::memory_order_acquire);
    if (tid_of_state(cur) != tid) return;
    if (s->state.compare_exchange_strong(cur, make_state(gen_of_state(cur), kFree), std::memory_order_acq_rel)) {
        // Stored only when it changes: in a create+join loop it is the same
        // slot every time, and a store would move the hint's cache line to
        // the exiting thread's CPU and back to the creator's on every
        // create (claim() reads it).
        if (g_free_hint.load(std::memory_order_relaxed) != index) g_free_hint.store(index, std::memory_order_relaxed);
    }
}

int tid_of(pthread_t thread) {
    clockid_t clock;
    if (thread == 0 || pthread_getcpuclockid(thread, &clock) != 0) return 0;
    long tid = ~(static_cast<long>(clock) >> 3);
    return tid > 0 ? static_cast<int>(tid) : 0;
}

void reset_in_child(int self_tid) {
    // The parent's slots describe threads that do not exist here.  The memory
    // stays mapped (it was inherited); only the contents are cleared.
    int hw = g_high_water.load(std::memory_order_relaxed);
    for (int i = 0; i < hw; i++) {
        if (Slot *s = at(i)) {
            unsigned long long cur = s->state.load(std::memory_order_relaxed);
            s->state.store(make_state(gen_of_state(cur), kFree), std::memory_order_relaxed);
        }
    }
    g_free_hint.store(0, std::memory_order_relaxed);
    add_live(self_tid, 0);
}

}  // namespace psxshim::registry
