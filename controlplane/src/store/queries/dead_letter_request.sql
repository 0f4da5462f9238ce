-- Moves the selected PENDING dead letters of task $1 to the requested state
-- $2 with the operator's comment $3: every one ($4 = true, restricted to
-- gateway $5 when set) or the listed (gateway, local id) pairs ($6, $7).
UPDATE dead_letters d
SET state = $2, comment = $3, updated_at = now()
WHERE d.task_id = $1
  AND d.state = 'pending'
  AND (
      ($4 AND ($5::text IS NULL OR d.gateway_id = $5))
      OR (NOT $4 AND (d.gateway_id, d.local_id) IN (
          SELECT * FROM unnest($6::text[], $7::bigint[])
      ))
  )
RETURNING d.gateway_id, d.local_id
