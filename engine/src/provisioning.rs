//! Fleet provisioning by claim: AWS IoT's CreateKeysAndCertificate, CreateCertificateFromCsr
//! and RegisterThing over MQTT (docs/plans/aws-provisioning-contract.md), answered by a broker
//! link on its own thread, and the templates they register devices with.
//!
//! Contract:
//! - **Who may ask.** A connection with a claim certificate (`mast ca claim`) may create
//!   certificates and register with its own template (its topics are confined to these; see
//!   `EngineCredentials`). A connection with an ACTIVE device certificate may send a CSR: a
//!   renewal, ACTIVE at once for the same device, that retires the old certificate on its first
//!   use. Anyone else gets 403 `AccessDenied`.
//! - **Replies** go to the requesting connection alone (`Link::reply`), never to other
//!   subscribers of the reply topics: they carry private keys and tokens.
//! - **Durable before replied.** A created certificate (PENDING_ACTIVATION) and its ownership
//!   token are one commit, answered once durable; RegisterThing's device profile, groups,
//!   certificate activation and the token's removal are one commit (after the template's
//!   initial desired state, through the shadow service), answered once durable. A `kill -9`
//!   at any point leaves a device with a registered certificate, or one that can start over:
//!   a certificate whose reply was lost stays PENDING and is removed when its token expires.
//! - **Tokens** are 256 random bits, stored by their SHA-256 only, good for one hour and one
//!   registration, and only for the claim certificate that asked for them. Expired tokens and
//!   the pending certificates they would have registered are swept every
//!   [`SWEEP_INTERVAL`].
//! - **Hooks** (a template's `hook_url`) run on their own threads with a 5 s budget; the
//!   service goes on answering others meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mast_broker::Broker;
use mast_broker::link::{Link, Received, Requester};
use mast_broker::message::{Message, now_ns};
use mast_devices::certs::ca::{Ca, Leaf, csr_common_name};
use mast_devices::certs::check_template_name;
use mast_devices::certs::provision::{
    self, CERTIFICATE_ID, COMMON_NAME, REQUEST_FILTERS, Refused, Request, Template, TokenRecord,
    token_key,
};
use mast_devices::certs::registry::{CertRecord, Made, Status};
use mast_devices::profile::{DeviceProfile, Group, RegistryError, check_device_id};
use mast_devices::shadow::Source;
use mast_devices::shadow::topic::Op as ShadowOp;
use mast_meta::tables::{OWNERSHIP_TOKENS, PROVISIONING_TEMPLATES};
use mast_meta::{MetaStore, Op, Writer};
use mast_protocol::connect::QoS;
use serde_json::json;
use time::OffsetDateTime;

use crate::ca::CaDir;
use crate::certs::{Certificates, Filter};
use crate::config::ProvisioningConfig;
use crate::registry::Registry;
use crate::shadows::ShadowHandle;

/// How often expired tokens and never-registered certificates are swept (at most; twice per
/// token lifetime when that is shorter).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A pre-provisioning hook's budget (AWS's).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit may take before the request is answered 500.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Hooks running at once; more are refused with 429.
const MAX_HOOKS: usize = 64;

/// The provisioning templates: those of the config file (fixed) and those stored over REST.
#[derive(Debug)]
pub struct Templates {
    writer: Arc<Writer>,
    fixed: BTreeMap<String, Template>,
    stored: RwLock<BTreeMap<String, Template>>,
    write: Mutex<()>,
}

/// Where a template comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

impl Templates {
    /// The stored templates of `meta` and the config's.
    pub fn load(
        meta: &MetaStore,
        writer: Arc<Writer>,
        cfg: &ProvisioningConfig,
    ) -> anyhow::Result<Templates> {
        let mut stored = BTreeMap::new();
        for (k, v) in meta.scan_prefix(PROVISIONING_TEMPLATES, b"")? {
            let name = String::from_utf8_lossy(&k).into_owned();
            match Template::decode(&v) {
                Ok(t) => {
                    stored.insert(name, t);
                }
                Err(e) => meta.report_unreadable(PROVISIONING_TEMPLATES, &k, e),
            }
        }
        Ok(Templates {
            writer,
            fixed: cfg.templates.clone(),
            stored: RwLock::new(stored),
            write: Mutex::new(()),
        })
    }

