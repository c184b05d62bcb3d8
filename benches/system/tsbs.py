#!/usr/bin/env python3
"""TSBS-IoT-like benchmark: Mast (over HTTP) beside DuckDB (in process) on the same data.

Driven by benches/system/tsbs.sh, which builds the binaries and passes --bin-dir. Steps:

1. Start a fresh `mast serve` in a temp dir and ingest the truck fleet over MQTT with
   `mast-loadgen iot --fast-forward` (line protocol, QoS 1, 60 rows per message); the ingest
   rate is the load generator's points/s. The stored row counts are checked against what was sent.
2. Export both tables through Mast's own SQL API as Parquet and load them into DuckDB tables.
3. Run the 10 TSBS IoT queries, written for each engine, one warm-up then TSBS_RUNS timed runs
   each; report medians. Mast: wall time of the whole HTTP request, the result read as JSON.
   DuckDB: execute + fetchall in this process. The two results are compared (row count, then
   values, floats within a relative 1e-6) and any difference is printed loudly.
4. Ingest while querying: a second fast-forward fleet on a later time range (so it never
   overwrites the dataset's points) for TSBS_LOAD_SECS alone, then again while one client runs
   the Mast query set in a closed loop; the drop in points/s.
5. Print a markdown table; with --record also append a dated section to docs/benchmarks.md.

Environment (defaults in brackets): TSBS_TRUCKS [1000], TSBS_HOURS [28], TSBS_SEED [1],
TSBS_RUNS [5], TSBS_LOAD_SECS [20], TSBS_LOAD_WARMUP [3], TSBS_LOAD_TRUCKS [= TSBS_TRUCKS],
TSBS_LG_THREADS [2], TSBS_SLOW_RATIO [3: print EXPLAIN ANALYZE for queries that much slower in
Mast], TSBS_MACHINE [a description read off /proc], TSBS_KEEP [0: keep the temp dir],
TSBS_QUERY_LOOP [1: run step 4]. Needs the `duckdb` and `pyarrow` modules (PyPI).
"""

