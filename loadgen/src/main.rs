//! `mast-loadgen`: load for MQTT brokers (Mast or any other) in emqtt-bench's conventions, and
//! the benchmark driver behind Mast's published figures.
//!
//! Verbs: `pub`, `sub`, `conn` (as emqtt-bench), `bench` (EMQ's scenarios: `p2p`, `fanin`,
//! `fanout`, `sharedsub`, `conn`: publishers and subscribers in one process), `iot` (a
//! TSBS-IoT-like truck fleet; its generator is the library's [`mast_loadgen::iot`]) and `query`
//! (the TSBS IoT queries over Mast's SQL API). Connections run on a few mio threads; a rate line
//! per second goes to stderr (a progress bar on a terminal); the summary (text, or `--json`)
//! goes to stdout with HDR latency percentiles and errors by reason.

mod client;
mod fleet;
mod opts;
mod ota;
mod provision;
mod query;
mod shadow;
mod sql;
mod stats;
mod traffic;
mod verify;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use opts::ConnOpts;
use stats::{Shown, timeline_json};
use traffic::{Load, Member, Outcome, PayloadFormat, Role};

#[derive(Debug, Parser)]
#[command(
    name = "mast-loadgen",
    version,
    about = "Load for MQTT brokers, and Mast's benchmark driver",
    disable_help_flag = true
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Publishers.
    Pub(PubArgs),
    /// Subscribers.
    Sub(SubArgs),
    /// Idle connections (connection ramp-up and memory per connection).
    Conn(ConnArgs),
    /// A standard scenario, publishers and subscribers in one run: p2p, fanin, fanout,
    /// sharedsub, conn.
    Bench(BenchArgs),
    /// A TSBS-IoT-like truck fleet: each truck a connection (client id = device id truck_N)
    /// publishing readings and diagnostics, in real time or fast-forward.
    Iot(fleet::IotArgs),
    /// Devices updating their shadows over the AWS IoT shadow topics: the accepted rate and
    /// the update → accepted latency (durable replies), with telemetry beside it if asked.
    Shadow(shadow::ShadowArgs),
    /// A production run enrolling itself by AWS IoT fleet provisioning over TLS with a claim
    /// certificate (CSR, or CreateKeysAndCertificate, then RegisterThing): enrolments/s and
    /// the CSR → registered latency.
    Provision(provision::ProvisionArgs),
    /// A fleet running jobs over the AWS IoT Jobs topics (notify-next, start-next, download
    /// by Range, update), succeeding, failing, rejecting or hanging at the rates given:
    /// finished executions/s and the request → reply latency.
    Ota(ota::OtaArgs),
    /// The TSBS IoT queries over Mast's SQL API, closed or open loop, with latency percentiles.
    Query(query::QueryArgs),
}

/// Flags of every MQTT verb but `iot`: how many, named how, for how long, reported how.
#[derive(Debug, Clone, Args)]
struct RunOpts {
    #[command(flatten)]
    conn: ConnOpts,
    /// Number of connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    count: usize,
    /// Number of the first connection (client ids and %i count from it).
    #[arg(short = 'n', long = "startnumber", default_value_t = 0)]
    start_number: usize,
    /// Client id prefix: ids are PREFIX-N [default: VERB-PID].
    #[arg(long)]
    prefix: Option<String>,
    /// Seconds to run once connected (publishing, listening or holding).
    #[arg(short = 'd', long, default_value_t = 10)]
    duration: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl RunOpts {
    fn prefix(&self, verb: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("{verb}-{}", std::process::id()))
    }

    /// `-c` connections numbered from `-n`, client ids `PREFIX-N`, each with the role `role`
    /// makes of the topic pattern filled in for it.
    fn members(&self, verb: &str, pattern: &str, role: fn(String) -> Role) -> Vec<Member> {
        let prefix = self.prefix(verb);
        let user = self.conn.username.as_deref();
        (0..self.count)
            .map(|k| {
                let n = self.start_number + k;
                let id = format!("{prefix}-{n}");
                Member {
                    ordinal: k,
                    role: role(topic(pattern, n, &id, user)),
                    client_id: id,
                }
            })
            .collect()
    }
}

