//! The jobs service: AWS IoT Jobs over MQTT, and the jobs operators create over REST. A broker
//! link subscribed to `$aws/things/+/jobs/#` runs the rules of `mast_devices::ota` on its own
//! thread: the device API (get pending, start next, describe, update), `notify` and
//! `notify-next`, the timers, retries and cancels.
//!
//! Contract:
//! - **One writer, durable before replied.** This thread is the only writer of `ota_jobs` and
//!   `ota_executions` and keeps them in memory (read once at start). The changes of one turn
//!   (up to [`TURN`] requests and commands) are one metadata commit, and their event rows one
//!   telemetry batch (`iot.ota_events`); the turn's replies, notifications and API answers go
//!   out only once both are durable. A failed commit answers `InternalError` (503 over REST).
//! - **Replies** go to the requesting connection alone, whether it subscribed to the reply
//!   topic or not (AWS does; the embedded OTA agent relies on it). A client may ask only for
//!   the thing named by its client id (a certificate's device is its client id); another
//!   thing's request gets `InvalidRequest` (the jobs API has no `AccessDenied`).
//! - **Notifications** go to the thing's own session alone (they carry download tokens), not
//!   to whoever else subscribed to its topics: `notify` when its pending list gains or loses
//!   an execution, `notify-next` when its first pending execution changes (also to none). A
//!   connection that subscribes to its thing's `notify-next` while the thing has a next
//!   execution gets it once (offline when the job came, or rebooted mid-update): never an
//!   empty one, never twice on one connection.
//! - **Timers** (in-progress, step) are checked every second from the stored deadlines, so a
//!   restart re-arms them; one that passed while the server was down fires at start.
//! - **Download URLs**: a firmware job's document holds a placeholder; each reply that carries
//!   the document puts in its place an artifact URL with a token for that execution, valid
//!   `ota.download_url_secs` (HMAC-SHA256 under a key kept in `DATA/ota/url.key`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mast_broker::Broker;
use mast_broker::ids::ConnRef;
use mast_broker::link::{Link, LinkWaker, Received, Requester};
use mast_broker::message::{Message, now_ns};
use mast_devices::ota::execution::{self, Execution, Rejection, Status};
use mast_devices::ota::job::{
    self, Job, JobOp, JobStatus, REQUEST_FILTER, Request, event_topic, execution_json, stamped,
};
use mast_devices::ota::rollout::{Decision, EndBehavior, Progress};
use mast_devices::ota::stream;
use mast_devices::profile::RegistryError;
use mast_meta::tables::{OTA_EXECUTIONS, OTA_JOBS, OTA_TARGETS};
use mast_meta::{MetaStore, Op};
use mast_protocol::connect::QoS;
use mast_storage::batch::DEVICE_TAG;
use mast_storage::{Durability, Store, WriteBatch};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::firmware::FirmwareRegistry;
use crate::service_thread::ServiceThread;

/// The telemetry table every change of an execution is appended to.
pub const EVENTS_TABLE: &str = "iot.ota_events";

/// Requests and commands taken in one turn (one commit).
const TURN: usize = 1024;
/// API commands that may wait for the thread at once; more get 429.
const API_QUEUE: usize = 1024;
/// Subscriptions to `notify-next` that may wait for the thread at once (more are dropped:
/// those devices learn of their next job when they ask).
const SUBSCRIPTION_QUEUE: usize = 65_536;
/// How long an API request waits for its answer.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a turn waits for its commit before answering `InternalError`.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the timers are checked.
const TICK: Duration = Duration::from_secs(1);

/// Signs and checks the per-execution download URLs of firmware artifacts.
#[derive(Debug)]
pub struct DownloadUrls {
    key: ring::hmac::Key,
    base: String,
    lifetime_secs: u64,
}

/// Undoes `cli_devices::enc` (and any other percent-encoding).
fn unpct(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a download URL's query says.
#[derive(Debug, Default)]
struct Grant {
    device: String,
    job: String,
    execution: u64,
    expires: u64,
    token: String,
}

impl DownloadUrls {
    /// The key in `data_dir/ota/url.key` (made on first use); URLs start with `base` (such as
    /// `http://host:port`) and last `lifetime_secs`.
    pub fn open(data_dir: &Path, base: &str, lifetime_secs: u64) -> anyhow::Result<DownloadUrls> {
        let dir = data_dir.join("ota");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("url.key");
        let bytes = match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => b,
            _ => {
                let mut b = vec![0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                    .map_err(|_| anyhow::anyhow!("no randomness for the URL key"))?;
                crate::ca::write_file(&path, &b, 0o600)?;
                b
            }
        };
        Ok(DownloadUrls {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
            base: base.trim_end_matches('/').to_owned(),
            lifetime_secs,
        })
    }

    fn mac(&self, firmware: &str, g: &Grant) -> String {
        let msg = format!(
            "{firmware}\n{}\n{}\n{}\n{}",
            g.device, g.job, g.execution, g.expires
        );
        mast_devices::hex(&ring::hmac::sign(&self.key, msg.as_bytes()).as_ref()[..16])
    }

    /// The URL that lets `e`'s device download `firmware` until `now_secs` + the lifetime.
    pub fn url(&self, firmware: &str, e: &Execution, now_secs: u64) -> String {
        let mut g = Grant {
            device: e.thing.clone(),
            job: e.job_id.clone(),
            execution: e.execution_number,
            expires: now_secs + self.lifetime_secs,
            token: String::new(),
        };
        g.token = self.mac(firmware, &g);
        format!(
            "{}/api/v1/firmware/{firmware}/artifact?device={}&job={}&execution={}&expires={}&token={}",
            self.base,
            crate::cli_devices::enc(&g.device),
            g.job,
            g.execution,
            g.expires,
            g.token
        )
    }

    /// Whether `query` holds a download token (then it alone decides, whatever the API's
    /// tokens say).
    pub fn has_token(query: Option<&str>) -> bool {
        query.is_some_and(|q| q.split('&').any(|p| p.starts_with("token=")))
    }

    /// Checks the token of `query` for `firmware` at `now_secs`: the device it was given to,
    /// or why not.
    pub fn check(&self, firmware: &str, query: &str, now_secs: u64) -> Result<String, String> {
        let mut g = Grant::default();
        for part in query.split('&') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let v = unpct(v).ok_or("the download URL is malformed")?;
            match k {
                "device" => g.device = v,
                "job" => g.job = v,
                "execution" => g.execution = v.parse().map_err(|_| "bad execution")?,
                "expires" => g.expires = v.parse().map_err(|_| "bad expiry")?,
                "token" => g.token = v,
                _ => {}
            }
        }
        let want = self.mac(firmware, &g);
        if !crate::http::same(want.as_bytes(), g.token.as_bytes()) {
            return Err("the download token is not valid for this artifact".into());
        }
        if now_secs > g.expires {
            return Err("the download token has expired: ask for the job again".into());
        }
        Ok(g.device)
    }
}

