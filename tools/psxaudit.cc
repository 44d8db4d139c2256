// psxaudit(1): show every thread's credentials of a process and point out
// the threads that differ from the rest.
//
// Everything comes from /proc/PID/task/TID/status as an outside observer
// sees it.  Securebits and keep-caps are per-thread too, but the kernel
// exposes them only to the thread itself (prctl), so they are reported as
// not available rather than guessed.
//
// Tool code: the C++ library is fine here; none of it goes into libpsxshim.
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <cstring>
#include <sys/capability.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tools_config.h"

namespace {

constexpr int kExitAgree = 0;
constexpr int kExitDiverge = 1;
constexpr int kExitError = 2;

const char *const kNotExposed = "n/a (not exposed by the kernel)";

struct Thread {
    long tid = 0;
    std::string name;
    std::string state;
    long uid[4] = {-1, -1, -1, -1};  // real, effective, saved, fs
    long gid[4] = {-1, -1, -1, -1};
    std::vector<long> groups;
    std::uint64_t cap[5] = {};  // CapInh CapPrm CapEff CapBnd CapAmb
    int no_new_privs = -1;
    int seccomp = -1;
    int seccomp_filters = -1;  // -1: the kernel predates the field
    bool zombie = false;
    // Filled in by the comparison.
    std::vector<std::string> differs;  // counted fields that differ from the majority
    bool fs_differs = false;           // fsuid/fsgid differ (per-thread by design)
};

const char *const kCapField[5] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
const char *const kCapJson[5] = {"inheritable", "permitted", "effective", "bounding", "ambient"};

struct Process {
    long pid = 0;
    std::string name;
    std::string error;  // non-empty: nothing else is valid
    std::optional<bool> shim_loaded;
    std::string shim_path;
    std::string maps_error;
    std::vector<Thread> threads;
    std::size_t majority = 0;  // index of a thread of the largest agreeing group
    std::size_t majority_size = 0;
    std::size_t compared = 0;
    bool diverge = false;
};

// ---- reading /proc -------------------------------------------------------

bool parse_ids(const std::string &v, long out[4]) {
    std::istringstream in(v);
    for (int i = 0; i < 4; i++)
        if (!(in >> out[i])) return false;
    return true;
}

bool read_thread(long pid, long tid, Thread *t) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
    if (!in) return false;  // it exited since the directory was listed
    t->tid = tid;
    std::string line;
    bool any = false;
    while (std::getline(in, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        std::string val = line.substr(colon + 1);
        val.erase(0, val.find_first_not_of(" \t"));
        any = true;
        if (key == "Name") {
            t->name = val;
        } else if (key == "State") {
            t->state = val;
            t->zombie = !val.empty() && (val[0] == 'Z' || val[0] == 'X');
        } else if (key == "Uid") {
            parse_ids(val, t->uid);
        } else if (key == "Gid") {
            parse_ids(val, t->gid);
        } else if (key == "Groups") {
            std::istringstream g(val);
            long x;
            while (g >> x) t->groups.push_back(x);
        } else if (key == "NoNewPrivs") {
            t->no_new_privs = std::atoi(val.c_str());
        } else if (key == "Seccomp") {
            t->seccomp = std::atoi(val.c_str());
        } else if (key == "Seccomp_filters") {
            t->seccomp_filters = std::atoi(val.c_str());
        } else {
            for (int i = 0; i < 5; i++)
                if (key == kCapField[i]) t->cap[i] = std::strtoull(val.c_str(), nullptr, 16);
        }
    }
    // Name: in status escapes backslashes and newlines; comm has the raw bytes.
    std::ifstream comm("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm",
                       std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(comm)), std::istreambuf_iterator<char>());
    if (comm && !raw.empty() && raw.back() == '\n') {
        raw.pop_back();
        t->name = raw;
    }
    return any;
}

std::string errno_text(int e) {
    switch (e) {
    case ENOENT:
    case ESRCH: return "no such process";
    case EACCES:
    case EPERM: return "permission denied";
    default: return std::strerror(e);
    }
}

