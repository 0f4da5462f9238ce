-- Stores what an agent stream reported since its last write: any message
-- counts as a sign of life; a heartbeat ($3..$6) and a queue statistics
-- report ($7) replace the previous ones (NULL: none in this write). Only the
-- stream owning the row ($2) may write; no row back means another stream
-- took the gateway over (or it was deleted).
--
-- Drain progress follows the gateway's own report ($6: serving, draining,
-- drained), but DRAINED counts only once the gateway applied the desired
-- state carrying the drain request.
WITH next AS (
    SELECT id,
           COALESCE($4, applied_version) AS applied_version,
           CASE
               WHEN NOT drain_requested THEN 'serving'
               WHEN $6::text IS NULL THEN drain_state
               WHEN COALESCE($4, applied_version) >= desired_version AND $6 = 'drained'
                   THEN 'drained'
               ELSE 'draining'
           END AS drain_state
    FROM gateways
    WHERE id = $1 AND connection_id = $2
    FOR UPDATE
)
UPDATE gateways g SET
    connection_state = 'connected',
    disconnected_at = NULL,
    last_seen_at = now(),
    last_heartbeat = COALESCE($3, g.last_heartbeat),
    last_heartbeat_at = CASE WHEN $3::jsonb IS NULL THEN g.last_heartbeat_at ELSE now() END,
    applied_version = next.applied_version,
    task_ids = COALESCE($5, g.task_ids),
    drain_state = next.drain_state,
    drained_at = CASE
        WHEN next.drain_state = 'drained' THEN COALESCE(g.drained_at, now())
        ELSE NULL
    END,
    last_queue_stats = COALESCE($7, g.last_queue_stats),
    queue_stats_at = CASE WHEN $7::jsonb IS NULL THEN g.queue_stats_at ELSE now() END
FROM next
WHERE g.id = next.id
RETURNING g.*
