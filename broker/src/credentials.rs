//! Authentication: who a connection is. The [`Credentials`] seam turns what a CONNECT carries
//! (client id, user name and password, the client certificate the TLS layer verified) into an
//! [`Identity`], or refuses it. [`ConfigCredentials`] is the configured one: argon2 password
//! hashes from the config, a client certificate on mutual TLS, or nothing where anonymous access
//! is allowed. A verified password is remembered (in memory) so a reconnecting fleet does not pay
//! argon2 on every connect.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use mast_protocol::ProtocolVersion;
use mast_protocol::reason::ReasonCode;

use crate::config::MqttConfig;

/// A client certificate the TLS layer verified against the configured client CA, borrowed from
/// the connection (DER).
#[derive(Debug, Clone, Copy)]
pub struct PeerCert<'a> {
    der: &'a [u8],
}

impl<'a> PeerCert<'a> {
    pub fn new(der: &'a [u8]) -> PeerCert<'a> {
        PeerCert { der }
    }

    /// The subject's common name, if it has one (UTF-8).
    pub fn common_name(&self) -> Option<String> {
        super::tls::common_name(self.der)
    }

    /// The certificate, DER.
    pub fn der(&self) -> &'a [u8] {
        self.der
    }

    /// SHA-256 of the DER: the certificate's id.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.der)
    }
}

/// A certificate's SHA-256 fingerprint; shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// What a CONNECT presents.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// As sent; empty when the client wants the server to assign one.
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub cert: Option<PeerCert<'a>>,
    pub version: ProtocolVersion,
    pub clean_start: bool,
}

/// The certificate a connection was established with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub common_name: Option<String>,
    pub fingerprint: Fingerprint,
}

/// Who a connection is, once its CONNECT is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client id it acts as; `None` when it sent none and the server assigns one.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub cert: Option<CertIdentity>,
    /// Topics it is confined to, instead of the topic rules (a claim certificate may only
    /// provision, whatever the rules say); `None`: the topic rules decide.
    pub confined: Option<Arc<Confined>>,
}

/// How a connection authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    Anonymous,
    Password,
    Certificate,
    /// A claim certificate, confined to fleet provisioning.
    Claim,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Anonymous => "anonymous",
            IdentityKind::Password => "password",
            IdentityKind::Certificate => "certificate",
            IdentityKind::Claim => "claim",
        }
    }
}

impl Identity {
    /// How it was established.
    pub fn kind(&self) -> IdentityKind {
        match (&self.confined, &self.cert, &self.username) {
            (Some(_), _, _) => IdentityKind::Claim,
            (None, Some(_), _) => IdentityKind::Certificate,
            (None, None, Some(_)) => IdentityKind::Password,
            (None, None, None) => IdentityKind::Anonymous,
        }
    }
}

/// Topic filters a connection may publish to and subscribe within, and nothing else, whatever
/// the topic rules say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confined {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Confined {
    /// May it publish to `topic`?
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish
            .iter()
            .any(|f| mast_protocol::topic::matches(f, topic))
    }

    /// May it subscribe to `filter` (without a `$share/group/` prefix)?
    pub fn can_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|p| crate::acl::covers(p, filter))
    }
}

/// A refused CONNECT: the CONNACK reason code and why (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub code: ReasonCode,
    pub why: &'static str,
    /// Counted as an authentication failure (a wrong password, no credentials), as opposed to a
    /// malformed identity.
    pub auth_failure: bool,
}

/// How a connection's identity is established and checked.
///
/// Contract: called once per CONNECT on the reactor thread that owns the connection, before
/// the session is attached and before anything is sent back; the CONNACK carries the refusal's
/// reason code. It may take a few milliseconds of CPU (argon2 the first time a password is
/// seen) but must not wait on I/O. Nothing it does is implied durable.
pub trait Credentials: Send + Sync + fmt::Debug {
    fn authenticate(&self, req: &ConnectRequest<'_>) -> Result<Identity, Denied>;

    /// Whether a client without any credentials gets in (logged at startup).
    fn allows_anonymous(&self) -> bool;

    /// Asked in the TLS handshake, once the client certificate's chain verified against the
    /// trusted CAs and CRLs: whether to refuse it anyway (revoked in a registry, or issued by a
    /// CA whose devices are refused). Called on the reactor thread doing the handshake; must
    /// not wait on I/O.
    fn refuses_certificate(&self, _cert: &PeerCert<'_>) -> Option<CertRefusal> {
        None
    }
}

/// Why the TLS handshake refuses a client certificate whose chain verified; the client sees
/// the matching TLS alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// "certificate revoked".
    Revoked,
    /// "unknown CA": its issuer is no longer accepted.
    UnknownIssuer,
}

