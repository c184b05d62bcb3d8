//! InfluxDB line protocol (what Telegraf's MQTT output sends), decoded straight into a
//! [`WriteBatch`]:
//!
//! ```text
//! readings,fleet=South,driver=Ann latitude=52.1,velocity=80i,ok=true,state="idle" 1700000000000000000
//! ```
//!
//! The measurement is the table (unless the topic names one), tags become tags, fields become
//! fields: floats by default, `i` / `u` suffixes integers, `t`/`true`/`f`/`false` (any of the
//! spellings InfluxDB accepts) booleans, double-quoted text strings. The timestamp is nanoseconds
//! since the epoch; without one the row gets the receive time. Escapes follow InfluxDB: `\,` `\ `
//! and `\=` in names and tag values, `\"` and `\\` in string fields. Lines starting with `#` and
//! empty lines are skipped. The device id always comes from the caller (the topic), replacing any
//! `device_id` tag in the payload.

use std::borrow::Cow;

use mast_storage::WriteBatch;
use mast_storage::batch::DEVICE_TAG;

/// Why a payload was refused: the line (1-based) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// A parsed field value, borrowing strings from the payload where no escape was used.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    F64(f64),
    I64(i64),
    Bool(bool),
    Str(Cow<'a, str>),
}

/// Splits `s` at the first unescaped byte in `stops`, outside double quotes when `quotes`.
fn split_unescaped<'a>(s: &'a str, stops: &[u8], quotes: bool) -> (&'a str, Option<(u8, &'a str)>) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut in_quotes = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'"' if quotes => in_quotes = !in_quotes,
            c if !in_quotes && stops.contains(&c) => return (&s[..i], Some((c, &s[i + 1..]))),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

/// Removes backslash escapes of `chars` (other backslashes stay, as InfluxDB does).
fn unescape<'a>(s: &'a str, chars: &[char]) -> Cow<'a, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\'
            && let Some(&n) = it.peek()
            && chars.contains(&n)
        {
            out.push(n);
            it.next();
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn parse_value(v: &str) -> Result<Field<'_>, String> {
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated string {v:?}"))?;
        return Ok(Field::Str(unescape(inner, &['"', '\\'])));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Field::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Field::Bool(false)),
        _ => {}
    }
    if let Some(n) = v.strip_suffix('i') {
        return n
            .parse::<i64>()
            .map(Field::I64)
            .map_err(|_| format!("bad integer {v:?}"));
    }
    if let Some(n) = v.strip_suffix('u') {
        let u: u64 = n
            .parse()
            .map_err(|_| format!("bad unsigned integer {v:?}"))?;
        return i64::try_from(u)
            .map(Field::I64)
            .map_err(|_| format!("unsigned integer {v:?} above the int64 range"));
    }
    if let Some((f, n)) = super::simple_decimal(v.as_bytes())
        && n == v.len()
    {
        return Ok(Field::F64(f));
    }
    let f: f64 = v.parse().map_err(|_| format!("bad number {v:?}"))?;
    if !f.is_finite() {
        return Err(format!("number {v:?} is not finite"));
    }
    Ok(Field::F64(f))
}

