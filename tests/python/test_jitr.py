"""Just-in-time registration against `mast serve`: a CA of the customer's own is enrolled over
REST (`POST /api/v1/cas`); a device with a certificate it signed, one Mast never saw, is
registered on its first connect (device id by the CA's rule, the certificate recorded, a
`registered` event in `iot.device_events` and on `$aws/events/certificates/registered/{ca}`);
disabling the CA's enrolment refuses its devices and ends their live connections."""

import json
import time

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311

import pki
from mqttc import Peer
from sqlc import Sql
from test_cert_lifecycle import ADMINISTRATIVE_ACTION, handshake_error
from test_fleet_ca import fleet_server, servers  # noqa: F401 (a fixture)

PAHO = {"v311": MQTTv311, "v5": MQTTv5}


def connect(s, dev, client_id, v):
    p = Peer(s.tls_port, PAHO[v], client_id, host="localhost",
             tls={"ca_certs": str(s.data_dir / "ca" / "ca.crt"), "certfile": str(dev.cert_path),
                  "keyfile": str(dev.key_path)})
    p.connect()
    return p


def until(what, check, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.parametrize("v", list(PAHO))
def test_a_device_of_an_enrolled_ca_registers_on_first_connect(tmp_path, servers, password_hash, v):
    s = fleet_server(tmp_path, servers, password_hash, reload_interval_secs=1)
    api = Sql(s.http_port)
    d = tmp_path / "customer"
    d.mkdir()
    customer = pki.make_ca(d, "Customer CA")
    meter = pki.issue(customer, d, "m1", "m1")
    assert "unknown ca" in handshake_error(s, meter.cert_path, meter.key_path), "not trusted before enrolment"

    r = api.request("POST", "/api/v1/cas", body=json.dumps(
        {"certificate": customer.cert_path.read_text(), "device_id": "meter-{CommonName}"}))
    assert r.status == 201, r.body
    ca = r.json()
    assert (ca["enrolment"], ca["device_id"], ca["common_name"]) == ("enabled", "meter-{CommonName}", "Customer CA")
    assert api.request("POST", "/api/v1/cas", body=json.dumps(
        {"certificate": customer.cert_path.read_text()})).status == 409
    until("the enrolled CA trusted", lambda: handshake_error(s, meter.cert_path, meter.key_path) is None)

    ops = Peer(s.port, PAHO[v], "ops-watch").credentials("ops", "ops-pw")
    ops.connect()
    assert ops.subscribe("$aws/events/certificates/registered/+") == [1]
    dev = connect(s, meter, "meter-m1", v)
    assert dev.publish("devices/meter-m1/telemetry", b'{"kwh": 12.5}', qos=1) == 0
    (ev,) = ops.expect(1)
    assert ev.topic == f"$aws/events/certificates/registered/{ca['id']}"
    body = json.loads(ev.payload)
    assert (body["caCertificateId"], body["thingName"], body["certificateStatus"]) == (ca["id"], "meter-m1", "ACTIVE")
    assert isinstance(body["timestamp"], int) and abs(body["timestamp"] - time.time()) < 60

    rows = api.query("SELECT device_id, made, status, ca_id, certificate_id FROM iot.certificates "
                     "JOIN (SELECT device_id AS d, certificate_id FROM iot.device_events "
                     "      WHERE event = 'registered') e ON e.d = device_id")
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["device_id"], row["made"], row["status"], row["ca_id"]) == ("meter-m1", "jitr", "ACTIVE", ca["id"])
    assert api.query("SELECT kwh FROM telemetry WHERE device_id = 'meter-m1'") == [{"kwh": 12.5}]
    assert api.request("GET", "/api/v1/devices/meter-m1").status == 200

    # The certificate names its device: another client id is refused.
    other = Peer(s.tls_port, PAHO[v], "meter-m2", host="localhost",
                 tls={"ca_certs": str(s.data_dir / "ca" / "ca.crt"), "certfile": str(meter.cert_path),
                      "keyfile": str(meter.key_path)})
    code, _, _ = other.connect(check=False)
    assert code != 0

    # Disabled: its devices are refused at once, live connections ended.
    r = api.request("PATCH", f"/api/v1/cas/{ca['id']}", body=json.dumps({"enrolment": "disabled"}))
    assert r.status == 200 and r.json()["enrolment"] == "disabled"
    code = dev.wait_closed(timeout=1.0)
    if v == "v5":
        assert code == ADMINISTRATIVE_ACTION
    dev.close()
    assert handshake_error(s, meter.cert_path, meter.key_path) is not None
    newcomer = pki.issue(customer, d, "m3", "m3")
    assert handshake_error(s, newcomer.cert_path, newcomer.key_path) is not None

    # Enabled again: back in, across a restart.
    r = api.request("PATCH", f"/api/v1/cas/{ca['id']}", body=json.dumps({"enrolment": "enabled"}))
    assert r.status == 200
    s.restart(hard=True)
    dev = connect(s, meter, "meter-m1", v)
    dev.disconnect()
    assert [c["id"] for c in Sql(s.http_port).request("GET", "/api/v1/cas").json()["cas"]] == [ca["id"]]
    ops.close()


def test_enrolment_refusals(tmp_path, servers, password_hash):
    s = fleet_server(tmp_path, servers, password_hash)
    api = Sql(s.http_port)
    d = tmp_path / "customer"
    d.mkdir()
    customer = pki.make_ca(d, "Customer CA")
    leaf = pki.issue(customer, d, "x", "x")
    for body, why in [({"certificate": leaf.cert_path.read_text()}, "not a CA"),
                      ({"certificate": "garbage"}, "certificate"),
                      ({"certificate": customer.cert_path.read_text(), "device_id": "a-{"}, "without"),
                      ({"pem": "x"}, "unknown field"),
                      ({"certificate": customer.cert_path.read_text() + customer.cert_path.read_text()},
                       "exactly one")]:
        r = api.request("POST", "/api/v1/cas", body=json.dumps(body))
        assert r.status == 400 and why in r.error()["error"], (body, r.body)
    assert api.request("GET", "/api/v1/cas/" + "ab" * 32).status == 404
    assert api.request("PATCH", "/api/v1/cas/" + "ab" * 32, body="{}").status == 404
    assert api.request("DELETE", "/api/v1/cas/nothex").status == 400
