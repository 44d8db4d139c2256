// Helpers shared by the hostile tests: looking at another process's threads
// from the outside (/proc/<pid>/task) and running a child program with a
// deadline while capturing its output.  (Their watchdog, pt::Watchdog, is
// shared with the other tests.)
//
// Test code only; nothing here goes into libpsxshim.
#pragma once

#include <linux/capability.h>
#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "watchdog.h"

// The exported capset(2) -- the shim's wrapper when it is preloaded; glibc
// has it but no header declares it.
extern "C" int capset(cap_user_header_t, const cap_user_data_t);

namespace hx {

// One thread of any process, read from /proc/<pid>/task/<tid>/status.
struct TaskCreds {
    int tid = 0;
    std::string state;
    uid_t uid[3] = {};
    gid_t gid[3] = {};
    std::vector<gid_t> groups;
    std::uint64_t inh = 0, prm = 0, eff = 0, bnd = 0, amb = 0;
    int nnp = 0;
    std::string key() const;  // everything a broadcast changes
};

// Every live (not zombie/dead) thread of `pid`.  Empty if /proc/<pid> is gone.
std::vector<TaskCreds> outside_threads(pid_t pid);

// Compares every live thread of `pid` with thread `ref_tid` (both in the
// observer's pid namespace).  Returns "" when all agree, else one line per
// thread that differs.  *count receives the number of live threads seen.
std::string outside_differences(pid_t pid, int ref_tid, int *count = nullptr);

struct RunResult {
    bool timed_out = false;  // the deadline passed; the child was SIGKILLed by us
    int status = 0;          // waitpid status (meaningless if timed_out)
    std::string out, err;
    std::string describe() const;  // "exit 0", "killed by signal 9", "still running after ..."
};

// Environment of this process without LD_PRELOAD (for references and
// negative controls), plus `extra` ("NAME=value" entries).
std::vector<std::string> env_without_preload(const std::vector<std::string> &extra = {});
// Environment of this process plus `extra`.
std::vector<std::string> env_with(const std::vector<std::string> &extra);

// Runs argv with env, stdout/stderr captured, stdin from /dev/null; after
// `timeout_s` seconds the child's process is SIGKILLed and timed_out set.
RunResult run(const std::vector<std::string> &argv, const std::vector<std::string> &env, int timeout_s);

// /proc/self/exe of this process.
std::string self_exe();

// The number of open fds of this process.
int fd_count();

// "--name=value" from argv, or fallback.
std::string arg(int argc, char **argv, const char *name, const std::string &fallback = "");
bool has_flag(int argc, char **argv, const char *flag);

// Capability bit helpers for the 2-word (v3) capset interface.
std::uint64_t caps_permitted_of_self();
// capget + capset (the exported, wrapped capset): remove `cap` from the
// calling thread's permitted and effective sets.  Returns capset's result.
int drop_cap(int cap);

// A driver's verdict on the program it ran: "FAIL:" and the problem lines,
// or "PASS <test> (shim)" / "(control)".  Returns the exit status.
int verdict(const std::string &problems, const std::string &test, bool shim);

// The common start of a test that changes credentials: line-buffered
// stdout, then a skip (77, with the reason printed) unless we are root and
// the permitted set holds every capability in `caps`.  Returns -1 to go on,
// or the exit status to return.
int require_root_with(std::initializer_list<int> caps);

}  // namespace hx
