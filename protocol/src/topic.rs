//! Topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7): validation and matching.
//!
//! A topic name is what a PUBLISH carries: UTF-8, 1..=65,535 bytes, no NUL, no wildcards. A topic
//! filter is what a SUBSCRIBE carries: the same, plus `+` (one whole level) and `#` (the last
//! level, matching the parent and everything below). Names starting with `$` are not matched by a
//! filter starting with a wildcard (§4.7.2), so `#` does not see `$SYS/...`.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// Zero length.
    Empty,
    /// Longer than 65,535 bytes.
    TooLong,
    /// Contains U+0000.
    Nul,
    /// A topic name contains `+` or `#`.
    WildcardInName,
    /// `+` or `#` shares a level with other characters, or `#` is not the last level.
    BadWildcard,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty topic",
            TopicError::TooLong => "topic longer than 65535 bytes",
            TopicError::Nul => "topic contains U+0000",
            TopicError::WildcardInName => "wildcard in a topic name",
            TopicError::BadWildcard => "wildcard not alone in its level, or '#' not last",
        })
    }
}

impl std::error::Error for TopicError {}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Validates a topic name (PUBLISH).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a topic filter (SUBSCRIBE, UNSUBSCRIBE).
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return Err(TopicError::BadWildcard);
        }
        if level == "#" && levels.peek().is_some() {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

/// True when the (valid) `filter` matches the (valid) topic `name`.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn levels() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-zü$ ]{0,4}", 1..6)
    }

    proptest! {
        #[test]
        fn a_name_matches_itself_and_its_wildcard_forms(lv in levels(), k in any::<prop::sample::Index>()) {
            let name = lv.join("/");
            prop_assume!(validate_name(&name).is_ok());
            prop_assert!(validate_filter(&name).is_ok());
            prop_assert!(matches(&name, &name));
            let i = k.index(lv.len());
            let mut plus = lv.clone();
            plus[i] = "+".into();
            let plus = plus.join("/");
            prop_assert!(validate_filter(&plus).is_ok());
            // a leading wildcard never matches a $-topic
            prop_assert_eq!(matches(&plus, &name), !(i == 0 && name.starts_with('$')));
            let mut hash: Vec<String> = lv[..i].to_vec();
            hash.push("#".into());
            let hash = hash.join("/");
            prop_assert!(validate_filter(&hash).is_ok());
            prop_assert_eq!(matches(&hash, &name), !(i == 0 && name.starts_with('$')));
        }

        #[test]
        fn a_different_level_never_matches(lv in levels(), k in any::<prop::sample::Index>()) {
            let name = lv.join("/");
            prop_assume!(validate_name(&name).is_ok());
            let i = k.index(lv.len());
            let mut other = lv.clone();
            other[i].push('x');
            prop_assert!(!matches(&other.join("/"), &name));
        }
    }

    #[test]
    fn spec_examples_match() {
        // MQTT 5.0 §4.7.1.2 and §4.7.1.3
        for (f, n, want) in [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/tracking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/broker", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("ACCOUNTS", "Accounts", false),
            ("devices/+/telemetry/#", "devices/d1/telemetry", true),
            (
                "devices/+/telemetry/#",
                "devices/d1/telemetry/readings",
                true,
            ),
            ("devices/+/telemetry/#", "devices/d1/errors", false),
        ] {
            assert_eq!(matches(f, n), want, "{f} vs {n}");
        }
    }

    #[test]
    fn validation_follows_the_spec() {
        assert_eq!(
            validate_filter("sport/tennis#"),
            Err(TopicError::BadWildcard)
        );
        assert_eq!(
            validate_filter("sport/tennis/#/ranking"),
            Err(TopicError::BadWildcard)
        );
        assert_eq!(validate_filter("sport+"), Err(TopicError::BadWildcard));
        assert_eq!(validate_filter("+/tennis/#"), Ok(()));
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_name("a/+/b"), Err(TopicError::WildcardInName));
        assert_eq!(validate_name("a\0b"), Err(TopicError::Nul));
        // a multi-byte first character is fine (the mqttbytes matcher panics on it)
        assert_eq!(validate_name("ü/temp"), Ok(()));
        assert!(matches("+/temp", "ü/temp"));
        assert!(matches("ü/#", "ü/temp"));
        assert_eq!(validate_name(&"a".repeat(65_536)), Err(TopicError::TooLong));
    }
}