/// `--verify` and where to ask.
#[derive(Debug, Clone, Args)]
pub(crate) struct VerifyOpts {
    /// After the run, ask Mast over SQL how many of the acknowledged rows and points of each
    /// device it holds; report what is missing and exit 1 if anything is.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Mast's HTTP API for --verify [default: HOST:8080].
    #[arg(long)]
    http: Option<String>,
    /// Bearer token for --verify.
    #[arg(long)]
    pub(crate) token: Option<String>,
}

impl VerifyOpts {
    /// The API address: `--http`, or port 8080 on the broker's host.
    pub(crate) fn http(&self, host: &str) -> String {
        self.http.clone().unwrap_or_else(|| format!("{host}:8080"))
    }
}

/// How publishers publish.
#[derive(Debug, Clone, Args)]
struct PubOpts {
    /// Payload size in bytes (raw payloads, at least 12: the send time and a marker).
    #[arg(short = 's', long, default_value_t = 256)]
    size: usize,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0)]
    qos: u8,
    /// Retain flag.
    #[arg(short = 'r', long)]
    retain: bool,
    /// Milliseconds between two messages of one publisher (0: no per-publisher pace).
    #[arg(short = 'I', long = "interval-of-msg", default_value_t = 0)]
    interval_of_msg: u64,
    /// Messages per second over all publishers (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many messages in all (0: no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    limit: u64,
    /// Unacknowledged QoS 1/2 messages per publisher (capped by the broker's Receive Maximum).
    #[arg(short = 'F', long, default_value_t = 64)]
    inflight: usize,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Topic variables: %i the connection's number, %c its client id, \
%u the user name. Telemetry into Mast: -t 'devices/%c/telemetry' --format json."
)]
struct PubArgs {
    #[command(flatten)]
    run: RunOpts,
    #[command(flatten)]
    publish: PubOpts,
    /// Topic.
    #[arg(short = 't', long, default_value = "bench/%i")]
    topic: String,
    /// Payload: raw bytes, or telemetry as JSON or InfluxDB line protocol (rows get distinct
    /// timestamps per connection).
    #[arg(long, value_enum, default_value = "raw")]
    format: PayloadFormat,
    /// Telemetry rows per message.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Fields per telemetry row (points per message = rows × fields).
    #[arg(long, default_value_t = 1)]
    fields: usize,
    /// --verify needs telemetry (--format json|line) to -t devices/%c/telemetry[/TABLE].
    #[command(flatten)]
    check: VerifyOpts,
}

#[derive(Debug, Clone, Args)]
struct SubArgs {
    #[command(flatten)]
    run: RunOpts,
    /// Topic filter (%i, %c, %u as for pub).
    #[arg(short = 't', long, default_value = "bench/#")]
    topic: String,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0)]
    qos: u8,
    /// Stop after this many messages in all (0: no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    limit: u64,
    /// Stop when nothing arrived for this many seconds after the first message.
    #[arg(long, default_value_t = 3)]
    idle_exit: u64,
}

#[derive(Debug, Clone, Args)]
struct ConnArgs {
    #[command(flatten)]
    run: RunOpts,
}

/// EMQ's standard scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// SIZE publishers, each to its own topic, and SIZE subscribers, one per topic.
    P2p,
    /// SIZE publishers, each to its own topic; --subs subscribers (default 1) on the wildcard.
    Fanin,
    /// --pubs publishers (default 1) to one topic; SIZE subscribers on it.
    Fanout,
    /// SIZE publishers; --subs subscribers (default 10) in one shared subscription group.
    Sharedsub,
    /// SIZE idle connections.
    Conn,
}

#[derive(Debug, Clone, Args)]
struct BenchArgs {
    /// The scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    #[command(flatten)]
    run: RunOpts,
    #[command(flatten)]
    publish: PubOpts,
    /// Publishers (fanout) [default: 1].
    #[arg(long)]
    pubs: Option<usize>,
    /// Subscribers (fanin, sharedsub) [default: 1 for fanin, 10 for sharedsub].
    #[arg(long)]
    subs: Option<usize>,
    /// Subscription QoS [default: the publish QoS].
    #[arg(long)]
    sub_qos: Option<u8>,
    /// Subscribers stop this many seconds after the last message once publishing is over.
    #[arg(long, default_value_t = 2)]
    idle_exit: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mast-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().verb {
        Verb::Pub(a) => run_pub(a),
        Verb::Sub(a) => run_sub(a),
        Verb::Conn(a) => run_conn(a),
        Verb::Bench(a) => run_bench(a),
        Verb::Iot(a) => fleet::run_iot(a),
        Verb::Shadow(a) => shadow::run_shadow(a),
        Verb::Provision(a) => provision::run_provision(a),
        Verb::Ota(a) => ota::run_ota(a),
        Verb::Query(a) => query::run_query(a),
    }
}