/// Where the reactors send the subscriptions that may need a `notify-next` (set once the
/// service runs).
#[derive(Debug, Default)]
pub struct JobEvents {
    slot: OnceLock<(SyncSender<Command>, LinkWaker)>,
}

impl JobEvents {
    /// `client_id` subscribed `filter` on `conn`: if it covers its own `notify-next`, the
    /// service may owe it one. Never blocks; a full queue drops it (the device still asks).
    pub(crate) fn subscribed(&self, client_id: &Arc<str>, conn: ConnRef, filter: &str) {
        let Some((tx, waker)) = self.slot.get() else {
            return;
        };
        if !filter.contains("jobs") && !filter.ends_with('#') {
            return;
        }
        if !mast_protocol::topic::matches(filter, &event_topic(client_id, true)) {
            return;
        }
        let c = Command::Subscribed(Requester {
            client_id: Arc::clone(client_id),
            conn,
        });
        if tx.try_send(c).is_ok() {
            waker.wake();
        }
    }
}

/// A request of the API for the service's thread.
pub enum Command {
    /// A new job with its targets (resolved and checked by the caller).
    Create {
        job: Box<Job>,
        targets: Vec<String>,
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    /// A continuous job's targets now (those the firmware fits), and how many it does not.
    Members {
        job_id: String,
        members: Vec<String>,
        incompatible: u64,
    },
    Cancel {
        job_id: String,
        force: bool,
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    /// A job with its counts; `None`: every job.
    Get {
        job_id: Option<String>,
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    /// The executions of a job (or of a device).
    Executions {
        job_id: Option<String>,
        device: Option<String>,
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    /// An operator approves the next wave.
    Approve {
        job_id: String,
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    /// The ids of the continuous jobs still running, with their targets.
    Continuous {
        answer: oneshot::Sender<Result<Value, RegistryError>>,
    },
    Subscribed(Requester),
}

/// Sends API requests to the jobs service's thread.
#[derive(Debug, Clone)]
pub struct JobsHandle {
    tx: SyncSender<Command>,
    waker: LinkWaker,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("jobs command")
    }
}

impl JobsHandle {
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<Value, RegistryError>>) -> Command,
    ) -> Result<Value, RegistryError> {
        let (answer, rx) = oneshot::channel();
        match self.tx.try_send(make(answer)) {
            Ok(()) => self.waker.wake(),
            Err(TrySendError::Full(_)) => {
                return Err(RegistryError {
                    status: 429,
                    code: "too_many_requests",
                    message: "the jobs service is busy; try again".into(),
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(RegistryError::internal("the jobs service has stopped"));
            }
        }
        match tokio::time::timeout(API_TIMEOUT, rx).await {
            Ok(Ok(a)) => a,
            _ => Err(RegistryError::internal(
                "the jobs service did not answer (a slow or failing disk)",
            )),
        }
    }

    /// Creates `job` for `targets`; the job as `get` shows it, once durable.
    pub async fn create(&self, job: Job, targets: Vec<String>) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Create {
            job: Box::new(job),
            targets,
            answer,
        })
        .await
    }

    /// A continuous job's targets now: new ones join its release order, those that left lose
    /// their QUEUED execution (REMOVED), those that come back get a new one.
    pub async fn members(&self, job_id: String, members: Vec<String>, incompatible: u64) {
        let c = Command::Members {
            job_id,
            members,
            incompatible,
        };
        if self.tx.try_send(c).is_ok() {
            self.waker.wake();
        }
    }

    pub async fn cancel(&self, job_id: String, force: bool) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Cancel {
            job_id,
            force,
            answer,
        })
        .await
    }

    pub async fn approve(&self, job_id: String) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Approve { job_id, answer }).await
    }

    pub async fn get(&self, job_id: Option<String>) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Get { job_id, answer }).await
    }

    pub async fn executions(
        &self,
        job_id: Option<String>,
        device: Option<String>,
    ) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Executions {
            job_id,
            device,
            answer,
        })
        .await
    }

    /// `[{job_id, targets}]` of the continuous jobs in progress.
    pub async fn continuous(&self) -> Result<Value, RegistryError> {
        self.ask(|answer| Command::Continuous { answer }).await
    }
}

/// A running jobs service.
#[derive(Debug)]
pub struct JobsService {
    thread: ServiceThread,
    handle: JobsHandle,
}

impl JobsService {
    /// Opens a link on `broker`, reads the jobs and executions of `meta`, and starts
    /// answering; event rows go to `store`, subscriptions come through `events`.
    pub fn start(
        broker: &Arc<Broker>,
        meta: Arc<MetaStore>,
        store: Arc<Store>,
        urls: Arc<DownloadUrls>,
        firmware: Arc<FirmwareRegistry>,
        events: &JobEvents,
    ) -> anyhow::Result<JobsService> {
        let mut link = broker.open_link("jobs");
        for f in [REQUEST_FILTER, stream::REQUEST_FILTER] {
            if let Err(code) = link.subscribe(f, QoS::AtLeastOnce) {
                anyhow::bail!("subscribing {f}: {code:?}");
            }
        }
        let (tx, rx) = mpsc::sync_channel(API_QUEUE);
        let handle = JobsHandle {
            tx: tx.clone(),
            waker: link.waker(),
        };
        // Subscriptions have their own, larger queue: a fleet reconnecting at once must not
        // crowd out the API, nor lose the catch-ups it is owed.
        let (subs_tx, subs) = mpsc::sync_channel(SUBSCRIPTION_QUEUE);
        let _ = events.slot.set((subs_tx, link.waker()));
        let waker = link.waker();
        let mut worker = Worker::load(link, meta, store, urls, firmware, rx)?;
        worker.subs = Some(subs);
        let thread = ServiceThread::spawn("jobs", waker, move |stop| worker.run(stop))?;
        Ok(JobsService { thread, handle })
    }

