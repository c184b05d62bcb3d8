"""Jobs with the real AWS IoT Device SDK for Python v2 (PyPI `awsiotsdk`, its V2 `iotjobs` client) as
the device: mutual TLS with a device certificate, `endpoint="localhost"` (SNI), MQTT 3.1.1 and 5. The
V2 client subscribes wildcard reply topics around every request and matches replies by
`clientToken`; its streams are `notify` and `notify-next`. Jobs are created over REST; a firmware
job's document carries a download URL with a per-execution token, fetched here with `Range`."""

import base64
import datetime
import hashlib
import http.client
import json
import queue
import subprocess
import threading
import time
import urllib.parse
from types import SimpleNamespace

import pytest
from awscrt import mqtt_request_response
from awsiot import ServiceStreamOptions, iotjobs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.client import MQTTv5, MQTTv311

import pki
from awsdev import TIMEOUT, Device, refused
from conftest import MastServer, mast_bin
from mqttc import Peer
from sqlc import Sql

THINGS = ["meter-v311", "meter-v5", "meter-off", "meter-a", "meter-b"]


@pytest.fixture
def fleet(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = pki.make_ca(d, "fleet-ca")
    signer = ed25519.Ed25519PrivateKey.generate()
    tls = {"cert": None, "key": None, "client_ca": ca.cert_path, "require_client_cert": True}
    server_cert = pki.issue(ca, d, "server", "localhost", server=True)
    tls["cert"], tls["key"] = server_cert.cert_path, server_cert.key_path
    s = MastServer(tmp_path / "mast", tls=tls)
    pem = signer.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with open(s.config, "a") as f:
        f.write(f'[[ota.signing_keys]]\nid = "release"\npublic_key = """\n{pem}"""\n')
    s.start()
    yield SimpleNamespace(server=s, ca=ca, signer=signer, api=Sql(s.http_port),
                          devices={t: pki.issue(ca, d, t, t) for t in THINGS})
    s.kill()


def device(fleet, version, thing):
    c = fleet.devices[thing]
    dev = Device(version, fleet.server.tls_port, c.cert_path, c.key_path, fleet.ca.cert_path, thing)
    options = mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4, max_streaming_subscriptions=2, operation_timeout_in_seconds=TIMEOUT)
    dev.jobs = iotjobs.IotJobsClientV2(dev.conn, options)
    return dev


class Streams:
    """The device's notify and notify-next streams, open (their SUBACKs came)."""

    def __init__(self, dev, thing):
        self.notify, self.next = queue.Queue(), queue.Queue()
        up = [threading.Event(), threading.Event()]

        def status(ev):
            def f(e):
                if e.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
                    ev.set()
            return f

        self.streams = [
            dev.jobs.create_job_executions_changed_stream(
                iotjobs.JobExecutionsChangedSubscriptionRequest(thing_name=thing),
                ServiceStreamOptions(incoming_event_listener=self.notify.put, subscription_status_listener=status(up[0]))),
            dev.jobs.create_next_job_execution_changed_stream(
                iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=thing),
                ServiceStreamOptions(incoming_event_listener=self.next.put, subscription_status_listener=status(up[1]))),
        ]
        for s in self.streams:
            s.open()
        assert all(e.wait(TIMEOUT) for e in up), "both streams subscribed"


def upload(fleet, image, version="2.0.0", **params):
    sig = base64.b64encode(fleet.signer.sign(hashlib.sha256(image).digest())).decode()
    q = urllib.parse.urlencode({"name": "meter-fw", "version": version, "signature": sig, "key_id": "release", **params})
    r = fleet.api.request("POST", f"/api/v1/firmware?{q}", image)
    assert r.status == 201, r.body
    return r.json()


def create_job(fleet, **spec):
    r = fleet.api.request("POST", "/api/v1/jobs", json.dumps(spec).encode(), {"Content-Type": "application/json"})
    assert r.status == 201, r.body
    return r.json()


