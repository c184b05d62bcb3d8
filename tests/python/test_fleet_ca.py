"""The fleet CA in the binary (`mast ca init|issue|claim|server`) against `mast serve`: the server's
TLS certificate and the devices' certificates come from `mast ca`, with no openssl step, and
mosquitto_pub connects with them; the fleet CA is trusted beside (or without) `client_ca`."""

import shutil
import socket
import ssl
import stat
import subprocess
import time

import pytest

import pki
from conftest import MastServer, mast_bin
from sqlc import Sql

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")

VERSIONS = {"v311": "mqttv311", "v5": "mqttv5"}


def mast_ca(data_dir, *args, check=True):
    r = subprocess.run([str(mast_bin()), "ca", *args, "--data-dir", str(data_dir)],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def pub(port, cafile, cert=None, key=None, *args, version="v311"):
    cmd = ["mosquitto_pub", "-h", "localhost", "-p", str(port), "-V", VERSIONS[version],
           "--cafile", str(cafile), *args]
    if cert:
        cmd += ["--cert", str(cert), "--key", str(key)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


@pytest.fixture
def servers(tmp_path):
    made = []
    yield made
    for s in made:
        s.kill()


def fleet_server(tmp_path, servers, password_hash, **tls):
    """A server whose data directory got a fleet CA and a server certificate from `mast ca`
    before it started; TLS trusts the fleet CA only (no client_ca)."""
    s = MastServer(tmp_path / "mast", users={"ops": password_hash("ops-pw")}, tls=None)
    data = s.data_dir
    out = mast_ca(data, "init", "--name", "Test fleet").stdout.splitlines()
    assert out[0] == str(data / "ca" / "ca.crt") and out[2].startswith("fingerprint ")
    mast_ca(data, "server", "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(tmp_path / "tls"))
    s = MastServer(tmp_path / "mast", users={"ops": password_hash("ops-pw")},
                   tls={"cert": tmp_path / "tls" / "server.crt", "key": tmp_path / "tls" / "server.key", **tls},
                   acl=[{"user": "ops", "publish": ["#"], "subscribe": ["#", "$aws/events/#"]},
                        {"publish": ["devices/%c/#"], "subscribe": ["devices/%c/#"]}])
    servers.append(s)
    return s.start()


@pytest.mark.parametrize("v", list(VERSIONS))
def test_mosquitto_pub_with_a_certificate_from_mast_ca_issue(tmp_path, servers, password_hash, v):
    s = fleet_server(tmp_path, servers, password_hash)
    ca = s.data_dir / "ca" / "ca.crt"
    dev = tmp_path / "dev"
    out = mast_ca(s.data_dir, "issue", "--device", "sensor-7", "--out", str(dev)).stdout.splitlines()
    assert out[:2] == [str(dev / "sensor-7.crt"), str(dev / "sensor-7.key")]
    assert stat.S_IMODE((dev / "sensor-7.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((s.data_dir / "ca" / "ca.key").stat().st_mode) == 0o600

    r = pub(s.tls_port, ca, dev / "sensor-7.crt", dev / "sensor-7.key",
            "-i", "sensor-7", "-t", "devices/sensor-7/telemetry", "-q", "1",
            "-m", '{"temp": 21.5, "state": "ok"}', version=v)
    assert r.returncode == 0, r.stderr
    rows = Sql(s.http_port).query(
        "SELECT device_id, temp, state FROM telemetry WHERE device_id = 'sensor-7'")
    assert rows == [{"device_id": "sensor-7", "temp": 21.5, "state": "ok"}]

    # The certificate names its device: another client id is refused.
    other = pub(s.tls_port, ca, dev / "sensor-7.crt", dev / "sensor-7.key",
                "-i", "sensor-8", "-t", "devices/sensor-8/telemetry", "-m", "1", version=v)
    assert other.returncode != 0


def test_other_ca_refused_and_no_certificate_falls_back_to_passwords(tmp_path, servers, password_hash):
    s = fleet_server(tmp_path, servers, password_hash)
    ca = s.data_dir / "ca" / "ca.crt"
    # A CA made elsewhere (another data directory) is not trusted.
    other = tmp_path / "other-data"
    mast_ca(other, "init")
    mast_ca(other, "issue", "--device", "sensor-7", "--out", str(tmp_path / "rogue"))
    r = pub(s.tls_port, ca, tmp_path / "rogue" / "sensor-7.crt", tmp_path / "rogue" / "sensor-7.key",
            "-i", "sensor-7", "-t", "devices/sensor-7/telemetry", "-m", "1")
    assert r.returncode != 0
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(tmp_path / "rogue" / "sensor-7.crt"), str(tmp_path / "rogue" / "sensor-7.key"))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as e:
        with socket.create_connection(("127.0.0.1", s.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                t.sendall(b"\x10\x00")
                t.recv(1)
    assert "unknown ca" in str(e.value).lower() or isinstance(e.value, (ConnectionResetError, BrokenPipeError))

    # Only the fleet CA is trusted, so a client certificate is optional: the CONNECT's
    # credentials decide. No certificate and no password: refused; the password: accepted.
    anon = pub(s.tls_port, ca, None, None, "-i", "x", "-t", "devices/x/t", "-m", "1", version="v5")
    assert anon.returncode != 0 and "not authorized" in (anon.stdout + anon.stderr).lower(), anon
    ok = pub(s.tls_port, ca, None, None, "-i", "ops-1", "-u", "ops", "-P", "ops-pw",
             "-t", "devices/x/telemetry", "-q", "1", "-m", '{"v": 1}')
    assert ok.returncode == 0, ok.stderr


def test_required_client_certificate(tmp_path, servers, password_hash):
    s = fleet_server(tmp_path, servers, password_hash, require_client_cert=True)
    r = pub(s.tls_port, s.data_dir / "ca" / "ca.crt", None, None, "-i", "ops-1", "-u", "ops", "-P", "ops-pw",
            "-t", "devices/x/telemetry", "-m", "1")
    assert r.returncode != 0


def test_fleet_ca_made_while_the_server_runs_is_trusted(tmp_path, servers):
    # TLS with a server certificate from elsewhere and no client CA at all: no client auth.
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    web = pki.make_ca(pki_dir, "Web CA")
    server = pki.issue(web, pki_dir, "server", "localhost", server=True)
    s = MastServer(tmp_path / "mast", tls={"cert": server.cert_path, "key": server.key_path,
                                           "reload_interval_secs": 1})
    servers.append(s)
    s.start()
    mast_ca(s.data_dir, "init")
    dev = tmp_path / "dev"
    mast_ca(s.data_dir, "issue", "--device", "late-1", "--out", str(dev))
    deadline = time.monotonic() + 10
    while True:
        r = pub(s.tls_port, web.cert_path, dev / "late-1.crt", dev / "late-1.key",
                "-i", "late-1", "-t", "devices/late-1/telemetry", "-q", "1", "-m", '{"v": 2}')
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, r.stderr
        time.sleep(0.3)
    rows = Sql(s.http_port).query("SELECT v FROM telemetry WHERE device_id = 'late-1'")
    assert rows == [{"v": 2}]


def test_mast_ca_refusals(tmp_path):
    data = tmp_path / "data"
    r = mast_ca(data, "issue", "--device", "d1", "--out", str(tmp_path / "o"), check=False)
    assert r.returncode == 1 and "mast ca init" in r.stderr, r.stderr
    mast_ca(data, "init")
    again = mast_ca(data, "init", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = mast_ca(data, "issue", "--device", "a/b", "--out", str(tmp_path / "o"), check=False)
    assert bad.returncode == 1 and "not allowed" in bad.stderr
    mast_ca(data, "claim", "--template", "factory-1", "--out", str(tmp_path / "o"))
    assert (tmp_path / "o" / "claim-factory-1.crt").exists()
    twice = mast_ca(data, "claim", "--template", "factory-1", "--out", str(tmp_path / "o"), check=False)
    assert twice.returncode == 1 and "not replacing" in twice.stderr
    (data / "ca" / "ca.key").chmod(0o644)
    loose = mast_ca(data, "issue", "--device", "d1", "--out", str(tmp_path / "o"), check=False)
    assert loose.returncode == 1 and "readable by others" in loose.stderr
