"""Fleet provisioning by claim with the real AWS IoT Device SDK for Python v2 (PyPI `awsiotsdk`,
its V2 `iotidentity` client) as the device, against `mast serve` with its own fleet CA: a claim
certificate from `mast ca claim` → CreateCertificateFromCsr (or CreateKeysAndCertificate) →
RegisterThing with a template → reconnect with the new certificate → telemetry and the shadow.
MQTT 3.1.1 (`mqtt_connection_builder`) and 5 (`mqtt5_client_builder`), SNI `localhost`, the SDK's
metrics in the user name."""

import json
import threading
import time

import pytest
from awsiot import iotidentity, iotshadow
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.client import MQTTv5, MQTTv311

from awsdev import TIMEOUT, Device, refused
from conftest import MastServer
from mqttc import Peer, connect_props
from sqlc import Sql
from test_fleet_ca import mast_ca

NOT_AUTHORIZED = 0x87

TEMPLATE = {
    "device_id": "sensor-{SerialNumber}",
    "device_type": "sensor",
    "tags": {"site": "{Site}", "claimed_by": "{ClientId}"},
    "groups": ["factory-a"],
    "desired": {"interval": 30},
    "device_configuration": {"telemetry_topic": "devices/{ThingName}/telemetry"},
}


@pytest.fixture
def fleet(tmp_path, password_hash):
    """A server with a fleet CA and its server certificate from `mast ca`, no topic rules but
    users (so nothing is anonymous), a claim certificate for template `factory`, and the
    template stored over REST."""
    made = []

    def start(env=None, template=TEMPLATE):
        s = MastServer(tmp_path / "mast", tls=None)
        mast_ca(s.data_dir, "init", "--name", "Provisioning fleet")
        mast_ca(s.data_dir, "server", "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(tmp_path / "tls"))
        mast_ca(s.data_dir, "claim", "--template", "factory", "--out", str(tmp_path / "claim"))
        s = MastServer(tmp_path / "mast", users={"ops": password_hash("ops-pw")},
                       tls={"cert": tmp_path / "tls" / "server.crt", "key": tmp_path / "tls" / "server.key"},
                       env=env)
        made.append(s)
        s.start()
        s.ca = s.data_dir / "ca" / "ca.crt"
        s.claim = (tmp_path / "claim" / "claim-factory.crt", tmp_path / "claim" / "claim-factory.key")
        s.api = Sql(s.http_port)
        if template is not None:
            r = s.api.request("PUT", "/api/v1/provisioning/templates/factory", body=json.dumps(template))
            assert r.status == 201, r.body
        return s

    yield start
    for s in made:
        s.kill()


def device(version, server, cert, key, client_id):
    return Device(version, server.tls_port, cert, key, server.ca, client_id)


def csr_pem(cn="ignored-by-mast"):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def request(peer, topic, payload):
    """Publishes a provisioning request and waits for its reply: ("accepted" or "rejected", body)."""
    peer.publish(topic, payload, qos=1)
    (m,) = peer.expect(1)
    return m.topic.rsplit("/", 1)[1], json.loads(m.payload)


def write(tmp_path, name, cert_pem, key_pem):
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    key.chmod(0o600)
    return cert, key


@pytest.mark.parametrize("version", ["v311", "v5"])
@pytest.mark.parametrize("flow", ["csr", "keys"])
def test_the_aws_sdk_provisions_a_device_that_then_publishes_and_syncs_its_shadow(fleet, tmp_path, version, flow):
    s = fleet()
    serial = f"{flow}-{version}"
    claim = device(version, s, *s.claim, client_id=f"boot-{serial}")
    try:
        if flow == "csr":
            csr, key_pem = csr_pem()
            created = claim.identity.create_certificate_from_csr(
                iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr)).result(TIMEOUT)
        else:
            created = claim.identity.create_keys_and_certificate(
                iotidentity.CreateKeysAndCertificateRequest()).result(TIMEOUT)
            key_pem = created.private_key
            assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")
        assert len(created.certificate_id) == 64 and created.certificate_ownership_token
        cert = x509.load_pem_x509_certificate(created.certificate_pem.encode())
        assert cert.fingerprint(hashes.SHA256()).hex() == created.certificate_id
        assert cert.issuer.rfc4514_string() == "CN=Provisioning fleet"
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        assert 364 <= days <= 366, "short-lived by default: a year"
        rows = s.api.query(f"SELECT status, made, device_id FROM iot.certificates WHERE id = '{created.certificate_id}'")
        assert rows == [{"status": "PENDING_ACTIVATION", "made": flow if flow == "csr" else "create", "device_id": None}]

        registered = claim.identity.register_thing(iotidentity.RegisterThingRequest(
            template_name="factory", certificate_ownership_token=created.certificate_ownership_token,
            parameters={"SerialNumber": serial, "Site": "north"})).result(TIMEOUT)
        thing = f"sensor-{serial}"
        assert registered.thing_name == thing
        assert registered.device_configuration == {"telemetry_topic": f"devices/{thing}/telemetry"}

        # One use.
        again = refused(claim.identity.register_thing(iotidentity.RegisterThingRequest(
            template_name="factory", certificate_ownership_token=created.certificate_ownership_token,
            parameters={"SerialNumber": serial, "Site": "north"})))
        assert (again.status_code, again.error_code) == (400, "InvalidCertificateOwnershipToken")
    finally:
        claim.close()

    # The device reconnects with its own certificate, as its thing name.
    cert_path, key_path = write(tmp_path, thing, created.certificate_pem, key_pem)
    dev = device(version, s, cert_path, key_path, client_id=thing)
    try:
        got = dev.shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(TIMEOUT)
        assert got.state.desired == {"interval": 30}, "the template's initial desired state"
        r = dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(reported={"interval": 30, "fw": "1.0"}))).result(TIMEOUT)
        assert r.state.reported == {"interval": 30, "fw": "1.0"}
        dev.publish(f"devices/{thing}/telemetry", json.dumps({"temp": 22.5}))
    finally:
        dev.close()

    rows = s.api.query(f"SELECT device_id, temp FROM telemetry WHERE device_id = '{thing}'")
    assert rows == [{"device_id": thing, "temp": 22.5}]
    d = s.api.request("GET", f"/api/v1/devices/{thing}").json()
    assert (d["device_type"], d["tags"], d["groups"]) == (
        "sensor", {"site": "north", "claimed_by": f"boot-{serial}"}, ["factory-a"])
    members = s.api.request("GET", "/api/v1/devices?group=factory-a").json()["devices"]
    assert [m["device_id"] for m in members] == [thing]
    assert s.api.request("GET", "/api/v1/groups/factory-a").json()["description"] == "made by provisioning template factory"
    rows = s.api.query(f"SELECT status, device_id, last_used_at IS NOT NULL AS used FROM iot.certificates WHERE id = '{created.certificate_id}'")
    assert rows == [{"status": "ACTIVE", "device_id": thing, "used": True}]


