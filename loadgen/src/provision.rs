//! `mast-loadgen provision`: a production run enrolling itself by AWS IoT fleet provisioning,
//! the way the AWS IoT Device SDKs do it. Every device connects over TLS with the shared claim
//! certificate (client id `{prefix}-{n}`), subscribes to the reply topics
//! (`$aws/certificates/create-from-csr/json/+`, `$aws/provisioning-templates/{template}/provision/json/+`),
//! then, all at once: CreateCertificateFromCsr with a CSR of its own key (made before the
//! clock starts), and on its `/accepted`, RegisterThing with the ownership token and
//! `{"SerialNumber": client id}`. An enrolment is counted at RegisterThing's `/accepted`; its
//! latency runs from the CSR's publish. `--keys` uses CreateKeysAndCertificate instead.
//! `--out DIR` keeps each device's certificate and key (`{n:06}.crt`, `.key`) for a later
//! `conn --ssl --certdir DIR` run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::Utf8;
use mio::{Events, Poll};
use serde_json::{Value, json};

use crate::client::{Event, Phase, connect_all, pump};
use crate::opts::ConnOpts;
use crate::round3;
use crate::stats::Hist;

#[derive(Debug, Clone, Args)]
pub(crate) struct ProvisionArgs {
    #[command(flatten)]
    conn: ConnOpts,
    /// Devices (one connection each).
    #[arg(short = 'c', long = "devices", default_value_t = 100)]
    devices: usize,
    /// Client id prefix: ids (and serial numbers) are PREFIX-0 ... PREFIX-{N-1}.
    #[arg(long, default_value = "prov")]
    prefix: String,
    /// The provisioning template to register with.
    #[arg(long, default_value = "factory")]
    template: String,
    /// CreateKeysAndCertificate (the server makes the key) instead of a CSR.
    #[arg(long)]
    keys: bool,
    /// Keep each device's certificate and key in DIR.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up on devices not enrolled after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Creating,
    Registering,
    Done,
    Failed,
}

struct Device {
    stage: Stage,
    started: Instant,
    key_pem: Option<String>,
    cert_pem: Option<String>,
}

