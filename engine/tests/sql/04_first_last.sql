-- first/last by time, the latest-value path, and selectors.
SELECT device_id, first(velocity, time) AS first_v, last(velocity, time) AS last_v, min(time) AS t0, max(time) AS t1 FROM readings GROUP BY device_id ORDER BY device_id;
SELECT name_or_id, lat, lon FROM (SELECT device_id AS name_or_id, last(latitude, time) AS lat, last(longitude, time) AS lon FROM readings WHERE fleet = 'South' GROUP BY device_id) ORDER BY name_or_id;
SELECT driver, last(fuel_state, time) AS fuel, last(status, time) AS status FROM diagnostics GROUP BY driver ORDER BY driver;
SELECT device_id, last(velocity, time) AS v FROM readings WHERE time < '2026-01-01T00:05:00Z' GROUP BY device_id ORDER BY device_id;
SELECT last(state, time) AS state, first(state, time) AS first_state FROM telemetry;
SELECT device_id, time, velocity FROM readings ORDER BY time DESC, device_id LIMIT 1;
