#!/bin/bash
# `meson install` into a temporary DESTDIR, then the installed launcher and
# inspector run from there, finding the installed library on their own.
#   install.sh MESON BUILD_ROOT PREFIX BINDIR LIBDIR INCLUDEDIR MANDIR DROP_PROBE AUDIT_TARGET
set -u
. "$(dirname "$0")/lib.sh"
meson=$1 build=$2 prefix=$3 bindir=$4 libdir=$5 includedir=$6 mandir=$7 probe=$8 target=$9
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$tmp"; }
trap cleanup EXIT
unset LD_PRELOAD PSXSHIM_LIBRARY PSXSHIM_DEBUG
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
root=$tmp/destdir
B=$root$(abs "$bindir") L=$root$(abs "$libdir") I=$root$(abs "$includedir") M=$root$(abs "$mandir")

out=$("$meson" install -C "$build" --no-rebuild --destdir "$root" 2>&1); rc=$?
[ $rc = 0 ] && pass "meson install --destdir" || { fail "meson install: $out"; finish; }

for f in "$B/psxshim" "$B/psxaudit" "$L/libpsxshim.so.0" "$L/libpsxshim.so" "$I/psxshim.h" \
    "$L/pkgconfig/psxshim.pc" "$M/man1/psxshim.1" "$M/man1/psxaudit.1" "$M/man7/libpsxshim.7"; do
    [ -e "$f" ] && pass "installed ${f#$root}" || fail "missing ${f#$root}"
done
if command -v readelf >/dev/null; then
    out=$(readelf -d "$L/libpsxshim.so.0" 2>&1)
    expect_in "Library soname: [libpsxshim.so.0]" "installed library has its SONAME"
fi

# The installed launcher finds the installed library relative to itself.
out=$("$B/psxshim" --verbose sh -c 'printf "<%s>" "$LD_PRELOAD"' 2>&1); rc=$?
[ $rc = 0 ] && pass "installed launcher runs" || fail "installed launcher: status $rc: $out"
expect_in "found via relative to $B" "library found relative to the installed launcher"
case $out in
    *"<$root"*"/libpsxshim.so.0>"*) pass "LD_PRELOAD points into the installation" ;;
    *) fail "LD_PRELOAD does not point into $root: $out" ;;
esac
out=$("$B/psxshim" sh -c 'grep -h libpsxshim /proc/$$/maps' 2>&1)
expect_in "$root" "the command really loads the installed library"
if [ "$(id -u)" = 0 ]; then
    expect_status 0 "installed launcher: privilege drop reaches every thread" -- "$B/psxshim" "$probe"
    expect_in "verdict: agree" "probe verdict under the installed launcher"
fi

# The installed inspector.
expect_status 0 "installed psxaudit --version" -- "$B/psxaudit" --version
"$B/psxshim" "$target" 2 > "$tmp/target.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q ready "$tmp/target.out" && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
expect_status 0 "installed psxaudit on a process under the installed launcher" -- "$B/psxaudit" "$pid"
expect_in "psxshim    loaded ($root" "psxaudit sees the installed library in the process"

# Development files: pkg-config and a program built against the installation.
if command -v pkg-config >/dev/null; then
    out=$(PKG_CONFIG_PATH="$L/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" pkg-config --modversion psxshim 2>&1)
    expect_in "0." "pkg-config knows psxshim"
    flags=$(PKG_CONFIG_PATH="$L/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" pkg-config --cflags --libs psxshim)
    cat > "$tmp/use.cc" <<'CC'
#include <psxshim.h>
#include <cstdio>
#include <cstring>
int main() {
    std::printf("%s %d\n", psxshim_version(), psxshim_active());
    return std::strcmp(psxshim_version(), PSXSHIM_VERSION_STRING) != 0;
}
CC
    out=$(${CXX_FOR_TEST:-c++} -o "$tmp/use" "$tmp/use.cc" $flags 2>&1) \
        && pass "a program builds against the installed header and library ($flags)" \
        || fail "build against the installation: $out"
    if [ -x "$tmp/use" ]; then
        expect_status 0 "the linked program runs with the installed library" -- env LD_LIBRARY_PATH="$L" "$tmp/use"
        expect_in " 1" "psxshim_active() in a linked program"
    fi
else
    note "pkg-config not installed"
fi
if command -v man >/dev/null; then
    out=$(MANPATH="$M" MANWIDTH=80 man -P cat libpsxshim 2>&1)
    expect_in "SET-USER-ID PROGRAMS" "man finds the installed libpsxshim(7)"
fi
finish
