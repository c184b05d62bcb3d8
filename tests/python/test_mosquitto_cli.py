"""mosquitto_pub / mosquitto_sub (and paho and Python's ssl) against `mast serve`: plain TCP on
MQTT 3.1.1 and 5.0, and mutual TLS with device certificates, a CRL and certificate hot reload."""

import queue
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest
from cryptography import x509
from paho.mqtt.client import MQTTv5, MQTTv311

import pki
from mqttc import connect_packet, read_packet

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")

TIMEOUT = 5.0
VERSIONS = {"v311": "mqttv311", "v5": "mqttv5"}
PAHO = {"v311": MQTTv311, "v5": MQTTv5}
PUBLISH_LINE = re.compile(r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)'")


@pytest.fixture(params=list(VERSIONS), ids=list(VERSIONS))
def v(request):
    return request.param


def mosq_pub(port, *args, tls=None, version="v311"):
    """Runs mosquitto_pub to completion; `tls` is a device (pki.Issued) or (cafile, device)."""
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", VERSIONS[version], *tls_args(tls), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT * 2)


def tls_args(tls):
    if tls is None:
        return []
    ca, dev = tls
    out = ["--cafile", str(ca.cert_path)]
    if dev is not None:
        out += ["--cert", str(dev.cert_path), "--key", str(dev.key_path)]
    return out


class MosqSub:
    """mosquitto_sub in debug mode, read line by line: `wait_subscribed()` returns once SUBACK
    arrived; `finish()` waits for it to exit (-C n) and returns (messages, publish headers)."""

    def __init__(self, port, *args, tls=None, version="v311"):
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-d", "-v", "-h", "127.0.0.1", "-p", str(port),
               "-V", VERSIONS[version], "-W", "10", *tls_args(tls), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next(self, deadline):
        line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        if line is not None:
            self.all.append(line)
        return line

    def wait_subscribed(self):
        deadline = time.monotonic() + TIMEOUT
        while True:
            line = self._next(deadline)
            if line is None:
                raise AssertionError(f"mosquitto_sub ended before SUBACK: {self.all} {self.proc.stderr.read()}")
            if "received SUBACK" in line:
                return self

    def finish(self):
        deadline = time.monotonic() + TIMEOUT
        while self._next(deadline) is not None:
            pass
        rc = self.proc.wait(TIMEOUT)
        assert rc == 0, f"mosquitto_sub exit {rc}: {self.all} {self.proc.stderr.read()}"
        messages = [l for l in self.all if not l.startswith(("Client ", "Subscribed "))]
        headers = [(int(d), int(q), int(r), t) for d, q, r, t in PUBLISH_LINE.findall("\n".join(self.all))]
        return messages, headers

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def subs():
    made = []

    def make(*args, **kwargs):
        s = MosqSub(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


# Plain TCP


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_sub_at_each_qos(mast, subs, v, qos):
    sub = subs(mast.port, "-t", "cli/+/t", "-q", "2", "-C", "3", version=v).wait_subscribed()
    for i, payload in enumerate(["one", "two words", "ünïcode"]):
        r = mosq_pub(mast.port, "-t", f"cli/{i}/t", "-m", payload, "-q", str(qos), version=v)
        assert r.returncode == 0, r.stderr
    messages, headers = sub.finish()
    assert messages == ["cli/0/t one", "cli/1/t two words", "cli/2/t ünïcode"]
    assert headers == [(0, qos, 0, f"cli/{i}/t") for i in range(3)]


def test_mosquitto_pub_line_mode_and_count(mast, subs, v):
    sub = subs(mast.port, "-t", "lines", "-q", "1", "-C", "5", version=v).wait_subscribed()
    r = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mast.port), "-V", VERSIONS[v], "-t", "lines", "-q", "1", "-l"],
        input="".join(f"line {i}\n" for i in range(7)), capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert r.returncode == 0, r.stderr
    messages, headers = sub.finish()
    assert messages == [f"lines line {i}" for i in range(5)], "-C 5 stops after exactly five"
    assert [h[1] for h in headers] == [1] * 5


def test_mosquitto_retained_set_and_clear(mast, subs, v):
    assert mosq_pub(mast.port, "-t", "cli/ret", "-m", "on", "-q", "1", "-r", version=v).returncode == 0
    messages, headers = subs(mast.port, "-t", "cli/ret", "-C", "1", version=v).finish()
    assert messages == ["cli/ret on"]
    assert headers == [(0, 0, 1, "cli/ret")], "retained flag set for a new subscription"

    assert mosq_pub(mast.port, "-t", "cli/ret", "-q", "1", "-r", "-n", version=v).returncode == 0
    probe = subs(mast.port, "-t", "cli/ret", "-t", "cli/marker", "-C", "1", version=v).wait_subscribed()
    assert mosq_pub(mast.port, "-t", "cli/marker", "-m", "end", version=v).returncode == 0
    messages, _ = probe.finish()
    assert messages == ["cli/marker end"], "nothing retained after the empty retained publish"