def test_a_claim_certificate_may_only_provision(fleet):
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    p = Peer(s.tls_port, MQTTv5, "claimer-1", host="localhost", tls=tls)
    p.connect()
    try:
        assert p.publish("devices/claimer-1/telemetry", b'{"temp": 1}', qos=1) == NOT_AUTHORIZED
        assert p.publish("$aws/things/claimer-1/shadow/update", b'{"state": {}}', qos=1) == NOT_AUTHORIZED
        # A forged reply to other provisioning devices.
        assert p.publish("$aws/certificates/create/json/accepted", b"{}", qos=1) == NOT_AUTHORIZED
        assert p.subscribe("#") == [NOT_AUTHORIZED]
        assert p.subscribe("$aws/provisioning-templates/other/provision/json/accepted") == [NOT_AUTHORIZED]
        assert p.subscribe("$aws/certificates/create/json/accepted") == [1]
        # Nothing it sends is kept: a retained request would keep its token.
        assert p.publish("$aws/certificates/create/json", b"{}", qos=1, retain=True) == NOT_AUTHORIZED
        claim_id = s.api.query("SELECT id FROM iot.certificates WHERE made = 'claim'")[0]["id"]
        rows = s.api.query("SELECT identity, certificate_id FROM system.connections WHERE client_id = 'claimer-1'")
        assert rows == [{"identity": "claim", "certificate_id": claim_id}]
    finally:
        p.disconnect()