def fetch(url, headers=None):
    """GET `url` with no API token, as a device does."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("GET", f"{u.path}?{u.query}", headers=headers or {})
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    c.close()
    return out


def recent(ts):
    assert isinstance(ts, datetime.datetime)
    assert abs((ts - datetime.datetime.now()).total_seconds()) < 120, "epoch seconds"


@pytest.mark.parametrize("version", ["v311", "v5"])
def test_the_aws_sdk_runs_a_firmware_job_downloads_by_range_verifies_and_succeeds(fleet, version):
    thing = f"meter-{version}"
    dev = device(fleet, version, thing)
    try:
        ev = Streams(dev, thing)
        pending = dev.jobs.get_pending_job_executions(
            iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)).result(TIMEOUT)
        assert (pending.queued_jobs, pending.in_progress_jobs) == ([], [])
        recent(pending.timestamp)

        image = bytes(range(256)) * 2048 + b"tail"  # 512 KiB and a bit
        fw = upload(fleet, image)
        job = create_job(fleet, job_id=f"fw-{version}", firmware=fw["id"], targets={"devices": [thing]},
                         document={"reboot": True})
        assert (job["status"], job["targeted"], job["counts"]["QUEUED"]) == ("IN_PROGRESS", 1, 1)

        nxt = ev.next.get(timeout=TIMEOUT)
        assert (nxt.execution.job_id, nxt.execution.status) == (job["job_id"], "QUEUED")
        assert nxt.execution.job_document["firmware"]["sha256"] == fw["sha256"]
        changed = ev.notify.get(timeout=TIMEOUT)
        assert changed.jobs["QUEUED"][0].job_id == job["job_id"]

        pending = dev.jobs.get_pending_job_executions(
            iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)).result(TIMEOUT)
        assert [j.job_id for j in pending.queued_jobs] == [job["job_id"]] and pending.in_progress_jobs == []
        recent(pending.queued_jobs[0].queued_at)

        started = dev.jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing, status_details={"step": "download"})
        ).result(TIMEOUT)
        e = started.execution
        assert (e.job_id, e.status, e.version_number, e.execution_number) == (job["job_id"], "IN_PROGRESS", 2, 1)
        assert e.status_details == {"step": "download"}
        recent(e.started_at)
        doc = e.job_document
        assert doc["reboot"] is True and doc["operation"] == "firmware_update"
        f = doc["firmware"]
        assert (f["size"], f["sha256"], f["version"]) == (len(image), fw["sha256"], "2.0.0")
        url = f["url"]
        assert "token=" in url and "${" not in url

        # The download drops half way and resumes with Range / If-Range; no API token needed.
        half = len(image) // 2
        status, h, first = fetch(url, {"Range": f"bytes=0-{half - 1}"})
        assert (status, len(first)) == (206, half)
        status, _, rest = fetch(url, {"Range": f"bytes={half}-", "If-Range": h["etag"]})
        assert status == 206
        got = first + rest
        digest = hashlib.sha256(got).digest()
        assert digest.hex() == f["sha256"]
        assert f["signature"]["alg"] == "ed25519"
        fleet.signer.public_key().verify(base64.b64decode(f["signature"]["value"]), digest)  # raises if bad
        # A token for another artifact, a forged one, or one changed in any part: refused.
        assert fetch(url.replace("token=", "token=00"))[0] == 403
        assert fetch(url.replace("expires=", "expires=9"))[0] == 403
        assert fetch(url.split("?")[0])[0] == 200, "an open server still serves the API without a token"

        # No notify when QUEUED becomes IN_PROGRESS (the pending list is the same).
        assert ev.notify.empty() and ev.next.empty()

        described = dev.jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id=job["job_id"])).result(TIMEOUT)
        assert described.execution.status == "IN_PROGRESS" and described.execution.job_document["reboot"] is True

        err = refused(dev.jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id=job["job_id"], status="IN_PROGRESS", expected_version=1)))
        assert err.code == "VersionMismatch"
        assert (err.execution_state.version_number, err.execution_state.status) == (2, "IN_PROGRESS")

        up = dev.jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id=job["job_id"], status="IN_PROGRESS", expected_version=2,
            status_details={"step": "install"}, include_job_execution_state=True)).result(TIMEOUT)
        assert (up.execution_state.version_number, up.execution_state.status_details) == (3, {"step": "install"})

        done = dev.jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id=job["job_id"], status="SUCCEEDED",
            status_details={"result_code": "ok"})).result(TIMEOUT)
        assert done.execution_state is None and done.job_document is None
        recent(done.timestamp)
        nxt = ev.next.get(timeout=TIMEOUT)
        assert nxt.execution is None and nxt.timestamp is not None
        changed = ev.notify.get(timeout=TIMEOUT)
        assert not changed.jobs

        err = refused(dev.jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id=job["job_id"], status="IN_PROGRESS")))
        assert err.code == "InvalidStateTransition" and err.execution_state.status == "SUCCEEDED"
        err = refused(dev.jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id=job["job_id"])))
        assert err.code == "TerminalStateReached"
        err = refused(dev.jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id="no-such-job", status="SUCCEEDED")))
        assert err.code == "ResourceNotFound"
        started = dev.jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing)).result(TIMEOUT)
        assert started.execution is None, "nothing pending: accepted, no execution"
    finally:
        dev.close()

    got = fleet.api.request("GET", f"/api/v1/jobs/{job['job_id']}").json()
    assert got["status"] == "COMPLETED" and got["counts"]["SUCCEEDED"] == 1 and got["completed_at"]
    rows = fleet.api.query(
        f"SELECT status, version_number, execution_number, retries, result_code FROM iot.ota_executions "
        f"WHERE job_id = '{job['job_id']}'")
    assert rows == [{"status": "SUCCEEDED", "version_number": 4, "execution_number": 1, "retries": 0,
                     "result_code": "ok"}]
    rows = fleet.api.query(
        f"SELECT status, previous_status, reason FROM iot.ota_events WHERE device_id = '{thing}' ORDER BY time")
    assert [(r["previous_status"], r["status"], r["reason"]) for r in rows] == [
        ("", "QUEUED", "targeted"), ("QUEUED", "IN_PROGRESS", "start-next"),
        ("IN_PROGRESS", "IN_PROGRESS", "device"), ("IN_PROGRESS", "SUCCEEDED", "device")]
    rows = fleet.api.query(f"SELECT status, succeeded, queued, targeted FROM iot.ota_jobs WHERE job_id = '{job['job_id']}'")
    assert rows == [{"status": "COMPLETED", "succeeded": 1, "queued": 0, "targeted": 1}]
    # The firmware can be deleted once no job in progress uses it.
    assert fleet.api.request("DELETE", f"/api/v1/firmware/{fw['id']}").status == 204


def test_a_device_offline_when_the_job_came_gets_notify_next_when_it_returns(fleet):
    thing = "meter-off"
    # Known to the registry, never connected.
    r = fleet.api.request("PUT", f"/api/v1/devices/{thing}", b'{"device_type": "meter"}')
    assert r.status in (200, 201), r.body
    fw = upload(fleet, b"image" * 1000, version="3.0.0", device_type="meter")
    job = create_job(fleet, firmware=fw["id"], targets={"devices": [thing]})
    assert job["job_id"].startswith("job-") and job["counts"]["QUEUED"] == 1
    # A firmware in use by a job in progress is not deleted.
    r = fleet.api.request("DELETE", f"/api/v1/firmware/{fw['id']}")
    assert r.status == 409 and job["job_id"] in r.json()["error"]

    fleet.server.restart(hard=True)  # kill -9: the job and its execution are on disk
    dev = device(fleet, "v5", thing)
    try:
        ev = Streams(dev, thing)
        nxt = ev.next.get(timeout=TIMEOUT)
        assert (nxt.execution.job_id, nxt.execution.status) == (job["job_id"], "QUEUED")
        assert "token=" in nxt.execution.job_document["firmware"]["url"]
        with pytest.raises(queue.Empty):
            ev.next.get(timeout=1)
    finally:
        dev.close()
    # It starts the job, and reboots mid-update: the new connection is told where it was, once.
    dev = device(fleet, "v311", thing)
    try:
        ev = Streams(dev, thing)
        assert ev.next.get(timeout=TIMEOUT).execution.status == "QUEUED"
        dev.jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing)).result(TIMEOUT)
    finally:
        dev.close()
    dev = device(fleet, "v5", thing)
    try:
        ev = Streams(dev, thing)
        nxt = ev.next.get(timeout=TIMEOUT)
        assert (nxt.execution.job_id, nxt.execution.status, nxt.execution.version_number) == \
            (job["job_id"], "IN_PROGRESS", 2)
        with pytest.raises(queue.Empty):
            ev.next.get(timeout=1.5)
        d = dev.jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id="$next")).result(TIMEOUT)
        assert d.execution.job_id == job["job_id"]
    finally:
        dev.close()


def raw(fleet, thing, version=MQTTv5):
    c = fleet.devices[thing]
    p = Peer(fleet.server.tls_port, version, thing, host="localhost",
             tls={"ca_certs": str(fleet.ca.cert_path), "certfile": str(c.cert_path), "keyfile": str(c.key_path)})
    p.connect()
    known(fleet, thing)
    return p


def known(fleet, thing):
    """Waits until the registry has the device's presence record (written just after CONNECT)."""
    deadline = time.monotonic() + TIMEOUT
    while fleet.api.request("GET", f"/api/v1/devices/{thing}").status != 200:
        assert time.monotonic() < deadline, f"{thing} never registered"
        time.sleep(0.05)


