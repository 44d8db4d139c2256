#!/bin/bash
# Debian's libcap-dev test programs psx_test and libcap_psx_test link libpsx
# (with -Wl,-wrap,pthread_create).  Preloaded, psxshim's definitions win, and
# its debug log must show that its engine ran their broadcasts.
set -u
shim=$1  # the LD_PRELOAD value (under ASan: its runtime, then the shim)
dir=/usr/lib/x86_64-linux-gnu/libcap2/tests
status=0
for t in psx_test libcap_psx_test; do
    if [ ! -x "$dir/$t" ]; then
        echo "SKIP: $dir/$t not installed (package libcap-dev)"
        exit 77
    fi
    log=$(mktemp)
    PSXSHIM_DEBUG=1 LD_PRELOAD=$shim timeout 120 "$dir/$t" >"$log" 2>&1
    rc=$?
    n=$(grep -c '^psxshim: psx_syscall' "$log")
    if [ $rc -ne 0 ]; then
        echo "FAIL: $t exited $rc under psxshim"; tail -20 "$log"; status=1
    elif [ "$n" -eq 0 ]; then
        echo "FAIL: $t passed but psxshim's log shows none of its broadcasts"; tail -20 "$log"; status=1
    elif ! grep -q '^psxshim: loaded' "$log"; then
        echo "FAIL: $t: no 'loaded' line with PSXSHIM_DEBUG=1"; status=1
    else
        echo "PASS: $t under psxshim ($n broadcasts logged by psxshim)"
    fi
    rm -f "$log"
done
exit $status