def test_mosquitto_persistent_session_gets_queued_qos1(mast, subs, v):
    session = ["-i", f"cli-persist-{v}", "-c", "-q", "1", "-t", "cli/queue/#"]
    if v == "v5":
        session += ["-x", "300"]
    subs(mast.port, *session, "-E", version=v).finish()
    for i in range(3):
        assert mosq_pub(mast.port, "-t", f"cli/queue/{i}", "-m", f"q{i}", "-q", "1", version=v).returncode == 0
    messages, headers = subs(mast.port, *session, "-C", "3", version=v).finish()
    assert messages == [f"cli/queue/{i} q{i}" for i in range(3)]
    assert [h[1] for h in headers] == [1, 1, 1]


# Mutual TLS


@pytest.fixture
def fleet(tmp_path):
    """CA, server certificate, devices dev1/dev2/dev3 (dev3 revoked) and a rogue CA's dev1."""
    d = tmp_path / "pki"
    d.mkdir()
    ca = pki.make_ca(d, "fleet-ca")
    rogue_ca = pki.make_ca(d, "rogue-ca")
    f = SimpleNamespace(
        dir=d,
        ca=ca,
        server=pki.issue(ca, d, "server", "mast-server", server=True),
        dev1=pki.issue(ca, d, "dev1", "dev1"),
        dev2=pki.issue(ca, d, "dev2", "dev2"),
        dev3=pki.issue(ca, d, "dev3", "dev3"),
        rogue=pki.issue(rogue_ca, d, "rogue-dev1", "dev1"),
    )
    f.crl = pki.write_crl(ca, d / "crl.pem", [f.dev3])
    return f


@pytest.fixture
def tls_mast(mast_factory, fleet, password_hash):
    """TLS with client certificates required; users configured (so no anonymous access); devices
    may only use `devices/<their CN>/#`; `ops` may use everything."""
    return mast_factory(
        tls={"cert": fleet.server.cert_path, "key": fleet.server.key_path, "client_ca": fleet.ca.cert_path,
             "crl": [fleet.crl], "reload_interval_secs": 1},
        users={"ops": password_hash("ops-pw")},
        acl=[{"user": "ops", "publish": ["#"], "subscribe": ["#"]},
             {"publish": ["devices/%c/#"], "subscribe": ["devices/%c/#"]}],
    )


def ops(peers, server, version, client_id):
    """The operator: plain TCP with a user name and password."""
    p = peers(server.port, PAHO[version], client_id).credentials("ops", "ops-pw")
    p.connect()
    return p


def tls_context(fleet, device=None):
    ctx = ssl.create_default_context(cafile=str(fleet.ca.cert_path))
    if device is not None:
        ctx.load_cert_chain(str(device.cert_path), str(device.key_path))
    return ctx


