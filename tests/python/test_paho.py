"""paho-mqtt 2.x against `mast serve`, on MQTT 3.1.1 and 5.0: delivery at every QoS, retained
messages, wills, persistent sessions (across restarts too), shared subscriptions, the MQTT 5
properties, authentication and topic rules."""

import itertools
import time

import pytest
from paho.mqtt.client import MQTTv5, MQTTv311
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttc import connect_packet, connect_props, pub_props, raw_connack, sub_props

V311_NOT_AUTHORIZED = 5
V311_BAD_CREDENTIALS = 4
NOT_AUTHORIZED = 0x87
BAD_USER_NAME_OR_PASSWORD = 0x86

_ids = itertools.count()


def cid(prefix):
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(params=[MQTTv311, MQTTv5], ids=["v311", "v5"])
def version(request):
    return request.param


def persistent(version):
    """CONNECT settings for a session that outlives the connection."""
    if version == MQTTv5:
        return {"clean": False}, {"properties": connect_props(SessionExpiryInterval=300)}
    return {"clean": False}, {}


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip_at_each_qos_keeps_payloads_and_order(mast, peers, version, qos):
    sub = peers(mast.port, version, cid("sub"))
    sub.connect()
    assert sub.subscribe("rt/+/data", qos=2) == [2]
    pub = peers(mast.port, version, cid("pub"))
    pub.connect()
    payloads = [b"hello", bytes(range(256)), b"x" * 100_000, b""]
    for i, p in enumerate(payloads):
        assert pub.publish(f"rt/{i}/data", p, qos=qos) == 0
    got = sub.expect(len(payloads))
    assert [m.payload for m in got] == payloads
    assert [m.topic for m in got] == [f"rt/{i}/data" for i in range(len(payloads))]
    assert {m.qos for m in got} == {qos}
    assert not any(m.retain for m in got)
    assert not any(m.dup for m in got)
    assert sub.drain(0.3) == []


def test_retained_message_is_set_replaced_and_cleared(mast, peers, version):
    pub = peers(mast.port, version, cid("pub"))
    pub.connect()
    live = peers(mast.port, version, cid("live"))
    live.connect()
    assert live.subscribe("ret/#", qos=1) == [1]

    assert pub.publish("ret/lamp", b"on", qos=1, retain=True) == 0
    assert pub.publish("ret/door", b"shut", qos=0, retain=True) == 0
    # An existing subscription gets it as a normal message (retain flag 0).
    got = live.expect(2)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("ret/lamp", b"on", False), ("ret/door", b"shut", False)]

    late = peers(mast.port, version, cid("late"))
    late.connect()
    late.subscribe("ret/#", qos=1)
    got = sorted(late.expect(2), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("ret/door", b"shut", True), ("ret/lamp", b"on", True)]
    assert {m.qos for m in got} == {0, 1}, "delivered at min(published, granted) QoS"

    pub.publish("ret/lamp", b"off", qos=1, retain=True)
    pub.publish("ret/door", b"", qos=1, retain=True)  # clears
    fresh = peers(mast.port, version, cid("fresh"))
    fresh.connect()
    fresh.subscribe("ret/#", qos=1)
    got = fresh.expect(1)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("ret/lamp", b"off", True)]
    assert fresh.drain(0.4) == []

    pub.publish("ret/lamp", b"", qos=0, retain=True)
    empty = peers(mast.port, version, cid("empty"))
    empty.connect()
    empty.subscribe("ret/#", qos=1)
    assert empty.drain(0.4) == []


def test_will_is_published_on_abrupt_disconnect_only(mast, peers, version):
    watcher = peers(mast.port, version, cid("watch"))
    watcher.connect()
    assert watcher.subscribe("wills/#", qos=1) == [1]

    polite = peers(mast.port, version, cid("polite")).will("wills/polite", b"bye", qos=1)
    polite.connect()
    polite.disconnect()

    dev = peers(mast.port, version, cid("dev")).will("wills/dev", b"gone", qos=1, retain=True)
    dev.connect()
    dev.drop()
    got = watcher.expect(1)
    assert [(m.topic, m.payload, m.qos) for m in got] == [("wills/dev", b"gone", 1)]
    assert watcher.drain(0.4) == [], "no will after a normal DISCONNECT"

    later = peers(mast.port, version, cid("later"))
    later.connect()
    later.subscribe("wills/#", qos=1)
    got = later.expect(1)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("wills/dev", b"gone", True)]


