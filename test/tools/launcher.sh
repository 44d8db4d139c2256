#!/bin/bash
# psxshim(1) from the build tree: options, environment, exit statuses,
# refusals, and a real privilege drop with a negative control.
#   launcher.sh PSXSHIM DROP_PROBE STATIC_TRUE
set -u
. "$(dirname "$0")/lib.sh"
psxshim=$1 probe=$2 static=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
unset PSXSHIM_LIBRARY PSXSHIM_DEBUG PSXSHIM_TIMEOUT_MS PSXSHIM_SPIN PSXSHIM_RELAY
export -n LD_PRELOAD 2>/dev/null; unset LD_PRELOAD

expect_status 0 "--version" -- "$psxshim" --version
expect_in "psxshim 0." "--version names the program and version"
expect_status 0 "--help" -- "$psxshim" --help
expect_in "Usage: psxshim" "--help shows usage"
expect_status 125 "unknown option" -- "$psxshim" --bogus true
expect_status 125 "no command" -- "$psxshim"
expect_status 125 "bad --timeout" -- "$psxshim" --timeout 12x true
expect_status 127 "command not found" -- "$psxshim" psxshim-no-such-command-$$
expect_status 127 "missing path" -- "$psxshim" "$tmp/missing"
printf '#!/bin/sh\nexit 0\n' > "$tmp/noexec"; chmod 644 "$tmp/noexec"
expect_status 126 "not executable" -- "$psxshim" "$tmp/noexec"

# Environment handed to the command.
expect_status 0 "runs the command" -- "$psxshim" sh -c 'printf "%s|%s|%s" "$LD_PRELOAD" "${PSXSHIM_DEBUG-}" "${PSXSHIM_TIMEOUT_MS-}"'
expect_in "libpsxshim.so.0||" "LD_PRELOAD names the library, no debug, no timeout by default"
expect_status 0 "--verbose --timeout" -- "$psxshim" --verbose --timeout 750 sh -c 'printf "<%s|%s>" "$PSXSHIM_DEBUG" "$PSXSHIM_TIMEOUT_MS"'
expect_in "<1|750>" "--verbose sets PSXSHIM_DEBUG=1, --timeout sets PSXSHIM_TIMEOUT_MS"
expect_in "psxshim: preloading" "--verbose says which library"
expect_in "psxshim: loaded in pid" "--verbose turns on the library's own log"
out=$(LD_PRELOAD="$tmp/none.so" "$psxshim" sh -c 'printf "<%s>" "$LD_PRELOAD"' 2>/dev/null)
case $out in "<$tmp/none.so:"*libpsxshim.so.0">") pass "existing LD_PRELOAD kept, ours appended" ;;
    *) fail "existing LD_PRELOAD: $out" ;; esac
out=$("$psxshim" "$psxshim" sh -c 'printf "<%s>" "$LD_PRELOAD"' 2>&1)
n=$(grep -o libpsxshim <<<"$out" | wc -l)
[ "$n" = 1 ] && pass "nested launcher does not add the library twice" || fail "library added $n times: $out"
expect_status 0 "-- ends options" -- "$psxshim" -- sh -c 'exit 0'
out=$(PSXSHIM_LIBRARY="$tmp/missing.so" "$psxshim" true 2>&1); rc=$?
[ $rc = 125 ] && pass "PSXSHIM_LIBRARY pointing nowhere: 125" || fail "PSXSHIM_LIBRARY missing: status $rc: $out"

# The command's status is the launcher's, signals included (exec, no fork).
expect_status 42 "exit status passed through" -- "$psxshim" sh -c 'exit 42'
"$psxshim" sh -c 'kill -TERM $$'; rc=$?
[ $rc = 143 ] && pass "death by SIGTERM reported as such (143)" || fail "SIGTERM: status $rc"
"$psxshim" sh -c 'kill -KILL $$'; rc=$?
[ $rc = 137 ] && pass "death by SIGKILL reported as such (137)" || fail "SIGKILL: status $rc"
# Only once the command has said "ready" has the launcher exec'd it (before
# that, the signal would hit a bash child that runs our EXIT trap).
"$psxshim" sh -c 'echo ready; exec sleep 30' > "$tmp/ready" &
pid=$!
for _ in $(seq 1 600); do grep -q ready "$tmp/ready" && break; sleep 0.05; done
kill -TERM $pid; wait $pid; rc=$?
out="rc=$rc"
expect_in "rc=143" "a signal sent to the launcher's pid ends the command"

