// Issue 3, item 3: a thread that cannot answer must not hang the process.
//
//   --mode=blocked  one pthread blocks signal 33 with the raw rt_sigprocmask
//                   system call (glibc's sigprocmask would strip it)
//   --mode=ptraced  this driver PTRACE_SEIZEs one pthread of the tested
//                   process and PTRACE_INTERRUPTs it: "t (tracing stop)"
//
// The driver runs the tested program (this binary, --role=tested) with
// PSXSHIM_TIMEOUT_MS=3000; the tested program calls setresuid(65534, ...)
// and prints RETURNED if the call ever comes back.  Expected with the shim
// (--expect=uniform): stderr names the stuck thread's tid and the reason,
// then the timeout line; the process ends by SIGKILL; RETURNED never
// appears.  No timing is asserted; a 30 s deadline only stops a hang.
//
// Negative control (--expect=diverge, no shim): glibc's own setxid broadcast
// waits for the stuck thread forever -- the process is still inside
// setresuid at the control's deadline.
//
// (A SIGSTOP cannot stop a single thread: it stops the whole thread group,
// caller included, so there is nothing to time out; ptrace is the way one
// thread stops alone.)
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "creds.h"
#include "hostile.h"

namespace {

std::atomic<int> g_stuck_tid{0};
bool g_block = false;

void *stuck_thread(void *) {
    if (g_block) {
        unsigned long mask = 1UL << (33 - 1);
        if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, &mask, nullptr, sizeof mask) != 0) {
            std::perror("rt_sigprocmask");
            std::exit(1);
        }
    }
    g_stuck_tid.store(static_cast<int>(syscall(SYS_gettid)));
    for (;;) pause();
}

int role_tested(const std::string &mode) {
    g_block = mode == "blocked";
    pt::Sleepers sleepers(2);  // threads that do answer
    pthread_t t;
    pthread_create(&t, nullptr, stuck_thread, nullptr);
    while (g_stuck_tid.load() == 0) usleep(1000);
    std::printf("TID %d\n", g_stuck_tid.load());
    std::fflush(stdout);
    char go[8];
    if (read(0, go, sizeof go) <= 0) return 2;
    std::printf("CALLING setresuid\n");
    std::fflush(stdout);
    int r = setresuid(65534, 65534, 65534);
    int e = errno;
    std::printf("RETURNED %d (%s)\n", r, r ? std::strerror(e) : "success");
    std::fflush(stdout);
    return 0;
}

long long now_ms() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

std::string task_state(pid_t pid, int tid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("State:", 0) == 0) return line.substr(7);
    return "?";
}

