-- Claims the commands a gateway's current stream should get: pending ones,
-- and those sent on an earlier stream that broke before the answer. Only
-- the stream owning the gateway row ($2 = gateways.connection_id) claims;
-- SKIP LOCKED keeps two concurrent claims from sending a command twice.
UPDATE gateway_commands c
SET state = 'sent', sent_at = now(), sent_connection = $2
WHERE c.command_id IN (
    SELECT o.command_id
    FROM gateway_commands o
    WHERE o.gateway_id = $1
      AND o.expires_at > now()
      AND (o.state = 'pending'
           OR (o.state = 'sent' AND o.sent_connection IS DISTINCT FROM $2))
      AND EXISTS (SELECT 1 FROM gateways g WHERE g.id = $1 AND g.connection_id = $2)
    ORDER BY o.created_at
    FOR UPDATE SKIP LOCKED
)
RETURNING c.created_at, c.command
