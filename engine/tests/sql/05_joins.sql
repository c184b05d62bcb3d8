-- Joins between telemetry tables, subqueries and CTEs.
SELECT r.device_id, r.time, r.velocity, d.fuel_state, d.status FROM readings r JOIN diagnostics d ON r.device_id = d.device_id AND r.time = d.time WHERE r.device_id = 'truck_2' ORDER BY r.time;
SELECT r.device_id, count(*) AS readings_rows, max(d.current_load) AS load FROM readings r LEFT JOIN diagnostics d ON r.device_id = d.device_id AND r.time = d.time GROUP BY r.device_id ORDER BY r.device_id;
WITH moving AS (SELECT device_id, count(*) AS n FROM readings WHERE velocity > 0 GROUP BY device_id) SELECT m.device_id, m.n, d.fuel FROM moving m JOIN (SELECT device_id, min(fuel_state) AS fuel FROM diagnostics GROUP BY device_id) d USING (device_id) ORDER BY m.device_id;
SELECT device_id FROM readings WHERE device_id NOT IN (SELECT device_id FROM telemetry) GROUP BY device_id ORDER BY device_id;
SELECT t.time, t.temp, r.velocity FROM telemetry t JOIN readings r ON r.device_id = t.device_id AND r.time = t.time WHERE t.temp > 23 ORDER BY t.time;
