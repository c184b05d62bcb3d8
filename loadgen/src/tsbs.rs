//! The TSBS IoT query set in Mast's SQL, for the `query` verb: the ten questions TSBS asks of
//! its truck fleet (`iot` generates the data), over the time span the data covers.
//!
//! ```
//! use mast_loadgen::tsbs::{NAMES, queries};
//!
//! let start = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
//! let q = queries(start, start + 6 * 3_600_000_000_000, "South");
//! assert_eq!(q.len(), NAMES.len());
//! assert!(q[0].sql.contains("last(latitude, time)"));
//! ```

/// The fleets TSBS's trucks belong to (the `fleet` tag); queries that ask about one fleet pick
/// one of these.
pub const FLEETS: [&str; 4] = crate::iot::FLEETS;

/// The ten TSBS IoT queries, in TSBS's order.
pub const NAMES: [&str; 10] = [
    "last-loc",
    "low-fuel",
    "high-load",
    "stationary-trucks",
    "long-driving-sessions",
    "avg-vs-projected-fuel-consumption",
    "avg-daily-driving-duration",
    "avg-load",
    "daily-activity",
    "breakdown-frequency",
];

/// One query of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: &'static str,
    pub sql: String,
}

const TEN_MINUTES: i64 = 600_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

/// The set for data in `[start_ns, end_ns)` and the fleet `fleet`: stationary-trucks looks at
/// the 10 minutes from the middle of the span (rounded down to 10 minutes), long-driving-sessions
/// at the last 4 hours, the rest at everything.
pub fn queries(start_ns: i64, end_ns: i64, fleet: &str) -> Vec<Query> {
    let fleet = fleet.replace('\'', "''");
    let ts = |ns: i64| format!("to_timestamp_nanos({ns})");
    let mid = start_ns + (end_ns - start_ns) / 2;
    let st0 = mid - mid.rem_euclid(TEN_MINUTES);
    let st1 = st0 + TEN_MINUTES;
    let ld0 = start_ns.max(end_ns - 4 * HOUR);
    let sql = [
        format!(
            "SELECT name, driver, last(latitude, time) AS latitude, last(longitude, time) AS longitude \
             FROM readings WHERE fleet = '{fleet}' GROUP BY name, driver"
        ),
        format!(
            "SELECT name, driver, last(fuel_state, time) AS fuel_state \
             FROM diagnostics WHERE fleet = '{fleet}' GROUP BY name, driver \
             HAVING last(fuel_state, time) < 0.1"
        ),
        format!(
            "SELECT name, driver, load_capacity, last(current_load, time) AS current_load \
             FROM diagnostics WHERE fleet = '{fleet}' GROUP BY name, driver, load_capacity \
             HAVING last(current_load, time) / CAST(load_capacity AS DOUBLE) > 0.9"
        ),
        format!(
            "SELECT name, driver FROM readings \
             WHERE time >= {} AND time < {} AND fleet = '{fleet}' \
             GROUP BY name, driver HAVING avg(velocity) < 1",
            ts(st0),
            ts(st1)
        ),
        format!(
            "SELECT name, driver FROM ( \
               SELECT name, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes \
               FROM readings WHERE time >= {} AND time < {} AND fleet = '{fleet}' \
               GROUP BY name, driver, ten_minutes HAVING avg(velocity) > 1) AS r \
             GROUP BY name, driver HAVING count(*) > 22",
            ts(ld0),
            ts(end_ns)
        ),
        "SELECT fleet, avg(fuel_consumption) AS avg_fuel_consumption, \
           avg(CAST(nominal_fuel_consumption AS DOUBLE)) AS projected_fuel_consumption \
         FROM readings WHERE velocity > 1 GROUP BY fleet"
            .to_string(),
        "WITH ten_minute_driving_sessions AS ( \
           SELECT fleet, name, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes \
           FROM readings GROUP BY fleet, name, driver, ten_minutes HAVING avg(velocity) > 1), \
         daily_total_session AS ( \
           SELECT fleet, name, driver, time_bucket(INTERVAL '24 hours', ten_minutes) AS day, \
             count(*) / 6.0 AS hours \
           FROM ten_minute_driving_sessions GROUP BY fleet, name, driver, day) \
         SELECT fleet, name, driver, avg(hours) AS avg_daily_hours \
         FROM daily_total_session GROUP BY fleet, name, driver"
            .to_string(),
        "SELECT fleet, model, load_capacity, \
           avg(avg_load / CAST(load_capacity AS DOUBLE)) AS avg_load_percentage \
         FROM (SELECT fleet, model, load_capacity, name, avg(current_load) AS avg_load \
               FROM diagnostics GROUP BY fleet, model, load_capacity, name) AS d \
         GROUP BY fleet, model, load_capacity"
            .to_string(),
        "SELECT fleet, model, day, count(*) / 144.0 AS daily_activity \
         FROM (SELECT fleet, model, name, time_bucket(INTERVAL '24 hours', time) AS day, \
                 time_bucket(INTERVAL '10 minutes', time) AS ten_minutes \
               FROM diagnostics GROUP BY fleet, model, name, day, ten_minutes \
               HAVING avg(status) < 1) AS y \
         GROUP BY fleet, model, day ORDER BY day"
            .to_string(),
        "WITH breakdown_per_truck_per_ten_minutes AS ( \
           SELECT model, name, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes, \
             avg(CASE WHEN status <> 0 THEN 1.0 ELSE 0.0 END) >= 0.5 AS broken_down \
           FROM diagnostics GROUP BY model, name, ten_minutes), \
         breakdowns_per_truck AS ( \
           SELECT model, broken_down, \
             lead(broken_down) OVER (PARTITION BY name ORDER BY ten_minutes) AS next_broken_down \
           FROM breakdown_per_truck_per_ten_minutes) \
         SELECT model, count(*) AS breakdowns FROM breakdowns_per_truck \
         WHERE NOT broken_down AND next_broken_down GROUP BY model"
            .to_string(),
    ];
    NAMES
        .iter()
        .zip(sql)
        .map(|(name, sql)| Query {
            name,
            sql: sql.split_whitespace().collect::<Vec<_>>().join(" "),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_span_and_the_fleet_is_quoted() {
        let start = 1_767_225_600_000_000_000;
        let q = queries(start, start + 6 * HOUR + 7 * 60_000_000_000, "O'Neil");
        assert!(q[0].sql.contains("fleet = 'O''Neil'"));
        // The middle of 6 h 7 min is 3 h 3.5 min: the window is 3:00 to 3:10.
        let st0 = start + 3 * HOUR;
        assert!(
            q[3].sql
                .contains(&format!("time >= to_timestamp_nanos({st0})"))
        );
        assert!(
            q[3].sql
                .contains(&format!("time < to_timestamp_nanos({})", st0 + TEN_MINUTES))
        );
        // long-driving-sessions: the last 4 hours, or all of a shorter span.
        let end = start + 6 * HOUR + 7 * 60_000_000_000;
        assert!(
            q[4].sql
                .contains(&format!("time >= to_timestamp_nanos({})", end - 4 * HOUR))
        );
        let short = queries(start, start + HOUR, "East");
        assert!(
            short[4]
                .sql
                .contains(&format!("time >= to_timestamp_nanos({start})"))
        );
        assert!(q.iter().all(|x| !x.sql.contains("  ")));
        assert_eq!(q.iter().map(|x| x.name).collect::<Vec<_>>(), NAMES);
    }
}