def ask(peer, thing, path, body):
    """A request without a subscription to its replies (as the embedded OTA agent asks)."""
    peer.publish(f"$aws/things/{thing}/jobs/{path}", json.dumps(body) if body is not None else b"not json", qos=1)
    m = peer.expect(1)[0]
    return m.topic.rsplit("/", 1)[-1], json.loads(m.payload)


def test_replies_need_no_subscription_and_only_the_thing_asks(fleet):
    a, b = raw(fleet, "meter-a"), raw(fleet, "meter-b", MQTTv311)
    try:
        job = create_job(fleet, job_id="cfg-1", document={"set": {"interval": 30}},
                         targets={"devices": ["meter-a", "meter-b"]},
                         retries=[{"failure_type": "FAILED", "number_of_retries": 1}])
        assert job["targeted"] == 2
        kind, doc = ask(a, "meter-a", "get", {"clientToken": "t1"})
        assert kind == "accepted" and doc["clientToken"] == "t1"
        assert [j["jobId"] for j in doc["queuedJobs"]] == ["cfg-1"] and isinstance(doc["timestamp"], int)
        # Another thing's topics: refused, to the asker alone.
        kind, doc = ask(a, "meter-b", "get", {"clientToken": "t2"})
        assert (kind, doc["code"], doc["clientToken"]) == ("rejected", "InvalidRequest", "t2")
        kind, doc = ask(a, "meter-a", "cfg-1/delete", {})
        assert (kind, doc["code"]) == ("rejected", "InvalidTopic")
        kind, doc = ask(a, "meter-a", "cfg-1/update", None)
        assert (kind, doc["code"]) == ("rejected", "InvalidJson")
        kind, doc = ask(a, "meter-a", "cfg-1/update", {"status": "CANCELED"})
        assert (kind, doc["code"]) == ("rejected", "InvalidRequest")
        # Lenient numbers, as AWS's own examples quote expectedVersion.
        kind, doc = ask(a, "meter-a", "cfg-1/update", {"status": "IN_PROGRESS", "expectedVersion": "1",
                                                       "includeJobExecutionState": True})
        assert kind == "accepted" and doc["executionState"]["versionNumber"] == 2
        # Only the server publishes replies and events.
        assert a.publish("$aws/things/meter-a/jobs/notify-next", b"{}", qos=1) == 0x87
        # FAILED with a retry left: a new attempt, execution number 2, QUEUED again.
        kind, _ = ask(a, "meter-a", "cfg-1/update", {"status": "FAILED", "statusDetails": {"result_code": "E42"}})
        assert kind == "accepted"
        kind, doc = ask(a, "meter-a", "$next/get", {})
        assert (doc["execution"]["jobId"], doc["execution"]["executionNumber"], doc["execution"]["status"]) == \
            ("cfg-1", 2, "QUEUED")
        kind, _ = ask(a, "meter-a", "cfg-1/update", {"status": "FAILED"})
        kind, doc = ask(a, "meter-a", "$next/get", {})
        assert kind == "accepted" and "execution" not in doc, "one retry only"
        # meter-b rejects: never retried.
        kind, _ = ask(b, "meter-b", "cfg-1/update", {"status": "REJECTED"})
        assert kind == "accepted"
        got = fleet.api.request("GET", "/api/v1/jobs/cfg-1").json()
        assert (got["status"], got["counts"]["FAILED"], got["counts"]["REJECTED"]) == ("COMPLETED", 1, 1)
        ex = fleet.api.request("GET", "/api/v1/jobs/cfg-1/executions").json()["executions"]
        assert sorted((e["device_id"], e["status"], e["retries"]) for e in ex) == \
            [("meter-a", "FAILED", 1), ("meter-b", "REJECTED", 0)]
        rows = fleet.api.query("SELECT status, count(*) AS n FROM iot.ota_events WHERE job_id = 'cfg-1' "
                               "GROUP BY status ORDER BY status")
        assert rows == [{"status": "FAILED", "n": 2}, {"status": "IN_PROGRESS", "n": 1},
                        {"status": "QUEUED", "n": 3}, {"status": "REJECTED", "n": 1}]
    finally:
        a.close()
        b.close()


