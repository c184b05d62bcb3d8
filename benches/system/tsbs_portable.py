#!/usr/bin/env python3
"""TSBS IoT in plain, portable SQL: Mast beside DuckDB on the same rows, two ingests, sealed and not.

Driven by benches/system/tsbs_portable.sh, which builds the binaries and passes --bin-dir. The
queries are the whole TSBS IoT set written as an analyst writes them, with no Mast-only
function: the latest row per truck as `row_number() OVER (PARTITION BY name ORDER BY time
DESC) = 1`, ten-minute buckets with `date_bin` (DuckDB's `time_bucket`, the one word changed for
it), days with `date_trunc`. For each ingest of the same fleet:

- `json-tags`: Mast JSON over MQTT with the truck's tags as string values in every row (`"name":
  "truck_7", "fleet": "South", …`): in Mast they are string fields;
- `json-declared`: the same JSON, to a server whose config declares those keys tags
  (`[ingest] tag_keys`, as Telegraf's JSON parser has them): in Mast they are tags;
- `line`: line protocol, the same strings as tags;

a fresh `mast serve` is loaded with `mast-loadgen iot --fast-forward`, the row counts are checked,
both tables are exported as Parquet through Mast's SQL API and loaded into DuckDB. Then every
query runs (one warm-up, TSBS_RUNS timed runs, medians) in Mast and DuckDB, results compared row
for row, twice: with the data in the head as ingested ("unsealed"), then after a restart with
`storage.max_head_age_secs = 1` has sealed all of it into segments ("sealed").

Environment (defaults in brackets): TSBS_TRUCKS [100], TSBS_HOURS [24], TSBS_SEED [1],
TSBS_RUNS [5], TSBS_LG_THREADS [2], TSBS_INGESTS [json-tags,json-declared,line], TSBS_STATES
[unsealed,sealed], TSBS_MACHINE. Needs the `duckdb` and `pyarrow` modules (PyPI).
"""

import argparse
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tsbs import (START, Mast, compare, fmt_int, iso, log, machine,  # noqa: E402
                  start_server, stop_server, timed)

# The truck's tags, declared for the `json-declared` ingest.
DECLARED = """[ingest]
tag_keys = ["name", "fleet", "driver", "model", "device_version", "load_capacity",
            "fuel_capacity", "nominal_fuel_consumption"]
"""

FLEET = "South"
TRUCK = "truck_27"


