-- UndrainGateway: back to SERVING. Cancelling a drain builds a new desired
-- state (without `drain`); a gateway that is not draining is left as is.
UPDATE gateways SET
    desired_version = CASE
        WHEN drain_requested THEN GREATEST(desired_version, applied_version) + 1
        ELSE desired_version
    END,
    drain_requested = FALSE,
    drain_state = 'serving',
    drain_quiet_period_ms = 0,
    drain_allow_unreplayed_paused = FALSE,
    drain_started_at = NULL,
    drained_at = NULL
WHERE id = $1
RETURNING *
