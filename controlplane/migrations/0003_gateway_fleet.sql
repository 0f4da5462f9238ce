-- GatewayService: the gateway fleet and its agent streams.
--
-- A row is created by the first AgentHello of a gateway (its id is generated
-- by the gateway and persisted in its data directory) and refreshed by every
-- later hello, heartbeat and queue statistics report. The latest heartbeat
-- and queue statistics report are kept whole as JSON (written by the control
-- plane, decoded back into tandem.v1 messages on read); the facts the API
-- filters on have plain columns.
--
-- Connection ownership: `connection_id` identifies the agent stream that
-- currently owns the row and `connected_to` the control-plane process
-- (instance id) holding it. Every write made on behalf of a stream is
-- conditioned on its `connection_id`, so a stream replaced by a newer one
-- (on this replica or another) can neither mark the gateway disconnected nor
-- overwrite the newer stream's reports.

ALTER TABLE gateways RENAME COLUMN address TO advertised_address;
ALTER TABLE gateways RENAME COLUMN registered_at TO first_seen_at;
ALTER TABLE gateways RENAME COLUMN drained TO drain_requested;
ALTER TABLE gateways
    ALTER COLUMN advertised_address SET DEFAULT '',
    ALTER COLUMN version SET DEFAULT '';

ALTER TABLE gateways
    -- What the gateway announced in its last AgentHello.
    ADD COLUMN name                          TEXT NOT NULL DEFAULT '',
    ADD COLUMN labels                        JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN admin_address                 TEXT NOT NULL DEFAULT '',
    ADD COLUMN hostname                      TEXT NOT NULL DEFAULT '',
    ADD COLUMN build                         TEXT NOT NULL DEFAULT '',
    ADD COLUMN capabilities                  TEXT[] NOT NULL DEFAULT '{}',
    -- [{"name": ..., "address": ..., "tls": ...}]
    ADD COLUMN listeners                     JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN local_task_ids                TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN started_at                    TIMESTAMPTZ,
    -- Tasks the gateway reports serving (from its heartbeats).
    ADD COLUMN task_ids                      TEXT[] NOT NULL DEFAULT '{}',
    -- Agent stream.
    ADD COLUMN connection_state              TEXT NOT NULL DEFAULT 'disconnected'
        CHECK (connection_state IN ('connected', 'disconnected')),
    ADD COLUMN connection_id                 UUID,
    ADD COLUMN connected_to                  TEXT,
    ADD COLUMN connected_at                  TIMESTAMPTZ,
    ADD COLUMN disconnected_at               TIMESTAMPTZ,
    ADD COLUMN last_seen_at                  TIMESTAMPTZ,
    -- Intervals the gateway was told in its AgentWelcome: a gateway silent
    -- for three heartbeat intervals is marked disconnected, and statistics
    -- older than three stats intervals are stale.
    ADD COLUMN heartbeat_interval_ms         BIGINT NOT NULL DEFAULT 10000,
    ADD COLUMN stats_interval_ms             BIGINT NOT NULL DEFAULT 10000,
    -- Desired state: version built by the control plane, version applied by
    -- the gateway.
    ADD COLUMN desired_version               BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN applied_version               BIGINT NOT NULL DEFAULT 0,
    -- Drain: requested by DrainGateway (`drain_requested`), progress as
    -- reported by the gateway.
    ADD COLUMN drain_state                   TEXT NOT NULL DEFAULT 'serving'
        CHECK (drain_state IN ('serving', 'draining', 'drained')),
    ADD COLUMN drain_quiet_period_ms         BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN drain_allow_unreplayed_paused BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN drain_started_at              TIMESTAMPTZ,
    ADD COLUMN drained_at                    TIMESTAMPTZ,
    -- Latest reports, as JSON.
    ADD COLUMN last_heartbeat                JSONB,
    ADD COLUMN last_queue_stats              JSONB,
    ADD COLUMN queue_stats_at                TIMESTAMPTZ;

UPDATE gateways SET name = id WHERE name = '';
UPDATE gateways SET drain_state = 'draining' WHERE drain_requested;

-- ListGateways: ordered by (name, id), filtered by labels.
CREATE INDEX gateways_name_idx ON gateways (name, id);
CREATE INDEX gateways_labels_idx ON gateways USING gin (labels);
-- The heartbeat-timeout sweep looks at connected gateways only.
CREATE INDEX gateways_connected_idx ON gateways (last_seen_at)
    WHERE connection_state = 'connected';

-- Events sent by gateways (AgentEventBatch). `sequence` is the gateway's
-- own, strictly increasing number: a batch sent again after a reconnect is
-- stored once. `event_no` orders events across the fleet for watchers.
CREATE TABLE gateway_events (
    event_no    BIGSERIAL UNIQUE,
    id          UUID NOT NULL DEFAULT gen_random_uuid(),
    gateway_id  TEXT NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    sequence    BIGINT NOT NULL,
    occurred_at TIMESTAMPTZ,
    severity    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    task_id     TEXT NOT NULL DEFAULT '',
    job_id      TEXT NOT NULL DEFAULT '',
    cluster_id  TEXT NOT NULL DEFAULT '',
    index_name  TEXT NOT NULL DEFAULT '',
    attributes  JSONB NOT NULL DEFAULT '{}'::jsonb,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, sequence)
);
