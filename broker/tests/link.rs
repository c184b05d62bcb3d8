//! In-process links against the real broker and real MQTT clients (rumqttc over TCP): a service
//! thread answers requests, a reply reaches the one connection that asked, and a full link holds
//! its publishers back instead of dropping anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Broker1, Device, QUIET, WAIT};
use mast_broker::config::MqttConfig;
use mast_broker::link::Link;
use mast_broker::message::Message;
use mast_protocol::connect::QoS;

/// Runs `serve` on each message the link receives, on its own thread, until stopped.
struct Service {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Link>>,
}

impl Service {
    fn spawn(
        mut link: Link,
        mut serve: impl FnMut(&mut Link, mast_broker::link::Received) + Send + 'static,
    ) -> Service {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(r) = link.recv(Duration::from_millis(50)) {
                    serve(&mut link, r);
                }
            }
            link
        });
        Service {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Link {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_reply_reaches_the_requester_and_nobody_else() {
    let b = Broker1::start(MqttConfig::default());
    let mut link = b.broker().open_link("echo");
    assert_eq!(
        link.subscribe("svc/req/+", QoS::AtLeastOnce),
        Ok(QoS::AtLeastOnce)
    );
    let service = Service::spawn(link, |link, r| {
        let body = [b"re:".as_slice(), &r.message.payload].concat();
        if r.message.topic.as_str() == "svc/req/all" {
            link.publish(Message::new("svc/res", body, QoS::AtLeastOnce));
        } else {
            let from = r.from.expect("a client's message names its connection");
            assert!(link.reply(&from, Message::new("svc/res", body, QoS::AtLeastOnce)));
            // A topic the requester did not subscribe to is not delivered, not even to it.
            assert!(!link.reply(&from, Message::new("elsewhere", "x", QoS::AtMostOnce)));
        }
    });

    // Both devices listen on the same, unscoped reply topic.
    let a = Device::connect(b.port(), "dev-a");
    let c = Device::connect(b.port(), "dev-c");
    a.subscribe("svc/res");
    c.subscribe("svc/res");

    a.publish("svc/req/1", b"hello", rumqttc::QoS::AtLeastOnce);
    let got = a.next();
    assert_eq!(got.topic, "svc/res");
    assert_eq!(&got.payload[..], b"re:hello");
    assert!(
        c.nothing(),
        "the other device saw a reply that was not its own"
    );

    c.publish("svc/req/2", b"from c", rumqttc::QoS::AtMostOnce);
    assert_eq!(&c.next().payload[..], b"re:from c");
    assert!(a.nothing());

    // A service's publish goes to every subscriber.
    a.publish("svc/req/all", b"everyone", rumqttc::QoS::AtLeastOnce);
    assert_eq!(&a.next().payload[..], b"re:everyone");
    assert_eq!(&c.next().payload[..], b"re:everyone");

    // The link's own subscription does not echo its publishes back to it.
    let link = service.stop();
    assert_eq!(link.queued(), 0);
}

#[test]
fn a_reply_to_a_connection_that_is_gone_is_not_delivered_to_its_successor() {
    let b = Broker1::start(MqttConfig::default());
    let mut link = b.broker().open_link("late");
    link.subscribe("svc/req", QoS::AtLeastOnce).unwrap();
    let first = Device::connect(b.port(), "dev-r");
    first.subscribe("svc/res");
    first.publish("svc/req", b"1", rumqttc::QoS::AtLeastOnce);
    let req = link.recv(WAIT).expect("the request");
    let from = req.from.expect("requester");
    assert_eq!(&*from.client_id, "dev-r");
    // The same client reconnects (session takeover): the old connection is gone.
    let second = Device::connect(b.port(), "dev-r");
    second.subscribe("svc/res");
    assert!(!link.reply(&from, Message::new("svc/res", "stale", QoS::AtLeastOnce)));
    assert!(second.nothing());
}

#[test]
fn a_full_link_holds_its_publishers_back_and_drops_nothing() {
    const N: usize = 300;
    const BOUND: usize = 8;
    // A link has its own bound; a client's stays as it was.
    let b = Broker1::start(MqttConfig {
        max_service_queued_messages: BOUND,
        max_queued_messages: 10_000,
        ..MqttConfig::default()
    });
    let mut link = b.broker().open_link("slow");
    link.subscribe("load/+", QoS::AtMostOnce).unwrap();
    let publisher = Device::connect(b.port(), "loader");
    for i in 0..N {
        publisher.publish("load/x", i.to_string().as_bytes(), rumqttc::QoS::AtMostOnce);
    }
    // Nobody reads yet: the queue fills to its bound and no further.
    let deadline = Instant::now() + WAIT;
    while link.queued() < BOUND && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(QUIET);
    assert_eq!(link.queued(), BOUND, "the queue is bounded");

    // Read slowly: every message arrives, in order, none dropped.
    let mut got = Vec::new();
    while got.len() < N {
        let r = link.recv(WAIT).expect("every message arrives");
        got.push(String::from_utf8(r.message.payload.to_vec()).unwrap());
        if got.len() % 50 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    let dropped = b
        .broker()
        .counters
        .dropped_queue_full
        .load(Ordering::Relaxed);
    assert_eq!(dropped, 0, "a link is never a slow subscriber");
    assert!(link.try_recv().is_none());
}

#[test]
fn a_dropped_link_leaves_no_subscription_behind() {
    let b = Broker1::start(MqttConfig::default());
    let mut link = b.broker().open_link("gone");
    link.subscribe("svc/#", QoS::AtLeastOnce).unwrap();
    drop(link);
    let d = Device::connect(b.port(), "dev-d");
    d.subscribe("svc/echo");
    // Publishing to the old filter neither blocks nor errs, and reaches the live subscriber.
    d.publish("svc/echo", b"ping", rumqttc::QoS::AtLeastOnce);
    assert_eq!(&d.next().payload[..], b"ping");
}

#[test]
fn the_subscription_cap_is_for_clients_not_links() {
    let b = Broker1::start(MqttConfig {
        max_subscriptions_per_client: 1,
        ..MqttConfig::default()
    });
    let mut link = b.broker().open_link("many");
    for f in ["svc/a", "svc/b", "svc/c"] {
        assert_eq!(
            link.subscribe(f, QoS::AtLeastOnce),
            Ok(QoS::AtLeastOnce),
            "{f}"
        );
    }
}