/// `%i`, `%c`, `%u` in a topic.
fn topic(t: &str, n: usize, client_id: &str, user: Option<&str>) -> String {
    t.replace("%i", &n.to_string())
        .replace("%c", client_id)
        .replace("%u", user.unwrap_or(""))
}

fn check_qos(q: u8) -> anyhow::Result<()> {
    anyhow::ensure!(q <= 2, "QoS must be 0, 1 or 2");
    Ok(())
}

fn load(p: &PubOpts, duration: u64) -> Load {
    Load {
        qos: p.qos,
        sub_qos: p.qos,
        retain: p.retain,
        size: p.size,
        format: PayloadFormat::Raw,
        rows: 1,
        fields: 1,
        rate: p.rate,
        interval: Duration::from_millis(p.interval_of_msg),
        limit: p.limit,
        inflight: p.inflight.max(1),
        duration: Duration::from_secs(duration),
        copies: 1,
        idle_exit: Duration::from_secs(2),
        receive_limit: 0,
        announce: false,
    }
}

fn run_pub(a: PubArgs) -> anyhow::Result<()> {
    check_qos(a.publish.qos)?;
    let dial = a.run.conn.dial()?;
    let members = a.run.members("pub", &a.topic, Role::Pub);
    let mut l = load(&a.publish, a.run.duration);
    l.format = a.format;
    l.rows = a.rows.max(1);
    l.fields = a.fields.max(1);
    if a.check.verify {
        anyhow::ensure!(
            a.format != PayloadFormat::Raw && a.topic.starts_with("devices/%c/telemetry"),
            "--verify needs telemetry: --format json|line and -t 'devices/%c/telemetry[/TABLE]'"
        );
    }
    let started_ns = traffic::now_ns() as i64;
    let shown: Shown = [Some("sent"), (a.publish.qos > 0).then_some("acked"), None];
    let out = traffic::run(&dial, members, &l, a.run.conn.threads, "pub", shown)?;
    let points = if a.format == PayloadFormat::Raw {
        0
    } else {
        l.rows * l.fields
    };
    let mut v = summary("pub", None, &l, &out, shown);
    v["points_per_message"] = json!(points);
    // Points the broker took: acknowledged at QoS 1/2, read (PINGREQ drain) at QoS 0.
    let taken = if l.qos == 0 { out.sent } else { out.acked };
    let points_per_sec = (taken * points as u64) as f64 / out.pub_seconds.max(1e-9);
    v["points_per_sec"] = json!(points_per_sec.round() as u64);
    print_summary(&a.run, &v, &out, &l);
    if points > 0 && !a.run.json {
        println!("  {points} points per message: {points_per_sec:.0} points/s");
    }
    if a.check.verify {
        let http = a.check.http(&a.run.conn.host);
        // The topic's table when it names one; else JSON goes to `telemetry` and line
        // protocol to its measurement, `m`.
        let table = match (a.topic.strip_prefix("devices/%c/telemetry/"), a.format) {
            (Some(t), _) => t.to_string(),
            (None, PayloadFormat::Line) => "m".to_string(),
            (None, _) => "telemetry".to_string(),
        };
        let rows = l.rows as u64;
        let expect = verify::Expect {
            table,
            fields: (0..l.fields).map(|f| format!("f{f}")).collect(),
            devices: out
                .accepted
                .iter()
                .map(|(id, m)| (id.clone(), [m * rows, m * points as u64]))
                .collect(),
        };
        // Rows carry the send time from the run's start on (1 ms steps per connection).
        let from = started_ns - started_ns.rem_euclid(1_000_000) - 1_000_000_000;
        let missing = verify::verify(
            &http,
            a.check.token.as_deref(),
            Some(from),
            None,
            &[expect],
            a.run.json,
        )?;
        anyhow::ensure!(
            missing == 0,
            "verify: {missing} acknowledged points are missing from Mast"
        );
    }
    fail_if_nothing_connected(&out)
}

