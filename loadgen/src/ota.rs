//! `mast-loadgen ota`: a fleet running jobs the way devices on the AWS IoT Device SDKs do.
//! Each device is one connection (client id `{prefix}_{i}`, the thing name) subscribed at QoS
//! 1 to `$aws/things/{id}/jobs/notify-next`. On a next execution it publishes `start-next`;
//! with the execution it downloads the firmware its document names (the URL with its token,
//! in two `Range` halves, the second with `If-Range`, the SHA-256 checked), "installs" for
//! `--work-ms`, and publishes `update` with SUCCEEDED — or FAILED, REJECTED, or nothing at
//! all (the server times it out), at the rates given. A device's outcome for an execution is
//! fixed by its index, the job and the execution number, so reruns are the same.
//!
//! Replies come without a subscription (as AWS sends them, and the embedded OTA agent relies
//! on). Measured: executions started and finished by outcome, finished executions per second,
//! request → reply latency (start-next and update, durable replies), downloads (count, MB/s).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use mast_protocol::primitives::Utf8;
use mio::{Events, Poll};
use serde_json::{Value, json};

use crate::client::{Conn, Event, Fleet, Phase, pump};
use crate::opts::ConnOpts;
use crate::stats::{Counters, Errors, Hist, Shown, timeline_json};

#[derive(Debug, Clone, Args)]
pub(crate) struct OtaArgs {
    #[command(flatten)]
    conn: ConnOpts,
    /// Devices (one connection each).
    #[arg(
        short = 'c',
        long = "devices",
        visible_alias = "count",
        default_value_t = 100
    )]
    devices: usize,
    /// Client id (= thing name) prefix: ids are PREFIX_0 ... PREFIX_{N-1}.
    #[arg(long, default_value = "ota")]
    prefix: String,
    /// Percent of executions a device reports FAILED.
    #[arg(long, default_value_t = 0.0)]
    fail: f64,
    /// Percent it REJECTS (before downloading).
    #[arg(long, default_value_t = 0.0)]
    reject: f64,
    /// Percent it never finishes (the server's timers end them).
    #[arg(long, default_value_t = 0.0)]
    hang: f64,
    /// Milliseconds between the download and the final update ("installing").
    #[arg(long, default_value_t = 200)]
    work_ms: u64,
    /// Download the artifact a firmware job's document names (HTTP, two Range halves).
    #[arg(long)]
    download: bool,
    /// Download threads per worker thread.
    #[arg(long, default_value_t = 8)]
    downloaders: usize,
    /// The longest run, seconds (after every device is connected and subscribed).
    #[arg(short = 'd', long, default_value_t = 60)]
    duration: u64,
    /// End earlier: this many seconds after the last job message, once one came (0: never).
    #[arg(long, default_value_t = 0)]
    idle_exit: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// What a device does with an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeed,
    Fail,
    Reject,
    Hang,
}

impl Outcome {
    /// The outcome of device `k` for execution `number` of `job`: a hash into the rates.
    fn of(a: &OtaArgs, k: usize, job: &str, number: u64) -> Outcome {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in job
            .bytes()
            .chain(k.to_le_bytes())
            .chain(number.to_le_bytes())
        {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let x = (h % 10_000) as f64 / 100.0;
        if x < a.fail {
            Outcome::Fail
        } else if x < a.fail + a.reject {
            Outcome::Reject
        } else if x < a.fail + a.reject + a.hang {
            Outcome::Hang
        } else {
            Outcome::Succeed
        }
    }

    fn status(self) -> &'static str {
        match self {
            Outcome::Succeed => "SUCCEEDED",
            Outcome::Fail => "FAILED",
            Outcome::Reject => "REJECTED",
            Outcome::Hang => "IN_PROGRESS",
        }
    }
}

/// Where a device is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    /// start-next sent.
    Starting,
    /// Running (job, execution number) toward an outcome.
    Running(String, u64, Outcome),
    /// Silent on (job, execution number) until the server ends it.
    Hung(String, u64),
}