def test_persistent_session_receives_qos1_published_while_offline(mast, peers, version):
    sid = cid("persist")
    kw, ckw = persistent(version)
    s = peers(mast.port, version, sid, **kw)
    _, present, _ = s.connect(**ckw)
    assert present is False
    assert s.subscribe("off/#", qos=1) == [1]
    s.disconnect()

    pub = peers(mast.port, version, cid("pub"))
    pub.connect()
    for i in range(3):
        pub.publish(f"off/{i}", f"m{i}".encode(), qos=1)

    back = peers(mast.port, version, sid, **kw)
    _, present, _ = back.connect(**ckw)
    assert present is True
    got = back.expect(3)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(f"off/{i}", f"m{i}".encode(), 1) for i in range(3)]
    assert back.drain(0.4) == []


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_persistent_session_and_its_queue_survive_a_restart(mast, peers, version, hard):
    sid = cid("durable")
    kw, ckw = persistent(version)
    s = peers(mast.port, version, sid, **kw)
    s.connect(**ckw)
    assert s.subscribe("dur/#", qos=1) == [1]
    s.disconnect()

    pub = peers(mast.port, version, cid("pub"))
    pub.connect()
    for i in range(3):
        # PUBACK comes once the message is durable, so even SIGKILL must not lose it.
        assert pub.publish(f"dur/{i}", f"before-{i}".encode(), qos=1) == 0
    pub.drop()

    mast.restart(hard=hard)

    back = peers(mast.port, version, sid, **kw)
    _, present, _ = back.connect(**ckw)
    assert present is True
    got = back.expect(3)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(f"dur/{i}", f"before-{i}".encode(), 1) for i in range(3)]
    # The subscription itself was restored: no new SUBSCRIBE needed.
    pub2 = peers(mast.port, version, cid("pub"))
    pub2.connect()
    pub2.publish("dur/after", b"after", qos=1)
    assert [m.payload for m in back.expect(1)] == [b"after"]


def test_shared_subscription_splits_messages_between_members(mast, peers, version):
    pub = peers(mast.port, version, cid("pub"))
    pub.connect()
    pub.publish("jobs/old", b"retained", qos=1, retain=True)
    members = [peers(mast.port, version, cid(f"member{i}")) for i in range(2)]
    for m in members:
        m.connect()
        assert m.subscribe("$share/g/jobs/+", qos=1) == [1]
    plain = peers(mast.port, version, cid("plain"))
    plain.connect()
    plain.subscribe("jobs/+", qos=1)
    assert [(m.payload, m.retain) for m in plain.expect(1)] == [(b"retained", True)]
    # MQTT 5.0 §4.8.2: retained messages are not sent to a shared subscription when it is made.
    assert [m.drain(0.2) for m in members] == [[], []]

    sent = [f"job-{i}".encode() for i in range(10)]
    for i, p in enumerate(sent):
        pub.publish(f"jobs/{i % 3}", p, qos=1)

    assert [m.payload for m in plain.expect(10)] == sent, "a plain subscription gets every message"
    time.sleep(0.3)
    shares = [[x.payload for x in m.drain(0.2)] for m in members]
    assert sorted(shares[0] + shares[1]) == sorted(sent), "each message goes to exactly one member"
    assert shares[0] and shares[1], f"both members get some: {shares}"
    for share in shares:
        assert share == [p for p in sent if p in share], "order kept within a member"


# MQTT 5 properties


def test_v5_user_properties_content_type_and_payload_format(mast, peers):
    sub = peers(mast.port, MQTTv5, cid("sub"))
    sub.connect()
    sub.subscribe("props/x", qos=1)
    pub = peers(mast.port, MQTTv5, cid("pub"))
    pub.connect()
    user = [("site", "north"), ("unit", "°C"), ("site", "again")]
    rc = pub.publish("props/x", "21.5 °C".encode(), qos=1, properties=pub_props(
        UserProperty=user, ContentType="text/plain; charset=utf-8", PayloadFormatIndicator=1))
    assert rc == 0
    (m,) = sub.expect(1)
    assert m.payload == "21.5 °C".encode()
    assert m.prop("UserProperty") == user, "all pairs, in order, duplicates kept"
    assert m.prop("ContentType") == "text/plain; charset=utf-8"
    assert m.prop("PayloadFormatIndicator") == 1