def test_cancel_leaves_running_executions_unless_forced_and_survives_kill_9(fleet):
    a = raw(fleet, "meter-a")
    raw(fleet, "meter-b").close()  # known to the registry
    try:
        create_job(fleet, job_id="long-1", document={"x": 1}, targets={"devices": ["meter-a", "meter-b"]})
        kind, doc = ask(a, "meter-a", "start-next", {"stepTimeoutInMinutes": 30})
        assert kind == "accepted" and doc["execution"]["status"] == "IN_PROGRESS"
        assert 0 < doc["execution"]["approximateSecondsBeforeTimedOut"] <= 1800
        a.drain()
        r = fleet.api.request("POST", "/api/v1/jobs/long-1/cancel")
        assert r.status == 200, r.body
        got = r.json()
        assert (got["status"], got["counts"]["CANCELED"], got["counts"]["IN_PROGRESS"]) == ("CANCELED", 1, 1)
        assert fleet.api.request("POST", "/api/v1/jobs/long-1/cancel").status == 409
        assert fleet.api.request("POST", "/api/v1/jobs/nope/cancel").status == 404
        a.close()
        fleet.server.restart(hard=True)
        a = raw(fleet, "meter-a")
        kind, doc = ask(a, "meter-a", "long-1/get", {})
        assert doc["execution"]["status"] == "IN_PROGRESS" and doc["execution"]["versionNumber"] == 2
        r = fleet.api.request("POST", "/api/v1/jobs/long-1/cancel?force=true")
        assert r.status == 200 and r.json()["counts"]["CANCELED"] == 2
        kind, doc = ask(a, "meter-a", "long-1/update", {"status": "SUCCEEDED"})
        assert (kind, doc["code"], doc["executionState"]["status"]) == ("rejected", "InvalidStateTransition", "CANCELED")
        for bad in ({"targets": {"devices": ["nobody"]}, "document": {}},
                    {"targets": {"groups": ["nogroup"]}, "document": {}},
                    {"targets": {"devices": ["meter-a"]}, "firmware": "fw-0000000000000000"},
                    {"targets": {"devices": ["meter-a"]}, "document": {}, "surprise": 1},
                    {"job_id": "long-1", "targets": {"devices": ["meter-a"]}, "document": {}}):
            r = fleet.api.request("POST", "/api/v1/jobs", json.dumps(bad).encode())
            assert r.status in (400, 404, 409) and "error" in r.json(), (bad, r.status, r.body)
    finally:
        a.close()


