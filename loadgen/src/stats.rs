//! Measurement: latency histograms (HDR, microseconds), errors counted by reason, and the meter
//! that prints a rate line per second (or redraws a progress bar on a terminal) and keeps the
//! per-second timeline for the summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies in microseconds, 1 µs to 1 h at 3 significant digits (0.1 % error); every sample
/// is kept (no sampling), in a few tens of KiB.
#[derive(Debug, Clone)]
pub(crate) struct Hist(Histogram<u64>);

/// Quantiles the summary reports.
const REPORTED: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)];

impl Default for Hist {
    fn default() -> Self {
        Hist(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid HDR bounds"))
    }
}

impl Hist {
    /// Adds one sample (values outside the range are clamped to it).
    pub(crate) fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides: cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1), 0 when empty.
    pub(crate) fn at(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// `{"count","mean","p50","p90","p99","p99_9","max"}`, microseconds.
    pub(crate) fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("count".into(), json!(self.count()));
        m.insert("mean".into(), json!((self.0.mean() * 10.0).round() / 10.0));
        for (k, q) in REPORTED {
            m.insert(k.into(), json!(self.at(q)));
        }
        m.insert("max".into(), json!(self.0.max()));
        Value::Object(m)
    }

    /// `p50=1.2ms p90=… p99=… p99.9=… max=…`.
    pub(crate) fn text(&self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        let mut s = String::new();
        for (k, q) in REPORTED {
            s.push_str(&format!("{}={} ", k.replace('_', "."), ms(self.at(q))));
        }
        s.push_str(&format!("max={}", ms(self.0.max())));
        s
    }

    /// The cumulative distribution as `[[µs, fraction], …]`: every percent, then the tail at
    /// 99.9, 99.99 and 100 %. For plots.
    pub(crate) fn cdf(&self) -> Value {
        if self.0.is_empty() {
            return json!([]);
        }
        let qs = (1..100)
            .map(|p| f64::from(p) / 100.0)
            .chain([0.995, 0.999, 0.9999, 1.0]);
        Value::Array(qs.map(|q| json!([self.at(q), q])).collect())
    }
}

/// Microseconds as a short human figure: `850us`, `1.25ms`, `3.1s`.
pub(crate) fn ms(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// Errors by reason (`connack 0x86 bad user name or password`, `puback 0x97 quota exceeded`,
/// `connect: Connection refused`, …).
#[derive(Debug, Default, Clone)]
pub(crate) struct Errors(pub(crate) BTreeMap<String, u64>);

impl Errors {
    pub(crate) fn add(&mut self, reason: impl Into<String>) {
        *self.0.entry(reason.into()).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: Errors) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub(crate) fn json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    /// `none`, or `3 × connack 0x86 bad user name or password; 1 × …`.
    pub(crate) fn text(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{v} × {k}")).collect();
        parts.join("; ")
    }
}

/// Counters the workers bump and the meter reads: what a run sends, gets acknowledged and
/// receives (a verb uses the ones it has).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) received: AtomicU64,
}

impl Counters {
    fn read(&self) -> [u64; 3] {
        [
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        ]
    }
}

/// Per-second deltas of (sent, acked, received), each with the time since the start it ends at
/// (whole seconds; the last may end between two).
pub(crate) type Timeline = Vec<(f64, [u64; 3])>;

/// Which counters a meter shows, with their names (`sent`, `acked`, `received`, `points`…).
pub(crate) type Shown = [Option<&'static str>; 3];

/// Prints the rates once a second on stderr while a run lasts and records them. On a terminal
/// the line is redrawn in place with a bar for the share of the planned time gone; otherwise
/// each second is one line (`pub sent: total=… rate=…/s`) for logs and scripts.
pub(crate) struct Meter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Timeline>>,
}

