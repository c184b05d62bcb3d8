//! Gateway rights: which clients may publish telemetry for device ids other than their own.
//! Granted by an `[[mqtt.acl]]` rule with `gateway = true` that applies to the client's user
//! (its publish patterns still apply to each topic). The broker does not read the flag; only
//! telemetry does.

use crate::config::AclRule;

/// The gateway rules of the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gateways {
    /// The user of each gateway rule; `None` when it applies to everyone.
    users: Vec<Option<String>>,
}

impl Gateways {
    pub(crate) fn new(acl: &[AclRule]) -> Gateways {
        Gateways {
            users: acl
                .iter()
                .filter(|r| r.gateway)
                .map(|r| r.user.clone().filter(|u| u != "*"))
                .collect(),
        }
    }

    /// May a client of `username` write telemetry for other devices?
    pub(crate) fn allows(&self, username: Option<&str>) -> bool {
        self.users
            .iter()
            .any(|u| u.is_none() || u.as_deref() == username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(user: Option<&str>, gateway: bool) -> AclRule {
        AclRule {
            user: user.map(str::to_owned),
            publish: vec!["devices/+/telemetry".into()],
            subscribe: Vec::new(),
            gateway,
        }
    }

    #[test]
    fn gateway_rights_come_only_from_a_gateway_rule() {
        let g = Gateways::new(&[rule(None, false), rule(Some("ops"), true)]);
        assert!(g.allows(Some("ops")));
        assert!(!g.allows(Some("fleet")));
        assert!(!g.allows(None));
        assert!(!Gateways::new(&[]).allows(None));
        let everyone = Gateways::new(&[rule(Some("*"), true)]);
        assert!(everyone.allows(None) && everyone.allows(Some("x")));
    }
}
