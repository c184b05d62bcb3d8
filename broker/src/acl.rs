//! Authorization: which topics a client may publish to and subscribe to. Topic rules whose
//! patterns may use `%c` (client id) and `%u` (user name); no rules = allow all. A client id or
//! user name containing `/`, `+` or `#` never satisfies a rule that substitutes it (it would
//! widen the pattern).

use mast_protocol::topic;

use crate::config::AclRule;

/// The topic rules.
#[derive(Debug)]
pub(crate) struct Acl {
    rules: Vec<AclRule>,
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

impl Acl {
    pub(crate) fn new(rules: &[AclRule]) -> Acl {
        Acl {
            rules: rules.to_vec(),
        }
    }

    fn patterns<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
        publish: bool,
    ) -> impl Iterator<Item = String> + 'a {
        let safe = |s: &str| !s.contains(['/', '+', '#']);
        self.rules
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
        self.rules.is_empty()
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
        self.rules.is_empty()
            || self
                .patterns(client_id, username, false)
                .any(|p| covers(&p, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttConfig;

    fn rules() -> Vec<AclRule> {
        vec![
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
        ]
    }

    #[test]
    fn topic_rules_substitute_and_cover() {
        let a = Acl::new(&rules());
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
        assert!(Acl::new(&MqttConfig::default().acl).can_subscribe("x", None, "#"));
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
