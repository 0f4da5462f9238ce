-- ClusterService: the full tandem.v1.Cluster model.
--
-- Secrets (password or API key, TLS client key) are sealed by the control
-- plane with XChaCha20-Poly1305 before they reach this table; the columns
-- ending in `_encrypted` never hold clear text. The latest probe is kept
-- whole in `last_probe` (JSON, written by the control plane) and its most
-- queried facts in plain columns for filtering.

ALTER TABLE clusters RENAME COLUMN password_encrypted TO secret_encrypted;

ALTER TABLE clusters
    ADD COLUMN description                TEXT NOT NULL DEFAULT '',
    ADD COLUMN labels                     JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN endpoints                  TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN auth_method                TEXT NOT NULL DEFAULT 'none'
        CHECK (auth_method IN ('none', 'basic', 'api_key')),
    ADD COLUMN secret_updated_at          TIMESTAMPTZ,
    ADD COLUMN tls_ca_certificates_pem    TEXT NOT NULL DEFAULT '',
    ADD COLUMN tls_server_name            TEXT NOT NULL DEFAULT '',
    ADD COLUMN tls_insecure_skip_verify   BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN tls_client_certificate_pem TEXT NOT NULL DEFAULT '',
    ADD COLUMN tls_client_key_encrypted   BYTEA,
    ADD COLUMN node_discovery_enabled     BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN node_discovery_refresh_ms  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN max_qps_per_node           BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN max_bytes_per_sec_per_node BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN max_connections_per_node   BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN over_limit                 TEXT NOT NULL DEFAULT 'wait'
        CHECK (over_limit IN ('wait', 'reject')),
    ADD COLUMN max_wait_ms                BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cluster_uuid               TEXT,
    ADD COLUMN last_probe                 JSONB;

-- 0001 had a single `url`; it becomes the first endpoint.
UPDATE clusters SET endpoints = ARRAY[url];
UPDATE clusters SET auth_method = 'basic' WHERE username IS NOT NULL;
ALTER TABLE clusters DROP COLUMN url;
ALTER TABLE clusters ADD CONSTRAINT clusters_endpoints_not_empty
    CHECK (cardinality(endpoints) > 0);

-- ListClusters filters by labels (`labels @> filter`).
CREATE INDEX clusters_labels_idx ON clusters USING gin (labels);
