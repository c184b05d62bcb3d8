"""Telemetry ingest end to end with independent clients (paho-mqtt 3.1.1 and 5.0, mosquitto_pub):
what devices publish on devices/{id}/telemetry[/{table}] is stored with the right types and
timestamps, refusals get their reason code and a message on devices/{id}/errors, and
acknowledged points survive kill -9. Stored rows are read back with `mast export` after the
server stops (the SQL API is not there yet)."""

import json
import shutil
import subprocess
import time

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311

from mqttc import pub_props

PAHO = {"v311": MQTTv311, "v5": MQTTv5}
TS = 1_700_000_000_000  # ms


@pytest.fixture(params=list(PAHO), ids=list(PAHO))
def v(request):
    return request.param


def by_time(rows):
    return sorted(rows, key=lambda r: (r["device_id"], r["time"]))


def test_paho_json_shapes_are_stored_with_types_and_timestamps(mast, peers, v):
    dev = peers(mast.port, PAHO[v], f"dev-{v}")
    dev.connect()
    before = time.time_ns()
    assert dev.publish(f"devices/dev-{v}/telemetry", json.dumps({"temp": 21.5, "ok": True, "state": "idle", "gone": None}), qos=1) == 0
    after = time.time_ns()
    assert dev.publish(f"devices/dev-{v}/telemetry", json.dumps({"ts": TS, "values": {"temp": 22.0}}), qos=1) == 0
    batch = [
        {"ts": "2023-11-14T22:13:21.250+00:00", "values": {"temp": 23.5, "ok": False}},
        {"ts": TS + 2000, "values": {"temp": 24.5}},
    ]
    assert dev.publish(f"devices/dev-{v}/telemetry", json.dumps(batch), qos=2) == 0
    assert dev.publish(f"devices/dev-{v}/telemetry/engine", json.dumps({"rpm": 900}), qos=1) == 0
    dev.disconnect()
    assert mast.stop() == 0
    rows = by_time(mast.export("telemetry"))
    assert len(rows) == 4, rows
    assert [r["time"] for r in rows[:3]] == [TS * 10**6, (TS + 1250) * 10**6, (TS + 2000) * 10**6]
    assert [r["temp"] for r in rows] == [22.0, 23.5, 24.5, 21.5]
    assert isinstance(rows[0]["temp"], float)
    assert rows[1]["ok"] is False and "ok" not in rows[2]
    live = rows[3]
    assert before <= live["time"] <= after, (before, live["time"], after)
    assert live["ok"] is True and live["state"] == "idle" and "gone" not in live
    assert all(r["device_id"] == f"dev-{v}" for r in rows)
    engine = mast.export("engine")
    assert [(r["device_id"], r["rpm"]) for r in engine] == [(f"dev-{v}", 900.0)]


def test_paho_line_protocol_batches_keep_their_types(mast, peers, v):
    dev = peers(mast.port, PAHO[v], "gw-line")
    dev.connect()
    lines = "\n".join([
        "# telegraf",
        'cpu,host=a usage=12.5,cores=8i,ok=true,model="x86" 1700000000000000000',
        "cpu,host=b usage=50,cores=16i,ok=F 1700000001000000000",
        "mem,host=a used=1024u 1700000000000000000",
    ])
    assert dev.publish("devices/gw-line/telemetry", lines, qos=1) == 0
    if v == "v5":
        # The content type decides: this payload would otherwise be taken for JSON.
        props = pub_props(ContentType="text/plain; format=line")
        assert dev.publish("devices/gw-line/telemetry/forced", "{x} y=1i 5", qos=1, properties=props) == 0
    dev.disconnect()
    assert mast.stop() == 0
    cpu = sorted(mast.export("cpu"), key=lambda r: r["host"])
    assert [(r["host"], r["usage"], r["cores"], r["ok"], r["time"]) for r in cpu] == [
        ("a", 12.5, 8, True, 1_700_000_000_000_000_000),
        ("b", 50.0, 16, False, 1_700_000_001_000_000_000),
    ]
    assert cpu[0]["model"] == "x86" and isinstance(cpu[0]["cores"], int)
    assert [(r["device_id"], r["used"]) for r in mast.export("mem")] == [("gw-line", 1024)]
    if v == "v5":
        assert [(r["y"], r["time"]) for r in mast.export("forced")] == [(1, 5)]