pub(crate) fn run_provision(a: ProvisionArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.conn.ssl,
        "provisioning needs --ssl with the claim certificate"
    );
    let dial = a.conn.dial()?;
    // Keys and CSRs before the clock starts: the devices made them in the factory.
    let csrs: Vec<Option<(String, String)>> = (0..a.devices)
        .map(|_| {
            if a.keys {
                return Ok(None);
            }
            let key = rcgen::KeyPair::generate()?;
            let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
            Ok(Some((csr.pem()?, key.serialize_pem())))
        })
        .collect::<Result<_, rcgen::Error>>()?;
    let ids: Vec<(usize, String)> = (0..a.devices)
        .map(|n| (n, format!("{}-{n}", a.prefix)))
        .collect();
    let mut poll = Poll::new()?;
    let t_connect = Instant::now();
    let opened = connect_all(&mut poll, &dial, &ids)?;
    let seconds_to_connect = t_connect.elapsed().as_secs_f64();
    let mut conns = opened.conns;
    let index = opened.index;
    let mut errors = opened.errors;
    let create = if a.keys {
        "$aws/certificates/create/json"
    } else {
        "$aws/certificates/create-from-csr/json"
    };
    let register = format!("$aws/provisioning-templates/{}/provision/json", a.template);
    for c in conns.iter_mut() {
        c.subscribe(&format!("{create}/+"), QoS::AtLeastOnce);
        c.subscribe(&format!("{register}/+"), QoS::AtLeastOnce);
        c.flush()?;
    }
    let mut events = Events::with_capacity(1024);
    let mut subscribed = 0;
    let until = Instant::now() + Duration::from_secs(30);
    while subscribed < 2 * conns.len() && Instant::now() < until {
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            Duration::from_millis(5),
            &mut |_, e| match e {
                Event::Subscribed => subscribed += 1,
                Event::Error(r) | Event::Refused(r) => errors.add(r),
                _ => {}
            },
        )?;
    }
    anyhow::ensure!(
        subscribed == 2 * conns.len(),
        "only {subscribed} of {} subscriptions granted: {}",
        2 * conns.len(),
        errors.text()
    );

    let t0 = Instant::now();
    let create_topic = Utf8::new(create);
    let register_topic = Utf8::new(&register);
    let mut devices: Vec<Device> = Vec::with_capacity(conns.len());
    for (k, c) in conns.iter_mut().enumerate() {
        let (payload, key_pem) = match &csrs[index[k]] {
            Some((csr, key)) => (
                json!({ "certificateSigningRequest": csr }).to_string(),
                Some(key.clone()),
            ),
            None => ("{}".to_owned(), None),
        };
        devices.push(Device {
            stage: Stage::Creating,
            started: Instant::now(),
            key_pem,
            cert_pem: None,
        });
        c.publish(&create_topic, Bytes::from(payload), 1, false);
        if !c.write_blocked {
            c.flush()?;
        }
    }
    let mut latency = Hist::default();
    let mut created = 0u64;
    let mut done = 0usize;
    let mut failed = 0usize;
    let mut last_done = t0;
    let deadline = t0 + Duration::from_secs(a.timeout);
    while done + failed < devices.len() && Instant::now() < deadline {
        let mut next: Vec<(usize, Bytes)> = Vec::new();
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            Duration::from_millis(1),
            &mut |k, e| match e {
                Event::Message { topic, payload } => {
                    let d = &mut devices[k];
                    let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                    let accepted = topic.as_str().ends_with("/accepted");
                    if !accepted {
                        errors.add(format!(
                            "{} {}",
                            topic.as_str().rsplit('/').nth(1).unwrap_or("?"),
                            v["errorCode"].as_str().unwrap_or("rejected")
                        ));
                        d.stage = Stage::Failed;
                        failed += 1;
                        return;
                    }
                    match d.stage {
                        Stage::Creating => {
                            created += 1;
                            d.cert_pem = v["certificatePem"].as_str().map(str::to_owned);
                            if let Some(k) = v["privateKey"].as_str() {
                                d.key_pem = Some(k.to_owned());
                            }
                            let body = json!({
                                "certificateOwnershipToken": v["certificateOwnershipToken"],
                                "parameters": {"SerialNumber": ids[index[k]].1},
                            });
                            d.stage = Stage::Registering;
                            next.push((k, Bytes::from(body.to_string())));
                        }
                        Stage::Registering => {
                            d.stage = Stage::Done;
                            done += 1;
                            last_done = Instant::now();
                            latency.record(d.started.elapsed().as_micros() as u64);
                        }
                        Stage::Done | Stage::Failed => {}
                    }
                }
                Event::Error(r) => errors.add(r),
                _ => {}
            },
        )?;
        for (k, body) in next {
            let c = &mut conns[k];
            c.publish(&register_topic, body, 1, false);
            if !c.write_blocked {
                c.flush()?;
            }
        }
        if conns.iter().all(|c| c.phase != Phase::Connected) {
            break;
        }
    }
    let seconds = last_done.duration_since(t0).as_secs_f64();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)?;
        for (k, d) in devices.iter().enumerate() {
            if let (Stage::Done, Some(cert), Some(key)) = (d.stage, &d.cert_pem, &d.key_pem) {
                let n = index[k];
                std::fs::write(dir.join(format!("{n:06}.crt")), cert)?;
                std::fs::write(dir.join(format!("{n:06}.key")), key)?;
            }
        }
    }
    let out = json!({
        "verb": "provision",
        "flow": if a.keys { "create-keys" } else { "csr" },
        "devices": a.devices,
        "connected": conns.len(),
        "seconds_to_connect": round3(seconds_to_connect),
        "tls_connect_latency_us": opened.connect_us.json(),
        "created": created,
        "enrolled": done,
        "failed": failed + (devices.len() - done - failed),
        "seconds": round3(seconds),
        "enrolments_per_sec": (done as f64 / seconds.max(1e-9)).round() as u64,
        "enrolment_latency_us": latency.json(),
        "errors": errors.json(),
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "provision: {done} of {} enrolled in {:.2}s ({:.0}/s); CSR→registered {}; errors: {}",
            a.devices,
            seconds,
            done as f64 / seconds.max(1e-9),
            latency.text(),
            errors.text()
        );
    }
    anyhow::ensure!(done > 0, "no device enrolled");
    Ok(())
}
