"""Mast's SQL answers checked against DuckDB's on the same rows.

Five trucks publish a TSBS-IoT-like fleet over MQTT (line protocol, tags fleet/driver/model):
`readings` (latitude, longitude, velocity, fuel_consumption, heading) every 10 s and
`diagnostics` (fuel_state, current_load, status) every 30 s, with sparse fields, a driver change
(a second series for one truck), a late point and an overwritten duplicate. A small head size
makes the server seal segments while the data arrives, so queries read sealed segments and the
in-memory head together. The rows are exported through Mast's own `format=csv`, checked against
what was published, loaded into DuckDB, and a set of fleet queries (tag and time filters,
per-device aggregates, time buckets, first/last, joins, ORDER BY/LIMIT, windows) must give the
same answers from both, floats within a relative 1e-9.
"""

import calendar
import datetime
import decimal
import math
import random
import re

import duckdb
import pytest
from paho.mqtt.client import MQTTv311

from conftest import MastServer
from mqttc import Peer
from sqlc import Sql, publish_lines, read_csv, rfc3339_ns

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
SEC = 10**9
MS = 10**6
STEPS = 360  # one hour of readings at 10 s
TRUCKS = [
    # device, fleet, driver, model
    ("truck_0", "South", "Ann", "F-150"),
    ("truck_1", "South", "Bob", "H-2"),
    ("truck_2", "North", "Cyd", "F-150"),
    ("truck_3", "North", "Dee", "G-2000"),
    ("truck_4", "East", "Eve", "H-2"),
]
LATE = ("truck_2", T0 - 5 * SEC)  # published last, older than everything
DUPLICATE = ("truck_3", 100)  # step re-published with other values: the later write wins

READING_COLS = ["time", "device_id", "driver", "fleet", "model", "latitude", "longitude", "velocity",
                "fuel_consumption", "heading"]
DIAG_COLS = ["time", "device_id", "driver", "fleet", "model", "fuel_state", "current_load", "status"]


def fleet():
    """(readings rows, diagnostics rows, {device: [(table, line)]}) — deterministic."""
    readings, diags = {}, {}
    lines = {t[0]: [] for t in TRUCKS}
    for n, (dev, fleet_, driver, model) in enumerate(TRUCKS):
        rng = random.Random(1000 + n)
        lat, lon, vel, fuel = 40 + n, -70 - n, 40.0 + n * 5, 1.0
        for k in range(STEPS):
            t = T0 + k * 10 * SEC + n * 137 * MS
            drv = "Bea" if dev == "truck_1" and k >= 180 else driver  # a new series mid-way
            lat = round(lat + rng.uniform(-0.01, 0.01), 5)
            lon = round(lon + rng.uniform(-0.01, 0.01), 5)
            vel = round(min(max(vel + rng.uniform(-6, 6), 0.0), 110.0), 2)
            fuel = round(max(fuel - rng.uniform(0, 0.004), 0.0), 4)
            r = {"time": t, "device_id": dev, "driver": drv, "fleet": fleet_, "model": model,
                 "latitude": lat, "longitude": lon,
                 "velocity": None if k % 17 == 5 or (dev == "truck_4" and k == STEPS - 1) else vel,
                 "fuel_consumption": None if k % 23 == 7 else round(rng.uniform(5, 30), 3),
                 "heading": rng.randrange(0, 360)}
            readings[(dev, t)] = r
            if k % 3 == 0:
                d = {"time": t, "device_id": dev, "driver": drv, "fleet": fleet_, "model": model,
                     "fuel_state": fuel,
                     "current_load": None if k % 11 == 4 else rng.randrange(0, 5000),
                     "status": rng.choice([0, 0, 0, 1, 2])}
                diags[(dev, t)] = d
    out = {}
    for key, r in readings.items():
        out.setdefault(key[0], []).append(("readings", r))
    for key, d in diags.items():
        out.setdefault(key[0], []).append(("diagnostics", d))
    # the duplicate (same series and time, new values) and the late point
    dev, k = DUPLICATE
    n = [t[0] for t in TRUCKS].index(dev)
    t = T0 + k * 10 * SEC + n * 137 * MS
    dup = dict(readings[(dev, t)], velocity=99.5, heading=7)
    readings[(dev, t)] = dup
    out[dev].append(("readings", dup))
    dev, t = LATE
    late = dict(next(r for (d, _), r in readings.items() if d == dev), time=t, velocity=1.25, heading=1)
    readings[(dev, t)] = late
    out[dev].append(("readings", late))
    for dev, items in out.items():
        lines[dev] = [line_of(table, r) for table, r in items]
    return list(readings.values()), list(diags.values()), lines


