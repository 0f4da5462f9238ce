-- Registers a gateway (first hello) or refreshes it (every later hello),
-- and makes the new agent stream ($13) the owner of the row, replacing any
-- older stream. What the control plane decided (desired version, drain)
-- survives. When the gateway runs with a higher version than the control
-- plane built (its row was lost or deleted meanwhile) and the control plane
-- has a state for it, the desired version jumps above the gateway's so that
-- the control plane's state is applied again.
INSERT INTO gateways (
    id, name, labels, advertised_address, admin_address, hostname,
    version, build, capabilities, listeners, local_task_ids, started_at,
    applied_version, connection_state, connection_id, connected_to,
    connected_at, disconnected_at, last_seen_at,
    heartbeat_interval_ms, stats_interval_ms
)
VALUES (
    $1, $2, $3, $4, $5, $6,
    $7, $8, $9, $10, $11, $12,
    $13, 'connected', $14, $15,
    now(), NULL, now(),
    $16, $17
)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    labels = EXCLUDED.labels,
    advertised_address = EXCLUDED.advertised_address,
    admin_address = EXCLUDED.admin_address,
    hostname = EXCLUDED.hostname,
    version = EXCLUDED.version,
    build = EXCLUDED.build,
    capabilities = EXCLUDED.capabilities,
    listeners = EXCLUDED.listeners,
    local_task_ids = EXCLUDED.local_task_ids,
    started_at = EXCLUDED.started_at,
    desired_version = CASE
        WHEN gateways.desired_version > 0
             AND EXCLUDED.applied_version > gateways.desired_version
        THEN EXCLUDED.applied_version + 1
        ELSE gateways.desired_version
    END,
    applied_version = EXCLUDED.applied_version,
    connection_state = 'connected',
    connection_id = EXCLUDED.connection_id,
    connected_to = EXCLUDED.connected_to,
    connected_at = now(),
    disconnected_at = NULL,
    last_seen_at = now(),
    heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms,
    stats_interval_ms = EXCLUDED.stats_interval_ms
RETURNING *
