-- Registered search clusters. Passwords are stored encrypted by the control
-- plane (never in clear text) and are never returned by the API.
CREATE TABLE clusters (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name               TEXT NOT NULL UNIQUE,
    url                TEXT NOT NULL,
    username           TEXT,
    password_encrypted BYTEA,
    distribution       TEXT,
    version            TEXT,
    health             TEXT,
    node_count         INTEGER,
    probed_at          TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Gateways (data-plane nodes) known to the control plane.
CREATE TABLE gateways (
    id                TEXT PRIMARY KEY,
    address           TEXT NOT NULL,
    version           TEXT NOT NULL,
    drained           BOOLEAN NOT NULL DEFAULT FALSE,
    last_heartbeat_at TIMESTAMPTZ,
    registered_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
