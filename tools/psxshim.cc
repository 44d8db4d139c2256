// psxshim(1): run a command with libpsxshim preloaded.
//
// The launcher execs the command in place (no fork), so the command's exit
// status, and death by a signal, are the launcher's own.  Before exec it
// refuses the cases where the dynamic loader would silently ignore
// LD_PRELOAD: static programs and secure-execution programs.
//
// Tool code: the C++ library is fine here; none of it goes into libpsxshim.
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <cstring>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "tools_config.h"

extern char **environ;

namespace {

// coreutils env(1)/nice(1) conventions.
constexpr int kExitLauncher = 125;
constexpr int kExitCannotRun = 126;
constexpr int kExitNotFound = 127;

const char *const kSoname = "libpsxshim.so.0";

bool g_verbose = false;

[[gnu::format(printf, 1, 2)]] void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::fputs("psxshim: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
}

void usage(FILE *out) {
    std::fprintf(out,
                 "Usage: psxshim [OPTION]... [--] COMMAND [ARG]...\n"
                 "Run COMMAND with libpsxshim preloaded, so that every credential change it\n"
                 "makes (setuid family, setgroups, capset, credential prctl options) takes\n"
                 "effect on all of its threads.\n"
                 "\n"
                 "  -v, --verbose      turn on the library's log (PSXSHIM_DEBUG=1) and say\n"
                 "                     which library is preloaded\n"
                 "  -t, --timeout MS   how long a broadcast waits for a thread before the\n"
                 "                     process is killed (PSXSHIM_TIMEOUT_MS)\n"
                 "  -h, --help         show this help and exit\n"
                 "  -V, --version      show the version and exit\n"
                 "\n"
                 "PSXSHIM_LIBRARY overrides which library is preloaded.\n"
                 "Exit status: 125 if psxshim itself failed, 126 if COMMAND was found but\n"
                 "cannot be run (or cannot be run with the library preloaded), 127 if COMMAND\n"
                 "was not found, otherwise the status of COMMAND.\n"
                 "See psxshim(1) and libpsxshim(7).\n");
}

bool file_exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool dir_exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string dirname_of(const std::string &p) {
    auto slash = p.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return p.substr(0, slash);
}

std::string basename_of(const std::string &p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool ends_with(const std::string &s, const std::string &tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The directory of this executable, symlinks resolved.
std::optional<std::string> self_dir(const char *argv0) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        return dirname_of(buf);
    }
    // No /proc (chroot): argv[0] is all we have, and only when it has a slash.
    if (argv0 && std::strchr(argv0, '/') && realpath(argv0, buf)) return dirname_of(buf);
    return std::nullopt;
}

// What goes into LD_PRELOAD, and where it came from (for --verbose).
struct Library {
    std::string preload;
    std::string origin;
};

// From a found file <root>/<libdir>/libpsxshim.so.0, the LD_PRELOAD entry.
// When libdir is what the loader substitutes for $LIB (Debian's
// lib/<multiarch>), the entry says <root>/$LIB/... so that a 32-bit program
// started by the command gets the 32-bit library, if installed, instead of a
// "wrong ELF class" error.
std::string preload_entry(const std::string &root) {
    std::string libdir = PSXSHIM_LIBDIR_REL;
    std::string dl_lib = PSXSHIM_DL_LIB;
    if (!dl_lib.empty() && libdir == dl_lib) return root + "/$LIB/" + kSoname;
    return root + "/" + libdir + "/" + kSoname;
}

// Lookup order, first match wins:
//   1. $PSXSHIM_LIBRARY, verbatim (a path, or a bare name for ld.so to search);
//   2. the build tree, when this executable is in one (<build>/tools/psxshim);
//   3. relative to this executable: <prefix>/<bindir>/psxshim finds
//      <prefix>/<libdir>/libpsxshim.so.0, so an install under DESTDIR or a
//      moved prefix works;
//   4. the libdir configured at build time.
std::optional<Library> find_library(const char *argv0) {
    if (const char *env = getenv("PSXSHIM_LIBRARY"); env && *env) {
        std::string v = env;
        if (v.find('/') == std::string::npos) return Library{v, "PSXSHIM_LIBRARY (bare name)"};
        char buf[PATH_MAX];
        if (!realpath(env, buf) || !file_exists(buf)) {
            say("PSXSHIM_LIBRARY=%s: %s", env, std::strerror(errno ? errno : ENOENT));
            return std::nullopt;
        }
        return Library{buf, "PSXSHIM_LIBRARY"};
    }
    auto dir = self_dir(argv0);
    if (dir) {
        std::string build = dirname_of(*dir);
        std::string built = build + "/shim/" + kSoname;
        if (basename_of(*dir) == "tools" && dir_exists(build + "/meson-private") && file_exists(built))
            return Library{built, "build tree"};

        std::string bindir = PSXSHIM_BINDIR_REL;
        std::string libdir = PSXSHIM_LIBDIR_REL;
        if (!bindir.empty() && bindir[0] != '/' && !libdir.empty() && libdir[0] != '/' &&
            ends_with(*dir, "/" + bindir)) {
            std::string root = dir->substr(0, dir->size() - bindir.size() - 1);
            if (file_exists(root + "/" + libdir + "/" + kSoname))
                return Library{preload_entry(root), "relative to " + *dir};
        }
    }
    std::string configured = std::string(PSXSHIM_LIBDIR) + "/" + kSoname;
    if (file_exists(configured)) {
        std::string prefix = PSXSHIM_PREFIX;
        std::string libdir = PSXSHIM_LIBDIR_REL;
        if (!libdir.empty() && libdir[0] != '/') return Library{preload_entry(prefix), "configured libdir"};
        return Library{configured, "configured libdir"};
    }
    say("cannot find %s (looked next to this program and in %s); set PSXSHIM_LIBRARY", kSoname,
        PSXSHIM_LIBDIR);
    return std::nullopt;
}

// LD_PRELOAD is split on spaces and colons; an entry is ours if its file
// name starts with "libpsxshim" (any version, any copy such as the
// set-user-ID one described in libpsxshim(7)).
bool already_preloaded(const char *value) {
    if (!value) return false;
    std::string v = value;
    std::size_t i = 0;
    while (i <= v.size()) {
        std::size_t j = v.find_first_of(": ", i);
        if (j == std::string::npos) j = v.size();
        std::string entry = v.substr(i, j - i);
        if (!entry.empty() && basename_of(entry).rfind("libpsxshim", 0) == 0) return true;
        i = j + 1;
    }
    return false;
}

// execvp's search, done by hand so that the file can be checked before exec.
// Returns the path, or sets *status to 126/127 and returns nullopt.
std::optional<std::string> resolve_command(const std::string &cmd, int *status) {
    if (cmd.find('/') != std::string::npos) {
        if (access(cmd.c_str(), F_OK) != 0) {
            say("%s: %s", cmd.c_str(), std::strerror(errno));
            *status = errno == ENOENT || errno == ENOTDIR ? kExitNotFound : kExitCannotRun;
            return std::nullopt;
        }
        return cmd;
    }
    const char *path = getenv("PATH");
    std::string search = path ? path : "/usr/local/bin:/bin:/usr/bin";
    bool saw_eacces = false;
    std::size_t i = 0;
    while (i <= search.size()) {
        std::size_t j = search.find(':', i);
        if (j == std::string::npos) j = search.size();
        std::string dir = search.substr(i, j - i);
        if (dir.empty()) dir = ".";  // an empty PATH element means the current directory
        std::string cand = dir + "/" + cmd;
        struct stat st;
        if (stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(cand.c_str(), X_OK) == 0) return cand;
            saw_eacces = true;
        }
        i = j + 1;
    }
    if (saw_eacces) {
        say("%s: %s", cmd.c_str(), std::strerror(EACCES));
        *status = kExitCannotRun;
    } else {
        say("%s: command not found", cmd.c_str());
        *status = kExitNotFound;
    }
    return std::nullopt;
}

