"""Device shadows with the real AWS IoT Device SDK for Python v2 (PyPI `awsiotsdk`) as the device:
mutual TLS with a device certificate, `endpoint="localhost"` (SNI) and the SDK's defaults, metrics
in the user name included, on MQTT 3.1.1 (`mqtt_connection_builder`) and MQTT 5
(`mqtt5_client_builder`). The SDK's V2 shadow client subscribes and unsubscribes wildcard reply
topics (`.../get/+`) around every request and matches replies by `clientToken`."""

import datetime
import queue
import threading
from types import SimpleNamespace

import pytest
from awscrt import mqtt_request_response
from awsiot import ServiceStreamOptions, iotshadow

import pki
from awsdev import TIMEOUT, Device, refused


@pytest.fixture
def fleet(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = pki.make_ca(d, "fleet-ca")
    return SimpleNamespace(
        ca=ca,
        server=pki.issue(ca, d, "server", "localhost", server=True),
        devices={name: pki.issue(ca, d, name, name) for name in ["lamp-v311", "lamp-v5"]},
    )


@pytest.fixture
def aws_mast(mast_factory, fleet):
    return mast_factory(tls={"cert": fleet.server.cert_path, "key": fleet.server.key_path,
                             "client_ca": fleet.ca.cert_path, "require_client_cert": True})


def device(version, server, fleet, thing):
    cert = fleet.devices[thing]
    return Device(version, server.tls_port, cert.cert_path, cert.key_path, fleet.ca.cert_path, thing)


@pytest.mark.parametrize("version", ["v311", "v5"])
def test_the_aws_sdk_reports_gets_its_delta_and_converges(aws_mast, fleet, version):
    thing = f"lamp-{version}"
    dev = device(version, aws_mast, fleet, thing)
    try:
        deltas, up = queue.Queue(), threading.Event()

        def status(e):
            if e.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
                up.set()

        stream = dev.shadow.create_shadow_delta_updated_stream(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing),
            ServiceStreamOptions(incoming_event_listener=deltas.put, subscription_status_listener=status))
        stream.open()
        assert up.wait(TIMEOUT), "delta stream subscribed"

        # No shadow yet.
        err = refused(dev.shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)))
        assert err.code == 404 and "No shadow exists with name" in err.message

        r = dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(reported={"led": "off"}))).result(TIMEOUT)
        assert r.version == 1
        assert r.state.reported == {"led": "off"}
        assert isinstance(r.timestamp, datetime.datetime)
        assert abs((r.timestamp - datetime.datetime.now()).total_seconds()) < 60, "epoch seconds"

        # A desired change opens a delta, which reaches the stream.
        r = dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(desired={"led": "on", "level": 3}))).result(TIMEOUT)
        assert r.version == 2
        delta = deltas.get(timeout=TIMEOUT)
        assert (delta.state, delta.version) == ({"led": "on", "level": 3}, 2)

        got = dev.shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(TIMEOUT)
        assert got.state.delta == {"led": "on", "level": 3}
        assert got.state.desired == {"led": "on", "level": 3}
        assert got.state.reported == {"led": "off"}
        assert got.version == 2

        # A stale version is refused; the device converges with the right one.
        err = refused(dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, version=1, state=iotshadow.ShadowState(reported={"led": "on"}))))
        assert (err.code, err.message) == (409, "Version conflict")
        r = dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, version=2,
            state=iotshadow.ShadowState(reported={"led": "on", "level": 3}))).result(TIMEOUT)
        assert r.version == 3
        got = dev.shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(TIMEOUT)
        assert got.state.delta is None, "in sync"

        # Too big, and somebody else's shadow.
        err = refused(dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(reported={"blob": "x" * 9000}))))
        assert err.code == 413
        other = "lamp-v5" if version == "v311" else "lamp-v311"
        err = refused(dev.shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=other, state=iotshadow.ShadowState(reported={"led": "hijacked"}))))
        assert err.code == 403

        # Named shadows are their own documents.
        r = dev.shadow.update_named_shadow(iotshadow.UpdateNamedShadowRequest(
            thing_name=thing, shadow_name="config",
            state=iotshadow.ShadowState(reported={"interval": 60}))).result(TIMEOUT)
        assert r.version == 1
        got = dev.shadow.get_named_shadow(iotshadow.GetNamedShadowRequest(
            thing_name=thing, shadow_name="config")).result(TIMEOUT)
        assert got.state.reported == {"interval": 60}

        # Delete, then the shadow is gone.
        d = dev.shadow.delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing)).result(TIMEOUT)
        assert d.version == 3
        err = refused(dev.shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)))
        assert err.code == 404
    finally:
        dev.close()