void read_maps(Process *p) {
    std::string path = "/proc/" + std::to_string(p->pid) + "/maps";
    FILE *f = std::fopen(path.c_str(), "re");
    if (!f) {
        p->maps_error = "cannot read " + path + ": " + errno_text(errno);
        return;
    }
    char *line = nullptr;
    size_t cap = 0;
    ssize_t n;
    bool read_any = false;
    p->shim_loaded = false;
    while ((n = getline(&line, &cap, f)) > 0) {
        read_any = true;
        std::string l(line, static_cast<size_t>(n));
        if (!l.empty() && l.back() == '\n') l.pop_back();
        auto slash = l.find('/');
        if (slash == std::string::npos) continue;
        std::string file = l.substr(slash);
        std::string base = file.substr(file.rfind('/') + 1);
        if (base.rfind("libpsxshim", 0) == 0) {
            p->shim_loaded = true;
            p->shim_path = file;
            break;
        }
    }
    // A non-dumpable process owned by someone else yields an empty read.
    if (!read_any && std::ferror(f)) {
        p->shim_loaded.reset();
        p->maps_error = "cannot read " + path + ": " + errno_text(errno);
    }
    std::free(line);
    std::fclose(f);
}

Process read_process(long pid) {
    Process p;
    p.pid = pid;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR *d = opendir(dir.c_str());
    if (!d) {
        p.error = errno_text(errno);
        return p;
    }
    std::vector<long> tids;
    while (dirent *e = readdir(d)) {
        char *end = nullptr;
        long tid = std::strtol(e->d_name, &end, 10);
        if (end != e->d_name && *end == '\0' && tid > 0) tids.push_back(tid);
    }
    closedir(d);
    std::sort(tids.begin(), tids.end());
    for (long tid : tids) {
        Thread t;
        if (read_thread(pid, tid, &t)) p.threads.push_back(std::move(t));
    }
    if (p.threads.empty()) {
        p.error = "no such process (it exited)";
        return p;
    }
    {
        std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
        if (!comm || !std::getline(comm, p.name)) p.name = p.threads.front().name;
    }
    read_maps(&p);
    return p;
}

// ---- comparison ----------------------------------------------------------

std::string ids3(const long v[4]) {
    return std::to_string(v[0]) + "," + std::to_string(v[1]) + "," + std::to_string(v[2]);
}

std::string join_groups(const std::vector<long> &g) {
    std::string s;
    for (long x : g) s += (s.empty() ? "" : " ") + std::to_string(x);
    return s;
}