// Why the loader would ignore LD_PRELOAD for `path`, or empty when it would
// not.  `depth` follows #! interpreters (the kernel allows a few levels).
struct Refusal {
    std::string reason;
    bool secure_execution = false;
};

std::optional<Refusal> check_target(const std::string &path, int depth);

// Secure execution (AT_SECURE) is what makes glibc drop LD_PRELOAD.  The
// kernel grants it when exec changes the effective ids away from the real
// ones, or when file capabilities raise privileges for a non-root user.  A
// nosuid mount or no_new_privs turns both off.
std::optional<Refusal> check_privilege(const std::string &path, const struct stat &st) {
    struct statvfs vfs;
    if (statvfs(path.c_str(), &vfs) == 0 && (vfs.f_flag & ST_NOSUID)) return std::nullopt;
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1) return std::nullopt;
    if ((st.st_mode & S_ISUID) && st.st_uid != getuid())
        return Refusal{"it is set-user-ID (owner uid " + std::to_string(st.st_uid) + ")", true};
    // Set-group-ID without group execute means mandatory locking, not set-group-ID.
    if ((st.st_mode & S_ISGID) && (st.st_mode & S_IXGRP) && st.st_gid != getgid())
        return Refusal{"it is set-group-ID (group gid " + std::to_string(st.st_gid) + ")", true};
    if (getuid() != 0 && getxattr(path.c_str(), "security.capability", nullptr, 0) >= 0)
        return Refusal{"it has file capabilities (security.capability)", true};
    return std::nullopt;
}

