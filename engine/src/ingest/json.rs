//! JSON telemetry, ThingsBoard-compatible, decoded straight into a [`WriteBatch`] by a small
//! scanner (no intermediate document, no allocation per value except for strings with escapes):
//!
//! ```text
//! {"temp": 21.5, "ok": true, "state": "idle"}                     one row, receive time
//! {"ts": 1700000000000, "values": {"temp": 21.5}}                 one row at ts (ms epoch)
//! {"ts": "2023-11-14T22:13:20.5Z", "values": {...}}               ts as RFC 3339
//! [ {...}, {...} ]                                                a batch of either shape
//! ```
//!
//! JSON numbers are floats; `null` fields are skipped; nested objects and arrays as field values
//! are refused (with the field's name), as is anything after the document.

use mast_storage::WriteBatch;
use mast_storage::batch::DEVICE_TAG;

/// Why a JSON payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for JsonError {}

/// A field value as scanned.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Num(f64),
    Bool(bool),
    Null,
    Str(std::borrow::Cow<'a, str>),
}

struct Scanner<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

type R<T> = Result<T, JsonError>;

impl<'a> Scanner<'a> {
    fn err<T>(&self, m: impl Into<String>) -> R<T> {
        Err(JsonError {
            offset: self.i,
            message: m.into(),
        })
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(format!("expected '{}'", c as char))
        }
    }

    fn string(&mut self) -> R<std::borrow::Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.i;
        let mut owned: Option<String> = None;
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.err("unterminated string");
            };
            match c {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(match owned {
                        Some(o) => std::borrow::Cow::Owned(o),
                        None => std::borrow::Cow::Borrowed(raw),
                    });
                }
                b'\\' => {
                    let o = owned.get_or_insert_with(|| self.s[start..self.i].to_owned());
                    let Some(&e) = self.b.get(self.i + 1) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 2;
                    match e {
                        b'"' => o.push('"'),
                        b'\\' => o.push('\\'),
                        b'/' => o.push('/'),
                        b'b' => o.push('\u{8}'),
                        b'f' => o.push('\u{c}'),
                        b'n' => o.push('\n'),
                        b'r' => o.push('\r'),
                        b't' => o.push('\t'),
                        b'u' => {
                            let hex = |sc: &Self, at: usize| -> R<u32> {
                                sc.s.get(at..at + 4)
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .ok_or(JsonError {
                                        offset: at,
                                        message: "bad \\u escape".into(),
                                    })
                            };
                            let mut cp = hex(self, self.i)?;
                            self.i += 4;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with("\\u")
                            {
                                let lo = hex(self, self.i + 2)?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                    self.i += 6;
                                }
                            }
                            let Some(ch) = char::from_u32(cp) else {
                                return self.err("\\u escape is not a character");
                            };
                            let o = owned.get_or_insert_with(String::new);
                            o.push(ch);
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                0..=0x1F => return self.err("control character in string"),
                _ => {
                    // copy the UTF-8 sequence as a whole
                    let len = self.s[self.i..].chars().next().map_or(1, char::len_utf8);
                    if let Some(o) = owned.as_mut() {
                        o.push_str(&self.s[self.i..self.i + len]);
                    }
                    self.i += len;
                }
            }
        }
    }

    fn number(&mut self) -> R<f64> {
        if let Some(v) = self.simple_decimal() {
            return Ok(v);
        }
        let start = self.i;
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && !text.starts_with('+') && !text.starts_with('.') => Ok(v),
            _ => {
                self.i = start;
                self.err(format!("bad number {text:?}"))
            }
        }
    }

    /// The common case without the general parser (see [`super::simple_decimal`]).
    fn simple_decimal(&mut self) -> Option<f64> {
        let (v, n) = super::simple_decimal(&self.b[self.i..])?;
        if matches!(
            self.b.get(self.i + n),
            Some(b'e' | b'E' | b'+' | b'-' | b'.')
        ) {
            return None;
        }
        self.i += n;
        Some(v)
    }

    fn literal(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// A field value: number, string, boolean or null.
    fn value(&mut self, name: &str) -> R<Val<'a>> {
        match self.peek() {
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b't') if self.literal("true") => Ok(Val::Bool(true)),
            Some(b'f') if self.literal("false") => Ok(Val::Bool(false)),
            Some(b'n') if self.literal("null") => Ok(Val::Null),
            Some(b'-' | b'0'..=b'9') => Ok(Val::Num(self.number()?)),
            Some(b'{' | b'[') => self.err(format!(
                "field {name:?}: nested objects and arrays are not telemetry values"
            )),
            _ => self.err(format!("field {name:?}: expected a value")),
        }
    }

    /// Iterates the members of an object: calls `f(key, scanner)` with the scanner at the value.
    fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, std::borrow::Cow<'a, str>) -> R<()>,
    ) -> R<()> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            f(self, key)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }
}

