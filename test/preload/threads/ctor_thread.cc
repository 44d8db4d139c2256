// A linked library's constructor (ctor_lib.cc) starts threads before the
// preloaded shim's constructor runs -- one of them past the shim's
// pthread_create.  A later capset() must reach both.
#include "tt.h"

extern "C" int ctor_thread_tids(int *out);
extern "C" int ctor_saw_shim();
extern "C" void ctor_stop_threads();

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (const char *why = tt::need_root_caps()) return pt::skip(why);
    pt::Watchdog wd(30, "ctor_thread");
    tt::Failures fail;
    int tids[2];
    int n = ctor_thread_tids(tids);
    std::printf("constructor started %d threads:", n);
    for (int i = 0; i < n; i++) std::printf(" %d", tids[i]);
    std::printf(" (shim symbols visible to the constructor: %d)\n", ctor_saw_shim());
    if (n != 2) fail.add("the library constructor started %d threads, not 2", n);
    if (tt::drop_cap(CAP_NET_RAW) != 0) fail.add("capset: %s", strerror(errno));
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) != 0) fail.add("PR_CAPBSET_DROP: %s", strerror(errno));
    std::string diff = tt::differences();
    const char *labels[2] = {"constructor's (glibc pthread_create, past the shim)",
                             "constructor's (exported pthread_create)"};
    for (int i = 0; i < n; i++) tt::expect_tid(fail, expect, tids[i], labels[i]);
    ctor_stop_threads();
    return fail.finish(expect, diff, "threads started by a linked library's constructor");
}
