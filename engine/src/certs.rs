//! The certificate registry of a running server: every client certificate Mast accepts, with
//! its status (`certificates` in the metadata store, `iot.certificates` in SQL, REST
//! `/api/v1/certificates`), and the credentials seam that consults it.
//!
//! The records are held in memory and that copy is the truth: the TLS handshake asks it
//! whether a certificate is refused (a lookup, on the reactor thread), CONNECT asks it again
//! and records a certificate seen for the first time. Every change is made under one lock and
//! submitted to the metadata writer in that order, so a change is never lost to another made
//! from an older read (a `last_used_at` update cannot undo a revocation that is not durable
//! yet). An operator's change (revoke) waits for its commit before it answers.
//!
//! At start the records come from the store, and the certificates `mast ca issue` and
//! `mast ca claim` left in `DATA/ca/issued/` (the command line cannot open the store while the
//! server runs) are added as ACTIVE.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use mast_broker::credentials::{
    CertRefusal, ConfigCredentials, Confined, ConnectRequest, Credentials, Denied, Fingerprint,
    Identity, PeerCert,
};
use mast_broker::message::now_ns;
use mast_devices::certs::ca::{CertInfo, info_der};
use mast_devices::certs::enrolled::{
    Change, Enrol, EnrolledCa, IssuerKey, issued_by, issuer_key_of_ca, subject_parameters,
};
use mast_devices::certs::provision::claim_topics;
use mast_devices::certs::registry::{CertRecord, Made, Status};
use mast_devices::profile::RegistryError;
use mast_meta::tables::{CERTIFICATES, ENROLLED_CAS};
use mast_meta::{MetaStore, Op, Seq, Writer};
use mast_protocol::reason::ReasonCode;

use crate::ca::CaDir;
use crate::mqtt::Broker;

/// How long an operator's change waits for its commit before answering 500.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry of client certificates.
#[derive(Debug)]
pub struct Certificates {
    records: RwLock<HashMap<String, CertRecord>>,
    writer: Arc<Writer>,
    ca: CaDir,
    /// Set once the broker runs: live connections of a revoked certificate are ended.
    broker: OnceLock<Arc<Broker>>,
    /// CAs enrolled for just-in-time registration, by id; changed one at a time.
    cas: RwLock<HashMap<String, Enrolled>>,
    cas_write: Mutex<()>,
    /// Devices registered just in time by a connect whose presence event is not written yet:
    /// client id → (certificate id, CA id).
    registered: Mutex<HashMap<String, (String, String)>>,
    /// How the fleet CA's leaves name it, once there is a fleet CA: a leaf of it that has no
    /// record was removed (never registered) or never known, and is refused.
    fleet: RwLock<Option<IssuerKey>>,
}

/// An enrolled CA and how its leaves name it.
#[derive(Debug, Clone)]
struct Enrolled {
    rec: EnrolledCa,
    key: IssuerKey,
}

impl Enrolled {
    fn new(rec: EnrolledCa) -> Result<Enrolled, String> {
        let der = pem_der(&rec.certificate_pem)?;
        let key = issuer_key_of_ca(&der).map_err(|e| e.0)?;
        Ok(Enrolled { rec, key })
    }
}

fn pem_der(text: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(text.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| format!("reading the CA certificate: {e}"))
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub device: Option<String>,
    pub status: Option<Status>,
}

