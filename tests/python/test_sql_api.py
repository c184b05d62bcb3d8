"""SQL over HTTP end to end: devices publish over MQTT (paho, line protocol and JSON), the same
query is read back in every output format by an independent reader (json, pandas.read_csv,
pyarrow.ipc, pyarrow.parquet, pandas.read_parquet) and compared value by value; the format is
chosen by `format=`, `Accept`, a POST JSON body or a raw-SQL POST; a result of many batches
streams whole; and every guard rail answers with its status and `code` while ingest goes on.
"""

import hashlib
import http.client
import json
import threading
import time
import urllib.parse

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311

from conftest import MastServer
from mqttc import Peer
from sqlc import (
    CONTENT_TYPES,
    FORMATS,
    Sql,
    dtypes_of,
    metric,
    ns_rfc3339,
    publish_lines,
    read,
    read_json,
    rfc3339_ns,
    same_values,
)

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z in ns
SEC = 10**9

# The `env` table: three sensors on two sites, sparse fields of every type, timestamps with
# millisecond, microsecond and nanosecond fractions, awkward strings and extreme numbers.
SENSORS = {"sensor-a": ("north", "lab"), "sensor-b": ("north", "hall"), "sensor-c": ("south", "lab")}
EXTREME_INT = 9_007_199_254_740_993  # 2^53 + 1: not a double
AWKWARD = 'comma, "quote" and café ✓'
MULTILINE = "two\nlines"


def env_rows():
    """The rows (as dicts; absent = null) each sensor publishes, and their line protocol."""
    rows, lines = [], {d: [] for d in SENSORS}
    for i in range(30):
        for j, (dev, (site, room)) in enumerate(SENSORS.items()):
            t = T0 + i * 10 * SEC + j * 1_000_000 + (123_456_789 if i % 7 == 3 else 0) + (500 if i == 5 else 0)
            r = {"time": t, "device_id": dev, "room": room, "site": site}
            f = {}
            if i % 4 != 1:
                r["temp"] = round(20 + i * 0.37 - j * 1.1, 2)
                f["temp"] = repr(r["temp"])
            if i % 3 != 2:
                r["count"] = i * 1000 - 7000 * j
                f["count"] = f"{r['count']}i"
            if i % 5 != 4:
                r["ok"] = (i + j) % 2 == 0
                f["ok"] = "true" if r["ok"] else "F"
            if i % 6 == 0:
                r["note"] = f"n{i}-{dev}"
                f["note"] = json.dumps(r["note"])
            if not f:
                continue
            rows.append(r)
            fields = ",".join(f"{k}={v}" for k, v in f.items())
            lines[dev].append(f"env,site={site},room={room} {fields} {t}")
    # extremes and escapes on sensor-a
    t = T0 + 400 * SEC
    rows.append({"time": t, "device_id": "sensor-a", "room": "lab", "site": "north", "temp": 1e-300,
                 "count": EXTREME_INT, "note": AWKWARD})
    lines["sensor-a"].append(
        f'env,site=north,room=lab temp=1e-300,count={EXTREME_INT}i,note="comma, \\"quote\\" and café ✓" {t}'
    )
    t = T0 + 401 * SEC
    rows.append({"time": t, "device_id": "sensor-a", "room": "lab", "site": "north",
                 "temp": -1.7976931348623157e308, "count": -(2**63), "ok": False})
    lines["sensor-a"].append(f"env,site=north,room=lab temp=-1.7976931348623157e308,count={-(2**63)}i,ok=f {t}")
    return rows, lines