def test_continuous_jobs_reach_devices_that_join_and_firmware_skips_misfits(fleet):
    api = fleet.api
    for d, t in (("meter-a", "meter"), ("meter-b", "pump")):
        assert api.request("PUT", f"/api/v1/devices/{d}", json.dumps({"device_type": t}).encode()).status in (200, 201)
    assert api.request("PUT", "/api/v1/groups/site-1", b'{"devices": []}').status in (200, 201)
    fw = upload(fleet, b"m" * 4096, version="4.0.0", device_type="meter")
    job = create_job(fleet, job_id="site-fw", firmware=fw["id"], targets={"groups": ["site-1"]},
                     target_selection="continuous")
    assert job["targeted"] == 0 and job["status"] == "IN_PROGRESS"
    a, b = raw(fleet, "meter-a"), raw(fleet, "meter-b")
    try:
        a.subscribe("$aws/things/meter-a/jobs/notify-next", qos=1)
        # Another client listening on meter-a's topics hears nothing of its jobs (no ACL here).
        b.subscribe("$aws/things/+/jobs/#", qos=1)
        for d in ("meter-a", "meter-b"):
            assert api.request("PUT", f"/api/v1/groups/site-1/devices/{d}").status in (200, 201, 204)
        m = a.expect(1, timeout=15)[0]
        doc = json.loads(m.payload)
        assert doc["execution"]["jobId"] == "site-fw"
        got = api.request("GET", "/api/v1/jobs/site-fw").json()
        assert (got["targeted"], got["counts"]["QUEUED"]) == (1, 1), "the pump does not take meter firmware"
        assert got["incompatible"] == 1
        assert b.drain(1) == [], "notifications reach the thing alone"
        # It leaves the group before starting: its execution is REMOVED and it is told.
        assert api.request("DELETE", "/api/v1/groups/site-1/devices/meter-a").status in (200, 204)
        doc = json.loads(a.expect(1, timeout=15)[0].payload)
        assert "execution" not in doc
        got = api.request("GET", "/api/v1/jobs/site-fw").json()
        assert (got["counts"]["REMOVED"], got["counts"]["QUEUED"]) == (1, 0)
        # It comes back: a new attempt.
        assert api.request("PUT", "/api/v1/groups/site-1/devices/meter-a").status in (200, 201, 204)
        doc = json.loads(a.expect(1, timeout=15)[0].payload)
        assert (doc["execution"]["jobId"], doc["execution"]["executionNumber"]) == ("site-fw", 2)
        rows = api.query("SELECT reason, status FROM iot.ota_events WHERE job_id = 'site-fw' ORDER BY time")
        assert [(r["reason"], r["status"]) for r in rows] == [
            ("targeted", "QUEUED"), ("left the targets", "REMOVED"), ("rejoined", "QUEUED")]
    finally:
        a.close()
        b.close()