# Refusals: programs the loader would run without LD_PRELOAD.
expect_status 126 "static program refused" -- "$psxshim" "$static"
expect_in "statically linked" "refusal names the reason"
printf '#!%s\n' "$static" > "$tmp/script"; chmod 755 "$tmp/script"
expect_status 126 "script with a static interpreter refused" -- "$psxshim" "$tmp/script"
expect_in "interpreter" "refusal names the interpreter"
cp /bin/true "$tmp/true"
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$tmp/true"; chmod 4755 "$tmp/true"
    if findmnt -no OPTIONS -T "$tmp" | grep -qw nosuid; then
        note "set-user-ID refusal: $tmp is on a nosuid mount"
    else
        expect_status 126 "set-user-ID program refused" -- "$psxshim" "$tmp/true"
        expect_in "set-user-ID" "refusal says set-user-ID"
        expect_in "libpsxshim(7)" "refusal points to the secure-execution recipe"
    fi
    chown 0 "$tmp/true"; chmod 4755 "$tmp/true"
    expect_status 0 "set-user-ID to the caller itself is no secure execution: runs" -- "$psxshim" "$tmp/true"
    chmod 755 "$tmp/true"; chgrp 65534 "$tmp/true"; chmod 2755 "$tmp/true"
    expect_status 126 "set-group-ID program refused" -- "$psxshim" "$tmp/true"
    expect_in "set-group-ID" "refusal says set-group-ID"
    rm -f "$tmp/true"; cp /bin/true "$tmp/true"
    if command -v setcap >/dev/null && command -v setpriv >/dev/null && setcap cap_net_raw+p "$tmp/true" 2>/dev/null; then
        if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$psxshim"; then
            out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$psxshim" "$tmp/true" 2>&1); rc=$?
            [ $rc = 126 ] && pass "file capabilities refused for a non-root user" || fail "file caps: status $rc: $out"
            expect_in "file capabilities" "refusal says file capabilities"
        else
            note "file-capability refusal: the launcher is not reachable by uid 65534"
        fi
        expect_status 0 "file capabilities for root are no secure execution: runs" -- "$psxshim" "$tmp/true"
    else
        note "file-capability refusal: setcap/setpriv unavailable or refused"
    fi

    # A real drop from a worker thread: with the launcher every thread agrees.
    expect_status 0 "privilege drop under psxshim: every thread agrees" -- "$psxshim" "$probe"
    expect_in "psxshim: active" "the probe sees the library"
    expect_in "verdict: agree" "probe verdict"
    # Both ways of waiting for small rounds, the default (spinning) and
    # PSXSHIM_SPIN=0: the same drop, and the log says which way the caller
    # waited (on one CPU it never spins: the threads it waits for need that
    # CPU).
    spin_word=spins; [ "$(nproc)" -gt 1 ] || spin_word=sleeps
    for mode in 1:$spin_word 0:sleeps; do
        expect_status 0 "privilege drop with PSXSHIM_SPIN=${mode%%:*}" -- env PSXSHIM_SPIN="${mode%%:*}" "$psxshim" --verbose "$probe"
        expect_in "verdict: agree" "PSXSHIM_SPIN=${mode%%:*}: every thread agrees"
        expect_in "${mode#*:} for small rounds" "PSXSHIM_SPIN=${mode%%:*}: the caller ${mode#*:}"
    done
    # Negative control: the same program without the launcher diverges.
    expect_status 1 "negative control without psxshim: threads diverge" -- "$probe"
    expect_in "psxshim: inactive" "control runs without the library"
    if [ -x "${EXPLOIT-}" ]; then
        expect_status 0 "libcap's exploit test under psxshim" -- "$psxshim" "$EXPLOIT"
        expect_in "exploit failed" "libcap's exploit fails under psxshim"
        expect_status 1 "libcap's exploit without psxshim (control)" -- "$EXPLOIT"
        expect_in "exploit succeeded" "libcap's exploit succeeds without psxshim"
    else
        note "libcap exploit test: ${EXPLOIT:-} not installed (libcap-dev)"
    fi
else
    note "set-user-ID, file-capability and privilege-drop checks need root"
fi
finish
