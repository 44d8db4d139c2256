// capset() from the main thread while pthreads and raw-clone threads sleep:
// with the shim every thread loses the capability; without it (negative
// control) the other threads keep it.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "creds.h"

extern "C" int capset(cap_user_header_t, const cap_user_data_t);
extern "C" int capget(cap_user_header_t, cap_user_data_t);

int main(int argc, char **argv) {
    pt::Expect expect = pt::parse_expect(argc, argv);
    if (geteuid() != 0) return pt::skip("needs root (CI runs as root)");
    pt::Sleepers sleepers(8);
    pt::start_raw_thread();
    pt::start_raw_thread();

    __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2];
    if (capget(&h, d) != 0) return std::perror("capget"), 1;
    if (!(d[0].effective & (1u << CAP_NET_RAW))) return pt::skip("CAP_NET_RAW not held at start");
    for (auto &w : d) {
        w.effective &= ~(1u << CAP_NET_RAW);
        w.permitted &= ~(1u << CAP_NET_RAW);
    }
    if (capset(&h, d) != 0) return std::perror("capset"), 1;
    int rc = pt::finish(expect, pt::differences(), "capset drops CAP_NET_RAW on every thread");
    pt::stop_raw_threads();
    return rc;
}