int driver(const std::string &mode, pt::Expect expect, char **argv) {
    int in[2], out[2], err[2];
    if (pipe(in) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return std::perror("pipe"), 1;
    std::string exe = hx::self_exe();
    std::vector<std::string> env = hx::env_with({"PSXSHIM_TIMEOUT_MS=3000"});
    std::vector<char *> envp;
    for (auto &s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string m = "--mode=" + mode;
    std::fflush(nullptr);
    pid_t child = fork();
    if (child == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(in[0]);
        close(in[1]);
        char *args[] = {exe.data(), const_cast<char *>("--role=tested"), m.data(), nullptr};
        execve(exe.c_str(), args, envp.data());
        _exit(127);
    }
    (void)argv;
    close(in[0]);
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);

    std::string sout, serr;
    bool exited = false;
    int status = 0;
    bool traced = false;
    int tid = 0;
    // Shim: a generous deadline that only stops a hang.  Control: long enough
    // to show that glibc is still waiting (it would wait forever).
    long long deadline = now_ms() + (expect == pt::Expect::kUniform ? 30000 : 8000);
    bool sent_go = false;
    std::string problems;
    while (!exited && now_ms() < deadline) {
        struct pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
        poll(p, 2, 50);
        char buf[4096];
        ssize_t k;
        while ((k = read(out[0], buf, sizeof buf)) > 0) sout.append(buf, static_cast<size_t>(k));
        while ((k = read(err[0], buf, sizeof buf)) > 0) serr.append(buf, static_cast<size_t>(k));
        if (!sent_go && tid == 0) {
            auto pos = sout.find("TID ");
            if (pos != std::string::npos && sout.find('\n', pos) != std::string::npos) tid = std::atoi(sout.c_str() + pos + 4);
        }
        if (!sent_go && tid > 0) {
            if (mode == "ptraced") {
                if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0 || ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
                    std::printf("SKIP-worthy: ptrace failed: %s\n", std::strerror(errno));
                    kill(child, SIGKILL);
                    waitpid(child, nullptr, 0);
                    return pt::skip("ptrace not permitted here");
                }
                traced = true;
                int st;
                if (waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st)) {
                    problems += "the traced thread did not stop\n";
                }
                std::printf("thread %d of pid %d is now: %s\n", tid, child, task_state(child, tid).c_str());
            }
            if (write(in[1], "go\n", 3) != 3) problems += "could not tell the tested program to go\n";
            sent_go = true;
        }
        // Reap: the child itself, and (when tracing) the traced thread's exit.
        for (;;) {
            int st;
            pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
            if (w <= 0) break;
            if (w == child && (WIFEXITED(st) || WIFSIGNALED(st))) {
                exited = true;
                status = st;
            }
        }
    }
    if (!exited) {
        std::printf("tested process (pid %d) still running at the deadline; thread %d: %s\n", child, tid,
                    task_state(child, tid).c_str());
        kill(child, SIGKILL);
        for (;;) {
            int st;
            pid_t w = waitpid(-1, &st, __WALL);
            if (w < 0 || w == child) break;
        }
    }
    char buf[4096];
    ssize_t k;
    while ((k = read(out[0], buf, sizeof buf)) > 0) sout.append(buf, static_cast<size_t>(k));
    while ((k = read(err[0], buf, sizeof buf)) > 0) serr.append(buf, static_cast<size_t>(k));
    std::printf("--- tested program stdout ---\n%s--- tested program stderr ---\n%s---\n", sout.c_str(), serr.c_str());
    (void)traced;

    if (!sent_go) problems += "the tested program never reported its thread\n";
    if (sout.find("CALLING") == std::string::npos) problems += "the tested program never made the call\n";
    if (sout.find("RETURNED") != std::string::npos) problems += "setresuid returned while a thread could not answer\n";

    if (expect == pt::Expect::kUniform) {
        std::string name = "thread " + std::to_string(tid) + " ";
        std::string reason = mode == "blocked" ? "signal 33 blocked" : "tracing stop";
        auto named = serr.find(name + "has not answered");
        auto killed = serr.find(name + "did not answer within 3000 ms");
        if (!exited) problems += "the process hung: not ended within the 30 s deadline\n";
        else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            problems += "the process did not end by SIGKILL (status " + std::to_string(status) + ")\n";
        if (named == std::string::npos) problems += "stderr does not name the stuck thread (\"" + name + "has not answered\")\n";
        else if (serr.find(reason, named) == std::string::npos || serr.find(reason, named) > serr.find('\n', named))
            problems += "the line naming the thread does not give the reason \"" + reason + "\"\n";
        if (killed == std::string::npos) problems += "no line says the PSXSHIM_TIMEOUT_MS=3000 timeout ended the process\n";
        else if (named != std::string::npos && killed < named) problems += "the timeout line came before the diagnosis\n";
    } else {
        if (exited) problems += "negative control: the process ended (" + std::to_string(status) + ") instead of hanging in glibc\n";
    }
    if (!problems.empty()) {
        std::printf("FAIL %s (%s):\n%s", mode.c_str(), expect == pt::Expect::kUniform ? "shim" : "negative control",
                    problems.c_str());
        return 1;
    }
    if (expect == pt::Expect::kUniform) {
        std::printf("PASS %s: the stuck thread was named with its reason, the process was SIGKILLed, the call never "
                    "returned\n", mode.c_str());
    } else {
        std::printf("PASS %s (negative control): without the shim glibc's setresuid waits forever for the thread\n",
                    mode.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    std::string mode = hx::arg(argc, argv, "mode");
    if (mode != "blocked" && mode != "ptraced") {
        std::printf("usage: %s --mode=blocked|ptraced [--expect=uniform|diverge]\n", argv[0]);
        return 1;
    }
    if (hx::arg(argc, argv, "role") == "tested") return role_tested(mode);
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    return driver(mode, expect, argv);
}
