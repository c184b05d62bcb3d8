//! Rollouts, sans IO: how fast a job reaches its targets, in which waves, when it stops itself,
//! and when it may run — given the job's rules, its progress and the clock, what to do now.
//!
//! - **Rate**: at most `max_per_minute` devices notified in any 60 s, spread over the minute
//!   (at most a sixtieth of it, rounded up, in any second). Exponential: `base_per_minute`,
//!   times `increment_factor` each time another `notified` devices were notified (or
//!   `succeeded` succeeded), never above `max_per_minute` (1,000 when not given), as AWS IoT's
//!   `exponentialRate` does.
//! - **Waves**: cumulative shares of the targets (`percent`, increasing, the last 100). The
//!   next wave starts once `success_threshold_percent` of the devices released so far
//!   succeeded, and, for a wave with `approval`, once an operator approved it.
//! - **Abort**: a criterion holds when at least `min_executed` executions ended and the share
//!   of them that ended with `failure_type` reaches `threshold_percent`: the job is canceled
//!   (its QUEUED executions too; IN_PROGRESS ones finish).
//! - **Schedule**: nothing is released before `start_at`; at `end_at` the rollout stops, or
//!   the job is canceled (with `force`, IN_PROGRESS executions too); with maintenance windows,
//!   devices are released only inside one (UTC days and times).

use serde::{Deserialize, Serialize};

use crate::profile::RegistryError;

const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_MIN: i64 = 60 * NS_PER_SEC;
const NS_PER_DAY: i64 = 24 * 60 * NS_PER_MIN;
/// The exponential rate's ceiling when `max_per_minute` is not given (AWS's default).
pub const DEFAULT_MAX_PER_MINUTE: u32 = 1000;
/// The highest rate a rollout may name.
pub const MAX_PER_MINUTE: u32 = 1_000_000;

/// How fast devices are notified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential: Option<Exponential>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exponential {
    pub base_per_minute: u32,
    pub increment_factor: f64,
    /// Raise the rate each time this many more devices were notified …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<u32>,
    /// … or succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<u32>,
}

/// One wave: the targets up to `percent` of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub percent: f64,
    /// Of the devices released so far, the share that must have succeeded before the next
    /// wave starts (default 100).
    #[serde(default = "hundred")]
    pub success_threshold_percent: f64,
    /// The next wave also waits for `POST /api/v1/jobs/{id}/approve`.
    #[serde(default)]
    pub approval: bool,
}

fn hundred() -> f64 {
    100.0
}

/// What ends an execution, for abort criteria.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortCriterion {
    pub failure_type: AbortType,
    pub min_executed: u64,
    pub threshold_percent: f64,
}

/// What happens at `end_at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndBehavior {
    #[default]
    StopRollout,
    Cancel,
    ForceCancel,
}

/// A time of the week when devices may be released: `start` ("HH:MM", UTC) on `days` (every
/// day when empty), for `duration_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    pub start: String,
    pub duration_minutes: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// ns since the epoch (REST takes RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<i64>,
    #[serde(default)]
    pub end_behavior: EndBehavior,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance_windows: Vec<Window>,
}

/// A job's rollout rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort: Vec<AbortCriterion>,
    #[serde(default, skip_serializing_if = "Schedule::is_empty")]
    pub schedule: Schedule,
}

impl Schedule {
    fn is_empty(&self) -> bool {
        *self == Schedule::default()
    }
}

/// Where a job is: counts of its targets and executions (latest attempts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Targets, released or not.
    pub total: u64,
    /// Targets notified so far (each has an execution).
    pub released: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub rejected: u64,
    pub timed_out: u64,
    /// Executions that ended: succeeded, failed, rejected or timed out.
    pub executed: u64,
    /// Released in the last 60 s, and in the last 1 s.
    pub last_minute: u64,
    pub last_second: u64,
    /// Waves an operator approved.
    pub approved: u32,
}

/// What a rollout does now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Notify this many more devices.
    Release(u64),
    /// Nothing now: why, and when to look again at the latest (`None`: on the next change).
    Wait(&'static str, Option<i64>),
    /// Wave `n` (from 1) is done and waits for an operator.
    AwaitApproval(usize),
    /// An abort criterion holds.
    Abort(String),
    /// `end_at` passed.
    End(EndBehavior),
    /// Every target was released.
    Done,
}

