-- One event of a gateway; an event sent again after a reconnect (same
-- gateway and sequence) is stored once.
INSERT INTO gateway_events (
    gateway_id, sequence, occurred_at, severity, reason, message,
    task_id, job_id, cluster_id, index_name, attributes
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (gateway_id, sequence) DO NOTHING
