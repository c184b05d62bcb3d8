"""The firmware registry over REST against `mast serve`: uploads streamed to disk with their
SHA-256, signatures (Ed25519, ECDSA P-256 over the artifact's digest) checked against the
configured keys, the size limit enforced while the bytes arrive, downloads with `Range` and
`If-Range`, soft deletes, and `iot.firmware`."""

import base64
import hashlib
import http.client
import json
import urllib.parse

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from conftest import MastServer
from sqlc import Sql


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def server(tmp_path):
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    s = MastServer(tmp_path / "mast", env={"MAST_OTA_MAX_ARTIFACT_BYTES": str(4 << 20)})
    # Signing keys are an array of tables: in the file.
    with open(s.config, "a") as f:
        for kid, key in (("release", ed), ("ecdsa", p256)):
            f.write(f'[[ota.signing_keys]]\nid = "{kid}"\npublic_key = """\n{pem_public(key)}"""\n')
    s.start()
    s.keys = {"release": lambda d: ed.sign(d), "ecdsa": lambda d: p256.sign(d, ec.ECDSA(hashes.SHA256()))}
    yield s
    s.kill()


def upload(s, body, chunked=False, **params):
    c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    path = "/api/v1/firmware?" + urllib.parse.urlencode(params)
    if chunked:
        c.putrequest("POST", path)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
    else:
        c.request("POST", path, body=body)
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b"null")
    c.close()
    return out


def download(s, fid, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    c.request("GET", f"/api/v1/firmware/{fid}/artifact", headers=headers or {})
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    c.close()
    return out


def test_a_signed_upload_downloads_whole_and_by_range(server):
    s = server
    image = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256(image).digest()
    for key, version in (("release", "1.4.0"), ("ecdsa", "1.4.1")):
        sig = base64.b64encode(s.keys[key](digest)).decode()
        status, f = upload(s, image, chunked=True, name="sensor-fw", version=version, device_type="sensor",
                           signature=sig, key_id=key)
        assert status == 201, f
        assert (f["sha256"], f["size"], f["signature"]["key_id"]) == (digest.hex(), len(image), key)
    fid = f["id"]
    status, h, body = download(s, fid)
    assert (status, body, h["accept-ranges"], h["etag"]) == (200, image, "bytes", f'"{digest.hex()}"')
    # A dropped link resumes where it was.
    status, h, part = download(s, fid, {"Range": "bytes=1000000-"})
    assert (status, part, h["content-range"]) == (206, image[1000000:], f"bytes 1000000-{len(image) - 1}/{len(image)}")
    status, _, part = download(s, fid, {"Range": "bytes=0-9", "If-Range": h["etag"]})
    assert (status, part) == (206, image[:10])
    status, _, whole = download(s, fid, {"Range": "bytes=0-9", "If-Range": '"another"'})
    assert (status, whole) == (200, image), "a changed artifact comes whole"
    status, h, _ = download(s, fid, {"Range": f"bytes={len(image)}-"})
    assert (status, h["content-range"]) == (416, f"bytes */{len(image)}")

    api = Sql(s.http_port)
    listed = api.request("GET", "/api/v1/firmware").json()["firmware"]
    assert [x["version"] for x in listed] == ["1.4.0", "1.4.1"]
    rows = api.query("SELECT name, version, size, signing_key, deleted_at FROM iot.firmware ORDER BY version")
    assert rows == [{"name": "sensor-fw", "version": "1.4.0", "size": len(image), "signing_key": "release", "deleted_at": None},
                    {"name": "sensor-fw", "version": "1.4.1", "size": len(image), "signing_key": "ecdsa", "deleted_at": None}]
    # The same name and version again: a conflict.
    assert upload(s, b"other", name="sensor-fw", version="1.4.1")[0] == 409
    # Deleted: kept in the registry, no longer served; survives a restart.
    assert api.request("DELETE", f"/api/v1/firmware/{fid}").status == 204
    s.restart(hard=True)
    assert api.request("GET", f"/api/v1/firmware/{fid}").json()["deleted_at"] is not None
    assert download(s, fid)[0] == 410
    assert api.request("DELETE", f"/api/v1/firmware/{fid}").status == 404


def test_bad_uploads_are_refused_and_nothing_is_kept(server):
    s = server
    image = b"\x7fELF" + bytes(1000)
    digest = hashlib.sha256(image).digest()
    good = base64.b64encode(s.keys["release"](digest)).decode()
    corrupted = image[:-1] + b"\x01"
    status, e = upload(s, corrupted, name="fw", version="2.0.0", signature=good, key_id="release")
    assert (status, e["code"]) == (422, "bad_signature"), e
    status, e = upload(s, image, name="fw", version="2.0.0", signature=good, key_id="nobody")
    assert status == 400 and "nobody" in e["error"]
    assert upload(s, image, name="fw", version="two")[0] == 400
    assert upload(s, image, name="fw", version="2.0.0", kind="kernel")[0] == 400
    assert upload(s, image, name="fw")[0] == 400, "version is required"
    # Past the limit (4 MiB here): refused while streaming, never held whole.
    status, e = upload(s, bytes(5 << 20), chunked=True, name="big", version="1.0.0")
    assert (status, e["code"]) == (413, "too_large"), e
    assert Sql(s.http_port).request("GET", "/api/v1/firmware").json() == {"firmware": []}
    stored = list((s.data_dir / "firmware").glob("*"))
    assert [p.name for p in stored if p.is_file()] == [], "nothing kept"
    assert list((s.data_dir / "firmware" / "tmp").glob("*")) == []
    assert download(s, "fw-0000000000000000")[0] == 404


def test_mast_firmware_on_the_command_line(server, tmp_path):
    import subprocess

    from conftest import mast_bin
    s = server

    def mast(*args, check=True):
        r = subprocess.run([str(mast_bin()), "firmware", *args, "--server", f"http://127.0.0.1:{s.http_port}"],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x00\x01" * 300_000)
    digest = hashlib.sha256(image.read_bytes()).digest()
    sig = base64.b64encode(s.keys["release"](digest)).decode()
    f = json.loads(mast("upload", str(image), "--name", "gw-fw", "--version", "3.1.0", "--device-type", "gateway",
                        "--signature", sig, "--key-id", "release").stdout)
    assert (f["sha256"], f["size"], f["device_type"]) == (digest.hex(), 600_000, "gateway")
    table = mast("list").stdout.splitlines()
    assert table[0].startswith("ID") and f["id"] in table[1] and "release" in table[1] and "live" in table[1]
    assert json.loads(mast("show", f["id"]).stdout)["version"] == "3.1.0"
    bad = mast("upload", str(image), "--name", "gw-fw", "--version", "3.1.1", "--signature", sig,
               "--key-id", "ecdsa", check=False)
    assert bad.returncode == 1 and "bad_signature" in bad.stderr
    assert mast("delete", f["id"]).stdout.strip() == f"deleted {f['id']}"
    assert "deleted" in mast("list").stdout.splitlines()[1]