impl Meter {
    pub(crate) fn start(
        label: &'static str,
        counters: Arc<Counters>,
        shown: Shown,
        planned: Option<Duration>,
    ) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let tty = std::io::stderr().is_terminal();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut last = [0u64; 3];
            let mut timeline = Vec::new();
            let mut next = t0 + Duration::from_secs(1);
            loop {
                // Wake often so the end of a run is not held up by up to a second.
                while Instant::now() < next {
                    if flag.load(Ordering::Relaxed) {
                        if tty {
                            eprintln!();
                        }
                        // The part of a second before the end, so the timeline adds up to
                        // the totals.
                        let now = counters.read();
                        let delta = [now[0] - last[0], now[1] - last[1], now[2] - last[2]];
                        if delta.iter().any(|d| *d > 0) {
                            timeline.push((t0.elapsed().as_secs_f64(), delta));
                        }
                        return timeline;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                next += Duration::from_secs(1);
                let now = counters.read();
                let delta = [now[0] - last[0], now[1] - last[1], now[2] - last[2]];
                timeline.push(((next - t0).as_secs_f64() - 1.0, delta));
                last = now;
                if shown.iter().all(Option::is_none) {
                    continue;
                }
                let secs = t0.elapsed().as_secs();
                let line = rate_line(label, &shown, now, delta);
                if tty {
                    let bar = planned.map_or(String::new(), |p| {
                        bar(t0.elapsed().as_secs_f64() / p.as_secs_f64().max(1e-9))
                    });
                    eprint!("\r\x1b[2K{bar}{secs:>4}s {line}");
                    let _ = std::io::stderr().flush();
                } else {
                    eprintln!("{line}");
                }
            }
        });
        Meter {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the meter; returns the per-second deltas of (sent, acked, received), the last one
    /// for the part of a second before the stop.
    pub(crate) fn finish(mut self) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `pub sent: total=1200 rate=400/s, acked: total=1100 rate=380/s`.
fn rate_line(label: &str, shown: &Shown, now: [u64; 3], delta: [u64; 3]) -> String {
    let parts: Vec<String> = shown
        .iter()
        .enumerate()
        .filter_map(|(i, name)| name.map(|n| format!("{n}: total={} rate={}/s", now[i], delta[i])))
        .collect();
    format!("{label} {}", parts.join(", "))
}

/// `[#########-----------]  45% `.
fn bar(fraction: f64) -> String {
    let f = fraction.clamp(0.0, 1.0);
    let filled = (f * 24.0).round() as usize;
    format!(
        "[{}{}] {:>3.0}% ",
        "#".repeat(filled),
        "-".repeat(24 - filled),
        f * 100.0
    )
}

/// The timeline as `[{"t":1,"sent":…,"acked":…,"received":…}, …]` with the shown names; `t`
/// is the second the counts end at (a fraction for the last, partial one).
pub(crate) fn timeline_json(timeline: &[(f64, [u64; 3])], shown: &Shown) -> Value {
    Value::Array(
        timeline
            .iter()
            .map(|(t, d)| {
                let mut m = serde_json::Map::new();
                let whole = (t - t.round()).abs() < 1e-6;
                m.insert(
                    "t".into(),
                    if whole {
                        json!(t.round() as u64)
                    } else {
                        json!((t * 1000.0).round() / 1000.0)
                    },
                );
                for (k, name) in shown.iter().enumerate() {
                    if let Some(n) = name {
                        m.insert((*n).into(), json!(d[k]));
                    }
                }
                Value::Object(m)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_histograms_precision() {
        let mut h = Hist::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        let close = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want.max(1);
        assert!(close(h.at(0.5), 5_000), "{}", h.at(0.5));
        assert!(close(h.at(0.99), 9_900), "{}", h.at(0.99));
        assert!(close(h.at(0.999), 9_990), "{}", h.at(0.999));
        assert_eq!(h.count(), 10_000);
        let j = h.json();
        assert!(close(j["max"].as_u64().unwrap(), 10_000));
        assert!((j["mean"].as_f64().unwrap() - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn merged_histograms_count_both_and_cdf_rises_to_one() {
        let (mut a, mut b) = (Hist::default(), Hist::default());
        (0..100).for_each(|_| a.record(10));
        (0..100).for_each(|_| b.record(1_000_000));
        a.merge(&b);
        assert_eq!(a.count(), 200);
        assert_eq!(a.at(0.25), 10);
        assert!(a.at(0.75) >= 999_000);
        let cdf = a.cdf();
        let pts = cdf.as_array().unwrap();
        assert_eq!(pts.last().unwrap()[1].as_f64(), Some(1.0));
        let xs: Vec<u64> = pts.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert!(xs.windows(2).all(|w| w[0] <= w[1]), "CDF must not fall");
        assert_eq!(Hist::default().cdf(), json!([]));
        assert_eq!(Hist::default().at(0.5), 0);
    }

    #[test]
    fn errors_count_by_reason() {
        let mut e = Errors::default();
        e.add("connack 0x86 bad user name or password");
        e.add("connack 0x86 bad user name or password");
        let mut f = Errors::default();
        f.add("connect: Connection refused");
        e.merge(f);
        assert_eq!(e.total(), 3);
        assert_eq!(
            e.json(),
            json!({"connack 0x86 bad user name or password": 2, "connect: Connection refused": 1})
        );
        assert_eq!(
            e.text(),
            "2 × connack 0x86 bad user name or password; 1 × connect: Connection refused"
        );
    }

    #[test]
    fn rate_lines_and_bar_read_as_documented() {
        let shown: Shown = [Some("sent"), None, Some("received")];
        assert_eq!(
            rate_line("bench", &shown, [1200, 0, 1100], [400, 0, 380]),
            "bench sent: total=1200 rate=400/s, received: total=1100 rate=380/s"
        );
        assert_eq!(bar(0.5), "[############------------]  50% ");
        assert_eq!(bar(3.0), format!("[{}] 100% ", "#".repeat(24)));
        assert_eq!(
            timeline_json(&[(1.0, [5, 4, 3]), (1.4567, [1, 0, 2])], &shown),
            json!([{"t": 1, "sent": 5, "received": 3}, {"t": 1.457, "sent": 1, "received": 2}])
        );
        assert_eq!(ms(850), "850us");
        assert_eq!(ms(1_250), "1.25ms");
    }
}