struct Device {
    id: String,
    state: State,
    /// The final update is due then.
    due: Option<Instant>,
    result_code: &'static str,
}

#[derive(Debug, Default)]
struct Totals {
    notified: u64,
    started: u64,
    succeeded: u64,
    failed: u64,
    rejected: u64,
    hung: u64,
    requests: u64,
    replies: u64,
    refused: u64,
    downloads: u64,
    download_bytes: u64,
    bad_downloads: u64,
    /// request → reply, µs.
    latency: Hist,
    /// Per download, µs.
    download_us: Hist,
    /// µs after t0 of the first notify-next with an execution and of the last finished
    /// update.
    first_us: Option<u64>,
    last_us: u64,
    errors: Errors,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.notified += o.notified;
        self.started += o.started;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.rejected += o.rejected;
        self.hung += o.hung;
        self.requests += o.requests;
        self.replies += o.replies;
        self.refused += o.refused;
        self.downloads += o.downloads;
        self.download_bytes += o.download_bytes;
        self.bad_downloads += o.bad_downloads;
        self.latency.merge(&o.latency);
        self.download_us.merge(&o.download_us);
        self.first_us = match (self.first_us, o.first_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_us = self.last_us.max(o.last_us);
        self.errors.merge(o.errors);
    }

    fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.rejected
    }
}

/// A download to do: device, URL, expected SHA-256 (hex).
type Job = (usize, String, String);
/// Its result: device, bytes and whether the digest matched, or why not, and µs taken.
type Done = (usize, Result<(u64, bool), String>, u64);

/// Downloads `url` in two halves (the second resuming with `If-Range`), checking `sha256`.
fn download(url: &str, sha256: &str) -> Result<(u64, bool), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are downloaded")?;
    let (addr, path) = rest.split_at(rest.find('/').ok_or("a URL without a path")?);
    let get = |range: &str, extra: &str| {
        crate::sql::exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nrange: {range}\r\n{extra}"),
            b"",
        )
        .map_err(|e| e.to_string())
    };
    let (status, head, first) = get("bytes=0-0", "")?;
    if status != "206" {
        return Err(format!("http {status}"));
    }
    // `content-range: bytes 0-0/SIZE`.
    let size: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-range: bytes 0-0/"))
        .and_then(|s| s.trim().parse().ok())
        .ok_or("no content-range")?;
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    let half = size / 2;
    let mut body = first;
    if size > 1 {
        let (s1, _, a) = get(&format!("bytes=1-{}", half.max(1)), "")?;
        let (s2, _, b) = if half + 1 < size {
            get(
                &format!("bytes={}-", half + 1),
                &format!("if-range: {etag}\r\n"),
            )?
        } else {
            ("206".into(), String::new(), Vec::new())
        };
        if s1 != "206" || s2 != "206" {
            return Err(format!("http {s1}/{s2}"));
        }
        body.extend_from_slice(&a);
        body.extend_from_slice(&b);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((
        body.len() as u64,
        hex == sha256 && body.len() as u64 == size,
    ))
}

/// `n` download threads fed by the returned sender, answering on `done`.
fn downloaders(n: usize, done: Sender<Done>) -> Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..n.max(1) {
        let (rx, done) = (Arc::clone(&rx), done.clone());
        std::thread::spawn(move || {
            loop {
                let next = rx.lock().map(|r| r.recv());
                let Ok(Ok((k, url, sha))) = next else {
                    return;
                };
                let t = Instant::now();
                let r = download(&url, &sha);
                if done.send((k, r, t.elapsed().as_micros() as u64)).is_err() {
                    return;
                }
            }
        });
    }
    tx
}

fn token_us(payload: &Value) -> Option<u64> {
    payload["clientToken"].as_str()?.get(1..)?.parse().ok()
}