def test_paho_refusals_get_reason_codes_and_error_messages(mast, peers, v):
    watcher = peers(mast.port, MQTTv5, "watcher")
    watcher.connect()
    watcher.subscribe("devices/+/errors", 1)
    dev = peers(mast.port, PAHO[v], "d7")
    dev.connect()
    ok = lambda code: code if v == "v5" else 0  # 3.1.1 has no negative PUBACK
    assert dev.publish("devices/d7/telemetry", '{"t": 1.5}', qos=1) == 0
    assert dev.publish("devices/d7/telemetry", '{"t": ', qos=1) == ok(0x99)
    assert dev.publish("devices/d7/telemetry", '{"t": "hot"}', qos=1) == ok(0x99)
    assert dev.publish("devices/other/telemetry", '{"t": 3}', qos=1) == ok(0x87)
    assert dev.publish("devices/d7/telemetry/a/b", '{"t": 3}', qos=1) == ok(0x90)
    assert dev.publish("devices/d7/telemetry", '{"t": 2.5}', qos=1) == 0
    errors = [json.loads(m.payload) for m in watcher.expect(4)]
    assert [(e["code"], e["topic"]) for e in errors] == [
        (0x99, "devices/d7/telemetry"),
        (0x99, "devices/d7/telemetry"),
        (0x87, "devices/other/telemetry"),
        (0x90, "devices/d7/telemetry/a/b"),
    ]
    assert "JSON at byte" in errors[0]["error"] and "float64" in errors[1]["error"]
    assert all(e["reason"] and isinstance(e["packet_id"], int) for e in errors)
    dev.disconnect()
    watcher.disconnect()
    assert mast.stop() == 0
    assert [r["t"] for r in by_time(mast.export("telemetry"))] == [1.5, 2.5]


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_pub_lines_and_files_are_stored(mast, tmp_path):
    # -l: one message per stdin line (Telegraf-style single lines)
    lines = "".join(f"env,room=r{i % 2} temp={20 + i}.5,hum={40 + i}i {1_700_000_000 + i}000000000\n" for i in range(20))
    out = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mast.port), "-i", "sensor-1", "-q", "1",
         "-t", "devices/sensor-1/telemetry", "-l"],
        input=lines, capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    # -f: one message holding a JSON batch
    f = tmp_path / "batch.json"
    f.write_text(json.dumps([{"ts": TS + i, "values": {"level": i / 4}} for i in range(100)]))
    out = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mast.port), "-i", "sensor-2", "-q", "2",
         "-V", "mqttv5", "-t", "devices/sensor-2/telemetry/tank", "-f", str(f)],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert mast.stop() == 0
    env = sorted(mast.export("env"), key=lambda r: r["time"])
    assert len(env) == 20
    assert [(r["room"], r["temp"], r["hum"]) for r in env[:3]] == [("r0", 20.5, 40), ("r1", 21.5, 41), ("r0", 22.5, 42)]
    assert env[-1]["time"] == 1_700_000_019_000_000_000
    tank = sorted(mast.export("tank"), key=lambda r: r["time"])
    assert [r["level"] for r in tank] == [i / 4 for i in range(100)]
    assert {r["device_id"] for r in tank} == {"sensor-2"}


def test_acknowledged_points_survive_kill_9(mast, peers, v):
    dev = peers(mast.port, PAHO[v], "crashy")
    dev.connect()
    for i in range(200):
        assert dev.publish("devices/crashy/telemetry", json.dumps({"ts": TS + i, "values": {"n": i}}), qos=1) == 0
    dev.drop()
    mast.kill()
    mast.start()
    assert mast.stop() == 0
    rows = [r for r in mast.export("telemetry")]
    assert sorted(r["n"] for r in rows) == [float(i) for i in range(200)]
    assert sorted(r["time"] for r in rows) == [(TS + i) * 10**6 for i in range(200)]


def test_presence_events_are_recorded(mast, peers, v):
    dev = peers(mast.port, PAHO[v], "present")
    dev.connect()
    dev.disconnect()
    # DISCONNECT has no answer: give the server a moment to handle it before the next
    # connection of the same client id (else that one takes the session over first).
    time.sleep(0.3)
    dev2 = peers(mast.port, PAHO[v], "present")
    dev2.connect()
    dev2.drop()
    time.sleep(0.3)
    assert mast.stop() == 0
    events = sorted((r for r in mast.export("iot.device_events") if r["device_id"] == "present"), key=lambda r: r["time"])
    proto = "5.0" if v == "v5" else "3.1.1"
    assert [(e["event"], e.get("reason")) for e in events] == [
        ("connected", None),
        ("disconnected", "client disconnected"),
        ("connected", None),
        ("disconnected", "connection lost"),
    ]
    assert all(e["protocol"] == proto and e["address"].startswith("127.0.0.1:") for e in events)
    assert events[0]["clean_start"] is True and events[0]["keep_alive_secs"] == 30
