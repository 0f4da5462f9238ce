-- ReplicationService: replication tasks, their role swaps and events.
--
-- A task binds an (original) primary and backup cluster to a set of
-- gateways. `direction` is the committed replication direction; during a
-- role swap `target_direction` holds the direction being pushed to the
-- gateways (with a write hold), and is cleared when the swap finishes
-- (committed into `direction` on success, dropped on failure).
--
-- Every change of a task bumps `version` (optimistic concurrency: writers
-- update `WHERE version = $expected`) and `updated_at`.

CREATE TABLE replication_tasks (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  TEXT NOT NULL UNIQUE,
    description           TEXT NOT NULL DEFAULT '',
    labels                JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- Clusters as created (FORWARD roles).
    primary_cluster_id    UUID NOT NULL REFERENCES clusters (id) ON DELETE RESTRICT,
    backup_cluster_id     UUID NOT NULL REFERENCES clusters (id) ON DELETE RESTRICT,
    gateway_ids           TEXT[] NOT NULL,
    listener              TEXT NOT NULL DEFAULT '',
    state                 TEXT NOT NULL
        CHECK (state IN ('created', 'running', 'paused', 'cutting_over',
                         'rolling_back', 'stopped', 'failed')),
    -- State to go back to when a FAILED task is resumed.
    state_before_failure  TEXT,
    direction             TEXT NOT NULL DEFAULT 'forward'
        CHECK (direction IN ('forward', 'reversed')),
    target_direction      TEXT CHECK (target_direction IN ('forward', 'reversed')),
    -- Write hold pushed with `target_direction`.
    hold_id               UUID,
    hold_timeout_ms       BIGINT,
    hold_deadline         TIMESTAMPTZ,
    -- Index filter (immutable).
    index_include         TEXT[] NOT NULL DEFAULT '{}',
    index_exclude         TEXT[] NOT NULL DEFAULT '{}',
    index_include_hidden  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Lag thresholds (0 = default).
    warning_lag_ms        BIGINT NOT NULL DEFAULT 0,
    warning_records       BIGINT NOT NULL DEFAULT 0,
    cutover_max_lag_ms    BIGINT NOT NULL DEFAULT 0,
    cutover_max_records   BIGINT NOT NULL DEFAULT 0,
    shadow_sample_ratio   DOUBLE PRECISION NOT NULL DEFAULT 0,
    backup_gc_deletes_ms  BIGINT NOT NULL DEFAULT 0,
    -- Why the task is FAILED.
    error_reason          TEXT,
    error_message         TEXT,
    request_id            TEXT,
    version               BIGINT NOT NULL DEFAULT 1,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at            TIMESTAMPTZ,
    stopped_at            TIMESTAMPTZ,
    CHECK (primary_cluster_id <> backup_cluster_id),
    CHECK (cardinality(gateway_ids) > 0)
);

-- ListTasks: newest first.
CREATE INDEX replication_tasks_created_idx ON replication_tasks (created_at DESC, id DESC);
CREATE INDEX replication_tasks_gateways_idx ON replication_tasks USING gin (gateway_ids);
CREATE UNIQUE INDEX replication_tasks_request_id_idx ON replication_tasks (request_id)
    WHERE request_id IS NOT NULL;

-- Cutovers and rollbacks. The unfinished one (at most one per task) is the
-- task's current operation; the latest finished one its last operation.
CREATE TABLE task_operations (
    id                UUID PRIMARY KEY,
    task_id           UUID NOT NULL REFERENCES replication_tasks (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL CHECK (kind IN ('cutover', 'rollback')),
    phase             TEXT NOT NULL
        CHECK (phase IN ('checking', 'holding_writes', 'draining', 'swapping',
                         'succeeded', 'failed')),
    max_lag_ms        BIGINT NOT NULL,
    max_lag_records   BIGINT NOT NULL,
    hold_timeout_ms   BIGINT NOT NULL,
    start_lag_records BIGINT NOT NULL,
    gateways_total    INTEGER NOT NULL,
    gateways_ready    INTEGER NOT NULL DEFAULT 0,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    hold_started_at   TIMESTAMPTZ,
    hold_released_at  TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    error_reason      TEXT,
    error_message     TEXT
);
CREATE UNIQUE INDEX task_operations_current_idx ON task_operations (task_id)
    WHERE finished_at IS NULL;

-- Events of the control plane about a task (state changes, role swaps).
CREATE TABLE task_events (
    event_no    BIGSERIAL PRIMARY KEY,
    id          UUID NOT NULL DEFAULT gen_random_uuid(),
    task_id     UUID NOT NULL REFERENCES replication_tasks (id) ON DELETE CASCADE,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    severity    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    gateway_id  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX task_events_task_idx ON task_events (task_id, event_no DESC);
