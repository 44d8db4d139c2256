#include "watchdog.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace pt {

namespace {

// The first line of a /proc file, or "?".
std::string first_line(const std::string &path) {
    std::ifstream f(path);
    std::string line;
    if (!std::getline(f, line)) return "?";
    while (!line.empty() && line.back() == 0) line.pop_back();  // wchan has no newline, may end in NUL
    return line;
}

// What a hang looks like from the outside, one line per thread.
void describe_threads(pid_t target) {
    std::string dir = "/proc/" + std::to_string(target) + "/task";
    DIR *d = opendir(dir.c_str());
    if (!d) return;
    while (dirent *e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        std::string base = dir + "/" + e->d_name;
        std::string out = std::string("  tid ") + e->d_name + ":";
        std::ifstream status(base + "/status");
        for (std::string line; std::getline(status, line);) {
            for (const char *key : {"Name:", "State:", "SigQ:", "SigPnd:", "ShdPnd:", "SigBlk:"}) {
                if (line.rfind(key, 0) == 0) out += " [" + line + "]";
            }
        }
        out += " wchan: " + first_line(base + "/wchan") + ", syscall: " + first_line(base + "/syscall");
        std::fprintf(stderr, "%s\n", out.c_str());
    }
    closedir(d);
}

}  // namespace

Watchdog::Watchdog(int seconds, const std::string &what) {
    pid_t target = getpid();
    owner_ = target;
    std::fflush(nullptr);  // nothing buffered may be printed twice
    pid_ = fork();
    if (pid_ < 0) {
        std::perror("watchdog: fork");
        std::exit(1);
    }
    if (pid_ > 0) return;
    // The watchdog: a one-thread copy that makes no wrapped calls.
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (getppid() != target) _exit(0);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= seconds) break;
        usleep(100000);
    }
    std::fprintf(stderr, "WATCHDOG: %s: pid %d still running after %d s; its threads:\n", what.c_str(),
                 static_cast<int>(target), seconds);
    describe_threads(target);
    std::fprintf(stderr, "WATCHDOG: killing pid %d (the test fails)\n", static_cast<int>(target));
    kill(target, SIGKILL);
    _exit(0);
}

void Watchdog::disarm() {
    if (pid_ > 0 && getpid() == owner_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
}

}  // namespace pt