pub(crate) fn run_ota(a: OtaArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        a.fail >= 0.0 && a.reject >= 0.0 && a.hang >= 0.0 && a.fail + a.reject + a.hang <= 100.0,
        "--fail, --reject and --hang are percentages adding up to at most 100"
    );
    let dial = a.conn.dial()?;
    let shown: Shown = [Some("requests"), Some("replies"), None];
    let fleet = Fleet {
        dial: &dial,
        threads: a.conn.threads,
        devices: a.devices,
        prefix: &a.prefix,
        label: "ota",
        shown,
        planned: Duration::from_secs(a.duration),
    };
    let args = a.clone();
    let (worked, timeline) = fleet.run(
        |id| vec![format!("$aws/things/{id}/jobs/notify-next")],
        move |poll, conns, names, counters| {
            let mut devices: Vec<Device> = names
                .iter()
                .map(|(_, id)| Device {
                    id: id.clone(),
                    state: State::Idle,
                    due: None,
                    result_code: "ok",
                })
                .collect();
            drive(&args, Instant::now(), poll, conns, &mut devices, counters)
        },
    )?;
    let mut total = Totals::default();
    let mut elapsed = Duration::ZERO;
    for (t, e) in worked {
        total.add(t);
        elapsed = elapsed.max(e);
    }
    report(&a, &total, elapsed, &timeline, &shown);
    Ok(())
}

/// Queues a QoS 1 publish and writes it out (the next pump retries a blocked write).
fn publish(c: &mut Conn, topic: &str, body: &Value) -> anyhow::Result<()> {
    c.publish(&Utf8::new(topic), Bytes::from(body.to_string()), 1, false);
    if c.phase == Phase::Connected && !c.write_blocked {
        c.flush()?;
    }
    Ok(())
}

