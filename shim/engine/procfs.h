// Thread discovery through /proc/self/task.
//
// One directory fd, opened at start-up (and again after fork), is kept for the
// life of the process: each broadcast reuses it, so no file is opened per
// broadcast, and it keeps working after chroot() as long as the program does
// not close it.  fstat() on it both proves it is still ours (device and inode
// unchanged: a program may have closed it and reused the number) and gives
// the kernel's thread count (st_nlink - 2), which lets a broadcast skip the
// directory scan when the registry already accounts for every thread.
//
// Not for the signal handler: only the broadcaster (serialised by the engine
// lock) and start-up use it.
#pragma once

namespace psxshim::procfs {

// (Re)open /proc/self/task; false if unreachable or from another PID
// namespace (its thread ids would not be ours to signal).
bool open_task_dir(int pid);
// Whether the kept fd is still ours; tries to reopen once if it is not.
bool usable(int pid);
// Threads in the process according to the kernel, or -1.
long thread_count();
// usable() and thread_count() with one fstat in the common case: the count,
// or -1 if /proc/self/task is unreachable.  Broadcasts use this.
long usable_count(int pid);
// List the tids in the process into out[0..max); returns how many, or -1.
// Must be preceded by usable().
long list(int *out, long max);
// One line of /proc/self/task/<tid>/status ("State:", "SigBlk:"...) copied
// into buf (value only, NUL-terminated); false if unavailable.
bool status_field(int tid, const char *field, char *buf, unsigned long size);

// Forget the inherited fd in a fork child (it names the parent's threads).
void reset_in_child(int pid);

}  // namespace psxshim::procfs