fn run_sub(a: SubArgs) -> anyhow::Result<()> {
    check_qos(a.qos)?;
    let dial = a.run.conn.dial()?;
    let members = a.run.members("sub", &a.topic, Role::Sub);
    let l = Load {
        qos: a.qos,
        sub_qos: a.qos,
        idle_exit: Duration::from_secs(a.idle_exit),
        receive_limit: a.limit,
        ..load(
            &PubOpts {
                size: 8,
                qos: a.qos,
                retain: false,
                interval_of_msg: 0,
                rate: 0.0,
                limit: 0,
                inflight: 1,
            },
            a.run.duration,
        )
    };
    let shown: Shown = [None, None, Some("received")];
    let out = traffic::run(&dial, members, &l, a.run.conn.threads, "sub", shown)?;
    let v = summary("sub", None, &l, &out, shown);
    print_summary(&a.run, &v, &out, &l);
    fail_if_nothing_connected(&out)
}

fn run_conn(a: ConnArgs) -> anyhow::Result<()> {
    conn_scenario(&a.run, "conn", None)
}

/// Opens `-c` idle connections, says so on stderr when all are up (scripts wait for that line
/// to measure the broker), holds them for `-d` seconds.
fn conn_scenario(run: &RunOpts, verb: &'static str, scenario: Option<&str>) -> anyhow::Result<()> {
    let dial = run.conn.dial()?;
    let members = run.members("conn", "", |_| Role::Idle);
    let l = Load {
        announce: true,
        ..load(
            &PubOpts {
                size: 8,
                qos: 0,
                retain: false,
                interval_of_msg: 0,
                rate: 0.0,
                limit: 0,
                inflight: 1,
            },
            run.duration,
        )
    };
    let shown: Shown = [None, None, None];
    let out = traffic::run(&dial, members, &l, run.conn.threads, verb, shown)?;
    if run.json {
        println!(
            "{}",
            json!({
                "verb": verb,
                "scenario": scenario,
                "wanted": run.count,
                "connected": out.connected,
                "alive_at_end": out.alive,
                "failed": run.count - out.connected,
                "seconds_to_connect": round3(out.seconds_to_connect),
                "connects_per_sec": (out.connected as f64 / out.seconds_to_connect.max(1e-9)).round() as u64,
                "connect_latency_us": out.connect.json(),
                "errors": out.errors.json(),
            })
        );
    } else {
        println!(
            "{verb}: {} of {} connected in {:.2}s ({:.0}/s), {} still up at the end; CONNECT→CONNACK {}; errors: {}",
            out.connected,
            run.count,
            out.seconds_to_connect,
            out.connected as f64 / out.seconds_to_connect.max(1e-9),
            out.alive,
            out.connect.text(),
            out.errors.text()
        );
    }
    fail_if_nothing_connected(&out)
}

fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.scenario == Scenario::Conn {
        return conn_scenario(&a.run, "bench", Some("conn"));
    }
    check_qos(a.publish.qos)?;
    let sub_qos = a.sub_qos.unwrap_or(a.publish.qos);
    check_qos(sub_qos)?;
    let dial = a.run.conn.dial()?;
    let size = a.run.count;
    let (pubs, subs) = match a.scenario {
        Scenario::P2p => (size, size),
        Scenario::Fanin => (size, a.subs.unwrap_or(1)),
        Scenario::Fanout => (a.pubs.unwrap_or(1), size),
        Scenario::Sharedsub => (size, a.subs.unwrap_or(10)),
        Scenario::Conn => unreachable!("handled above"),
    };
    anyhow::ensure!(
        pubs > 0 && subs > 0,
        "a scenario needs publishers and subscribers"
    );
    let members = scenario_members(a.scenario, &a.run.prefix("bench"), pubs, subs);
    let mut l = load(&a.publish, a.run.duration);
    l.sub_qos = sub_qos;
    l.idle_exit = Duration::from_secs(a.idle_exit);
    l.copies = match a.scenario {
        Scenario::Fanin => subs as u64,
        Scenario::Fanout => subs as u64,
        _ => 1,
    };
    let name = format!("{:?}", a.scenario).to_lowercase();
    let shown: Shown = [
        Some("sent"),
        (a.publish.qos > 0).then_some("acked"),
        Some("received"),
    ];
    let out = traffic::run(&dial, members, &l, a.run.conn.threads, "bench", shown)?;
    let v = summary("bench", Some(&name), &l, &out, shown);
    print_summary(&a.run, &v, &out, &l);
    fail_if_nothing_connected(&out)
}