impl Certificates {
    /// The registry as stored in `meta`, with the certificates of `ca`'s `issued/` it does not
    /// know yet added (and submitted to `writer`).
    pub fn load(meta: &MetaStore, writer: Arc<Writer>, ca: CaDir) -> anyhow::Result<Certificates> {
        let mut records = HashMap::new();
        for (k, v) in meta.scan_prefix(CERTIFICATES, b"")? {
            match CertRecord::decode(&v) {
                Ok(r) if r.id.as_bytes() == k.as_slice() => {
                    records.insert(r.id.clone(), r);
                }
                Ok(_) => meta.report_unreadable(CERTIFICATES, &k, "key is not the record's id"),
                Err(e) => meta.report_unreadable(CERTIFICATES, &k, e),
            }
        }
        let now = now_ns();
        let mut ops = Vec::new();
        for (info, _) in ca.issued()? {
            if !info.client_auth || info.is_ca || records.contains_key(&info.fingerprint) {
                continue;
            }
            let r = CertRecord::new(&info, Made::Issued, Status::Active, now);
            ops.push(r.put());
            records.insert(r.id.clone(), r);
        }
        if !ops.is_empty() {
            tracing::info!(
                certificates = ops.len(),
                "recorded certificates the fleet CA issued"
            );
            writer.submit(ops);
        }
        let mut cas = HashMap::new();
        for (k, v) in meta.scan_prefix(ENROLLED_CAS, b"")? {
            match EnrolledCa::decode(&v).and_then(Enrolled::new) {
                Ok(e) => {
                    cas.insert(e.rec.id.clone(), e);
                }
                Err(e) => meta.report_unreadable(ENROLLED_CAS, &k, e),
            }
        }
        let certs = Certificates {
            records: RwLock::new(records),
            writer,
            ca,
            broker: OnceLock::new(),
            cas: RwLock::new(cas),
            cas_write: Mutex::new(()),
            registered: Mutex::new(HashMap::new()),
            fleet: RwLock::new(None),
        };
        // The bundle the TLS listener trusts follows the records (a crash between the two).
        certs.write_bundle()?;
        Ok(certs)
    }

    /// The broker whose connections a revocation ends.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, CertRecord>> {
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, CertRecord>> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the TLS handshake refuses the certificate: known and not ACTIVE, or issued by
    /// an enrolled CA whose enrolment is disabled (or that was removed). An unknown one (its
    /// chain verified) is let through, to be recorded at CONNECT.
    pub fn refuses(&self, cert: &PeerCert<'_>) -> Option<CertRefusal> {
        self.refusal(&cert.fingerprint().to_string(), cert)
    }

    /// [`Certificates::refuses`] for the certificate `cert` whose id is `id`.
    fn refusal(&self, id: &str, cert: &PeerCert<'_>) -> Option<CertRefusal> {
        let ca = {
            let records = self.read();
            match records.get(id) {
                Some(r) if !r.status.connects() => return Some(CertRefusal::Revoked),
                Some(r) => match &r.ca {
                    None => return None,
                    Some(ca) => Some(ca.clone()),
                },
                None => None,
            }
        };
        if ca.is_none() && self.fleet_issued(cert) {
            // The fleet CA's with no record: issued by `mast ca` since the start (kept in
            // `issued/`), or made by provisioning and removed unregistered.
            return (!self.in_issued(id)).then_some(CertRefusal::Revoked);
        }
        let cas = self.cas.read().unwrap_or_else(|e| e.into_inner());
        let allowed = match ca {
            Some(id) => cas.get(&id).is_some_and(|e| e.rec.enabled()),
            None => cas
                .values()
                .find(|e| issued_by(cert.der(), &e.key))
                .is_none_or(|e| e.rec.enabled()),
        };
        (!allowed).then_some(CertRefusal::UnknownIssuer)
    }

    /// Whether `mast ca issue|claim` left the certificate `id` in `issued/`.
    fn in_issued(&self, id: &str) -> bool {
        self.ca.issued_dir().join(format!("{id}.crt")).exists()
    }

    /// Whether the fleet CA issued `cert` (read once the CA exists).
    fn fleet_issued(&self, cert: &PeerCert<'_>) -> bool {
        if let Some(k) = &*self.fleet.read().unwrap_or_else(|e| e.into_inner()) {
            return issued_by(cert.der(), k);
        }
        let Ok(pem) = std::fs::read_to_string(self.ca.cert_path()) else {
            return false;
        };
        let Some(key) = pem_der(&pem)
            .ok()
            .and_then(|der| issuer_key_of_ca(&der).ok())
        else {
            return false;
        };
        let issued = issued_by(cert.der(), &key);
        *self.fleet.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
        issued
    }

