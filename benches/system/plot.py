#!/usr/bin/env python3
"""Plots of benches/system/run.sh's results.

    benches/system/plot.py RESULTS_DIR OUT_DIR [--names RATE_PNG LATENCY_PNG]

From RESULTS_DIR/raw.jsonl:
- RATE_PNG (rate.png): messages received per second over time, Mast and Mosquitto, in the
  unthrottled p2p and fan-in runs at QoS 1 (each run's `timeline`; of several runs, the one
  whose received_per_sec is the median).
- LATENCY_PNG (latency_cdf.png): the end-to-end latency CDF (`latency_cdf.e2e`), Mast and
  Mosquitto at the same rate (the `same` runs: half the lower of their maxima), one panel per
  scenario and QoS, log x axis in ms; results without `same` runs fall back to the runs paced at
  50 % of each broker's own max.
Needs matplotlib (PyPI).
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import matplotlib.ticker  # noqa: E402

BROKERS = {"mast": ("Mast", "tab:blue"), "mosquitto": ("Mosquitto", "tab:orange")}
NAMES = {"p2p": "p2p", "fanin": "fan-in"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def runs(lines, **want):
    return [d for d in lines if all(d.get(k) == v for k, v in want.items()) and "result" in d]


def median_run(rs):
    """The run whose received_per_sec is the median (the lower one of an even count)."""
    rs = sorted(rs, key=lambda d: d["result"].get("received_per_sec", 0))
    return rs[(len(rs) - 1) // 2] if rs else None


def rate_plot(lines, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, s in zip(axes, ("p2p", "fanin")):
        for b, (label, color) in BROKERS.items():
            d = median_run(runs(lines, kind="max", broker=b, scenario=s, qos=1))
            tl = d["result"].get("timeline") if d else None
            # Whole seconds only: the last entry may cover a part of one.
            tl = [p for p in tl or [] if float(p["t"]).is_integer()]
            if not tl:
                continue
            ax.plot([p["t"] for p in tl], [p["received"] for p in tl], label=label,
                    color=color, marker=".")
        ax.set_title(f"{NAMES[s]}, QoS 1, unthrottled")
        ax.set_xlabel("time, s")
        ax.set_ylabel("messages received per second")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.ticklabel_format(axis="y", style="plain")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_plot(lines, path):
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (s, q) in zip(axes.flat, [("p2p", 0), ("p2p", 1), ("fanin", 0), ("fanin", 1)]):
        kind = "same" if runs(lines, kind="same", scenario=s, qos=q) else "paced"
        for b, (label, color) in BROKERS.items():
            rs = runs(lines, kind=kind, broker=b, scenario=s, qos=q)
            cdf = rs[-1]["result"].get("latency_cdf", {}).get("e2e") if rs else None
            if not cdf:
                continue
            rate = rs[-1].get("rate")
            xs = [max(us, 1) / 1000 for us, _ in cdf]  # log axis: no zero
            ax.step(xs, [f for _, f in cdf], where="post", color=color,
                    label=f"{label} at {rate:,}/s" if rate else label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(0, 1.01)
        ax.set_title(f"{NAMES[s]}, QoS {q}, "
                     + ("both at the same rate" if kind == "same" else "paced at 50 % of max"))
        ax.set_xlabel("publish → delivery, ms")
        ax.set_ylabel("fraction of messages")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--names", nargs=2, default=["rate.png", "latency_cdf.png"],
                    metavar=("RATE_PNG", "LATENCY_PNG"))
    a = ap.parse_args()
    lines = load(os.path.join(a.results, "raw.jsonl"))
    os.makedirs(a.out, exist_ok=True)
    for fn, name in zip((rate_plot, latency_plot), a.names):
        path = os.path.join(a.out, name)
        fn(lines, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
