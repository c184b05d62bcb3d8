-- Filters on tags, time ranges and fields; projections; ORDER BY and LIMIT.
SELECT time, device_id, fleet, velocity FROM readings WHERE device_id = 'truck_1' AND time >= '2026-01-01T00:07:00Z' ORDER BY time;
SELECT device_id, count(*) AS n FROM readings WHERE fleet = 'South' GROUP BY device_id ORDER BY device_id;
SELECT device_id, time FROM readings WHERE fleet IN ('North') AND time BETWEEN '2026-01-01T00:02:00Z' AND '2026-01-01T00:04:00Z' ORDER BY time;
SELECT device_id, time, velocity FROM readings WHERE velocity > 80 ORDER BY time, device_id;
SELECT device_id, time FROM readings WHERE time > '2026-01-01T00:08:00Z' AND driver <> 'Derek' ORDER BY device_id, time;
SELECT time, temp, state, ok FROM telemetry ORDER BY time;
SELECT time, temp FROM telemetry WHERE state IS NOT NULL ORDER BY time;
SELECT * FROM readings ORDER BY time DESC, device_id LIMIT 3;
SELECT count(*) FROM readings WHERE time < '2025-01-01T00:00:00Z';
SELECT velocity FROM no_such_table;
SELECT no_such_column FROM readings;
SELEKT 1;
DELETE FROM readings;
