-- A non-stopped task, other than $3, serving listener $1 on one of the
-- gateways $2. '' and 'default' both name the default listener.
SELECT name FROM replication_tasks
WHERE state <> 'stopped'
  AND ($3::uuid IS NULL OR id <> $3)
  AND (CASE WHEN listener IN ('', 'default') THEN '' ELSE listener END)
      = (CASE WHEN $1 IN ('', 'default') THEN '' ELSE $1 END)
  AND gateway_ids && $2
LIMIT 1
