// The lock-free thread registry and the chunked storage under it.
#include <catch2/catch.hpp>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "engine/chunked.h"
#include "engine/registry.h"

using namespace psxshim;

TEST_CASE("chunked array: elements appear zeroed, never move, and stop at the capacity") {
    static ChunkedArray<long, 2, 4> a;  // 4 per chunk, 16 in all
    CHECK(a.get(0) == nullptr);
    long *p = a.ensure(5);
    REQUIRE(p != nullptr);
    CHECK(*p == 0);
    *p = 42;
    CHECK(a.get(5) == p);
    CHECK(a.get(4) != nullptr);  // same chunk
    CHECK(a.get(8) == nullptr);  // next chunk not made yet
    a.ensure(15);
    CHECK(a.get(5) == p);
    CHECK(*a.get(5) == 42);
    CHECK(a.ensure(16) == nullptr);
    CHECK(a.get(-1) == nullptr);
}

TEST_CASE("registry: reserve, publish once, release only the holder") {
    unsigned gen = 0;
    int i = registry::reserve(&gen);
    REQUIRE(i >= 0);
    registry::Slot *s = registry::at(i);
    CHECK(s->tid() == registry::kReserved);
    CHECK(registry::publish(i, gen, 1111));
    CHECK_FALSE(registry::publish(i, gen, 2222));  // first publisher wins
    CHECK(s->tid() == 1111);
    registry::release(i, 2222);  // not the holder: ignored
    CHECK(s->tid() == 1111);
    registry::release(i, 1111);
    CHECK(s->tid() == registry::kFree);
}

TEST_CASE("registry: a late publish cannot land in a reused slot") {
    unsigned old_gen = 0;
    int i = registry::reserve(&old_gen);
    REQUIRE(registry::publish(i, old_gen, 3333));
    registry::release(i, 3333);
    unsigned new_gen = 0;
    int j = registry::reserve(&new_gen);  // the hint hands back the same slot
    REQUIRE(j == i);
    CHECK(new_gen != old_gen);
    CHECK_FALSE(registry::publish(i, old_gen, 4444));  // the parent of the earlier child, too late
    CHECK(registry::at(i)->tid() == registry::kReserved);
    registry::release(i, registry::kReserved);
}

TEST_CASE("registry: concurrent reserve/publish/release loses and duplicates nothing") {
    constexpr int kThreads = 4, kRounds = 2000;
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++) {
        ts.emplace_back([t, &bad] {
            for (int r = 0; r < kRounds; r++) {
                unsigned gen;
                int i = registry::reserve(&gen);
                int tid = 100000 + t * kRounds + r;
                if (i < 0 || !registry::publish(i, gen, tid)) bad++;
                if (registry::at(i)->tid() != tid) bad++;
                registry::release(i, tid);
            }
        });
    }
    for (auto &t : ts) t.join();
    CHECK(bad == 0);
    // Nothing of ours is left live.
    for (int i = 0; i < registry::high_water(); i++) {
        int tid = registry::at(i)->tid();
        CHECK_FALSE((tid >= 100000 && tid < 100000 + kThreads * kRounds));
    }
}

TEST_CASE("tid_of decodes glibc's thread handle") {
    pthread_t th;
    std::atomic<int> child_tid{0};
    std::atomic<bool> go{false};
    struct Arg {
        std::atomic<int> *tid;
        std::atomic<bool> *go;
    } arg{&child_tid, &go};
    REQUIRE(pthread_create(&th, nullptr,
                           [](void *p) -> void * {
                               auto *a = static_cast<Arg *>(p);
                               a->tid->store(static_cast<int>(syscall(SYS_gettid)));
                               while (!a->go->load()) usleep(100);
                               return nullptr;
                           },
                           &arg) == 0);
    while (child_tid.load() == 0) usleep(100);
    CHECK(registry::tid_of(th) == child_tid.load());
    CHECK(registry::tid_of(pthread_self()) == static_cast<int>(syscall(SYS_gettid)));
    CHECK(registry::tid_of(0) == 0);
    go = true;
    pthread_join(th, nullptr);
}
