// The set*id family, setgroups and initgroups from the main thread while
// pthreads and raw-clone threads sleep.  argv selects the call.
//
// With the shim every thread ends with the caller's ids and groups.  Without
// it (negative control) glibc's own broadcast reaches the pthreads but never
// the raw-clone threads, which keep uid/gid 0 and the old groups.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "calls_util.h"

namespace {

// A user from /etc/passwd (through NSS) whose group list has supplementary
// groups, so initgroups has something to set; falls back to "daemon".
bool pick_user(std::string *name, gid_t *gid) {
    std::string fallback;
    gid_t fallback_gid = 0;
    setpwent();
    while (passwd *pw = getpwent()) {
        if (pw->pw_uid == 0) continue;
        gid_t groups[64];
        int n = 64;
        if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0) continue;
        if (n > 1) {
            *name = pw->pw_name;
            *gid = pw->pw_gid;
            endpwent();
            return true;
        }
        if (fallback.empty() || std::string(pw->pw_name) == "daemon") {
            fallback = pw->pw_name;
            fallback_gid = pw->pw_gid;
        }
    }
    endpwent();
    if (fallback.empty()) return false;
    *name = fallback;
    *gid = fallback_gid;
    return true;
}

std::vector<gid_t> sorted(std::vector<gid_t> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

std::string list(const std::vector<gid_t> &v) {
    std::string s;
    for (gid_t g : v) s += std::to_string(g) + ",";
    return s;
}

std::vector<gid_t> my_groups() {
    int n = getgroups(0, nullptr);
    std::vector<gid_t> g(n > 0 ? n : 0);
    if (n > 0) getgroups(n, g.data());
    return g;
}

void expect_res(ct::Failures &f, const char *what, bool uid, unsigned r, unsigned e, unsigned s) {
    unsigned a, b, c;
    if (uid) getresuid(&a, &b, &c);
    else getresgid(&a, &b, &c);
    if (a != r || b != e || c != s) {
        f.add(std::string(what) + ": caller has " + (uid ? "uids " : "gids ") + std::to_string(a) + "," +
              std::to_string(b) + "," + std::to_string(c) + ", expected " + std::to_string(r) + "," +
              std::to_string(e) + "," + std::to_string(s));
    }
}

}  // namespace

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    std::string which = ct::case_arg(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    getresuid(&ruid, &euid, &suid);
    getresgid(&rgid, &egid, &sgid);

    std::string user;
    gid_t user_gid = 0;
    if (which == "initgroups" && !pick_user(&user, &user_gid)) return pt::skip("no non-root user in /etc/passwd");

    if (which == "setgroups-empty") {
        // Still single-threaded: every thread created below inherits these.
        gid_t start[] = {5, 6};
        if (setgroups(2, start) != 0) return std::perror("setgroups (setup)"), 1;
    }

    ct::World world(4, 2);
    ct::Failures f;
    int rc = 0;
    errno = 0;
    if (which == "setuid") {
        rc = setuid(1000);
        if (rc == 0) expect_res(f, "setuid(1000)", true, 1000, 1000, 1000);
    } else if (which == "setgid") {
        rc = setgid(1000);
        if (rc == 0) expect_res(f, "setgid(1000)", false, 1000, 1000, 1000);
    } else if (which == "seteuid") {
        rc = seteuid(1000);
        if (rc == 0) expect_res(f, "seteuid(1000)", true, ruid, 1000, suid);
    } else if (which == "setegid") {
        rc = setegid(1000);
        if (rc == 0) expect_res(f, "setegid(1000)", false, rgid, 1000, sgid);
    } else if (which == "setreuid") {
        rc = setreuid(1001, 1002);
        // The saved id follows the new effective id when the real id is set.
        if (rc == 0) expect_res(f, "setreuid(1001, 1002)", true, 1001, 1002, 1002);
    } else if (which == "setregid") {
        rc = setregid(1001, 1002);
        if (rc == 0) expect_res(f, "setregid(1001, 1002)", false, 1001, 1002, 1002);
    } else if (which == "setresuid") {
        rc = setresuid(1001, 1002, 1003);
        if (rc == 0) expect_res(f, "setresuid(1001, 1002, 1003)", true, 1001, 1002, 1003);
    } else if (which == "setresgid") {
        rc = setresgid(1001, 1002, 1003);
        if (rc == 0) expect_res(f, "setresgid(1001, 1002, 1003)", false, 1001, 1002, 1003);
    } else if (which == "setgroups") {
        std::vector<gid_t> want = {5, 6, 7, 60000};
        if (sorted(my_groups()) == sorted(want)) return pt::skip("already in groups 5,6,7,60000");
        rc = setgroups(want.size(), want.data());
        if (rc == 0 && sorted(my_groups()) != sorted(want))
            f.add("setgroups: caller has groups " + list(my_groups()) + ", expected " + list(want));
    } else if (which == "setgroups-empty") {
        // Dropping every supplementary group is the daemon idiom; the groups
        // to drop were set before any thread existed (see below).
        if (my_groups().empty()) return pt::skip("could not get supplementary groups to drop");
        rc = setgroups(0, nullptr);
        if (rc == 0 && !my_groups().empty()) f.add("setgroups(0): caller still has groups " + list(my_groups()));
    } else if (which == "initgroups") {
        std::vector<gid_t> want(256);
        int n = static_cast<int>(want.size());
        if (getgrouplist(user.c_str(), user_gid, want.data(), &n) < 0) return pt::skip("getgrouplist failed");
        want.resize(n);
        std::printf("initgroups(\"%s\", %u): getgrouplist gives %s\n", user.c_str(), user_gid, list(want).c_str());
        if (sorted(my_groups()) == sorted(want)) return pt::skip("already in exactly those groups");
        rc = initgroups(user.c_str(), user_gid);
        if (rc == 0 && sorted(my_groups()) != sorted(want))
            f.add("initgroups: caller has groups " + list(my_groups()) + ", getgrouplist says " + list(want));
    } else {
        std::fprintf(stderr, "unknown case '%s'\n", which.c_str());
        return 2;
    }
    if (rc != 0) f.add(which + " returned " + ct::outcome(rc, errno) + ", expected 0");
    if (!f.ok()) {
        std::printf("FAIL %s:\n%s", which.c_str(), f.text.c_str());
        return 1;
    }
    std::string what = which + " reaches every thread (pthreads and raw-clone threads)";
    return pt::finish(expect, world.differences(), what.c_str());
}