/// One decoded row before it goes into the batch.
struct Row<'a> {
    /// Where the row's object starts in the payload.
    at: usize,
    time: i64,
    fields: Vec<(std::borrow::Cow<'a, str>, Val<'a>)>,
}

/// Decodes `payload` into `batch` as rows of `table` for `device_id`; rows without a
/// timestamp get `now_ns`. Returns the number of rows. On an error nothing is added.
pub fn decode(
    payload: &[u8],
    device_id: &str,
    table: &str,
    now_ns: i64,
    batch: &mut WriteBatch,
) -> Result<usize, JsonError> {
    decode_tagged(payload, device_id, table, now_ns, &[], batch)
}

/// [`decode`], with the values of `tag_keys` as tags of each row's series (besides
/// `device_id`) instead of fields: strings as they are, numbers and booleans as their text
/// (`3`, `2.5`, `true`), as Telegraf's JSON parser does; a null or missing key is no tag.
pub fn decode_tagged(
    payload: &[u8],
    device_id: &str,
    table: &str,
    now_ns: i64,
    tag_keys: &[Box<str>],
    batch: &mut WriteBatch,
) -> Result<usize, JsonError> {
    let s = std::str::from_utf8(payload).map_err(|e| JsonError {
        offset: e.valid_up_to(),
        message: "not UTF-8".into(),
    })?;
    let mut sc = Scanner {
        b: s.as_bytes(),
        s,
        i: 0,
    };
    let mut rows: Vec<Row<'_>> = Vec::new();
    match sc.peek() {
        Some(b'[') => {
            sc.i += 1;
            if sc.peek() == Some(b']') {
                sc.i += 1;
            } else {
                loop {
                    rows.push(row(&mut sc, now_ns)?);
                    match sc.peek() {
                        Some(b',') => sc.i += 1,
                        Some(b']') => {
                            sc.i += 1;
                            break;
                        }
                        _ => return sc.err("expected ',' or ']'"),
                    }
                }
            }
        }
        Some(b'{') => rows.push(row(&mut sc, now_ns)?),
        _ => return sc.err("expected a JSON object or array"),
    }
    if sc.peek().is_some() {
        return sc.err("data after the JSON document");
    }
    if !tag_keys.is_empty() {
        if let Some(r) = rows
            .iter()
            .find(|r| r.fields.iter().all(|(k, _)| is_tag(tag_keys, k)))
        {
            return Err(JsonError {
                offset: r.at,
                message: format!("no fields besides the tag keys ({})", tag_keys.join(", ")),
            });
        }
        return Ok(tagged(rows, device_id, table, tag_keys, batch));
    }
    let series = batch.series(table, &[(DEVICE_TAG, device_id)]);
    for r in &rows {
        let mut w = batch.row(series, r.time);
        for (k, v) in &r.fields {
            match v {
                Val::Num(x) => w.f64(k, *x),
                Val::Bool(x) => w.bool(k, *x),
                Val::Str(x) => w.str(k, x),
                Val::Null => &mut w,
            };
        }
    }
    Ok(rows.len())
}

