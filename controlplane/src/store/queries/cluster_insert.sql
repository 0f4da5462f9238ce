INSERT INTO clusters (
    id, name, description, labels, endpoints,
    auth_method, username, secret_encrypted, secret_updated_at,
    tls_ca_certificates_pem, tls_server_name, tls_insecure_skip_verify,
    tls_client_certificate_pem, tls_client_key_encrypted,
    node_discovery_enabled, node_discovery_refresh_ms,
    max_qps_per_node, max_bytes_per_sec_per_node, max_connections_per_node,
    over_limit, max_wait_ms
)
VALUES (
    $1, $2, $3, $4, $5,
    $6, $7, $8, $9,
    $10, $11, $12,
    $13, $14,
    $15, $16,
    $17, $18, $19,
    $20, $21
)
