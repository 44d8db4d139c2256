/*
 * psxshim.h -- all-thread system calls for Linux programs.
 *
 * On Linux every thread has its own credentials (uids, gids, supplementary
 * groups, capability sets, securebits, keep-caps, no_new_privs).  libpsxshim
 * makes a credential change take effect on every thread of the process:
 *
 *   - preloaded (LD_PRELOAD=libpsxshim.so, or the psxshim launcher), it
 *     replaces libc's setuid/setgid family, setgroups, initgroups, capset and
 *     the credential prctl options in an unmodified program;
 *   - linked (pkg-config psxshim), it also offers the functions below.
 *
 * This header is a superset of libcap's <sys/psx_syscall.h>: a program
 * written for libpsx builds against it unchanged.
 *
 * Failure policy: a call that fails on the calling thread changes no thread
 * and returns the kernel's error.  If it succeeded on the caller but another
 * thread got a different result, or a thread does not answer within
 * PSXSHIM_TIMEOUT_MS (default 10000), psxshim writes one line to stderr and
 * kills the process with SIGKILL: it never returns success while a thread
 * may keep the old credentials.  See libpsxshim(7).
 *
 * Copyright (c) 2026 the psxshim developers.
 * SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
 */
#ifndef PSXSHIM_H
#define PSXSHIM_H

#define PSXSHIM_VERSION_MAJOR 0
#define PSXSHIM_VERSION_MINOR 1
#define PSXSHIM_VERSION_PATCH 0
#define PSXSHIM_VERSION_STRING "0.1.0"
/* For compile-time comparisons: PSXSHIM_VERSION >= PSXSHIM_MAKE_VERSION(0, 1, 0). */
#define PSXSHIM_MAKE_VERSION(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define PSXSHIM_VERSION \
    PSXSHIM_MAKE_VERSION(PSXSHIM_VERSION_MAJOR, PSXSHIM_VERSION_MINOR, PSXSHIM_VERSION_PATCH)

/* Keep libcap's header from redefining what follows if both are included. */
#ifndef _SYS_PSX_SYSCALL_H
#define _SYS_PSX_SYSCALL_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * libpsx compatibility.
 *
 * psx_syscall3() and psx_syscall6() run system call `syscall_nr` on every
 * thread and return like syscall(2): the calling thread's result, or -1 with
 * errno set.  psx_syscall(nr, ...) takes 1 to 6 arguments.
 */
#define psx_syscall(syscall_nr, ...)                                                            \
    __psx_syscall(syscall_nr, __VA_ARGS__, (long int)6, (long int)5, (long int)4, (long int)3, \
                  (long int)2, (long int)1, (long int)0)
long int __psx_syscall(long int syscall_nr, ...);
long int psx_syscall3(long int syscall_nr, long int arg1, long int arg2, long int arg3);
long int psx_syscall6(long int syscall_nr, long int arg1, long int arg2, long int arg3, long int arg4,
                      long int arg5, long int arg6);

/*
 * libcap declares this function weak and calls it at start-up: when it is
 * defined (here), cap_set_proc(), cap_setuid() and the rest of libcap's
 * process-changing calls go through psx_syscall3/psx_syscall6.
 */
void psx_load_syscalls(long int (**syscall_fn)(long int, long int, long int, long int),
                       long int (**syscall6_fn)(long int, long int, long int, long int, long int, long int,
                                                long int));

/*
 * What psx_syscall*() do when threads disagree.  psxshim's default is
 * PSX_ERROR, stricter than libpsx's PSX_IGNORE: a best-effort credential
 * change that silently leaves a thread privileged is the bug this library
 * exists to prevent.  PSX_ERROR kills the process with SIGKILL (libpsx raises
 * SIGSYS, which a program can catch and ignore).  PSX_WARNING and PSX_IGNORE
 * are honoured when a program asks for them explicitly, for psx_syscall*()
 * only: the wrapped libc calls always use PSX_ERROR.
 */
typedef enum {
    PSX_IGNORE = 0,
    PSX_WARNING = 1,
    PSX_ERROR = 2,
} psx_sensitivity_t;

/* Returns 0, or -1 (errno EINVAL) for an unknown level. */
int psx_set_sensitivity(psx_sensitivity_t level);

#ifdef __cplusplus
}
#endif
#endif /* _SYS_PSX_SYSCALL_H */

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, e.g. "0.1.0" (may differ from the header's). */
const char *psxshim_version(void);

/* 1 when libpsxshim is loaded and initialised in this process.  Programs that
 * may run without it can test the symbol first:
 *     if (&psxshim_active && psxshim_active()) ...   (declared weak by them) */
int psxshim_active(void);

/* How many threads (the caller included) the most recent successful
 * broadcast reached; 0 before the first one. */
int psxshim_last_thread_count(void);

/* Run any system call on every thread with psxshim's strict policy,
 * whatever psx_set_sensitivity() said.  Returns like syscall(2).  Pass 0 for
 * unused arguments. */
long int psxshim_syscall(long int syscall_nr, long int arg1, long int arg2, long int arg3, long int arg4,
                         long int arg5, long int arg6);

#ifdef __cplusplus
}
#endif

#endif /* PSXSHIM_H */