    pub fn handle(&self) -> JobsHandle {
        self.handle.clone()
    }

    /// Answers what was asked, waits for its commits, and stops.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

/// What a turn sends once its changes are durable.
enum Out {
    Reply(Requester, Message),
    /// To the session of this client id alone (a thing's own event).
    ToThing(String, Message),
    Answer(
        oneshot::Sender<Result<Value, RegistryError>>,
        Result<Value, RegistryError>,
    ),
}

/// A thing's executions, by job.
/// A device has few executions: a vector holds them in a fraction of a B-tree node's room.
#[derive(Debug, Default)]
struct Executions(Vec<Execution>);

impl Executions {
    fn get(&self, job_id: &str) -> Option<&Execution> {
        self.0.iter().find(|e| e.job_id == job_id)
    }

    /// Puts `e` in the place of the execution of its job, if any.
    fn insert(&mut self, e: Execution) {
        match self.0.iter_mut().find(|x| x.job_id == e.job_id) {
            Some(x) => *x = e,
            None => {
                self.0.push(e);
                self.0.shrink_to_fit();
            }
        }
    }

    fn values(&self) -> std::slice::Iter<'_, Execution> {
        self.0.iter()
    }
}

struct Worker {
    link: Link,
    store: Arc<Store>,
    urls: Arc<DownloadUrls>,
    firmware: Arc<FirmwareRegistry>,
    rx: Receiver<Command>,
    subs: Option<Receiver<Command>>,
    jobs: BTreeMap<String, Job>,
    things: HashMap<String, Executions>,
    /// The next execution last told to each thing by a `notify-next` that reached it, and
    /// the connection it reached.
    told: HashMap<String, Told>,
    /// The connection of each thing that last subscribed to its `notify-next`.
    listening: HashMap<String, ConnRef>,
    /// Things changed this turn, with what they had pending before it.
    touched: BTreeMap<String, Before>,
    ops: Vec<Op>,
    events: WriteBatch,
    out: Vec<Out>,
    /// Last event row time (rows of one series need distinct times).
    last_ns: i64,
    /// Each job's targets in release order.
    targeted: HashMap<String, JobTargets>,
}

/// A job's targets: the first `Job::released` have executions.
#[derive(Debug, Default)]
struct JobTargets {
    order: Vec<String>,
    /// When devices were released in the last minute (for the rate).
    recent: VecDeque<i64>,
    /// What the rollout waits for, if anything (shown over REST).
    state: &'static str,
}

impl JobTargets {
    fn of(order: Vec<String>) -> JobTargets {
        JobTargets {
            order,
            ..JobTargets::default()
        }
    }

    fn put(&self, job_id: &str) -> Op {
        Op::Put {
            table: OTA_TARGETS,
            key: job_id.as_bytes().to_vec(),
            value: serde_json::to_vec(&self.order).unwrap_or_default(),
        }
    }

    /// Forgets releases older than a minute; (last minute, last second).
    fn recent(&mut self, now: i64) -> (u64, u64) {
        while self
            .recent
            .front()
            .is_some_and(|t| *t <= now - 60 * NS_PER_SEC)
        {
            self.recent.pop_front();
        }
        let second = self
            .recent
            .iter()
            .rev()
            .take_while(|t| **t > now - NS_PER_SEC)
            .count();
        (self.recent.len() as u64, second as u64)
    }
}

const NS_PER_SEC: i64 = 1_000_000_000;

/// What a thing was last told of its next execution, and on which connection.
type Told = (Option<ConnRef>, Option<(String, u64)>);

struct Before {
    front: Option<(String, u64)>,
    pending: BTreeSet<(String, u64)>,
}

fn snapshot(execs: Option<&Executions>) -> Before {
    let mut b = Before {
        front: None,
        pending: BTreeSet::new(),
    };
    if let Some(x) = execs {
        b.front = job::front(x.values());
        b.pending = job::pending(x.values())
            .into_iter()
            .map(|e| (e.job_id.clone(), e.execution_number))
            .collect();
    }
    b
}

fn internal_rejection() -> Rejection {
    Rejection {
        code: "InternalError",
        message: "the change could not be stored".into(),
        state: None,
    }
}

fn not_found(message: String) -> Rejection {
    Rejection {
        code: "ResourceNotFound",
        message,
        state: None,
    }
}

fn counts_json(execs: impl Iterator<Item = Status>) -> Value {
    let mut c: BTreeMap<&'static str, u64> =
        execution::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for s in execs {
        *c.entry(s.as_str()).or_default() += 1;
    }
    json!(c)
}

/// An execution as the REST API shows it.
pub fn execution_rest_json(e: &Execution) -> Value {
    let t = |ns: Option<i64>| ns.map(crate::registry::rfc3339);
    json!({
        "job_id": e.job_id,
        "device_id": e.thing,
        "status": e.status.as_str(),
        "status_details": e.status_details,
        "version_number": e.version_number,
        "execution_number": e.execution_number,
        "retries": e.execution_number.saturating_sub(1),
        "queued_at": t(Some(e.queued_at)),
        "started_at": t(e.started_at),
        "last_updated_at": t(Some(e.last_updated_at)),
    })
}

