-- A probe is not a settings change: `updated_at` stays. Distribution,
-- version and cluster UUID are the facts of the last *successful* probe
-- (NULL parameters keep them), so a cluster that is down for a while keeps
-- its identity; health and node count always follow the latest probe.
UPDATE clusters SET
    distribution = COALESCE($2, distribution),
    version = COALESCE($3, version),
    cluster_uuid = COALESCE($4, cluster_uuid),
    health = $5,
    node_count = $6,
    probed_at = $7,
    last_probe = $8
WHERE id = $1
