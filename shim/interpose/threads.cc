// Thread tracking: pthread_create and pthread_exit.
//
// Every thread created through the exported pthread_create is registered
// before it can run user code, so a broadcast reaches it even when /proc is
// unreachable.  Threads created any other way are found by /proc sweeps.
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>

#include "engine/broadcast.h"
#include "engine/registry.h"
#include "interpose/export.h"
#include "sys/raw.h"

namespace psxshim {
namespace {

using CreateFn = int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
using ExitFn = void (*)(void *);

constinit std::atomic<CreateFn> g_real_create{nullptr};
constinit std::atomic<ExitFn> g_real_exit{nullptr};

// The slot of the calling thread, -1 if it has none yet.  initial-exec: no
// lazy allocation, so it is safe wherever pthread functions are.
__thread int t_slot __attribute__((tls_model("initial-exec"))) = -1;

template <typename Fn>
Fn resolve(std::atomic<Fn> &cache, const char *name) {
    Fn fn = cache.load(std::memory_order_acquire);
    if (!fn) {
        // RTLD_NEXT from inside this library: the next definition, never ours.
        fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
        cache.store(fn, std::memory_order_release);
    }
    return fn;
}

// The calling thread's tid without a system call: glibc (and musl) clone
// with CLONE_PARENT_SETTID into the new thread's own descriptor, and the
// kernel stores it before the child first runs.  create+join is held to
// within 5% of the bare libc; with the two gettid() this replaces, the
// benchmark's create+join minimum was 2.0-5.4% above it, without them
// 1.4-2.6%.
int own_tid() {
    int tid = registry::tid_of(pthread_self());
    return tid > 0 ? tid : sys::gettid();
}

// A thread's slot is freed when its start routine ends, however it ends:
// by returning, or by pthread_exit or cancellation, which unwind the stack
// and run cleanup handlers.  The handler is a pthread_cleanup_push buffer
// in the trampoline's own frame.  This file is C++ without exceptions, so
// glibc's <pthread.h> gives the C form of that macro (a setjmp buffer that
// the unwinder jumps to as it passes our frame) rather than its C++ form (a
// destructor, which -fno-exceptions would leave out of the unwind).
// Freeing the slot this way costs a setjmp; the TSD destructor it replaces
// made glibc walk its whole key table at every thread exit, about 680
// instructions, 60% of what the shim added to a create+join (callgrind).
// After this point the thread may still run C++ thread_local and TSD
// destructors; if a broadcast targets it then, it is found through /proc
// or answers nothing and is seen gone -- and it has no slot of its own, so
// a pthread_create from a destructor cannot write into a reused one.
void on_thread_exit(void *p) {
    int index = static_cast<int>(reinterpret_cast<long>(p));
    t_slot = -1;
    registry::release(index, own_tid());
}

void *trampoline(void *p) {
    int index = static_cast<int>(reinterpret_cast<long>(p));
    registry::Slot *s = registry::at(index);
    void *(*start)(void *) = s->start;
    void *arg = s->arg;
    unsigned gen = registry::gen_of_state(s->state.load(std::memory_order_acquire));
    registry::publish(index, gen, own_tid());  // unless the parent already did
    t_slot = index;
    void *ret;
    pthread_cleanup_push(on_thread_exit, p);
    // From now on the slot is freed before this thread can die, which lets
    // a broadcast count it without parking it (broadcast.cc).
    s->flags.fetch_or(registry::kTracked, std::memory_order_release);
    ret = start(arg);
    pthread_cleanup_pop(1);
    return ret;
}

// The calling thread's slot; threads we did not create (the main thread,
// threads found by /proc) are looked up once.
int own_slot() {
    if (t_slot >= 0) return t_slot;
    int me = sys::gettid();
    int hw = registry::high_water();
    for (int i = 0; i < hw; i++) {
        registry::Slot *s = registry::at(i);
        if (s && s->tid() == me) return t_slot = i;
    }
    return -1;
}

}  // namespace
}  // namespace psxshim

using namespace psxshim;

PSX_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
                              void *arg) {
    engine::ensure_init();
    CreateFn real = resolve(g_real_create, "pthread_create");
    if (!real) return EAGAIN;
    engine::before_pthread_create();

    unsigned gen;
    int child = registry::reserve(&gen);
    if (child < 0) return real(thread, attr, start, arg);  // out of memory: /proc sweeps still find it
    registry::Slot *cs = registry::at(child);
    cs->start = start;
    cs->arg = arg;

    // Tell our signal handler where the child's handle will appear, so that a
    // broadcast that interrupts us after the clone can publish the child.
    registry::Slot *me = registry::at(own_slot());
    // Read before the clone: if our handler has run the current broadcast's
    // call by now, the child is born with its effect (see Slot::applied).
    // If the handler runs later, the child may or may not have it; it stays
    // 0 and the broadcast checks the child's credentials instead.
    cs->applied.store(me ? me->applied.load(std::memory_order_acquire) : 0, std::memory_order_release);
    if (me) {
        *thread = 0;
        me->creating_child.store(child, std::memory_order_relaxed);
        me->creating_gen.store(gen, std::memory_order_relaxed);
        me->creating.store(thread, std::memory_order_release);
    }
    int rc = real(thread, attr, trampoline, reinterpret_cast<void *>(static_cast<long>(child)));
    if (me) me->creating.store(nullptr, std::memory_order_release);

    if (rc == 0) {
        int tid = registry::tid_of(*thread);
        if (tid > 0) registry::publish(child, gen, tid);
    } else {
        registry::release(child, registry::kReserved);
    }
    engine::after_pthread_create();
    return rc;
}

PSX_EXPORT void pthread_exit(void *value) {
    engine::ensure_init();
    if (sys::gettid() == sys::getpid()) engine::note_main_thread_exit();
    resolve(g_real_exit, "pthread_exit")(value);
    __builtin_unreachable();
}
