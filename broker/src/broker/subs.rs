//! Subscriptions: filters, the trie, SUBSCRIBE and UNSUBSCRIBE.

use std::sync::Arc;

use mast_protocol::reason::ReasonCode;
use mast_protocol::subscribe::{RetainHandling, SubscriptionOptions};
use mast_protocol::topic;
use mast_protocol::trie::TopicTrie;

use super::{Broker, Notifier};
use crate::message::{Message, now_ms};
use crate::session::{Queued, Session, SubRecord};

/// Who a trie entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum SubKey {
    Client(Arc<str>),
    Shared(Arc<str>),
}

#[derive(Debug, Clone)]
pub(super) struct Sub {
    pub(super) session: Arc<Session>,
    pub(super) options: SubscriptionOptions,
    pub(super) id: Option<u32>,
    /// The session is a link's: its queue never drops, its publishers wait.
    pub(super) link: bool,
}

#[derive(Debug)]
pub(super) enum SubVal {
    Direct(Sub),
    Group(Vec<Sub>),
}

/// A parsed SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilterSpec<'a> {
    /// `$share/{group}/…` group.
    pub(crate) group: Option<&'a str>,
    /// The topic filter proper.
    pub(crate) filter: &'a str,
}

/// Parses and validates a subscription filter (MQTT 5.0 §4.7, §4.8.2).
pub(crate) fn parse_filter(raw: &str) -> Result<FilterSpec<'_>, ReasonCode> {
    let spec = match raw.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest
                .split_once('/')
                .ok_or(ReasonCode::TOPIC_FILTER_INVALID)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(ReasonCode::TOPIC_FILTER_INVALID);
            }
            FilterSpec {
                group: Some(group),
                filter,
            }
        }
        None => FilterSpec {
            group: None,
            filter: raw,
        },
    };
    topic::validate_filter(spec.filter).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
    Ok(spec)
}

impl Broker {
    pub(super) fn add_to_trie(
        &self,
        session: &Arc<Session>,
        spec: FilterSpec<'_>,
        record: SubRecord,
    ) -> bool {
        let sub = Sub {
            session: Arc::clone(session),
            link: session.lock().link.is_some(),
            options: record.options,
            id: record.id,
        };
        let mut subs = self.subs_mut();
        match spec.group {
            None => subs
                .insert(
                    spec.filter,
                    SubKey::Client(Arc::clone(&session.client_id)),
                    SubVal::Direct(sub),
                )
                .is_some(),
            Some(group) => {
                let key = SubKey::Shared(Arc::from(group));
                let mut members = match subs.remove(spec.filter, &key) {
                    Some(SubVal::Group(m)) => m,
                    _ => Vec::new(),
                };
                let existed = members
                    .iter()
                    .position(|m| Arc::ptr_eq(&m.session, session))
                    .map(|i| members.remove(i))
                    .is_some();
                members.push(sub);
                subs.insert(spec.filter, key, SubVal::Group(members));
                existed
            }
        }
    }

    /// SUBSCRIBE of one filter: returns the granted QoS as a reason code, or the refusal.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        raw: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
        notifier: &mut Notifier,
    ) -> Result<ReasonCode, ReasonCode> {
        let spec = parse_filter(raw)?;
        if spec.group.is_some() && options.no_local {
            return Err(ReasonCode::PROTOCOL_ERROR);
        }
        {
            let inner = session.lock();
            // A link is the server's own: the per-client cap is for clients.
            if inner.link.is_none()
                && inner.subscriptions.len() >= self.cfg.max_subscriptions_per_client
                && !inner.subscriptions.contains_key(raw)
            {
                return Err(ReasonCode::QUOTA_EXCEEDED);
            }
        }
        let record = SubRecord { options, id };
        let existed = self.add_to_trie(session, spec, record);
        session.lock().subscriptions.insert(raw.to_owned(), record);
        let send_retained = spec.group.is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let now = now_ms();
            let matching: Vec<Arc<Message>> = self
                .retained
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|m| topic::matches(spec.filter, m.topic.as_str()))
                .filter(|m| m.remaining_secs(now).is_some())
                .cloned()
                .collect();
            let mut ops = Vec::new();
            for msg in matching {
                let q = Queued {
                    qos: msg.qos.min(options.qos),
                    retain: true,
                    sub_ids: id.into_iter().collect(),
                    key: None,
                    msg,
                };
                self.deliver(session, q, notifier, &mut ops);
            }
            self.persist.submit(ops);
        }
        Ok(ReasonCode(options.qos as u8))
    }

    /// UNSUBSCRIBE of one filter.
    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, raw: &str) -> ReasonCode {
        let Ok(spec) = parse_filter(raw) else {
            return ReasonCode::TOPIC_FILTER_INVALID;
        };
        let had = session.lock().subscriptions.remove(raw).is_some();
        let mut subs = self.subs_mut();
        remove_from_trie(&mut subs, &session.client_id, spec);
        if had {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::NO_SUBSCRIPTION_EXISTED
        }
    }
}

pub(super) fn remove_from_trie(
    subs: &mut TopicTrie<SubKey, SubVal>,
    client_id: &Arc<str>,
    spec: FilterSpec<'_>,
) {
    match spec.group {
        None => {
            subs.remove(spec.filter, &SubKey::Client(Arc::clone(client_id)));
        }
        Some(group) => {
            let key = SubKey::Shared(Arc::from(group));
            if let Some(SubVal::Group(mut members)) = subs.remove(spec.filter, &key) {
                members.retain(|m| m.session.client_id != *client_id);
                if !members.is_empty() {
                    subs.insert(spec.filter, key, SubVal::Group(members));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_and_without_share_groups() {
        assert_eq!(
            parse_filter("$share/g1/a/+"),
            Ok(FilterSpec {
                group: Some("g1"),
                filter: "a/+"
            })
        );
        assert_eq!(parse_filter("a/#").map(|s| s.group), Ok(None));
        for bad in ["$share/g1", "$share//a", "$share/g+/a", "a/#/b", "a+", ""] {
            assert_eq!(
                parse_filter(bad),
                Err(ReasonCode::TOPIC_FILTER_INVALID),
                "{bad}"
            );
        }
    }
}
