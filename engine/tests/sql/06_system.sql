-- System and iot tables.
SELECT table_name, tags, fields, series FROM system.tables ORDER BY table_name;
SELECT table_name, column_name, ordinal, kind, data_type FROM system.columns WHERE table_name IN ('readings', 'telemetry') ORDER BY table_name, ordinal;
SELECT client_id, protocol, subscriptions FROM system.connections;
SELECT device_id, connected, protocol, disconnect_reason FROM iot.devices ORDER BY device_id;
SELECT device_id, event, protocol FROM iot.device_events WHERE device_id = 'truck_2' ORDER BY time;
SELECT count(*) >= 0 AS ok FROM system.segments;
SELECT 'golden-marker' AS m;
SELECT state, rows FROM system.queries WHERE sql LIKE '%golden-marker%' AND sql NOT LIKE '%system.queries%';
SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name;
