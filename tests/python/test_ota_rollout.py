"""Rollouts over a simulated fleet: `mast-loadgen ota` devices run the AWS IoT Jobs protocol
(notify-next, start-next, download by Range with the document's tokened URL, update) and
succeed, fail, reject or hang at the rates given, against `mast serve`. What was stored is
checked through SQL (`iot.ota_executions`, `iot.ota_events`) and REST."""

import json
import subprocess
import time

import pytest

from conftest import MastServer, mast_bin
from sqlc import Sql


@pytest.fixture
def server(tmp_path):
    s = MastServer(tmp_path / "mast")
    s.start()
    yield s
    s.kill()


def loadgen(s, prefix, devices, *args, duration=60, idle_exit=4):
    """Starts a fleet; returns the process once every device is in the registry."""
    lg = mast_bin().parent / "mast-loadgen"
    p = subprocess.Popen(
        [str(lg), "ota", "-p", str(s.port), "-c", str(devices), "--prefix", prefix, "-d", str(duration),
         "--idle-exit", str(idle_exit), "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    api = Sql(s.http_port)
    deadline = time.monotonic() + 30
    while True:
        n = api.query(f"SELECT count(*) AS n FROM iot.devices WHERE device_id LIKE '{prefix}\\_%' ESCAPE '\\' "
                      f"AND connected")[0]["n"]
        if n == devices:
            return p
        assert p.poll() is None, p.stderr.read().decode()
        assert time.monotonic() < deadline, f"{n} of {devices} devices connected"
        time.sleep(0.1)


def finish(p):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    return json.loads(out)


def create(s, **spec):
    r = Sql(s.http_port).request("POST", "/api/v1/jobs", json.dumps(spec).encode())
    assert r.status == 201, r.body
    return r.json()


def job(s, jid):
    return Sql(s.http_port).request("GET", f"/api/v1/jobs/{jid}").json()


def wait_for(pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def upload(s, image, version):
    r = Sql(s.http_port).request("POST", f"/api/v1/firmware?name=fleet-fw&version={version}", image)
    assert r.status == 201, r.body
    return r.json()


def test_a_rollout_holds_its_rate_times_out_and_retries(server):
    s, api = server, Sql(server.http_port)
    fw = upload(s, bytes(range(256)) * 400, "1.0.0")
    p = loadgen(s, "rate", 60, "--fail", "20", "--hang", "10", "--download", "--work-ms", "100")
    create(s, job_id="rate-1", firmware=fw["id"], targets={"where": "device_id LIKE 'rate\\_%' ESCAPE '\\'"},
           rollout={"max_per_minute": 600}, timeouts={"in_progress_secs": 3},
           retries=[{"failure_type": "FAILED", "number_of_retries": 1},
                    {"failure_type": "TIMED_OUT", "number_of_retries": 1}])
    got = finish(p)
    j = wait_for(lambda: (lambda j: j if j["status"] == "COMPLETED" else None)(job(s, "rate-1")), "job completes", 30)
    assert (j["targeted"], j["released"]) == (60, 60)
    c = j["counts"]
    assert c["QUEUED"] == c["IN_PROGRESS"] == 0
    assert c["SUCCEEDED"] + c["FAILED"] + c["TIMED_OUT"] == 60 and c["SUCCEEDED"] >= 30
    assert got["downloads"] >= got["started"] - got["hung"] - 1 and got["bad_downloads"] == 0
    assert got["succeeded"] == c["SUCCEEDED"], (got, c)

    # The rate: at most 10 devices notified in any second, 600 in a minute; 60 take >= 5 s.
    first = api.query("SELECT device_id, time FROM iot.ota_events WHERE job_id = 'rate-1' AND reason = 'targeted' "
                      "ORDER BY time")
    assert len(first) == 60 and len({r["device_id"] for r in first}) == 60, "each device notified once"
    times = [r["time"] for r in first]
    from sqlc import rfc3339_ns
    ns = [rfc3339_ns(t) for t in times]
    assert all(sum(1 for y in ns if x <= y < x + 1_000_000_000) <= 10 for x in ns)
    assert ns[-1] - ns[0] >= 4_500_000_000

    # Timeouts fired and were retried once; failures were retried once; nothing more.
    rows = api.query("SELECT reason, status, count(*) AS n FROM iot.ota_events WHERE job_id = 'rate-1' "
                     "GROUP BY reason, status ORDER BY reason, status")
    by = {(r["reason"], r["status"]): r["n"] for r in rows}
    assert by.get(("timeout", "TIMED_OUT"), 0) >= 1, by
    assert by.get(("retry", "QUEUED"), 0) >= 1, by
    ex = api.query("SELECT max(execution_number) AS most, count(*) AS n FROM iot.ota_executions WHERE job_id = 'rate-1'")
    assert ex == [{"most": 2, "n": 60}]
    # "Failure rate per firmware version per hour" is one query.
    rows = api.query(
        "SELECT date_bin(INTERVAL '1 hour', e.time) AS hour, f.version, "
        "avg(CASE WHEN e.status = 'FAILED' THEN 1.0 ELSE 0.0 END) AS failure_rate, count(*) AS n "
        "FROM iot.ota_events e JOIN iot.firmware f ON f.id = e.firmware_id "
        "WHERE e.status IN ('SUCCEEDED', 'FAILED') GROUP BY 1, 2 ORDER BY 1")
    assert {r["version"] for r in rows} == {"1.0.0"}
    assert sum(r["n"] for r in rows) == by.get(("device", "SUCCEEDED"), 0) + by.get(("device", "FAILED"), 0)
    overall = sum(r["failure_rate"] * r["n"] for r in rows) / sum(r["n"] for r in rows)
    assert 0 < overall < 1, rows


def test_waves_wait_for_their_threshold_and_an_approval(server):
    s = server
    p = loadgen(s, "wave", 20, "--work-ms", "50", idle_exit=0, duration=40)
    try:
        create(s, job_id="waves-1", document={"cfg": 1}, targets={"where": "device_id LIKE 'wave\\_%' ESCAPE '\\'"},
               rollout={"waves": [{"percent": 25, "success_threshold_percent": 100, "approval": True},
                                  {"percent": 100}]})
        j = wait_for(lambda: (lambda j: j if j["counts"]["SUCCEEDED"] == 5 else None)(job(s, "waves-1")), "wave 1")
        time.sleep(1.5)
        j = job(s, "waves-1")
        assert (j["released"], j["rollout_state"], j["counts"]["SUCCEEDED"]) == (5, "waiting for approval", 5)
        r = Sql(s.http_port).request("POST", "/api/v1/jobs/waves-1/approve")
        assert r.status == 200, r.body
        j = wait_for(lambda: (lambda j: j if j["status"] == "COMPLETED" else None)(job(s, "waves-1")), "wave 2")
        assert (j["released"], j["counts"]["SUCCEEDED"], j["approved_waves"]) == (20, 20, 1)
        assert Sql(s.http_port).request("POST", "/api/v1/jobs/waves-1/approve").status == 409
    finally:
        p.kill()


def test_the_abort_threshold_cancels_the_queued_rest(server):
    s, api = server, Sql(server.http_port)
    p = loadgen(s, "abort", 40, "--fail", "60", "--work-ms", "50")
    create(s, job_id="abort-1", document={"cfg": 2}, targets={"where": "device_id LIKE 'abort\\_%' ESCAPE '\\'"},
           rollout={"max_per_minute": 300},
           abort=[{"failure_type": "FAILED", "min_executed": 5, "threshold_percent": 30}])
    finish(p)
    j = job(s, "abort-1")
    assert j["status"] == "CANCELED" and j["abort_reason"].startswith("abort:"), j
    assert 5 <= j["released"] < 40, j
    assert j["counts"]["QUEUED"] == 0 and j["counts"]["IN_PROGRESS"] == 0
    n = api.query("SELECT count(*) AS n FROM iot.ota_executions WHERE job_id = 'abort-1'")[0]["n"]
    assert n == j["released"], "devices past the abort were never notified"


def test_kill_9_mid_rollout_resumes_with_no_execution_lost_or_duplicated(server):
    s, api = server, Sql(server.http_port)
    p = loadgen(s, "kill", 50, "--work-ms", "300", idle_exit=0, duration=30)
    create(s, job_id="kill-1", document={"cfg": 3}, targets={"where": "device_id LIKE 'kill\\_%' ESCAPE '\\'"},
           rollout={"max_per_minute": 600})
    wait_for(lambda: job(s, "kill-1")["released"] >= 15, "a third released")
    s.restart(hard=True)
    p.kill()
    p.wait()
    j = job(s, "kill-1")
    assert 15 <= j["released"] < 50, j
    p = loadgen(s, "kill", 50, "--work-ms", "50")
    finish(p)
    j = wait_for(lambda: (lambda j: j if j["status"] == "COMPLETED" else None)(job(s, "kill-1")), "completes")
    assert (j["released"], j["counts"]["SUCCEEDED"]) == (50, 50), j
    rows = api.query("SELECT device_id, count(*) AS n FROM iot.ota_events WHERE job_id = 'kill-1' "
                     "AND reason = 'targeted' GROUP BY device_id")
    assert len(rows) == 50 and all(r["n"] == 1 for r in rows), "each device notified once"
    ex = api.query("SELECT status, max(execution_number) AS most, count(*) AS n FROM iot.ota_executions "
                   "WHERE job_id = 'kill-1' GROUP BY status")
    assert ex == [{"status": "SUCCEEDED", "most": 1, "n": 50}]
