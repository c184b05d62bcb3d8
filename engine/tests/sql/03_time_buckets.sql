-- date_bin / time_bucket and gap filling with locf and interpolate.
SELECT date_bin(INTERVAL '5 minutes', time) AS bucket, device_id, count(*) AS n, max(velocity) AS vmax FROM readings GROUP BY bucket, device_id ORDER BY bucket, device_id;
SELECT time_bucket(INTERVAL '2 minutes', time) AS bucket, avg(latitude) AS lat FROM readings WHERE device_id = 'truck_3' GROUP BY bucket ORDER BY bucket;
SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS minute, device_id, avg(velocity) AS v, locf(avg(velocity)) AS v_locf, interpolate(avg(latitude)) AS lat FROM readings WHERE device_id = 'truck_3' AND time >= '2026-01-01T00:01:00Z' AND time < '2026-01-01T00:08:00Z' GROUP BY minute, device_id ORDER BY minute;
SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS minute, device_id, locf(max(fuel_state)) AS fuel FROM diagnostics WHERE time >= '2026-01-01T00:00:00Z' AND time <= '2026-01-01T00:04:00Z' AND device_id IN ('truck_1', 'truck_2') GROUP BY minute, device_id ORDER BY device_id, minute;
SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS minute, avg(velocity) FROM readings WHERE time >= '2026-01-01T00:00:00Z' GROUP BY minute;
