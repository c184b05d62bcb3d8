#!/usr/bin/env python3
"""The Markdown section of benches/system/run.sh, from its results directory.

    benches/system/report.py RESULTS_DIR > section.md

Reads RESULTS_DIR/raw.jsonl: the JSON lines run.sh printed, the last of them {"kind": "meta"}.
Medians over the runs, ratios and per-connection memory are worked out here, so a section can be
rendered again from the raw results. Paragraphs are wrapped at 100 columns like the rest of
docs/benchmarks.md; tables are left alone.
"""

import json
import os
import statistics
import sys
import textwrap

SCENARIOS = [("p2p", 0), ("p2p", 1), ("fanin", 0), ("fanin", 1)]
NAMES = {"p2p": "p2p", "fanin": "fan-in"}
BROKERS = ("mast", "mosquitto")


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pick(lines, **want):
    return [d for d in lines if all(d.get(k) == v for k, v in want.items())]


def num(x):
    return f"{x:,.0f}"


def ms(us):
    x = us / 1000
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def pair(stats):
    """'p50 / p99' in ms, or None."""
    if not stats or not stats.get("count"):
        return None
    return f"{ms(stats['p50'])} / {ms(stats['p99'])}"


def throughput(lines, b, s, q):
    """(median received/s or None, number of runs, failures)."""
    runs = pick(lines, kind="max", broker=b, scenario=s, qos=q)
    v = [d["result"]["received_per_sec"] for d in runs
         if d.get("result", {}).get("received_per_sec") is not None]
    return (statistics.median(v) if v else None), len(v), len(runs) - len(v)


def paced(lines, b, s, q):
    """(the paced run's result, its --rate), or (None, None)."""
    runs = pick(lines, kind="paced", broker=b, scenario=s, qos=q)
    if not runs or "result" not in runs[-1]:
        return None, None
    return runs[-1]["result"], runs[-1].get("rate")


def idle(lines, b, n):
    """(KiB per connection on first connect, KiB per connection when the same ids connect
    again after closing, connections held)."""
    runs = pick(lines, kind="idle", broker=b, connections=n)
    if not runs:
        return None, None, None
    d = runs[-1]
    r = d.get("result", {})
    held = r.get("connected", n)
    if d.get("rss_after_kb") is None or not held:
        return None, None, held
    again = None
    if d.get("rss_again_kb") is not None and d.get("rss_closed_kb") is not None:
        again = (d["rss_again_kb"] - d["rss_closed_kb"]) / held
    return (d["rss_after_kb"] - d["rss_before_kb"]) / held, again, held