def line_of(table, r):
    tags = f"fleet={r['fleet']},driver={r['driver']},model={r['model']}"
    fields = []
    for k, v in r.items():
        if k in ("time", "device_id", "fleet", "driver", "model") or v is None:
            continue
        fields.append(f"{k}={v}i" if isinstance(v, int) else f"{k}={v!r}")
    return f"{table},{tags} {','.join(fields)} {r['time']}"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(Sql client of a server holding the fleet, a DuckDB connection holding the same rows)."""
    d = tmp_path_factory.mktemp("duck")
    server = MastServer(d / "mast", env={
        "MAST_STORAGE_MAX_HEAD_BYTES": "8192",
        "MAST_STORAGE_BLOCK_ROWS": "64",
        "MAST_STORAGE_SHARDS": "2",
    }).start()
    try:
        readings, diags, lines = fleet()
        for dev, _, _, _ in TRUCKS:
            p = Peer(server.port, MQTTv311, dev)
            p.connect()
            per_table = {}
            for line in lines[dev]:
                per_table.setdefault(line.split(",", 1)[0], []).append(line)
            # readings first, in batches, then diagnostics; the duplicate and the late point
            # come at the end of the readings, in their own messages
            publish_lines(p, dev, "readings", per_table["readings"][:STEPS], per_message=50)
            publish_lines(p, dev, "readings", per_table["readings"][STEPS:], per_message=1)
            publish_lines(p, dev, "diagnostics", per_table["diagnostics"], per_message=40)
            p.disconnect()
        sql = Sql(server.http_port)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for table, cols, rows in [("readings", READING_COLS, readings), ("diagnostics", DIAG_COLS, diags)]:
            r = sql.get(f"SELECT * FROM {table} ORDER BY device_id, time", "csv")
            assert r.status == 200, r
            csv_path = d / f"{table}.csv"
            csv_path.write_bytes(r.body)
            # what Mast exports is what the trucks published
            kinds = {c: "time" if c == "time" else "str" if c in ("device_id", "driver", "fleet", "model")
                     else "int" if c in ("heading", "current_load", "status") else "float" for c in cols}
            got_cols, got = read_csv(r.body, kinds)
            assert got_cols == cols
            want = sorted((tuple(row[c] for c in cols) for row in rows), key=lambda x: (x[1], x[0]))
            assert got == want, [(a, b) for a, b in zip(got, want) if a != b][:3]
            types = {c: "TIMESTAMP" if k == "time" else "VARCHAR" if k == "str" else "BIGINT" if k == "int"
                     else "DOUBLE" for c, k in kinds.items()}
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, header = true, columns = {duck_struct(types)})",
                [str(csv_path)],
            )
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == len(rows)
        segs = sql.query("SELECT count(*) AS n FROM system.segments WHERE table_name = 'readings'")[0]["n"]
        assert segs > 0, "the head never sealed: the test would not read segments"
        yield sql, con
    finally:
        server.kill()


def duck_struct(types):
    return "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"


# Comparing -----------------------------------------------------------------------------------------

_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def norm(v):
    """One value from either side -> int ns for times, float/int/str/bool/None otherwise."""
    if isinstance(v, str) and _TS.match(v):
        return rfc3339_ns(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return calendar.timegm(v.timetuple()) * 10**9 + v.microsecond * 1000
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def mast_rows(sql, q):
    r = sql.get(q)
    assert r.status == 200, (q, r.status, r.body[:1000])
    objs = r.json()
    return [tuple(norm(v) for v in o.values()) for o in objs]


def duck_rows(con, q):
    return [tuple(norm(v) for v in row) for row in con.execute(q).fetchall()]


def assert_same(sql, con, mast_q, duck_q=None, min_rows=1):
    got = mast_rows(sql, mast_q)
    want = duck_rows(con, duck_q or mast_q)
    assert len(got) >= min_rows, (mast_q, got)
    assert len(got) == len(want), (len(got), len(want), got[:3], want[:3])
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want))
           if len(g) != len(w) or not all(close(a, b) for a, b in zip(g, w))]
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
    return got


def ts(s):
    """A timestamp literal for each side: (Mast, DuckDB)."""
    return f"'{s}Z'", f"TIMESTAMP '{s.replace('T', ' ')}'"


# Queries -------------------------------------------------------------------------------------------


def test_tag_and_time_range_filters(both):
    sql, con = both
    a, da = ts("2026-01-01T00:10:00")
    b, db = ts("2026-01-01T00:20:00")
    q = ("SELECT device_id, time, latitude, longitude, velocity FROM readings "
         "WHERE fleet = 'South' AND time >= {a} AND time < {b} ORDER BY device_id, time")
    rows = assert_same(sql, con, q.format(a=a, b=b), q.format(a=da, b=db), min_rows=100)
    assert {r[0] for r in rows} == {"truck_0", "truck_1"}
    q = ("SELECT device_id, count(*) AS n, max(velocity) AS v FROM readings WHERE model IN ('F-150', 'H-2') "
         "AND driver <> 'Bea' AND time BETWEEN {a} AND {b} AND velocity > 30 GROUP BY device_id ORDER BY device_id")
    assert_same(sql, con, q.format(a=a, b=b), q.format(a=da, b=db), min_rows=2)


def test_per_device_aggregates(both):
    sql, con = both
    q = ("SELECT device_id, count(*) AS n, count(velocity) AS nv, avg(velocity) AS avg_v, max(velocity) AS max_v, "
         "min(fuel_consumption) AS min_f, sum(heading) AS sum_h, stddev(velocity) AS sd_v, "
         "min(time) AS t_min, max(time) AS t_max FROM readings GROUP BY device_id ORDER BY device_id")
    rows = assert_same(sql, con, q, min_rows=5)
    counts = {r[0]: r[1] for r in rows}
    assert counts == {"truck_0": STEPS, "truck_1": STEPS, "truck_2": STEPS + 1, "truck_3": STEPS, "truck_4": STEPS}
    assert next(r for r in rows if r[0] == "truck_2")[8] == LATE[1]
    q = ("SELECT fleet, model, count(DISTINCT driver) AS drivers, count(DISTINCT device_id) AS trucks, "
         "avg(fuel_consumption) AS avg_fc, median(fuel_consumption) AS med_fc FROM readings "
         "GROUP BY fleet, model ORDER BY fleet, model")
    assert_same(sql, con, q, min_rows=4)
    q = ("SELECT device_id, avg(fuel_state) AS f, max(current_load) AS l, sum(status) AS s, count(current_load) AS nl "
         "FROM diagnostics GROUP BY device_id HAVING avg(fuel_state) > 0 ORDER BY device_id")
    assert_same(sql, con, q, min_rows=5)


@pytest.mark.parametrize("fn", ["date_bin", "time_bucket"])
def test_time_buckets_match_duckdb_time_bucket(both, fn):
    sql, con = both
    q = ("SELECT device_id, {fn}(INTERVAL '15 minutes', time) AS bucket, avg(velocity) AS v, "
         "max(latitude) AS lat, min(longitude) AS lon, count(*) AS n FROM readings "
         "GROUP BY device_id, bucket ORDER BY device_id, bucket")
    rows = assert_same(sql, con, q.format(fn=fn), q.format(fn="time_bucket"), min_rows=20)
    first_bucket = {}
    for r in rows:
        first_bucket.setdefault(r[0], r[1])
    assert first_bucket["truck_0"] == T0 and first_bucket["truck_2"] == T0 - 15 * 60 * SEC  # the late point
    # with an origin
    m_origin, d_origin = ts("2026-01-01T00:03:00")
    q = ("SELECT {fn}(INTERVAL '10 minutes', time, {o}) AS bucket, count(*) AS n, avg(fuel_state) AS f "
         "FROM diagnostics WHERE fleet = 'North' GROUP BY bucket ORDER BY bucket")
    assert_same(sql, con, q.format(fn=fn, o=m_origin), q.format(fn="time_bucket", o=d_origin), min_rows=6)


def test_first_and_last_by_time_match_arg_min_and_arg_max(both):
    sql, con = both
    q = ("SELECT device_id, {first}(velocity, time) AS first_v, {last}(velocity, time) AS last_v, "
         "{first}(latitude, time) AS first_lat, {last}(longitude, time) AS last_lon, "
         "{last}(heading, time) AS last_h FROM readings GROUP BY device_id ORDER BY device_id")
    rows = assert_same(sql, con, q.format(first="first", last="last"),
                       q.format(first="arg_min_null", last="arg_max_null"), min_rows=5)
    # nulls count: truck_4's last reading has no velocity
    assert dict((r[0], r[2]) for r in rows)["truck_4"] is None
    assert dict((r[0], r[1]) for r in rows)["truck_2"] == 1.25  # the late point is the first
    # per bucket
    q = ("SELECT device_id, date_bin(INTERVAL '20 minutes', time) AS b, {first}(fuel_state, time) AS f0, "
         "{last}(fuel_state, time) AS f1, {last}(current_load, time) AS l FROM diagnostics "
         "GROUP BY device_id, b ORDER BY device_id, b")
    assert_same(sql, con, q.format(first="first", last="last"),
                q.format(first="arg_min_null", last="arg_max_null").replace("date_bin", "time_bucket"), min_rows=15)


@pytest.mark.parametrize("where", [
    "",
    "WHERE fleet = 'North'",
    "WHERE fleet <> 'North' AND device_id IN ('truck_0', 'truck_1', 'truck_2')",
    "WHERE time < {t}",
    "WHERE time >= {t0} AND time < {t}",
    "WHERE device_id = 'truck_1' AND time <= {t1}",
    "WHERE time < {t1}",  # truck_1 has a point exactly at t1: excluded
    "WHERE time > {t1} AND time <= {t2}",
    "WHERE time < {t_early}",  # only the late point
    "WHERE velocity > 50",  # not a tag or time filter: the whole history counts
])
@pytest.mark.parametrize("group", ["device_id", "device_id, driver", "fleet"])
def test_latest_location_per_truck(both, where, group):
    """"Where is each truck now": grouped by tags, only last() and max(time) — the shape the
    latest-row scan answers from each series' newest rows."""
    sql, con = both
    lits = {"t": ts("2026-01-01T00:30:00"), "t0": ts("2026-01-01T00:20:00"), "t1": ts("2026-01-01T00:45:00.137"),
            "t2": ts("2026-01-01T00:50:00.137"), "t_early": ts("2026-01-01T00:00:00")}
    m_where = where.format(**{k: v[0] for k, v in lits.items()})
    d_where = where.format(**{k: v[1] for k, v in lits.items()})
    q = ("SELECT {g}, {last}(latitude, time) AS lat, {last}(longitude, time) AS lon, "
         "{last}(velocity, time) AS v, max(time) AS t FROM readings {w} GROUP BY {g} ORDER BY {g}")
    rows = assert_same(sql, con, q.format(g=group, last="last", w=m_where),
                       q.format(g=group, last="arg_max_null", w=d_where))
    if not where and group == "device_id":
        assert len(rows) == 5 and rows[4][3] is None  # truck_4's last velocity is null
    # diagnostics (no late point there; a field filter on its own field)
    m_where, d_where = (w.replace("velocity > 50", "fuel_state < 0.9") for w in (m_where, d_where))
    q = ("SELECT {g}, last_value(fuel_state ORDER BY time) AS f, max(time) AS t FROM diagnostics {w} "
         "GROUP BY {g} ORDER BY {g}")
    assert_same(sql, con, q.format(g=group, w=m_where),
                q.format(g=group, w=d_where).replace("last_value(fuel_state ORDER BY time)", "arg_max_null(fuel_state, time)"),
                min_rows=0 if "t_early" in where else 1)


