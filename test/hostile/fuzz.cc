// Issue 3, item 7 (brief item 6): differential fuzzing of the wrapped calls.
//
// A seeded generator makes --calls=N (default 100,000) random calls of
// setuid setgid seteuid setegid setreuid setregid setresuid setresgid
// setgroups capset prctl -- valid, invalid and out-of-range arguments, bad
// pointers (NULL, PROT_NONE, unmapped, non-canonical, straddling into a
// PROT_NONE page), credential prctl options with bad extra arguments, and
// other prctl options and invalid option numbers.
//
// The calls run in batches (--batch=200), each batch in a fresh forked child
// starting as root, so that dropping privileges does not end the run and the
// state still evolves within a batch.
//   1. Reference: this program re-executed WITHOUT LD_PRELOAD
//      (--role=reference), single-threaded, runs every batch and streams one
//      record per call: return value, errno, a digest of the caller's
//      resulting credentials, and what capset wrote back into its header.
//   2. Shim: every batch again, in a child with two pthreads and a raw-clone
//      thread, with the shim preloaded; each record must equal the
//      reference's.  After each batch every thread must hold the caller's
//      credentials (/proc).
// On a mismatch: seed, call index, the call and both results are printed.
// --seed=S reproduces a run (default: random, printed).  --expect=diverge
// (negative control, no shim): the per-batch thread check must find threads
// left behind.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "creds.h"
#include "hostile.h"


