-- Gateway commands and dead letters.
--
-- gateway_commands is the outbox of the commands sent to gateways over
-- their agent streams. Any control-plane replica may insert a command; the
-- replica holding the gateway's stream claims it (`pending` -> `sent`) and
-- sends it, and whichever replica receives the gateway's CommandResult
-- stores it (`succeeded` / `failed` / `rejected`). Replicas wake each other
-- with NOTIFY on `tandem_gateway_commands` (payload: gateway id) and
-- `tandem_command_results` (payload: command id); a periodic sweep covers
-- missed notifications. A command sent on a stream that broke before the
-- answer is sent again on the gateway's next stream (the gateway answers a
-- repeated command id with its first result). Commands past `expires_at`
-- are never sent; the sweep marks them `expired`.
CREATE TABLE gateway_commands (
    command_id     UUID PRIMARY KEY,
    gateway_id     TEXT NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    -- peek_records, repair_queue, retry_dead_letters, skip_dead_letters,
    -- fetch_dead_letters.
    kind           TEXT NOT NULL,
    task_id        TEXT NOT NULL DEFAULT '',
    -- The tandem.v1.GatewayCommand, protobuf-encoded.
    command        BYTEA NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'succeeded', 'failed', 'rejected', 'expired')),
    -- The tandem.v1.CommandResult, protobuf-encoded, once answered.
    result         BYTEA,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    sent_at        TIMESTAMPTZ,
    -- Agent stream the command was last sent on.
    sent_connection UUID,
    finished_at    TIMESTAMPTZ
);
CREATE INDEX gateway_commands_open_idx ON gateway_commands (gateway_id, created_at)
    WHERE state IN ('pending', 'sent');

-- Dead letters as the gateways report them (DeadLetterReport) and as
-- operators resolve them (QueueService.RetryDeadLetters / SkipDeadLetters).
-- The gateway numbers its dead letters per task (`local_id`); the API id is
-- "<gateway id>/<local id>", unique within a task.
CREATE TABLE dead_letters (
    task_id      TEXT NOT NULL,
    gateway_id   TEXT NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    local_id     BIGINT NOT NULL,
    index_name   TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL
        CHECK (state IN ('pending', 'retry_requested', 'retried', 'skip_requested', 'skipped')),
    -- The tandem.v1.DeadLetter as last reported, protobuf-encoded, body
    -- never included.
    dead_letter  BYTEA NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    -- Command carrying the requested retry or skip.
    command_id   UUID,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, gateway_id, local_id)
);
CREATE INDEX dead_letters_list_idx ON dead_letters (task_id, created_at DESC, gateway_id, local_id);