std::optional<Refusal> check_script(int fd, int depth) {
    char line[256];
    ssize_t n = pread(fd, line, sizeof line - 1, 0);
    if (n <= 2) return std::nullopt;
    line[n] = '\0';
    char *p = line + 2;
    while (*p == ' ' || *p == '\t') p++;
    char *end = p;
    while (*end && *end != ' ' && *end != '\t' && *end != '\n') end++;
    *end = '\0';
    if (!*p || depth >= 4) return std::nullopt;  // let the kernel report it
    // The kernel ignores set-user-ID bits on scripts: only the interpreter matters.
    auto r = check_target(p, depth + 1);
    if (r) r->reason = "its interpreter " + std::string(p) + ": " + r->reason;
    return r;
}

std::optional<Refusal> check_target(const std::string &path, int depth) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;  // execute-only or gone: exec will tell
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return std::nullopt;
    }
    unsigned char ident[EI_NIDENT] = {};
    ssize_t got = pread(fd, ident, sizeof ident, 0);
    if (got >= 2 && ident[0] == '#' && ident[1] == '!') {
        auto r = check_script(fd, depth);
        close(fd);
        return r;
    }
    if (got < EI_NIDENT || std::memcmp(ident, ELFMAG, SELFMAG) != 0) {
        close(fd);
        return std::nullopt;  // not ELF: exec decides (ENOEXEC -> 126)
    }
    // Program headers, 32- or 64-bit: a dynamically linked program names its
    // loader in PT_INTERP.  Without one (static, static-pie) nothing reads
    // LD_PRELOAD.
    bool has_interp = false;
    bool ok = false;
    if (ident[EI_CLASS] == ELFCLASS64) {
        Elf64_Ehdr eh;
        if (pread(fd, &eh, sizeof eh, 0) == sizeof eh && eh.e_phentsize == sizeof(Elf64_Phdr)) {
            ok = true;
            for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                if (pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != sizeof ph) {
                    ok = false;
                    break;
                }
                if (ph.p_type == PT_INTERP) has_interp = true;
            }
        }
    } else if (ident[EI_CLASS] == ELFCLASS32) {
        Elf32_Ehdr eh;
        if (pread(fd, &eh, sizeof eh, 0) == sizeof eh && eh.e_phentsize == sizeof(Elf32_Phdr)) {
            ok = true;
            for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf32_Phdr ph;
                if (pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != sizeof ph) {
                    ok = false;
                    break;
                }
                if (ph.p_type == PT_INTERP) has_interp = true;
            }
        }
    }
    close(fd);
    if (!ok) return std::nullopt;  // malformed: exec decides
    if (!has_interp) return Refusal{"it is statically linked (no PT_INTERP), so no loader reads LD_PRELOAD"};
    return check_privilege(path, st);
}