def test_a_claim_certificate_cannot_take_over_a_device_session(fleet, tmp_path):
    s = fleet()
    mast_ca(s.data_dir, "issue", "--device", "dev-p", "--out", str(tmp_path / "d"))
    dev = Peer(s.tls_port, MQTTv5, "dev-p", host="localhost", clean=False,
               tls={"ca_certs": str(s.ca), "certfile": str(tmp_path / "d" / "dev-p.crt"),
                    "keyfile": str(tmp_path / "d" / "dev-p.key")})
    dev.connect(properties=connect_props(SessionExpiryInterval=3600))
    assert dev.subscribe("devices/dev-p/commands") == [1]
    dev.disconnect()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    thief = Peer(s.tls_port, MQTTv5, "dev-p", host="localhost", clean=False, tls=tls)
    code, present, _ = thief.connect(check=False)
    assert code == 0x85, "client identifier not valid"


def test_only_the_server_answers_provisioning(fleet):
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    victim = Peer(s.tls_port, MQTTv5, "claimer-v", host="localhost", tls=tls)
    victim.connect()
    ops = Peer(s.port, MQTTv5, "ops-1").credentials("ops", "ops-pw")
    ops.connect()
    try:
        assert victim.subscribe("$aws/certificates/create/json/+") == [1]
        forged = json.dumps({"certificateId": "x", "certificatePem": "x", "privateKey": "x",
                             "certificateOwnershipToken": "x"}).encode()
        assert ops.publish("$aws/certificates/create/json/accepted", forged, qos=1) == NOT_AUTHORIZED
        assert ops.publish("$aws/events/certificates/registered/ab", b"{}", qos=1) == NOT_AUTHORIZED
        assert victim.drain(0.5) == []
    finally:
        victim.disconnect()
        ops.disconnect()


def test_a_device_in_service_is_not_registered_again_unless_the_template_says(fleet, tmp_path):
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    p = Peer(s.tls_port, MQTTv5, "claimer-x", host="localhost", tls=tls)
    p.connect()

    def ask(topic, payload):
        return request(p, topic, payload)

    register = "$aws/provisioning-templates/factory/provision/json"
    try:
        assert p.subscribe("$aws/certificates/create/json/+") == [1]
        assert p.subscribe(register + "/+") == [1]
        _, first = ask("$aws/certificates/create/json", b"{}")
        kind, _ = ask(register, json.dumps({"certificateOwnershipToken": first["certificateOwnershipToken"],
                                            "parameters": {"SerialNumber": "x1", "Site": "a"}}).encode())
        assert kind == "accepted"
        cert, key = write(tmp_path, "sensor-x1", first["certificatePem"], first["privateKey"])
        d = Peer(s.tls_port, MQTTv5, "sensor-x1", host="localhost",
                 tls={"ca_certs": str(s.ca), "certfile": str(cert), "keyfile": str(key)})
        d.connect()
        d.disconnect()
        # The device is in service: a claim registering the same serial again is refused.
        _, second = ask("$aws/certificates/create/json", b"{}")
        again = json.dumps({"certificateOwnershipToken": second["certificateOwnershipToken"],
                            "parameters": {"SerialNumber": "x1", "Site": "b"}}).encode()
        kind, doc = ask(register, again)
        assert (kind, doc["statusCode"], doc["errorCode"]) == ("rejected", 409, "ResourceConflict"), doc
        assert s.api.request("GET", "/api/v1/devices/sensor-x1").json()["tags"]["site"] == "a", "untouched"
        # A template for factory resets lets it.
        r = s.api.request("PUT", "/api/v1/provisioning/templates/factory",
                          body=json.dumps({**TEMPLATE, "reprovision": True}))
        assert r.status == 200 and r.json()["reprovision"] is True
        kind, doc = ask(register, again)
        assert (kind, doc["thingName"]) == ("accepted", "sensor-x1"), doc
    finally:
        p.disconnect()


def test_a_provisioning_reply_reaches_only_the_device_that_asked(fleet):
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    a = Peer(s.tls_port, MQTTv311, "claimer-a", host="localhost", tls=tls)
    b = Peer(s.tls_port, MQTTv311, "claimer-b", host="localhost", tls=tls)
    a.connect()
    b.connect()
    try:
        for p in (a, b):
            assert p.subscribe("$aws/certificates/create/json/+") == [1]
        assert a.publish("$aws/certificates/create/json", b"{}", qos=1) == 0
        (m,) = a.expect(1)
        assert m.topic == "$aws/certificates/create/json/accepted"
        body = json.loads(m.payload)
        assert set(body) == {"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"}
        assert b.drain(1.0) == [], "the other device saw someone else's key"
    finally:
        a.disconnect()
        b.disconnect()


