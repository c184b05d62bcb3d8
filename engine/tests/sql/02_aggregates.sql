-- Aggregates per device and per tag, HAVING, DISTINCT, numeric functions.
SELECT device_id, count(*) AS n, min(velocity) AS vmin, max(velocity) AS vmax, round(avg(velocity), 3) AS vavg FROM readings GROUP BY device_id ORDER BY device_id;
SELECT fleet, count(DISTINCT device_id) AS trucks, sum(velocity) AS total FROM readings GROUP BY fleet ORDER BY fleet;
SELECT device_id, max(current_load) - min(current_load) AS spread, sum(status) AS s FROM diagnostics GROUP BY device_id HAVING sum(status) > 0 ORDER BY device_id;
SELECT DISTINCT driver FROM readings ORDER BY driver;
SELECT count(*) AS rows, count(temp) AS temps, count(state) AS states, count(ok) AS oks FROM telemetry;
SELECT device_id, round(stddev(velocity), 4) AS sd, count(DISTINCT velocity) AS distinct_v FROM readings GROUP BY device_id ORDER BY device_id;