impl Worker {
    fn load(
        link: Link,
        meta: Arc<MetaStore>,
        store: Arc<Store>,
        urls: Arc<DownloadUrls>,
        firmware: Arc<FirmwareRegistry>,
        rx: Receiver<Command>,
    ) -> anyhow::Result<Worker> {
        let mut jobs = BTreeMap::new();
        for (k, v) in meta.scan_prefix(OTA_JOBS, b"")? {
            match Job::decode(&v) {
                Ok(j) => {
                    jobs.insert(j.job_id.clone(), j);
                }
                Err(e) => meta.report_unreadable(OTA_JOBS, &k, e),
            }
        }
        let mut targeted: HashMap<String, JobTargets> = HashMap::new();
        for (k, v) in meta.scan_prefix(OTA_TARGETS, b"")? {
            match serde_json::from_slice::<Vec<String>>(&v) {
                Ok(order) => {
                    targeted.insert(
                        String::from_utf8_lossy(&k).into_owned(),
                        JobTargets::of(order),
                    );
                }
                Err(e) => meta.report_unreadable(OTA_TARGETS, &k, e.to_string()),
            }
        }
        let now = now_ns();
        let mut things: HashMap<String, Executions> = HashMap::new();
        for (k, v) in meta.scan_prefix(OTA_EXECUTIONS, b"")? {
            match job::decode_execution(&v) {
                Ok(e) => {
                    // Releases of the last minute count against the rate after a restart.
                    if e.execution_number == 1
                        && e.queued_at > now - 60 * NS_PER_SEC
                        && let Some(t) = targeted.get_mut(&e.job_id)
                    {
                        t.recent.push_back(e.queued_at);
                    }
                    things.entry(e.thing.clone()).or_default().insert(e);
                }
                Err(e) => meta.report_unreadable(OTA_EXECUTIONS, &k, e),
            }
        }
        for t in targeted.values_mut() {
            t.recent.make_contiguous().sort_unstable();
        }
        tracing::info!(
            jobs = jobs.len(),
            devices = things.len(),
            "jobs service: state read"
        );
        Ok(Worker {
            link,
            store,
            urls,
            firmware,
            rx,
            subs: None,
            jobs,
            things,
            told: HashMap::new(),
            listening: HashMap::new(),
            touched: BTreeMap::new(),
            ops: Vec::new(),
            events: WriteBatch::new(),
            out: Vec::new(),
            last_ns: 0,
            targeted,
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut next_tick = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut taken = 0;
            if let Some(r) = self.link.recv(if stopping { Duration::ZERO } else { wait }) {
                self.handle(r);
                taken += 1;
            }
            while taken < TURN {
                if let Some(r) = self.link.try_recv() {
                    self.handle(r);
                } else if let Ok(c) = self.rx.try_recv() {
                    self.command(c);
                } else if let Some(Ok(c)) = self.subs.as_ref().map(Receiver::try_recv) {
                    self.command(c);
                } else {
                    break;
                }
                taken += 1;
            }
            if Instant::now() >= next_tick {
                self.tick(now_ns());
                next_tick = Instant::now() + TICK;
            }
            self.end_turn();
            if stopping && taken == 0 {
                return;
            }
        }
    }

    /// Remembers what `thing` had pending before its first change this turn.
    fn touch(&mut self, thing: &str) {
        if !self.touched.contains_key(thing) {
            let b = snapshot(self.things.get(thing));
            self.touched.insert(thing.to_owned(), b);
        }
    }

    /// Stores `e` (a change of `previous`) and appends its event row.
    fn put(&mut self, e: Execution, previous: Option<Status>, reason: &str) {
        self.touch(&e.thing);
        self.ops.push(job::put_execution(&e));
        let now = now_ns().max(self.last_ns + 1);
        self.last_ns = now;
        let firmware = self
            .jobs
            .get(&e.job_id)
            .and_then(|j| j.firmware.clone())
            .unwrap_or_default();
        let series = self.events.series(
            EVENTS_TABLE,
            &[(DEVICE_TAG, &e.thing), ("job_id", &e.job_id)],
        );
        self.events
            .row(series, now)
            .str("status", e.status.as_str())
            .str("previous_status", previous.map_or("", Status::as_str))
            .i64("execution_number", e.execution_number as i64)
            .i64("version_number", e.version_number as i64)
            .str("firmware_id", &firmware)
            .str(
                "status_details",
                &serde_json::to_string(&e.status_details).unwrap_or_default(),
            )
            .str("reason", reason);
        self.things.entry(e.thing.clone()).or_default().insert(e);
    }

    /// A terminal `e` is tried again if its job says so.
    fn maybe_retry(&mut self, e: &Execution) {
        let Some(j) = self.jobs.get(&e.job_id) else {
            return;
        };
        if !j.retries_after(e) {
            return;
        }
        let next = Execution::queued(&e.job_id, &e.thing, e.execution_number + 1, now_ns());
        self.put(next, Some(e.status), "retry");
    }

    /// The turn's changes: one commit, one batch of rows; then everything it answers.
    fn end_turn(&mut self) {
        self.notifications();
        let ops = std::mem::take(&mut self.ops);
        let batch = std::mem::take(&mut self.events);
        // Both submitted first, then both waited for: the two fsyncs overlap.
        let seq = (!ops.is_empty()).then(|| self.link.persist(ops));
        let ticket = (!batch.is_empty()).then(|| {
            self.store
                .submit(batch, Durability::Durable)
                .map_err(|e| e.to_string())
        });
        let mut ok = match seq {
            Some(seq) => seq.is_some() && self.link.wait_durable(seq, COMMIT_TIMEOUT),
            None => true,
        };
        if let Some(t) = ticket {
            let stored = t.and_then(|t| t.wait().map_err(|e| e.to_string()));
            if let Err(e) = stored {
                tracing::error!(error = %e, "job events not stored");
                ok = false;
            }
        }
        let now = now_ns();
        for o in std::mem::take(&mut self.out) {
            match o {
                Out::Reply(to, m) => {
                    let m = if ok {
                        m
                    } else if let Some(f) = failed(&m, now) {
                        f
                    } else {
                        continue;
                    };
                    self.link.reply_unsubscribed_deferred(&to, m);
                }
                Out::ToThing(thing, m) if ok => {
                    self.link.to_client_deferred(&thing, m);
                }
                Out::ToThing(..) => {}
                Out::Answer(to, a) => {
                    let a = if ok {
                        a
                    } else {
                        Err(RegistryError::internal(
                            "the change was not committed (the metadata store is failing)",
                        ))
                    };
                    let _ = to.send(a);
                }
            }
        }
        self.link.wake();
    }

    /// `notify` and `notify-next` for the things this turn changed.
    fn notifications(&mut self) {
        let now = now_ns();
        for (thing, before) in std::mem::take(&mut self.touched) {
            let after = snapshot(self.things.get(&thing));
            let execs = self.things.get(&thing);
            if after.pending != before.pending {
                let body = stamped(
                    job::notify_json(execs.into_iter().flat_map(|x| x.values())),
                    None,
                    now,
                );
                let m = json_message(&event_topic(&thing, false), &body);
                self.out.push(Out::ToThing(thing.clone(), m));
            }
            if after.front != before.front {
                let topic = event_topic(&thing, true);
                let body = self.next_json(&thing, now);
                if self.link.client_subscribed(&thing, &topic) {
                    let conn = self.listening.get(&thing).copied();
                    self.told.insert(thing.clone(), (conn, after.front.clone()));
                } else {
                    self.told.remove(&thing);
                }
                self.out
                    .push(Out::ToThing(thing.clone(), json_message(&topic, &body)));
            }
        }
    }

    /// `notify-next`'s body for `thing`: its next execution with the document, or none.
    fn next_json(&self, thing: &str, now: i64) -> Value {
        let e = self.next_of(thing);
        let mut v = json!({});
        if let Some(e) = e {
            v["execution"] = execution_json(&e, Some(self.document(&e)), now);
        }
        stamped(v, None, now)
    }

    /// `thing`'s next execution: the first of its pending ones.
    fn next_of(&self, thing: &str) -> Option<Execution> {
        let x = self.things.get(thing)?;
        job::pending(x.values()).first().map(|e| (*e).clone())
    }

    /// `e`'s job document, with its download URLs filled in for `e`.
    fn document(&self, e: &Execution) -> Value {
        let Some(j) = self.jobs.get(&e.job_id) else {
            return json!({});
        };
        match &j.firmware {
            Some(fw) => {
                let secs = (now_ns() / 1_000_000_000).max(0) as u64;
                job::fill_urls(&j.document, &|| self.urls.url(fw, e, secs))
            }
            None => j.document.clone(),
        }
    }

    fn handle(&mut self, r: Received) {
        let Some(from) = r.from.clone() else {
            return;
        };
        let Some(req) = Request::parse(r.message.topic.as_str()) else {
            if let Some((thing, id)) = stream::parse_topic(r.message.topic.as_str()) {
                self.stream(&from, thing, id, &r.message.payload);
            }
            return;
        };
        let payload = &r.message.payload[..];
        let now = now_ns();
        let answer = if &*from.client_id != req.thing {
            Err(Rejection {
                code: "InvalidRequest",
                message: format!(
                    "client {:?} may use only its own jobs topics ($aws/things/{}/jobs/...)",
                    &*from.client_id, &*from.client_id
                ),
                state: None,
            })
        } else {
            self.serve(&req, payload, now)
        };
        let token = job::token_of(payload);
        let (accepted, body) = match answer {
            Ok(v) => (true, stamped(v, token.as_deref(), now)),
            Err(e) => {
                tracing::debug!(client_id = %from.client_id, topic = req.topic, code = e.code, error = %e.message, "job request refused");
                (false, e.document(token.as_deref(), now))
            }
        };
        let m = json_message(&req.reply_topic(accepted), &body);
        self.out.push(Out::Reply(from, m));
    }

    /// GetStream: the blocks asked for, each its own message, or a refusal.
    fn stream(&mut self, from: &Requester, thing: &str, id: &str, payload: &[u8]) {
        let token = || {
            serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| v["c"].as_str().map(str::to_owned))
        };
        match self.blocks(from, thing, id, payload) {
            Ok(messages) => {
                for m in messages {
                    self.out.push(Out::Reply(from.clone(), m));
                }
            }
            Err((e, t)) => {
                let doc = e.document(t.or_else(token).as_deref());
                let m = json_message(&stream::rejected_topic(thing, id), &doc);
                self.out.push(Out::Reply(from.clone(), m));
            }
        }
    }