def test_refusals_carry_aws_error_documents(fleet, tmp_path):
    s = fleet(env={"MAST_PROVISIONING_TOKEN_LIFETIME_SECS": "2"})
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    p = Peer(s.tls_port, MQTTv5, "claimer-r", host="localhost", tls=tls)
    p.connect()

    def ask(topic, payload):
        return request(p, topic, payload)

    try:
        assert p.subscribe("$aws/certificates/create-from-csr/json/+") == [1]
        assert p.subscribe("$aws/certificates/create/json/+") == [1]
        assert p.subscribe("$aws/provisioning-templates/factory/provision/json/+") == [1]
        kind, doc = ask("$aws/certificates/create-from-csr/json", b'{"certificateSigningRequest": "not a CSR"}')
        assert (kind, doc["statusCode"], doc["errorCode"]) == ("rejected", 400, "InvalidCsr"), doc
        kind, doc = ask("$aws/certificates/create/json", b"[1, 2]")
        assert (kind, doc["errorCode"]) == ("rejected", "InvalidPayload")
        kind, doc = ask("$aws/provisioning-templates/factory/provision/json", b"{}")
        assert (kind, doc) == ("rejected", {"statusCode": 400, "errorCode": "InvalidCertificateOwnershipToken",
                                            "errorMessage": "Certificate ownership token cannot be empty."})
        kind, doc = ask("$aws/provisioning-templates/factory/provision/json",
                        b'{"certificateOwnershipToken": "made-up"}')
        assert (kind, doc["errorCode"]) == ("rejected", "InvalidCertificateOwnershipToken")

        # A parameter the template needs and nobody gave.
        kind, created = ask("$aws/certificates/create/json", b"")
        assert kind == "accepted"
        kind, doc = ask("$aws/provisioning-templates/factory/provision/json",
                        json.dumps({"certificateOwnershipToken": created["certificateOwnershipToken"],
                                    "parameters": {"SerialNumber": "9"}}).encode())
        assert (kind, doc["statusCode"], doc["errorCode"]) == ("rejected", 400, "InvalidParameters")
        assert "Site" in doc["errorMessage"]

        # An expired token is refused, and the certificate it would have registered is gone.
        time.sleep(2.5)
        kind, doc = ask("$aws/provisioning-templates/factory/provision/json",
                        json.dumps({"certificateOwnershipToken": created["certificateOwnershipToken"],
                                    "parameters": {"SerialNumber": "9", "Site": "x"}}).encode())
        assert (kind, doc["errorCode"]) == ("rejected", "InvalidCertificateOwnershipToken"), doc
        deadline = time.monotonic() + 5
        while s.api.query(f"SELECT id FROM iot.certificates WHERE id = '{created['certificateId']}'"):
            assert time.monotonic() < deadline, "a never-registered certificate outlived its token"
            time.sleep(0.2)
        # Removed, it is refused: it cannot come back as a device of its CN.
        cert, key = write(tmp_path, "removed", created["certificatePem"], created["privateKey"])
        gone = Peer(s.tls_port, MQTTv5, "claimer-r", host="localhost",
                    tls={"ca_certs": str(s.ca), "certfile": str(cert), "keyfile": str(key)})
        with pytest.raises((ConnectionError, OSError, TimeoutError)):
            gone.connect()
    finally:
        p.disconnect()

    # A template that does not exist, or is disabled: 404.
    r = s.api.request("PUT", "/api/v1/provisioning/templates/factory",
                      body=json.dumps({**TEMPLATE, "enabled": False}))
    assert r.status == 200
    p = Peer(s.tls_port, MQTTv5, "claimer-s", host="localhost", tls=tls)
    p.connect()
    try:
        assert p.subscribe("$aws/certificates/create/json/+") == [1]
        assert p.subscribe("$aws/provisioning-templates/factory/provision/json/+") == [1]
        kind, created = ask("$aws/certificates/create/json", b"{}")
        kind, doc = ask("$aws/provisioning-templates/factory/provision/json",
                        json.dumps({"certificateOwnershipToken": created["certificateOwnershipToken"]}).encode())
        assert (kind, doc["statusCode"], doc["errorCode"]) == ("rejected", 404, "ResourceNotFound")
    finally:
        p.disconnect()