def test_firmware_in_blocks_over_mqtt_and_a_retry_fetches_only_the_missing_ones(fleet):
    image = bytes((i * 7) % 251 for i in range(5000))
    fw = upload(fleet, image, version="5.0.0")
    a, b = raw(fleet, "meter-a"), raw(fleet, "meter-b")
    try:
        create_job(fleet, job_id="blocks-1", firmware=fw["id"], targets={"devices": ["meter-a"]})
        kind, doc = ask(a, "meter-a", "start-next", {})
        assert doc["execution"]["jobDocument"]["firmware"]["stream"] == fw["id"]
        get = f"$aws/things/meter-a/streams/{fw['id']}/get/json"

        def blocks(peer, body, n):
            peer.publish(get if peer is a else get.replace("meter-a", "meter-b"), json.dumps(body), qos=1)
            return [json.loads(m.payload) for m in peer.expect(n)]

        got = blocks(a, {"c": "r1", "f": 0, "l": 1024, "o": 0, "n": 3}, 3)
        assert [(m["i"], m["o"], m["l"], m["c"]) for m in got] == [(0, 0, 1024, "r1"), (1, 1024, 1024, "r1"),
                                                                   (2, 2048, 1024, "r1")]
        parts = {m["i"]: base64.b64decode(m["p"]) for m in got}
        # "Lost" block 1; the retry asks for 1, 3 and 4 only, by bitmap from block 0.
        del parts[1]
        bitmap = base64.b64encode(bytes([0b0001_1010])).decode()
        got = blocks(a, {"c": "r2", "l": 1024, "o": 0, "n": 8, "b": bitmap}, 3)
        assert [m["i"] for m in got] == [1, 3, 4] and got[-1]["l"] == 5000 - 4096
        assert a.drain(0.5) == [], "nothing more than asked"
        parts.update({m["i"]: base64.b64decode(m["p"]) for m in got})
        whole = b"".join(parts[i] for i in sorted(parts))
        assert hashlib.sha256(whole).hexdigest() == fw["sha256"]
        # Refusals: a device with no job for it, a bad block size, another thing's topic.
        r = blocks(b, {"c": "x", "l": 1024}, 1)[0]
        assert (r["o"], r["c"]) == ("ResourceNotFound", "x")
        r = blocks(a, {"l": 16}, 1)[0]
        assert r["o"] == "InvalidRequest"
        b.publish(get, json.dumps({"l": 1024}), qos=1)
        r = json.loads(b.expect(1)[0].payload)
        assert r["o"] == "Unauthorized"
        assert a.publish(f"$aws/things/meter-a/streams/{fw['id']}/data/json", b"{}", qos=1) == 0x87
        # Done: the stream closes with the job.
        ask(a, "meter-a", "blocks-1/update", {"status": "SUCCEEDED"})
        assert blocks(a, {"l": 1024}, 1)[0]["o"] == "ResourceNotFound"
    finally:
        a.close()
        b.close()