/// Decodes `payload` into `batch`. `table` (from the topic) overrides the measurement; `now_ns`
/// stamps rows without a timestamp. Returns the number of rows added. On an error nothing is
/// added (the batch is left as it was).
pub fn decode(
    payload: &[u8],
    device_id: &str,
    table: Option<&str>,
    now_ns: i64,
    batch: &mut WriteBatch,
) -> Result<usize, LineError> {
    let text = std::str::from_utf8(payload).map_err(|e| LineError {
        line: 1 + payload[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        message: "not UTF-8".into(),
    })?;
    // Parse everything first so that a bad line leaves the batch untouched.
    // Rows index into two shared vectors: a few allocations per payload, not per line.
    struct Row<'a> {
        table: Cow<'a, str>,
        tags: std::ops::Range<usize>,
        fields: std::ops::Range<usize>,
        time: i64,
    }
    let mut all_tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    let mut all_fields: Vec<(Cow<'_, str>, Field<'_>)> = Vec::new();
    let mut rows = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let err = |message: String| LineError {
            line: n + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = split_unescaped(line, b" ", false);
        let Some((_, rest)) = rest else {
            return Err(err("no fields".into()));
        };
        let (fields_part, ts_part) = match split_unescaped(rest.trim_start(), b" ", true) {
            (f, None) => (f, None),
            (f, Some((_, t))) => (f, Some(t.trim())),
        };
        let (measurement, mut tag_rest) = split_unescaped(key, b",", false);
        if measurement.is_empty() {
            return Err(err("empty measurement".into()));
        }
        let tags_start = all_tags.len();
        while let Some((_, t)) = tag_rest {
            let (pair, next) = split_unescaped(t, b",", false);
            tag_rest = next;
            let (k, v) = split_unescaped(pair, b"=", false);
            let Some((_, v)) = v else {
                return Err(err(format!("tag {pair:?} has no value")));
            };
            let k = unescape(k, &[',', '=', ' ']);
            let v = unescape(v, &[',', '=', ' ']);
            if k.is_empty() || v.is_empty() {
                return Err(err(format!("empty tag key or value in {pair:?}")));
            }
            if k != DEVICE_TAG {
                all_tags.push((k, v));
            }
        }
        let fields_start = all_fields.len();
        let mut field_rest = Some((b',', fields_part));
        while let Some((_, f)) = field_rest {
            let (pair, next) = split_unescaped(f, b",", true);
            field_rest = next;
            let (k, v) = split_unescaped(pair, b"=", false);
            let Some((_, v)) = v else {
                return Err(err(format!("field {pair:?} has no value")));
            };
            let k = unescape(k, &[',', '=', ' ']);
            if k.is_empty() {
                return Err(err(format!("empty field key in {pair:?}")));
            }
            all_fields.push((k, parse_value(v).map_err(err)?));
        }
        let time = match ts_part {
            None | Some("") => now_ns,
            Some(t) => t
                .parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {t:?}")))?,
        };
        let tname = table.map_or_else(|| unescape(measurement, &[',', ' ']), Cow::Borrowed);
        if super::reserved_table(&tname) {
            return Err(err(format!("table name {tname:?} is reserved")));
        }
        rows.push(Row {
            table: tname,
            tags: tags_start..all_tags.len(),
            fields: fields_start..all_fields.len(),
            time,
        });
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    // Consecutive lines of one series (the common case) declare it once.
    let mut last: Option<(usize, mast_storage::SeriesRef)> = None;
    for (n, r) in rows.iter().enumerate() {
        let same = last.is_some_and(|(p, _)| {
            let p = &rows[p];
            p.table == r.table && all_tags[p.tags.clone()] == all_tags[r.tags.clone()]
        });
        let series = match last {
            Some((_, s)) if same => s,
            _ => {
                tags.clear();
                tags.push((DEVICE_TAG, device_id));
                tags.extend(
                    all_tags[r.tags.clone()]
                        .iter()
                        .map(|(k, v)| (k.as_ref(), v.as_ref())),
                );
                batch.series(&r.table, &tags)
            }
        };
        last = Some((n, series));
        let mut w = batch.row(series, r.time);
        for (k, v) in &all_fields[r.fields.clone()] {
            match v {
                Field::F64(x) => w.f64(k, *x),
                Field::I64(x) => w.i64(k, *x),
                Field::Bool(x) => w.bool(k, *x),
                Field::Str(x) => w.str(k, x),
            };
        }
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mast_storage::{FieldValue, RowView};
    use proptest::prelude::*;

    fn one(line: &str) -> Result<(usize, WriteBatch), LineError> {
        let mut b = WriteBatch::new();
        let n = decode(line.as_bytes(), "dev-1", None, 42, &mut b)?;
        Ok((n, b))
    }

    #[test]
    fn every_field_type_and_the_timestamp() {
        let (n, b) = one(
            "readings,fleet=South,driver=Ann lat=52.1,speed=80i,big=7u,ok=true,off=F,state=\"idle\" 1700000000000000000",
        )
        .unwrap();
        assert_eq!((n, b.rows(), b.points()), (1, 1, 6));
        assert_eq!(
            b.row_views(),
            [RowView {
                table: "readings",
                tags: vec![
                    ("device_id", "dev-1"),
                    ("driver", "Ann"),
                    ("fleet", "South")
                ],
                time: 1_700_000_000_000_000_000,
                fields: vec![
                    ("lat", FieldValue::F64(52.1)),
                    ("speed", FieldValue::I64(80)),
                    ("big", FieldValue::I64(7)),
                    ("ok", FieldValue::Bool(true)),
                    ("off", FieldValue::Bool(false)),
                    ("state", FieldValue::Str("idle")),
                ],
            }]
        );
    }

    #[test]
    fn escapes_comments_defaults_and_the_topic_table() {
        let mut b = WriteBatch::new();
        let payload = "# a comment\n\nmy\\ table,tag\\,1=a\\ b\\=c f\\=1=\"say \\\"hi\\\" \\\\ bye\",g=1\nm v=-1.5e3\n";
        let n = decode(payload.as_bytes(), "d", None, 99, &mut b).unwrap();
        assert_eq!(n, 2);
        let rows = b.row_views();
        assert_eq!(rows[0].table, "my table");
        assert_eq!(rows[0].tags[1], ("tag,1", "a b=c"));
        assert_eq!(
            rows[0].fields[0],
            ("f=1", FieldValue::Str("say \"hi\" \\ bye"))
        );
        assert_eq!(rows[0].time, 99, "no timestamp: the receive time");
        assert_eq!(rows[1].fields[0], ("v", FieldValue::F64(-1500.0)));
        // the topic's table wins; a device_id tag in the payload does not
        let mut b = WriteBatch::new();
        decode(
            b"m,device_id=other x=1 5",
            "dev-9",
            Some("engine"),
            0,
            &mut b,
        )
        .unwrap();
        let rows = b.row_views();
        assert_eq!(rows[0].table, "engine");
        assert_eq!(rows[0].tags, [("device_id", "dev-9")]);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number_and_add_nothing() {
        for (payload, line, what) in [
            ("m", 1, "no fields"),
            ("m x=1\nm y", 2, "has no value"),
            ("m x=1\nm x=abc", 2, "bad number"),
            ("m x=12ii", 1, "bad integer"),
            ("m x=18446744073709551615u", 1, "above the int64 range"),
            ("m x=1 12:00", 1, "bad timestamp"),
            ("m x=\"open", 1, "unterminated string"),
            (",t=1 x=1", 1, "empty measurement"),
            ("m,t x=1", 1, "has no value"),
            ("m x=inf", 1, "not finite"),
            ("m =1", 1, "empty field key"),
        ] {
            let mut b = WriteBatch::new();
            let e = decode(payload.as_bytes(), "d", None, 0, &mut b).unwrap_err();
            assert_eq!(e.line, line, "{payload:?}: {e}");
            assert!(e.message.contains(what), "{payload:?}: {e}");
            assert!(b.is_empty(), "{payload:?} added rows");
        }
        let mut b = WriteBatch::new();
        assert_eq!(
            decode(b"m x=1\n\xff", "d", None, 0, &mut b)
                .unwrap_err()
                .line,
            2
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9 ,=_]{0,8}"
    }

    proptest! {
        #[test]
        fn written_rows_read_back(
            table in name(),
            tags in prop::collection::btree_map(name(), "[a-zA-Z0-9 ,=]{1,8}", 0..4),
            floats in prop::collection::btree_map(name(), any::<f64>().prop_filter("finite", |f| f.is_finite()), 1..4),
            ints in prop::collection::btree_map(name(), any::<i64>(), 0..3),
            text in "[ -~]{0,12}",
            time in any::<i64>(),
        ) {
            let esc = |s: &str| s.replace(',', "\\,").replace('=', "\\=").replace(' ', "\\ ");
            let mut line = table.replace(',', "\\,").replace(' ', "\\ ");
            for (k, v) in &tags {
                if k != DEVICE_TAG {
                    line += &format!(",{}={}", esc(k), esc(v));
                }
            }
            let mut fields: Vec<String> = floats.iter().map(|(k, v)| format!("{}={v:?}", esc(k))).collect();
            fields.extend(ints.iter().filter(|(k, _)| !floats.contains_key(*k)).map(|(k, v)| format!("{}={v}i", esc(k))));
            if !floats.contains_key("s") && !ints.contains_key("s") {
                fields.push(format!("s=\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")));
            }
            line += &format!(" {} {time}", fields.join(","));
            let mut b = WriteBatch::new();
            prop_assert_eq!(decode(line.as_bytes(), "dev", None, 0, &mut b), Ok(1));
            let rows = b.row_views();
            prop_assert_eq!(rows[0].table, table.as_str());
            prop_assert_eq!(rows[0].time, time);
            for (k, v) in &floats {
                let got = rows[0].fields.iter().rev().find(|(n, _)| n == k).map(|(_, v)| *v);
                prop_assert_eq!(got, Some(FieldValue::F64(*v)));
            }
            for (k, v) in &tags {
                if k != DEVICE_TAG {
                    prop_assert!(rows[0].tags.contains(&(k.as_str(), v.as_str())), "tag {} missing", k);
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut b = WriteBatch::new();
            let _ = decode(&bytes, "d", None, 0, &mut b);
        }
    }
}