def test_templates_over_rest(fleet):
    s = fleet(template=None)
    api = s.api
    assert api.request("GET", "/api/v1/provisioning/templates").json() == {"templates": []}
    assert api.request("GET", "/api/v1/provisioning/templates/factory").status == 404
    r = api.request("PUT", "/api/v1/provisioning/templates/factory", body=json.dumps(TEMPLATE))
    assert r.status == 201
    t = r.json()
    assert t["name"] == "factory" and t["origin"] == "api" and t["enabled"] is True
    assert t["device_id"] == TEMPLATE["device_id"] and t["updated_at"].endswith("Z")
    assert api.request("PUT", "/api/v1/provisioning/templates/factory", body=json.dumps(TEMPLATE)).status == 200
    assert [x["name"] for x in api.request("GET", "/api/v1/provisioning/templates").json()["templates"]] == ["factory"]
    for name, body in [("bad/name", TEMPLATE), ("x" * 37, TEMPLATE), ("ok", {"device_id": "a-{"}),
                       ("ok", {"device_id": "x", "hook_url": "https://h"}), ("ok", {"nope": 1})]:
        r = api.request("PUT", f"/api/v1/provisioning/templates/{name}", body=json.dumps(body))
        assert r.status in (400, 404), (name, body, r.status)
    s.restart(hard=True)
    assert api.request("GET", "/api/v1/provisioning/templates/factory").json()["device_id"] == TEMPLATE["device_id"]
    assert api.request("DELETE", "/api/v1/provisioning/templates/factory").status == 204
    assert api.request("DELETE", "/api/v1/provisioning/templates/factory").status == 404


def test_kill_9_during_provisioning_leaves_no_unknown_certificate(fleet, tmp_path):
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    p = Peer(s.tls_port, MQTTv311, "claimer-k", host="localhost", tls=tls)
    p.connect()
    assert p.subscribe("$aws/certificates/create/json/+") == [1]
    assert p.publish("$aws/certificates/create/json", b"{}", qos=1) == 0
    (m,) = p.expect(1)
    created = json.loads(m.payload)
    p.close()
    # The answer was sent: what it names is durable.
    s.restart(hard=True)
    rows = s.api.query(f"SELECT status FROM iot.certificates WHERE id = '{created['certificateId']}'")
    assert rows == [{"status": "PENDING_ACTIVATION"}]
    # The token outlived the crash: the device goes on where it was.
    p = Peer(s.tls_port, MQTTv311, "claimer-k", host="localhost", tls=tls)
    p.connect()
    try:
        assert p.subscribe("$aws/provisioning-templates/factory/provision/json/+") == [1]
        p.publish("$aws/provisioning-templates/factory/provision/json", json.dumps(
            {"certificateOwnershipToken": created["certificateOwnershipToken"],
             "parameters": {"SerialNumber": "k9", "Site": "x"}}).encode(), qos=1)
        (m,) = p.expect(1)
        assert m.topic.endswith("/accepted"), m.payload
        assert json.loads(m.payload)["thingName"] == "sensor-k9"
    finally:
        p.disconnect()
    s.restart(hard=True)
    rows = s.api.query(f"SELECT status, device_id FROM iot.certificates WHERE id = '{created['certificateId']}'")
    assert rows == [{"status": "ACTIVE", "device_id": "sensor-k9"}]
    cert, key = write(tmp_path, "sensor-k9", created["certificatePem"], created["privateKey"])
    d = Peer(s.tls_port, MQTTv5, "sensor-k9", host="localhost",
             tls={"ca_certs": str(s.ca), "certfile": str(cert), "keyfile": str(key)})
    d.connect()
    d.disconnect()


