// The test programs' deadline: a separate process that kills the test after
// a number of seconds unless it is disarmed first.
//
// Not alarm(): many tests block SIGALRM on every thread, and a hang in the
// shim may leave every thread with every signal blocked.  Before it kills,
// the watchdog prints each thread's name, state, wait channel, current
// system call and signal masks and queues, so that a hang is diagnosed
// rather than just timed out.  It exits by itself once the watched process
// is gone.  Test code only; nothing here goes into libpsxshim.
#pragma once

#include <sys/types.h>

#include <string>

namespace pt {

class Watchdog {
public:
    Watchdog(int seconds, const std::string &what);
    ~Watchdog() { disarm(); }
    Watchdog(const Watchdog &) = delete;
    Watchdog &operator=(const Watchdog &) = delete;

    // Stop the watchdog (idempotent): the test finished in time.  In a fork
    // child of the armed process it only forgets the watchdog, which still
    // guards the parent.
    void disarm();

private:
    pid_t pid_ = -1;
    pid_t owner_ = -1;  // the process that armed it
};

}  // namespace pt