std::string hex16(std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// The fields a credential broadcast keeps equal, in display order.  fsuid
// and fsgid are left out: psxshim and glibc deliberately keep setfsuid and
// setfsgid per-thread, so file servers legitimately differ there.
std::vector<std::pair<std::string, std::string>> counted_fields(const Thread &t) {
    std::vector<std::pair<std::string, std::string>> f;
    f.emplace_back("uid", ids3(t.uid));
    f.emplace_back("gid", ids3(t.gid));
    f.emplace_back("groups", join_groups(t.groups));
    for (int i = 0; i < 5; i++) f.emplace_back(kCapField[i], hex16(t.cap[i]));
    f.emplace_back("NoNewPrivs", std::to_string(t.no_new_privs));
    f.emplace_back("Seccomp", std::to_string(t.seccomp));
    f.emplace_back("Seccomp_filters", std::to_string(t.seccomp_filters));
    return f;
}

std::string key_of(const Thread &t) {
    std::string k;
    for (auto &[name, val] : counted_fields(t)) k += name + "=" + val + ";";
    return k;
}

// The majority is the largest group of live threads with equal credentials;
// on a tie, the group holding the main thread (tid == pid).
void compare(Process *p) {
    std::map<std::string, std::size_t> count;
    for (auto &t : p->threads)
        if (!t.zombie) count[key_of(t)]++;
    p->compared = 0;
    for (auto &[k, n] : count) p->compared += n;
    if (p->compared == 0) return;
    std::string best;
    std::size_t best_n = 0;
    for (auto &t : p->threads) {
        if (t.zombie) continue;
        std::string k = key_of(t);
        std::size_t n = count[k];
        if (n > best_n || (n == best_n && t.tid == p->pid)) {
            best = k;
            best_n = n;
        }
    }
    for (std::size_t i = 0; i < p->threads.size(); i++)
        if (!p->threads[i].zombie && key_of(p->threads[i]) == best) {
            p->majority = i;
            break;
        }
    p->majority_size = best_n;
    const Thread &m = p->threads[p->majority];
    auto mf = counted_fields(m);
    for (auto &t : p->threads) {
        if (t.zombie) continue;
        auto tf = counted_fields(t);
        for (std::size_t i = 0; i < tf.size(); i++)
            if (tf[i].second != mf[i].second) t.differs.push_back(tf[i].first);
        t.fs_differs = t.uid[3] != m.uid[3] || t.gid[3] != m.gid[3];
        if (!t.differs.empty()) p->diverge = true;
    }
}

// ---- rendering -----------------------------------------------------------

int known_caps() {
    static int n = -1;
    if (n < 0) {
        n = static_cast<int>(cap_max_bits());
        if (n <= 0 || n > 64) n = 64;
    }
    return n;
}

std::string cap_name(int bit) {
    char *s = cap_to_name(static_cast<cap_value_t>(bit));
    if (!s) return std::to_string(bit);
    std::string r = s;
    cap_free(s);
    return r;
}

std::string name_list(std::uint64_t mask) {
    std::string s;
    for (int b = 0; b < 64; b++)
        if (mask >> b & 1) s += (s.empty() ? "" : ",") + cap_name(b);
    return s;
}

// One set as names: "none", "all", "all except cap_a,cap_b" or "cap_a,cap_b".
std::string set_names(std::uint64_t mask) {
    int n = known_caps();
    std::uint64_t all = n >= 64 ? ~0ULL : (1ULL << n) - 1;
    if (mask == 0) return "none";
    if (mask == all) return "all";
    int held = __builtin_popcountll(mask & all);
    if ((mask & ~all) == 0 && held > n / 2) return "all except " + name_list(all & ~mask);
    return name_list(mask);
}

// Inheritable, permitted and effective in libcap's text form (cap_to_text),
// e.g. "=ep cap_net_raw-ep".
std::string iep_text(const Thread &t) {
    cap_t c = cap_init();
    if (!c) return "?";
    const cap_flag_t flag[3] = {CAP_INHERITABLE, CAP_PERMITTED, CAP_EFFECTIVE};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 64; b++)
            if (t.cap[i] >> b & 1) {
                cap_value_t v = b;
                cap_set_flag(c, flag[i], 1, &v, CAP_SET);
            }
    ssize_t len = 0;
    char *txt = cap_to_text(c, &len);
    std::string r = txt ? txt : "?";
    if (txt) cap_free(txt);
    cap_free(c);
    return r;
}

const char *seccomp_mode(int m) {
    switch (m) {
    case 0: return "disabled";
    case 1: return "strict";
    case 2: return "filter";
    default: return "unknown";
    }
}

std::string field_text(const Thread &t, const std::string &field) {
    if (field == "uid") return "uid " + ids3(t.uid);
    if (field == "gid") return "gid " + ids3(t.gid);
    if (field == "groups") return "groups [" + join_groups(t.groups) + "]";
    for (int i = 0; i < 5; i++)
        if (field == kCapField[i]) return field + " " + hex16(t.cap[i]) + " (" + set_names(t.cap[i]) + ")";
    if (field == "NoNewPrivs") return "NoNewPrivs " + std::to_string(t.no_new_privs);
    if (field == "Seccomp") return "Seccomp " + std::to_string(t.seccomp) + " (" + seccomp_mode(t.seccomp) + ")";
    if (field == "Seccomp_filters") return "Seccomp_filters " + std::to_string(t.seccomp_filters);
    return field;
}

