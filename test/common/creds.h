// Shared by the integration tests: read every thread's credentials the way
// an outside observer would (/proc/self/task/<tid>/status), and make threads
// that the shim cannot see being born (raw clone).
//
// Test code: uses the C++ library freely; none of it goes into libpsxshim.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pt {

struct ThreadCreds {
    int tid = 0;
    std::string name;   // Name:
    std::string state;  // State:
    uid_t uid[4] = {};  // real, effective, saved, fs
    gid_t gid[4] = {};
    std::vector<gid_t> groups;
    std::uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
    int no_new_privs = 0;
    int seccomp = 0;
    std::uint64_t sig_blk = 0;
    // Everything a broadcast changes, as one comparable string (fs ids and
    // the thread name/state/mask excluded).
    std::string key() const;
};

ThreadCreds read_thread(int tid);   // throws std::runtime_error if it vanished
std::vector<ThreadCreds> read_all();  // every thread of this process, zombies excluded

// Empty if every live thread has the same credentials as the calling thread;
// otherwise one line per thread that differs.
std::string differences();


// A thread made with a raw clone(CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|
// CLONE_THREAD|CLONE_SYSVSEM): no pthread_create, no glibc bookkeeping, glibc's
// own setxid broadcast never reaches it.  It sleeps in the kernel (handling
// signals) until stop_raw_threads(); it can run `query` on request.
int start_raw_thread();
void stop_raw_threads();
// Ask every raw thread for prctl(PR_GET_KEEPCAPS) and PR_GET_SECUREBITS.
struct RawAnswer {
    int tid;
    long keepcaps;
    long securebits;
};
std::vector<RawAnswer> query_raw_threads();

// N pthreads that block in a condition variable until released; each can
// answer the same query as the raw threads.
class Sleepers {
public:
    explicit Sleepers(int n);
    ~Sleepers();
    std::vector<RawAnswer> query();  // keep-caps and securebits of each
    std::vector<int> tids() const;

private:
    struct Impl;
    Impl *impl_;
};

// Test-program plumbing: argv contains --expect=uniform (shim loaded: every
// thread must agree) or --expect=diverge (negative control without the shim:
// some thread must differ).  finish() prints the verdict and returns the exit
// status (0 pass, 1 fail, 77 skip).
enum class Expect { kUniform, kDiverge };
Expect parse_expect(int argc, char **argv);
bool shim_loaded();  // libpsxshim is in this process
// The number that starts a line of /proc/self/status ("VmRSS:", "SigQ:"),
// or -1 if there is no such line.
long self_status_number(const char *field);
int finish(Expect expect, const std::string &differences, const char *what);
int skip(const char *why);  // prints the reason, returns 77

}  // namespace pt