/// Sends and receives until the end: the devices' side of the jobs protocol.
fn drive(
    a: &OtaArgs,
    t0: Instant,
    poll: &mut Poll,
    conns: &mut [Conn],
    devices: &mut [Device],
    counters: &Counters,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    let mut events = Events::with_capacity(1024);
    let end = t0 + Duration::from_secs(a.duration);
    let (done_tx, done_rx): (Sender<Done>, Receiver<Done>) = mpsc::channel();
    let jobs = a.download.then(|| downloaders(a.downloaders, done_tx));
    let work = Duration::from_millis(a.work_ms);
    let mut due: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut reported = [0u64; 2];
    let mut last_message = Instant::now();
    let mut seen_job = false;
    loop {
        let now = Instant::now();
        let us = now.duration_since(t0).as_micros() as u64;
        if now >= end
            || (a.idle_exit > 0
                && seen_job
                && now.duration_since(last_message) > Duration::from_secs(a.idle_exit))
        {
            break;
        }
        // Final updates that are due (queued in due order: the work time is the same).
        while due.front().is_some_and(|(d, _)| *d <= now) {
            let Some((_, k)) = due.pop_front() else { break };
            let d = &mut devices[k];
            if let State::Running(job, _, outcome) = &d.state {
                let body = json!({"status": outcome.status(), "clientToken": format!("u{us}"),
                    "statusDetails": {"result_code": d.result_code}});
                let topic = format!("$aws/things/{}/jobs/{job}/update", d.id);
                publish(&mut conns[k], &topic, &body)?;
                t.requests += 1;
            }
            d.due = None;
        }
        while let Ok((k, r, took)) = done_rx.try_recv() {
            t.download_us.record(took);
            match r {
                Ok((bytes, ok)) => {
                    t.downloads += 1;
                    t.download_bytes += bytes;
                    if !ok {
                        t.bad_downloads += 1;
                        devices[k].result_code = "bad_sha256";
                        if let State::Running(_, _, o) = &mut devices[k].state {
                            *o = Outcome::Fail;
                        }
                    }
                }
                Err(e) => {
                    t.errors.add(format!("download: {e}"));
                    devices[k].result_code = "download_failed";
                    if let State::Running(_, _, o) = &mut devices[k].state {
                        *o = Outcome::Fail;
                    }
                }
            }
            devices[k].due = Some(now + work);
            due.push_back((now + work, k));
        }
        let mut outbox: Vec<(usize, String, Value)> = Vec::new();
        pump(
            poll,
            &mut events,
            conns,
            Duration::from_millis(1),
            &mut |k, e| match e {
                Event::Message { topic, payload } => {
                    last_message = Instant::now();
                    let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
                        t.errors.add("a reply that is not JSON");
                        return;
                    };
                    let topic = topic.as_str();
                    let now_us = t0.elapsed().as_micros() as u64;
                    let d = &mut devices[k];
                    if topic.ends_with("/notify-next") {
                        let Some(e) = v.get("execution") else {
                            return;
                        };
                        seen_job = true;
                        t.first_us.get_or_insert(now_us);
                        t.notified += 1;
                        let key = (
                            e["jobId"].as_str().unwrap_or("").to_owned(),
                            e["executionNumber"].as_u64().unwrap_or(0),
                        );
                        let idle = match &d.state {
                            State::Idle => true,
                            State::Hung(j, n) => (j.clone(), *n) != key,
                            _ => false,
                        };
                        if idle {
                            d.state = State::Starting;
                            let topic = format!("$aws/things/{}/jobs/start-next", d.id);
                            outbox.push((k, topic, json!({"clientToken": format!("s{now_us}")})));
                            t.requests += 1;
                        }
                        return;
                    }
                    let accepted = topic.ends_with("/accepted");
                    if !accepted && !topic.ends_with("/rejected") {
                        return;
                    }
                    t.replies += 1;
                    if let Some(sent) = token_us(&v) {
                        t.latency.record(now_us.saturating_sub(sent));
                    }
                    if !accepted {
                        t.refused += 1;
                        t.errors
                            .add(format!("rejected {}", v["code"].as_str().unwrap_or("?")));
                        d.state = State::Idle;
                        return;
                    }
                    if topic.ends_with("/start-next/accepted") {
                        let Some(e) = v.get("execution") else {
                            d.state = State::Idle;
                            return;
                        };
                        let job = e["jobId"].as_str().unwrap_or("").to_owned();
                        let number = e["executionNumber"].as_u64().unwrap_or(0);
                        let outcome = Outcome::of(a, k, &job, number);
                        t.started += 1;
                        d.result_code = match outcome {
                            Outcome::Fail => "self_test_failed",
                            Outcome::Reject => "incompatible",
                            _ => "ok",
                        };
                        match outcome {
                            Outcome::Hang => {
                                t.hung += 1;
                                d.state = State::Hung(job, number);
                            }
                            Outcome::Reject => {
                                d.state = State::Running(job, number, outcome);
                                d.due = Some(Instant::now());
                                due.push_front((Instant::now(), k));
                            }
                            _ => {
                                let fw = &e["jobDocument"]["firmware"];
                                d.state = State::Running(job, number, outcome);
                                match (&jobs, fw["url"].as_str(), fw["sha256"].as_str()) {
                                    (Some(tx), Some(url), Some(sha)) => {
                                        let _ = tx.send((k, url.to_owned(), sha.to_owned()));
                                    }
                                    _ => {
                                        let at = Instant::now() + work;
                                        d.due = Some(at);
                                        due.push_back((at, k));
                                    }
                                }
                            }
                        }
                    } else if topic.ends_with("/update/accepted") {
                        if let State::Running(_, _, o) = &d.state {
                            match o {
                                Outcome::Succeed => t.succeeded += 1,
                                Outcome::Fail => t.failed += 1,
                                Outcome::Reject => t.rejected += 1,
                                Outcome::Hang => {}
                            }
                            t.last_us = now_us;
                        }
                        d.state = State::Idle;
                    }
                }
                Event::Error(r) | Event::Refused(r) => t.errors.add(r),
                _ => {}
            },
        )?;
        for (k, topic, body) in outbox {
            publish(&mut conns[k], &topic, &body)?;
        }
        let now = [t.requests, t.replies];
        counters
            .sent
            .fetch_add(now[0] - reported[0], Ordering::Relaxed);
        counters
            .acked
            .fetch_add(now[1] - reported[1], Ordering::Relaxed);
        reported = now;
    }
    anyhow::ensure!(
        conns.iter().all(|c| c.phase == Phase::Connected),
        "the broker closed a device's connection"
    );
    Ok(t)
}

