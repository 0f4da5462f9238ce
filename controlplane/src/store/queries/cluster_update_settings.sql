-- Optimistic concurrency: the row changes only if nobody updated it since
-- it was read ($22 is the `updated_at` that was read).
UPDATE clusters SET
    name = $2,
    description = $3,
    labels = $4,
    endpoints = $5,
    auth_method = $6,
    username = $7,
    secret_encrypted = $8,
    secret_updated_at = $9,
    tls_ca_certificates_pem = $10,
    tls_server_name = $11,
    tls_insecure_skip_verify = $12,
    tls_client_certificate_pem = $13,
    tls_client_key_encrypted = $14,
    node_discovery_enabled = $15,
    node_discovery_refresh_ms = $16,
    max_qps_per_node = $17,
    max_bytes_per_sec_per_node = $18,
    max_connections_per_node = $19,
    over_limit = $20,
    max_wait_ms = $21,
    updated_at = clock_timestamp()
WHERE id = $1 AND updated_at = $22