    fn blocks(
        &self,
        from: &Requester,
        thing: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<Vec<Message>, (stream::Refusal, Option<String>)> {
        use std::os::unix::fs::FileExt;
        let refuse = |code, m: String| (stream::Refusal::new(code, m), None);
        if &*from.client_id != thing {
            return Err(refuse(
                "Unauthorized",
                format!(
                    "client {:?} may read only its own streams",
                    &*from.client_id
                ),
            ));
        }
        // Only a device a job in progress gives this firmware to.
        let wanted = self.things.get(thing).is_some_and(|x| {
            x.values().any(|e| {
                !e.status.is_terminal()
                    && self
                        .jobs
                        .get(&e.job_id)
                        .is_some_and(|j| j.firmware.as_deref() == Some(id))
            })
        });
        if !wanted {
            return Err(refuse(
                "ResourceNotFound",
                format!("no job in progress gives {thing} the firmware {id}"),
            ));
        }
        let fw = match self.firmware.get(id) {
            Ok(Some(f)) if f.deleted_at.is_none() => f,
            _ => return Err(refuse("ResourceNotFound", format!("no firmware {id}"))),
        };
        let get = stream::parse_get(payload, fw.size)?;
        let file = std::fs::File::open(self.firmware.artifacts.path(&fw.sha256))
            .map_err(|e| refuse("InternalError", format!("reading the artifact: {e}")))?;
        let topic = stream::data_topic(thing, id);
        let mut out = Vec::with_capacity(get.blocks.len());
        let mut buf = Vec::new();
        for &i in &get.blocks {
            let (at, len) = get.span(i, fw.size);
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, at)
                .map_err(|e| refuse("InternalError", format!("reading the artifact: {e}")))?;
            out.push(json_message(&topic, &get.data(i, at, &buf)));
        }
        Ok(out)
    }