import argparse
import datetime as dt
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import duckdb
import pyarrow.parquet as pq

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
FLEET = "South"


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The queries. Each TSBS query (cmd/tsbs_generate_queries, TimescaleDB flavour, whose `tags`
# table join becomes a GROUP BY on the tag columns: Mast and this DuckDB copy keep the tags on
# every row) in Mast's dialect and DuckDB's. Random parameters of TSBS are fixed: fleet 'South',
# windows placed by the dataset's length.


# Queries that Mast answers from each series' latest row (`latest=true` in EXPLAIN).
LATEST = ("last-loc", "low-fuel", "high-load")


def queries(hours):
    end = START + dt.timedelta(hours=hours)
    # stationary-trucks: a 10-minute window in the middle of the data.
    st0 = START + dt.timedelta(hours=hours / 2)
    st0 = st0.replace(minute=st0.minute - st0.minute % 10, second=0, microsecond=0)
    st1 = st0 + dt.timedelta(minutes=10)
    # long-driving-sessions: the last 4 hours (all of it if shorter); > 22 ten-minute periods
    # of driving (4 h less 5 minutes rest per hour), as TSBS.
    ld0 = max(START, end - dt.timedelta(hours=4))
    q = []

    def add(name, mast, duck=None):
        q.append((name, " ".join(mast.split()), " ".join((duck or mast).split())))

    def both(sql):
        """Mast's `last(v, time)` is DuckDB's `arg_max(v, time)`; time literals are strings."""
        return sql, re.sub(r"\blast\(", "arg_max(", sql)

    add("last-loc", *both(f"""
        SELECT name, driver, last(latitude, time) AS latitude, last(longitude, time) AS longitude
        FROM readings WHERE fleet = '{FLEET}' GROUP BY name, driver"""))
    add("low-fuel", *both(f"""
        SELECT name, driver, last(fuel_state, time) AS fuel_state
        FROM diagnostics WHERE fleet = '{FLEET}' GROUP BY name, driver
        HAVING last(fuel_state, time) < 0.1"""))
    add("high-load", *both(f"""
        SELECT name, driver, load_capacity, last(current_load, time) AS current_load
        FROM diagnostics WHERE fleet = '{FLEET}' GROUP BY name, driver, load_capacity
        HAVING last(current_load, time) / CAST(load_capacity AS DOUBLE) > 0.9"""))
    add("stationary-trucks", f"""
        SELECT name, driver FROM readings
        WHERE time >= '{iso(st0)}' AND time < '{iso(st1)}' AND fleet = '{FLEET}'
        GROUP BY name, driver HAVING avg(velocity) < 1""")
    add("long-driving-sessions", f"""
        SELECT name, driver FROM (
            SELECT name, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
            FROM readings
            WHERE time >= '{iso(ld0)}' AND time < '{iso(end)}' AND fleet = '{FLEET}'
            GROUP BY name, driver, ten_minutes HAVING avg(velocity) > 1) AS r
        GROUP BY name, driver HAVING count(*) > 22""")
    add("avg-vs-projected-fuel-consumption", """
        SELECT fleet, avg(fuel_consumption) AS avg_fuel_consumption,
               avg(CAST(nominal_fuel_consumption AS DOUBLE)) AS projected_fuel_consumption
        FROM readings WHERE velocity > 1 GROUP BY fleet""")
    add("avg-daily-driving-duration", """
        WITH ten_minute_driving_sessions AS (
            SELECT fleet, name, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
            FROM readings GROUP BY fleet, name, driver, ten_minutes HAVING avg(velocity) > 1),
        daily_total_session AS (
            SELECT fleet, name, driver, time_bucket(INTERVAL '24 hours', ten_minutes) AS day,
                   count(*) / 6.0 AS hours
            FROM ten_minute_driving_sessions GROUP BY fleet, name, driver, day)
        SELECT fleet, name, driver, avg(hours) AS avg_daily_hours
        FROM daily_total_session GROUP BY fleet, name, driver""")
    add("avg-load", """
        SELECT fleet, model, load_capacity,
               avg(avg_load / CAST(load_capacity AS DOUBLE)) AS avg_load_percentage
        FROM (SELECT fleet, model, load_capacity, name, avg(current_load) AS avg_load
              FROM diagnostics GROUP BY fleet, model, load_capacity, name) AS d
        GROUP BY fleet, model, load_capacity""")
    # Active = a 10-minute period whose average status is below 1 (TSBS); the figure is
    # truck-days of activity per fleet, model and day (active periods / 144).
    add("daily-activity", """
        SELECT fleet, model, day, count(*) / 144.0 AS daily_activity
        FROM (SELECT fleet, model, name, time_bucket(INTERVAL '24 hours', time) AS day,
                     time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
              FROM diagnostics GROUP BY fleet, model, name, day, ten_minutes
              HAVING avg(status) < 1) AS y
        GROUP BY fleet, model, day ORDER BY day""")
    # Broken down = a 10-minute period in which most rows have a non-zero status (status 0 is
    # "in commission", as daily-activity has it; TSBS's own text, count(status = 0) / count(*),
    # counts every row). Counted: periods that start a breakdown, per model.
    add("breakdown-frequency", """
        WITH breakdown_per_truck_per_ten_minutes AS (
            SELECT model, name, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes,
                   avg(CASE WHEN status <> 0 THEN 1.0 ELSE 0.0 END) >= 0.5 AS broken_down
            FROM diagnostics GROUP BY model, name, ten_minutes),
        breakdowns_per_truck AS (
            SELECT model, broken_down,
                   lead(broken_down) OVER (PARTITION BY name ORDER BY ten_minutes)
                       AS next_broken_down
            FROM breakdown_per_truck_per_ten_minutes)
        SELECT model, count(*) AS breakdowns FROM breakdowns_per_truck
        WHERE NOT broken_down AND next_broken_down GROUP BY model""")
    return q


# ---------------------------------------------------------------------------------------------
# Mast over HTTP.


class Mast:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)
        return self.conn

    def request(self, sql, fmt="json", sink=None):
        """Runs `sql`; returns the body (or writes it to `sink`). Raises on HTTP errors."""
        body = json.dumps({"sql": sql, "format": fmt})
        try:
            c = self._conn()
            c.request("POST", "/api/v1/sql", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            if sink is None:
                data = r.read()
            else:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    sink.write(chunk)
                data = b""
        except (http.client.HTTPException, OSError):
            self.close()
            raise
        if r.status != 200:
            raise RuntimeError(f"Mast answered {r.status}: {data[:2000].decode(errors='replace')}")
        return data

    def query(self, sql):
        return json.loads(self.request(sql))

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bin_dir, work, config=None):
    """`mast serve` on fresh ports in `work`, with `config` (TOML text) as its config file."""
    mqtt, http_port = free_port(), free_port()
    env = dict(os.environ)
    env.pop("MAST_PROFILE", None)  # the script's knob, not a server setting
    env.setdefault("MAST_LOG", "warn")
    env.setdefault("MAST_QUERY_TIMEOUT_MS", "600000")
    logf = open(os.path.join(work, "mast.log"), "wb")
    p = subprocess.Popen(
        [os.path.join(bin_dir, "mast"), "serve", "--data-dir", os.path.join(work, "data"),
         "--mqtt-listen", f"127.0.0.1:{mqtt}", "--http-listen", f"127.0.0.1:{http_port}"]
        + config_args(work, config),
        stdout=logf, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        if p.poll() is not None:
            sys.exit(f"mast exited with {p.returncode}; see {work}/mast.log")
        try:
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                c.close()
                return p, mqtt, http_port
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    sys.exit("mast did not answer /health within 30 s")


def config_args(work, config):
    if config is None:
        return []
    path = os.path.join(work, "mast.toml")
    with open(path, "w") as f:
        f.write(config)
    return ["--config", path]


def stop_server(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------------------------
# Load.


def loadgen_args(bin_dir, mqtt, trucks, start, duration, threads):
    return [os.path.join(bin_dir, "mast-loadgen"), "iot", "-h", "127.0.0.1", "-p", str(mqtt),
            "--fast-forward", "-c", str(trucks), "--start", iso(start), "--duration", duration,
            "--seed", os.environ.get("TSBS_SEED", "1"), "--format", "line", "--batch", "60",
            "--threads", str(threads), "--json"]


def ingest(bin_dir, mqtt, trucks, hours, threads):
    args = loadgen_args(bin_dir, mqtt, trucks, START, f"{hours}h", threads)
    log("$ " + " ".join(args))
    t0 = time.monotonic()
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - t0
    return json.loads(out.stdout), wall


class RateWatch:
    """A fast-forward fleet run for a fixed wall time; its rate from the per-second lines."""

    LINE = re.compile(rb"iot points: total=(\d+)")

    def __init__(self, args):
        self.samples = []
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stderr:
            m = self.LINE.search(line)
            if m:
                self.samples.append((time.monotonic(), int(m.group(1))))

    def measure(self, warmup, secs):
        """Points/s between the first line after `warmup` s and the last one `secs` later (the
        load generator counts points as it writes them; its socket and the broker's queues are
        bounded, so in steady state that is the rate the broker takes them at)."""
        while len(self.samples) < 1 and self.p.poll() is None:
            time.sleep(0.05)
        first_t = self.samples[0][0] if self.samples else time.monotonic()
        while time.monotonic() < first_t + warmup + secs + 0.5 and self.p.poll() is None:
            time.sleep(0.1)
        self.stop()
        s = [x for x in self.samples if x[0] >= first_t + warmup - 0.5]
        if len(s) < 2:
            raise RuntimeError("the load generator reported too few rate lines "
                               f"(exit status {self.p.returncode})")
        (t0, n0), (t1, n1) = s[0], s[-1]
        return {"rate": (n1 - n0) / (t1 - t0), "secs": t1 - t0, "points": n1 - n0,
                "t0": t0, "t1": t1}

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        self.p.wait()
        self.t.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Results: normalisation and comparison.

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def norm(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return ("t", v.timestamp())
    if isinstance(v, str) and TS.match(v):
        return ("t", dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp())
    if isinstance(v, bool) or v is None:
        return ("o", str(v))
    if isinstance(v, (int, float)):
        return ("n", float(v))
    if hasattr(v, "__float__"):  # Decimal
        return ("n", float(v))
    return ("s", str(v))


def sort_key(row):
    # Exact columns first, then rounded numbers, so float noise cannot reorder rows.
    exact = tuple(str(x) for k, x in row if k != "n")
    approx = tuple(round(x, 6) if k == "n" and math.isfinite(x) else 0 for k, x in row)
    return exact + approx


def compare(mast_rows, duck_rows):
    """None if the results agree, else a description of the first difference."""
    m = sorted(([norm(v) for v in r.values()] for r in mast_rows), key=sort_key)
    d = sorted(([norm(v) for v in r] for r in duck_rows), key=sort_key)
    if len(m) != len(d):
        return f"row count: Mast {len(m)}, DuckDB {len(d)}"
    for i, (a, b) in enumerate(zip(m, d)):
        if len(a) != len(b):
            return f"row {i}: Mast has {len(a)} columns, DuckDB {len(b)}"
        for j, ((ka, va), (kb, vb)) in enumerate(zip(a, b)):
            same = (ka == kb and (va == vb or (ka in "nt" and (
                math.isclose(va, vb, rel_tol=1e-6, abs_tol=1e-9)
                or (math.isnan(va) and math.isnan(vb))))))
            if not same:
                return f"row {i} column {j}: Mast {va!r} ({ka}), DuckDB {vb!r} ({kb})"
    return None


# ---------------------------------------------------------------------------------------------
# Timing.


def timed(fn, runs):
    fn()  # warm-up
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times, result


def closed_loop(port, qs, stop, stats):
    m = Mast(port)
    while not stop.is_set():
        for _, sql, _ in qs:
            if stop.is_set():
                break
            t0 = time.perf_counter()
            try:
                m.request(sql)
                stats["done"].append((time.monotonic(), (time.perf_counter() - t0) * 1000))
            except Exception as e:  # counted, and the loop goes on
                stats["errors"] += 1
                stats["last_error"] = str(e)[:300]
    m.close()


# ---------------------------------------------------------------------------------------------


def machine():
    """`TSBS_MACHINE (cores, CPU, RAM)`, or just the part in brackets."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    auto = f"{os.cpu_count()} vCPU {model}, {mem_kib / 2**20:.0f} GiB RAM"
    name = os.environ.get("TSBS_MACHINE")
    return f"{name} ({auto})" if name else auto


def fmt_int(x):
    return f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--record", action="store_true",
                    help="append a dated section to docs/benchmarks.md")
    ap.add_argument("--profile", default="release")
    ap.add_argument("--command", default="benches/system/tsbs.sh")
    a = ap.parse_args()

    trucks = env_int("TSBS_TRUCKS", 1000)
    hours = env_float("TSBS_HOURS", 28)
    hours = int(hours) if hours == int(hours) else hours
    runs = env_int("TSBS_RUNS", 5)
    threads = env_int("TSBS_LG_THREADS", 2)
    load_secs = env_float("TSBS_LOAD_SECS", 20)
    load_warmup = env_float("TSBS_LOAD_WARMUP", 3)
    load_trucks = env_int("TSBS_LOAD_TRUCKS", trucks)
    slow_ratio = env_float("TSBS_SLOW_RATIO", 3)
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()[0]
    qs = queries(hours)
    work = tempfile.mkdtemp(prefix="tsbs.")
    server = None
    report = []  # markdown lines
    not_latest = []

    def out(line=""):
        print(line, flush=True)
        report.append(line)

    try:
        server, mqtt, http_port = start_server(a.bin_dir, work)
        log(f"mast serving MQTT :{mqtt}, HTTP :{http_port}, data in {work}/data")
        mast = Mast(http_port)

        # 1. Ingest.
        summary, ingest_wall = ingest(a.bin_dir, mqtt, trucks, hours, threads)
        points, rows = summary["points"], summary["rows"]
        log(f"ingested {fmt_int(points)} points ({fmt_int(rows)} rows) in "
            f"{summary['seconds']:.1f} s: {fmt_int(summary['points_per_sec'])} points/s")
        counts = {}
        for t in ("readings", "diagnostics"):
            counts[t] = mast.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
            sent = summary["tables"][t]["rows"]
            if counts[t] != sent:
                log(f"!!!!! MISMATCH: {t} holds {counts[t]} rows, {sent} were acknowledged !!!!!")

        # 2. Export as Parquet through the SQL API, load into DuckDB.
        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        export = {}
        for t in ("readings", "diagnostics"):
            path = os.path.join(work, f"{t}.parquet")
            t0 = time.perf_counter()
            with open(path, "wb") as f:
                mast.request(f"SELECT * FROM {t}", fmt="parquet", sink=f)
            secs = time.perf_counter() - t0
            n = pq.ParquetFile(path).metadata.num_rows
            export[t] = (secs, os.path.getsize(path), n)
            duck.execute(f"CREATE TABLE {t} AS SELECT * FROM '{path}'")
            log(f"exported {t}: {fmt_int(n)} rows, {os.path.getsize(path) / 2**20:.1f} MiB "
                f"Parquet in {secs:.2f} s")
            if n != counts[t]:
                log(f"!!!!! MISMATCH: the {t} Parquet export has {n} rows, the table {counts[t]} !!!!!")
        data_bytes = sum(os.path.getsize(os.path.join(d, f))
                         for d, _, fs in os.walk(os.path.join(work, "data")) for f in fs)

        # 3. Queries. The last-value queries must take the latest-row path.
        for name, msql, _ in qs:
            if name in LATEST:
                plan = " ".join(r.get("plan", "") for r in mast.query("EXPLAIN " + msql))
                if "latest=true" not in plan:
                    log(f"!!!!! {name} does not read latest rows only (no latest=true in "
                        f"EXPLAIN): {plan} !!!!!")
                    not_latest.append(name)
        results = []
        mismatches = 0
        max_load = 0.0
        for name, msql, dsql in qs:
            try:
                m_med, m_all, m_body = timed(lambda: mast.request(msql), runs)
                m_rows = json.loads(m_body)
            except Exception as e:
                log(f"\n!!!!! Mast FAILED {name}: {e} !!!!!\n  {msql}\n")
                m_med, m_all, m_rows = float("nan"), [], None
            try:
                d_med, d_all, d_rows = timed(lambda: duck.execute(dsql).fetchall(), runs)
            except Exception as e:
                log(f"\n!!!!! DuckDB FAILED {name}: {e} !!!!!\n  {dsql}\n")
                d_med, d_all, d_rows = float("nan"), [], None
            if m_rows is None or d_rows is None:
                diff = "a query failed"
            else:
                diff = compare(m_rows, d_rows)
            if diff:
                mismatches += 1
                log(f"\n!!!!! RESULTS DIFFER for {name}: {diff} !!!!!\n  Mast:   {msql}\n"
                    f"  DuckDB: {dsql}\n")
            max_load = max(max_load, os.getloadavg()[0])
            n = len(m_rows if m_rows is not None else d_rows or [])
            results.append((name, m_med, d_med, n, diff, m_all, d_all))
            log(f"{name}: Mast {m_med:.1f} ms, DuckDB {d_med:.1f} ms, {n} rows"
                f"{'' if diff is None else ', MISMATCH'}")

        slow = [(r[0], sql) for r, (_, sql, _) in zip(results, qs)
                if r[1] > slow_ratio * r[2] and r[1] > 50]  # ms
        plans = {}
        for name, sql in slow:
            rows_ = mast.query("EXPLAIN ANALYZE " + sql)
            plans[name] = "\n".join(r.get("plan", json.dumps(r)) for r in rows_)

        # 4. Ingest alone, then under the query loop, on later time ranges.
        load = None
        if env_int("TSBS_QUERY_LOOP", 1):
            a_start = (START + dt.timedelta(hours=hours) + dt.timedelta(days=1)).replace(
                hour=0, minute=0, second=0)
            b_start = a_start + dt.timedelta(days=60)
            span = "1440h"  # 60 days: never reached in the time allotted
            log(f"ingest alone: {load_trucks} trucks from {iso(a_start)} for {load_secs:.0f} s")
            w = RateWatch(loadgen_args(a.bin_dir, mqtt, load_trucks, a_start, span, threads))
            alone = w.measure(load_warmup, load_secs)
            log(f"  {fmt_int(alone['rate'])} points/s")
            stop, stats = threading.Event(), {"done": [], "errors": 0}
            loop = threading.Thread(target=closed_loop, args=(http_port, qs, stop, stats))
            loop.start()
            log(f"ingest under queries: from {iso(b_start)}")
            w = RateWatch(loadgen_args(a.bin_dir, mqtt, load_trucks, b_start, span, threads))
            busy = w.measure(load_warmup, load_secs)
            stop.set()
            loop.join()
            # Queries that finished inside the measured window.
            stats["window"] = [ms for t, ms in stats["done"] if busy["t0"] <= t <= busy["t1"]]
            log(f"  {fmt_int(busy['rate'])} points/s, {len(stats['window'])} queries in the "
                f"window, {stats['errors']} errors")
            if stats["errors"]:
                log(f"  last query error: {stats.get('last_error')}")
            load = (alone, busy, stats)

        # 5. Report.
        finished = dt.datetime.now(dt.timezone.utc)
        rec_cmd = (f"TSBS_TRUCKS={trucks} TSBS_HOURS={hours} {a.command}"
                   + (" --record" if a.record else ""))
        out(f"`{rec_cmd}` ({started:%H:%M}–{finished:%H:%M} UTC {finished:%Y-%m-%d}, "
            f"{a.profile} build). Machine: {machine()}. Mast on its defaults (one shard and one "
            "reactor per core, group commit) but `MAST_QUERY_TIMEOUT_MS=600000`; DuckDB "
            f"{duckdb.__version__} in the driver's Python process, default threads. Load "
            f"average at the start: {load_before:.2f}.")
        out()
        out(f"**Dataset**: {trucks:,} trucks × {hours} h at 10 s (seed "
            f"{os.environ.get('TSBS_SEED', '1')}): `readings` {fmt_int(counts['readings'])} rows "
            f"(7 fields), `diagnostics` {fmt_int(counts['diagnostics'])} rows (3 fields), "
            f"**{fmt_int(points)} points**.")
        out()
        out("**Ingest** (`mast-loadgen iot --fast-forward`, line protocol, 60 rows per message, "
            f"QoS 1, {threads} load thread{'s' if threads > 1 else ''}, one connection per truck): "
            f"{fmt_int(points)} points in {summary['seconds']:.1f} s = "
            f"**{fmt_int(summary['points_per_sec'])} points/s** "
            f"({fmt_int(summary['rows_per_sec'])} rows/s); every acknowledged row stored. "
            f"On disk after ingest: {data_bytes / 2**20:.0f} MiB (WAL + segments); Parquet "
            f"export (zstd, via `format=parquet`): readings "
            f"{export['readings'][1] / 2**20:.0f} MiB in {export['readings'][0]:.1f} s, "
            f"diagnostics {export['diagnostics'][1] / 2**20:.0f} MiB in "
            f"{export['diagnostics'][0]:.1f} s.")
        out()
        out(f"**Queries**: medians of {runs} runs after one warm-up. Mast: wall time of "
            "`POST /api/v1/sql` (format json) until the whole body is read, one keep-alive "
            "connection. DuckDB: `execute(...).fetchall()` on tables loaded from that Parquet. "
            "Highest 1-minute load average seen between queries: "
            f"{max_load:.2f} on {os.cpu_count()} cores.")
        out()
        out("| query | rows | Mast median ms | DuckDB median ms | Mast ÷ DuckDB | results |")
        out("|---|---|---|---|---|---|")
        for name, m_med, d_med, n, diff, _, _ in results:
            ratio = m_med / d_med if d_med > 0 else float("inf")
            out(f"| {name} | {n:,} | {m_med:,.1f} | {d_med:,.1f} | {ratio:.2f}× | "
                f"{'agree' if diff is None else '**DIFFER**'} |")
        ok = [r for r in results if r[2] > 0 and r[1] > 0]  # NaN (failed) compares False
        gm = math.exp(statistics.mean(math.log(r[1] / r[2]) for r in ok)) if ok else math.nan
        out(f"| **geometric mean** | | | | **{gm:.2f}×** | |")
        out()
        if load:
            alone, busy, stats = load
            drop = (1 - busy["rate"] / alone["rate"]) * 100 if alone["rate"] else float("nan")
            done = stats["window"]
            qmean = statistics.mean(done) if done else float("nan")
            out(f"**Ingest while querying**: a second fleet of {load_trucks:,} trucks "
                "(fast-forward, on later time ranges so no stored point is overwritten), "
                f"points/s over {load_secs:.0f} s after a {load_warmup:.0f} s warm-up, from "
                "the load generator's per-second counts.")
            out()
            out("| ingest | points/s | |")
            out("|---|---|---|")
            out(f"| alone | {fmt_int(alone['rate'])} | |")
            out(f"| while one client runs the {len(qs)} queries in a closed loop | "
                f"{fmt_int(busy['rate'])} | {len(done)} queries finished in the window "
                f"({len(done) / busy['secs']:.2f}/s, mean {qmean:,.0f} ms), "
                f"{stats['errors']} errors |")
            out(f"| **drop** | **{drop:.1f} %** | |")
            out()
        if not_latest:
            out(f"**Not on the latest-row path: {', '.join(not_latest)}.**")
            out()
        if mismatches:
            out(f"**{mismatches} of {len(results)} queries gave different results in Mast and "
                "DuckDB.**")
            out()

        print()
        print("Per-run times (ms):")
        for name, _, _, _, _, m_all, d_all in results:
            print(f"  {name}: Mast {[round(x, 1) for x in m_all]} DuckDB "
                  f"{[round(x, 1) for x in d_all]}")
        print()
        print("Queries (Mast SQL):")
        for name, msql, dsql in qs:
            print(f"  {name}: {msql}")
            if dsql != msql:
                print(f"    DuckDB: {dsql}")
        for name, plan in plans.items():
            print(f"\n### EXPLAIN ANALYZE {name} (Mast ≥ {slow_ratio:g}× DuckDB)\n")
            print(plan)
        if mismatches:
            print(f"\n!!!!! {mismatches} QUERY RESULT MISMATCH(ES): see above !!!!!")

        if a.record:
            record(report, finished, qs)
        return 1 if mismatches else 0
    finally:
        if server is not None:
            stop_server(server)
        if os.environ.get("TSBS_KEEP", "0") == "1":
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def record(report, when, qs):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "benchmarks.md")
    lines = [f"## TSBS IoT queries, beside DuckDB — {when:%Y-%m-%d}, "
             f"{os.environ.get('TSBS_MACHINE', 'see below')}", ""]
    lines += report
    lines += ["The queries (`benches/system/tsbs.py`) follow TSBS's IoT set "
              "(`cmd/tsbs_generate_queries`, TimescaleDB flavour) with the `tags` join written as "
              f"a GROUP BY on tag columns, fleet '{FLEET}' and fixed windows (stationary-trucks: "
              "10 minutes in the middle of the data; long-driving-sessions: the last 4 hours, "
              "> 22 ten-minute periods above 1 km/h). Mast's `last(v, time)` is DuckDB's "
              "`arg_max(v, time)`; last-loc, low-fuel and high-load read only each series' "
              "latest row in Mast (`latest=true` in `EXPLAIN`). Where TSBS is ambiguous: "
              "daily-activity counts active 10-minute periods (/ 144 = truck-days); "
              "breakdown-frequency takes \"most rows with a non-zero status\" as broken down "
              "and counts the periods that start a breakdown.", ""]
    # Paragraphs wrapped at 100 columns like the rest of the file; tables left alone.
    lines = [l if not l or l.startswith("|") else textwrap.fill(
        l, 100, break_long_words=False, break_on_hyphens=False) for l in lines]
    with open(path, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")
    log(f"appended to {os.path.normpath(path)}")


if __name__ == "__main__":
    sys.exit(main())