fn day_index(name: &str) -> Option<i64> {
    let n = name.to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| n.starts_with(d) && n.len() >= 3)
        .map(|i| i as i64)
}

fn hh_mm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

impl Window {
    /// Each start of the window in the week around `now_ns`, as (start, end).
    fn spans(&self, now_ns: i64) -> Vec<(i64, i64)> {
        let Some(minute) = hh_mm(&self.start) else {
            return Vec::new();
        };
        let days: Vec<i64> = if self.days.is_empty() {
            (0..7).collect()
        } else {
            self.days.iter().filter_map(|d| day_index(d)).collect()
        };
        let today = now_ns.div_euclid(NS_PER_DAY);
        let len = i64::from(self.duration_minutes) * NS_PER_MIN;
        let mut out = Vec::new();
        // From a week back (a window that began days ago may still be open) to a week on.
        for d in today - 8..=today + 8 {
            // 1970-01-01 was a Thursday (index 3, Monday = 0).
            let weekday = (d + 3).rem_euclid(7);
            if days.contains(&weekday) {
                let start = d * NS_PER_DAY + minute * NS_PER_MIN;
                out.push((start, start + len));
            }
        }
        out
    }
}

impl Rules {
    pub fn check(&self) -> Result<(), RegistryError> {
        if let Some(r) = &self.rate {
            let bad = |m: String| Err(RegistryError::bad(format!("rollout.rate: {m}")));
            if let Some(m) = r.max_per_minute
                && !(1..=MAX_PER_MINUTE).contains(&m)
            {
                return bad(format!("max_per_minute is 1 to {MAX_PER_MINUTE}"));
            }
            if let Some(e) = &r.exponential {
                if !(1..=MAX_PER_MINUTE).contains(&e.base_per_minute) {
                    return bad(format!("base_per_minute is 1 to {MAX_PER_MINUTE}"));
                }
                if !(e.increment_factor > 1.0 && e.increment_factor <= 5.0) {
                    return bad("increment_factor is above 1 and at most 5".into());
                }
                if e.notified.is_some() == e.succeeded.is_some()
                    || e.notified == Some(0)
                    || e.succeeded == Some(0)
                {
                    return bad("exponential raises the rate on notified or on succeeded (a count of at least 1), not both".into());
                }
            }
        }
        let mut last = 0.0;
        for (i, w) in self.waves.iter().enumerate() {
            if !(w.percent > last && w.percent <= 100.0) {
                return Err(RegistryError::bad(
                    "rollout.waves: percent grows from wave to wave, above 0 and at most 100",
                ));
            }
            if !(0.0..=100.0).contains(&w.success_threshold_percent) {
                return Err(RegistryError::bad(format!(
                    "rollout.waves[{i}]: success_threshold_percent is 0 to 100"
                )));
            }
            last = w.percent;
        }
        if !self.waves.is_empty() && last != 100.0 {
            return Err(RegistryError::bad(
                "rollout.waves: the last wave is at 100 percent",
            ));
        }
        for a in &self.abort {
            if !(a.threshold_percent > 0.0 && a.threshold_percent <= 100.0) {
                return Err(RegistryError::bad(
                    "rollout.abort: threshold_percent is above 0 and at most 100",
                ));
            }
        }
        let s = &self.schedule;
        if let (Some(a), Some(b)) = (s.start_at, s.end_at)
            && b <= a
        {
            return Err(RegistryError::bad(
                "rollout.schedule: end_at comes after start_at",
            ));
        }
        for w in &s.maintenance_windows {
            if hh_mm(&w.start).is_none()
                || !(1..=7 * 24 * 60).contains(&w.duration_minutes)
                || w.days.iter().any(|d| day_index(d).is_none())
            {
                return Err(RegistryError::bad(
                    "rollout.schedule.maintenance_windows: start \"HH:MM\" (UTC), duration_minutes 1 to 10080, days mon..sun",
                ));
            }
        }
        Ok(())
    }

