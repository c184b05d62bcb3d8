"""Test client for Mast's SQL-over-HTTP API (stdlib `http.client`, so the server's status lines
and headers are seen exactly as sent) and independent readers that turn every output format
into the same plain Python rows, so one format can be compared with another:

    rows(fmt, body) -> (column names, [tuple per row])

Timestamps become integer nanoseconds since the epoch (UTC), tags plain strings, nulls `None`.
Readers: `json` / line-by-line `json` for json/jsonl, `pandas.read_csv` for csv,
`pyarrow.ipc.open_stream` for arrow and `pyarrow.parquet` for parquet.
"""

import http.client
import io
import json
import math
import re
import urllib.parse
from dataclasses import dataclass

FORMATS = ["json", "jsonl", "csv", "arrow", "parquet"]

CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass
class Resp:
    status: int
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def error(self):
        """The `{"error", "code"}` body of a failure, checked for its shape."""
        assert self.content_type.startswith("application/json"), (self.status, self.headers, self.body)
        e = self.json()
        assert set(e) == {"error", "code"} and isinstance(e["error"], str) and e["error"], e
        return e


class Sql:
    """HTTP client for one server's API (`token`: bearer token sent with every request)."""

    def __init__(self, port: int, token=None, host="127.0.0.1", timeout=30.0):
        self.port, self.host, self.token, self.timeout = port, host, token, timeout

    def request(self, method, path, body=None, headers=None) -> Resp:
        h = dict(headers or {})
        if self.token is not None and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.token}"
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def get(self, sql, format=None, headers=None) -> Resp:
        params = {"q": sql}
        if format is not None:
            params["format"] = format
        return self.request("GET", "/api/v1/sql?" + urllib.parse.urlencode(params), headers=headers)

    def post(self, sql, format=None, headers=None) -> Resp:
        """POST with the JSON body `{"sql", "format"}`."""
        body = {"sql": sql}
        if format is not None:
            body["format"] = format
        h = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", "/api/v1/sql", json.dumps(body).encode(), h)

    def post_raw(self, sql, format=None, content_type="text/plain", headers=None) -> Resp:
        """POST with the SQL itself as the body."""
        path = "/api/v1/sql" + ("?" + urllib.parse.urlencode({"format": format}) if format else "")
        body = sql.encode() if isinstance(sql, str) else sql
        return self.request("POST", path, body, {"Content-Type": content_type, **(headers or {})})

    def query(self, sql):
        """The JSON rows of a query that must succeed."""
        r = self.get(sql)
        assert r.status == 200, (sql, r.status, r.body[:2000])
        return r.json()

    def metrics(self) -> str:
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        return r.body.decode()


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of Prometheus text: `metric(t, "mast_queries_total", 'outcome="failed"')`."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == want:
            return float(value)
    raise AssertionError(f"no sample {want} in /metrics")


# Timestamps ---------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$")


def rfc3339_ns(s: str) -> int:
    """`2026-01-01T00:00:10.5Z` -> ns since the epoch (UTC), exact to the nanosecond. Only the
    UTC `Z` form is accepted: that is what the contract promises."""
    import calendar

    m = _RFC3339.match(s)
    assert m, f"not an RFC 3339 UTC timestamp: {s!r}"
    y, mo, d, h, mi, sec, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec), 0, 0, 0))
    return secs * 10**9 + int((frac or "").ljust(9, "0"))


def ns_rfc3339(ns: int) -> str:
    """The form Mast writes: whole seconds bare, else the fraction (3, 6 or 9 digits)."""
    import datetime

    secs, frac = divmod(ns, 10**9)
    base = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    for digits in (3, 6, 9):
        if frac % 10 ** (9 - digits) == 0:
            return f"{base}.{frac // 10 ** (9 - digits):0{digits}d}Z"


# Readers: each format -> (columns, rows) --------------------------------------------------------


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _from_dicts(objs, time_cols):
    assert objs, "no rows"
    cols = list(objs[0])
    out = []
    for o in objs:
        assert list(o) == cols, (list(o), cols)  # every object has every column, in order
        out.append(tuple(rfc3339_ns(o[c]) if c in time_cols and o[c] is not None else o[c] for c in cols))
    return cols, out


