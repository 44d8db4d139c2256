#include "sys/signal.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

#if defined(__x86_64__)
// x86-64 signal frames return through a user-supplied restorer.  glibc's
// __restore_rt is private, so this is ours: the same two instructions, byte
// for byte (mov $15,%rax; syscall), which is what debuggers look for to
// recognise a signal frame when unwinding.
extern "C" void psxshim_restore_rt();
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".type psxshim_restore_rt,@function\n"
    "psxshim_restore_rt:\n"
    "    movq $15, %rax\n"
    "    syscall\n"
    ".size psxshim_restore_rt, .-psxshim_restore_rt\n");
#endif

namespace psxshim::sys {

long sigaction(int sig, const KernelSigaction *act, KernelSigaction *old) {
    KernelSigaction copy;
    if (act) {
        copy = *act;
#if defined(__x86_64__)
        copy.flags |= SA_RESTORER;
        copy.restorer = reinterpret_cast<unsigned long>(&psxshim_restore_rt);
#endif
        act = &copy;
    }
    return call(SYS_rt_sigaction, sig, reinterpret_cast<long>(act), reinterpret_cast<long>(old), sizeof(Sigset));
}

}  // namespace psxshim::sys