    /// The rate now, per minute (`None`: no limit).
    pub fn per_minute(&self, p: &Progress) -> Option<u64> {
        let r = self.rate.as_ref()?;
        let Some(e) = &r.exponential else {
            return r.max_per_minute.map(u64::from);
        };
        let cap = f64::from(r.max_per_minute.unwrap_or(DEFAULT_MAX_PER_MINUTE));
        let steps = match (e.notified, e.succeeded) {
            (Some(n), _) => p.released / u64::from(n.max(1)),
            (_, Some(n)) => p.succeeded / u64::from(n.max(1)),
            _ => 0,
        };
        let rate = f64::from(e.base_per_minute) * e.increment_factor.powi(steps.min(64) as i32);
        Some(rate.min(cap).max(1.0) as u64)
    }

    /// The end of wave `i` (0-based): how many targets it has released by then.
    fn wave_end(&self, i: usize, total: u64) -> u64 {
        let pct = self.waves[i].percent;
        (((total as f64) * pct / 100.0).ceil() as u64).min(total)
    }

    /// When a maintenance window is open at `now` (`Ok`), or when the next one opens.
    fn window(&self, now: i64) -> Result<(), Option<i64>> {
        let ws = &self.schedule.maintenance_windows;
        if ws.is_empty() {
            return Ok(());
        }
        let mut next: Option<i64> = None;
        for w in ws {
            for (a, b) in w.spans(now) {
                if a <= now && now < b {
                    return Ok(());
                }
                if a > now {
                    next = Some(next.map_or(a, |n| n.min(a)));
                }
            }
        }
        Err(next)
    }

    /// The abort criterion that holds, if any.
    fn aborted(&self, p: &Progress) -> Option<String> {
        for a in &self.abort {
            if p.executed == 0 || p.executed < a.min_executed {
                continue;
            }
            let n = match a.failure_type {
                AbortType::Failed => p.failed,
                AbortType::Rejected => p.rejected,
                AbortType::TimedOut => p.timed_out,
                AbortType::All => p.failed + p.rejected + p.timed_out,
            };
            let share = n as f64 * 100.0 / p.executed as f64;
            if share >= a.threshold_percent {
                return Some(format!(
                    "abort: {n} of {} executions ended {:?} ({share:.1}% >= {}%)",
                    p.executed, a.failure_type, a.threshold_percent
                ));
            }
        }
        None
    }

    /// What to do at `now_ns`.
    pub fn decide(&self, p: &Progress, now_ns: i64) -> Decision {
        if let Some(why) = self.aborted(p) {
            return Decision::Abort(why);
        }
        let s = &self.schedule;
        if let Some(end) = s.end_at
            && now_ns >= end
        {
            return Decision::End(s.end_behavior);
        }
        if p.released >= p.total {
            return Decision::Done;
        }
        if let Some(start) = s.start_at
            && now_ns < start
        {
            return Decision::Wait("scheduled", Some(start));
        }
        if let Err(next) = self.window(now_ns) {
            return Decision::Wait("outside a maintenance window", next);
        }
        // The wave the next device is in; at its first device, the wave before must have
        // met its threshold (and been approved, if it asks for that).
        let mut allowed = p.total;
        if let Some(c) = (0..self.waves.len()).find(|&i| p.released < self.wave_end(i, p.total)) {
            allowed = self.wave_end(c, p.total);
            if c > 0 && p.released == self.wave_end(c - 1, p.total) {
                let before = &self.waves[c - 1];
                let need = (p.released as f64) * before.success_threshold_percent / 100.0;
                if (p.succeeded as f64) < need {
                    return Decision::Wait("the wave's success threshold", None);
                }
                if before.approval && (p.approved as usize) < c {
                    return Decision::AwaitApproval(c);
                }
            }
        }
        let mut n = allowed - p.released;
        if let Some(rate) = self.per_minute(p) {
            let per_second = rate.div_ceil(60);
            let room = rate
                .saturating_sub(p.last_minute)
                .min(per_second.saturating_sub(p.last_second));
            if room == 0 {
                return Decision::Wait("the rollout rate", Some(now_ns + NS_PER_SEC));
            }
            n = n.min(room);
        }
        Decision::Release(n)
    }
}

#[cfg(test)]
mod tests;
