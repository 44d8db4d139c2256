# Shared by the tools tests: assertions that name what failed.
fails=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
note() { printf 'skip  %s\n' "$*"; }
# expect_status WANT DESCRIPTION -- command...   (stdout+stderr in $out)
expect_status() {
    local want=$1 what=$2
    shift 3
    out=$("$@" 2>&1)
    local got=$?
    if [ "$got" = "$want" ]; then pass "$what (status $got)"; else fail "$what: status $got, want $want; output: $out"; fi
}
expect_in() {  # expect_in NEEDLE DESCRIPTION  (searches $out)
    case $out in *"$1"*) pass "$2" ;; *) fail "$2: '$1' not in: $out" ;; esac
}
expect_not_in() {
    case $out in *"$1"*) fail "$2: '$1' unexpectedly in: $out" ;; *) pass "$2" ;; esac
}
finish() {
    if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
    echo "all checks passed"; exit 0
}
