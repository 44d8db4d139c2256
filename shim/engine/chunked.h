// A grow-only array whose elements never move.
//
// The signal handler writes into elements (targets) while the broadcaster may
// be appending, and pthread_create wrappers reserve registry slots while a
// broadcast scans them, so storage is a fixed table of chunk pointers, each
// chunk mmap'd on first use and never freed or moved.  Reading an element is
// two loads; growing is one mmap, done outside any signal handler's path.
// Everything is zero-initialised (constinit), so it is usable before any
// constructor has run.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>

#include "sys/raw.h"

namespace psxshim {

template <typename T, int ChunkBits, int MaxChunks>
class ChunkedArray {
public:
    static constexpr int kChunk = 1 << ChunkBits;
    static constexpr long kCapacity = static_cast<long>(kChunk) * MaxChunks;

    // The element at i, or nullptr while its chunk does not exist.
    T *get(long i) const {
        if (i < 0 || i >= kCapacity) return nullptr;
        T *c = chunks_[i >> ChunkBits].load(std::memory_order_acquire);
        return c ? &c[i & (kChunk - 1)] : nullptr;
    }

    // The element at i, creating its chunk if needed; nullptr if out of
    // memory or past the capacity.  Async-signal-safe (mmap is a syscall).
    T *ensure(long i) {
        if (i < 0 || i >= kCapacity) return nullptr;
        auto &slot = chunks_[i >> ChunkBits];
        T *c = slot.load(std::memory_order_acquire);
        if (!c) {
            long p = sys::call(SYS_mmap, 0, sizeof(T) * kChunk, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p < 0 && p > -4096) return nullptr;
            T *fresh = reinterpret_cast<T *>(p);  // zero-filled, which is every T's empty state
            if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) {
                c = fresh;
            } else {
                sys::call(SYS_munmap, p, sizeof(T) * kChunk);
            }
        }
        return &c[i & (kChunk - 1)];
    }

private:
    std::atomic<T *> chunks_[MaxChunks] = {};
};

}  // namespace psxshim