// Parses a positive decimal number of milliseconds.
bool valid_timeout(const char *s) {
    if (!s || !*s) return false;
    char *end = nullptr;
    errno = 0;
    long long v = std::strtoll(s, &end, 10);
    return errno == 0 && *end == '\0' && v > 0 && s[0] != '+';
}

}  // namespace

int main(int argc, char **argv) {
    const char *timeout = nullptr;
    int i = 1;
    for (; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--") {
            i++;
            break;
        }
        if (a.empty() || a[0] != '-' || a == "-") break;
        if (a == "-v" || a == "--verbose") {
            g_verbose = true;
        } else if (a == "-h" || a == "--help") {
            usage(stdout);
            return std::fflush(stdout) == 0 ? 0 : kExitLauncher;
        } else if (a == "-V" || a == "--version") {
            std::printf("psxshim %s\n", PSXSHIM_VERSION);
            return std::fflush(stdout) == 0 ? 0 : kExitLauncher;
        } else if (a == "-t" || a == "--timeout") {
            if (i + 1 >= argc) {
                say("%s needs a value in milliseconds", a.c_str());
                return kExitLauncher;
            }
            timeout = argv[++i];
        } else if (a.rfind("--timeout=", 0) == 0) {
            timeout = argv[i] + std::strlen("--timeout=");
        } else {
            say("unknown option '%s' (try 'psxshim --help')", a.c_str());
            return kExitLauncher;
        }
    }
    if (timeout && !valid_timeout(timeout)) {
        say("--timeout wants a positive number of milliseconds, not '%s'", timeout);
        return kExitLauncher;
    }
    if (i >= argc) {
        say("no command given (try 'psxshim --help')");
        return kExitLauncher;
    }

    int status = kExitLauncher;
    auto path = resolve_command(argv[i], &status);
    if (!path) return status;

    if (auto refusal = check_target(*path, 0)) {
        say("refusing to run %s: %s; the library would not be loaded and its threads would not be "
            "protected.",
            path->c_str(), refusal->reason.c_str());
        if (refusal->secure_execution)
            say("the loader ignores LD_PRELOAD paths for secure-execution programs; see \"SET-USER-ID "
                "PROGRAMS\" in libpsxshim(7) for the routes that work");
        return kExitCannotRun;
    }

    const char *old = getenv("LD_PRELOAD");
    if (already_preloaded(old)) {
        if (g_verbose) say("LD_PRELOAD already names libpsxshim (%s); leaving it as it is", old);
    } else {
        auto lib = find_library(argv[0]);
        if (!lib) return kExitLauncher;
        // The loader splits LD_PRELOAD on spaces and colons.
        if (lib->preload.find_first_of(": ") != std::string::npos) {
            say("the library path '%s' contains a space or colon, which LD_PRELOAD cannot express; "
                "set PSXSHIM_LIBRARY to a copy elsewhere",
                lib->preload.c_str());
            return kExitLauncher;
        }
        // Appended, not prepended: a sanitizer runtime must stay first.
        std::string value = old && *old ? std::string(old) + ":" + lib->preload : lib->preload;
        if (setenv("LD_PRELOAD", value.c_str(), 1) != 0) {
            say("setenv: %s", std::strerror(errno));
            return kExitLauncher;
        }
        if (g_verbose) say("preloading %s (found via %s)", lib->preload.c_str(), lib->origin.c_str());
    }
    if (g_verbose && setenv("PSXSHIM_DEBUG", "1", 1) != 0) return kExitLauncher;
    if (timeout && setenv("PSXSHIM_TIMEOUT_MS", timeout, 1) != 0) return kExitLauncher;

    std::fflush(stdout);
    execve(path->c_str(), argv + i, environ);
    int e = errno;
    say("cannot run %s: %s", path->c_str(), std::strerror(e));
    return e == ENOENT ? kExitNotFound : kExitCannotRun;
}
