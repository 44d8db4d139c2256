// /proc/self/task discovery: the kept fd, the thread count, the listing.
#include <catch2/catch.hpp>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "engine/procfs.h"

using namespace psxshim;

TEST_CASE("procfs: count and listing follow the threads") {
    int pid = getpid();
    REQUIRE(procfs::open_task_dir(pid));
    REQUIRE(procfs::usable(pid));
    long before = procfs::thread_count();
    CHECK(before >= 1);

    std::atomic<bool> stop{false};
    std::atomic<int> tid{0};
    std::thread t([&] {
        tid = static_cast<int>(syscall(SYS_gettid));
        while (!stop) usleep(1000);
    });
    while (!tid) usleep(100);
    CHECK(procfs::thread_count() == before + 1);
    std::vector<int> tids(64);
    long n = procfs::list(tids.data(), 64);
    REQUIRE(n == before + 1);
    tids.resize(static_cast<size_t>(n));
    CHECK(std::find(tids.begin(), tids.end(), tid.load()) != tids.end());
    CHECK(std::find(tids.begin(), tids.end(), static_cast<int>(syscall(SYS_gettid))) != tids.end());
    stop = true;
    t.join();
}

TEST_CASE("procfs: a status field of a thread") {
    char state[64];
    REQUIRE(procfs::status_field(static_cast<int>(syscall(SYS_gettid)), "State:", state, sizeof state));
    CHECK(state[0] == 'R');
    char none[8];
    CHECK_FALSE(procfs::status_field(static_cast<int>(syscall(SYS_gettid)), "NoSuchField:", none, sizeof none));
}

TEST_CASE("procfs: a fd closed and reused behind our back is never used") {
    int pid = getpid();
    REQUIRE(procfs::open_task_dir(pid));
    // Find the fd procfs kept (>= 512, a directory) and replace it with a pipe.
    int kept = -1;
    for (int fd = 512; fd < 4096 && kept < 0; fd++) {
        char link[64], target[128];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            if (strstr(target, "/task")) kept = fd;
        }
    }
    REQUIRE(kept >= 0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    REQUIRE(dup2(p[0], kept) == kept);
    // usable() notices (device/inode changed) and reopens elsewhere; the pipe is untouched.
    CHECK(procfs::usable(pid));
    CHECK(write(p[1], "x", 1) == 1);
    char c = 0;
    CHECK(read(kept, &c, 1) == 1);
    CHECK(c == 'x');
    close(kept);
    close(p[0]);
    close(p[1]);
}

TEST_CASE("procfs: refuses a /proc that names another pid") {
    CHECK_FALSE(procfs::open_task_dir(getpid() + 1));
    REQUIRE(procfs::open_task_dir(getpid()));
}
