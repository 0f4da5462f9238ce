-- One page of clusters ordered by name (keyset pagination on the unique
-- name). Every filter is optional: NULL disables it.
SELECT *
FROM clusters
WHERE ($1::text IS NULL OR name > $1)
  AND ($2::text IS NULL OR strpos(name, $2) > 0)
  AND ($3::text IS NULL OR distribution = $3)
  AND ($4::jsonb IS NULL OR labels @> $4)
ORDER BY name
LIMIT $5
