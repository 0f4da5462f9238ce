-- Long-running jobs (migration now, comparison later), their partitions and
-- events. The tables are kind-agnostic: `kind` names the handler, `spec`
-- and `plan` hold what that handler needs (see controlplane/src/jobs/).
--
-- Lifecycle (JobState in common.proto): pending -> running -> succeeded |
-- failed; running -> pausing -> paused -> running; any non-terminal state
-- -> cancelling -> cancelled. A pending job is planned by one worker at a
-- time (the job's own lease); planning inserts the partitions and moves the
-- job to running.
--
-- Partitions are leased with `FOR UPDATE SKIP LOCKED`; `lease_owner` is the
-- control-plane instance id and `lease_expires_at` is pushed forward by the
-- worker while it is alive. An expired lease makes the partition available
-- again; it resumes from `checkpoint`.

CREATE TABLE jobs (
    id                UUID PRIMARY KEY,
    kind              TEXT NOT NULL,
    name              TEXT NOT NULL,
    labels            JSONB NOT NULL DEFAULT '{}'::jsonb,
    state             TEXT NOT NULL
        CHECK (state IN ('pending', 'running', 'pausing', 'paused',
                         'cancelling', 'cancelled', 'succeeded', 'failed')),
    -- What the job does, as given at creation (kind-specific JSON).
    spec              JSONB NOT NULL,
    -- What planning found (kind-specific JSON), NULL before planning.
    plan              JSONB,
    -- Clusters the job reads or writes, for filtering.
    cluster_ids       UUID[] NOT NULL DEFAULT '{}',
    task_id           UUID REFERENCES replication_tasks (id) ON DELETE SET NULL,
    max_attempts      INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_ms          BIGINT NOT NULL CHECK (lease_ms > 0),
    -- Planning lease (pending jobs only).
    lease_owner       TEXT,
    lease_expires_at  TIMESTAMPTZ,
    plan_attempts     INTEGER NOT NULL DEFAULT 0,
    error_reason      TEXT,
    error_message     TEXT,
    error_metadata    JSONB,
    request_id        TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- List RPCs: newest first.
CREATE INDEX jobs_kind_created_idx ON jobs (kind, created_at DESC, id DESC);
CREATE INDEX jobs_active_idx ON jobs (state)
    WHERE state IN ('pending', 'running', 'pausing', 'cancelling');
CREATE UNIQUE INDEX jobs_request_id_idx ON jobs (kind, request_id)
    WHERE request_id IS NOT NULL;

CREATE TABLE job_partitions (
    id                UUID PRIMARY KEY,
    job_id            UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Unit of work the partition belongs to (an index for migrations).
    unit              TEXT NOT NULL,
    slice_id          INTEGER NOT NULL,
    slice_count       INTEGER NOT NULL,
    state             TEXT NOT NULL
        CHECK (state IN ('pending', 'leased', 'done', 'failed')),
    lease_owner       TEXT,
    lease_expires_at  TIMESTAMPTZ,
    attempts          INTEGER NOT NULL DEFAULT 0,
    -- The last holder released the partition right after storing its
    -- checkpoint (a pause), with nothing in flight past it.
    released_at_checkpoint BOOLEAN NOT NULL DEFAULT FALSE,
    docs_total        BIGINT NOT NULL DEFAULT 0,
    docs_done         BIGINT NOT NULL DEFAULT 0,
    bytes_done        BIGINT NOT NULL DEFAULT 0,
    -- Kind-specific counters (for example docs_skipped_newer).
    counters          JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- Kind-specific resume position; NULL before the first checkpoint.
    checkpoint        JSONB,
    error_reason      TEXT,
    error_message     TEXT,
    error_at          TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (job_id, unit, slice_id)
);

-- The lease query: available partitions of running jobs.
CREATE INDEX job_partitions_available_idx ON job_partitions (job_id, state, lease_expires_at);

-- Events of a job (state changes, failed partitions, rejected documents).
CREATE TABLE job_events (
    event_no    BIGSERIAL PRIMARY KEY,
    id          UUID NOT NULL DEFAULT gen_random_uuid(),
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    severity    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    unit        TEXT NOT NULL DEFAULT '',
    attributes  JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX job_events_job_idx ON job_events (job_id, event_no);