def test_joins_of_readings_and_diagnostics(both):
    sql, con = both
    q = ("SELECT r.device_id, r.time, r.velocity, d.fuel_state, d.current_load FROM readings r "
         "JOIN diagnostics d ON r.device_id = d.device_id AND r.time = d.time "
         "WHERE r.fleet = 'North' ORDER BY r.device_id, r.time")
    assert_same(sql, con, q, min_rows=200)
    q = ("WITH r AS (SELECT device_id, {fn}(INTERVAL '10 minutes', time) AS b, avg(velocity) AS v "
         "  FROM readings GROUP BY device_id, b), "
         "d AS (SELECT device_id, {fn}(INTERVAL '10 minutes', time) AS b, avg(fuel_state) AS f, "
         "  max(current_load) AS l FROM diagnostics GROUP BY device_id, b) "
         "SELECT r.device_id, r.b, r.v, d.f, d.l FROM r JOIN d ON r.device_id = d.device_id AND r.b = d.b "
         "ORDER BY r.device_id, r.b")
    assert_same(sql, con, q.format(fn="time_bucket"), q.format(fn="time_bucket"), min_rows=30)
    # TSBS "avg-vs-projected-fuel-consumption"-like: readings joined to each truck's fuel state
    q = ("SELECT r.fleet, r.model, avg(r.fuel_consumption) AS fc, avg(d.fuel_state) AS fs, count(*) AS n "
         "FROM readings r LEFT JOIN diagnostics d ON r.device_id = d.device_id AND r.time = d.time "
         "WHERE r.velocity > 1 GROUP BY r.fleet, r.model ORDER BY r.fleet, r.model")
    assert_same(sql, con, q, min_rows=4)


