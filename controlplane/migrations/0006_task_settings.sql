-- ReplicationService: a task's queue policy and replay options, carried to
-- its gateways in every TaskAssignment and changed by UpdateTask. Zero means
-- the documented default, as for the lag thresholds of 0004.

ALTER TABLE replication_tasks
    -- QueuePolicy.
    ADD COLUMN queue_max_bytes                BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN queue_max_age_ms               BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN queue_on_full                  TEXT NOT NULL DEFAULT 'backpressure'
        CHECK (queue_on_full IN ('backpressure', 'reject')),
    ADD COLUMN queue_max_backpressure_wait_ms BIGINT NOT NULL DEFAULT 0,
    -- ReplayOptions.
    ADD COLUMN replay_max_batch_records       BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replay_max_batch_bytes         BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replay_request_timeout_ms      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replay_initial_backoff_ms      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replay_max_backoff_ms          BIGINT NOT NULL DEFAULT 0;