def main():
    res = sys.argv[1]
    lines = load(os.path.join(res, "raw.jsonl"))
    meta = pick(lines, kind="meta")[-1]["result"]
    out = []
    notes = []

    out.append(f"## Side by side: Mast and Mosquitto — {meta['date']}, {meta['heading_machine']}")
    out.append("")
    out.append(
        f"`{meta['command']}` ({meta['started']}–{meta['finished']} UTC {meta['date']}, "
        f"{meta['profile']} build). Machine: {meta['machine']}; brokers and load generator share "
        f"it. Mast on its defaults; Mosquitto {meta['mosquitto']} (Debian) with `persistence "
        "false`, `max_queued_messages 10000`, `max_inflight_messages 0`, `set_tcp_nodelay true`. "
        "Every run starts a fresh broker.")
    out.append("")
    runs_word = "run" if meta["runs"] == 1 else f"median of {meta['runs']} runs"
    out.append(
        f"**Throughput and latency** (`mast-loadgen bench p2p|fanin -c {meta['connections']} "
        f"-s {meta['size']} -d {meta['dur']}`, MQTT 5). p2p: {meta['connections']} publishers, "
        f"each on its own topic with its own subscriber. Fan-in: {meta['connections']} publishers, one "
        f"subscriber on `bench/#`. Payloads are {meta['size']} bytes. **Max** is the rate of "
        f"messages that reached the subscribers with the publishers unthrottled ({runs_word} of "
        f"{meta['dur']} s). **Latency** is publish → delivery (end to end), in one run of "
        f"{meta['dur']} s with the publishers paced (`--rate`) at 50 % of that broker's own max "
        "(the paced rate in brackets). At QoS 1 the publish → PUBACK latency of the same run "
        "is given too.")
    out.append("")
    out.append("| scenario | Mast max msgs/s | Mosquitto max msgs/s | Mast ÷ Mosquitto "
               "| Mast e2e p50 / p99 ms at 50 % | Mosquitto e2e p50 / p99 ms at 50 % "
               "| Mast ack p50 / p99 ms | Mosquitto ack p50 / p99 ms |")
    out.append("|---|---|---|---|---|---|---|---|")
    for s, q in SCENARIOS:
        row = [f"{NAMES[s]} QoS {q}"]
        maxes = {}
        for b in BROKERS:
            m, n, failed = throughput(lines, b, s, q)
            maxes[b] = m
            row.append("failed" if m is None else num(m))
            if failed:
                notes.append(f"{b} {NAMES[s]} QoS {q}: {failed} of {n + failed} unthrottled runs "
                             "gave no result (see the logs).")
        a, b = maxes["mast"], maxes["mosquitto"]
        row.append(f"**{a / b:.1f}×**" if a and b else "–")
        lat, ack = [], []
        for br in BROKERS:
            p, rate = paced(lines, br, s, q)
            e2e = pair(p.get("e2e_latency_us")) if p else None
            lat.append(f"{e2e} ({num(rate)}/s)" if e2e else "–")
            ack.append((pair(p.get("ack_latency_us")) if p and q else None) or "–")
        out.append("| " + " | ".join(row + lat + ack) + " |")
    out.append("")

    same = [(s, q) for s, q in SCENARIOS if pick(lines, kind="same", scenario=s, qos=q)]
    if same:
        out.append(
            "**Latency at the same rate**: both brokers paced at one rate, half the lower of the "
            f"two maxima above; one run of {meta['dur']} s each. End to end p50 / p99 / p99.9 "
            "in ms; at QoS 1 also publish → PUBACK p99.")
        out.append("")
        out.append("| scenario | msgs/s | Mast e2e | Mosquitto e2e | Mast ack p99 "
                   "| Mosquitto ack p99 |")
        out.append("|---|---|---|---|---|---|")
        for s, q in same:
            row, acks, rate = [f"{NAMES[s]} QoS {q}"], [], None
            cells = []
            for b in BROKERS:
                runs = pick(lines, kind="same", broker=b, scenario=s, qos=q)
                r = runs[-1].get("result") if runs else None
                rate = runs[-1].get("rate") if runs else rate
                e = (r or {}).get("e2e_latency_us") or {}
                cells.append(f"{ms(e['p50'])} / {ms(e['p99'])} / {ms(e['p99_9'])}"
                             if e.get("count") else "failed")
                a = (r or {}).get("ack_latency_us") or {}
                acks.append(ms(a["p99"]) if q and a.get("count") else "–")
            out.append("| " + " | ".join(row + [num(rate or 0)] + cells + acks) + " |")
        out.append("")

    n10k, nmax = 10000, meta["conns_max"]
    out.append(
        "**Memory per idle connection**: the broker's RSS (VmRSS) before `mast-loadgen conn` "
        "connects and while it holds the connections (MQTT 5, keep-alive 300 s), divided by "
        f"the connections held. {num(nmax)} is the most this machine allows: the fd limit "
        f"({num(meta['fd_limit'])} per process) less 500; above 10,000 the connections come "
        "from 20 source addresses (127.0.0.1–20).")
    out.append("")
    out.append("| connections | Mast KiB per connection | Mosquitto KiB per connection "
               "| Mast, same ids again | Mosquitto, same ids again |")
    out.append("|---|---|---|---|---|")
    for n in (n10k, nmax):
        row, again = [num(n)], []
        for b in BROKERS:
            kib, kib_again, held = idle(lines, b, n)
            cell = "failed" if kib is None else f"{kib:.2f}"
            if held is not None and held != n:
                cell += f" ({num(held)} connected)"
            row.append(cell)
            again.append("–" if kib_again is None else f"{kib_again:.2f}")
        out.append("| " + " | ".join(row + again) + " |")
    out.append("")
    out.append(
        "*Same ids again*: after those connections closed, the RSS growth while the same client "
        "ids connect again. Mast keeps what it learns of a device when it goes: its registry "
        "record, its presence series in `iot.device_events` and the connect/disconnect events; "
        "so the first connection of a device costs more than the ones after it. Mosquitto "
        "forgets clean sessions.")
    out.append("")

    iot = pick(lines, kind="iot")
    store = pick(lines, kind="storage")
    if iot and "result" in iot[-1]:
        r = iot[-1]["result"]
        missing = r.get("verify", {}).get("missing_points")
        text = (f"**Mast IoT ingest** (`mast-loadgen iot {iot[-1]['args']} --verify`): "
                f"{num(r['points'])} points in {r['seconds']:.1f} s = "
                f"**{num(r['points_per_sec'])} points/s**, "
                f"{'? (no verify result)' if missing is None else num(missing)} missing.")
        st = store[-1].get("result", {}) if store else {}
        if st.get("disk_bytes") and r.get("points"):
            text += (" Bytes per point on disk (`du -sb` of the data dir) after a clean stop: "
                     f"{st['disk_bytes'] / r['points']:.2f} (WAL and any segments)")
            if st.get("disk_bytes_sealed"):
                text += (f"; after a restart with `max_head_age_secs = 1` sealed the head: "
                         f"{st['disk_bytes_sealed'] / r['points']:.2f}")
            text += "."
        tables = r.get("tables", {})
        segs = [x for x in st.get("segments", []) if x["table_name"] in tables]
        seg_points, seg_bytes = 0.0, 0
        for row in segs:
            t = tables[row["table_name"]]
            seg_points += row["rows"] * (t["points"] / t["rows"] if t.get("rows") else 0)
            seg_bytes += row["bytes"]
        if seg_points:
            text += (f" In the segments of `readings` and `diagnostics` (`system.segments`): "
                     f"**{seg_bytes / seg_points:.2f} bytes per point** "
                     f"({num(seg_bytes)} bytes, {num(seg_points)} points in "
                     f"{sum(x['segments'] for x in segs)} segments).")
        elif st:
            text += (" No sealed segments after the restart "
                     f"({st.get('segments_error', 'system.segments is empty')}).")
        out.append(text)
    else:
        out.append("**Mast IoT ingest**: failed (see the logs).")
    out.append("")

    if meta["plotted"]:
        out.append(f"![Messages received per second, unthrottled p2p and fan-in at QoS 1, Mast "
                   f"and Mosquitto]({meta['rate_png']})")
        out.append("")
        out.append(f"![End-to-end latency CDF, Mast and Mosquitto paced at the same rate]({meta['latency_png']})")
        out.append("")
    where = ("in the next section" if meta["record"]
             else "in tsbs.md beside raw.jsonl")
    out.append(f"Storage and queries beside DuckDB: `{meta['tsbs_command']}`, run by the same "
               f"suite, {where}.")
    out.append("")
    for n in notes:
        out.append(f"- {n}")
    if notes:
        out.append("")

    wrapped = [l if not l or l.startswith(("|", "!", "- ")) else textwrap.fill(
        l, 100, break_long_words=False, break_on_hyphens=False) for l in out]
    print("\n".join(wrapped).rstrip("\n"))


if __name__ == "__main__":
    main()