def test_order_by_and_limit(both):
    sql, con = both
    q = ("SELECT device_id, time, velocity FROM readings WHERE velocity IS NOT NULL "
         "ORDER BY velocity DESC, device_id, time LIMIT 10")
    rows = assert_same(sql, con, q, min_rows=10)
    assert rows == sorted(rows, key=lambda r: (-r[2], r[0], r[1]))
    q = "SELECT time, device_id, heading FROM readings ORDER BY time, device_id LIMIT 7 OFFSET 100"
    assert_same(sql, con, q, min_rows=7)
    q = ("SELECT device_id, time, fuel_consumption FROM readings ORDER BY fuel_consumption ASC NULLS FIRST, "
         "device_id, time LIMIT 20")
    rows = assert_same(sql, con, q, min_rows=20)
    assert rows[0][2] is None
    q = ("SELECT device_id, status, count(*) AS n FROM diagnostics GROUP BY device_id, status "
         "ORDER BY n DESC, device_id, status LIMIT 5")
    assert_same(sql, con, q, min_rows=5)


def test_tsbs_like_fleet_questions(both):
    sql, con = both
    a, da = ts("2026-01-01T00:40:00")
    b, db = ts("2026-01-01T00:50:00")
    # stationary trucks: low average velocity in a window
    q = ("SELECT device_id, fleet, avg(velocity) AS v FROM readings WHERE time >= {a} AND time < {b} "
         "GROUP BY device_id, fleet HAVING avg(velocity) < 60 ORDER BY device_id")
    assert_same(sql, con, q.format(a=a, b=b), q.format(a=da, b=db), min_rows=1)
    # low fuel / high load: each truck's latest diagnostics against a threshold
    q = ("SELECT device_id, {last}(current_load, time) AS load FROM diagnostics GROUP BY device_id "
         "HAVING {last}(current_load, time) > 1000 ORDER BY device_id")
    assert_same(sql, con, q.format(last="last"), q.format(last="arg_max_null"), min_rows=1)
    # breakdown frequency: diagnostics with a non-zero status per model and 10-minute bucket
    q = ("SELECT model, {fn}(INTERVAL '10 minutes', time) AS b, count(*) AS n FROM diagnostics "
         "WHERE status <> 0 GROUP BY model, b ORDER BY model, b")
    assert_same(sql, con, q.format(fn="date_bin"), q.format(fn="time_bucket"), min_rows=10)
    # change in velocity between consecutive readings (window function)
    q = ("SELECT device_id, time, velocity - lag(velocity) OVER (PARTITION BY device_id ORDER BY time) AS dv "
         "FROM readings WHERE device_id IN ('truck_0', 'truck_3') ORDER BY device_id, time")
    assert_same(sql, con, q, min_rows=700)
    # activity by minute of the hour
    q = ("SELECT CAST(date_part('minute', time) AS BIGINT) AS m, count(*) AS n, avg(velocity) AS v "
         "FROM readings GROUP BY m ORDER BY m")
    assert_same(sql, con, q, min_rows=60)


@pytest.mark.parametrize("table", ["readings", "diagnostics"])
def test_every_format_of_many_series_and_segments_agrees(both, table):
    """Many series, sealed segments and the head, dictionaries that differ between batches:
    arrow and parquet (binary, dictionary tags) and jsonl read back equal to the JSON."""
    from sqlc import FORMATS, read, read_json, same_values

    sql, con = both
    q = f"SELECT * FROM {table} ORDER BY time, device_id"
    cols, want = read_json(sql.get(q, "json").body)
    assert len(want) > 500
    for fmt in FORMATS[1:]:
        r = sql.get(q, fmt)
        assert r.status == 200, (fmt, r)
        kinds = {c: "time" if c == "time" else "str" if c in ("device_id", "driver", "fleet", "model")
                 else "int" if c in ("heading", "current_load", "status") else "float" for c in cols}
        got_cols, got = read(fmt, r.body, kinds)
        assert got_cols == cols, fmt
        assert same_values(got, want), (fmt, [(a, b) for a, b in zip(got, want) if a != b][:3])
