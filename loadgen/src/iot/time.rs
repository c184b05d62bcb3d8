//! Times and durations on the command line: `--start 2026-01-01T00:00:00Z` (RFC 3339) or
//! `--start 1767225600000` (ms since the epoch); `--interval 10s`, `--duration 6h` or `1h30m`.

/// Nanoseconds in one of the units `parse_duration` accepts.
const UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// A duration such as `10s`, `500ms`, `6h`, `1h30m` or `90` (seconds) in nanoseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(1_000_000_000))
            .ok_or_else(|| format!("duration {s:?} is too long"));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("duration {s:?}: expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {s:?} is too long"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let Some((_, ns)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "duration {s:?}: unknown unit {unit:?} (ns, us, ms, s, m, h, d)"
            ));
        };
        total = n
            .checked_mul(*ns)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A point in time as nanoseconds since the epoch: RFC 3339
/// (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00.5+01:00`) or whole milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(|| format!("time {s:?} is out of range"));
    }
    rfc3339(s).ok_or_else(|| {
        format!("time {s:?}: expected RFC 3339 (2026-01-01T00:00:00Z) or ms since the epoch")
    })
}

fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(i, digits)? * 10i64.pow(9 - digits as u32);
        i += digits;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let off = h * 3600 + m * 60;
            if *c == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("90"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("6h"), Ok(21_600_000_000_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000_000_000));
        for bad in ["", "s", "10x", "1.5s", "-1s", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z"),
            Ok(1_767_225_600_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Ok(1_700_000_000_250_000_000)
        );
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(
            parse_time("2024-02-29T12:00:00.000000001Z"),
            Ok(1_709_208_000_000_000_001)
        );
        for bad in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "x",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }
}