    fn stored(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Template>> {
        self.stored.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<(Template, Origin)> {
        if let Some(t) = self.fixed.get(name) {
            return Some((t.clone(), Origin::Config));
        }
        self.stored().get(name).map(|t| (t.clone(), Origin::Api))
    }

    /// Every template, by name.
    pub fn list(&self) -> Vec<(String, Template, Origin)> {
        let mut out: Vec<_> = self
            .fixed
            .iter()
            .map(|(n, t)| (n.clone(), t.clone(), Origin::Config))
            .collect();
        out.extend(
            self.stored()
                .iter()
                .filter(|(n, _)| !self.fixed.contains_key(*n))
                .map(|(n, t)| (n.clone(), t.clone(), Origin::Api)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn check_writable(&self, name: &str) -> Result<(), RegistryError> {
        check_template_name(name).map_err(|e| RegistryError::bad(e.0))?;
        if self.fixed.contains_key(name) {
            return Err(RegistryError::conflict(format!(
                "template {name:?} is defined in the config file ([provisioning.templates.{name}])"
            )));
        }
        Ok(())
    }

    /// Stores `t` as `name`, once durable; true if it was new. Blocks.
    pub fn put(&self, name: &str, mut t: Template) -> Result<bool, RegistryError> {
        self.check_writable(name)?;
        t.check()?;
        t.updated_at = now_ns();
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.writer.submit(vec![t.put(name)]);
        if seq.is_none() || !self.writer.wait(seq, COMMIT_TIMEOUT) {
            return Err(RegistryError::internal("the template was not committed"));
        }
        let mut stored = self.stored.write().unwrap_or_else(|e| e.into_inner());
        Ok(stored.insert(name.to_owned(), t).is_none())
    }

    /// Removes `name`, once durable. Blocks.
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        self.check_writable(name)?;
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if !self.stored().contains_key(name) {
            return Err(RegistryError::not_found(format!("no template {name:?}")));
        }
        let seq = self.writer.submit(vec![Op::Del {
            table: PROVISIONING_TEMPLATES,
            key: name.as_bytes().to_vec(),
        }]);
        if seq.is_none() || !self.writer.wait(seq, COMMIT_TIMEOUT) {
            return Err(RegistryError::internal("the removal was not committed"));
        }
        self.stored
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }
}

/// A running provisioning service.
#[derive(Debug)]
pub struct Provisioning {
    thread: crate::service_thread::ServiceThread,
}

/// What the service needs from the rest of the server.
#[derive(Debug)]
pub struct Parts {
    pub broker: Arc<Broker>,
    pub meta: Arc<MetaStore>,
    pub writer: Arc<Writer>,
    pub certs: Arc<Certificates>,
    pub registry: Arc<Registry>,
    pub shadows: ShadowHandle,
    pub templates: Arc<Templates>,
    pub ca: CaDir,
    pub certificate_days: u32,
    /// How long an ownership token is good for.
    pub token_lifetime: Duration,
}

impl Provisioning {
    pub fn start(parts: Parts) -> anyhow::Result<Provisioning> {
        let mut link = parts.broker.open_link("provisioning");
        for f in REQUEST_FILTERS {
            if let Err(code) = link.subscribe(f, QoS::AtLeastOnce) {
                anyhow::bail!("subscribing {f}: {code:?}");
            }
        }
        let mut tokens = HashMap::new();
        for (k, v) in parts.meta.scan_prefix(OWNERSHIP_TOKENS, b"")? {
            match TokenRecord::decode(&v) {
                Ok(t) => {
                    tokens.insert(String::from_utf8_lossy(&k).into_owned(), t);
                }
                Err(e) => parts.meta.report_unreadable(OWNERSHIP_TOKENS, &k, e),
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let waker = link.waker();
        let (hooks_tx, hooks_rx) = mpsc::channel();
        let mut w = Worker {
            ca: parts.ca.exists().then(|| parts.ca.open().ok()).flatten(),
            parts,
            link,
            tokens,
            hooks_tx,
            hooks_rx,
            hooks_running: 0,
            rt,
            next_sweep: Instant::now(),
        };
        let thread =
            crate::service_thread::ServiceThread::spawn("provisioning", waker, move |stop| {
                w.run(stop)
            })?;
        Ok(Provisioning { thread })
    }

    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

/// A RegisterThing waiting for its hook.
struct Pending {
    from: Requester,
    reply_to: String,
    template_name: String,
    template: Template,
    token_key: String,
    certificate_id: String,
    params: BTreeMap<String, String>,
}

type HookResult = (Pending, Result<BTreeMap<String, String>, Refused>);

struct Worker {
    parts: Parts,
    link: Link,
    /// The fleet CA, once there is one.
    ca: Option<Ca>,
    /// Ownership tokens by the SHA-256 of the token; this thread is their only writer.
    tokens: HashMap<String, TokenRecord>,
    hooks_tx: Sender<HookResult>,
    hooks_rx: Receiver<HookResult>,
    hooks_running: usize,
    rt: tokio::runtime::Runtime,
    next_sweep: Instant,
}

fn refuse(e: RegistryError) -> Refused {
    Refused::from(e)
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= self.next_sweep {
                self.sweep(now_ns());
                self.next_sweep =
                    Instant::now() + SWEEP_INTERVAL.min(self.parts.token_lifetime / 2);
            }
            while let Ok((p, result)) = self.hooks_rx.try_recv() {
                self.hooks_running -= 1;
                let answer = result.and_then(|overrides| self.finish(&p, overrides));
                self.answer(&p.from, &p.reply_to, answer);
            }
            if let Some(r) = self.link.recv(Duration::from_millis(200)) {
                self.handle(r);
            }
        }
    }

    fn answer(&mut self, to: &Requester, reply_to: &str, answer: Result<Vec<u8>, Refused>) {
        let (topic, body) = match answer {
            Ok(b) => (format!("{reply_to}/accepted"), b),
            Err(e) => {
                tracing::info!(client_id = %to.client_id, topic = reply_to, code = e.code, error = %e.message, "provisioning request refused");
                (format!("{reply_to}/rejected"), e.payload())
            }
        };
        self.link
            .reply(to, Message::new(&topic, body, QoS::AtLeastOnce));
    }

    fn handle(&mut self, r: Received) {
        let Some(from) = r.from else {
            return;
        };
        let topic = r.message.topic.as_str().to_owned();
        let Some((req, json)) = provision::parse_topic(&topic) else {
            return;
        };
        if !json {
            let e = Refused::new(
                400,
                "InvalidPayload",
                "Mast answers the json payload format only",
            );
            return self.answer(&from, &topic, Err(e));
        }
        let answer = self.serve(&from, &topic, req, &r.message.payload);
        if let Some(answer) = answer {
            self.answer(&from, &topic, answer);
        }
    }

    /// The answer to a request (`None`: it waits for a hook and is answered later).
    fn serve(
        &mut self,
        from: &Requester,
        topic: &str,
        req: Request,
        payload: &[u8],
    ) -> Option<Result<Vec<u8>, Refused>> {
        let Some(cert) = self
            .parts
            .broker
            .certificate_of(from)
            .and_then(|fp| self.parts.certs.get(&fp.to_string()))
        else {
            return Some(Err(Refused::new(
                403,
                "AccessDenied",
                "fleet provisioning needs a claim certificate",
            )));
        };
        if !cert.status.connects() {
            return Some(Err(Refused::new(
                403,
                "AccessDenied",
                format!("the certificate is {}", cert.status),
            )));
        }
        match req {
            Request::CreateKeys => Some(
                provision::parse_create_keys(payload)
                    .and_then(|()| self.claim(&cert))
                    .and_then(|template| self.create(from, &cert, template.as_ref(), None)),
            ),
            Request::CreateFromCsr => {
                let csr = match provision::parse_create_from_csr(payload) {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e)),
                };
                if !cert.is_claim() {
                    return Some(self.renew(&cert, &csr));
                }
                Some(
                    self.claim(&cert)
                        .and_then(|t| self.create(from, &cert, t.as_ref(), Some(&csr))),
                )
            }
            Request::Register { template } => self.register(from, topic, &cert, &template, payload),
        }
    }

    /// A claim certificate's template (`None` if it no longer exists: creating a certificate
    /// does not need it).
    fn claim(&self, cert: &CertRecord) -> Result<Option<Template>, Refused> {
        let Some(name) = &cert.template else {
            return Err(Refused::new(
                403,
                "AccessDenied",
                "only a claim certificate creates certificates; a device renews by CSR",
            ));
        };
        Ok(self.parts.templates.get(name).map(|(t, _)| t))
    }

    fn fleet_ca(&mut self) -> Result<&Ca, Refused> {
        if self.ca.is_none() && self.parts.ca.exists() {
            self.ca = self.parts.ca.open().ok();
        }
        self.ca.as_ref().ok_or_else(|| {
            Refused::new(
                503,
                "ServiceUnavailable",
                "the server has no fleet CA (mast ca init)",
            )
        })
    }

    fn days(&self, template: Option<&Template>) -> u32 {
        template
            .and_then(|t| t.certificate_days)
            .unwrap_or(self.parts.certificate_days)
    }

    /// CreateKeysAndCertificate (`csr` None) or CreateCertificateFromCsr: a PENDING certificate
    /// and its token, durable, then answered.
    fn create(
        &mut self,
        from: &Requester,
        claim: &CertRecord,
        template: Option<&Template>,
        csr: Option<&str>,
    ) -> Result<Vec<u8>, Refused> {
        let days = self.days(template);
        // The certificate's CN: the CSR's if it is a device id, else the client id; the
        // device it acts for is decided by RegisterThing.
        let asked = match csr {
            Some(c) => csr_common_name(c).map_err(|e| Refused::new(400, "InvalidCsr", e.0))?,
            None => None,
        };
        let cn = asked
            .filter(|cn| check_device_id(cn).is_ok())
            .or_else(|| {
                check_device_id(&from.client_id)
                    .is_ok()
                    .then(|| from.client_id.to_string())
            })
            .unwrap_or_else(|| "provisioned".into());
        let now = OffsetDateTime::now_utc();
        let ca = self.fleet_ca()?;
        let issued = match csr {
            None => ca.issue(&Leaf::Device(cn), now, days),
            Some(c) => ca.sign_csr(c, &cn, now, days),
        }
        .map_err(|e| Refused::new(400, "InvalidCsr", e.0))?;
        let made = if csr.is_some() {
            Made::Csr
        } else {
            Made::Create
        };
        let now_ns = now_ns();
        let rec = CertRecord::new(&issued.info, made, Status::PendingActivation, now_ns);
        let token = random_token()?;
        let key = token_key(&token);
        let lifetime = i64::try_from(self.parts.token_lifetime.as_nanos()).unwrap_or(i64::MAX);
        let mut tok = TokenRecord::new(&rec.id, &claim.id, now_ns, lifetime);
        tok.certificate_pem.clone_from(&issued.cert_pem);
        let seq = self
            .parts
            .certs
            .add(rec.clone(), vec![tok.put(&key)])
            .map_err(refuse)?;
        self.tokens.insert(key, tok);
        if !self.parts.writer.wait(Some(seq), COMMIT_TIMEOUT) {
            return Err(Refused::new(
                500,
                "InternalFailure",
                "not committed in time",
            ));
        }
        tracing::info!(certificate = %rec.id, client_id = %from.client_id, made = made.as_str(), "certificate created for provisioning");
        Ok(provision::created_payload(
            &rec.id,
            &issued.cert_pem,
            issued.key_pem.as_deref(),
            &token,
        ))
    }

    /// A renewal: a device with an ACTIVE certificate sends a CSR and gets a new ACTIVE one for
    /// the same device; the old one is retired on the new one's first use.
    fn renew(&mut self, old: &CertRecord, csr: &str) -> Result<Vec<u8>, Refused> {
        let Some(device) = old.device_id.clone() else {
            return Err(Refused::new(
                403,
                "AccessDenied",
                "the certificate acts for no device",
            ));
        };
        let days = self.parts.certificate_days;
        let ca = self.fleet_ca()?;
        let issued = ca
            .sign_csr(csr, &device, OffsetDateTime::now_utc(), days)
            .map_err(|e| Refused::new(400, "InvalidCsr", e.0))?;
        let mut rec = CertRecord::new(&issued.info, Made::Renewal, Status::Active, now_ns());
        rec.device_id = Some(device.clone());
        rec.replaces = Some(old.id.clone());
        // It stays under the CA that issued the one it renews (a disabled enrolment still
        // refuses it).
        rec.ca.clone_from(&old.ca);
        // One renewal waits for its first use at a time: an earlier one never used is revoked.
        let unused = self.parts.certs.list(&Filter {
            device: Some(device.clone()),
            status: Some(Status::Active),
        });
        for r in unused
            .iter()
            .filter(|r| r.replaces.as_deref() == Some(old.id.as_str()) && r.last_used_at.is_none())
        {
            self.parts.certs.revoke(&r.id).map_err(refuse)?;
        }
        let seq = self.parts.certs.add(rec.clone(), vec![]).map_err(refuse)?;
        if !self.parts.writer.wait(Some(seq), COMMIT_TIMEOUT) {
            return Err(Refused::new(
                500,
                "InternalFailure",
                "not committed in time",
            ));
        }
        tracing::info!(certificate = %rec.id, replaces = %old.id, device = %device, "certificate renewed");
        let v = json!({"certificateId": rec.id, "certificatePem": issued.cert_pem});
        Ok(v.to_string().into_bytes())
    }

    /// RegisterThing: checks, then the hook (answered later) or the registration now.
    fn register(
        &mut self,
        from: &Requester,
        topic: &str,
        claim: &CertRecord,
        name: &str,
        payload: &[u8],
    ) -> Option<Result<Vec<u8>, Refused>> {
        let (p, pem) = match self.prepare(from, topic, claim, name, payload) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let Some(url) = p.template.hook_url.clone() else {
            return Some(self.finish(&p, BTreeMap::new()));
        };
        if self.hooks_running >= MAX_HOOKS {
            return Some(Err(Refused::new(
                429,
                "Throttling",
                "too many registrations waiting for the pre-provisioning hook",
            )));
        }
        let body = provision::hook_request(
            &claim.id,
            &p.certificate_id,
            &pem,
            &p.template_name,
            &from.client_id,
            &p.params,
        );
        let tx = self.hooks_tx.clone();
        let waker = self.link.waker();
        self.hooks_running += 1;
        let spawned = std::thread::Builder::new()
            .name("provisioning-hook".into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(|| call_hook(&url, &body)).unwrap_or_else(|_| {
                        Err(Refused::new(
                            403,
                            "AccessDenied",
                            "the pre-provisioning hook's answer could not be read",
                        ))
                    });
                let _ = tx.send((p, result));
                waker.wake();
            });
        if spawned.is_err() {
            self.hooks_running -= 1;
            return Some(Err(Refused::new(
                500,
                "InternalFailure",
                "cannot run the hook",
            )));
        }
        None
    }

    /// Checks a RegisterThing (template, claim, token) and gathers its parameters; with the
    /// certificate's PEM for the hook.
    fn prepare(
        &mut self,
        from: &Requester,
        topic: &str,
        claim: &CertRecord,
        name: &str,
        payload: &[u8],
    ) -> Result<(Pending, String), Refused> {
        let not_found = || {
            Refused::new(
                404,
                "ResourceNotFound",
                format!("no provisioning template {name:?}"),
            )
        };
        let (template, _) = self.parts.templates.get(name).ok_or_else(not_found)?;
        if !template.enabled {
            return Err(not_found());
        }
        if claim.template.as_deref() != Some(name) {
            return Err(Refused::new(
                403,
                "AccessDenied",
                format!("the claim certificate does not provision with template {name:?}"),
            ));
        }
        let req = provision::parse_register(payload)?;
        let key = token_key(&req.token);
        let invalid = |m: &str| Refused::new(400, "InvalidCertificateOwnershipToken", m.to_owned());
        let tok = self
            .tokens
            .get(&key)
            .cloned()
            .ok_or_else(|| invalid("unknown ownership token (expired, or already used)"))?;
        if tok.expired(now_ns()) {
            return Err(invalid("the ownership token expired"));
        }
        if tok.claim_id != claim.id {
            return Err(Refused::new(
                403,
                "AccessDenied",
                "the ownership token was given to another claim certificate",
            ));
        }
        let cert = self
            .parts
            .certs
            .get(&tok.certificate_id)
            .filter(|c| c.status == Status::PendingActivation)
            .ok_or_else(|| invalid("the token's certificate is not waiting for registration"))?;
        let mut params = req.parameters;
        for k in [CERTIFICATE_ID, "CertificateId"] {
            params.insert(k.into(), cert.id.clone());
        }
        if let Some(cn) = &cert.common_name {
            for k in [COMMON_NAME, "CommonName"] {
                params.insert(k.into(), cn.clone());
            }
        }
        params.insert("ClientId".into(), from.client_id.to_string());
        Ok((
            Pending {
                from: from.clone(),
                reply_to: topic.to_owned(),
                template_name: name.to_owned(),
                template,
                token_key: key,
                certificate_id: cert.id.clone(),
                params,
            },
            tok.certificate_pem.clone(),
        ))
    }

    /// The registration after the hook allowed it (with its overrides): the device's
    /// desired state, then its profile, groups, the certificate's activation and the token's
    /// removal in one commit; answered once durable.
    fn finish(
        &mut self,
        p: &Pending,
        overrides: BTreeMap<String, String>,
    ) -> Result<Vec<u8>, Refused> {
        let mut params = p.params.clone();
        params.extend(overrides);
        let prov = p.template.provision(&params)?;
        if !p.template.reprovision
            && let Some(c) = self
                .parts
                .certs
                .list(&Filter {
                    device: Some(prov.device_id.clone()),
                    status: Some(Status::Active),
                })
                .into_iter()
                .find(|c| c.last_used_at.is_some() && !c.is_claim())
        {
            return Err(Refused::new(
                409,
                "ResourceConflict",
                format!(
                    "device {:?} is in service with certificate {} (a template with \"reprovision\": true lets it register again)",
                    prov.device_id, c.id
                ),
            ));
        }
        // Still good? (The hook took time; the sweeper may have run.)
        let tok = self.tokens.get(&p.token_key).cloned().ok_or_else(|| {
            Refused::new(
                400,
                "InvalidCertificateOwnershipToken",
                "the ownership token expired meanwhile",
            )
        })?;
        if let Some(desired) = &prov.desired {
            let doc = json!({"state": {"desired": desired}})
                .to_string()
                .into_bytes();
            let asked = self.rt.block_on(self.parts.shadows.request(
                &prov.device_id,
                None,
                ShadowOp::Update,
                doc,
                Source::Fleet,
            ));
            if let Err(e) = asked {
                return Err(Refused::new(
                    500,
                    "InternalFailure",
                    format!("the initial desired state was refused: {}", e.error.message),
                ));
            }
        }
        let now = now_ns();
        let certs = Arc::clone(&self.parts.certs);
        let cert_id = tok.certificate_id.clone();
        let device = prov.device_id.clone();
        let token_key = p.token_key.clone();
        self.parts
            .registry
            .change_via(
                |reg| {
                    let mut ops = Vec::new();
                    for g in &prov.groups {
                        match reg.group(g)? {
                            None => ops.push(
                                Group {
                                    description: Some(format!(
                                        "made by provisioning template {}",
                                        p.template_name
                                    )),
                                    predicate: None,
                                    created_at: now,
                                }
                                .put(g),
                            ),
                            Some(x) if x.is_dynamic() => {
                                return Err(RegistryError::bad(format!(
                                    "the template's group {g:?} is dynamic"
                                )));
                            }
                            Some(_) => {}
                        }
                    }
                    let mut profile = reg
                        .profile(&device)?
                        .unwrap_or_else(|| DeviceProfile::created(now));
                    if prov.device_type.is_some() {
                        profile.device_type.clone_from(&prov.device_type);
                    }
                    for (k, v) in &prov.tags {
                        profile.tags.insert(k.clone(), v.clone());
                    }
                    profile.groups.extend(prov.groups.iter().cloned());
                    profile.groups.sort();
                    profile.groups.dedup();
                    ops.push(profile.put(&device));
                    ops.push(TokenRecord::remove(&token_key));
                    Ok((ops, ()))
                },
                |ops| certs.activate(&cert_id, &device, ops).map(Some),
            )
            .map_err(refuse)?;
        self.tokens.remove(&p.token_key);
        tracing::info!(device = %prov.device_id, certificate = %tok.certificate_id, template = %p.template_name, "device provisioned");
        Ok(provision::registered_payload(
            &prov.device_id,
            &prov.device_configuration,
        ))
    }

    /// Removes expired tokens and the certificates they would have registered, and pending
    /// certificates no token names (their token was lost with a reply).
    fn sweep(&mut self, now: i64) {
        let lifetime = i64::try_from(self.parts.token_lifetime.as_nanos()).unwrap_or(i64::MAX);
        let expired: Vec<(String, TokenRecord)> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.expired(now))
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        for (k, t) in expired {
            let removed = self
                .parts
                .certs
                .remove_pending(&t.certificate_id, vec![TokenRecord::remove(&k)]);
            self.tokens.remove(&k);
            tracing::info!(certificate = %t.certificate_id, removed, "ownership token expired");
        }
        let named: std::collections::HashSet<&str> = self
            .tokens
            .values()
            .map(|t| t.certificate_id.as_str())
            .collect();
        let orphans: Vec<CertRecord> = self
            .parts
            .certs
            .list(&Filter {
                device: None,
                status: Some(Status::PendingActivation),
            })
            .into_iter()
            .filter(|r| {
                !named.contains(r.id.as_str()) && now.saturating_sub(r.created_at) >= lifetime
            })
            .collect();
        for r in orphans {
            self.parts.certs.remove_pending(&r.id, vec![]);
        }
    }
}

/// 256 random bits, hex.
fn random_token() -> Result<String, Refused> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Refused::new(500, "InternalFailure", "no randomness"))?;
    Ok(mast_devices::hex(&b))
}

/// POSTs the hook request to `url` and reads its answer, within [`HOOK_TIMEOUT`].
fn call_hook(url: &str, body: &[u8]) -> Result<BTreeMap<String, String>, Refused> {
    let denied = |why: String| {
        Refused::new(
            403,
            "AccessDenied",
            format!("the pre-provisioning hook {why}"),
        )
    };
    let (status, answer) = post(url, body, HOOK_TIMEOUT).map_err(denied)?;
    if status != 200 {
        return Err(denied(format!("answered HTTP {status}")));
    }
    provision::hook_answer(&answer)
}

/// A blocking HTTP/1.1 POST of JSON, all of it within `budget`.
fn post(url: &str, body: &[u8], budget: Duration) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + budget;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL {url:?} is not http://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_text = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s =
        TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("unreachable: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("cannot be written to: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err(format!("did not answer within {} s", budget.as_secs()));
        }
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > 1 << 20 {
                    return Err("answered more than 1 MiB".into());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("did not answer within {} s", budget.as_secs()));
            }
            Err(e) => return Err(format!("failed: {e}")),
        }
    }
    crate::cli_devices::parse_response(&raw).map_err(|e| format!("answered badly: {e}"))
}
