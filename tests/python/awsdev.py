"""A device built on the AWS IoT Device SDK for Python v2 (PyPI `awsiotsdk`): one mutual-TLS
connection, MQTT 3.1.1 (`mqtt_connection_builder`) or 5 (`mqtt5_client_builder`), with SNI
`localhost` and the SDK's defaults (metrics in the user name included), and its V2 service
clients (shadow, identity)."""

import threading

import pytest
from awscrt import mqtt5, mqtt_request_response
from awscrt.mqtt import QoS
from awsiot import V2ServiceException, iotidentity, iotshadow
from awsiot import mqtt5_client_builder, mqtt_connection_builder

TIMEOUT = 20


class Device:
    def __init__(self, version, port, cert, key, ca, client_id):
        common = dict(endpoint="localhost", port=port, cert_filepath=str(cert), pri_key_filepath=str(key),
                      ca_filepath=str(ca), client_id=client_id)
        self.version = version
        if version == "v311":
            self.conn = mqtt_connection_builder.mtls_from_path(clean_session=True, keep_alive_secs=30, **common)
            self.conn.connect().result(TIMEOUT)
        else:
            up = threading.Event()
            self.conn = mqtt5_client_builder.mtls_from_path(
                on_lifecycle_connection_success=lambda _e: up.set(), **common)
            self.conn.start()
            assert up.wait(TIMEOUT), "MQTT 5 connection"
        options = mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=2, max_streaming_subscriptions=2,
            operation_timeout_in_seconds=TIMEOUT)
        self.shadow = iotshadow.IotShadowClientV2(self.conn, options)
        self.identity = iotidentity.IotIdentityClientV2(self.conn, options)

    def publish(self, topic, payload):
        """QoS 1, waiting for the PUBACK."""
        if self.version == "v311":
            fut, _ = self.conn.publish(topic, payload, QoS.AT_LEAST_ONCE)
            fut.result(TIMEOUT)
        else:
            self.conn.publish(mqtt5.PublishPacket(topic=topic, payload=payload,
                                                  qos=mqtt5.QoS.AT_LEAST_ONCE)).result(TIMEOUT)

    def close(self):
        if self.version == "v311":
            self.conn.disconnect().result(TIMEOUT)
        else:
            self.conn.stop()


def refused(future):
    """The error document of a rejected request."""
    with pytest.raises(V2ServiceException) as e:
        future.result(TIMEOUT)
    assert e.value.modeled_error is not None, e.value.message
    return e.value.modeled_error