NOTE_TIME = T0 + 402 * SEC  # sensor-b's one JSON row, in table `notes`


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A server holding the `env` table (published over MQTT 3.1.1 and 5.0) and the expected rows."""
    server = MastServer(tmp_path_factory.mktemp("sqlapi")).start()
    rows, lines = env_rows()
    try:
        for n, dev in enumerate(SENSORS):
            p = Peer(server.port, MQTTv5 if n % 2 else MQTTv311, dev)
            p.connect()
            publish_lines(p, dev, "env", lines[dev], per_message=17)
            if dev == "sensor-b":
                # JSON (which has no tags) to a table of its own: a string with a newline
                msg = {"ts": NOTE_TIME // 10**6, "values": {"temp": 0.1, "note": MULTILINE}}
                assert p.publish(f"devices/{dev}/telemetry/notes", json.dumps(msg), qos=1) == 0
            p.disconnect()
        yield server, Sql(server.http_port), rows
    finally:
        server.kill()


ENV_COLUMNS = ["time", "device_id", "room", "site", "temp", "count", "ok", "note"]

QUERIES = {
    "all_rows": "SELECT * FROM env ORDER BY device_id, time",
    "aggregates": (
        "SELECT device_id, site, count(*) AS n, count(temp) AS n_temp, min(temp) AS min_temp, "
        "max(temp) AS max_temp, avg(count) AS avg_count, "
        "sum(count) AS total, bool_and(ok) AS all_ok, max(note) AS max_note, min(time) AS t_min, "
        "max(time) AS t_max FROM env WHERE time < '2026-01-01T00:05:00Z' "
        "GROUP BY device_id, site ORDER BY device_id, site"
    ),
    "buckets": (
        "SELECT time_bucket(INTERVAL '1 minute', time) AS bucket, first(temp, time) AS first_temp, "
        "last(count, time) AS last_count, count(ok) AS n_ok FROM env "
        "WHERE device_id IN ('sensor-a', 'sensor-c') GROUP BY bucket ORDER BY bucket"
    ),
}
TIME_COLS = ("time", "t_min", "t_max", "bucket")


def json_rows(sql_client, sql):
    r = sql_client.get(sql, "json")
    assert r.status == 200, r
    assert r.content_type == "application/json"
    return read_json(r.body, TIME_COLS)


def expected_env_tuples(rows):
    rows = sorted(rows, key=lambda r: (r["device_id"], r["time"]))
    return [tuple(r.get(c) for c in ENV_COLUMNS) for r in rows]


def test_json_rows_are_what_devices_published(env):
    server, sql, rows = env
    cols, got = json_rows(sql, QUERIES["all_rows"])
    assert cols == ENV_COLUMNS
    assert same_values(got, expected_env_tuples(rows)), [
        (a, b) for a, b in zip(got, expected_env_tuples(rows)) if a != b
    ][:5]
    # the JSON text itself: RFC 3339 UTC, fractions only when non-zero, explicit nulls
    text = sql.get("SELECT time, temp FROM env WHERE device_id = 'sensor-a' ORDER BY time LIMIT 6").body.decode()
    objs = json.loads(text)
    assert [o["time"] for o in objs] == [ns_rfc3339(T0 + i * 10 * SEC) for i in range(3)] + [
        "2026-01-01T00:00:30.123456789Z", "2026-01-01T00:00:40Z", "2026-01-01T00:00:50.000000500Z",
    ]
    assert objs[1] == {"time": "2026-01-01T00:00:10Z", "temp": None}
    notes = sql.query("SELECT time, device_id, note, temp FROM notes")
    assert notes == [{"time": ns_rfc3339(NOTE_TIME), "device_id": "sensor-b", "note": MULTILINE, "temp": 0.1}]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "json"])
@pytest.mark.parametrize("query", list(QUERIES))
def test_every_format_reads_back_equal_to_json(env, fmt, query):
    server, sql, rows = env
    cols, want = json_rows(sql, QUERIES[query])
    assert len(want) >= 3
    r = sql.get(QUERIES[query], fmt)
    assert r.status == 200, r
    assert r.content_type.startswith(CONTENT_TYPES[fmt]), r.headers
    got_cols, got = read(fmt, r.body, dtypes_of(cols, want, TIME_COLS), TIME_COLS)
    assert got_cols == cols
    if fmt in ("arrow", "parquet"):
        # binary formats keep the types: ns UTC timestamps, tags and string fields dictionary-encoded
        import pyarrow as pa

        schema = _schema(fmt, r.body)
        for name in cols:
            t = schema.field(name).type
            if name in TIME_COLS:
                assert t == pa.timestamp("ns", tz="UTC"), (name, t)
            if name in ("device_id", "site", "room"):
                assert pa.types.is_dictionary(t) and pa.types.is_string(t.value_type), (name, t)
        if query == "all_rows":
            assert str(schema.field("temp").type) == "double"
            assert str(schema.field("count").type) == "int64"
            assert str(schema.field("ok").type) == "bool"
            note = schema.field("note").type
            assert pa.types.is_dictionary(note) and pa.types.is_string(note.value_type), note
    assert same_values(got, want), [(a, b) for a, b in zip(got, want) if a != b][:5]


def _schema(fmt, body):
    import io

    import pyarrow.ipc
    import pyarrow.parquet as pq

    if fmt == "arrow":
        return pyarrow.ipc.open_stream(io.BytesIO(body)).schema
    return pq.read_schema(io.BytesIO(body))


def test_pandas_read_parquet_sees_utc_times_and_values(env):
    import io

    import pandas as pd

    server, sql, rows = env
    r = sql.get(QUERIES["all_rows"], "parquet")
    assert r.status == 200
    df = pd.read_parquet(io.BytesIO(r.body), dtype_backend="numpy_nullable")
    assert list(df.columns) == ENV_COLUMNS
    assert str(df["time"].dt.tz) == "UTC"
    want = expected_env_tuples(rows)
    assert [t.value for t in df["time"]] == [w[0] for w in want]
    assert list(df["device_id"].astype(str)) == [w[1] for w in want]
    assert [None if pd.isna(v) else int(v) for v in df["count"]] == [w[5] for w in want]
    temps = [None if pd.isna(v) else float(v) for v in df["temp"]]
    assert temps == [w[4] for w in want]


def test_empty_results_keep_their_columns_in_every_format(env):
    server, sql, rows = env
    q = "SELECT time, device_id, temp, ok FROM env WHERE temp > 1e9"
    import io

    import pyarrow.ipc
    import pyarrow.parquet as pq

    bodies = {}
    for fmt in FORMATS:
        r = sql.get(q, fmt)
        assert r.status == 200, (fmt, r)
        bodies[fmt] = r.body
    assert json.loads(bodies["json"]) == []
    assert bodies["jsonl"].strip() == b""
    assert bodies["csv"].decode().splitlines() == ["time,device_id,temp,ok"]
    t = pyarrow.ipc.open_stream(io.BytesIO(bodies["arrow"])).read_all()
    assert t.num_rows == 0 and t.column_names == ["time", "device_id", "temp", "ok"]
    t = pq.read_table(io.BytesIO(bodies["parquet"]))
    assert t.num_rows == 0 and t.column_names == ["time", "device_id", "temp", "ok"]


def test_csv_quotes_awkward_strings_and_writes_extremes_exactly(env):
    server, sql, rows = env
    r = sql.get("SELECT time, note, temp, count FROM env WHERE time >= '2026-01-01T00:06:40Z' ORDER BY time", "csv")
    assert r.status == 200
    import csv
    import io

    got = list(csv.reader(io.StringIO(r.body.decode(), newline="")))
    assert got[0] == ["time", "note", "temp", "count"]
    assert got[1][0] == "2026-01-01T00:06:40Z" and got[1][1] == AWKWARD
    assert float(got[1][2]) == 1e-300 and int(got[1][3]) == EXTREME_INT
    assert float(got[2][2]) == -1.7976931348623157e308 and int(got[2][3]) == -(2**63) and got[2][1] == ""
    r = sql.get("SELECT note FROM notes", "csv")
    assert list(csv.reader(io.StringIO(r.body.decode(), newline=""))) == [["note"], [MULTILINE]]


def test_accept_header_chooses_the_format(env):
    server, sql, rows = env
    q = QUERIES["aggregates"]
    cols, want = json_rows(sql, q)
    dt = dtypes_of(cols, want, TIME_COLS)
    for fmt, mime in CONTENT_TYPES.items():
        r = sql.get(q, headers={"Accept": mime})
        assert r.status == 200, (mime, r)
        assert r.content_type.startswith(mime), (mime, r.headers)
        got_cols, got = read(fmt, r.body, dt, TIME_COLS)
        assert got_cols == cols and same_values(got, want), fmt
    # preference by q-value, wildcards, and format= over Accept
    r = sql.get(q, headers={"Accept": "text/csv;q=0.5, application/x-ndjson;q=0.9"})
    assert r.status == 200 and r.content_type.startswith("application/x-ndjson")
    r = sql.get(q, headers={"Accept": "text/html, */*;q=0.1"})
    assert r.status == 200 and r.content_type.startswith("application/json")
    r = sql.get(q, "csv", headers={"Accept": "application/json"})
    assert r.status == 200 and r.content_type.startswith("text/csv")
    r = sql.get(q, "CSV")
    assert r.status == 200 and r.content_type.startswith("text/csv")


def test_unknown_accept_is_406_and_unknown_format_is_400(env):
    server, sql, rows = env
    r = sql.get("SELECT 1", headers={"Accept": "text/html"})
    assert r.status == 406 and r.error()["code"] == "not_acceptable"
    r = sql.get("SELECT 1", "xml")
    assert r.status == 400 and r.error()["code"] == "bad_format"
    r = sql.post("SELECT 1", "excel")
    assert r.status == 400 and r.error()["code"] == "bad_format"


def test_post_json_body_and_raw_sql_body_choose_formats(env):
    server, sql, rows = env
    q = QUERIES["buckets"]
    cols, want = json_rows(sql, q)
    dt = dtypes_of(cols, want, TIME_COLS)
    for fmt in FORMATS:
        r = sql.post(q, fmt)
        assert r.status == 200 and r.content_type.startswith(CONTENT_TYPES[fmt]), (fmt, r)
        got_cols, got = read(fmt, r.body, dt, TIME_COLS)
        assert got_cols == cols and same_values(got, want), fmt
        r = sql.post_raw(q, fmt)
        assert r.status == 200 and r.content_type.startswith(CONTENT_TYPES[fmt]), (fmt, r)
        got_cols, got = read(fmt, r.body, dt, TIME_COLS)
        assert got_cols == cols and same_values(got, want), fmt
    # no format: JSON; Accept still applies to both body kinds
    r = sql.post(q)
    assert r.status == 200 and read_json(r.body, TIME_COLS) == (cols, want)
    r = sql.post_raw(q, content_type="application/sql")
    assert r.status == 200 and read_json(r.body, TIME_COLS) == (cols, want)
    r = sql.post(q, headers={"Accept": "application/vnd.apache.parquet"})
    assert r.status == 200 and r.content_type.startswith("application/vnd.apache.parquet")
    assert same_values(read("parquet", r.body)[1], want)
    r = sql.post_raw(q, content_type="text/plain; charset=utf-8", headers={"Accept": "text/csv"})
    assert r.status == 200 and read("csv", r.body, dt, TIME_COLS) == (cols, want)


def test_malformed_requests_are_400_bad_request(env):
    server, sql, rows = env
    for body in [b'{"sql": ', b'{"query": "SELECT 1"}', b'{"sql": "SELECT 1", "extra": 1}', b'["SELECT 1"]']:
        r = sql.request("POST", "/api/v1/sql", body, {"Content-Type": "application/json"})
        assert r.status == 400 and r.error()["code"] == "bad_request", body
    r = sql.request("GET", "/api/v1/sql")
    assert r.status == 400 and r.error()["code"] == "bad_request"
    r = sql.post_raw("   ")
    assert r.status == 400 and r.error()["code"] == "bad_request"
    r = sql.post_raw(b"SELECT '\xff'")
    assert r.status == 400 and r.error()["code"] == "bad_request"


BIG_ROWS = 25_000


def test_large_result_streams_in_many_batches_in_every_format(mast, peers):
    dev = peers(mast.port, MQTTv311, "bulk")
    dev.connect()
    lines = []
    want = []
    for i in range(BIG_ROWS):
        t = T0 + i * 1_000_003  # 1 ms + 3 ns steps: every row has a fraction
        s = f"s{i % 97}" if i % 5 == 0 else None
        want.append((t, "bulk", "p" + str(i % 3), i * 3 - 40_000, i / 8, s))
        lines.append(f"big,part=p{i % 3} v={i * 3 - 40_000}i,x={i / 8!r}" + (f',s="{s}"' if s else "") + f" {t}")
    publish_lines(dev, "bulk", "big", lines, per_message=1000)
    sql = Sql(mast.http_port)
    q = "SELECT time, device_id, part, v, x, s FROM big ORDER BY time"
    cols = ["time", "device_id", "part", "v", "x", "s"]
    dt = {"time": "time", "device_id": "str", "part": "str", "v": "int", "x": "float", "s": "str"}
    checksum = (sum(w[0] for w in want), sum(w[3] for w in want), sum(w[4] for w in want))
    import io

    import pyarrow.ipc

    for fmt in FORMATS:
        t = time.monotonic()
        r = sql.get(q, fmt)
        assert r.status == 200, (fmt, r)
        assert r.headers.get("transfer-encoding") == "chunked", r.headers  # streamed, not buffered
        got_cols, got = read(fmt, r.body, dt)
        assert got_cols == cols
        assert len(got) == BIG_ROWS, (fmt, len(got))
        assert (sum(g[0] for g in got), sum(g[3] for g in got), sum(g[4] for g in got)) == checksum, fmt
        assert same_values(got, want), fmt
        assert time.monotonic() - t < 10, fmt
        if fmt == "arrow":
            batches = list(pyarrow.ipc.open_stream(io.BytesIO(r.body)))
            assert len(batches) >= 3, len(batches)
            assert sum(b.num_rows for b in batches) == BIG_ROWS
    # a wider sort than the batch size, across sensors, aggregated server side
    agg = sql.query("SELECT count(*) AS n, sum(v) AS sv, count(s) AS ns, max(time) AS tmax FROM big")
    assert agg == [{"n": BIG_ROWS, "sv": checksum[1], "ns": BIG_ROWS // 5, "tmax": ns_rfc3339(want[-1][0])}]


# Guard rails --------------------------------------------------------------------------------------


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout}s")


def seed(server, device="gauge", n=3):
    p = Peer(server.port, MQTTv311, device)
    p.connect()
    publish_lines(p, device, "gauge", [f"gauge level={i}i {T0 + i * SEC}" for i in range(n)])
    return p


def test_bad_sql_is_400_bad_sql(mast):
    seed(mast).disconnect()
    sql = Sql(mast.http_port)
    for q in ["SELEC 1", "SELECT level FROM gauge WHERE", "SELECT nosuchcolumn FROM gauge",
              "SELECT nosuchfunction(level) FROM gauge", "SELECT 1; SELECT 2"]:
        for r in (sql.get(q), sql.post(q), sql.post_raw(q)):
            assert r.status == 400, (q, r)
            assert r.error()["code"] == "bad_sql", (q, r)
    assert "nosuchcolumn" in sql.get("SELECT nosuchcolumn FROM gauge").error()["error"]


def test_unknown_table_is_404_table_not_found(mast):
    seed(mast).disconnect()
    sql = Sql(mast.http_port)
    for q in ["SELECT * FROM nosuch", "SELECT * FROM system.nosuch", "SELECT * FROM iot.nosuch",
              "SELECT g.level FROM gauge g JOIN nosuch n ON g.time = n.time"]:
        r = sql.get(q)
        assert r.status == 404, (q, r)
        e = r.error()
        assert e["code"] == "table_not_found" and "nosuch" in e["error"], (q, e)
    assert sql.query("SELECT level FROM gauge ORDER BY time") == [{"level": 0}, {"level": 1}, {"level": 2}]


@pytest.mark.parametrize("statement", [
    "DROP TABLE gauge",
    "INSERT INTO gauge (time, level) VALUES (now(), 1)",
    "DELETE FROM gauge",
    "UPDATE gauge SET level = 0",
    "CREATE TABLE t (a INT)",
    "CREATE VIEW v AS SELECT * FROM gauge",
    "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT * FROM gauge) TO '{dir}/copied.csv'",
    "COPY gauge TO '{dir}/copied.parquet'",
    "SET datafusion.execution.batch_size = 1",
    "SELECT * INTO t2 FROM gauge",
    "EXPLAIN ANALYZE INSERT INTO gauge (time, level) VALUES (now(), 1)",
])
def test_statements_that_write_are_403_read_only(mast, statement):
    seed(mast).disconnect()
    sql = Sql(mast.http_port)
    q = statement.format(dir=mast.dir)
    for r in (sql.get(q), sql.post(q)):
        assert r.status == 403, (q, r)
        assert r.error()["code"] == "read_only", (q, r)
    assert not list(mast.dir.glob("copied*"))
    assert sql.query("SELECT count(*) AS n, sum(level) AS s FROM gauge") == [{"n": 3, "s": 3}]
    assert sql.query("SELECT table_name FROM system.tables WHERE table_name IN ('t', 't2', 'v', 'ext')") == []


SLOW = "SELECT count(*) FROM generate_series(1, 10000000000)"
HUNGRY = "SELECT array_agg(repeat('x', 1000)) FROM generate_series(1, 100000)"


def test_timeout_is_408_and_ingest_goes_on_meanwhile(mast_factory):
    server = mast_factory(env={"MAST_QUERY_TIMEOUT_MS": "300"})
    dev = seed(server)
    sql = Sql(server.http_port)
    result = {}

    def run():
        t = time.monotonic()
        result["r"] = sql.get(SLOW)
        result["secs"] = time.monotonic() - t

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.05)
    # while the query runs: a QoS 1 publish is acknowledged
    assert dev.publish("devices/gauge/telemetry/gauge", f"gauge level=100i {T0 + 100 * SEC}", qos=1) == 0
    th.join(10)
    r = result["r"]
    assert r.status == 408, r
    e = r.error()
    assert e["code"] == "timeout" and "query.timeout_ms" in e["error"]
    assert 0.25 <= result["secs"] < 5, result["secs"]
    assert dev.publish("devices/gauge/telemetry/gauge", f"gauge level=101i {T0 + 101 * SEC}", qos=1) == 0
    assert sql.query("SELECT level FROM gauge ORDER BY time") == [{"level": v} for v in (0, 1, 2, 100, 101)]
    failed = sql.query("SELECT sql, state, error FROM system.queries WHERE state = 'failed'")
    assert failed == [{"sql": SLOW, "state": "failed", "error": e["error"]}]


def test_timeout_after_the_first_rows_cuts_the_body_short(mast_factory):
    """Past the first batch the status is sent; a timeout then truncates the stream, so a
    client never takes a partial result for a whole one."""
    server = mast_factory(env={"MAST_QUERY_TIMEOUT_MS": "300"})
    sql = Sql(server.http_port)
    # the first branch's row is ready at once; the second runs into the deadline
    q = "SELECT 1 AS n UNION ALL SELECT count(*) AS n FROM generate_series(1, 10000000000)"
    for fmt in ["json", "arrow"]:
        c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        c.request("GET", "/api/v1/sql?" + urllib.parse.urlencode({"q": q, "format": fmt}))
        resp = c.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            body = resp.read()
            pytest.fail(f"{fmt}: a whole body of {len(body)} bytes after a timeout: {body[-200:]!r}")
        c.close()
    m = sql.metrics()
    assert metric(m, "mast_queries_total", 'outcome="failed"') == 2
    failed = sql.query(f"SELECT state, error FROM system.queries WHERE sql = '{q}'")
    assert [f["state"] for f in failed] == ["failed", "failed"], failed
    assert all("query.timeout_ms" in f["error"] for f in failed)


def test_memory_limit_is_413_and_ingest_goes_on(mast_factory):
    server = mast_factory(query={"memory_limit_mb": 8})
    dev = seed(server)
    sql = Sql(server.http_port)
    r = sql.get(HUNGRY)
    assert r.status == 413, r
    assert r.error()["code"] == "memory_limit"
    assert sql.post(HUNGRY, "arrow").status == 413
    assert dev.publish("devices/gauge/telemetry/gauge", f"gauge level=7i {T0 + 50 * SEC}", qos=1) == 0
    # a query within the limit still runs, and sees the new point
    assert sql.query("SELECT sum(level) AS s, count(*) AS n FROM gauge") == [{"s": 10, "n": 4}]
    assert sql.query("SELECT count(*) AS n FROM generate_series(1, 1000)") == [{"n": 1000}]
    m = sql.metrics()
    assert metric(m, "mast_queries_total", 'outcome="failed"') == 2
    failed = sql.query("SELECT sql, state FROM system.queries WHERE state = 'failed' ORDER BY query_id")
    assert failed == [{"sql": HUNGRY, "state": "failed"}] * 2


def test_memory_limit_from_environment(mast_factory):
    server = mast_factory(env={"MAST_QUERY_MEMORY_LIMIT_MB": "8"})
    r = Sql(server.http_port).get(HUNGRY)
    assert r.status == 413 and r.error()["code"] == "memory_limit"


def test_body_larger_than_max_body_bytes_is_413_too_large(mast_factory):
    server = mast_factory(http={"max_body_bytes": 2048})
    sql = Sql(server.http_port)
    big = "SELECT 1 AS one" + " " * 4096
    r = sql.post_raw(big)
    assert r.status == 413 and r.error()["code"] == "too_large", r
    assert "2048" in r.error()["error"]
    r = sql.post(big)
    assert r.status == 413 and r.error()["code"] == "too_large", r
    ok = "SELECT 1 AS one" + " " * (2048 - 16)
    assert len(ok) < 2048
    r = sql.post_raw(ok)
    assert r.status == 200 and r.json() == [{"one": 1}], r


def test_too_many_queries_is_429(mast_factory):
    server = mast_factory(query={"max_concurrent": 1, "timeout_ms": 1500})
    sql = Sql(server.http_port)
    result = {}
    th = threading.Thread(target=lambda: result.update(r=sql.get(SLOW)))
    th.start()
    try:
        # /metrics takes no query slot: wait there until the slow query holds the only one
        wait_for(lambda: metric(sql.metrics(), "mast_queries_running") == 1, 1.2, "the slow query to run")
        busy = sql.get("SELECT 1 AS x")
        also = sql.post("SELECT 2 AS x", "csv")
    finally:
        th.join(10)
    assert busy.status == 429, busy
    assert busy.error()["code"] == "too_many_queries" and "query.max_concurrent" in busy.error()["error"]
    assert also.status == 429 and also.error()["code"] == "too_many_queries"
    assert result["r"].status == 408, result["r"]
    r = sql.get("SELECT 1 AS x")
    assert r.status == 200 and r.json() == [{"x": 1}], r


def test_failures_are_counted_in_metrics_and_listed_in_system_queries(mast_factory):
    server = mast_factory(query={"timeout_ms": 300, "memory_limit_mb": 8})
    dev = seed(server)
    sql = Sql(server.http_port)
    m0 = sql.metrics()
    assert metric(m0, "mast_queries_total", 'outcome="failed"') == 0
    done0 = metric(m0, "mast_queries_total", 'outcome="done"')
    bad = {
        "SELEC 1": (400, "bad_sql"),
        "SELECT * FROM nosuch": (404, "table_not_found"),
        "DROP TABLE gauge": (403, "read_only"),
        SLOW: (408, "timeout"),
        HUNGRY: (413, "memory_limit"),
    }
    for q, (status, code) in bad.items():
        r = sql.get(q)
        assert (r.status, r.error()["code"]) == (status, code), q
    assert sql.query("SELECT count(*) AS n FROM gauge") == [{"n": 3}]
    assert dev.publish("devices/gauge/telemetry/gauge", f"gauge level=9i {T0 + 9 * SEC}", qos=1) == 0
    m = sql.metrics()
    assert metric(m, "mast_queries_total", 'outcome="failed"') == len(bad)
    assert metric(m, "mast_queries_total", 'outcome="done"') == done0 + 1
    assert metric(m, "mast_queries_running") == 0
    rows = sql.query("SELECT sql, state, error FROM system.queries WHERE state = 'failed' ORDER BY query_id")
    assert [r["sql"] for r in rows] == list(bad)
    assert all(r["state"] == "failed" and r["error"] for r in rows)
    assert "nosuch" in rows[1]["error"] and "query.timeout_ms" in rows[3]["error"]
    assert sql.query("SELECT count(*) AS n FROM gauge") == [{"n": 4}]


# Authentication -----------------------------------------------------------------------------------

TOKENS = ["reader-token-0123456789", "second-token-abcdefghij"]


def test_bearer_tokens_guard_sql_and_metrics_but_not_health(mast_factory):
    server = mast_factory(http={"tokens": TOKENS})
    seed(server).disconnect()
    anon = Sql(server.http_port)
    q = "SELECT count(*) AS n FROM gauge"
    for r in (anon.get(q), anon.post(q), anon.post_raw(q), anon.request("GET", "/metrics")):
        assert r.status == 401, r
        assert r.error()["code"] == "unauthorized"
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    for bad in ["Bearer wrong-token-0123456789", "Bearer " + TOKENS[0][:-1], "Bearer " + TOKENS[0] + "x",
                "Basic " + TOKENS[0], TOKENS[0], "Bearer"]:
        for r in (anon.get(q, headers={"Authorization": bad}),
                  anon.request("GET", "/metrics", headers={"Authorization": bad})):
            assert r.status == 401, (bad, r)
            assert r.error()["code"] == "unauthorized"
            assert "www-authenticate" in r.headers
    for token in TOKENS:
        sql = Sql(server.http_port, token)
        assert sql.query(q) == [{"n": 3}]
        assert sql.post(q, "csv").body == b"n\n3\n"
        assert "mast_queries_total" in sql.metrics()
    assert anon.get(q, headers={"Authorization": f"bearer {TOKENS[1]}"}).status == 200
    r = anon.request("GET", "/health")
    assert r.status == 200 and r.json()["status"] == "ok"
    r = anon.request("GET", "/health", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert r.status == 200


def test_short_tokens_are_refused_at_start(tmp_path):
    s = MastServer(tmp_path / "short", http={"tokens": ["short"]})
    with pytest.raises(RuntimeError) as e:
        s.start(timeout=10)
    assert "http.tokens" in str(e.value)


def test_metrics_without_tokens_and_unknown_routes(mast):
    sql = Sql(mast.http_port)
    assert sql.query("SELECT 1 AS x") == [{"x": 1}]
    m = sql.metrics()
    assert metric(m, "mast_queries_total", 'outcome="done"') == 1
    for name in ["mast_queries_running", "mast_query_rows_total"]:
        metric(m, name)
    assert any(line.startswith("mast_mqtt_") for line in m.splitlines())
    assert any(line.startswith("mast_storage_") for line in m.splitlines())
    r = sql.request("GET", "/api/v1/nosuch")
    assert r.status == 404 and r.error()["code"] == "not_found"
    r = sql.request("DELETE", "/api/v1/sql")
    assert r.status == 405 and r.error()["code"] == "method_not_allowed"


def test_query_history_keeps_the_configured_number(mast_factory):
    server = mast_factory(env={"MAST_QUERY_HISTORY": "3"})
    sql = Sql(server.http_port)
    for i in range(6):
        assert sql.query(f"SELECT {i} AS i") == [{"i": i}]
    rows = sql.query("SELECT sql, state FROM system.queries ORDER BY query_id")
    assert rows == [{"sql": f"SELECT {i} AS i", "state": "done"} for i in (3, 4, 5)] + [
        {"sql": "SELECT sql, state FROM system.queries ORDER BY query_id", "state": "running"}
    ]


def test_schemas_public_system_and_iot(env):
    server, sql, rows = env
    tables = sql.query("SELECT table_schema, table_name FROM information_schema.tables "
                       "WHERE table_schema IN ('public', 'system', 'iot') ORDER BY table_schema, table_name")
    names = {(t["table_schema"], t["table_name"]) for t in tables}
    assert {("public", "env"), ("public", "notes"), ("iot", "devices"), ("iot", "device_events")} <= names
    assert {("system", n) for n in ["tables", "columns", "segments", "connections", "queries"]} <= names
    # the same table by its qualified names
    n = len(rows)
    for name in ["env", "public.env", "mast.public.env"]:
        assert sql.query(f"SELECT count(*) AS n FROM {name}") == [{"n": n}]
    cols = sql.query("SELECT column_name, kind, data_type FROM system.columns WHERE table_name = 'env' ORDER BY ordinal")
    assert [(c["column_name"], c["kind"], c["data_type"]) for c in cols] == [
        ("time", "time", "timestamp"), ("device_id", "tag", "string"), ("room", "tag", "string"),
        ("site", "tag", "string"), ("temp", "field", "float64"), ("count", "field", "int64"),
        ("ok", "field", "bool"), ("note", "field", "string"),
    ]
    devices = sql.query("SELECT device_id, protocol FROM iot.devices WHERE device_id LIKE 'sensor-%' ORDER BY device_id")
    assert devices == [{"device_id": "sensor-a", "protocol": "3.1.1"}, {"device_id": "sensor-b", "protocol": "5.0"},
                       {"device_id": "sensor-c", "protocol": "3.1.1"}]
    events = sql.query("SELECT device_id, event FROM iot.device_events WHERE device_id = 'sensor-c' ORDER BY time")
    assert [e["event"] for e in events] == ["connected", "disconnected"]
    assert sql.query("SELECT table_name, tags, fields FROM system.tables WHERE table_name = 'env'") == [
        {"table_name": "env", "tags": 3, "fields": 4}
    ]


# Bugs this suite found, fixed: now() in filters, CSV of nested values, nested/crypto functions -----


def test_now_relative_time_filters(mast, peers):
    dev = peers(mast.port, MQTTv311, "recent")
    dev.connect()
    now = time.time_ns()
    publish_lines(dev, "recent", "recent", [f"recent v={i}i {now - i * 60 * SEC}" for i in range(100)])
    sql = Sql(mast.http_port)
    before = time.time_ns()
    r = sql.get("SELECT now() AS t")
    assert r.status == 200, r
    assert before - SEC <= rfc3339_ns(r.json()[0]["t"]) <= time.time_ns() + SEC
    # points at now - 0 .. now - 59 minutes are within the last hour (give a minute of slack)
    r = sql.get("SELECT count(*) AS n FROM recent WHERE time > now() - INTERVAL '1 hour'")
    assert r.status == 200, r
    assert r.json()[0]["n"] in (59, 60, 61)
    r = sql.get("SELECT count(*) AS n FROM recent WHERE time >= date_trunc('day', now()) - INTERVAL '7 days'")
    assert r.status == 200 and r.json() == [{"n": 100}], r
    r = sql.get("SELECT current_date() AS d")
    assert r.status == 200, r


def test_csv_of_nested_values_is_a_client_error(env):
    server, sql, rows = env
    for q in ["SELECT device_id, array_agg(temp) AS temps FROM env GROUP BY device_id",
              "SELECT named_struct('a', 1) AS s"]:
        assert sql.get(q, "json").status == 200
        r = sql.get(q, "csv")
        assert 400 <= r.status < 500 and r.error()["code"] != "internal", (q, r)


def test_datafusion_array_and_crypto_builtins_are_available(env):
    server, sql, rows = env
    assert sql.query("SELECT cardinality(make_array(1, 2, 3)) AS n") == [{"n": 3}]
    assert sql.query("SELECT array_length([1, 2]) AS n") == [{"n": 2}]
    # array_agg keeps nulls (as in DuckDB and PostgreSQL); count(t) counts the non-null ones
    assert sql.query("SELECT count(*) AS n, count(t) AS v FROM (SELECT unnest(array_agg(temp)) AS t FROM env)") == [
        {"n": len(rows), "v": sum(1 for r in rows if "temp" in r)}
    ]
    assert sql.query("SELECT md5('a') AS h") == [{"h": hashlib.md5(b"a").hexdigest()}]
    assert sql.query("SELECT encode(sha256('a'), 'hex') AS h") == [{"h": hashlib.sha256(b"a").hexdigest()}]