    fn serve(&mut self, req: &Request<'_>, payload: &[u8], now: i64) -> Result<Value, Rejection> {
        let thing = req.thing;
        match &req.op {
            JobOp::Invalid => Err(Rejection {
                code: "InvalidTopic",
                message: format!("{} is no jobs API", req.topic),
                state: None,
            }),
            JobOp::GetPending => {
                execution::parse_object(payload)?;
                Ok(job::pending_json(
                    self.things.get(thing).into_iter().flat_map(|x| x.values()),
                ))
            }
            JobOp::StartNext => {
                let ask = job::parse_ask(payload)?;
                let next = self.next_of(thing);
                let Some(e) = next else {
                    return Ok(json!({}));
                };
                let timeout = self
                    .jobs
                    .get(&e.job_id)
                    .and_then(Job::in_progress_timeout_ns);
                let started =
                    e.start(ask.status_details, ask.step_timeout_minutes, now, timeout)?;
                if started != e {
                    self.put(started.clone(), Some(e.status), "start-next");
                }
                let doc = self.document(&started);
                Ok(json!({ "execution": execution_json(&started, Some(doc), now) }))
            }
            JobOp::Describe(job_id) => {
                let ask = job::parse_ask(payload)?;
                let e = match job_id {
                    None => {
                        let next = self.next_of(thing);
                        match next {
                            Some(e) => e,
                            None => return Ok(json!({})),
                        }
                    }
                    Some(id) => self.find(thing, id, ask.execution_number)?,
                };
                if job_id.is_some() && e.status.is_terminal() {
                    return Err(Rejection {
                        code: "TerminalStateReached",
                        message: format!(
                            "the execution of job {} is {}",
                            e.job_id,
                            e.status.as_str()
                        ),
                        state: None,
                    });
                }
                let doc = ask.include_job_document.then(|| self.document(&e));
                Ok(json!({ "execution": execution_json(&e, doc, now) }))
            }
            JobOp::Update(job_id) => {
                let u = execution::parse_update(payload)?;
                let e = self.find(thing, job_id, None)?;
                let timeout = self.jobs.get(job_id).and_then(Job::in_progress_timeout_ns);
                let next = e.apply(&u, now, timeout)?;
                let mut v = json!({});
                if u.include_job_execution_state {
                    v["executionState"] = next.state_json();
                }
                if u.include_job_document {
                    v["jobDocument"] = self.document(&next);
                }
                self.put(next.clone(), Some(e.status), "device");
                if next.status.is_terminal() {
                    self.maybe_retry(&next);
                    self.maybe_complete(job_id);
                }
                Ok(v)
            }
        }
    }

    /// The execution of `job_id` on `thing` (`number`: that attempt, which must be the
    /// latest).
    fn find(&self, thing: &str, job_id: &str, number: Option<u64>) -> Result<Execution, Rejection> {
        let e = self
            .things
            .get(thing)
            .and_then(|x| x.get(job_id))
            .ok_or_else(|| not_found(format!("job {job_id} has no execution on {thing}")))?;
        if let Some(n) = number
            && n != e.execution_number
        {
            return Err(not_found(format!(
                "job {job_id} has no execution number {n} on {thing} (the latest is {})",
                e.execution_number
            )));
        }
        Ok(e.clone())
    }

