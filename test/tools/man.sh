#!/bin/bash
# The man pages render without groff warnings and name what they must.
set -u
. "$(dirname "$0")/lib.sh"
dir=$1
if ! command -v groff >/dev/null; then echo "SKIP: groff is not installed"; exit 77; fi
for page in psxshim.1 psxaudit.1 libpsxshim.7; do
    out=$(LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$dir/$page" 2>&1)
    [ -z "$out" ] && pass "$page renders without warnings" || fail "$page: $out"
done
out=$(LC_ALL=C.UTF-8 groff -man -rHY=0 -rLL=1000n -Tutf8 "$dir/libpsxshim.7" 2>/dev/null | sed 's/.\x08//g')
for word in setresgid initgroups capset PR_CAP_AMBIENT PR_SET_NO_NEW_PRIVS setfsuid PSXSHIM_DEBUG \
    PSXSHIM_TIMEOUT_MS PSXSHIM_RELAY PSXSHIM_SPIN ld.so.preload SIGKILL psx_syscall3 psxshim_active EINTR /proc/self/task; do
    expect_in "$word" "libpsxshim(7) mentions $word"
done
finish
