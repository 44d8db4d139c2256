#!/bin/sh
# Build and run the whole benchmark: results in test/bench/results/, the plot
# in docs/bench-latency.png.  Takes about 12 minutes on 2 cores; needs root
# (setresuid/capset on every thread).  PSXBENCH_QUICK=1 for a ~1 minute smoke run.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${PSXBENCH_BUILD_DIR:-$root/build-bench}
if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$root" --buildtype=release
fi
exec meson compile -C "$dir" bench
