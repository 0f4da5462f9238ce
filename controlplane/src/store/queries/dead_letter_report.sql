-- Stores a dead letter a gateway reported. A known one is PENDING again
-- (its replay failed again) unless a retry or skip is in flight.
INSERT INTO dead_letters (task_id, gateway_id, local_id, index_name, state, dead_letter, created_at)
VALUES ($1, $2, $3, $4, 'pending', $5, $6)
ON CONFLICT (task_id, gateway_id, local_id) DO UPDATE SET
    index_name = EXCLUDED.index_name,
    dead_letter = EXCLUDED.dead_letter,
    state = CASE
        WHEN dead_letters.state IN ('retry_requested', 'skip_requested') THEN dead_letters.state
        ELSE 'pending'
    END,
    updated_at = now()
