//! The shadow topics: `$aws/things/{thing}/shadow/{op}` (classic) and
//! `$aws/things/{thing}/shadow/name/{shadow}/{op}` (named), `op` one of get, update, delete;
//! replies on `…/{op}/accepted`, `…/{op}/rejected`, `…/update/delta`, `…/update/documents`.

/// A shadow operation a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// The filters a shadow service subscribes to: every request topic, classic and named.
pub const REQUEST_FILTERS: [&str; 6] = [
    "$aws/things/+/shadow/get",
    "$aws/things/+/shadow/update",
    "$aws/things/+/shadow/delete",
    "$aws/things/+/shadow/name/+/get",
    "$aws/things/+/shadow/name/+/update",
    "$aws/things/+/shadow/name/+/delete",
];

/// A request topic, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub thing: &'a str,
    /// `None` for the classic shadow.
    pub shadow: Option<&'a str>,
    pub op: Op,
}

impl<'a> Request<'a> {
    /// The request a topic names, if it is one (reply topics are not).
    pub fn parse(topic: &'a str) -> Option<Request<'a>> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("shadow/")?;
        let (shadow, op) = match rest.strip_prefix("name/") {
            Some(named) => {
                let (name, op) = named.split_once('/')?;
                (Some(name), op)
            }
            None => (None, rest),
        };
        let op = match op {
            "get" => Op::Get,
            "update" => Op::Update,
            "delete" => Op::Delete,
            _ => return None,
        };
        Some(Request { thing, shadow, op })
    }

    /// `$aws/things/{thing}/shadow[/name/{shadow}]`.
    pub fn prefix(&self) -> String {
        match self.shadow {
            Some(s) => format!("$aws/things/{}/shadow/name/{s}", self.thing),
            None => format!("$aws/things/{}/shadow", self.thing),
        }
    }

    /// The reply topic `{prefix}/{op}/{suffix}`; suffix accepted, rejected, delta or documents.
    pub fn reply(&self, op: Op, suffix: &str) -> String {
        format!("{}/{}/{suffix}", self.prefix(), op.as_str())
    }

    /// The name a 404 names: the shadow's for a named one, else the thing's.
    pub fn display_name(&self) -> &'a str {
        self.shadow.unwrap_or(self.thing)
    }

    /// The metadata-store key: thing, 0x00, shadow name (empty for the classic shadow).
    pub fn key(&self) -> Vec<u8> {
        key(self.thing, self.shadow.unwrap_or(""))
    }
}

/// The metadata-store key of a shadow.
pub fn key(thing: &str, shadow: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(thing.len() + 1 + shadow.len());
    k.extend_from_slice(thing.as_bytes());
    k.push(0);
    k.extend_from_slice(shadow.as_bytes());
    k
}

/// The thing and shadow name of a metadata-store key.
pub fn split_key(k: &[u8]) -> Option<(&str, &str)> {
    let at = k.iter().position(|&b| b == 0)?;
    Some((
        std::str::from_utf8(&k[..at]).ok()?,
        std::str::from_utf8(&k[at + 1..]).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_parse_and_replies_are_built_from_them() {
        let r = Request::parse("$aws/things/lamp-1/shadow/update").unwrap();
        assert_eq!((r.thing, r.shadow, r.op), ("lamp-1", None, Op::Update));
        assert_eq!(
            r.reply(Op::Update, "accepted"),
            "$aws/things/lamp-1/shadow/update/accepted"
        );
        let n = Request::parse("$aws/things/lamp-1/shadow/name/cfg/get").unwrap();
        assert_eq!((n.thing, n.shadow, n.op), ("lamp-1", Some("cfg"), Op::Get));
        assert_eq!(
            n.reply(Op::Update, "delta"),
            "$aws/things/lamp-1/shadow/name/cfg/update/delta"
        );
        assert_eq!(n.display_name(), "cfg");
        for not in [
            "$aws/things/lamp-1/shadow/update/accepted",
            "$aws/things/lamp-1/shadow/name/cfg/update/delta",
            "$aws/things/lamp-1/shadow",
            "$aws/things/lamp-1/jobs/get",
            "devices/lamp-1/telemetry",
        ] {
            assert_eq!(Request::parse(not), None, "{not}");
        }
        assert_eq!(split_key(&n.key()), Some(("lamp-1", "cfg")));
        assert_eq!(split_key(&r.key()), Some(("lamp-1", "")));
    }
}
