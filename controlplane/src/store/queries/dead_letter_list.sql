-- One page of a task's dead letters, newest first (keyset on
-- created_at, gateway_id, local_id, all descending).
SELECT gateway_id, local_id, state, dead_letter, comment, created_at, updated_at
FROM dead_letters
WHERE task_id = $1
  AND ($2::text IS NULL OR gateway_id = $2)
  AND state = ANY($3)
  AND ($4::text IS NULL OR index_name = $4)
  AND ($5::timestamptz IS NULL OR (created_at, gateway_id, local_id) < ($5, $6::text, $7::bigint))
ORDER BY created_at DESC, gateway_id DESC, local_id DESC
LIMIT $8