/// Adds `rows` with the values of `tag_keys` moved into each row's series.
fn tagged(
    rows: Vec<Row<'_>>,
    device_id: &str,
    table: &str,
    tag_keys: &[Box<str>],
    batch: &mut WriteBatch,
) -> usize {
    let n = rows.len();
    let mut tags: Vec<(&str, String)> = Vec::new();
    for r in &rows {
        tags.clear();
        for (k, v) in &r.fields {
            if !is_tag(tag_keys, k) {
                continue;
            }
            let text = match v {
                Val::Str(s) => s.to_string(),
                Val::Num(x) => number_text(*x),
                Val::Bool(b) => b.to_string(),
                Val::Null => continue,
            };
            tags.push((k, text));
        }
        let mut pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // last, so that the topic's device wins over anything else
        pairs.push((DEVICE_TAG, device_id));
        let series = batch.series(table, &pairs);
        let mut w = batch.row(series, r.time);
        for (k, v) in &r.fields {
            if is_tag(tag_keys, k) {
                continue;
            }
            match v {
                Val::Num(x) => w.f64(k, *x),
                Val::Bool(x) => w.bool(k, *x),
                Val::Str(x) => w.str(k, x),
                Val::Null => &mut w,
            };
        }
    }
    n
}

fn is_tag(tag_keys: &[Box<str>], key: &str) -> bool {
    tag_keys.iter().any(|t| **t == *key)
}

/// A number as tag text: integers without a fraction, others as Rust's shortest round trip.
fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// One object: `{"ts": .., "values": {..}}` or a flat object of fields, in one pass: members
/// are read as flat fields until a `"values"` object shows the other shape.
fn row<'a>(sc: &mut Scanner<'a>, now_ns: i64) -> R<Row<'a>> {
    let start = sc.i;
    let mut flat = Vec::new();
    let mut values: Option<Vec<(std::borrow::Cow<'a, str>, Val<'a>)>> = None;
    let mut ts: Option<(usize, Val<'a>)> = None;
    sc.object(|sc, key| {
        if key == "values" && sc.peek() == Some(b'{') {
            let mut fields = Vec::new();
            sc.object(|sc, name| {
                let v = sc.value(&name)?;
                if v != Val::Null {
                    fields.push((name, v));
                }
                Ok(())
            })?;
            values = Some(fields);
            return Ok(());
        }
        let at = sc.i;
        let v = sc.value(&key)?;
        if key == "ts" {
            ts = Some((at, v.clone()));
        }
        if v != Val::Null {
            flat.push((key, v));
        }
        Ok(())
    })?;
    let (time, fields) = match values {
        Some(fields) => {
            if let Some((other, _)) = flat.iter().find(|(k, _)| k != "ts") {
                sc.i = start;
                return sc.err(format!(
                    "unexpected key {other:?} beside \"ts\" and \"values\""
                ));
            }
            let time = match ts {
                Some((at, v)) => timestamp(sc, at, v)?,
                None => now_ns,
            };
            (time, fields)
        }
        None => (now_ns, flat),
    };
    if fields.is_empty() {
        sc.i = start;
        return sc.err("no fields");
    }
    Ok(Row {
        at: start,
        time,
        fields,
    })
}

