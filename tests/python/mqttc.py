"""Blocking test clients: a paho-mqtt 2.x wrapper that waits for each acknowledgement and
collects what arrives, and a raw-socket client for exact CONNACK bytes.

The wrapper drives paho's network loop on its own thread with `Client.loop()` rather than
`loop_start()`, so a lost connection is never silently re-established behind a test's back.
"""

import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion, MQTTv5, MQTTv311
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 5.0

# paho reports a 3.1.1 CONNACK return code as an MQTT 5 reason code; map it back.
V311_RETURN_CODE = {int(mqtt.convert_connack_rc_to_reason_code(rc).value): rc for rc in range(6)}


def props(packet_type, **values) -> Properties:
    """`props(PacketTypes.PUBLISH, ContentType="x", UserProperty=[("a", "1")])`."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: object

    def prop(self, name, default=None):
        return getattr(self.properties, name, default) if self.properties is not None else default


class Peer:
    """One paho client. `version` is `MQTTv311` or `MQTTv5`."""

    def __init__(self, port, version, client_id="", *, clean=True, host="127.0.0.1", tls=None):
        self.port, self.host, self.version, self.clean = port, host, version, clean
        kwargs = {}
        if version == MQTTv311:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, **kwargs
        )
        if tls is not None:
            self.client.tls_set(**tls)
        self.messages: "queue.Queue[Msg]" = queue.Queue()
        self._cond = threading.Condition()
        # One thread at a time in paho's socket calls: an OpenSSL connection must not be read
        # by the loop thread while the test thread writes to it (TLS records get corrupted).
        self._io = threading.Lock()
        self._connack = None
        self._suback = {}
        self._pub = {}
        self.disconnected = None
        self._thread = None
        self._stop = threading.Event()
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect

    # callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason, properties):
        with self._cond:
            self._connack = (reason, flags.session_present, properties)
            self._cond.notify_all()

    def _on_message(self, client, userdata, m):
        self.messages.put(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup),
                              getattr(m, "properties", None)))

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self._cond:
            self._suback[mid] = [int(r.value) for r in reasons]
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties):
        with self._cond:
            self._pub[mid] = int(reason.value)
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        with self._cond:
            self.disconnected = int(reason.value)
            self._cond.notify_all()

    def _wait(self, pred, what, timeout=TIMEOUT):
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise TimeoutError(f"no {what} within {timeout}s")

    def _loop(self):
        while not self._stop.is_set():
            with self._io:
                rc = self.client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                with self._cond:
                    if self.disconnected is None:
                        self.disconnected = -int(rc)
                    self._cond.notify_all()
                return

    # operations
    def will(self, topic, payload, qos=0, retain=False, properties=None):
        self.client.will_set(topic, payload, qos=qos, retain=retain, properties=properties)
        return self

    def credentials(self, username, password):
        self.client.username_pw_set(username, password)
        return self

    def connect(self, *, properties=None, keepalive=30, check=True):
        """Connects and waits for CONNACK; returns (reason code, session present, properties).
        For 3.1.1 the reason code is the CONNACK return code (0..5)."""
        kwargs = {}
        if self.version == MQTTv5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = properties
        self.client.connect(self.host, self.port, keepalive=keepalive, **kwargs)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        self._wait(lambda: self._connack is not None or self.disconnected is not None, "CONNACK")
        if self._connack is None:
            raise ConnectionError(f"closed before CONNACK ({self.disconnected})")
        reason, present, p = self._connack
        code = int(reason.value)
        if self.version == MQTTv311:
            code = V311_RETURN_CODE[code]
        if check:
            assert code == 0, f"CONNACK {code:#x} ({reason})"
        else:
            # A refused client must not retry in the background.
            self._stop_loop()
        return code, present, p

    def subscribe(self, topic, qos=1, *, options=None, properties=None):
        """Subscribes (one filter, or a list of (filter, qos|SubscribeOptions)); returns the SUBACK
        codes."""
        with self._io:
            if options is not None:
                rc, mid = self.client.subscribe((topic, options), properties=properties)
            elif isinstance(topic, list):
                rc, mid = self.client.subscribe(topic, properties=properties)
            else:
                rc, mid = self.client.subscribe(topic, qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        self._wait(lambda: mid in self._suback, "SUBACK")
        return self._suback.pop(mid)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and waits for the flow to finish; returns the PUBACK / PUBCOMP reason code
        (0 for QoS 0 once written)."""
        with self._io:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        if qos == 0:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published()
            return 0
        self._wait(lambda: info.mid in self._pub, f"acknowledgement of QoS {qos} publish")
        return self._pub.pop(info.mid)

    def expect(self, n=1, timeout=TIMEOUT):
        """The next `n` messages (fails when fewer arrive in time)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise AssertionError(f"expected {n} messages, got {len(got)}: {got}") from None
        return got

    def drain(self, wait=0.5):
        """Whatever arrives within `wait` seconds."""
        got = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                return got

    def disconnect(self, reason=None, properties=None):
        """DISCONNECT (by default a normal one: no will)."""
        if self._thread is None:
            return
        with self._io:
            self.client.disconnect(reasoncode=reason, properties=properties)
        self._wait(lambda: self.disconnected is not None, "disconnect")
        self._stop_loop()

    def drop(self):
        """Closes the TCP connection without DISCONNECT (an abrupt disconnect)."""
        self._stop_loop()
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def wait_closed(self, timeout=TIMEOUT):
        """Waits until the server closes the connection; returns paho's disconnect code."""
        self._wait(lambda: self.disconnected is not None, "server disconnect", timeout)
        return self.disconnected

    def _stop_loop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(TIMEOUT)
        self._thread = None

    def close(self):
        self.drop()


def pub_props(**values) -> Properties:
    return props(PacketTypes.PUBLISH, **values)


def connect_props(**values) -> Properties:
    return props(PacketTypes.CONNECT, **values)


def sub_props(**values) -> Properties:
    return props(PacketTypes.SUBSCRIBE, **values)


# Raw MQTT: just enough to read the exact CONNACK bytes.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s) -> bytes:
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def connect_packet(version: int, client_id: str, *, username=None, password=None,
                   clean=True, keep_alive=30) -> bytes:
    """A CONNECT packet; `version` is 4 (3.1.1) or 5."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) \
        | (0x40 if password is not None else 0)
    body = _str("MQTT") + bytes([version, flags]) + struct.pack("!H", keep_alive)
    if version == 5:
        body += b"\x00"  # no properties
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return b"\x10" + _varint(len(body)) + body


def read_packet(sock) -> bytes:
    """One whole packet (fixed header included)."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {buf!r}")
            buf += chunk
        return buf

    head = exact(1)
    length, shift, raw = 0, 0, b""
    while True:
        b = exact(1)
        raw += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    return head + raw + exact(length)


def raw_connack(port: int, packet: bytes, host="127.0.0.1", wrap=None) -> bytes:
    """Sends `packet` on a new connection and returns the first packet the server answers."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        if wrap is not None:
            sock = wrap(sock)
        sock.sendall(packet)
        return read_packet(sock)
    finally:
        sock.close()