fn report(a: &OtaArgs, t: &Totals, elapsed: Duration, timeline: &[(f64, [u64; 3])], shown: &Shown) {
    let active = t
        .first_us
        .map_or(0.0, |f| t.last_us.saturating_sub(f) as f64 / 1e6)
        .max(1e-9);
    let per_sec = (t.finished() as f64 / active).round();
    let mb = t.download_bytes as f64 / 1e6;
    if a.json {
        let v = json!({
            "verb": "ota",
            "devices": a.devices,
            "fail_pct": a.fail,
            "reject_pct": a.reject,
            "hang_pct": a.hang,
            "work_ms": a.work_ms,
            "notified": t.notified,
            "started": t.started,
            "succeeded": t.succeeded,
            "failed": t.failed,
            "rejected": t.rejected,
            "hung": t.hung,
            "requests": t.requests,
            "replies": t.replies,
            "refused": t.refused,
            "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "active_seconds": (active * 1000.0).round() / 1000.0,
            "finished_per_sec": per_sec,
            "reply_latency_us": t.latency.json(),
            "downloads": t.downloads,
            "download_bytes": t.download_bytes,
            "bad_downloads": t.bad_downloads,
            "download_us": t.download_us.json(),
            "download_mb": (mb * 1000.0).round() / 1000.0,
            "download_mb_per_sec": (mb / active * 10.0).round() / 10.0,
            "errors": t.errors.json(),
            "timeline": timeline_json(timeline, shown),
        });
        println!("{v}");
    } else {
        println!(
            "ota: {} devices: {} notified, {} started; {} succeeded, {} failed, {} rejected, {} hung; {per_sec:.0} finished/s over {active:.2}s",
            a.devices, t.notified, t.started, t.succeeded, t.failed, t.rejected, t.hung
        );
        println!("ota: request→reply latency {}", t.latency.text());
        if a.download {
            println!(
                "ota: {} downloads, {mb:.1} MB ({} bad), {:.1} MB/s over the active span; per download {}",
                t.downloads,
                t.bad_downloads,
                mb / active,
                t.download_us.text(),
            );
        }
        println!("ota: errors: {}", t.errors.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct Wrap {
        #[command(flatten)]
        a: OtaArgs,
    }

    #[test]
    fn outcomes_follow_the_rates_and_are_stable() {
        let a = Wrap::parse_from(["x", "--fail", "10", "--reject", "5", "--hang", "5"]).a;
        let mut counts = [0usize; 4];
        for k in 0..10_000 {
            let o = Outcome::of(&a, k, "job-1", 1);
            assert_eq!(o, Outcome::of(&a, k, "job-1", 1));
            counts[o as usize] += 1;
        }
        let share = |n: usize| n as f64 / 100.0;
        assert!(
            (share(counts[Outcome::Fail as usize]) - 10.0).abs() < 1.5,
            "{counts:?}"
        );
        assert!(
            (share(counts[Outcome::Reject as usize]) - 5.0).abs() < 1.0,
            "{counts:?}"
        );
        assert!(
            (share(counts[Outcome::Hang as usize]) - 5.0).abs() < 1.0,
            "{counts:?}"
        );
        assert_eq!(token_us(&json!({"clientToken": "u1234"})), Some(1234));
    }
}
