#!/bin/bash
# What libpsxshim.so must be to be injected into other people's programs:
# libc as its only NEEDED entry, a SONAME, full RELRO and BIND_NOW, exports
# exactly the list in interpose.def, and no C++ runtime (no dynamic
# initialisers, no exceptions, no RTTI, no operator new).
set -u
lib=$1
def=$2
fail=0
bad() { echo "FAIL: $*"; fail=1; }

command -v readelf >/dev/null || { echo "SKIP: readelf (binutils) not installed"; exit 77; }

needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
[ "$needed" = "libc.so.6 " ] || bad "NEEDED is '$needed', want 'libc.so.6 '"
readelf -d "$lib" | grep -q '(SONAME).*\[libpsxshim\.so\.0\]' || bad "SONAME is not libpsxshim.so.0"
readelf -d "$lib" | grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' || bad "not linked with -z now"
readelf -lW "$lib" | grep -q GNU_RELRO || bad "no GNU_RELRO segment"
readelf -d "$lib" | grep -q TEXTREL && bad "text relocations"

want=$(sed -n 's/^PSX_\(WRAPPED\|API\)(\([A-Za-z0-9_]*\)).*/\2/p' "$def" | sort)
have=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
if [ "$want" != "$have" ]; then
    bad "exported symbols differ from interpose.def:"
    diff <(echo "$want") <(echo "$have") | sed 's/^/    /'
fi

undef=$(nm -D --undefined-only "$lib" | awk '{print $2}')
# __cxa_finalize@GLIBC is libc's, called by every shared object's crtbegin.
cxx=$(echo "$undef" | grep -v '@GLIBC_' | grep -E '^(_Z|__cxa_|__gxx_|_Unwind_)' || true)
[ -z "$cxx" ] || bad "references the C++ runtime: $(echo $cxx)"
nm "$lib" 2>/dev/null | grep -q '_GLOBAL__sub_I' && bad "has dynamic initialisers: $(nm "$lib" | grep _GLOBAL__sub_I | awk '{print $3}')"
nm "$lib" 2>/dev/null | grep -Eq ' _ZT[IS]' && bad "has RTTI (typeinfo symbols)"
readelf -SW "$lib" | grep -q gcc_except_table && bad "has exception tables"

if [ $fail = 0 ]; then
    echo "PASS: NEEDED=$needed; exports = interpose.def ($(echo "$want" | wc -l) symbols); RELRO, BIND_NOW, no C++ runtime"
fi
exit $fail