    /// A CONNECT with the certificate `cert`: its record, recorded now if it is new (ACTIVE:
    /// its chain verified), `last_used_at` brought up to date. Refused when not ACTIVE (it
    /// may have been revoked since the handshake). The writes are submitted, not waited for.
    pub fn connected(&self, cert: &PeerCert<'_>) -> Result<CertRecord, Denied> {
        let id = cert.fingerprint().to_string();
        let now = now_ns();
        match self.refusal(&id, cert) {
            Some(CertRefusal::UnknownIssuer) => {
                return Err(Denied {
                    code: ReasonCode::NOT_AUTHORIZED,
                    why: "the enrolment of the certificate's CA is disabled",
                    auth_failure: true,
                });
            }
            Some(CertRefusal::Revoked) if !self.read().contains_key(&id) => {
                return Err(Denied {
                    code: ReasonCode::NOT_AUTHORIZED,
                    why: "a certificate of the fleet CA that Mast has no record of",
                    auth_failure: true,
                });
            }
            _ => {}
        }
        let refused = |r: &CertRecord| Denied {
            code: ReasonCode::NOT_AUTHORIZED,
            why: match r.status {
                Status::Revoked => "certificate revoked",
                Status::Inactive => "certificate replaced by its renewal",
                _ => "certificate not yet registered",
            },
            auth_failure: true,
        };
        if let Some(r) = self.read().get(&id) {
            if !r.status.connects() {
                return Err(refused(r));
            }
            if r.used(now).is_none() {
                return Ok(r.clone());
            }
        }
        // New, or its last use is due to be written: decided again under the write lock.
        let mut records = self.write();
        let first_use = records.get(&id).is_none_or(|r| r.last_used_at.is_none());
        let next = match records.get(&id) {
            Some(r) if !r.status.connects() => return Err(refused(r)),
            Some(r) => match r.used(now) {
                Some(n) => n,
                None => return Ok(r.clone()),
            },
            None => {
                let info = info_der(cert.der()).map_err(|e| {
                    tracing::warn!(fingerprint = %id, error = %e, "client certificate not readable");
                    Denied {
                        code: ReasonCode::NOT_AUTHORIZED,
                        why: "client certificate not readable",
                        auth_failure: true,
                    }
                })?;
                let r = self.first_seen(cert, &info, now)?;
                tracing::info!(
                    fingerprint = %id,
                    made = r.made.as_str(),
                    device = r.device_id.as_deref().unwrap_or(""),
                    "client certificate recorded"
                );
                r.used(now).unwrap_or(r)
            }
        };
        let mut ops = vec![next.put()];
        // A renewal's first use retires the certificate it renews.
        if first_use
            && let Some(old) = next.replaces.as_deref()
            && let Some(o) = records.get(old)
        {
            let retired = o.replaced(&next.id);
            if retired != *o {
                tracing::info!(fingerprint = %old, by = %next.id, "certificate replaced by its renewal");
                ops.push(retired.put());
                records.insert(old.to_owned(), retired);
            }
        }
        self.writer.submit(ops);
        records.insert(id, next.clone());
        Ok(next)
    }