def test_v5_request_response_with_correlation_data(mast, peers):
    responder = peers(mast.port, MQTTv5, cid("responder"))
    responder.connect()
    responder.subscribe("svc/time/req", qos=1)
    requester = peers(mast.port, MQTTv5, cid("requester"))
    requester.connect()
    requester.subscribe("svc/time/resp/me", qos=1)

    requester.publish("svc/time/req", b"now?", qos=1, properties=pub_props(
        ResponseTopic="svc/time/resp/me", CorrelationData=b"\x00\x01req-42"))
    (req,) = responder.expect(1)
    assert req.payload == b"now?"
    assert req.prop("ResponseTopic") == "svc/time/resp/me"
    assert req.prop("CorrelationData") == b"\x00\x01req-42"
    responder.publish(req.prop("ResponseTopic"), b"12:00", qos=1,
                      properties=pub_props(CorrelationData=req.prop("CorrelationData")))
    (resp,) = requester.expect(1)
    assert (resp.topic, resp.payload, resp.prop("CorrelationData")) == ("svc/time/resp/me", b"12:00", b"\x00\x01req-42")


def test_v5_message_expiry_is_counted_down_and_enforced(mast, peers):
    sid = cid("exp")
    s = peers(mast.port, MQTTv5, sid, clean=False)
    s.connect(properties=connect_props(SessionExpiryInterval=300))
    s.subscribe("exp/#", qos=1)
    s.disconnect()

    pub = peers(mast.port, MQTTv5, cid("pub"))
    pub.connect()
    pub.publish("exp/short", b"short", qos=1, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("exp/long", b"long", qos=1, properties=pub_props(MessageExpiryInterval=60))
    pub.publish("exp/none", b"none", qos=1)
    pub.publish("exp-ret/short", b"stale", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("exp-ret/long", b"fresh", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=60))
    time.sleep(2.2)

    back = peers(mast.port, MQTTv5, sid, clean=False)
    _, present, _ = back.connect(properties=connect_props(SessionExpiryInterval=300))
    assert present is True
    got = back.expect(2)
    assert [m.payload for m in got] == [b"long", b"none"], "the expired message is dropped"
    remaining = got[0].prop("MessageExpiryInterval")
    assert remaining is not None and 55 <= remaining < 60, f"expiry counted down: {remaining}"
    assert got[1].prop("MessageExpiryInterval") is None
    assert back.drain(0.3) == []

    late = peers(mast.port, MQTTv5, cid("late"))
    late.connect()
    late.subscribe("exp-ret/#", qos=1)
    got = late.expect(1)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("exp-ret/long", b"fresh", True)]
    assert late.drain(0.3) == [], "an expired retained message is not sent"


def test_v5_subscription_identifiers_name_the_matching_subscriptions(mast, peers):
    sub = peers(mast.port, MQTTv5, cid("sub"))
    sub.connect()
    assert sub.subscribe("sid/+/temp", qos=1, properties=sub_props(SubscriptionIdentifier=7)) == [1]
    assert sub.subscribe("sid/#", qos=1, properties=sub_props(SubscriptionIdentifier=300)) == [1]
    assert sub.subscribe("sid/a/none", qos=1) == [1]
    pub = peers(mast.port, MQTTv5, cid("pub"))
    pub.connect()

    pub.publish("sid/a/temp", b"both", qos=1)
    pub.publish("sid/b/hum", b"wide", qos=1)
    pub.publish("sid/a/none", b"mixed", qos=1)
    got = sub.drain(1.0)
    by = {}
    for m in got:
        by.setdefault(m.payload, []).extend(m.prop("SubscriptionIdentifier") or [])
    # Overlapping subscriptions: one message carrying both ids, or one message per subscription.
    assert sorted(by[b"both"]) == [7, 300]
    assert by[b"wide"] == [300]
    assert sorted(by[b"mixed"]) == [300], "a subscription without an id adds none"
    assert {m.payload for m in got} == {b"both", b"wide", b"mixed"}


