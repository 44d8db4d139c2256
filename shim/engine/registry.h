// The registry: threads psxshim knows about without asking /proc.
//
// A slot is filled by the pthread_create wrapper (reserved by the parent,
// made live by whichever of parent or child first learns the child's tid),
// by start-up and by /proc sweeps (threads we did not see born: created
// before us, by raw clone, or inside glibc).  It is the only source of
// threads when /proc is unreachable, so it must stay complete for every
// thread that went through pthread_create.
//
// Lock-free: slots change by compare-and-swap on `tid`.  Safe to read from
// the signal handler.  Memory: 64 bytes per slot (see Slot), slots reused.
#pragma once

#include <pthread.h>

#include <atomic>

namespace psxshim::registry {

inline constexpr int kFree = 0;
inline constexpr int kReserved = -1;

enum : unsigned {
    kForeign = 1u,  // found by a /proc sweep, not seen being born
    kTracked = 2u,  // runs our cleanup handler, which frees the slot before
                    // the thread dies (set by the pthread_create trampoline)
};

// A slot's state word packs a generation (high 32 bits, bumped by every
// reserve) with the tid (low 32 bits: 0 free, -1 reserved, > 0 the thread), so
// a late publish or release aimed at an earlier occupant cannot hit a reused
// slot.
inline int tid_of_state(unsigned long long s) { return static_cast<int>(s & 0xffffffffu); }
inline unsigned gen_of_state(unsigned long long s) { return static_cast<unsigned>(s >> 32); }
inline unsigned long long make_state(unsigned gen, int tid) {
    return (static_cast<unsigned long long>(gen) << 32) | static_cast<unsigned>(tid);
}

struct alignas(64) Slot {
    std::atomic<unsigned long long> state;
    std::atomic<unsigned> flags;
    // The last broadcast (seq) whose call this thread's credentials already
    // include: set by the thread's own signal handler after it ran the call,
    // and given to a child at pthread_create, before the clone, from the
    // parent's own value -- a child cloned after its parent ran the call was
    // born with the new credentials.  0 = none.  See broadcast.cc.
    std::atomic<unsigned> applied;
    int tid() const { return tid_of_state(state.load(std::memory_order_acquire)); }
    // While this slot's thread runs the real pthread_create: where glibc
    // writes the child's handle (zeroed by us first), and the child's slot.
    // The handler reads them to publish a child that was cloned before the
    // thread was signalled (see publish_child in broadcast.cc).
    std::atomic<pthread_t *> creating;
    std::atomic<int> creating_child;
    std::atomic<unsigned> creating_gen;
    // Trampoline payload while reserved.
    void *(*start)(void *);
    void *arg;
    // Where the thread's own signal handler last found it running user code
    // -- that broadcast's seq and a digest of the interrupted registers --
    // and how many broadcasts in a row have parked it there (see
    // starved_by_parking in broadcast.cc).  Written and read only by that
    // handler; a reused slot's stale values can cost one park, no more.
    unsigned caught_seq;
    unsigned unmoved_parks;
    unsigned long caught_regs;
};
static_assert(sizeof(Slot) == 64, "one cache line per thread");

Slot *at(int index);
int high_water();

// Reserve a slot for a thread about to be created; -1 when out of memory.
// *gen receives the reservation's generation.
int reserve(unsigned *gen);
// Add a running thread (the main thread, or one found by a sweep).
int add_live(int tid, unsigned flags);
// Publish the tid of reservation (index, gen); first caller wins.
bool publish(int index, unsigned gen, int tid);
// Free a slot if it still holds `tid` (kReserved for a failed create).
void release(int index, int tid);

// The kernel tid behind a glibc pthread_t, or 0 before its clone() returned.
// pthread_getcpuclockid() encodes the tid in the clock id (the kernel's
// CPUCLOCK ABI: ~tid << 3 | flags); it is a plain load of the descriptor and
// safe in a signal handler.  pthread_gettid_np() only arrived in glibc 2.42.
int tid_of(pthread_t thread);

// In a fork child: forget everything, register only the calling thread.
void reset_in_child(int self_tid);

}  // namespace psxshim::registry