class Hook:
    """A pre-provisioning webhook: allows with an override, denies, or never answers in time,
    by the device's SerialNumber; keeps what it was sent."""

    def __init__(self):
        import http.server
        import socketserver
        hook = self
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                hook.seen.append(body)
                serial = body["parameters"].get("SerialNumber")
                if serial == "slow":
                    time.sleep(6)
                answer = {"allowProvisioning": serial != "deny",
                          "parameterOverrides": {"Site": "hooked"}}
                data = json.dumps(answer).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/provision"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_the_pre_provisioning_hook_allows_overrides_and_denies(fleet):
    hook = Hook()
    s = fleet(template={**TEMPLATE, "hook_url": hook.url})
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    p = Peer(s.tls_port, MQTTv5, "claimer-h", host="localhost", tls=tls)
    p.connect()
    def create():
        p.publish("$aws/certificates/create/json", b"{}", qos=1)
        (m,) = p.expect(1)
        assert m.topic.endswith("/accepted")
        return json.loads(m.payload)

    def register(token, serial):
        p.publish("$aws/provisioning-templates/factory/provision/json", json.dumps(
            {"certificateOwnershipToken": token, "parameters": {"SerialNumber": serial, "Site": "north"}}).encode(), qos=1)

    def answer():
        (m,) = p.expect(1, timeout=15)
        return m.topic.rsplit("/", 1)[1], json.loads(m.payload)

    try:
        assert p.subscribe("$aws/certificates/create/json/+") == [1]
        assert p.subscribe("$aws/provisioning-templates/factory/provision/json/+") == [1]
        ok = create()
        register(ok["certificateOwnershipToken"], "h1")
        kind, doc = answer()
        assert (kind, doc["thingName"]) == ("accepted", "sensor-h1"), doc
        sent = hook.seen[-1]
        assert sent["certificateId"] == ok["certificateId"] and sent["clientId"] == "claimer-h"
        assert sent["certificatePem"] == ok["certificatePem"]
        assert sent["parameters"]["SerialNumber"] == "h1" and sent["templateName"] == "factory"
        assert len(sent["claimCertificateId"]) == 64
        d = s.api.request("GET", "/api/v1/devices/sensor-h1").json()
        assert d["tags"]["site"] == "hooked", "the hook's override wins over the device's parameter"

        denied = create()
        register(denied["certificateOwnershipToken"], "deny")
        kind, doc = answer()
        assert (kind, doc["statusCode"], doc["errorCode"]) == ("rejected", 403, "AccessDenied")
        assert s.api.request("GET", "/api/v1/devices/sensor-deny").status == 404

        # A hook that takes longer than 5 s is a denial; other devices are answered meanwhile.
        slow = create()
        t0 = time.monotonic()
        register(slow["certificateOwnershipToken"], "slow")
        meanwhile = create()
        assert time.monotonic() - t0 < 4, "the service waited for the hook"
        kind, doc = answer()
        assert (kind, doc["errorCode"]) == ("rejected", "AccessDenied") and "5 s" in doc["errorMessage"], doc
        assert meanwhile["certificateId"]
    finally:
        p.disconnect()
        hook.close()


@pytest.mark.parametrize("version", ["v311", "v5"])
def test_renewal_replaces_a_certificate_with_no_gap_in_service(fleet, tmp_path, version):
    s = fleet()
    thing = f"renew-{version}"
    mast_ca(s.data_dir, "issue", "--device", thing, "--out", str(tmp_path / "old"))
    old_cert, old_key = tmp_path / "old" / f"{thing}.crt", tmp_path / "old" / f"{thing}.key"
    old = device(version, s, old_cert, old_key, client_id=thing)
    try:
        # Only a claim certificate makes keys; a device renews by CSR.
        err = refused(old.identity.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()))
        assert (err.status_code, err.error_code) == (403, "AccessDenied")
        csr, key_pem = csr_pem(cn="whatever-the-device-asks")
        renewed = old.identity.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr)).result(TIMEOUT)
        new_cert = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
        assert new_cert.subject.rfc4514_string() == f"CN={thing}", "the device's id, not the CSR's wish"
        # The old certificate goes on working until the new one is used.
        old.publish(f"devices/{thing}/telemetry", json.dumps({"seq": 1}))
    finally:
        old.close()
    old_id = s.api.query(f"SELECT id FROM iot.certificates WHERE device_id = '{thing}' AND made = 'issued'")[0]["id"]
    rows = s.api.query(f"SELECT status, made, replaces FROM iot.certificates WHERE id = '{renewed.certificate_id}'")
    assert rows == [{"status": "ACTIVE", "made": "renewal", "replaces": old_id}]

    cert, key = write(tmp_path, thing, renewed.certificate_pem, key_pem)
    new = device(version, s, cert, key, client_id=thing)
    try:
        new.publish(f"devices/{thing}/telemetry", json.dumps({"seq": 2}))
    finally:
        new.close()
    rows = s.api.query(f"SELECT status, replaced_by FROM iot.certificates WHERE id = '{old_id}'")
    assert rows == [{"status": "INACTIVE", "replaced_by": renewed.certificate_id}]
    assert s.api.query(f"SELECT seq FROM telemetry WHERE device_id = '{thing}' ORDER BY seq") == [{"seq": 1}, {"seq": 2}]
    # The retired certificate no longer connects.
    p = Peer(s.tls_port, MQTTv311, thing, host="localhost",
             tls={"ca_certs": str(s.ca), "certfile": str(old_cert), "keyfile": str(old_key)})
    with pytest.raises((ConnectionError, OSError, TimeoutError)):
        p.connect()


