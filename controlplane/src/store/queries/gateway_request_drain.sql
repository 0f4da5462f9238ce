-- DrainGateway on a connected gateway. A new or changed request builds a new
-- desired state: its version goes above both the last one built and the one
-- the gateway runs with, so the gateway applies it. Repeating the same
-- request changes nothing (idempotent).
UPDATE gateways SET
    desired_version = CASE
        WHEN drain_requested
             AND drain_quiet_period_ms = $2
             AND drain_allow_unreplayed_paused = $3
        THEN desired_version
        ELSE GREATEST(desired_version, applied_version) + 1
    END,
    drain_state = CASE WHEN drain_requested THEN drain_state ELSE 'draining' END,
    drain_started_at = CASE WHEN drain_requested THEN drain_started_at ELSE now() END,
    drained_at = CASE WHEN drain_requested THEN drained_at ELSE NULL END,
    drain_requested = TRUE,
    drain_quiet_period_ms = $2,
    drain_allow_unreplayed_paused = $3
WHERE id = $1 AND connection_state = 'connected'
RETURNING *
