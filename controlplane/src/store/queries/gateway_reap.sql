-- Marks disconnected every gateway silent for three heartbeat intervals
-- (the interval it was told in its AgentWelcome), whichever replica held its
-- stream: that replica may be gone. `connection_id` stays, so a stream that
-- is alive after all (its writes were only delayed) takes the row back with
-- its next write.
UPDATE gateways SET
    connection_state = 'disconnected',
    disconnected_at = now()
WHERE connection_state = 'connected'
  AND COALESCE(last_seen_at, connected_at, first_seen_at)
      < now() - (heartbeat_interval_ms * 3) * interval '1 millisecond'
RETURNING id, connected_to