/// The configured credentials: users with argon2 hashes, the client CA's certificates (whose
/// CN is the client id), anonymous access.
#[derive(Debug)]
pub struct ConfigCredentials {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, Vec<u8>>>,
    allow_anonymous: bool,
}

impl ConfigCredentials {
    pub fn new(cfg: &MqttConfig) -> ConfigCredentials {
        ConfigCredentials {
            users: cfg
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            verified: Mutex::new(HashMap::new()),
            allow_anonymous: cfg
                .allow_anonymous
                .unwrap_or_else(|| default_anonymous(cfg)),
        }
    }

    /// As [`Credentials::authenticate`], for a connection whose verified client certificate
    /// the caller looked up in a registry: it acts for `client_id` (the device the certificate
    /// is registered to), or for whatever client id it sends (`None`: a certificate a
    /// production run shares, a claim certificate). The certificate stands for a password.
    pub fn authenticate_certified(
        &self,
        req: &ConnectRequest<'_>,
        client_id: Option<&str>,
    ) -> Result<Identity, Denied> {
        self.identify(req, client_id, true)
    }

    /// `cert_id`: the client id the certificate names; `certified`: a certificate stands for
    /// a password.
    fn identify(
        &self,
        req: &ConnectRequest<'_>,
        cert_id: Option<&str>,
        certified: bool,
    ) -> Result<Identity, Denied> {
        let cert = req.cert.map(|c| CertIdentity {
            common_name: c.common_name(),
            fingerprint: c.fingerprint(),
        });
        let client_id = if req.client_id.is_empty() {
            match cert_id {
                // A certificate names its device: that is the client id.
                Some(cn) => Some(cn.to_owned()),
                None if req.version != ProtocolVersion::V5 && !req.clean_start => {
                    return Err(Denied {
                        code: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                        why: "empty client id with a persistent session",
                        auth_failure: false,
                    });
                }
                None => None,
            }
        } else {
            if cert_id.is_some_and(|cn| cn != req.client_id) {
                return Err(Denied {
                    code: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    why: "client id differs from the certificate's identity",
                    auth_failure: false,
                });
            }
            Some(req.client_id.to_owned())
        };
        self.check_password(req.username, req.password, certified)
            .map_err(|code| Denied {
                code,
                why: "authentication failed",
                auth_failure: true,
            })?;
        Ok(Identity {
            client_id,
            username: req.username.map(str::to_owned),
            cert,
            confined: None,
        })
    }

    /// Checks a user name and password. `certified` = the TLS layer verified a client
    /// certificate: then a user name without a password is not a credential but a label (the
    /// AWS IoT Device SDKs put `?SDK=…&Version=…` metrics there), and the certificate is the
    /// identity. A password given beside a certificate is still checked.
    pub fn check_password(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        certified: bool,
    ) -> Result<(), ReasonCode> {
        if certified && password.is_none() {
            return Ok(());
        }
        let Some(user) = username else {
            return if certified || self.allow_anonymous {
                Ok(())
            } else {
                Err(ReasonCode::NOT_AUTHORIZED)
            };
        };
        let bad = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
        let (Some(hash), Some(password)) = (self.users.get(user), password) else {
            return Err(bad);
        };
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.get(user).is_some_and(|p| p.as_slice() == password) {
                return Ok(());
            }
        }
        let parsed = PasswordHash::new(hash).map_err(|_| bad)?;
        argon2::Argon2::default()
            .verify_password(password, &parsed)
            .map_err(|_| bad)?;
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned(), password.to_vec());
        Ok(())
    }
}

impl Credentials for ConfigCredentials {
    fn authenticate(&self, req: &ConnectRequest<'_>) -> Result<Identity, Denied> {
        let cn = req.cert.and_then(|c| c.common_name());
        self.identify(req, cn.as_deref(), cn.is_some())
    }

    fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }
}

/// Anonymous access when the config does not say: like Mosquitto 2, only while no users are
/// configured and every listener is on loopback (a server reachable from the network without
/// credentials must be asked for with `allow_anonymous = true` or `--allow-anonymous`).
fn default_anonymous(cfg: &MqttConfig) -> bool {
    let loopback = cfg.listen.ip().is_loopback()
        && cfg.tls.as_ref().is_none_or(|t| t.listen.ip().is_loopback());
    cfg.users.is_empty() && loopback
}