def test_v5_no_local_suppresses_own_messages(mast, peers):
    me = peers(mast.port, MQTTv5, cid("me"))
    me.connect()
    assert me.subscribe("chat/room", options=SubscribeOptions(qos=1, noLocal=True)) == [1]
    other = peers(mast.port, MQTTv5, cid("other"))
    other.connect()
    other.subscribe("chat/room", qos=1)

    me.publish("chat/room", b"from me", qos=1)
    other.publish("chat/room", b"from other", qos=1)
    assert [m.payload for m in me.expect(1)] == [b"from other"]
    assert me.drain(0.3) == [], "own message not echoed"
    assert sorted(m.payload for m in other.expect(2)) == [b"from me", b"from other"], "no-local is per subscription"


def test_v5_session_without_expiry_ends_at_disconnect(mast, peers):
    sid = cid("brief")
    s = peers(mast.port, MQTTv5, sid, clean=False)
    s.connect()  # clean start 0 but no Session Expiry Interval: expiry 0
    s.subscribe("brief/#", qos=1)
    s.disconnect()
    pub = peers(mast.port, MQTTv5, cid("pub"))
    pub.connect()
    assert pub.publish("brief/x", b"lost", qos=1) == 0x10, "no matching subscribers"
    back = peers(mast.port, MQTTv5, sid, clean=False)
    _, present, _ = back.connect()
    assert present is False
    assert back.drain(0.4) == []


def test_v5_disconnect_with_will_message_publishes_the_will(mast, peers):
    watcher = peers(mast.port, MQTTv5, cid("watch"))
    watcher.connect()
    watcher.subscribe("wills/#", qos=1)
    dev = peers(mast.port, MQTTv5, cid("dev")).will(
        "wills/v5", b"asked for", qos=1, properties=pub_props(UserProperty=[("why", "test")]))
    dev.connect()
    dev.disconnect(reason=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    (m,) = watcher.expect(1)
    assert (m.topic, m.payload, m.qos, m.prop("UserProperty")) == ("wills/v5", b"asked for", 1, [("why", "test")])


# Authentication and authorization


def test_password_is_checked_against_configured_users(mast_factory, password_hash, peers, version):
    srv = mast_factory(users={"fleet": password_hash("s3cret")})
    ok = peers(srv.port, version, cid("ok")).credentials("fleet", "s3cret")
    assert ok.connect()[0] == 0

    wrong = peers(srv.port, version, cid("wrong")).credentials("fleet", "guess")
    code, present, _ = wrong.connect(check=False)
    assert code == (V311_BAD_CREDENTIALS if version == MQTTv311 else BAD_USER_NAME_OR_PASSWORD)
    assert present is False

    anon = peers(srv.port, version, cid("anon"))
    code, _, _ = anon.connect(check=False)
    assert code == (V311_NOT_AUTHORIZED if version == MQTTv311 else NOT_AUTHORIZED), "no anonymous access with users"

    # The exact bytes on the wire: CONNACK, session present 0, the code (v5: empty properties).
    level = 4 if version == MQTTv311 else 5
    raw = raw_connack(srv.port, connect_packet(level, cid("raw"), username="fleet", password="nope"))
    assert raw == (b"\x20\x02\x00\x04" if version == MQTTv311 else b"\x20\x03\x00\x86\x00")


def test_acl_limits_publish_and_subscribe_to_own_topics(mast_factory, peers, version):
    srv = mast_factory(acl=[{"publish": ["devices/%c/#"], "subscribe": ["devices/#"]}])
    watcher = peers(srv.port, version, "watcher")
    watcher.connect()
    assert watcher.subscribe("devices/#", qos=1) == [1]
    denied = 0x87 if version == MQTTv5 else 0x80
    assert watcher.subscribe("other/#", qos=1) == [denied]

    dev = peers(srv.port, version, "dev7")
    dev.connect()
    assert dev.publish("devices/dev7/temp", b"21", qos=1) == 0
    rc = dev.publish("devices/dev8/temp", b"spoof", qos=1)
    assert rc == (NOT_AUTHORIZED if version == MQTTv5 else 0), "3.1.1 PUBACK has no reason code"
    assert dev.publish("devices/dev7/hum", b"40", qos=0) == 0
    got = watcher.expect(2)
    assert [(m.topic, m.payload) for m in got] == [("devices/dev7/temp", b"21"), ("devices/dev7/hum", b"40")]
    assert watcher.drain(0.4) == [], "the denied message is dropped"
