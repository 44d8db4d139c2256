// Issue 3, item 2: threads made with a raw clone(CLONE_VM|CLONE_FS|
// CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM) -- never seen by
// pthread_create, unknown to glibc -- are reached (with /proc).  Raw threads
// exist before the first broadcast and are also born between broadcasts.
// Checked twice: by /proc (pt::differences) and by asking each raw thread
// for its own keep-caps and securebits (what the thread itself sees).
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

std::string raw_disagreements() {
    long kc = prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0), sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    std::string out;
    for (const pt::RawAnswer &a : pt::query_raw_threads()) {
        if (a.keepcaps != kc || a.securebits != sb) {
            out += "raw thread " + std::to_string(a.tid) + " reports keepcaps=" + std::to_string(a.keepcaps) +
                   " securebits=" + std::to_string(a.securebits) + "; caller keepcaps=" + std::to_string(kc) +
                   " securebits=" + std::to_string(sb) + "\n";
        }
    }
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (int rc = hx::require_root_with({CAP_NET_RAW}); rc >= 0) return rc;
    pt::Watchdog wd(60, "rawclone");

    pt::Sleepers sleepers(2);
    for (int i = 0; i < 3; i++) std::printf("raw thread %d started before any broadcast\n", pt::start_raw_thread());

    int failed_steps = 0, steps = 0, failed_calls = 0;
    auto step = [&](const char *what, int rc) {
        steps++;
        std::string d = pt::differences() + raw_disagreements();
        if (rc != 0) {
            std::printf("  %s: the call failed on the caller\n", what);
            failed_calls++;
        }
        if (d.empty()) {
            std::printf("  %s: every thread agrees\n", what);
        } else {
            failed_steps++;
            std::printf("  %s: disagreement:\n%s", what, d.c_str());
        }
    };

    step("prctl(PR_SET_KEEPCAPS, 1)", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    std::printf("raw thread %d started after a broadcast\n", pt::start_raw_thread());
    step("prctl(PR_SET_SECUREBITS, NO_SETUID_FIXUP)", prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0));
    std::printf("raw thread %d started after a broadcast\n", pt::start_raw_thread());
    step("capset drops CAP_NET_RAW", hx::drop_cap(CAP_NET_RAW));
    step("setresgid(65534 x3)", setresgid(65534, 65534, 65534));
    step("setresuid(65534 x3)", setresuid(65534, 65534, 65534));

    pt::stop_raw_threads();
    wd.disarm();
    bool ok = failed_calls == 0 && (expect == pt::Expect::kUniform ? failed_steps == 0 : failed_steps > 0);
    if (expect == pt::Expect::kUniform) {
        std::printf("%s raw clone threads: %d of %d steps left a thread behind\n", ok ? "PASS" : "FAIL", failed_steps, steps);
    } else {
        std::printf("%s raw clone threads (negative control): %d of %d steps left a thread behind without the shim\n",
                    ok ? "PASS" : "FAIL", failed_steps, steps);
    }
    return ok ? 0 : 1;
}