namespace {

// ---- deterministic generator ------------------------------------------------------

struct Rng {
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    unsigned below(unsigned n) { return static_cast<unsigned>(next() % n); }
    bool chance(unsigned pct) { return below(100) < pct; }
};

enum Fn { kSetuid, kSetgid, kSeteuid, kSetegid, kSetreuid, kSetregid, kSetresuid, kSetresgid, kSetgroups, kCapset, kPrctl };
const char *const kFnName[] = {"setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid",
                               "setresuid", "setresgid", "setgroups", "capset", "prctl"};

// Where a pointer argument points.
enum Ptr { kValid, kNull, kProtNone, kUnmapped, kNonCanonical, kStraddle };
const char *const kPtrName[] = {"valid", "NULL", "PROT_NONE page", "unmapped page", "non-canonical", "straddles into PROT_NONE"};

// A value whose meaning may depend on the state at the time of the call.
enum IdKind { kLiteral, kCurReal, kCurEff, kCurSaved };

struct Op {
    Fn fn;
    // set*id: up to three ids
    IdKind idk[3];
    std::uint32_t id[3];
    // setgroups
    std::uint64_t size;
    Ptr ptr;
    std::vector<std::uint32_t> gids;  // generated contents (for kValid), first min(size, 64) + fill seed
    std::uint64_t fill;
    // capset
    Ptr hptr, dptr;
    std::uint32_t version;
    int pidk;  // 0: 0, 1: own tid, 2: parent pid, 3: 1, 4: literal
    std::int32_t pid;
    int capmod;  // how the data is derived from the current sets
    unsigned bit, word;
    std::uint32_t garbage[6];
    // prctl
    long pa[5];
    Ptr pptr;  // for options taking a pointer
};

std::uint32_t pick_id(Rng &r, IdKind *k) {
    *k = kLiteral;
    switch (r.below(12)) {
    case 0: case 1: return 0;
    case 2: return 1;
    case 3: return 1000;
    case 4: return 65534;
    case 5: return 0xffffffffu;  // -1: "unchanged" for set{re,res}*id, EINVAL elsewhere
    case 6: return 0xfffffffeu;
    case 7: return 0x7fffffffu;
    case 8: *k = kCurReal; return 0;
    case 9: *k = kCurEff; return 0;
    case 10: *k = kCurSaved; return 0;
    default: return static_cast<std::uint32_t>(r.next());
    }
}

Ptr pick_ptr(Rng &r, unsigned valid_pct) {
    if (r.chance(valid_pct)) return kValid;
    return static_cast<Ptr>(1 + r.below(5));
}

Op generate(Rng &r) {
    Op o{};
    unsigned w = r.below(100);
    o.fn = w < 30 ? kPrctl : w < 50 ? kCapset : w < 60 ? kSetgroups : static_cast<Fn>(r.below(8));
    switch (o.fn) {
    case kSetgroups: {
        static const std::uint64_t sizes[] = {0, 1, 2, 3, 16, 65536, 65537, ~0ULL, 0x80000000ULL, 0x100000000ULL, 0x100000001ULL};
        o.size = r.chance(60) ? r.below(40) : sizes[r.below(sizeof sizes / sizeof *sizes)];
        o.ptr = pick_ptr(r, 75);
        o.fill = r.next();
        break;
    }
    case kCapset: {
        o.hptr = pick_ptr(r, 88);
        o.dptr = pick_ptr(r, 85);
        static const std::uint32_t versions[] = {_LINUX_CAPABILITY_VERSION_1, _LINUX_CAPABILITY_VERSION_2,
                                                 _LINUX_CAPABILITY_VERSION_3, 0, 0x20080521};
        o.version = r.chance(70) ? _LINUX_CAPABILITY_VERSION_3 : versions[r.below(5)];
        if (r.chance(8)) o.version = static_cast<std::uint32_t>(r.next());
        o.pidk = r.chance(75) ? 0 : static_cast<int>(r.below(5));
        o.pid = static_cast<std::int32_t>(r.next());
        o.capmod = static_cast<int>(r.below(8));
        o.bit = r.below(64);
        o.word = r.below(3);
        for (auto &g : o.garbage) g = static_cast<std::uint32_t>(r.next());
        break;
    }
    case kPrctl: {
        static const long cred[] = {PR_SET_KEEPCAPS, PR_SET_SECUREBITS, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_SET_NO_NEW_PRIVS};
        static const long other[] = {PR_GET_KEEPCAPS, PR_GET_SECUREBITS, PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS,
                                     PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_GET_NAME, PR_SET_NAME, PR_GET_PDEATHSIG,
                                     0, 9999, -1, 0x59616d61 /* PR_SET_PTRACER */ + 1000};
        bool is_cred = r.chance(65);
        o.pa[0] = is_cred ? cred[r.below(5)] : other[r.below(sizeof other / sizeof *other)];
        for (int i = 1; i < 5; i++) o.pa[i] = 0;
        long opt = o.pa[0];
        if (opt == PR_SET_KEEPCAPS || opt == PR_SET_DUMPABLE) {
            static const long v[] = {0, 1, 2, -1, 0x100000001L};
            o.pa[1] = r.chance(70) ? static_cast<long>(r.below(2)) : v[r.below(5)];
        } else if (opt == PR_SET_SECUREBITS) {
            o.pa[1] = r.chance(80) ? static_cast<long>(r.below(0x100)) : static_cast<long>(r.next());
        } else if (opt == PR_CAPBSET_DROP || opt == PR_CAPBSET_READ) {
            static const long v[] = {41, 63, 64, -1, 1L << 40};
            o.pa[1] = r.chance(85) ? static_cast<long>(r.below(41)) : v[r.below(5)];
        } else if (opt == PR_CAP_AMBIENT) {
            static const long sub[] = {PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER, PR_CAP_AMBIENT_CLEAR_ALL,
                                       PR_CAP_AMBIENT_IS_SET, 0, 7};
            o.pa[1] = sub[r.below(6)];
            o.pa[2] = r.chance(85) ? static_cast<long>(r.below(41)) : static_cast<long>(r.next());
        } else if (opt == PR_SET_NO_NEW_PRIVS) {
            o.pa[1] = r.chance(20) ? 1 : static_cast<long>(r.below(3)) - (r.chance(10) ? 5 : 0);
        }
        // Nonzero extra arguments: some options must reject them.
        if (r.chance(12)) o.pa[2 + r.below(3)] = static_cast<long>(r.below(3)) + 1;
        o.pptr = pick_ptr(r, 70);
        break;
    }
    default:
        for (int i = 0; i < 3; i++) o.id[i] = pick_id(r, &o.idk[i]);
        break;
    }
    return o;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

// Under AddressSanitizer the calls reach ASan's own interceptors before the
// shim's: its capset interceptor looks up the shadow of the header and data
// (a non-canonical address has none: it faults), and its prctl interceptor
// copies the PR_SET_NAME string after the call (any bad pointer faults).  So
// that build leaves those out -- after generating, so a seed names the same
// calls otherwise -- and the plain build runs them all.
void asan_safe(Op &o) {
    if (!kAsan) return;
    if (o.ptr == kNonCanonical) o.ptr = kUnmapped;
    if (o.hptr == kNonCanonical) o.hptr = kUnmapped;
    if (o.dptr == kNonCanonical) o.dptr = kUnmapped;
    if (o.pptr == kNonCanonical) o.pptr = kUnmapped;
    if (o.fn == kPrctl && o.pa[0] == PR_SET_NAME) o.pptr = kValid;
}

std::vector<Op> batch_ops(std::uint64_t seed, long batch, int n) {
    Rng r{seed * 0x100000001b3ULL ^ static_cast<std::uint64_t>(batch) * 0x9e3779b97f4a7c15ULL};
    std::vector<Op> ops;
    for (int i = 0; i < n; i++) {
        ops.push_back(generate(r));
        asan_safe(ops.back());
    }
    return ops;
}

// ---- memory for pointer arguments -------------------------------------------------

struct Arena {
    long page;
    unsigned char *base;   // [valid page][PROT_NONE page]
    unsigned char *edge;   // end of the valid page
    void *unmapped;
    std::uint32_t *gids;   // 65537 gids, valid
    unsigned char scratch[256];
};
Arena g_ar;

void make_arena() {
    g_ar.page = sysconf(_SC_PAGESIZE);
    g_ar.base = static_cast<unsigned char *>(
        mmap(nullptr, 2 * g_ar.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(g_ar.base + g_ar.page, g_ar.page, PROT_NONE);
    g_ar.edge = g_ar.base + g_ar.page;
    // Below vm.mmap_min_addr: never mapped, whatever threads and stacks come
    // later (a page freed with munmap would soon hold a thread stack).
    g_ar.unmapped = reinterpret_cast<void *>(0x1000);
    g_ar.gids = static_cast<std::uint32_t *>(std::malloc(65537 * sizeof(std::uint32_t)));
}

// A pointer of the given kind to `bytes` of data; for kValid and kStraddle
// the caller's bytes are copied there (kStraddle: only the part that fits
// before the PROT_NONE page, `keep` bytes of it).
void *place(Ptr k, const void *data, size_t bytes, size_t keep, void *valid) {
    switch (k) {
    case kValid: std::memcpy(valid, data, bytes); return valid;
    case kNull: return nullptr;
    case kProtNone: return g_ar.edge;
    case kUnmapped: return g_ar.unmapped;
    case kNonCanonical: return reinterpret_cast<void *>(0x8000000000000000UL);
    case kStraddle: {
        if (keep > bytes) keep = bytes;
        if (keep == 0) keep = 1;
        unsigned char *p = g_ar.edge - keep;
        std::memcpy(p, data, keep);
        return p;
    }
    }
    return nullptr;
}

// ---- running one call --------------------------------------------------------------

struct Rec {
    std::int32_t ret;
    std::int32_t err;
    std::uint64_t digest;    // the caller's credentials afterwards
    std::uint32_t hversion;  // capset: header after the call (kernel may write it)
    std::int32_t hpid;       // 1 if the kernel rewrote the header's pid (0 otherwise)
    bool operator==(const Rec &o) const {
        return ret == o.ret && (ret != -1 || err == o.err) && digest == o.digest && hversion == o.hversion && hpid == o.hpid;
    }
};

std::uint64_t digest() {
    std::uint64_t h = 1469598103934665603ULL;
    auto mix = [&](std::uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
    uid_t u[3];
    gid_t g[3];
    getresuid(&u[0], &u[1], &u[2]);
    getresgid(&g[0], &g[1], &g[2]);
    for (int i = 0; i < 3; i++) mix(u[i]), mix(g[i]);
    gid_t groups[256];
    int n = getgroups(256, groups);
    mix(static_cast<std::uint64_t>(n));
    for (int i = 0; i < n; i++) mix(groups[i]);
    __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    syscall(SYS_capget, &hd, d);
    for (auto &w : d) mix(w.effective), mix(w.permitted), mix(w.inheritable);
    mix(static_cast<std::uint64_t>(syscall(SYS_prctl, PR_GET_KEEPCAPS, 0, 0, 0, 0)));
    mix(static_cast<std::uint64_t>(syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0)));
    mix(static_cast<std::uint64_t>(syscall(SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
    std::uint64_t bnd = 0, amb = 0;
    for (int c = 0; c <= 40; c++) {
        if (syscall(SYS_prctl, PR_CAPBSET_READ, c, 0, 0, 0) == 1) bnd |= 1ULL << c;
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1) amb |= 1ULL << c;
    }
    mix(bnd);
    mix(amb);
    return h;
}

std::uint32_t resolve_id(const Op &o, int i) {
    uid_t r, e, s;
    bool gid = o.fn == kSetgid || o.fn == kSetegid || o.fn == kSetregid || o.fn == kSetresgid;
    if (gid) getresgid(&r, &e, &s);
    else getresuid(&r, &e, &s);
    switch (o.idk[i]) {
    case kCurReal: return r;
    case kCurEff: return e;
    case kCurSaved: return s;
    default: return o.id[i];
    }
}

Rec execute(const Op &o) {
    Rec rec{};
    int ret = 0;
    std::uint32_t a = resolve_id(o, 0), b = resolve_id(o, 1), c = resolve_id(o, 2);
    alignas(16) unsigned char hbuf[64], dbuf[64], nbuf[64];
    cap_user_header_t hp = nullptr;
    int hpid_before = 0;
    errno = 0;
    switch (o.fn) {
    case kSetuid: ret = setuid(a); break;
    case kSetgid: ret = setgid(a); break;
    case kSeteuid: ret = seteuid(a); break;
    case kSetegid: ret = setegid(a); break;
    case kSetreuid: ret = setreuid(a, b); break;
    case kSetregid: ret = setregid(a, b); break;
    case kSetresuid: ret = setresuid(a, b, c); break;
    case kSetresgid: ret = setresgid(a, b, c); break;
    case kSetgroups: {
        size_t fill = o.size < 65537 ? static_cast<size_t>(o.size) : 65537;
        Rng r{o.fill};
        for (size_t i = 0; i < fill; i++) {
            unsigned k = r.below(10);
            g_ar.gids[i] = k < 3 ? static_cast<std::uint32_t>(i) : k < 5 ? 65534 : k < 6 ? 0xffffffffu
                                                                   : static_cast<std::uint32_t>(r.next() % 70000);
        }
        const gid_t *list = static_cast<const gid_t *>(
            o.ptr == kValid ? g_ar.gids : place(o.ptr, g_ar.gids, fill * 4, 4, nullptr));
        ret = setgroups(static_cast<size_t>(o.size), list);
        break;
    }
    case kCapset: {
        __user_cap_header_struct h = {o.version, 0};
        h.pid = o.pidk == 0 ? 0 : o.pidk == 1 ? static_cast<int>(syscall(SYS_gettid)) : o.pidk == 2 ? getppid()
                : o.pidk == 3 ? 1 : o.pid;
        __user_cap_header_struct cur = {_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct d[2] = {};
        syscall(SYS_capget, &cur, d);
        std::uint32_t m = 1u << (o.bit % 32);
        __user_cap_data_struct &dw = d[o.bit / 32];
        switch (o.capmod) {
        case 0: break;                                             // unchanged
        case 1: dw.effective &= ~m; break;                         // drop effective
        case 2: dw.effective &= ~m; dw.permitted &= ~m; break;     // drop permitted
        case 3: dw.effective |= m; break;                          // raise effective (maybe not permitted)
        case 4: dw.inheritable |= m; break;                        // raise inheritable
        case 5: dw.permitted |= m; break;                          // raise permitted: EPERM unless held
        case 6: std::memcpy(d, o.garbage, sizeof d); break;        // garbage
        default: d[0].effective = d[1].effective = 0; break;       // clear effective
        }
        hpid_before = h.pid;
        hp = static_cast<cap_user_header_t>(place(o.hptr, &h, sizeof h, 4, hbuf));
        void *dp = place(o.dptr, d, sizeof d, o.word == 0 ? 4 : o.word == 1 ? 12 : 16, dbuf);
        ret = capset(hp, static_cast<cap_user_data_t>(dp));
        break;
    }
    case kPrctl: {
        long opt = o.pa[0];
        long a2 = o.pa[1];
        if (opt == PR_SET_NAME) {
            a2 = reinterpret_cast<long>(place(o.pptr, "fuzzname", 9, 3, nbuf));
        } else if (opt == PR_GET_NAME || opt == PR_GET_PDEATHSIG) {
            unsigned char zero[16] = {};
            a2 = reinterpret_cast<long>(place(o.pptr, zero, 16, 8, nbuf));
        }
        ret = prctl(static_cast<int>(opt), a2, o.pa[2], o.pa[3], o.pa[4]);
        break;
    }
    }
    rec.ret = ret;
    rec.err = ret == -1 ? errno : 0;
    if (o.fn == kCapset && o.hptr == kValid) {
        rec.hversion = reinterpret_cast<__user_cap_header_struct *>(hbuf)->version;
        rec.hpid = reinterpret_cast<__user_cap_header_struct *>(hbuf)->pid != hpid_before;
    }
    (void)hp;
    rec.digest = digest();
    return rec;
}

std::string describe(const Op &o) {
    char buf[512];
    auto id = [&](int i) -> std::string {
        static const char *const k[] = {"", "cur-real", "cur-eff", "cur-saved"};
        return o.idk[i] ? k[o.idk[i]] : std::to_string(static_cast<long long>(static_cast<std::int32_t>(o.id[i])));
    };
    switch (o.fn) {
    case kSetgroups:
        std::snprintf(buf, sizeof buf, "setgroups(size=%llu, list=%s, contents seed %#llx)",
                      static_cast<unsigned long long>(o.size), kPtrName[o.ptr], static_cast<unsigned long long>(o.fill));
        break;
    case kCapset:
        std::snprintf(buf, sizeof buf, "capset(header=%s {version=%#x, pid kind %d (%d)}, data=%s (keep word %u), data mod %d bit %u)",
                      kPtrName[o.hptr], o.version, o.pidk, o.pid, kPtrName[o.dptr], o.word, o.capmod, o.bit);
        break;
    case kPrctl:
        std::snprintf(buf, sizeof buf, "prctl(%ld, %ld, %ld, %ld, %ld) [pointer arg: %s]", o.pa[0], o.pa[1], o.pa[2],
                      o.pa[3], o.pa[4], kPtrName[o.pptr]);
        break;
    default:
        std::snprintf(buf, sizeof buf, "%s(%s, %s, %s)", kFnName[o.fn], id(0).c_str(), id(1).c_str(), id(2).c_str());
    }
    return buf;
}

std::string show(const Rec &r) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "ret %d errno %d (%s) digest %016llx header {%#x, %d}", r.ret, r.err,
                  r.ret == -1 ? strerrorname_np(r.err) : "-", static_cast<unsigned long long>(r.digest), r.hversion, r.hpid);
    return buf;
}

// ---- batches ---------------------------------------------------------------------

bool write_all(int fd, const void *p, size_t n) {
    const char *c = static_cast<const char *>(p);
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k <= 0) return false;
        c += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

bool read_all(int fd, void *p, size_t n) {
    char *c = static_cast<char *>(p);
    while (n) {
        ssize_t k = read(fd, c, n);
        if (k <= 0) return false;
        c += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

// Runs one batch in a forked child; records go to out_fd.  Threads: the
// number of extra pthreads, plus one raw-clone thread if threads > 0.
// Returns the child's wait status.
int run_batch(std::uint64_t seed, long batch, int n, int out_fd, int threads) {
    std::fflush(nullptr);
    pid_t p = fork();
    if (p == 0) {
        std::vector<Op> ops = batch_ops(seed, batch, n);
        pt::Sleepers *s = nullptr;
        if (threads > 0) {
            s = new pt::Sleepers(threads);
            pt::start_raw_thread();
        }
        for (const Op &o : ops) {
            Rec r = execute(o);
            if (!write_all(out_fd, &r, sizeof r)) _exit(4);
        }
        if (threads > 0) {
            std::string d = pt::differences();
            if (!d.empty()) {
                std::printf("batch %ld: after the batch, threads disagree with the caller:\n%s", batch, d.c_str());
                std::fflush(stdout);
                _exit(3);
            }
        }
        (void)s;
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return st;
}

int role_reference(std::uint64_t seed, long calls, int batch, int out_fd) {
    make_arena();
    for (long b = 0; b * batch < calls; b++) {
        int n = static_cast<int>(calls - b * batch < batch ? calls - b * batch : batch);
        int st = run_batch(seed, b, n, out_fd, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            std::fprintf(stderr, "reference batch %ld ended with status %#x\n", b, st);
            return 1;
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    long calls = std::atol(hx::arg(argc, argv, "calls", "100000").c_str());
    int batch = std::atoi(hx::arg(argc, argv, "batch", "200").c_str());
    std::uint64_t seed = 0;
    std::string seed_s = hx::arg(argc, argv, "seed");
    if (seed_s.empty() && getenv("PSXSHIM_FUZZ_SEED")) seed_s = getenv("PSXSHIM_FUZZ_SEED");
    if (!seed_s.empty()) seed = std::strtoull(seed_s.c_str(), nullptr, 0);
    else if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<std::uint64_t>(time(nullptr));
    if (hx::arg(argc, argv, "role") == "reference") {
        return role_reference(seed, calls, batch, std::atoi(hx::arg(argc, argv, "out").c_str()));
    }
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    std::printf("fuzz: seed %llu (--seed=%llu reproduces), %ld calls in batches of %d, shim %s\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), calls, batch,
                pt::shim_loaded() ? "loaded" : "absent");
    if (kAsan) {
        std::printf("fuzz: AddressSanitizer build: non-canonical pointers and bad PR_SET_NAME pointers are left out "
                    "(ASan's interceptors dereference them before the shim sees the call); the plain build runs them\n");
    }
    pt::Watchdog wd(600, "fuzz");
    make_arena();

    // 1. The reference, without the shim.
    int rp[2];
    if (pipe(rp)) return std::perror("pipe"), 1;
    std::fflush(nullptr);
    pid_t ref = fork();
    if (ref == 0) {
        close(rp[0]);
        std::string exe = hx::self_exe();
        std::vector<std::string> args = {exe, "--role=reference", "--seed=" + std::to_string(seed),
                                         "--calls=" + std::to_string(calls), "--batch=" + std::to_string(batch),
                                         "--out=" + std::to_string(rp[1])};
        std::vector<std::string> env = hx::env_without_preload();
        std::vector<char *> a, e;
        for (auto &s : args) a.push_back(s.data());
        a.push_back(nullptr);
        for (auto &s : env) e.push_back(s.data());
        e.push_back(nullptr);
        execve(exe.c_str(), a.data(), e.data());
        _exit(127);
    }
    close(rp[1]);
    std::vector<Rec> want(static_cast<size_t>(calls));
    bool ref_ok = read_all(rp[0], want.data(), want.size() * sizeof(Rec));
    close(rp[0]);
    int st;
    waitpid(ref, &st, 0);
    if (!ref_ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::printf("FAIL: the reference run did not complete (status %#x)\n", st);
        return 1;
    }

    // 2. The same calls with the shim, multi-threaded.
    long mismatches = 0, diverged_batches = 0, failed_batches = 0, successes = 0, eperm = 0, efault = 0, einval = 0;
    long batches = 0;
    for (long b = 0; b * batch < calls; b++) {
        batches++;
        int n = static_cast<int>(calls - b * batch < batch ? calls - b * batch : batch);
        int p[2];
        if (pipe(p)) return std::perror("pipe"), 1;
        std::fflush(nullptr);
        pid_t runner = fork();
        if (runner == 0) {
            close(p[0]);
            int s = run_batch(seed, b, n, p[1], 2);
            _exit(WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s));
        }
        close(p[1]);
        std::vector<Rec> got(static_cast<size_t>(n));
        size_t have = 0;
        while (have < got.size() * sizeof(Rec)) {
            ssize_t k = read(p[0], reinterpret_cast<char *>(got.data()) + have, got.size() * sizeof(Rec) - have);
            if (k <= 0) break;
            have += static_cast<size_t>(k);
        }
        close(p[0]);
        waitpid(runner, &st, 0);
        long complete = static_cast<long>(have / sizeof(Rec));
        std::vector<Op> ops;
        for (long i = 0; i < complete; i++) {
            const Rec &w = want[static_cast<size_t>(b * batch + i)];
            const Rec &g = got[static_cast<size_t>(i)];
            if (w.ret == 0) successes++;
            if (w.ret == -1) eperm += w.err == EPERM, efault += w.err == EFAULT, einval += w.err == EINVAL;
            if (g == w) continue;
            if (ops.empty()) ops = batch_ops(seed, b, n);
            if (++mismatches <= 20) {
                std::printf("MISMATCH seed %llu call %ld (batch %ld #%ld): %s\n  reference: %s\n  shim:      %s\n",
                            static_cast<unsigned long long>(seed), b * batch + i, b, i, describe(ops[static_cast<size_t>(i)]).c_str(),
                            show(w).c_str(), show(g).c_str());
            }
        }
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (code == 3) {
            diverged_batches++;
        } else if (code != 0 || complete != n) {
            failed_batches++;
            if (failed_batches <= 5) {
                if (ops.empty()) ops = batch_ops(seed, b, n);
                std::printf("FAILED BATCH seed %llu batch %ld: the shimmed child ended with code %d after %ld of %d calls%s%s\n",
                            static_cast<unsigned long long>(seed), b, code, complete, n,
                            complete < n ? "; next call: " : "", complete < n ? describe(ops[static_cast<size_t>(complete)]).c_str() : "");
            }
        }
    }
    wd.disarm();
    std::printf("fuzz: seed %llu: %ld calls in %ld batches; reference outcomes: %ld successes, %ld EPERM, %ld EINVAL, %ld "
                "EFAULT; %ld mismatches; %ld batches left threads behind; %ld batches failed\n",
                static_cast<unsigned long long>(seed), calls, batches, successes, eperm, einval, efault, mismatches,
                diverged_batches, failed_batches);
    if (expect == pt::Expect::kDiverge) {
        // Left-behind threads, or glibc's own abort() when a set*id fails on
        // a pthread whose capabilities were not changed with the caller's.
        bool ok = diverged_batches + failed_batches > 0;
        std::printf("%s fuzz (negative control): %s\n", ok ? "PASS" : "FAIL",
                    ok ? "without the shim, batches leave threads with other credentials" : "expected left-behind threads");
        return ok ? 0 : 1;
    }
    bool ok = mismatches == 0 && diverged_batches == 0 && failed_batches == 0;
    std::printf("%s fuzz: seed %llu\n", ok ? "PASS" : "FAIL", static_cast<unsigned long long>(seed));
    return ok ? 0 : 1;
}
