//! Payload writers: InfluxDB line protocol (tags on every line, ns timestamps) and Mast's JSON
//! (`{"ts": ms, "values": {...}}`, an array for several rows). Numbers are written from their
//! fixed-point integers, never through float formatting: exact, and fast.

use std::fmt::Write;

use super::{Format, Row, Table, Tags, Value};

/// `measurement,tag=value,... ` for `table` (tag values from fixed lists need no escaping;
/// the name is `truck_{i}`).
pub(super) fn line_prefix(table: Table, tags: &Tags) -> String {
    let mut s = String::from(table.name());
    for (k, v) in tags.pairs() {
        let _ = write!(s, ",{k}={}", escape_tag(&v));
    }
    s.push(' ');
    s
}

fn escape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Appends `rows` (one table's) as one payload.
pub(super) fn rows(
    format: Format,
    prefixes: &[String; 2],
    tags: &Tags,
    rows: &[Row],
    out: &mut String,
) {
    match format {
        Format::Line => {
            for row in rows {
                out.push_str(&prefixes[row.table.index()]);
                for (k, (name, v)) in row.fields().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push('=');
                    value(v, true, out);
                }
                let _ = writeln!(out, " {}", row.ts_ns);
            }
        }
        Format::Json | Format::JsonTags => {
            let pairs = (format == Format::JsonTags).then(|| tags.pairs());
            let array = rows.len() != 1;
            if array {
                out.push('[');
            }
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"ts\":{},\"values\":{{",
                    row.ts_ns.div_euclid(1_000_000)
                );
                // tag values come from fixed lists and `truck_{i}`: nothing to escape
                for (k, v) in pairs.iter().flatten() {
                    let _ = write!(out, "\"{k}\":\"{v}\",");
                }
                for (k, (name, v)) in row.fields().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "\"{name}\":");
                    value(v, false, out);
                }
                out.push_str("}}");
            }
            if array {
                out.push(']');
            }
        }
    }
}

/// A value: decimals with exactly their scale's digits; integers with `i` in line protocol.
fn value(v: Value, line: bool, out: &mut String) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
            if line {
                out.push('i');
            }
        }
        Value::Decimal { units, scale: 0 } => {
            let _ = write!(out, "{units}");
        }
        Value::Decimal { units, scale } => {
            let p = 10u64.pow(u32::from(scale));
            let a = units.unsigned_abs();
            let sign = if units < 0 { "-" } else { "" };
            let _ = write!(
                out,
                "{sign}{}.{:0width$}",
                a / p,
                a % p,
                width = usize::from(scale)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: Value, line: bool) -> String {
        let mut s = String::new();
        value(v, line, &mut s);
        s
    }

    #[test]
    fn values_print_exactly() {
        let d = |units, scale| Value::Decimal { units, scale };
        assert_eq!(show(d(5_212_345, 5), true), "52.12345");
        assert_eq!(show(d(-5, 5), true), "-0.00005");
        assert_eq!(show(d(-120_000, 5), true), "-1.20000");
        assert_eq!(show(d(0, 1), true), "0.0");
        assert_eq!(show(d(350, 0), true), "350");
        assert_eq!(show(Value::Int(3), true), "3i");
        assert_eq!(show(Value::Int(3), false), "3");
        for (units, scale) in [
            (5_212_345, 5),
            (-5, 5),
            (999, 3),
            (251, 1),
            (-17_999_999, 5),
        ] {
            let v = d(units, scale);
            assert_eq!(show(v, false).parse::<f64>().ok(), Some(v.as_f64()));
        }
    }

    #[test]
    fn tags_are_escaped() {
        assert_eq!(escape_tag("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(escape_tag("truck_1"), "truck_1");
    }
}