/// The connections of a scenario: subscribers first (so they are up before publishers start),
/// then publishers; topics under `bench/{prefix}/` so runs beside each other do not mix.
fn scenario_members(s: Scenario, prefix: &str, pubs: usize, subs: usize) -> Vec<Member> {
    let root = format!("bench/{prefix}/{}", format!("{s:?}").to_lowercase());
    let mut m = Vec::with_capacity(pubs + subs);
    for i in 0..subs {
        let filter = match s {
            Scenario::P2p => format!("{root}/{i}"),
            Scenario::Fanin => format!("{root}/#"),
            Scenario::Fanout => root.clone(),
            Scenario::Sharedsub => format!("$share/{prefix}/{root}/#"),
            Scenario::Conn => String::new(),
        };
        m.push(Member {
            ordinal: m.len(),
            client_id: format!("{prefix}-sub-{i}"),
            role: Role::Sub(filter),
        });
    }
    for i in 0..pubs {
        let t = match s {
            Scenario::Fanout => root.clone(),
            _ => format!("{root}/{i}"),
        };
        m.push(Member {
            ordinal: m.len(),
            client_id: format!("{prefix}-pub-{i}"),
            role: Role::Pub(t),
        });
    }
    m
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The JSON summary of a pub/sub/bench run (scripts read it; the text form is made from it).
fn summary(verb: &str, scenario: Option<&str>, l: &Load, out: &Outcome, shown: Shown) -> Value {
    let ps = out.pub_seconds.max(1e-9);
    let rs = out.recv_seconds.max(1e-9);
    json!({
        "verb": verb,
        "scenario": scenario,
        "qos": l.qos,
        "size": l.size,
        "publishers": out.publishers,
        "subscribers": out.subscribers,
        "connected": out.connected,
        "sent": out.sent,
        "acked": out.acked,
        "received": out.received,
        "expected": if out.publishers > 0 {
            (if l.qos.min(l.sub_qos) == 0 { out.sent } else { out.acked }) * l.copies * u64::from(out.subscribers > 0)
        } else { 0 },
        "seconds": round3(if out.publishers > 0 { out.pub_seconds } else { out.recv_seconds }),
        "sent_per_sec": (out.sent as f64 / ps).round() as u64,
        "acked_per_sec": (out.acked as f64 / ps).round() as u64,
        "received_per_sec": (out.received as f64 / rs).round() as u64,
        "ack_latency_us": out.ack.json(),
        "e2e_latency_us": out.e2e.json(),
        "connect_latency_us": out.connect.json(),
        "errors": out.errors.json(),
        "timeline": timeline_json(&out.timeline, &shown),
        "latency_cdf": {"ack": out.ack.cdf(), "e2e": out.e2e.cdf()},
    })
}

fn print_summary(run: &RunOpts, v: &Value, out: &Outcome, l: &Load) {
    if run.json {
        println!("{v}");
        return;
    }
    let what = match v["scenario"].as_str() {
        Some(s) => format!("{} {s}", v["verb"].as_str().unwrap_or("")),
        None => v["verb"].as_str().unwrap_or("").to_string(),
    };
    println!(
        "{what}: {} publishers, {} subscribers ({} connected), QoS {}, {} B",
        out.publishers, out.subscribers, out.connected, l.qos, l.size
    );
    if out.publishers > 0 {
        println!(
            "  sent {} ({}/s), acked {} ({}/s) in {:.2}s",
            out.sent, v["sent_per_sec"], out.acked, v["acked_per_sec"], out.pub_seconds
        );
    }
    if out.subscribers > 0 {
        println!(
            "  received {} ({}/s){}",
            out.received,
            v["received_per_sec"],
            if out.publishers > 0 {
                format!(" of {} expected", v["expected"])
            } else {
                String::new()
            }
        );
    }
    if l.qos > 0 && out.publishers > 0 {
        println!("  publish→ack latency  {}", out.ack.text());
    }
    if out.e2e.count() > 0 {
        println!("  end-to-end latency   {}", out.e2e.text());
    }
    println!("  errors: {}", out.errors.text());
}

fn fail_if_nothing_connected(out: &Outcome) -> anyhow::Result<()> {
    anyhow::ensure!(
        out.connected > 0,
        "no connection came up: {}",
        out.errors.text()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(s: Scenario, pubs: usize, subs: usize) -> Vec<(String, String)> {
        scenario_members(s, "x", pubs, subs)
            .into_iter()
            .map(|m| match m.role {
                Role::Pub(t) => ("pub".into(), t),
                Role::Sub(f) => ("sub".into(), f),
                Role::Idle => ("idle".into(), String::new()),
            })
            .collect()
    }

    #[test]
    fn scenarios_wire_publishers_to_subscribers() {
        let p2p = roles(Scenario::P2p, 2, 2);
        assert_eq!(
            p2p,
            [
                ("sub".into(), "bench/x/p2p/0".into()),
                ("sub".into(), "bench/x/p2p/1".into()),
                ("pub".into(), "bench/x/p2p/0".into()),
                ("pub".into(), "bench/x/p2p/1".into()),
            ]
        );
        let fanin = roles(Scenario::Fanin, 3, 1);
        assert_eq!(fanin[0], ("sub".into(), "bench/x/fanin/#".into()));
        assert_eq!(fanin[3], ("pub".into(), "bench/x/fanin/2".into()));
        let fanout = roles(Scenario::Fanout, 1, 3);
        assert!(fanout.iter().all(|(_, t)| t == "bench/x/fanout"));
        let shared = roles(Scenario::Sharedsub, 2, 2);
        assert_eq!(shared[0].1, "$share/x/bench/x/sharedsub/#");
        // Ordinals run over the whole run: subscribers first.
        let m = scenario_members(Scenario::P2p, "x", 2, 2);
        assert_eq!(
            m.iter().map(|m| m.ordinal).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn topic_variables() {
        assert_eq!(
            topic("devices/%c/t/%i/%u", 7, "pub-7", Some("ann")),
            "devices/pub-7/t/7/ann"
        );
        assert_eq!(topic("bench/%i", 3, "c", None), "bench/3");
    }

    #[test]
    fn the_cli_takes_emqtt_bench_flags() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "mast-loadgen",
            "pub",
            "-h",
            "10.0.0.1",
            "-p",
            "1884",
            "-V",
            "4",
            "-c",
            "100",
            "-n",
            "5",
            "-i",
            "10",
            "-R",
            "50",
            "-k",
            "60",
            "-C",
            "false",
            "-u",
            "u",
            "-P",
            "p",
            "-t",
            "bench/%i",
            "-s",
            "128",
            "-q",
            "1",
            "-r",
            "-I",
            "100",
            "-L",
            "1000",
            "-F",
            "8",
            "--ifaddr",
            "127.0.0.1-127.0.0.3",
            "--prefix",
            "b",
        ])
        .unwrap();
        let Verb::Pub(a) = cli.verb else {
            panic!("not pub")
        };
        assert_eq!(
            (
                a.run.conn.host.as_str(),
                a.run.conn.port,
                a.run.conn.version
            ),
            ("10.0.0.1", 1884, 4)
        );
        assert_eq!((a.run.count, a.run.start_number), (100, 5));
        assert_eq!(
            (
                a.run.conn.interval_conn,
                a.run.conn.connrate,
                a.run.conn.keepalive
            ),
            (10, 50, 60)
        );
        assert!(!a.run.conn.clean);
        assert_eq!(
            (a.publish.size, a.publish.qos, a.publish.retain),
            (128, 1, true)
        );
        assert_eq!(
            (
                a.publish.interval_of_msg,
                a.publish.limit,
                a.publish.inflight
            ),
            (100, 1000, 8)
        );
        let d = a.run.conn.dial().unwrap();
        assert_eq!(d.sources.len(), 3);
        assert_eq!(
            d.gap,
            Duration::from_millis(20),
            "-R 50 is a connection every 20 ms"
        );
        for verb in [
            vec!["mast-loadgen", "sub", "-t", "bench/#", "-q", "2"],
            vec!["mast-loadgen", "conn", "-c", "10", "-d", "1"],
            vec![
                "mast-loadgen",
                "bench",
                "sharedsub",
                "-c",
                "10",
                "--subs",
                "3",
                "-q",
                "1",
            ],
            vec![
                "mast-loadgen",
                "iot",
                "-c",
                "5",
                "-I",
                "10s",
                "--fast-forward",
                "-d",
                "1h",
            ],
            vec![
                "mast-loadgen",
                "query",
                "--http",
                "127.0.0.1:8080",
                "-c",
                "2",
                "--rate",
                "5",
            ],
        ] {
            Cli::try_parse_from(&verb).unwrap_or_else(|e| panic!("{verb:?}: {e}"));
        }
    }
}
