#include "engine/log.h"

#include <errno.h>
#include <stdlib.h>

#include "sys/raw.h"

namespace psxshim::log {

namespace {
constinit bool g_debug = false;

const char *errno_symbol(long e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    default: return "errno";
    }
}
}  // namespace

Line::Line() : len_(0) { *this << "psxshim: "; }

Line &Line::operator<<(const char *s) {
    while (s && *s && len_ < sizeof buf_ - 1) buf_[len_++] = *s++;
    return *this;
}

Line &Line::operator<<(long v) {
    char tmp[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
    do {
        tmp[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) tmp[n++] = '-';
    while (n && len_ < sizeof buf_ - 1) buf_[len_++] = tmp[--n];
    return *this;
}

Line &Line::hex(unsigned long v) {
    *this << "0x";
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n && len_ < sizeof buf_ - 1) buf_[len_++] = tmp[--n];
    return *this;
}

Line &Line::errname(long negative_errno) {
    long e = -negative_errno;
    return *this << errno_symbol(e) << " (" << e << ")";
}

Line::~Line() { emit(); }

void Line::emit() {
    if (done_) return;
    done_ = true;
    buf_[len_++] = '\n';
    const char *p = buf_;
    std::size_t left = len_;
    while (left) {
        long n = sys::call(SYS_write, 2, reinterpret_cast<long>(p), static_cast<long>(left));
        if (n == -EINTR) continue;
        if (n <= 0) break;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

bool debug() { return g_debug; }

void init_from_environment() {
    // secure_getenv: a set-user-ID program must not let its caller switch on
    // output the program did not ask for.
    const char *v = secure_getenv("PSXSHIM_DEBUG");
    g_debug = v && *v && !(v[0] == '0' && v[1] == 0);
}

}  // namespace psxshim::log