void print_block(const Thread &t, const char *indent) {
    std::printf("%suid        real %ld  effective %ld  saved %ld  fs %ld\n", indent, t.uid[0], t.uid[1], t.uid[2],
                t.uid[3]);
    std::printf("%sgid        real %ld  effective %ld  saved %ld  fs %ld\n", indent, t.gid[0], t.gid[1], t.gid[2],
                t.gid[3]);
    std::printf("%sgroups     %s\n", indent, t.groups.empty() ? "(none)" : join_groups(t.groups).c_str());
    std::printf("%scaps       %s\n", indent, iep_text(t).c_str());
    for (int i = 0; i < 5; i++)
        std::printf("%s%s     %s  %s\n", indent, kCapField[i], hex16(t.cap[i]).c_str(), set_names(t.cap[i]).c_str());
    std::printf("%sNoNewPrivs %d\n", indent, t.no_new_privs);
    if (t.seccomp_filters >= 0)
        std::printf("%sSeccomp    %d (%s), %d filter%s\n", indent, t.seccomp, seccomp_mode(t.seccomp),
                    t.seccomp_filters, t.seccomp_filters == 1 ? "" : "s");
    else
        std::printf("%sSeccomp    %d (%s)\n", indent, t.seccomp, seccomp_mode(t.seccomp));
    std::printf("%ssecurebits %s\n", indent, kNotExposed);
    std::printf("%skeep-caps  %s\n", indent, kNotExposed);
}

std::string shim_text(const Process &p) {
    if (!p.shim_loaded) return "unknown (" + p.maps_error + ")";
    if (*p.shim_loaded) return "loaded (" + p.shim_path + ")";
    return "not loaded";
}

void print_text(const Process &p, bool full) {
    if (!p.error.empty()) {
        std::printf("PID %ld: error: %s\n", p.pid, p.error.c_str());
        return;
    }
    std::size_t n = p.threads.size();
    std::printf("PID %ld (%s): %zu thread%s, %s\n", p.pid, p.name.c_str(), n, n == 1 ? "" : "s",
                p.compared == 0 ? "no live thread to compare"
                : p.diverge     ? "threads DIVERGE"
                                : "all threads agree");
    std::printf("  psxshim    %s\n", shim_text(p).c_str());
    if (p.compared == 0) return;
    const Thread &m = p.threads[p.majority];
    if (!full) {
        std::printf("  %s (%zu of %zu):\n", p.diverge ? "majority" : "credentials", p.majority_size, p.compared);
        print_block(m, "    ");
    }
    std::printf("  threads:\n");
    for (const auto &t : p.threads) {
        char mark = t.zombie ? ' ' : !t.differs.empty() ? '!' : t.fs_differs ? '~' : ' ';
        std::printf("  %c %7ld %-16s", mark, t.tid, t.name.c_str());
        if (t.zombie) {
            std::printf(" exiting (state %s), not compared\n", t.state.c_str());
        } else if (!t.differs.empty()) {
            std::printf(" differs in");
            for (std::size_t i = 0; i < t.differs.size(); i++)
                std::printf("%s %s", i ? ";" : "", field_text(t, t.differs[i]).c_str());
            std::printf("\n");
        } else {
            std::printf(" %s\n", p.diverge ? "= majority" : "=");
        }
        if (t.fs_differs && !t.zombie)
            std::printf("            fsuid %ld fsgid %ld differ from the majority (per-thread by design, not "
                        "counted)\n",
                        t.uid[3], t.gid[3]);
        if (full && !t.zombie) print_block(t, "            ");
    }
}

// ---- JSON ----------------------------------------------------------------