def test_mast_loadgen_provisions_a_fleet_that_then_connects_with_its_certificates(fleet, tmp_path):
    import subprocess

    from conftest import mast_bin
    s = fleet(template={"device_id": "{SerialNumber}", "device_type": "sim"})
    lg = mast_bin().parent / "mast-loadgen"
    tls = ["-p", str(s.tls_port), "--ssl", "--cacertfile", str(s.ca), "--sni", "localhost"]
    r = subprocess.run([str(lg), "provision", *tls, "--certfile", str(s.claim[0]), "--keyfile", str(s.claim[1]),
                        "-c", "20", "--prefix", "sim", "--out", str(tmp_path / "certs"), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["enrolled"], out["failed"], out["errors"]) == (20, 0, {}), out
    assert out["enrolment_latency_us"]["count"] == 20
    rows = s.api.query("SELECT count(*) AS n FROM iot.certificates WHERE made = 'csr' AND status = 'ACTIVE'")
    assert rows == [{"n": 20}]
    r = subprocess.run([str(lg), "conn", *tls, "--certdir", str(tmp_path / "certs"), "-c", "20", "--prefix", "sim",
                        "-d", "1", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[0])
    assert (out["connected"], out["errors"]) == (20, {}), out
    rows = s.api.query("SELECT count(*) AS n FROM iot.devices WHERE device_type = 'sim'")
    assert rows == [{"n": 20}]


def test_kill_9_in_a_burst_of_provisioning_leaves_every_answered_certificate_known(fleet):
    """Devices create and register as fast as they can while the server is killed: every
    certificate a device was given is known after the restart (PENDING, to expire, or
    ACTIVE), and every registration a device was told of is ACTIVE for its device."""
    s = fleet()
    tls = {"ca_certs": str(s.ca), "certfile": str(s.claim[0]), "keyfile": str(s.claim[1])}
    peers = []
    for i in range(8):
        p = Peer(s.tls_port, MQTTv311, f"burst-{i}", host="localhost", tls=tls)
        p.connect()
        assert p.subscribe("$aws/certificates/create/json/+", qos=0) == [0]
        assert p.subscribe("$aws/provisioning-templates/factory/provision/json/+", qos=0) == [0]
        peers.append(p)
    given, registered = {}, {}
    stop = threading.Event()

    def device(i, p):
        n = 0
        while not stop.is_set():
            try:
                p.publish("$aws/certificates/create/json", b"{}", qos=0)
                (m,) = p.expect(1, timeout=3)
                created = json.loads(m.payload)
                given[created["certificateId"]] = i
                serial = f"b{i}-{n}"
                p.publish("$aws/provisioning-templates/factory/provision/json", json.dumps(
                    {"certificateOwnershipToken": created["certificateOwnershipToken"],
                     "parameters": {"SerialNumber": serial, "Site": "x"}}).encode(), qos=0)
                (m,) = p.expect(1, timeout=3)
                if m.topic.endswith("/accepted"):
                    registered[created["certificateId"]] = f"sensor-{serial}"
                n += 1
            except Exception:
                return

    threads = [threading.Thread(target=device, args=(i, p), daemon=True) for i, p in enumerate(peers)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    s.restart(hard=True)
    stop.set()
    for t in threads:
        t.join(10)
    for p in peers:
        p.close()
    assert len(given) >= 8, "the burst made certificates before the kill"
    rows = s.api.query("SELECT id, status, device_id FROM iot.certificates WHERE made = 'create'")
    known = {r["id"]: r for r in rows}
    unknown = [c for c in given if c not in known]
    assert unknown == [], f"{len(unknown)} certificates given to devices are unknown after kill -9"
    for cert, device in registered.items():
        assert (known[cert]["status"], known[cert]["device_id"]) == ("ACTIVE", device)
