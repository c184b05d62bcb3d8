//! MQTT codec throughput: decoding and encoding PUBLISH streams with `mast-protocol`, beside the
//! `mqttbytes` crate (rumqtt's codec) on the same bytes, in packets per second.
//!
//! `cargo bench -p mast-benches --bench mqtt_codec`. Streams of 10,000 QoS 1 PUBLISH packets on
//! `devices/dev-N/telemetry`, 64-byte and 1 KiB payloads, MQTT 3.1.1 and 5 (v5 with a content
//! type and one user property).

use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group};
use mast_protocol::ProtocolVersion;
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, PacketId, Publish};

const N: usize = 10_000;

fn packets(version: ProtocolVersion, size: usize) -> Vec<Publish> {
    (0..N)
        .map(|i| {
            let mut properties = Properties::default();
            if version == ProtocolVersion::V5 {
                properties.content_type = Some(Utf8::new("application/json"));
                properties.user_properties = vec![(Utf8::new("fw"), Utf8::new("1.2.3"))];
            }
            Publish {
                dup: false,
                delivery: Delivery::AtLeastOnce(PacketId(
                    NonZeroU16::new((i % 65_535) as u16 + 1).unwrap_or(NonZeroU16::MIN),
                )),
                retain: false,
                topic: Utf8::new(&format!("devices/dev-{}/telemetry", i % 1000)),
                properties,
                payload: Bytes::from(vec![b'7'; size]),
            }
        })
        .collect()
}

fn stream(version: ProtocolVersion, ps: &[Publish]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in ps {
        packet::encode(&Packet::Publish(p.clone()), version, &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    for (version, vname) in [(ProtocolVersion::V311, "v311"), (ProtocolVersion::V5, "v5")] {
        for size in [64usize, 1024] {
            let ps = packets(version, size);
            let wire = stream(version, &ps);
            let mut g = c.benchmark_group(format!("mqtt_publish_{vname}_{size}B"));
            g.throughput(Throughput::Elements(N as u64));
            g.measurement_time(Duration::from_secs(3));
            g.warm_up_time(Duration::from_secs(1));
            g.bench_function("decode/mast", |b| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&wire[..]);
                    let mut n = 0;
                    while let Ok(Some(p)) = packet::decode(&mut buf, version, u32::MAX >> 4) {
                        black_box(&p);
                        n += 1;
                    }
                    assert_eq!(n, N);
                })
            });
            g.bench_function("decode/mqttbytes", |b| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&wire[..]);
                    let mut n = 0;
                    if version == ProtocolVersion::V5 {
                        while let Ok(p) = mqttbytes::v5::read(&mut buf, 1 << 20) {
                            black_box(&p);
                            n += 1;
                        }
                    } else {
                        while let Ok(p) = mqttbytes::v4::read(&mut buf, 1 << 20) {
                            black_box(&p);
                            n += 1;
                        }
                    }
                    assert_eq!(n, N);
                })
            });
            g.bench_function("encode/mast", |b| {
                let mut out = Vec::with_capacity(wire.len());
                b.iter(|| {
                    out.clear();
                    for p in &ps {
                        packet::encode_publish(p, version, &mut out);
                    }
                    black_box(out.len())
                })
            });
            let theirs4: Vec<mqttbytes::v4::Publish> = ps
                .iter()
                .map(|p| {
                    let mut t = mqttbytes::v4::Publish::from_bytes(
                        p.topic.as_str(),
                        mqttbytes::QoS::AtLeastOnce,
                        p.payload.clone(),
                    );
                    t.pkid = p.delivery.packet_id().map_or(0, |i| i.0.get());
                    t
                })
                .collect();
            let theirs5: Vec<mqttbytes::v5::Publish> = ps
                .iter()
                .map(|p| {
                    let mut t = mqttbytes::v5::Publish::from_bytes(
                        p.topic.as_str(),
                        mqttbytes::QoS::AtLeastOnce,
                        p.payload.clone(),
                    );
                    t.pkid = p.delivery.packet_id().map_or(0, |i| i.0.get());
                    t.properties = Some(mqttbytes::v5::PublishProperties {
                        payload_format_indicator: None,
                        message_expiry_interval: None,
                        topic_alias: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: vec![("fw".into(), "1.2.3".into())],
                        subscription_identifiers: Vec::new(),
                        content_type: Some("application/json".into()),
                    });
                    t
                })
                .collect();
            g.bench_function("encode/mqttbytes", |b| {
                let mut out = BytesMut::with_capacity(wire.len());
                b.iter(|| {
                    out.clear();
                    if version == ProtocolVersion::V5 {
                        for t in &theirs5 {
                            let _ = t.write(&mut out);
                        }
                    } else {
                        for t in &theirs4 {
                            let _ = t.write(&mut out);
                        }
                    }
                    black_box(out.len())
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
