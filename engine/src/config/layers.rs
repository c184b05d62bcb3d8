//! The layers above the file: `MAST_*` environment variables and command-line flags, applied to
//! the file's TOML tree before it is deserialized.
//!
//! The variable for a key is `MAST_` + its dotted path with `.` → `_`, upper case
//! (`mqtt.max_packet_size` → `MAST_MQTT_MAX_PACKET_SIZE`). Which keys exist is read off the
//! serialized defaults ([`Config::key_sample`]), so a new key gets its variable without a list to
//! keep. Only scalars can be set this way; lists and tables (`mqtt.users`, `mqtt.acl`,
//! `mqtt.tls.crl`, `storage.retention_tables`) live in the file.

use std::ffi::OsString;

use serde::Serialize;
use toml::{Table, Value};

use super::Config;

/// Variables that are read elsewhere (by the command line or the logger), not config keys.
pub const CONSUMED_ELSEWHERE: &[&str] = &[
    "MAST_CONFIG",
    "MAST_LOG",
    "MAST_LOG_FORMAT",
    "MAST_ALLOW_ANONYMOUS",
    "MAST_BIN",
];

const PREFIX: &str = "MAST_";

/// One setting from above the file: a `MAST_*` variable or a command-line flag.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `mqtt.listen`.
    pub key: String,
    /// The value, already typed as in a TOML file.
    pub value: Value,
    /// Where it came from, for errors: `MAST_MQTT_LISTEN=...` or `--mqtt-listen`.
    pub origin: String,
}

impl Override {
    /// A command-line flag setting `key`.
    pub fn flag(flag: &str, key: &str, value: &impl Serialize) -> anyhow::Result<Override> {
        let value = Value::try_from(value).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        Ok(Override {
            key: key.to_owned(),
            value,
            origin: flag.to_owned(),
        })
    }
}

/// The overrides the `MAST_*` variables among `vars` ask for, in name order. Variables without
/// the prefix and those in [`CONSUMED_ELSEWHERE`] are skipped; any other `MAST_*` variable that
/// names no key is an error, as is a value that does not fit its key.
pub fn env_overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> anyhow::Result<Vec<Override>> {
    let keys = Config::key_sample()?;
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) || CONSUMED_ELSEWHERE.contains(&name) {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{name}: the value is not UTF-8"))?;
        found.push((name.to_owned(), value));
    }
    found.sort();
    found
        .into_iter()
        .map(|(name, raw)| env_override(&keys, &name, &raw))
        .collect()
}

fn env_override(keys: &Table, name: &str, raw: &str) -> anyhow::Result<Override> {
    let rest = &name[PREFIX.len()..];
    let mut hits = Vec::new();
    resolve(keys, rest, "", &mut hits);
    let (key, sample) = match hits.as_slice() {
        [] => anyhow::bail!(
            "unknown environment variable {name}: no config key is called that \
             (MAST_<SECTION>_<KEY>, e.g. MAST_MQTT_LISTEN; see `mast serve --help`)"
        ),
        [one] => one,
        many => anyhow::bail!(
            "{name} is ambiguous: it could set {}",
            many.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    let value = match sample {
        Value::Integer(_) => match literal(raw) {
            Some(v @ Value::Integer(_)) => v,
            _ => anyhow::bail!("{name}={raw:?}: {key} needs an integer"),
        },
        Value::Float(_) => match literal(raw) {
            Some(v @ Value::Float(_)) => v,
            Some(Value::Integer(i)) => Value::Float(i as f64),
            _ => anyhow::bail!("{name}={raw:?}: {key} needs a number"),
        },
        Value::Boolean(_) => match literal(raw) {
            Some(v @ Value::Boolean(_)) => v,
            _ => anyhow::bail!("{name}={raw:?}: {key} needs true or false"),
        },
        Value::String(_) | Value::Datetime(_) => Value::String(raw.to_owned()),
        Value::Array(_) | Value::Table(_) => {
            anyhow::bail!("{name}: {key} is a list or table and can only be set in the config file")
        }
    };
    Ok(Override {
        key: key.clone(),
        value,
        origin: format!("{name}={raw:?}"),
    })
}

/// Every key path in `table` whose variable spelling (`_` for `.`, any case) is `rest`.
fn resolve(table: &Table, rest: &str, prefix: &str, hits: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if rest.eq_ignore_ascii_case(k) {
            hits.push((path, v.clone()));
        } else if let Value::Table(inner) = v
            && let Some(head) = rest.get(..k.len())
            && head.eq_ignore_ascii_case(k)
            && let Some(tail) = rest[k.len()..].strip_prefix('_')
        {
            resolve(inner, tail, &path, hits);
        }
    }
}

/// `raw` read as a TOML value (`42`, `true`, `1.5`, `"text"`), if it is exactly one.
fn literal(raw: &str) -> Option<Value> {
    let mut t: Table = toml::from_str(&format!("v = {raw}")).ok()?;
    if t.len() == 1 { t.remove("v") } else { None }
}

/// Sets the dotted `key` in `tree`, making the tables on the way.
pub(super) fn set(tree: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let mut parts = key.split('.').peekable();
    let mut t = tree;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            t.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = t
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        t = match next {
            Value::Table(inner) => inner,
            _ => return Err(format!("`{part}` in the config file is not a table")),
        };
    }
    Ok(())
}

