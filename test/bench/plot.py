#!/usr/bin/env python3
"""Plot results.csv from bench.py: median latency per all-thread call against
the number of extra threads, log-log, one line per method, one panel per
thread state (p99 as a thin dotted line of the same colour).

usage: plot.py results.csv out.png
"""

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["glibc", "glibc-commit", "hand", "libpsx", "libpsx-capset", "libpsx-keepcaps",
         "shim-setresuid", "shim-capset", "shim-keepcaps"]
LABELS = {
    "glibc": "glibc setresuid",
    "glibc-commit": "glibc setresuid, committing",
    "hand": "hand-written lower bound",
    "libpsx": "libpsx 2.66 setresuid",
    "libpsx-capset": "libpsx 2.66 capset",
    "libpsx-keepcaps": "libpsx 2.66 prctl(KEEPCAPS)",
    "shim-setresuid": "psxshim setresuid",
    "shim-capset": "psxshim capset",
    "shim-keepcaps": "psxshim prctl(KEEPCAPS)",
}
STYLE = {
    "glibc": dict(color="black", marker="o"),
    "glibc-commit": dict(color="black", marker="o", linestyle="-.", markerfacecolor="none"),
    "hand": dict(color="grey", marker="s", linestyle="--"),
    "libpsx": dict(color="tab:red", marker="^"),
    "libpsx-capset": dict(color="tab:orange", marker="v", linestyle="--"),
    "libpsx-keepcaps": dict(color="tab:brown", marker="x", linestyle="--"),
    "shim-setresuid": dict(color="tab:blue", marker="D"),
    "shim-capset": dict(color="tab:green", marker="v"),
    "shim-keepcaps": dict(color="tab:purple", marker="x"),
}
TITLES = {"idle": "idle (pthread_cond_wait)", "io": "blocked in read() on a pipe", "busy": "busy (spinning)"}


def main():
    src, out = sys.argv[1], sys.argv[2]
    data = {}
    with open(src) as f:
        for row in csv.DictReader(f):
            data.setdefault(row["state"], {}).setdefault(row["method"], []).append(
                (int(row["threads"]), float(row["median_us"]), float(row["p99_us"])))
    states = [s for s in ("idle", "io", "busy") if s in data]
    fig, axes = plt.subplots(1, len(states), figsize=(5.2 * len(states), 4.6), squeeze=False)
    for ax, state in zip(axes[0], states):
        for m in ORDER:
            pts = sorted(data[state].get(m, []))
            if not pts:
                continue
            xs = [p[0] for p in pts]
            st = dict(STYLE[m])
            ax.plot(xs, [p[1] for p in pts], label=LABELS[m], linewidth=1.6, markersize=4, **st)
            ax.plot(xs, [p[2] for p in pts], color=st["color"], linewidth=0.7, linestyle=":", alpha=0.7)
        ax.set_xscale("log", base=2)
        ticks = sorted({p[0] for m in data[state].values() for p in m})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("extra threads")
        ax.set_ylabel("µs per all-thread call (median; dotted: p99)")
        ax.set_title(TITLES.get(state, state))
        ax.grid(True, which="both", linewidth=0.3, alpha=0.6)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