def queries(hours):
    """(name, Mast SQL, DuckDB SQL): DuckDB spells date_bin as time_bucket."""
    end = START + dt.timedelta(hours=hours)
    st0 = START + dt.timedelta(hours=hours / 2)
    st0 = st0.replace(minute=st0.minute - st0.minute % 10, second=0, microsecond=0)
    st1 = st0 + dt.timedelta(minutes=10)
    ld0 = max(START, end - dt.timedelta(hours=4))
    ls0 = max(START, end - dt.timedelta(hours=24))
    q = []

    def add(name, sql):
        sql = " ".join(sql.split())
        q.append((name, sql, re.sub(r"\bdate_bin\(", "time_bucket(", sql)))

    latest = "row_number() OVER (PARTITION BY name ORDER BY time DESC) AS rn"
    add("last-loc", f"""
        SELECT name, driver, latitude, longitude FROM (
            SELECT name, driver, latitude, longitude, {latest}
            FROM readings WHERE fleet = '{FLEET}') AS r
        WHERE rn = 1""")
    # not a TSBS query: last-loc as a join with the latest time per truck
    add("last-loc-join", f"""
        SELECT r.name, r.driver, r.latitude, r.longitude FROM readings AS r
        JOIN (SELECT name, max(time) AS t FROM readings WHERE fleet = '{FLEET}'
              GROUP BY name) AS m ON r.name = m.name AND r.time = m.t
        WHERE r.fleet = '{FLEET}'""")
    add("single-last-loc", f"""
        SELECT name, driver, latitude, longitude FROM (
            SELECT name, driver, latitude, longitude, {latest}
            FROM readings WHERE name IN ('{TRUCK}')) AS r
        WHERE rn = 1""")
    add("low-fuel", f"""
        SELECT name, driver, fuel_state FROM (
            SELECT name, driver, fuel_state, {latest}
            FROM diagnostics WHERE fleet = '{FLEET}') AS d
        WHERE rn = 1 AND fuel_state < 0.1""")
    add("high-load", f"""
        SELECT name, driver, current_load, load_capacity FROM (
            SELECT name, driver, current_load, load_capacity, {latest}
            FROM diagnostics WHERE fleet = '{FLEET}') AS d
        WHERE rn = 1 AND current_load / CAST(load_capacity AS DOUBLE) > 0.9""")
    add("stationary-trucks", f"""
        SELECT name, driver FROM readings
        WHERE time >= '{iso(st0)}' AND time < '{iso(st1)}' AND fleet = '{FLEET}'
        GROUP BY name, driver HAVING avg(velocity) < 1""")
    def sessions(since, periods):
        """Trucks of the fleet driving (10-minute average above 1 km/h) in more than `periods`
        ten-minute periods since `since`."""
        return f"""
            SELECT name, driver FROM (
                SELECT name, driver, date_bin(INTERVAL '10 minutes', time) AS ten_minutes
                FROM readings
                WHERE time >= '{iso(since)}' AND time < '{iso(end)}' AND fleet = '{FLEET}'
                GROUP BY name, driver, ten_minutes HAVING avg(velocity) > 1) AS r
            GROUP BY name, driver HAVING count(*) > {periods}"""

    # 4 hours less 5 minutes' rest per hour; 10 hours in the last 24 (TSBS)
    add("long-driving-sessions", sessions(ld0, 22))
    add("long-daily-sessions", sessions(ls0, 60))
    add("avg-vs-projected-fuel-consumption", """
        SELECT fleet, avg(fuel_consumption) AS avg_fuel_consumption,
               avg(CAST(nominal_fuel_consumption AS DOUBLE)) AS projected_fuel_consumption
        FROM readings WHERE velocity > 1 GROUP BY fleet""")
    add("avg-daily-driving-duration", """
        WITH ten_minute_driving_sessions AS (
            SELECT fleet, name, driver, date_bin(INTERVAL '10 minutes', time) AS ten_minutes
            FROM readings GROUP BY fleet, name, driver, ten_minutes HAVING avg(velocity) > 1),
        daily_total_session AS (
            SELECT fleet, name, driver, date_trunc('day', ten_minutes) AS day,
                   count(*) / 6.0 AS hours
            FROM ten_minute_driving_sessions GROUP BY fleet, name, driver, day)
        SELECT fleet, name, driver, avg(hours) AS avg_daily_hours
        FROM daily_total_session GROUP BY fleet, name, driver""")
    # TSBS: sessions of driving (ten-minute average above 5 km/h) between changes of state,
    # their average length per truck and day (in seconds here: portable, unlike intervals).
    add("avg-daily-driving-session", """
        WITH driver_status AS (
            SELECT name, date_bin(INTERVAL '10 minutes', time) AS ten_minutes,
                   avg(velocity) > 5 AS driving
            FROM readings GROUP BY name, ten_minutes),
        driver_status_change AS (
            SELECT name, ten_minutes AS start,
                   lead(ten_minutes) OVER (PARTITION BY name ORDER BY ten_minutes) AS stop,
                   driving
            FROM (SELECT name, ten_minutes, driving,
                         lag(driving) OVER (PARTITION BY name ORDER BY ten_minutes)
                             AS prev_driving
                  FROM driver_status) AS x
            WHERE x.driving <> x.prev_driving)
        SELECT name, date_trunc('day', start) AS day,
               avg(date_part('epoch', stop) - date_part('epoch', start)) AS duration_s
        FROM driver_status_change WHERE driving GROUP BY name, day""")
    add("avg-load", """
        SELECT fleet, model, load_capacity,
               avg(avg_load / CAST(load_capacity AS DOUBLE)) AS avg_load_percentage
        FROM (SELECT fleet, model, load_capacity, name, avg(current_load) AS avg_load
              FROM diagnostics GROUP BY fleet, model, load_capacity, name) AS d
        GROUP BY fleet, model, load_capacity""")
    add("daily-activity", """
        SELECT fleet, model, day, count(*) / 144.0 AS daily_activity
        FROM (SELECT fleet, model, name, date_trunc('day', time) AS day,
                     date_bin(INTERVAL '10 minutes', time) AS ten_minutes
              FROM diagnostics GROUP BY fleet, model, name, day, ten_minutes
              HAVING avg(status) < 1) AS y
        GROUP BY fleet, model, day ORDER BY day""")
    add("breakdown-frequency", """
        WITH breakdown_per_truck_per_ten_minutes AS (
            SELECT model, name, date_bin(INTERVAL '10 minutes', time) AS ten_minutes,
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


def ingest(bin_dir, mqtt, trucks, hours, threads, fmt):
    args = [os.path.join(bin_dir, "mast-loadgen"), "iot", "-h", "127.0.0.1", "-p", str(mqtt),
            "--fast-forward", "-c", str(trucks), "--start", iso(START), "--duration",
            f"{hours}h", "--seed", os.environ.get("TSBS_SEED", "1"), "--format", fmt,
            "--batch", "60", "--threads", str(threads), "--json"]
    log("$ " + " ".join(args))
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    return json.loads(out.stdout)


def head_bytes(port):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("mast_storage_head_bytes"):
            total += float(line.split()[-1])
    return total


def scan_counts(mast):
    """system.segments' rows beside count(*), per table."""
    out = {}
    for t in ("readings", "diagnostics"):
        n = mast.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
        seg = mast.query(
            f"SELECT coalesce(sum(rows), 0) AS n FROM system.segments WHERE table_name = '{t}'")
        out[t] = (n, seg[0]["n"])
    return out


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    trucks = int(os.environ.get("TSBS_TRUCKS", 100))
    hours = int(os.environ.get("TSBS_HOURS", 24))
    runs = int(os.environ.get("TSBS_RUNS", 5))
    threads = int(os.environ.get("TSBS_LG_THREADS", 2))
    ingests = os.environ.get("TSBS_INGESTS", "json-tags,json-declared,line").split(",")
    states = os.environ.get("TSBS_STATES", "unsealed,sealed").split(",")
    qs = queries(hours)
    started = dt.datetime.now(dt.timezone.utc)
    results = {"machine": machine(), "started": started.isoformat(), "trucks": trucks,
               "hours": hours, "runs": runs, "ingests": {}}
    for fmt in ingests:
        work = tempfile.mkdtemp(prefix=f"tsbs-{fmt}.")
        os.environ.pop("MAST_STORAGE_MAX_HEAD_AGE_SECS", None)
        config = DECLARED if fmt == "json-declared" else None
        server, mqtt, port = start_server(a.bin_dir, work, config)
        mast = Mast(port)
        r = {"states": {}}
        results["ingests"][fmt] = r
        try:
            sent = "json-tags" if fmt == "json-declared" else fmt
            summary = ingest(a.bin_dir, mqtt, trucks, hours, threads, sent)
            r["ingest"] = {k: summary[k] for k in ("points", "rows", "seconds", "points_per_sec")}
            log(f"{fmt}: {fmt_int(summary['points'])} points in {summary['seconds']:.1f} s, "
                f"{fmt_int(summary['points_per_sec'])} points/s")
            for t in ("readings", "diagnostics"):
                n = mast.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
                if n != summary["tables"][t]["rows"]:
                    sys.exit(f"{fmt}: {t} holds {n} rows, {summary['tables'][t]['rows']} sent")
            duck = duckdb.connect()
            duck.execute("SET TimeZone = 'UTC'")
            for t in ("readings", "diagnostics"):
                path = os.path.join(work, f"{t}.parquet")
                with open(path, "wb") as f:
                    mast.request(f"SELECT * FROM {t}", fmt="parquet", sink=f)
                duck.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{path}')")
            for state in states:
                if state == "sealed":
                    mast.close()
                    stop_server(server)
                    os.environ["MAST_STORAGE_MAX_HEAD_AGE_SECS"] = "1"
                    server, mqtt, port = start_server(a.bin_dir, work, config)
                    mast = Mast(port)
                    # sealed when the segments hold every row (the head gauge reads 0
                    # before the WAL replay has been accounted, so ask the segments)
                    deadline = time.time() + 300
                    while time.time() < deadline:
                        c = scan_counts(mast)
                        if all(seg >= n for n, seg in c.values()) and head_bytes(port) == 0:
                            break
                        time.sleep(0.5)
                    else:
                        sys.exit(f"{fmt}: not sealed after 300 s: {scan_counts(mast)}")
                    log(f"{fmt}: sealed: {scan_counts(mast)}")
                counts = scan_counts(mast)
                rows = []
                for name, msql, dsql in qs:
                    m_ms, _, m_rows = timed(lambda: mast.query(msql), runs)
                    d_ms, _, d_rows = timed(lambda: duck.execute(dsql).fetchall(), runs)
                    diff = compare(m_rows, d_rows)
                    plan = mast.query("EXPLAIN " + msql)
                    latest = any("latest=true" in json.dumps(p) for p in plan)
                    rows.append({"query": name, "rows": len(m_rows), "mast_ms": m_ms,
                                 "duck_ms": d_ms, "agree": diff is None, "diff": diff,
                                 "latest": latest})
                    log(f"{fmt} {state} {name}: {len(m_rows)} rows, Mast {m_ms:.1f} ms, "
                        f"DuckDB {d_ms:.1f} ms ({m_ms / d_ms:.2f}x){'' if diff is None else ' !!! ' + diff}")
                r["states"][state] = {"counts": counts, "queries": rows,
                                      "geomean": geomean([x["mast_ms"] / x["duck_ms"]
                                                          for x in rows])}
        finally:
            mast.close()
            stop_server(server)
    print(json.dumps(results, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    table(results)


def table(results):
    ingests = list(results["ingests"])
    cols = [(i, s) for i in ingests for s in results["ingests"][i]["states"]]
    print()
    print("| query | rows | " + " | ".join(f"{i} {s}: Mast ms / DuckDB ms / ratio" for i, s in cols)
          + " | results |")
    print("|---|---|" + "---|" * len(cols) + "---|")
    first = results["ingests"][cols[0][0]]["states"][cols[0][1]]["queries"]
    for k, q in enumerate(first):
        cells, agree = [], True
        for i, s in cols:
            x = results["ingests"][i]["states"][s]["queries"][k]
            agree &= x["agree"]
            cells.append(f"{x['mast_ms']:.1f} / {x['duck_ms']:.1f} / {x['mast_ms'] / x['duck_ms']:.2f}×")
        print(f"| {q['query']} | {q['rows']} | " + " | ".join(cells)
              + f" | {'agree' if agree else 'DIFFER'} |")
    print("| **geometric mean** | | " + " | ".join(
        f"**{results['ingests'][i]['states'][s]['geomean']:.2f}×**" for i, s in cols) + " | |")


if __name__ == "__main__":
    main()
