#include "hostile.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "creds.h"

extern char **environ;

namespace hx {

std::string TaskCreds::key() const {
    std::ostringstream o;
    o << "uid=" << uid[0] << "," << uid[1] << "," << uid[2] << " gid=" << gid[0] << "," << gid[1] << "," << gid[2]
      << " groups=";
    for (gid_t g : groups) o << g << ",";
    o << std::hex << " inh=" << inh << " prm=" << prm << " eff=" << eff << " bnd=" << bnd << " amb=" << amb
      << std::dec << " nnp=" << nnp;
    return o.str();
}

static bool read_task(pid_t pid, int tid, TaskCreds &c) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    if (!f) return false;
    c = TaskCreds{};
    c.tid = tid;
    std::string line;
    bool any = false;
    while (std::getline(f, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, colon);
        std::istringstream v(line.substr(colon + 1));
        any = true;
        if (k == "State") std::getline(v >> std::ws, c.state);
        else if (k == "Uid") v >> c.uid[0] >> c.uid[1] >> c.uid[2];
        else if (k == "Gid") v >> c.gid[0] >> c.gid[1] >> c.gid[2];
        else if (k == "Groups") { gid_t g; while (v >> g) c.groups.push_back(g); }
        else if (k == "CapInh") v >> std::hex >> c.inh;
        else if (k == "CapPrm") v >> std::hex >> c.prm;
        else if (k == "CapEff") v >> std::hex >> c.eff;
        else if (k == "CapBnd") v >> std::hex >> c.bnd;
        else if (k == "CapAmb") v >> std::hex >> c.amb;
        else if (k == "NoNewPrivs") v >> c.nnp;
    }
    return any;
}

std::vector<TaskCreds> outside_threads(pid_t pid) {
    std::vector<TaskCreds> out;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR *d = opendir(dir.c_str());
    if (!d) return out;
    while (dirent *e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        TaskCreds c;
        if (!read_task(pid, std::atoi(e->d_name), c)) continue;
        if (!c.state.empty() && (c.state[0] == 'Z' || c.state[0] == 'X')) continue;
        out.push_back(c);
    }
    closedir(d);
    return out;
}

std::string outside_differences(pid_t pid, int ref_tid, int *count) {
    TaskCreds ref;
    if (!read_task(pid, ref_tid, ref)) return "cannot read /proc/" + std::to_string(pid) + "/task/" + std::to_string(ref_tid) + "\n";
    std::vector<TaskCreds> all = outside_threads(pid);
    if (count) *count = static_cast<int>(all.size());
    std::string diff;
    for (const TaskCreds &c : all) {
        if (c.key() != ref.key()) {
            diff += "thread " + std::to_string(c.tid) + " [" + c.state + "]: " + c.key() + "\n  reference " +
                    std::to_string(ref_tid) + ": " + ref.key() + "\n";
        }
    }
    return diff;
}

std::string RunResult::describe() const {
    if (timed_out) return "still running at the deadline (killed by the test)";
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "status " + std::to_string(status);
}

std::vector<std::string> env_without_preload(const std::vector<std::string> &extra) {
    std::vector<std::string> env;
    for (char **e = environ; *e; e++) {
        if (std::strncmp(*e, "LD_PRELOAD=", 11) == 0) continue;
        env.emplace_back(*e);
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

std::vector<std::string> env_with(const std::vector<std::string> &extra) {
    std::vector<std::string> env;
    for (char **e = environ; *e; e++) env.emplace_back(*e);
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

static long long now_ms() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

RunResult run(const std::vector<std::string> &argv, const std::vector<std::string> &env, int timeout_s) {
    RunResult r;
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        std::perror("pipe2");
        std::exit(1);
    }
    std::vector<char *> a, e;
    for (const auto &s : argv) a.push_back(const_cast<char *>(s.c_str()));
    a.push_back(nullptr);
    for (const auto &s : env) e.push_back(const_cast<char *>(s.c_str()));
    e.push_back(nullptr);
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execve(a[0], a.data(), e.data());
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    long long deadline = now_ms() + timeout_s * 1000LL;
    bool open_out = true, open_err = true;
    while (open_out || open_err) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            r.timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd p[2] = {{open_out ? out[0] : -1, POLLIN, 0}, {open_err ? err[0] : -1, POLLIN, 0}};
        int n = poll(p, 2, static_cast<int>(left < 200 ? left : 200));
        if (n < 0 && errno != EINTR) break;
        char buf[4096];
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t k = read(p[i].fd, buf, sizeof buf);
            if (k <= 0) {
                (i == 0 ? open_out : open_err) = false;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(k));
            }
        }
    }
    close(out[0]);
    close(err[0]);
    waitpid(pid, &r.status, 0);
    return r;
}

std::string self_exe() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "";
    buf[n] = 0;
    return buf;
}

int fd_count() {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (dirent *e = readdir(d)) {
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') n++;
    }
    closedir(d);
    return n - 1;  // the directory's own fd
}

std::string arg(int argc, char **argv, const char *name, const std::string &fallback) {
    std::string prefix = std::string("--") + name + "=";
    for (int i = 1; i < argc; i++) {
        if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return argv[i] + prefix.size();
    }
    return fallback;
}

bool has_flag(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (std::strcmp(argv[i], flag) == 0) return true;
    return false;
}

std::uint64_t caps_permitted_of_self() {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (syscall(SYS_capget, &h, d) != 0) return 0;
    return d[0].permitted | (static_cast<std::uint64_t>(d[1].permitted) << 32);
}

int verdict(const std::string &problems, const std::string &test, bool shim) {
    if (!problems.empty()) return std::printf("FAIL:\n%s", problems.c_str()), 1;
    std::printf("PASS %s (%s)\n", test.c_str(), shim ? "shim" : "control");
    return 0;
}

int require_root_with(std::initializer_list<int> caps) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    std::uint64_t prm = caps_permitted_of_self();
    for (int cap : caps) {
        if (!((prm >> cap) & 1)) {
            std::printf("capability %d is not in the permitted set at start\n", cap);
            return pt::skip("a capability this test drops is not held");
        }
    }
    return -1;
}

int drop_cap(int cap) {
    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    d[cap / 32].permitted &= ~(1u << (cap % 32));
    d[cap / 32].effective &= ~(1u << (cap % 32));
    d[cap / 32].inheritable &= ~(1u << (cap % 32));
    return capset(&h, d);
}

}  // namespace hx