// A minimal JSON writer: the caller produces a well-formed sequence, this
// class handles commas and string escaping.
class Json {
public:
    void begin_object() { open('{'); }
    void end_object() { close('}'); }
    void begin_array() { open('['); }
    void end_array() { close(']'); }
    void key(const std::string &k) {
        comma();
        str(k);
        out_ += ':';
        after_key_ = true;
    }
    void value(const std::string &s) {
        comma();
        str(s);
    }
    void value(const char *s) { value(std::string(s)); }
    void value(long long v) {
        comma();
        out_ += std::to_string(v);
    }
    void value(bool b) {
        comma();
        out_ += b ? "true" : "false";
    }
    void null() {
        comma();
        out_ += "null";
    }
    const std::string &text() const { return out_; }

private:
    void open(char c) {
        comma();
        out_ += c;
        first_.push_back(true);
    }
    void close(char c) {
        out_ += c;
        first_.pop_back();
    }
    void comma() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (!first_.empty()) {
            if (!first_.back()) out_ += ',';
            first_.back() = false;
        }
    }
    void str(const std::string &s) {
        out_ += '"';
        for (unsigned char c : s) {
            switch (c) {
            case '"': out_ += "\\\""; break;
            case '\\': out_ += "\\\\"; break;
            case '\n': out_ += "\\n"; break;
            case '\r': out_ += "\\r"; break;
            case '\t': out_ += "\\t"; break;
            case '\b': out_ += "\\b"; break;
            case '\f': out_ += "\\f"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out_ += buf;
                } else {
                    out_ += static_cast<char>(c);
                }
            }
        }
        out_ += '"';
    }
    std::string out_;
    std::vector<bool> first_;
    bool after_key_ = false;
};

// Thread names are arbitrary bytes; JSON wants UTF-8.  Bytes that are not
// part of valid UTF-8 become U+FFFD.
std::string utf8_clean(const std::string &s) {
    std::string r;
    std::size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= s.size();
        for (std::size_t k = 1; ok && k < len; k++) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
        if (ok) {
            r.append(s, i, len);
            i += len;
        } else {
            r += "\xef\xbf\xbd";
            i++;
        }
    }
    return r;
}

void json_ids(Json &j, const char *name, const long v[4]) {
    j.key(name);
    j.begin_object();
    const char *k[4] = {"real", "effective", "saved", "fs"};
    for (int i = 0; i < 4; i++) {
        j.key(k[i]);
        j.value(static_cast<long long>(v[i]));
    }
    j.end_object();
}

void json_thread(Json &j, const Thread &t) {
    j.begin_object();
    j.key("tid");
    j.value(static_cast<long long>(t.tid));
    j.key("name");
    j.value(utf8_clean(t.name));
    j.key("state");
    j.value(utf8_clean(t.state));
    j.key("compared");
    j.value(!t.zombie);
    json_ids(j, "uid", t.uid);
    json_ids(j, "gid", t.gid);
    j.key("groups");
    j.begin_array();
    for (long g : t.groups) j.value(static_cast<long long>(g));
    j.end_array();
    j.key("capabilities");
    j.begin_object();
    for (int i = 0; i < 5; i++) {
        j.key(kCapJson[i]);
        j.begin_object();
        j.key("hex");
        j.value(hex16(t.cap[i]));
        j.key("names");
        j.value(set_names(t.cap[i]));
        j.end_object();
    }
    j.key("text");
    j.value(iep_text(t));
    j.end_object();
    j.key("no_new_privs");
    j.value(static_cast<long long>(t.no_new_privs));
    j.key("seccomp");
    j.value(static_cast<long long>(t.seccomp));
    j.key("seccomp_filters");
    if (t.seccomp_filters >= 0)
        j.value(static_cast<long long>(t.seccomp_filters));
    else
        j.null();
    // Not readable from outside the thread; null says "unknown", not "0".
    j.key("securebits");
    j.null();
    j.key("keep_caps");
    j.null();
    j.key("differs");
    j.value(!t.differs.empty());
    j.key("differing_fields");
    j.begin_array();
    for (auto &f : t.differs) j.value(f);
    j.end_array();
    j.key("fs_ids_differ");
    j.value(t.fs_differs);
    j.end_object();
}

