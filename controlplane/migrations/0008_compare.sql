-- Document differences found by comparison jobs (the `compare` kind of
-- controlplane/src/jobs/, see controlplane/src/compare/). Per-index results
-- (counts, mismatched partitions) live in the checkpoint of the index's job
-- partition; only the differences, which can be many, get their own table.
--
-- A partition that runs again (lost lease, retry) records the same
-- differences again: (job_id, index_name, doc_id) is unique and the newer
-- observation wins.

CREATE TABLE compare_diffs (
    -- Order of recording, for WatchCompareJob's include_diffs.
    diff_no         BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL DEFAULT gen_random_uuid(),
    job_id          UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    index_name      TEXT NOT NULL,
    doc_id          TEXT NOT NULL,
    kind            TEXT NOT NULL
        CHECK (kind IN ('missing_in_target', 'extra_in_target',
                        'content_differs', 'version_differs')),
    source_version  BIGINT,
    target_version  BIGINT,
    source_hash     TEXT NOT NULL DEFAULT '',
    target_hash     TEXT NOT NULL DEFAULT '',
    routing         TEXT NOT NULL DEFAULT '',
    -- `<index>#<partition number>`.
    partition_id    TEXT NOT NULL,
    detected_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (job_id, index_name, doc_id)
);

-- ListCompareDiffs: by index then document id, optionally one kind.
CREATE INDEX compare_diffs_kind_idx ON compare_diffs (job_id, kind, index_name, doc_id);
