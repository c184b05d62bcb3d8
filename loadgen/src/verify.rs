//! `--verify`: after a run, ask Mast over SQL how many rows and points of each device it holds
//! and compare with what the broker acknowledged. Acknowledged means durable, so anything
//! missing is a loss.

use std::collections::HashMap;

/// What one table should hold: per device, the acknowledged rows and points.
pub(crate) struct Expect {
    pub(crate) table: String,
    /// The fields a row may carry (points = non-null fields).
    pub(crate) fields: Vec<String>,
    pub(crate) devices: Vec<(String, [u64; 2])>,
}

/// Compares `expect` with what Mast at `http` stores in `[start, end)` (either bound may be
/// open); prints per table what is missing (text, or one JSON line) and returns the missing
/// points.
pub(crate) fn verify(
    http: &str,
    token: Option<&str>,
    start: Option<i64>,
    end: Option<i64>,
    expect: &[Expect],
    json: bool,
) -> anyhow::Result<u64> {
    let mut missing_points = 0u64;
    let mut parts = Vec::new();
    let mut bounds = Vec::new();
    if let Some(s) = start {
        bounds.push(format!("time >= to_timestamp_nanos({s})"));
    }
    if let Some(e) = end {
        bounds.push(format!("time < to_timestamp_nanos({e})"));
    }
    let filter = if bounds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", bounds.join(" AND "))
    };
    for t in expect {
        let points: Vec<String> = t.fields.iter().map(|f| format!("count(\"{f}\")")).collect();
        let sql = format!(
            "SELECT device_id, count(*) AS rows, {} AS points FROM \"{}\" {filter} GROUP BY device_id",
            points.join(" + "),
            t.table
        );
        let stored: HashMap<String, (u64, u64)> = match crate::sql::query(http, token, &sql) {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| {
                    Some((
                        r["device_id"].as_str()?.to_string(),
                        (r["rows"].as_u64()?, r["points"].as_u64()?),
                    ))
                })
                .collect(),
            // A table nothing reached is no error: everything in it is missing.
            Err(e) if e.to_string().contains("table_not_found") => HashMap::new(),
            Err(e) => return Err(e),
        };
        let (mut acked, mut held, mut lost_rows, mut lost_points, mut devices) =
            ([0u64; 2], [0u64; 2], 0u64, 0u64, 0u64);
        for (dev, want) in &t.devices {
            let got = stored.get(dev).copied().unwrap_or((0, 0));
            acked[0] += want[0];
            acked[1] += want[1];
            held[0] += got.0.min(want[0]);
            held[1] += got.1.min(want[1]);
            let (lr, lp) = (want[0].saturating_sub(got.0), want[1].saturating_sub(got.1));
            lost_rows += lr;
            lost_points += lp;
            devices += u64::from(lr > 0 || lp > 0);
        }
        missing_points += lost_points;
        if json {
            parts.push(format!(
                "\"{}\":{{\"acked_rows\":{},\"acked_points\":{},\"missing_rows\":{lost_rows},\"missing_points\":{lost_points},\"devices_missing_data\":{devices}}}",
                t.table, acked[0], acked[1]
            ));
        } else {
            println!(
                "verify {}: acknowledged {} rows / {} points, stored {} / {}; missing {lost_rows} rows, {lost_points} points ({devices} devices)",
                t.table, acked[0], acked[1], held[0], held[1]
            );
        }
    }
    if json {
        println!(
            "{{\"verify\":{{{},\"missing_points\":{missing_points}}}}}",
            parts.join(",")
        );
    }
    Ok(missing_points)
}