void json_process(Json &j, const Process &p) {
    j.begin_object();
    j.key("pid");
    j.value(static_cast<long long>(p.pid));
    if (!p.error.empty()) {
        j.key("error");
        j.value(p.error);
        j.end_object();
        return;
    }
    j.key("name");
    j.value(utf8_clean(p.name));
    j.key("psxshim_loaded");
    if (p.shim_loaded)
        j.value(*p.shim_loaded);
    else
        j.null();
    j.key("psxshim_path");
    if (p.shim_loaded && *p.shim_loaded)
        j.value(utf8_clean(p.shim_path));
    else
        j.null();
    j.key("agree");
    j.value(!p.diverge);
    j.key("majority_tid");
    if (p.compared)
        j.value(static_cast<long long>(p.threads[p.majority].tid));
    else
        j.null();
    j.key("threads");
    j.begin_array();
    for (auto &t : p.threads) json_thread(j, t);
    j.end_array();
    j.end_object();
}

void usage(FILE *out) {
    std::fprintf(out,
                 "Usage: psxaudit [OPTION]... PID...\n"
                 "Show the credentials of every thread of each process and point out the\n"
                 "threads that differ from the majority.\n"
                 "\n"
                 "  -j, --json      print JSON instead of text\n"
                 "  -f, --full      print every thread's credentials, not only the differences\n"
                 "  -h, --help      show this help and exit\n"
                 "  -V, --version   show the version and exit\n"
                 "\n"
                 "Exit status: 0 if every thread of every process agrees, 1 if some differ,\n"
                 "2 on error (no such process, permission denied, bad usage).\n"
                 "See psxaudit(1).\n");
}

}  // namespace

int main(int argc, char **argv) {
    bool json = false;
    bool full = false;
    std::vector<long> pids;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (!options_done && a == "--") {
            options_done = true;
        } else if (!options_done && (a == "-j" || a == "--json")) {
            json = true;
        } else if (!options_done && (a == "-f" || a == "--full")) {
            full = true;
        } else if (!options_done && (a == "-h" || a == "--help")) {
            usage(stdout);
            return 0;
        } else if (!options_done && (a == "-V" || a == "--version")) {
            std::printf("psxaudit %s\n", PSXSHIM_VERSION);
            return 0;
        } else if (!options_done && a.size() > 1 && a[0] == '-') {
            std::fprintf(stderr, "psxaudit: unknown option '%s' (try 'psxaudit --help')\n", a.c_str());
            return kExitError;
        } else {
            char *end = nullptr;
            errno = 0;
            long pid = std::strtol(a.c_str(), &end, 10);
            if (a.empty() || *end != '\0' || errno != 0 || pid <= 0 || a[0] == '+') {
                std::fprintf(stderr, "psxaudit: '%s' is not a process ID\n", a.c_str());
                return kExitError;
            }
            pids.push_back(pid);
        }
    }
    if (pids.empty()) {
        std::fprintf(stderr, "psxaudit: no process ID given (try 'psxaudit --help')\n");
        return kExitError;
    }

    std::vector<Process> procs;
    bool error = false, diverge = false;
    for (long pid : pids) {
        Process p = read_process(pid);
        if (p.error.empty()) compare(&p);
        error |= !p.error.empty();
        diverge |= p.diverge;
        procs.push_back(std::move(p));
    }

    if (json) {
        Json j;
        j.begin_object();
        j.key("psxaudit_version");
        j.value(PSXSHIM_VERSION);
        j.key("agree");
        j.value(!diverge && !error);
        j.key("processes");
        j.begin_array();
        for (auto &p : procs) json_process(j, p);
        j.end_array();
        j.end_object();
        std::printf("%s\n", j.text().c_str());
    } else {
        for (std::size_t i = 0; i < procs.size(); i++) {
            if (i) std::printf("\n");
            print_text(procs[i], full);
        }
    }
    for (auto &p : procs)
        if (!p.error.empty()) std::fprintf(stderr, "psxaudit: %ld: %s\n", p.pid, p.error.c_str());
    if (std::fflush(stdout) != 0) return kExitError;
    // An incomplete audit cannot say "agree": errors win over divergence.
    return error ? kExitError : diverge ? kExitDiverge : kExitAgree;
}