/// `ts`: milliseconds since the epoch (a number) or an RFC 3339 string.
fn timestamp(sc: &mut Scanner<'_>, at: usize, v: Val<'_>) -> R<i64> {
    let fail = |sc: &mut Scanner<'_>, m: String| {
        sc.i = at;
        sc.err(m)
    };
    match v {
        Val::Str(text) => match mast_devices::rfc3339_ns(&text) {
            Some(t) => Ok(t),
            None => fail(sc, format!("\"ts\" {text:?} is not an RFC 3339 time")),
        },
        Val::Num(ms) if ms.fract() == 0.0 && (-9.2e15..=9.2e15).contains(&ms) => {
            Ok(ms as i64 * 1_000_000)
        }
        _ => fail(
            sc,
            "\"ts\" must be whole milliseconds since the epoch or an RFC 3339 string".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mast_storage::{FieldValue, RowView};
    use proptest::prelude::*;

    /// (time, [(field, value as Debug)]) per row.
    type Rows = Vec<(i64, Vec<(String, String)>)>;

    fn rows(payload: &str) -> Result<Rows, JsonError> {
        let mut b = WriteBatch::new();
        decode(payload.as_bytes(), "dev-1", "telemetry", 7, &mut b)?;
        Ok(b.row_views()
            .into_iter()
            .map(|r: RowView<'_>| {
                assert_eq!(
                    (r.table, r.tags),
                    ("telemetry", vec![("device_id", "dev-1")])
                );
                (
                    r.time,
                    r.fields
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), format!("{v:?}")))
                        .collect(),
                )
            })
            .collect())
    }

    #[test]
    fn declared_tag_keys_move_values_into_the_series() {
        let keys: Vec<Box<str>> = vec!["site".into(), "n".into(), "on".into()];
        let mut b = WriteBatch::new();
        let payload = r#"[{"site": "a", "n": 3, "on": true, "v": 1.5},
                          {"ts": 1000, "values": {"site": "b", "n": 2.5, "on": null, "v": 2}},
                          {"v": 3, "site": "a", "n": 3, "on": true}]"#;
        let n = decode_tagged(payload.as_bytes(), "dev-1", "t", 7, &keys, &mut b).unwrap();
        assert_eq!(n, 3);
        let got: Vec<_> = b
            .row_views()
            .into_iter()
            .map(|r| {
                let mut tags: Vec<_> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                tags.sort();
                let fields: Vec<_> = r.fields.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                (r.time, tags.join(","), fields.join(","))
            })
            .collect();
        let f = |x: f64| format!("v={:?}", FieldValue::F64(x));
        assert_eq!(
            got,
            [
                (7, "device_id=dev-1,n=3,on=true,site=a".to_string(), f(1.5)),
                (
                    1_000_000_000,
                    "device_id=dev-1,n=2.5,site=b".to_string(),
                    f(2.0)
                ),
                (7, "device_id=dev-1,n=3,on=true,site=a".to_string(), f(3.0)),
            ]
        );
        // without declared keys every value is a field
        let mut plain = WriteBatch::new();
        decode_tagged(payload.as_bytes(), "dev-1", "t", 7, &[], &mut plain).unwrap();
        for r in plain.row_views() {
            assert_eq!(r.tags, [("device_id", "dev-1")]);
            assert!(r.fields.iter().any(|(k, _)| *k == "site"));
        }
    }

    #[test]
    fn a_row_of_declared_tags_alone_is_refused_with_nothing_added() {
        let keys: Vec<Box<str>> = vec!["site".into()];
        let mut b = WriteBatch::new();
        let e = decode_tagged(
            br#"[{"v": 1}, {"site": "a", "gone": null}]"#,
            "dev-1",
            "t",
            7,
            &keys,
            &mut b,
        )
        .unwrap_err();
        assert_eq!(e.offset, 10, "{e}");
        assert!(e.message.contains("no fields besides the tag keys"), "{e}");
        assert_eq!(b.rows(), 0);
    }

    #[test]
    fn the_three_shapes() {
        assert_eq!(
            rows(r#"{"temp": 21.5, "ok": true, "state": "idle", "gone": null}"#).unwrap(),
            [(
                7,
                vec![
                    ("temp".into(), "F64(21.5)".into()),
                    ("ok".into(), "Bool(true)".into()),
                    ("state".into(), "Str(\"idle\")".into()),
                ]
            )]
        );
        assert_eq!(
            rows(r#"{"ts": 1700000000000, "values": {"temp": -3e1}}"#).unwrap(),
            [(
                1_700_000_000_000_000_000,
                vec![("temp".into(), "F64(-30.0)".into())]
            )]
        );
        assert_eq!(
            rows(r#"[{"ts": "2023-11-14T22:13:20.5Z", "values": {"a": 1}}, {"b": "x\"y\u00e9\ud83d\ude00"}]"#).unwrap(),
            [
                (1_700_000_000_500_000_000, vec![("a".into(), "F64(1.0)".into())]),
                (7, vec![("b".into(), "Str(\"x\\\"yé😀\")".into())]),
            ]
        );
        assert_eq!(rows("[]").unwrap(), []);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(mast_devices::rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            mast_devices::rfc3339_ns("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            mast_devices::rfc3339_ns("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            mast_devices::rfc3339_ns("1969-12-31T23:59:59Z"),
            Some(-1_000_000_000)
        );
        for bad in [
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "x",
        ] {
            assert_eq!(mast_devices::rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_payloads_are_refused_and_add_nothing() {
        for (payload, what) in [
            ("", "expected a JSON object or array"),
            ("42", "expected a JSON object or array"),
            (r#"{"a": {"b": 1}}"#, "nested objects"),
            (r#"{"a": [1]}"#, "nested objects"),
            (r#"{"a": 1} x"#, "data after"),
            (r#"{"a": 01x}"#, "expected ',' or '}'"),
            (r#"{"a": 1,}"#, "expected '\"'"),
            (r#"{"a": "open}"#, "unterminated string"),
            (r#"{}"#, "no fields"),
            (r#"{"a": null}"#, "no fields"),
            (r#"{"ts": 1.5, "values": {"a": 1}}"#, "whole milliseconds"),
            (r#"{"ts": "yesterday", "values": {"a": 1}}"#, "RFC 3339"),
            (
                r#"{"ts": 1, "values": {"a": 1}, "extra": 2}"#,
                "unexpected key",
            ),
            (r#"[{"a": 1}, 5]"#, "expected '{'"),
            (r#"{"a": tru}"#, "expected a value"),
            (r#"{"a": -}"#, "bad number"),
            (r#"{"a": 1e999}"#, "bad number"),
        ] {
            let mut b = WriteBatch::new();
            let e = decode(payload.as_bytes(), "d", "t", 0, &mut b).unwrap_err();
            assert!(e.message.contains(what), "{payload:?}: {e}");
            assert!(b.is_empty(), "{payload:?} added rows");
        }
    }

    proptest! {
        /// The fast decimal path gives bit-for-bit what the standard parser gives.
        #[test]
        fn fast_numbers_equal_the_standard_parser(
            int in 0u64..100_000_000_000,
            frac in proptest::option::of("[0-9]{1,12}"),
            neg: bool,
        ) {
            let text = format!(
                "{}{int}{}",
                if neg { "-" } else { "" },
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            let mut sc = Scanner { b: text.as_bytes(), s: &text, i: 0 };
            let got = sc.number().unwrap();
            prop_assert_eq!(got.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{}", text);
            prop_assert_eq!(sc.i, text.len());
        }

        #[test]
        fn serde_json_written_objects_read_back(
            fields in prop::collection::btree_map("[a-zA-Z_ é\"\\\\]{1,8}", prop_oneof![
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
                "[ -~é\n\t\"\\\\]{0,10}".prop_map(serde_json::Value::from),
            ], 1..6),
            ts in -4_000_000_000_000i64..4_000_000_000_000,
        ) {
            let values = serde_json::Value::Object(fields.clone().into_iter().collect());
            let doc = serde_json::json!([values.clone(), {"ts": ts, "values": values}]);
            let text = serde_json::to_string(&doc).unwrap();
            let mut b = WriteBatch::new();
            prop_assert_eq!(decode(text.as_bytes(), "d", "t", 5, &mut b), Ok(2));
            let views = b.row_views();
            prop_assert_eq!(views[0].time, 5);
            prop_assert_eq!(views[1].time, ts * 1_000_000);
            for v in &views {
                prop_assert_eq!(v.fields.len(), fields.len());
                for (k, want) in &fields {
                    let got = v.fields.iter().find(|(n, _)| n == k).map(|(_, x)| *x);
                    let want = match want {
                        serde_json::Value::Number(n) => FieldValue::F64(n.as_f64().unwrap_or(f64::NAN)),
                        serde_json::Value::Bool(x) => FieldValue::Bool(*x),
                        serde_json::Value::String(s) => FieldValue::Str(s),
                        _ => unreachable!(),
                    };
                    prop_assert_eq!(got, Some(want), "field {}", k);
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut b = WriteBatch::new();
            let _ = decode(&bytes, "d", "t", 0, &mut b);
        }

        #[test]
        fn decode_never_panics_on_json_like_text(text in "[{}\\[\\]\":,0-9a-z \\\\é😀u.eE+-]{0,80}") {
            let keys: [Box<str>; 2] = ["a".into(), "b".into()];
            for tag_keys in [&[][..], &keys[..]] {
                let mut b = WriteBatch::new();
                match decode_tagged(text.as_bytes(), "d", "t", 0, tag_keys, &mut b) {
                    Ok(n) => prop_assert_eq!(b.rows(), n),
                    Err(_) => prop_assert!(b.is_empty()),
                }
            }
        }
    }
}