    /// Every `IN_PROGRESS` execution whose timer passed becomes `TIMED_OUT` (and may be
    /// retried); every rollout takes its next step.
    fn tick(&mut self, now: i64) {
        let due: Vec<Execution> = self
            .things
            .values()
            .flat_map(|x| x.values())
            .filter_map(|e| e.timed_out(now))
            .collect();
        for e in due {
            let job_id = e.job_id.clone();
            self.put(e.clone(), Some(Status::InProgress), "timeout");
            self.maybe_retry(&e);
            self.maybe_complete(&job_id);
        }
        let running: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::InProgress)
            .map(|j| j.job_id.clone())
            .collect();
        for id in running {
            self.step(&id, now);
        }
    }

    /// The executions of `job_id` that exist (its released targets').
    fn released<'a>(&'a self, job_id: &str) -> impl Iterator<Item = &'a Execution> + 'a {
        let n = self.jobs.get(job_id).map_or(0, |j| j.released as usize);
        let order = self.targeted.get(job_id).map_or(&[][..], |t| &t.order[..]);
        let job_id = job_id.to_owned();
        order[..n.min(order.len())]
            .iter()
            .filter_map(move |t| self.things.get(t)?.get(&job_id))
    }

    /// Where `job_id`'s rollout is at `now`.
    fn progress(&mut self, job_id: &str, now: i64) -> Progress {
        let (last_minute, last_second) = self
            .targeted
            .get_mut(job_id)
            .map_or((0, 0), |t| t.recent(now));
        let mut p = Progress {
            total: self
                .targeted
                .get(job_id)
                .map_or(0, |t| t.order.len() as u64),
            released: self.jobs.get(job_id).map_or(0, |j| j.released),
            approved: self.jobs.get(job_id).map_or(0, |j| j.approved),
            last_minute,
            last_second,
            ..Progress::default()
        };
        for e in self.released(job_id) {
            match e.status {
                Status::Succeeded => p.succeeded += 1,
                Status::Failed => p.failed += 1,
                Status::Rejected => p.rejected += 1,
                Status::TimedOut => p.timed_out += 1,
                _ => continue,
            }
            p.executed += 1;
        }
        p
    }

    /// One step of `job_id`'s rollout: release devices, wait, abort or end.
    fn step(&mut self, job_id: &str, now: i64) {
        if self
            .jobs
            .get(job_id)
            .is_none_or(|j| j.status != JobStatus::InProgress)
        {
            return;
        }
        let p = self.progress(job_id, now);
        let Some(j) = self.jobs.get(job_id) else {
            return;
        };
        let decision = j.rollout.decide(&p, now);
        let stopped = j.rollout_stopped;
        let state = match decision {
            Decision::Release(_) | Decision::Wait(..) | Decision::AwaitApproval(_) if stopped => {
                "stopped at the schedule's end"
            }
            Decision::Release(n) => {
                self.release(job_id, n, now);
                "releasing"
            }
            Decision::Wait(why, _) => why,
            Decision::AwaitApproval(_) => "waiting for approval",
            Decision::Abort(why) => {
                tracing::warn!(job_id, reason = %why, "job aborted");
                if let Some(j) = self.jobs.get_mut(job_id) {
                    j.abort_reason = Some(why);
                }
                let _ = self.cancel(job_id, false);
                "aborted"
            }
            Decision::End(EndBehavior::StopRollout) => {
                if let Some(j) = self.jobs.get_mut(job_id)
                    && !j.rollout_stopped
                {
                    j.rollout_stopped = true;
                    j.updated_at = now;
                    self.ops.push(j.put());
                }
                "stopped at the schedule's end"
            }
            Decision::End(b) => {
                let _ = self.cancel(job_id, b == EndBehavior::ForceCancel);
                "canceled at the schedule's end"
            }
            Decision::Done => {
                self.maybe_complete(job_id);
                "released"
            }
        };
        if let Some(t) = self.targeted.get_mut(job_id) {
            t.state = state;
        }
    }

    /// Notifies the next `n` targets of `job_id`: a QUEUED execution each.
    fn release(&mut self, job_id: &str, n: u64, now: i64) {
        let Some(j) = self.jobs.get(job_id) else {
            return;
        };
        let from = j.released as usize;
        let next: Vec<String> = self
            .targeted
            .get(job_id)
            .map(|t| {
                t.order
                    .iter()
                    .skip(from)
                    .take(n as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in &next {
            let fresh = self.things.get(t).and_then(|x| x.get(job_id)).is_none();
            if fresh {
                self.put(Execution::queued(job_id, t, 1, now), None, "targeted");
            }
        }
        if let Some(t) = self.targeted.get_mut(job_id) {
            t.recent.extend(std::iter::repeat_n(now, next.len()));
        }
        if let Some(j) = self.jobs.get_mut(job_id) {
            j.released += next.len() as u64;
            j.updated_at = now;
            self.ops.push(j.put());
        }
    }

    /// A snapshot job whose targets were all released and whose executions all ended is
    /// COMPLETED.
    fn maybe_complete(&mut self, job_id: &str) {
        let Some(j) = self.jobs.get(job_id) else {
            return;
        };
        if j.status != JobStatus::InProgress || j.target_selection == job::Selection::Continuous {
            return;
        }
        let total = self
            .targeted
            .get(job_id)
            .map_or(0, |t| t.order.len() as u64);
        if j.released < total || self.released(job_id).any(|e| !e.status.is_terminal()) {
            return;
        }
        let mut j = j.clone();
        let now = now_ns();
        j.status = JobStatus::Completed;
        j.completed_at = Some(now);
        j.updated_at = now;
        self.ops.push(j.put());
        self.jobs.insert(j.job_id.clone(), j);
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Create {
                job,
                targets,
                answer,
            } => {
                let r = self.create(*job, targets);
                self.out.push(Out::Answer(answer, r));
            }
            Command::Members {
                job_id,
                members,
                incompatible,
            } => self.members(&job_id, members, incompatible),
            Command::Approve { job_id, answer } => {
                let r = self.approve(&job_id);
                self.out.push(Out::Answer(answer, r));
            }
            Command::Cancel {
                job_id,
                force,
                answer,
            } => {
                let r = self.cancel(&job_id, force);
                self.out.push(Out::Answer(answer, r));
            }
            Command::Get { job_id, answer } => {
                let r = match job_id {
                    Some(id) => self
                        .job_json(&id)
                        .ok_or_else(|| RegistryError::not_found(format!("no job {id:?}"))),
                    None => Ok(Value::Array(
                        self.jobs
                            .keys()
                            .filter_map(|id| self.job_json(id))
                            .collect(),
                    )),
                };
                let _ = answer.send(r);
            }
            Command::Executions {
                job_id,
                device,
                answer,
            } => {
                let mut v = Vec::new();
                let mut add = |x: &Executions| {
                    for e in x.values() {
                        if job_id.as_ref().is_none_or(|j| *j == e.job_id) {
                            v.push(execution_rest_json(e));
                        }
                    }
                };
                match &device {
                    Some(d) => {
                        if let Some(x) = self.things.get(d) {
                            add(x);
                        }
                    }
                    None => {
                        if let Some(ts) = job_id.as_ref().and_then(|j| self.targeted.get(j)) {
                            for t in &ts.order {
                                if let Some(x) = self.things.get(t) {
                                    add(x);
                                }
                            }
                        }
                    }
                }
                let _ = answer.send(Ok(Value::Array(v)));
            }
            Command::Continuous { answer } => {
                let v: Vec<Value> = self
                    .jobs
                    .values()
                    .filter(|j| {
                        j.status == JobStatus::InProgress
                            && j.target_selection == job::Selection::Continuous
                    })
                    .map(|j| json!({"job_id": j.job_id, "targets": j.targets, "firmware": j.firmware}))
                    .collect();
                let _ = answer.send(Ok(Value::Array(v)));
            }
            Command::Subscribed(to) => self.catch_up(&to),
        }
    }

    /// A thing subscribed to its `notify-next`: if it has a next execution that this
    /// connection was not told of, it is now (to that connection) — a device offline when its
    /// job came, or one that rebooted mid-update, learns of it without asking.
    fn catch_up(&mut self, to: &Requester) {
        let thing = to.client_id.to_string();
        self.listening.insert(thing.clone(), to.conn);
        let Some(execs) = self.things.get(&thing) else {
            return;
        };
        let front = job::front(execs.values());
        let here = (Some(to.conn), front.clone());
        if front.is_none() || self.told.get(&thing) == Some(&here) {
            return;
        }
        let body = self.next_json(&thing, now_ns());
        self.told.insert(thing.clone(), here);
        let m = json_message(&event_topic(&thing, true), &body);
        self.out.push(Out::Reply(to.clone(), m));
    }

    fn create(&mut self, mut job: Job, targets: Vec<String>) -> Result<Value, RegistryError> {
        if self.jobs.contains_key(&job.job_id) {
            return Err(RegistryError::conflict(format!(
                "job {:?} exists (job ids are never reused)",
                job.job_id
            )));
        }
        let now = now_ns();
        job.created_at = now;
        job.updated_at = now;
        let id = job.job_id.clone();
        let empty = targets.is_empty();
        if empty && job.target_selection == job::Selection::Snapshot {
            job.status = JobStatus::Completed;
            job.completed_at = Some(now);
        }
        self.ops.push(job.put());
        self.jobs.insert(id.clone(), job);
        let mut seen = HashSet::new();
        let order: Vec<String> = targets
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        let t = JobTargets::of(order);
        self.ops.push(t.put(&id));
        self.targeted.insert(id.clone(), t);
        self.step(&id, now);
        self.job_json(&id)
            .ok_or_else(|| RegistryError::internal("the job vanished"))
    }

    fn cancel(&mut self, job_id: &str, force: bool) -> Result<Value, RegistryError> {
        let Some(j) = self.jobs.get(job_id).cloned() else {
            return Err(RegistryError::not_found(format!("no job {job_id:?}")));
        };
        if j.status != JobStatus::InProgress && !(force && j.status == JobStatus::Canceled) {
            return Err(RegistryError::conflict(format!(
                "job {job_id} is {}",
                j.status.as_str()
            )));
        }
        let now = now_ns();
        let mut j = j;
        j.status = JobStatus::Canceled;
        j.forced |= force;
        j.completed_at = Some(now);
        j.updated_at = now;
        self.ops.push(j.put());
        self.jobs.insert(job_id.to_owned(), j);
        let things: Vec<String> = self.released(job_id).map(|e| e.thing.clone()).collect();
        for t in things {
            let c = self
                .things
                .get(&t)
                .and_then(|x| x.get(job_id))
                .and_then(|e| e.canceled(false, force, now).map(|c| (e.status, c)));
            if let Some((was, c)) = c {
                self.put(
                    c,
                    Some(was),
                    if force {
                        "canceled (force)"
                    } else {
                        "canceled"
                    },
                );
            }
        }
        self.job_json(job_id)
            .ok_or_else(|| RegistryError::internal("the job vanished"))
    }

    /// A continuous job's targets are `members` now.
    fn members(&mut self, job_id: &str, members: Vec<String>, incompatible: u64) {
        let now = now_ns();
        let Some(j) = self.jobs.get_mut(job_id) else {
            return;
        };
        if j.status != JobStatus::InProgress || j.target_selection != job::Selection::Continuous {
            return;
        }
        if j.incompatible != incompatible {
            j.incompatible = incompatible;
            j.updated_at = now;
            self.ops.push(j.put());
        }
        let released = j.released as usize;
        let want: BTreeSet<String> = members.into_iter().collect();
        let Some(t) = self.targeted.get_mut(job_id) else {
            return;
        };
        let released = released.min(t.order.len());
        // Not yet notified and gone: dropped from the order; new ones appended.
        let mut order: Vec<String> = t.order[..released].to_vec();
        order.extend(
            t.order[released..]
                .iter()
                .filter(|d| want.contains(*d))
                .cloned(),
        );
        let known: HashSet<&String> = order.iter().collect();
        let fresh: Vec<String> = want
            .iter()
            .filter(|d| !known.contains(d))
            .cloned()
            .collect();
        order.extend(fresh);
        if order != t.order {
            *t = JobTargets {
                recent: std::mem::take(&mut t.recent),
                state: t.state,
                ..JobTargets::of(order)
            };
            self.ops.push(t.put(job_id));
        }
        // Notified: a QUEUED execution of one that left is REMOVED; one that came back after
        // that gets a new attempt.
        let mut changes = Vec::new();
        for d in &self.targeted[job_id].order[..released] {
            let Some(e) = self.things.get(d).and_then(|x| x.get(job_id)) else {
                continue;
            };
            let member = want.contains(d);
            if !member && let Some(r) = e.canceled(true, false, now) {
                changes.push((r, e.status, "left the targets"));
            } else if member && e.status == Status::Removed {
                let again = Execution::queued(job_id, d, e.execution_number + 1, now);
                changes.push((again, e.status, "rejoined"));
            }
        }
        for (e, was, why) in changes {
            self.put(e, Some(was), why);
        }
        self.step(job_id, now);
    }

    /// An operator approves the wave the rollout waits for.
    fn approve(&mut self, job_id: &str) -> Result<Value, RegistryError> {
        let now = now_ns();
        if !self.jobs.contains_key(job_id) {
            return Err(RegistryError::not_found(format!("no job {job_id:?}")));
        }
        let p = self.progress(job_id, now);
        let Some(j) = self.jobs.get_mut(job_id) else {
            return Err(RegistryError::not_found(format!("no job {job_id:?}")));
        };
        let Decision::AwaitApproval(wave) = j.rollout.decide(&p, now) else {
            return Err(RegistryError::conflict(format!(
                "job {job_id} waits for no approval"
            )));
        };
        j.approved = wave as u32;
        j.updated_at = now;
        self.ops.push(j.put());
        self.step(job_id, now);
        self.job_json(job_id)
            .ok_or_else(|| RegistryError::internal("the job vanished"))
    }

    /// A job as the REST API shows it, with its counts per state.
    fn job_json(&self, job_id: &str) -> Option<Value> {
        let j = self.jobs.get(job_id)?;
        let statuses = self.released(job_id).map(|e| e.status);
        let t = |ns: Option<i64>| ns.map(crate::registry::rfc3339);
        let ts = self.targeted.get(job_id);
        let targeted = ts.map_or(0, |t| t.order.len());
        // As a request gives it: the rate's fields at the top.
        let mut rollout = serde_json::to_value(&j.rollout).unwrap_or_default();
        if let Some(m) = rollout.as_object_mut()
            && let Some(Value::Object(rate)) = m.remove("rate")
        {
            m.extend(rate);
        }
        if let Some(s) = rollout.get_mut("schedule").and_then(Value::as_object_mut) {
            for k in ["start_at", "end_at"] {
                if let Some(ns) = s.get(k).and_then(Value::as_i64) {
                    s.insert(k.into(), Value::from(crate::registry::rfc3339(ns)));
                }
            }
        }
        let state = match j.status {
            JobStatus::InProgress => ts.map_or("", |t| t.state),
            _ => "",
        };
        Some(json!({
            "job_id": j.job_id,
            "description": j.description,
            "status": j.status.as_str(),
            "document": j.document,
            "firmware": j.firmware,
            "targets": j.targets,
            "target_selection": j.target_selection,
            "timeouts": {
                "in_progress_minutes": j.in_progress_timeout_minutes,
                "in_progress_secs": j.in_progress_timeout_secs,
            },
            "retries": j.retries,
            "rollout": rollout,
            "rollout_state": state,
            "released": j.released,
            "approved_waves": j.approved,
            "abort_reason": j.abort_reason,
            "created_at": t(Some(j.created_at)),
            "updated_at": t(Some(j.updated_at)),
            "completed_at": t(j.completed_at),
            "forced": j.forced,
            "targeted": targeted,
            "incompatible": j.incompatible,
            "counts": counts_json(statuses),
        }))
    }
}

fn json_message(topic: &str, v: &Value) -> Message {
    Message::new(
        topic,
        serde_json::to_vec(v).unwrap_or_default(),
        QoS::AtLeastOnce,
    )
}

/// A reply of a turn whose changes were not stored: `InternalError` on the `/rejected` topic
/// instead of an acceptance; a refusal stays; anything else (a catch-up `notify-next`) is not
/// sent.
fn failed(m: &Message, now: i64) -> Option<Message> {
    let topic = m.topic.as_str();
    if topic.ends_with("/rejected") {
        return Some(m.clone());
    }
    let req = topic.strip_suffix("/accepted")?;
    let token = job::token_of(&m.payload);
    let doc = internal_rejection().document(token.as_deref(), now);
    Some(json_message(&format!("{req}/rejected"), &doc))
}

#[cfg(test)]
mod tests;