/// An argon2id PHC string for `password` (what `mast passwd` prints).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    fn cfg() -> MqttConfig {
        MqttConfig {
            users: vec![UserConfig {
                name: "fleet".into(),
                password_hash: hash_password("s3cret").unwrap(),
            }],
            ..MqttConfig::default()
        }
    }

    #[test]
    fn passwords_and_anonymous_access() {
        let a = ConfigCredentials::new(&cfg());
        assert_eq!(
            a.check_password(Some("fleet"), Some(b"s3cret"), false),
            Ok(())
        );
        assert_eq!(
            a.check_password(Some("fleet"), Some(b"s3cret"), false),
            Ok(()),
            "cached"
        );
        assert_eq!(
            a.check_password(Some("fleet"), Some(b"wrong"), false),
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            a.check_password(Some("nobody"), Some(b"s3cret"), false),
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            a.check_password(None, None, false),
            Err(ReasonCode::NOT_AUTHORIZED),
            "users configured: anonymous off unless asked for"
        );
        assert_eq!(
            a.check_password(None, None, true),
            Ok(()),
            "client certificate"
        );
        let open = ConfigCredentials::new(&MqttConfig::default());
        assert_eq!(open.check_password(None, None, false), Ok(()));
        // reachable from the network without users: anonymous only when asked for
        let mut exposed = MqttConfig {
            listen: "0.0.0.0:1883".parse().unwrap(),
            ..MqttConfig::default()
        };
        assert_eq!(
            ConfigCredentials::new(&exposed).check_password(None, None, false),
            Err(ReasonCode::NOT_AUTHORIZED)
        );
        exposed.allow_anonymous = Some(true);
        assert_eq!(
            ConfigCredentials::new(&exposed).check_password(None, None, false),
            Ok(())
        );
    }

    fn request<'a>(client_id: &'a str, cert: Option<PeerCert<'a>>) -> ConnectRequest<'a> {
        ConnectRequest {
            client_id,
            username: None,
            password: None,
            cert,
            version: ProtocolVersion::V311,
            clean_start: false,
        }
    }

    #[test]
    fn a_certificate_names_the_client() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dev-42");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let cert = PeerCert::new(&der);
        let creds = ConfigCredentials::new(&cfg());

        let id = creds.authenticate(&request("", Some(cert))).unwrap();
        assert_eq!(id.client_id.as_deref(), Some("dev-42"), "taken from the CN");
        let c = id.cert.unwrap();
        assert_eq!(c.common_name.as_deref(), Some("dev-42"));
        assert_eq!(c.fingerprint.to_string().len(), 64);
        assert_eq!(c.fingerprint, cert.fingerprint(), "stable");
        assert_ne!(c.fingerprint.0, [0; 32]);

        // The AWS SDKs' metrics in the user name, no password: the certificate decides.
        let sdk = ConnectRequest {
            username: Some("?SDK=Python&Version=1.31.0&Platform=Linux"),
            ..request("dev-42", Some(cert))
        };
        let id = creds.authenticate(&sdk).unwrap();
        assert_eq!(id.client_id.as_deref(), Some("dev-42"));
        let wrong = ConnectRequest {
            username: Some("fleet"),
            password: Some(b"wrong"),
            ..request("dev-42", Some(cert))
        };
        assert_eq!(
            creds.authenticate(&wrong).unwrap_err().code,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "a password beside a certificate is checked"
        );
        let metrics_only = ConnectRequest {
            username: Some("?SDK=Python"),
            ..request("d1", None)
        };
        assert_eq!(
            creds.authenticate(&metrics_only).unwrap_err().code,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "without a certificate a user name is a credential"
        );

        let other = creds
            .authenticate(&request("dev-43", Some(cert)))
            .unwrap_err();
        assert_eq!(other.code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        assert!(!other.auth_failure);

        // No certificate, users configured: a persistent 3.1.1 session needs a client id, and
        // then credentials.
        let empty = creds.authenticate(&request("", None)).unwrap_err();
        assert_eq!(empty.code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        let anonymous = creds.authenticate(&request("d1", None)).unwrap_err();
        assert_eq!(anonymous.code, ReasonCode::NOT_AUTHORIZED);
        assert!(anonymous.auth_failure);
        let v5 = ConnectRequest {
            version: ProtocolVersion::V5,
            ..request("", None)
        };
        let open = ConfigCredentials::new(&MqttConfig::default());
        assert_eq!(
            open.authenticate(&v5).unwrap().client_id,
            None,
            "the server assigns one"
        );
    }
}
