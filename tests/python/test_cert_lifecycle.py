"""The certificate registry against `mast serve`: every client certificate Mast accepts is
recorded (REST `/api/v1/certificates`, `iot.certificates`); `mast certs revoke` refuses a
certificate from then on and ends a live connection using it within a second."""

import shutil
import socket
import ssl
import subprocess
import time

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311

from conftest import mast_bin
from mqttc import Peer
from sqlc import Sql
from test_fleet_ca import fleet_server, mast_ca, pub, servers  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")

PAHO = {"v311": MQTTv311, "v5": MQTTv5}
ADMINISTRATIVE_ACTION = 0x98


def mast_certs(http_port, *args, check=True):
    r = subprocess.run([str(mast_bin()), "certs", *args, "--server", f"http://127.0.0.1:{http_port}"],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def device_peer(s, tmp_path, device, v):
    dev = tmp_path / "dev"
    if not (dev / f"{device}.crt").exists():
        mast_ca(s.data_dir, "issue", "--device", device, "--out", str(dev))
    return Peer(s.tls_port, PAHO[v], device, host="localhost",
                tls={"ca_certs": str(s.data_dir / "ca" / "ca.crt"),
                     "certfile": str(dev / f"{device}.crt"), "keyfile": str(dev / f"{device}.key")})


def handshake_error(s, cert, key):
    """The TLS alert the server answers a client certificate with (None: accepted)."""
    ctx = ssl.create_default_context(cafile=str(s.data_dir / "ca" / "ca.crt"))
    ctx.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection(("127.0.0.1", s.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                # TLS 1.3: the server judges the client certificate after the client's Finished.
                t.sendall(b"\x10\x00")
                t.recv(1)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return str(e).lower()
    return None


@pytest.mark.parametrize("v", list(PAHO))
def test_revoked_certificate_is_refused_and_its_live_connection_closed(tmp_path, servers, password_hash, v):
    s = fleet_server(tmp_path, servers, password_hash)
    api = Sql(s.http_port)
    peer = device_peer(s, tmp_path, "sensor-9", v)
    peer.connect()
    assert peer.publish("devices/sensor-9/telemetry", '{"temp": 20.5}', qos=1) == 0

    # Recorded on connect, as issued by the fleet CA, with its last use.
    listed = api.request("GET", "/api/v1/certificates?device=sensor-9").json()["certificates"]
    assert len(listed) == 1, listed
    c = listed[0]
    assert (c["status"], c["made"], c["device_id"], c["issuer"]) == ("ACTIVE", "issued", "sensor-9", "Test fleet")
    assert len(c["id"]) == 64 and c["last_used_at"] is not None and c["revoked_at"] is None
    assert api.request("GET", f"/api/v1/certificates/{c['id']}").json() == c
    rows = api.query("SELECT identity, certificate_id FROM system.connections WHERE client_id = 'sensor-9'")
    assert rows == [{"identity": "certificate", "certificate_id": c["id"]}]
    rows = Sql(s.http_port).query(
        "SELECT status, made, common_name FROM iot.certificates WHERE device_id = 'sensor-9'")
    assert rows == [{"status": "ACTIVE", "made": "issued", "common_name": "sensor-9"}]
    table = mast_certs(s.http_port, "list", "--device", "sensor-9").stdout.splitlines()
    assert table[0].startswith("ID") and c["id"][:16] in table[1] and "ACTIVE" in table[1], table

    out = mast_certs(s.http_port, "revoke", c["id"][:12]).stdout
    assert out.strip() == f"revoked {c['id']} (sensor-9)"
    # The live connection ends within a second of the answer; MQTT 5 is told why.
    code = peer.wait_closed(timeout=1.0)
    if v == "v5":
        assert code == ADMINISTRATIVE_ACTION, code
    peer.close()

    # Refused from then on, in the TLS handshake, and after a restart.
    dev = tmp_path / "dev"
    assert "revoked" in handshake_error(s, dev / "sensor-9.crt", dev / "sensor-9.key")
    again = pub(s.tls_port, s.data_dir / "ca" / "ca.crt", dev / "sensor-9.crt", dev / "sensor-9.key",
                "-i", "sensor-9", "-t", "devices/sensor-9/telemetry", "-m", "1", version=v)
    assert again.returncode != 0
    shown = api.request("GET", f"/api/v1/certificates/{c['id']}").json()
    assert shown["status"] == "REVOKED" and shown["revoked_at"] is not None
    s.restart(hard=True)
    assert "revoked" in handshake_error(s, dev / "sensor-9.crt", dev / "sensor-9.key")
    rows = Sql(s.http_port).query("SELECT status FROM iot.certificates WHERE id = '%s'" % c["id"])
    assert rows == [{"status": "REVOKED"}]

    # Another device's certificate still connects.
    other = device_peer(s, tmp_path, "sensor-10", v)
    other.connect()
    assert other.publish("devices/sensor-10/telemetry", '{"temp": 19}', qos=1) == 0
    other.disconnect()


def test_certificate_api_refusals(tmp_path, servers, password_hash):
    s = fleet_server(tmp_path, servers, password_hash)
    api = Sql(s.http_port)
    bad = api.request("GET", "/api/v1/certificates/not-hex")
    assert bad.status == 400 and bad.error()["code"] == "bad_request"
    missing = api.request("POST", "/api/v1/certificates/" + "ab" * 32 + "/revoke")
    assert missing.status == 404 and missing.error()["code"] == "not_found"
    status = api.request("GET", "/api/v1/certificates?status=GONE")
    assert status.status == 400 and "PENDING_ACTIVATION" in status.error()["error"]
    unknown = api.request("GET", "/api/v1/certificates?owner=x")
    assert unknown.status == 400
    r = mast_certs(s.http_port, "revoke", "zz", check=False)
    assert r.returncode == 1 and "certificate id" in r.stderr
    r = mast_certs(s.http_port, "revoke", "abcd", check=False)
    assert r.returncode == 1 and "no certificate id starts with abcd" in r.stderr


def test_issued_certificates_are_known_before_first_use(tmp_path, servers, password_hash):
    s = fleet_server(tmp_path, servers, password_hash)
    mast_ca(s.data_dir, "issue", "--device", "pre-1", "--out", str(tmp_path / "dev"))
    mast_ca(s.data_dir, "claim", "--template", "factory", "--out", str(tmp_path / "dev"))
    # Issued while the server ran: read from DATA/ca/issued/ at the next start.
    s.restart()
    rows = Sql(s.http_port).query(
        "SELECT device_id, template, made, status, last_used_at FROM iot.certificates ORDER BY made")
    assert rows == [
        {"device_id": None, "template": "factory", "made": "claim", "status": "ACTIVE", "last_used_at": None},
        {"device_id": "pre-1", "template": None, "made": "issued", "status": "ACTIVE", "last_used_at": None},
    ], rows
    # Revoked before it was ever used: the device never gets in.
    pre = Sql(s.http_port).query("SELECT id FROM iot.certificates WHERE device_id = 'pre-1'")[0]["id"]
    mast_certs(s.http_port, "revoke", pre)
    dev = tmp_path / "dev"
    assert "revoked" in handshake_error(s, dev / "pre-1.crt", dev / "pre-1.key")
    deadline = time.monotonic() + 5
    while Sql(s.http_port).query(f"SELECT status FROM iot.certificates WHERE id = '{pre}'") != [{"status": "REVOKED"}]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