    /// The record of a certificate seen for the first time on a connection: issued by the
    /// fleet CA, registered just in time (signed by an enrolled CA), or seen (signed by a
    /// configured `client_ca`).
    fn first_seen(
        &self,
        cert: &PeerCert<'_>,
        info: &CertInfo,
        now: i64,
    ) -> Result<CertRecord, Denied> {
        if self.in_issued(&info.fingerprint) {
            return Ok(CertRecord::new(info, Made::Issued, Status::Active, now));
        }
        // Only the fleet CA makes claim certificates; the marker from another CA is ignored.
        let info = &CertInfo {
            claim_template: None,
            ..info.clone()
        };
        let cas = self.cas.read().unwrap_or_else(|e| e.into_inner());
        let Some(ca) = cas.values().find(|e| issued_by(cert.der(), &e.key)) else {
            return Ok(CertRecord::new(info, Made::Seen, Status::Active, now));
        };
        let device = subject_parameters(cert.der())
            .map_err(|e| e.0)
            .and_then(|params| ca.rec.device_id_of(&params).map_err(|e| e.message))
            .map_err(|e| {
                tracing::warn!(fingerprint = %info.fingerprint, ca = %ca.rec.id, error = %e, "just-in-time registration refused");
                Denied {
                    code: ReasonCode::NOT_AUTHORIZED,
                    why: "the certificate's subject makes no device id by its CA's rule",
                    auth_failure: true,
                }
            })?;
        let mut r = CertRecord::new(info, Made::Jitr, Status::Active, now);
        r.device_id = Some(device.clone());
        r.ca = Some(ca.rec.id.clone());
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device, (r.id.clone(), ca.rec.id.clone()));
        Ok(r)
    }

    /// The just-in-time registration a connect of `client_id` made, once (for its presence
    /// event): (certificate id, CA id).
    pub fn take_registered(&self, client_id: &str) -> Option<(String, String)> {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_empty() {
            return None;
        }
        r.remove(client_id)
    }

    /// One certificate's record.
    pub fn get(&self, id: &str) -> Option<CertRecord> {
        self.read().get(&id.to_ascii_lowercase()).cloned()
    }

    /// The records `filter` selects, newest first (then by id).
    pub fn list(&self, filter: &Filter) -> Vec<CertRecord> {
        let mut out: Vec<CertRecord> = self
            .read()
            .values()
            .filter(|r| {
                filter
                    .device
                    .as_deref()
                    .is_none_or(|d| r.device_id.as_deref() == Some(d))
                    && filter.status.is_none_or(|s| r.status == s)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Revokes a certificate: refused from now on, the revocation durable when this returns,
    /// and every live connection using it ended (MQTT 5: DISCONNECT 0x98). Revoking a revoked
    /// certificate changes nothing. Blocks until the commit.
    pub fn revoke(&self, id: &str) -> Result<CertRecord, RegistryError> {
        let id = id.to_ascii_lowercase();
        let (rec, seq) = {
            let mut records = self.write();
            let Some(r) = records.get(&id) else {
                return Err(RegistryError::not_found(format!("no certificate {id}")));
            };
            let now = now_ns();
            let next = r.revoke(now);
            // Its renewals not used yet go with it: a stolen key cannot renew its way out.
            let renewals: Vec<CertRecord> = records
                .values()
                .filter(|x| {
                    x.replaces.as_deref() == Some(id.as_str())
                        && x.last_used_at.is_none()
                        && x.status == Status::Active
                })
                .map(|x| x.revoke(now))
                .collect();
            let mut ops: Vec<Op> = renewals.iter().map(CertRecord::put).collect();
            if next != *r {
                ops.push(next.put());
            }
            let seq = match ops.is_empty() {
                true => None,
                false => Some(
                    self.writer
                        .submit(ops)
                        .ok_or_else(|| RegistryError::internal("the metadata store is closed"))?,
                ),
            };
            for x in renewals {
                records.insert(x.id.clone(), x);
            }
            records.insert(id.clone(), next.clone());
            (next, seq)
        };
        if let Some(seq) = seq
            && !self.writer.wait(Some(seq), COMMIT_TIMEOUT)
        {
            return Err(RegistryError::internal(
                "the revocation was not committed in time",
            ));
        }
        if let Some(b) = self.broker.get()
            && let Some(fp) = parse_fingerprint(&id)
        {
            let n = b.disconnect_certificate(&fp, ReasonCode::ADMINISTRATIVE_ACTION);
            tracing::info!(fingerprint = %id, connections = n, "certificate revoked");
        }
        Ok(rec)
    }
}

impl Certificates {
    fn submit(&self, ops: Vec<Op>) -> Result<Seq, RegistryError> {
        self.writer
            .submit(ops)
            .ok_or_else(|| RegistryError::internal("the metadata store is closed"))
    }

    /// Records a certificate fleet provisioning made (PENDING_ACTIVATION, or ACTIVE for a
    /// renewal), with `extra` writes in the same commit; the commit to wait for.
    pub fn add(&self, rec: CertRecord, mut extra: Vec<Op>) -> Result<Seq, RegistryError> {
        let mut records = self.write();
        if records.contains_key(&rec.id) {
            return Err(RegistryError::conflict(format!(
                "certificate {} exists",
                rec.id
            )));
        }
        extra.insert(0, rec.put());
        let seq = self.submit(extra)?;
        records.insert(rec.id.clone(), rec);
        Ok(seq)
    }

    /// Registers the pending certificate `id` to `device` (ACTIVE), with `extra` writes in the
    /// same commit; the commit to wait for.
    pub fn activate(
        &self,
        id: &str,
        device: &str,
        mut extra: Vec<Op>,
    ) -> Result<Seq, RegistryError> {
        let mut records = self.write();
        let r = records
            .get(id)
            .ok_or_else(|| RegistryError::not_found(format!("no certificate {id}")))?;
        let next = r.activate(device)?;
        extra.insert(0, next.put());
        let seq = self.submit(extra)?;
        records.insert(id.to_owned(), next);
        Ok(seq)
    }

    /// Removes the certificate `id` if it is still PENDING_ACTIVATION (never registered), with
    /// `extra` writes in the same commit. Whether it was removed.
    pub fn remove_pending(&self, id: &str, mut extra: Vec<Op>) -> bool {
        let mut records = self.write();
        let pending = records
            .get(id)
            .is_some_and(|r| r.status == Status::PendingActivation);
        if pending {
            extra.push(Op::Del {
                table: CERTIFICATES,
                key: id.as_bytes().to_vec(),
            });
        }
        if self.writer.submit(extra).is_none() && pending {
            return false;
        }
        if pending {
            records.remove(id);
        }
        pending
    }
}

impl Certificates {
    /// The enrolled CAs, by id.
    pub fn cas(&self) -> Vec<EnrolledCa> {
        let mut out: Vec<EnrolledCa> = self
            .cas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|e| e.rec.clone())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn enrolled_ca(&self, id: &str) -> Option<EnrolledCa> {
        self.cas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id.to_ascii_lowercase())
            .map(|e| e.rec.clone())
    }

    /// Enrols a CA for just-in-time registration; durable, and in the TLS trust bundle, when
    /// it returns. Blocks.
    pub fn enrol(&self, req: &Enrol) -> Result<EnrolledCa, RegistryError> {
        let rec = EnrolledCa::enrol(req, now_ns())?;
        let e = Enrolled::new(rec.clone()).map_err(RegistryError::bad)?;
        let _one = self.cas_write.lock().unwrap_or_else(|e| e.into_inner());
        if self.enrolled_ca(&rec.id).is_some() {
            return Err(RegistryError::conflict(format!(
                "CA {} is enrolled already (PATCH /api/v1/cas/{} changes it)",
                rec.id, rec.id
            )));
        }
        self.commit(vec![rec.put()])?;
        self.cas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.id.clone(), e);
        self.write_bundle()
            .map_err(|e| RegistryError::internal(format!("{e:#}")))?;
        tracing::info!(ca = %rec.id, name = rec.common_name.as_deref().unwrap_or(""), "CA enrolled");
        Ok(rec)
    }

    /// Changes an enrolled CA (its rule, its enrolment). Disabling it refuses its devices at
    /// once and ends their live connections. Blocks.
    pub fn change_ca(&self, id: &str, change: &Change) -> Result<EnrolledCa, RegistryError> {
        let _one = self.cas_write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self
            .enrolled_ca(id)
            .ok_or_else(|| RegistryError::not_found(format!("no enrolled CA {id}")))?;
        let next = old.changed(change, now_ns())?;
        if next == old {
            return Ok(old);
        }
        self.commit(vec![next.put()])?;
        let e = Enrolled::new(next.clone()).map_err(RegistryError::internal)?;
        self.cas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(next.id.clone(), e);
        self.write_bundle()
            .map_err(|e| RegistryError::internal(format!("{e:#}")))?;
        if old.enabled() && !next.enabled() {
            let n = self.disconnect_issued_by(&next.id);
            tracing::info!(ca = %next.id, connections = n, "CA enrolment disabled");
        }
        Ok(next)
    }

    /// Removes an enrolled CA: its devices are refused from then on. Blocks.
    pub fn remove_ca(&self, id: &str) -> Result<(), RegistryError> {
        let _one = self.cas_write.lock().unwrap_or_else(|e| e.into_inner());
        let old = self
            .enrolled_ca(id)
            .ok_or_else(|| RegistryError::not_found(format!("no enrolled CA {id}")))?;
        self.commit(vec![old.remove()])?;
        self.cas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&old.id);
        self.write_bundle()
            .map_err(|e| RegistryError::internal(format!("{e:#}")))?;
        self.disconnect_issued_by(&old.id);
        Ok(())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), RegistryError> {
        let seq = self.submit(ops)?;
        if !self.writer.wait(Some(seq), COMMIT_TIMEOUT) {
            return Err(RegistryError::internal(
                "the change was not committed in time",
            ));
        }
        Ok(())
    }

    /// Ends the live connections of the certificates the CA `ca` issued; how many.
    fn disconnect_issued_by(&self, ca: &str) -> usize {
        let Some(b) = self.broker.get() else {
            return 0;
        };
        let fps: Vec<Fingerprint> = self
            .read()
            .values()
            .filter(|r| r.ca.as_deref() == Some(ca))
            .filter_map(|r| parse_fingerprint(&r.id))
            .collect();
        fps.iter()
            .map(|fp| b.disconnect_certificate(fp, ReasonCode::ADMINISTRATIVE_ACTION))
            .sum()
    }

    /// Writes the bundle of enabled enrolled CAs the TLS listener trusts (none: no file).
    fn write_bundle(&self) -> anyhow::Result<()> {
        let path = self.ca.enrolled_path();
        let mut pems: Vec<(String, String)> = self
            .cas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.rec.enabled())
            .map(|e| (e.rec.id.clone(), e.rec.certificate_pem.clone()))
            .collect();
        pems.sort();
        if pems.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text: String = pems.into_iter().map(|(_, p)| p).collect();
        crate::ca::write_file(&path, text.as_bytes(), 0o644)
    }
}

