//! Authentication (who is connecting) and authorization (which topics they may use).
//!
//! Authentication: a user name and password checked against argon2 hashes from the config, or a
//! client certificate on mutual TLS, or nothing where anonymous access is allowed. A verified
//! password is remembered (in memory) so a reconnecting fleet does not pay argon2 on every
//! connect. Authorization: topic rules whose patterns may use `%c` (client id) and `%u` (user
//! name); no rules = allow all. A client id or user name containing `/`, `+` or `#` never
//! satisfies a rule that substitutes it (it would widen the pattern).

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use mast_protocol::reason::ReasonCode;
use mast_protocol::topic;

use crate::config::{AclRule, MqttConfig};

/// The checks.
#[derive(Debug)]
pub(crate) struct Auth {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, Vec<u8>>>,
    allow_anonymous: bool,
    acl: Vec<AclRule>,
}

/// Whether `filter` (a subscription) lies within `pattern` (a rule): every topic the filter
/// matches, the pattern matches too.
pub(crate) fn covers(pattern: &str, filter: &str) -> bool {
    if filter.starts_with('$') != pattern.starts_with('$') && pattern.starts_with(['+', '#']) {
        return false;
    }
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Auth {
    pub(crate) fn new(cfg: &MqttConfig) -> Auth {
        Auth {
            users: cfg
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            verified: Mutex::new(HashMap::new()),
            allow_anonymous: cfg
                .allow_anonymous
                .unwrap_or_else(|| default_anonymous(cfg)),
            acl: cfg.acl.clone(),
        }
    }

    /// Whether clients without credentials get in.
    pub(crate) fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Checks a CONNECT's credentials. `certified` = the TLS layer verified a client
    /// certificate.
    pub(crate) fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        certified: bool,
    ) -> Result<(), ReasonCode> {
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

    fn patterns<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
        publish: bool,
    ) -> impl Iterator<Item = String> + 'a {
        let safe = |s: &str| !s.contains(['/', '+', '#']);
        self.acl
            .iter()
            .filter(move |r| match r.user.as_deref() {
                None | Some("*") => true,
                Some(u) => Some(u) == username,
            })
            .flat_map(move |r| if publish { &r.publish } else { &r.subscribe })
            .filter_map(move |p| {
                let mut p = p.clone();
                if p.contains("%c") {
                    if !safe(client_id) {
                        return None;
                    }
                    p = p.replace("%c", client_id);
                }
                if p.contains("%u") {
                    let u = username.filter(|u| safe(u))?;
                    p = p.replace("%u", u);
                }
                Some(p)
            })
    }

    /// May this client publish to `topic_name`?
    pub(crate) fn can_publish(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic_name: &str,
    ) -> bool {
        self.acl.is_empty()
            || self
                .patterns(client_id, username, true)
                .any(|p| topic::matches(&p, topic_name))
    }

    /// May this client subscribe to `filter` (without any `$share/group/` prefix)?
    pub(crate) fn can_subscribe(
        &self,
        client_id: &str,
        username: Option<&str>,
        filter: &str,
    ) -> bool {
        self.acl.is_empty()
            || self
                .patterns(client_id, username, false)
                .any(|p| covers(&p, filter))
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
            acl: vec![
                AclRule {
                    user: None,
                    publish: vec!["devices/%c/#".into()],
                    subscribe: vec!["devices/%c/#".into(), "broadcast/+".into()],
                    gateway: false,
                },
                AclRule {
                    user: Some("ops".into()),
                    publish: vec!["#".into()],
                    subscribe: vec!["#".into()],
                    gateway: true,
                },
            ],
            ..MqttConfig::default()
        }
    }

    #[test]
    fn passwords_and_anonymous_access() {
        let a = Auth::new(&cfg());
        assert_eq!(
            a.authenticate(Some("fleet"), Some(b"s3cret"), false),
            Ok(())
        );
        assert_eq!(
            a.authenticate(Some("fleet"), Some(b"s3cret"), false),
            Ok(()),
            "cached"
        );
        assert_eq!(
            a.authenticate(Some("fleet"), Some(b"wrong"), false),
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            a.authenticate(Some("nobody"), Some(b"s3cret"), false),
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            a.authenticate(None, None, false),
            Err(ReasonCode::NOT_AUTHORIZED),
            "users configured: anonymous off unless asked for"
        );
        assert_eq!(
            a.authenticate(None, None, true),
            Ok(()),
            "client certificate"
        );
        let open = Auth::new(&MqttConfig::default());
        assert_eq!(open.authenticate(None, None, false), Ok(()));
        // reachable from the network without users: anonymous only when asked for
        let mut exposed = MqttConfig {
            listen: "0.0.0.0:1883".parse().unwrap(),
            ..MqttConfig::default()
        };
        assert_eq!(
            Auth::new(&exposed).authenticate(None, None, false),
            Err(ReasonCode::NOT_AUTHORIZED)
        );
        exposed.allow_anonymous = Some(true);
        assert_eq!(Auth::new(&exposed).authenticate(None, None, false), Ok(()));
    }

    #[test]
    fn topic_rules_substitute_and_cover() {
        let a = Auth::new(&cfg());
        assert!(a.can_publish("d1", None, "devices/d1/telemetry"));
        assert!(!a.can_publish("d1", None, "devices/d2/telemetry"));
        assert!(
            !a.can_publish("+", None, "devices/d2/telemetry"),
            "wildcard client id"
        );
        assert!(!a.can_publish("a/b", None, "devices/a/b/x"));
        assert!(a.can_publish("d1", Some("ops"), "anything/at/all"));
        assert!(a.can_subscribe("d1", None, "devices/d1/+"));
        assert!(a.can_subscribe("d1", None, "broadcast/fw"));
        assert!(!a.can_subscribe("d1", None, "broadcast/#"));
        assert!(!a.can_subscribe("d1", None, "devices/+/telemetry"));
        assert!(!a.can_subscribe("d1", None, "#"));
        assert!(Auth::new(&MqttConfig::default()).can_subscribe("x", None, "#"));
    }

    #[test]
    fn coverage() {
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/+/c/#"));
        assert!(covers("+/b", "x/b"));
        assert!(!covers("+/b", "+/#"));
        assert!(!covers("a/+", "a/#"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("#", "$SYS/x"));
    }
}
