-- One page of gateways ordered by (name, id) (keyset pagination: names are
-- not unique). Every filter is optional: NULL disables it.
SELECT *
FROM gateways
WHERE ($1::text IS NULL OR (name, id) > ($1, $2::text))
  AND ($3::text IS NULL OR connection_state = $3)
  AND ($4::text IS NULL OR drain_state = $4)
  AND ($5::text IS NULL OR $5 = ANY (task_ids))
  AND ($6::jsonb IS NULL OR labels @> $6)
ORDER BY name, id
LIMIT $7