def tls_exchange(port, ctx, packet):
    """Handshake, send `packet`, return the first packet back (raises ssl.SSLError when the
    server refuses the certificate)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(packet)
            return read_packet(s)


def server_certificate(port, fleet) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with tls_context(fleet, fleet.dev1).wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def test_tls_device_publishes_with_its_certificate(tls_mast, fleet, subs, peers, v):
    # The observer is a TLS device too, subscribing within its own namespace.
    sub = subs(tls_mast.tls_port, "-i", "dev2", "-t", "devices/dev2/#", "-q", "1", "-C", "1",
               tls=(fleet.ca, fleet.dev2), version=v).wait_subscribed()
    watch = ops(peers, tls_mast, v, f"ops-{v}")
    watch.subscribe("devices/#", qos=1)
    r = mosq_pub(tls_mast.tls_port, "-i", "dev1", "-t", "devices/dev1/temp", "-m", "21.5", "-q", "1",
                 tls=(fleet.ca, fleet.dev1), version=v)
    assert r.returncode == 0, r.stderr
    got = watch.expect(1)
    assert [(m.topic, m.payload, m.qos) for m in got] == [("devices/dev1/temp", b"21.5", 1)]
    spoof = mosq_pub(tls_mast.tls_port, "-i", "dev1", "-t", "devices/dev2/cmd", "-m", "spoof", "-q", "1",
                     tls=(fleet.ca, fleet.dev1), version=v)
    if v == "v5":
        assert "not authorized" in (spoof.stdout + spoof.stderr).lower(), spoof
    assert watch.drain(0.3) == [], "dev1 may not publish into dev2's namespace"
    assert watch.publish("devices/dev2/cmd", b"reboot", qos=1) == 0
    messages, headers = sub.finish()
    assert messages == ["devices/dev2/cmd reboot"]
    assert headers == [(0, 1, 0, "devices/dev2/cmd")]
    assert [m.payload for m in watch.expect(1)] == [b"reboot"]


def test_tls_client_id_must_equal_certificate_cn(tls_mast, fleet, v):
    r = mosq_pub(tls_mast.tls_port, "-i", "other", "-t", "devices/other/x", "-m", "x",
                 tls=(fleet.ca, fleet.dev1), version=v)
    assert r.returncode != 0
    expected = "identifier rejected" if v == "v311" else "client identifier not valid"
    assert expected in (r.stdout + r.stderr).lower(), r.stderr
    level = 4 if v == "v311" else 5
    back = tls_exchange(tls_mast.tls_port, tls_context(fleet, fleet.dev1), connect_packet(level, "other"))
    assert back == (b"\x20\x02\x00\x02" if v == "v311" else b"\x20\x03\x00\x85\x00")
    ok = tls_exchange(tls_mast.tls_port, tls_context(fleet, fleet.dev1), connect_packet(level, "dev1"))
    assert ok[0] == 0x20 and ok[2:4] == b"\x00\x00", "the matching id (no user name) is accepted"


@pytest.mark.parametrize("who,alert", [
    ("dev3", "revoked"),          # on the CRL
    ("rogue", "unknown ca"),      # CN dev1, but another CA
    (None, "certificate required"),
], ids=["revoked", "other-ca", "no-cert"])
def test_tls_bad_or_missing_client_certificate_fails_the_handshake(tls_mast, fleet, who, alert):
    device = getattr(fleet, who) if who else None
    client_id = device.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value if device else "dev1"
    r = mosq_pub(tls_mast.tls_port, "-d", "-i", client_id, "-t", f"devices/{client_id}/x", "-m", "x", "-q", "1",
                 tls=(fleet.ca, device))
    assert r.returncode != 0
    assert "sending CONNECT" in r.stdout and "received CONNACK" not in r.stdout, r.stdout
    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        tls_exchange(tls_mast.tls_port, tls_context(fleet, device), connect_packet(4, client_id))
    assert alert in str(e.value).lower()


def test_tls_paho_with_client_certificate(tls_mast, fleet, peers, v):
    tls = {"ca_certs": str(fleet.ca.cert_path), "certfile": str(fleet.dev1.cert_path), "keyfile": str(fleet.dev1.key_path)}
    dev = peers(tls_mast.tls_port, PAHO[v], "dev1", tls=tls)
    dev.connect()
    assert dev.subscribe("devices/dev1/cmd", qos=2) == [2]
    watch = ops(peers, tls_mast, v, f"ops-{v}")
    watch.subscribe("devices/dev1/#", qos=2)
    assert dev.publish("devices/dev1/temp", b"\x01\x02", qos=2) == 0
    assert [(m.topic, m.payload, m.qos) for m in watch.expect(1)] == [("devices/dev1/temp", b"\x01\x02", 2)]
    watch.publish("devices/dev1/cmd", b"blink", qos=1)
    assert [(m.topic, m.payload, m.qos) for m in dev.expect(1)] == [("devices/dev1/cmd", b"blink", 1)]
    assert [m.payload for m in watch.expect(1)] == [b"blink"], "ops sees its own command too"
    dev.disconnect()

    # An empty client id takes the certificate's CN.
    watch.subscribe("devices/dev2/#", qos=1)
    tls2 = dict(tls, certfile=str(fleet.dev2.cert_path), keyfile=str(fleet.dev2.key_path))
    anon = peers(tls_mast.tls_port, PAHO[v], "", tls=tls2)
    _, _, props = anon.connect()
    if v == "v5":
        assert props.AssignedClientIdentifier == "dev2"
    assert anon.publish("devices/dev2/hello", b"hi", qos=1) == 0, "allowed as dev2 by devices/%c/#"
    assert [(m.topic, m.payload) for m in watch.expect(1)] == [("devices/dev2/hello", b"hi")]


def test_tls_files_are_reloaded_without_a_restart(tls_mast, fleet, peers, v):
    pid = tls_mast.pid
    before = server_certificate(tls_mast.tls_port, fleet)
    assert before.serial_number == fleet.server.serial
    tls = {"ca_certs": str(fleet.ca.cert_path), "certfile": str(fleet.dev1.cert_path), "keyfile": str(fleet.dev1.key_path)}
    existing = peers(tls_mast.tls_port, PAHO[v], "dev1", tls=tls)
    existing.connect()
    existing.subscribe("devices/dev1/#", qos=1)

    # Rotate the server certificate and revoke dev2, by rewriting the files in place.
    staging = fleet.dir / "next"
    staging.mkdir()
    new = pki.issue(fleet.ca, staging, "server", "mast-server-2", server=True)
    assert new.serial != before.serial_number
    fleet.server.key_path.write_bytes(new.key_path.read_bytes())
    fleet.server.cert_path.write_bytes(new.cert_path.read_bytes())
    pki.write_crl(fleet.ca, fleet.crl, [fleet.dev3, fleet.dev2])

    deadline = time.monotonic() + 1 + 3  # reload_interval_secs + slack
    seen = before
    while seen.serial_number == before.serial_number and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = server_certificate(tls_mast.tls_port, fleet)
    assert seen.serial_number == new.serial
    assert seen.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "mast-server-2"
    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        tls_exchange(tls_mast.tls_port, tls_context(fleet, fleet.dev2), connect_packet(4, "dev2"))
    assert "revoked" in str(e.value).lower(), "the new CRL applies to new connections"
    assert tls_mast.running() and tls_mast.pid == pid, "no restart"

    # The connection made before the rotation carries on.
    assert existing.publish("devices/dev1/still", b"here", qos=1) == 0
    assert [(m.topic, m.payload) for m in existing.expect(1)] == [("devices/dev1/still", b"here")]
