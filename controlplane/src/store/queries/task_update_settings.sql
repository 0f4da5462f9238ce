-- UpdateTask: replaces the mutable settings of task $1 if its version is
-- still $2 (optimistic concurrency; no row back means it changed or
-- vanished). State, direction, role swap, clusters, listener, index filter
-- and gc_deletes are left alone.
UPDATE replication_tasks SET
    name = $3,
    description = $4,
    labels = $5,
    gateway_ids = $6,
    warning_lag_ms = $7,
    warning_records = $8,
    cutover_max_lag_ms = $9,
    cutover_max_records = $10,
    shadow_sample_ratio = $11,
    queue_max_bytes = $12,
    queue_max_age_ms = $13,
    queue_on_full = $14,
    queue_max_backpressure_wait_ms = $15,
    replay_max_batch_records = $16,
    replay_max_batch_bytes = $17,
    replay_request_timeout_ms = $18,
    replay_initial_backoff_ms = $19,
    replay_max_backoff_ms = $20,
    version = version + 1,
    updated_at = now()
WHERE id = $1 AND version = $2
RETURNING id