def test_a_device_that_rolls_back_shows_failed_and_its_old_version(fleet):
    thing = "meter-a"
    a = raw(fleet, thing)
    try:
        fw = upload(fleet, b"new" * 999, version="6.0.0")
        create_job(fleet, job_id="rb-1", firmware=fw["id"], targets={"devices": [thing]})
        ask(a, thing, "start-next", {})
        # It installs, reboots into 6.0.0, fails its self-test, and boots 1.0.0 again.
        a.close()
        a = raw(fleet, thing)
        a.publish(f"$aws/things/{thing}/shadow/update", json.dumps(
            {"state": {"reported": {"firmware_version": "1.0.0"}}}), qos=1)
        a.drain(0.5)
        kind, _ = ask(a, thing, "rb-1/update", {"status": "FAILED", "statusDetails": {
            "result_code": "rolled_back", "running_version": "1.0.0", "reason": "self-test: sensor bus"}})
        assert kind == "accepted"
    finally:
        a.close()
    rows = fleet.api.query("SELECT e.status, e.result_code, e.running_version, d.firmware_version "
                           "FROM iot.ota_executions e JOIN iot.devices d ON d.device_id = e.device_id "
                           "WHERE e.job_id = 'rb-1'")
    assert rows == [{"status": "FAILED", "result_code": "rolled_back", "running_version": "1.0.0",
                     "firmware_version": "1.0.0"}]


def test_mast_jobs_on_the_command_line(fleet, tmp_path):
    raw(fleet, "meter-a").close()
    env = {**__import__("os").environ, "MAST_SERVER": f"http://127.0.0.1:{fleet.server.http_port}"}

    def mast(*args, ok=True):
        p = subprocess.run([str(mast_bin()), "jobs", *args], capture_output=True, text=True, env=env, timeout=60)
        assert (p.returncode == 0) == ok, p.stderr
        return p.stdout if ok else p.stderr

    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"document": {"op": "reboot"}, "targets": {"devices": ["nobody"]}}))
    out = json.loads(mast("create", "--spec", str(spec), "--job-id", "cli-1", "--device", "meter-a",
                          "--max-per-minute", "100"))
    assert (out["job_id"], out["targeted"], out["rollout"]["max_per_minute"]) == ("cli-1", 1, 100)
    lines = mast("list").splitlines()
    assert lines[0].split()[:3] == ["JOB", "STATUS", "TARGETED"] and lines[1].split()[:3] == ["cli-1", "IN_PROGRESS", "1"]
    assert json.loads(mast("show", "cli-1"))["counts"]["QUEUED"] == 1
    assert "meter-a" in mast("executions", "cli-1")
    assert "CANCELED" in mast("cancel", "cli-1")
    assert "waits for no approval" in mast("approve", "cli-1", ok=False)
    assert "nobody" in mast("create", "--device", "nobody", "--document", "{}", ok=False)


def test_a_scheduled_job_waits_for_its_start_and_its_maintenance_window(fleet):
    raw(fleet, "meter-a").close()
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now + datetime.timedelta(seconds=3)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    create_job(fleet, job_id="later-1", document={"x": 1}, targets={"devices": ["meter-a"]},
               rollout={"schedule": {"start_at": start.strftime(fmt)}})
    j = fleet.api.request("GET", "/api/v1/jobs/later-1").json()
    assert (j["released"], j["rollout_state"]) == (0, "scheduled")
    assert j["rollout"]["schedule"]["start_at"].startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))
    deadline = time.monotonic() + TIMEOUT
    while fleet.api.request("GET", "/api/v1/jobs/later-1").json()["released"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert datetime.datetime.now(datetime.timezone.utc) >= start
    # A window that opens in two hours: nothing is released now.
    opens = now + datetime.timedelta(hours=2)
    create_job(fleet, job_id="window-1", document={"x": 2}, targets={"devices": ["meter-a"]},
               rollout={"schedule": {"maintenance_windows": [
                   {"start": opens.strftime("%H:%M"), "duration_minutes": 30}]}})
    time.sleep(2.5)
    j = fleet.api.request("GET", "/api/v1/jobs/window-1").json()
    assert (j["released"], j["rollout_state"]) == (0, "outside a maintenance window")
    r = fleet.api.request("POST", "/api/v1/jobs", json.dumps(
        {"document": {}, "targets": {"devices": ["meter-a"]},
         "rollout": {"schedule": {"maintenance_windows": [{"start": "25:00", "duration_minutes": 5}]}}}).encode())
    assert r.status == 400 and "maintenance_windows" in r.json()["error"]