def read_json(body: bytes, time_cols=("time",)):
    return _from_dicts(json.loads(body), time_cols)


def read_jsonl(body: bytes, time_cols=("time",)):
    text = body.decode()
    assert text.endswith("\n"), "jsonl ends with a newline"
    return _from_dicts([json.loads(line) for line in text.split("\n")[:-1]], time_cols)


def arrow_rows(table):
    """A pyarrow Table -> (columns, rows); timestamps as int ns, dictionaries decoded."""
    import pyarrow as pa

    cols = []
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
        elif pa.types.is_timestamp(t):
            assert t.unit == "ns" and t.tz in ("UTC", "+00:00"), (name, t)
            col = col.cast(pa.int64())
        cols.append([_plain(v) for v in col.to_pylist()])
    return table.column_names, list(zip(*cols)) if cols else []


def read_arrow(body: bytes):
    import pyarrow.ipc

    with pyarrow.ipc.open_stream(io.BytesIO(body)) as reader:
        table = reader.read_all()
    return arrow_rows(table)


def read_parquet(body: bytes):
    import pyarrow.parquet as pq

    return arrow_rows(pq.read_table(io.BytesIO(body)))


def read_csv(body: bytes, dtypes: dict, time_cols=("time",)):
    """pandas.read_csv with the column types the JSON result says (`dtypes`: column -> one of
    float, int, bool, str, time), nulls as empty fields."""
    import pandas as pd

    pd_types = {"float": "float64", "int": "Int64", "bool": "boolean", "str": "string", "time": "string"}
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(
        io.BytesIO(body),
        dtype={c: pd_types[t] for c, t in dtypes.items()},
        keep_default_na=False,
        na_values={c: [""] for c in dtypes},
        **exact,  # pandas 3 parses floats exactly by default
    )
    cols = list(df.columns)
    out = []
    for rec in df.itertuples(index=False, name=None):
        row = []
        for c, v in zip(cols, rec):
            if v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                v = None
            elif dtypes[c] == "time":
                v = rfc3339_ns(v)
            elif dtypes[c] == "int":
                v = int(v)
            elif dtypes[c] == "bool":
                v = bool(v)
            elif dtypes[c] == "float":
                v = float(v)
            row.append(v)
        out.append(tuple(row))
    return cols, out


def dtypes_of(cols, rows, time_cols=("time",)):
    """Column kinds for `read_csv`, read off rows that came from JSON."""
    kinds = {}
    for i, c in enumerate(cols):
        seen = {type(r[i]) for r in rows if r[i] is not None}
        if c in time_cols:
            kinds[c] = "time"
        elif seen <= {bool} and seen:
            kinds[c] = "bool"
        elif seen <= {int} and seen:
            kinds[c] = "int"
        elif seen <= {int, float} and seen:
            kinds[c] = "float"
        else:
            kinds[c] = "str"
    return kinds


def read(fmt, body: bytes, dtypes=None, time_cols=("time",)):
    if fmt == "json":
        return read_json(body, time_cols)
    if fmt == "jsonl":
        return read_jsonl(body, time_cols)
    if fmt == "csv":
        return read_csv(body, dtypes, time_cols)
    if fmt == "arrow":
        return read_arrow(body)
    if fmt == "parquet":
        return read_parquet(body)
    raise ValueError(fmt)


def same_values(a, b) -> bool:
    """Exact equality that tells 1 from 1.0 from True (JSON/Arrow types must agree)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if type(u) is not type(v) or u != v:
                # -0.0 == 0.0 passes; types must match
                return False
    return True


# Publishing -------------------------------------------------------------------------------------


def publish_lines(peer, device, table, lines, per_message=500, qos=1):
    """Publishes line-protocol `lines` for `device` to devices/{device}/telemetry/{table},
    `per_message` lines per PUBLISH, each acknowledged."""
    for i in range(0, len(lines), per_message):
        rc = peer.publish(f"devices/{device}/telemetry/{table}", "\n".join(lines[i : i + per_message]), qos=qos)
        assert rc == 0, rc
