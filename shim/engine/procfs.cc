#include "engine/procfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>

#include "sys/raw.h"

namespace psxshim::procfs {

namespace {
// Above the range programs hand to select() or expect to find free.
constexpr int kMinFd = 512;

constinit int g_fd = -1;
constinit unsigned long g_dev = 0;
constinit unsigned long g_ino = 0;
constinit long g_nlink_base = 2;

struct linux_dirent64 {
    std::uint64_t d_ino;
    std::int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

long parse_pid(const char *s) {
    long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

void close_fd() {
    if (g_fd >= 0) sys::call(SYS_close, g_fd);
    g_fd = -1;
}
}  // namespace

bool open_task_dir(int pid) {
    // /proc/self must name us: in a new PID namespace without a remounted
    // /proc it names our pid in the outer namespace, and tgkill() with those
    // ids would reach nobody (or the wrong threads).
    char link[32];
    long n = sys::call(SYS_readlinkat, AT_FDCWD, reinterpret_cast<long>("/proc/self"),
                       reinterpret_cast<long>(link), sizeof link - 1);
    if (n <= 0) return false;
    link[n] = 0;
    if (parse_pid(link) != pid) return false;

    long fd = sys::call(SYS_openat, AT_FDCWD, reinterpret_cast<long>("/proc/self/task"),
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    long high = sys::call(SYS_fcntl, fd, F_DUPFD_CLOEXEC, kMinFd);
    if (high >= 0) {
        sys::call(SYS_close, fd);
        fd = high;
    }
    struct stat st;
    if (sys::call(SYS_fstat, fd, reinterpret_cast<long>(&st)) < 0) {
        sys::call(SYS_close, fd);
        return false;
    }
    close_fd();
    g_fd = static_cast<int>(fd);
    g_dev = st.st_dev;
    g_ino = st.st_ino;
    return true;
}

bool usable(int pid) {
    if (g_fd >= 0) {
        struct stat st;
        if (sys::call(SYS_fstat, g_fd, reinterpret_cast<long>(&st)) == 0 && st.st_dev == g_dev &&
            st.st_ino == g_ino) {
            return true;
        }
        // Closed behind our back, or the number now belongs to the program:
        // never touch it again.
        g_fd = -1;
    }
    return open_task_dir(pid);
}

long thread_count() {
    struct stat st;
    if (g_fd < 0 || sys::call(SYS_fstat, g_fd, reinterpret_cast<long>(&st)) < 0) return -1;
    return static_cast<long>(st.st_nlink) - g_nlink_base;
}

long usable_count(int pid) {
    if (g_fd >= 0) {
        struct stat st;
        if (sys::call(SYS_fstat, g_fd, reinterpret_cast<long>(&st)) == 0 && st.st_dev == g_dev &&
            st.st_ino == g_ino) {
            return static_cast<long>(st.st_nlink) - g_nlink_base;
        }
    }
    return usable(pid) ? thread_count() : -1;
}

long list(int *out, long max) {
    if (g_fd < 0) return -1;
    if (sys::call(SYS_lseek, g_fd, 0, SEEK_SET) < 0) return -1;
    alignas(8) char buf[8192];
    long count = 0;
    for (;;) {
        long n = sys::call(SYS_getdents64, g_fd, reinterpret_cast<long>(buf), sizeof buf);
        if (n < 0) return -1;
        if (n == 0) break;
        for (long off = 0; off < n;) {
            auto *d = reinterpret_cast<linux_dirent64 *>(buf + off);
            off += d->d_reclen;
            long tid = parse_pid(d->d_name);
            if (tid > 0 && count < max) out[count++] = static_cast<int>(tid);
        }
    }
    return count;
}

bool status_field(int tid, const char *field, char *out, unsigned long size) {
    if (g_fd < 0 || size == 0) return false;
    char path[32];
    int p = 0;
    char digits[12];
    int nd = 0;
    for (unsigned t = static_cast<unsigned>(tid); t || nd == 0; t /= 10) digits[nd++] = static_cast<char>('0' + t % 10);
    while (nd) path[p++] = digits[--nd];
    for (const char *s = "/status"; *s; s++) path[p++] = *s;
    path[p] = 0;
    long fd = sys::call(SYS_openat, g_fd, reinterpret_cast<long>(path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[4096];
    long n = sys::call(SYS_read, fd, reinterpret_cast<long>(buf), sizeof buf - 1);
    sys::call(SYS_close, fd);
    if (n <= 0) return false;
    buf[n] = 0;
    unsigned long flen = 0;
    while (field[flen]) flen++;
    for (char *line = buf; *line;) {
        char *end = line;
        while (*end && *end != '\n') end++;
        bool match = static_cast<unsigned long>(end - line) > flen;
        for (unsigned long i = 0; match && i < flen; i++) match = line[i] == field[i];
        if (match) {
            char *v = line + flen;
            while (*v == ' ' || *v == '\t') v++;
            unsigned long k = 0;
            while (v < end && k + 1 < size) out[k++] = *v++;
            out[k] = 0;
            return true;
        }
        line = *end ? end + 1 : end;
    }
    return false;
}

void reset_in_child(int pid) {
    close_fd();
    open_task_dir(pid);
}

}  // namespace psxshim::procfs