/// Every leaf key of `tree` as a dotted path, with its value (arrays of tables are descended
/// into through their first element).
#[cfg(test)]
pub(super) fn leaves(tree: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in tree {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(inner) if !inner.is_empty() => leaves(inner, &path, out),
            Value::Array(items) => match items.first() {
                Some(Value::Table(inner)) => leaves(inner, &path, out),
                _ => out.push((path, v.clone())),
            },
            _ => out.push((path, v.clone())),
        }
    }
}

/// The variable that sets a dotted key.
pub fn env_name(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env(vars: &[(&str, &str)]) -> anyhow::Result<Vec<Override>> {
        env_overrides(vars.iter().map(|(k, v)| (k.into(), v.into())))
    }

    fn one(name: &str, value: &str) -> (String, Value) {
        let o = env(&[(name, value)]).unwrap();
        assert_eq!(o.len(), 1);
        (o[0].key.clone(), o[0].value.clone())
    }

    #[test]
    fn variables_find_their_keys_and_types() {
        assert_eq!(
            one("MAST_DATA_DIR", "/var/lib/mast"),
            ("data_dir".into(), Value::String("/var/lib/mast".into()))
        );
        assert_eq!(
            one("MAST_MQTT_MAX_PACKET_SIZE", "262144"),
            ("mqtt.max_packet_size".into(), Value::Integer(262_144))
        );
        assert_eq!(
            one("MAST_STORAGE_FSYNC_INTERVAL_MS", "1_000"),
            ("storage.fsync_interval_ms".into(), Value::Integer(1000))
        );
        assert_eq!(
            one("MAST_STORAGE_FSYNC", "always"),
            ("storage.fsync".into(), Value::String("always".into()))
        );
        assert_eq!(
            one("MAST_MQTT_QUEUE_QOS0_OFFLINE", "true"),
            ("mqtt.queue_qos0_offline".into(), Value::Boolean(true))
        );
        assert_eq!(
            one("MAST_MQTT_ALLOW_ANONYMOUS", "false"),
            ("mqtt.allow_anonymous".into(), Value::Boolean(false))
        );
        assert_eq!(
            one("MAST_MQTT_TLS_CERT", "/etc/mast/server.pem"),
            (
                "mqtt.tls.cert".into(),
                Value::String("/etc/mast/server.pem".into())
            )
        );
        assert_eq!(
            one("MAST_MQTT_TLS_LISTEN", "0.0.0.0:8883"),
            (
                "mqtt.tls.listen".into(),
                Value::String("0.0.0.0:8883".into())
            )
        );
        assert_eq!(
            one("MAST_HTTP_LISTEN", "127.0.0.1:9090"),
            ("http.listen".into(), Value::String("127.0.0.1:9090".into()))
        );
    }

    #[test]
    fn other_variables_are_skipped_and_the_rest_sorted() {
        let o = env(&[
            ("PATH", "/bin"),
            ("MAST_LOG", "debug"),
            ("MAST_CONFIG", "x.toml"),
            ("MAST_LOG_FORMAT", "json"),
            ("MAST_ALLOW_ANONYMOUS", "1"),
            ("MAST_BIN", "/x/mast"),
            ("MAST_MQTT_REACTORS", "2"),
            ("MAST_HTTP_LISTEN", "127.0.0.1:1"),
        ])
        .unwrap();
        let keys: Vec<_> = o.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["http.listen", "mqtt.reactors"]);
        assert_eq!(o[1].origin, "MAST_MQTT_REACTORS=\"2\"");
    }

    #[test]
    fn typos_and_bad_values_name_the_variable() {
        let e = env(&[("MAST_MQTT_TYPO", "1")]).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown environment variable MAST_MQTT_TYPO:"),
            "{e}"
        );
        let e = env(&[("MAST_STORAGE", "1")]).unwrap_err().to_string();
        assert!(e.contains("storage is a list or table"), "{e}");
        let e = env(&[("MAST_MQTT_ACL", "[]")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "MAST_MQTT_ACL: mqtt.acl is a list or table and can only be set in the config file"
        );
        let e = env(&[("MAST_MQTT_MAX_PACKET_SIZE", "big")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "MAST_MQTT_MAX_PACKET_SIZE=\"big\": mqtt.max_packet_size needs an integer"
        );
        let e = env(&[("MAST_MQTT_QUEUE_QOS0_OFFLINE", "yes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs true or false"), "{e}");
        // One value, not a TOML document smuggled in.
        assert!(env(&[("MAST_MQTT_REACTORS", "1\nx = 2")]).is_err());
    }

    #[test]
    fn every_key_has_exactly_one_variable() {
        let mut all = Vec::new();
        leaves(&Config::key_sample().unwrap(), "", &mut all);
        assert!(all.len() > 40, "{}", all.len());
        for (key, sample) in all {
            if matches!(sample, Value::Array(_) | Value::Table(_))
                || key.starts_with("mqtt.users.")
                || key.starts_with("mqtt.acl.")
                || key.starts_with("ota.signing_keys.")
            {
                continue;
            }
            let name = env_name(&key);
            let raw = match sample {
                Value::Integer(_) => "1",
                Value::Boolean(_) => "true",
                _ => "x",
            };
            let o = env(&[(&name, raw)]).unwrap();
            assert_eq!(o[0].key, key, "{name}");
        }
    }

    #[test]
    fn set_makes_tables_and_refuses_to_replace_a_value() {
        let mut t: Table = toml::from_str("a = 1").unwrap();
        set(&mut t, "mqtt.tls.cert", Value::String("c".into())).unwrap();
        assert_eq!(t["mqtt"]["tls"]["cert"].as_str(), Some("c"));
        assert!(set(&mut t, "a.b", Value::Integer(1)).is_err());
    }
}
