#!/bin/bash
# psxaudit(1) from the build tree against live processes: agreement,
# divergence, JSON, the psxshim-loaded check, errors.
#   audit.sh PSXAUDIT PSXSHIM AUDIT_TARGET
set -u
. "$(dirname "$0")/lib.sh"
audit=$1 psxshim=$2 target=$3
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
unset LD_PRELOAD PSXSHIM_LIBRARY

# start NAME COMMAND...: runs it in the background, waits for its "ready".
start() {
    local name=$1; shift
    "$@" > "$tmp/$name.out" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 600); do
        grep -q ready "$tmp/$name.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    grep -q ready "$tmp/$name.out" || { echo "FAIL: $name never became ready: $(cat "$tmp/$name.out")"; exit 1; }
    eval "$name=$pid"
}

start same "$target" 3
start diverging "$target" --diverge 3
start shimmed "$psxshim" "$target" 3

expect_status 0 "--version" -- "$audit" --version
expect_in "psxaudit 0." "--version"
expect_status 0 "threads that agree: 0" -- "$audit" "$same"
expect_in "4 threads, all threads agree" "agreement reported"
expect_in "psxshim    not loaded" "library not loaded"
expect_in "securebits n/a (not exposed by the kernel)" "securebits not guessed"
expect_not_in " ! " "no thread marked"
expect_status 1 "a diverging thread: 1" -- "$audit" "$diverging"
expect_in "threads DIVERGE" "divergence reported"
expect_in "majority (3 of 4)" "majority found"
grep -q '^  ! .*NoNewPrivs 1' <<<"$out" && pass "the odd thread is marked with ! and its field named" \
    || fail "no '!' line naming NoNewPrivs: $out"
if [ "$(id -u)" = 0 ]; then
    grep -q '^  ! .*CapPrm .*cap_net_raw' <<<"$out" && pass "capability difference named with libcap's names" \
        || fail "no CapPrm difference naming cap_net_raw: $out"
fi
expect_status 0 "--full" -- "$audit" --full "$same"
[ "$(grep -c 'CapBnd' <<<"$out")" -ge 4 ] && pass "--full prints every thread" || fail "--full: $out"
expect_status 0 "process under the launcher" -- "$audit" "$shimmed"
expect_in "psxshim    loaded (" "psxshim found in the process maps"
expect_status 1 "several PIDs, one diverging: 1" -- "$audit" "$same" "$diverging"
expect_status 2 "no such process: 2" -- "$audit" 2147483646
expect_in "no such process" "error named"
expect_status 2 "error wins over divergence" -- "$audit" "$diverging" 2147483646
expect_status 2 "not a PID: 2" -- "$audit" 12abc
expect_status 2 "no PID: 2" -- "$audit"
expect_status 2 "unknown option: 2" -- "$audit" --bogus 1

if [ -n "${PYTHON3-}" ] && [ -x "$PYTHON3" ]; then
    "$audit" --json "$same" "$diverging" "$shimmed" 2147483646 > "$tmp/audit.json"; rc=$?
    [ $rc = 2 ] && pass "--json status follows the same rules" || fail "--json status $rc"
    out=$("$PYTHON3" - "$tmp/audit.json" "$same" "$diverging" "$shimmed" "$(id -u)" <<'PY' 2>&1
import json, sys
doc = json.load(open(sys.argv[1]))
same, div, shim, uid = (int(x) for x in sys.argv[2:6])
procs = {p["pid"]: p for p in doc["processes"]}
assert doc["agree"] is False, "top-level agree"
assert procs[same]["agree"] is True and procs[same]["psxshim_loaded"] is False
assert procs[shim]["psxshim_loaded"] is True and "libpsxshim" in procs[shim]["psxshim_path"]
assert "error" in procs[2147483646]
d = procs[div]
assert d["agree"] is False
odd = [t for t in d["threads"] if t["differs"]]
assert len(odd) == 1, odd
assert "NoNewPrivs" in odd[0]["differing_fields"], odd[0]
assert odd[0]["name"] == 'q"b\\t\x01z', repr(odd[0]["name"])
if uid == 0:
    assert "CapPrm" in odd[0]["differing_fields"], odd[0]
t = d["threads"][0]
for k in ("real", "effective", "saved", "fs"):
    assert isinstance(t["uid"][k], int) and isinstance(t["gid"][k], int)
for s in ("inheritable", "permitted", "effective", "bounding", "ambient"):
    assert len(t["capabilities"][s]["hex"]) == 16
assert isinstance(t["capabilities"]["text"], str) and t["capabilities"]["text"].startswith("=")
assert t["securebits"] is None and t["keep_caps"] is None
assert t["no_new_privs"] == 0 and odd[0]["no_new_privs"] == 1
print("json ok")
PY
)
    expect_in "json ok" "--json parses and carries the same findings (names escaped)"
else
    note "--json structure check: python3 not found"
    out=$("$audit" --json "$diverging")
    expect_in '"NoNewPrivs"]' "--json names the differing field"
    expect_in '"name":"q\"b\\t\u0001z"' "--json escapes quotes, backslashes and control characters"
fi
finish
