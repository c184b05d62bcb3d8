"""End-to-end harness: runs the real `mast` binary on free loopback ports and talks to it with
independent MQTT clients (paho-mqtt, mosquitto_pub/mosquitto_sub, raw sockets).

The binary is `$MAST_BIN`, else `${CARGO_TARGET_DIR:-target}/debug/mast` under the repository
root. Each test gets its own server, config file and data directory under pytest's `tmp_path`;
`MastServer.restart()` brings it back on the same data directory and ports.
"""

import itertools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def mast_bin() -> Path:
    """The server binary under test."""
    if os.environ.get("MAST_BIN"):
        return Path(os.environ["MAST_BIN"]).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "mast"


_next_port = itertools.count((os.getpid() * 2654435761) % 22000)


def free_port() -> int:
    """A free loopback port for a server, below the kernel's ephemeral range (32768-60999).

    A port from bind(0) can be handed out again as the local port of a client connection
    before the server binds it; ports below the range never are.
    """
    for n in _next_port:
        port = 10000 + n % 22000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (str, Path)):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def toml_table(header: str, values: dict) -> str:
    return f"{header}\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


class MastServer:
    """One `mast serve` process with its config, data directory and log in `dir`.

    `mqtt`: extra keys of the `[mqtt]` table; `tls`: keys of `[mqtt.tls]` (its `listen` is
    filled in); `users`: name -> argon2 hash; `acl`: list of rule dicts; `http` / `query`: extra
    keys of `[http]` / `[query]`; `env`: extra environment variables (`MAST_*` overrides).
    The HTTP API listens on `http_port`.
    """

    def __init__(self, dir: Path, mqtt=None, tls=None, users=None, acl=None, http=None, query=None, env=None):
        self.dir = dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = dir / "data"
        self.config = dir / "mast.toml"
        self.log = dir / "mast.log"
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.http_port = free_port()
        self.env = dict(env or {})
        self.proc = None
        text = f"data_dir = {toml_value(self.data_dir)}\n"
        mqtt_keys = {"listen": f"127.0.0.1:{self.port}", "reactors": 2}
        mqtt_keys.update(mqtt or {})
        text += toml_table("[http]", {"listen": f"127.0.0.1:{self.http_port}", **(http or {})})
        if query:
            text += toml_table("[query]", query)
        text += toml_table("[mqtt]", mqtt_keys)
        for name, hash_ in (users or {}).items():
            text += toml_table("[[mqtt.users]]", {"name": name, "password_hash": hash_})
        for rule in acl or []:
            text += toml_table("[[mqtt.acl]]", rule)
        if tls is not None:
            text += toml_table("[mqtt.tls]", {"listen": f"127.0.0.1:{self.tls_port}", **tls})
        self.config.write_text(text)

    def start(self, timeout: float = 20.0):
        assert self.proc is None, "already running"
        log = open(self.log, "ab")
        env = {**os.environ, "MAST_LOG": os.environ.get("MAST_LOG", "info"), **self.env}
        self.proc = subprocess.Popen(
            [str(mast_bin()), "serve", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        for port in [self.port, self.tls_port, self.http_port]:
            if port is None:
                continue
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mast exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError(f"mast did not listen on {port}:\n{self.log_tail()}")
                    time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (graceful: v5 clients get DISCONNECT 0x8B, state is committed); returns the
        exit status."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"mast ignored SIGTERM:\n{self.log_tail()}")
        return proc.returncode

    def kill(self):
        """SIGKILL: no shutdown work at all."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self, hard: bool = False):
        """Stops (SIGTERM, or SIGKILL when `hard`) and starts again on the same data directory,
        config and ports."""
        if hard:
            self.kill()
        else:
            assert self.stop() == 0, self.log_tail()
        return self.start()

    def export(self, table=None) -> list:
        """The stored rows (the server must be stopped): `mast export` JSON lines, as dicts."""
        assert not self.running(), "stop the server first: export opens its data directory"
        cmd = [str(mast_bin()), "export", "--data-dir", str(self.data_dir)]
        if table is not None:
            cmd += ["--table", table]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        import json

        return [json.loads(line) for line in out.stdout.splitlines()]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def mast_factory(tmp_path):
    """`start(**MastServer kwargs)` -> a running server; every server is stopped at the end."""
    servers = []

    def start(**kwargs) -> MastServer:
        s = MastServer(tmp_path / f"mast{len(servers)}", **kwargs)
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.kill()


@pytest.fixture
def mast(mast_factory) -> MastServer:
    """A server on embedded defaults (anonymous access, plain TCP only)."""
    return mast_factory()


@pytest.fixture
def peers():
    """`peers(port, version, client_id, **kw)` -> a `mqttc.Peer` (paho) closed at the end."""
    from mqttc import Peer

    made = []

    def make(*args, **kwargs):
        p = Peer(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="session")
def password_hash():
    """`password_hash(pw)` -> the argon2 PHC string `mast passwd` prints for it (cached)."""
    cache = {}

    def hash_(pw: str) -> str:
        if pw not in cache:
            out = subprocess.run(
                [str(mast_bin()), "passwd"], input=pw + "\n", capture_output=True, text=True,
                timeout=60, check=True,
            )
            cache[pw] = out.stdout.strip()
            assert cache[pw].startswith("$argon2"), out
        return cache[pw]

    return hash_


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, append each server's log tail to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "tmp_path" in item.funcargs:
        for log in sorted(Path(item.funcargs["tmp_path"]).glob("mast*/mast.log")):
            rep.sections.append((f"mast log {log.parent.name}", log.read_text(errors="replace")[-6000:]))