/// 64 hex digits → a fingerprint.
fn parse_fingerprint(hex: &str) -> Option<Fingerprint> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Fingerprint(out))
}

/// The engine's credentials: the configured ones (passwords, anonymous access), with client
/// certificates checked against and recorded in the certificate registry.
#[derive(Debug)]
pub struct EngineCredentials {
    config: ConfigCredentials,
    certs: Arc<Certificates>,
}

impl EngineCredentials {
    pub fn new(config: ConfigCredentials, certs: Arc<Certificates>) -> EngineCredentials {
        EngineCredentials { config, certs }
    }
}

impl Credentials for EngineCredentials {
    fn authenticate(&self, req: &ConnectRequest<'_>) -> Result<Identity, Denied> {
        let Some(cert) = req.cert else {
            return self.config.authenticate(req);
        };
        let rec = self.certs.connected(&cert)?;
        let Some(template) = &rec.template else {
            // Registered to its device (by the CN for one Mast issued or saw; by RegisterThing
            // for one made by provisioning). One that names no device is no credential: the
            // CONNECT's password decides.
            return match rec.device_id.as_deref() {
                Some(device) => self.config.authenticate_certified(req, Some(device)),
                None => self.config.authenticate(req),
            };
        };
        // A claim certificate is shared by a whole production run: the client id is the
        // device's own, and it may only provision.
        let mut id = self.config.authenticate_certified(req, None)?;
        let (publish, subscribe) = claim_topics(template);
        id.confined = Some(Arc::new(Confined { publish, subscribe }));
        Ok(id)
    }

    fn allows_anonymous(&self) -> bool {
        self.config.allows_anonymous()
    }

    fn refuses_certificate(&self, cert: &PeerCert<'_>) -> Option<CertRefusal> {
        self.certs.refuses(cert)
    }
}

#[cfg(test)]
mod tests;
