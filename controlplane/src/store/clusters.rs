//! The `clusters` table: registered search clusters.
//!
//! Secrets arrive here already sealed (see [`crate::secrets`]); this module
//! never sees clear text. Settings changes use optimistic concurrency on
//! `updated_at` (a probe between read and write must not hold a row lock),
//! and probes are recorded separately because they are not settings changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::{StoreError, finish};
use crate::probe::{Distribution, ProbeReport};

/// How the control plane authenticates to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No authentication.
    None,
    /// HTTP basic (user name and password).
    Basic,
    /// API key.
    ApiKey,
}

impl AuthKind {
    fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Basic => "basic",
            AuthKind::ApiKey => "api_key",
        }
    }

    fn parse(text: &str) -> Result<AuthKind, StoreError> {
        match text {
            "none" => Ok(AuthKind::None),
            "basic" => Ok(AuthKind::Basic),
            "api_key" => Ok(AuthKind::ApiKey),
            other => Err(StoreError::Corrupt(format!(
                "unknown auth_method {other:?}"
            ))),
        }
    }
}

/// What a gateway does with a request over a per-node limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// Wait for capacity, up to `max_wait`.
    Wait,
    /// Answer 429 at once.
    Reject,
}

impl OverLimit {
    fn as_str(self) -> &'static str {
        match self {
            OverLimit::Wait => "wait",
            OverLimit::Reject => "reject",
        }
    }

    fn parse(text: &str) -> Result<OverLimit, StoreError> {
        match text {
            "wait" => Ok(OverLimit::Wait),
            "reject" => Ok(OverLimit::Reject),
            other => Err(StoreError::Corrupt(format!("unknown over_limit {other:?}"))),
        }
    }
}

/// Credentials, with the secret sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    /// Scheme.
    pub method: AuthKind,
    /// User name (basic only; empty otherwise).
    pub username: String,
    /// Sealed password (basic) or API key (api_key).
    pub secret_encrypted: Option<Vec<u8>>,
    /// When the secret was last set.
    pub secret_updated_at: Option<DateTime<Utc>>,
}

/// TLS settings, with the client key sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredTls {
    /// Extra trusted CAs, PEM.
    pub ca_certificates_pem: String,
    /// SNI / verification name override.
    pub server_name: String,
    /// Skip certificate verification.
    pub insecure_skip_verify: bool,
    /// Client certificate chain, PEM.
    pub client_certificate_pem: String,
    /// Sealed client private key.
    pub client_key_encrypted: Option<Vec<u8>>,
}

/// Per-node limits (0 = unlimited / default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLimits {
    /// Requests per second per node.
    pub max_qps_per_node: i64,
    /// Request bytes per second per node.
    pub max_bytes_per_sec_per_node: i64,
    /// Concurrent connections per node.
    pub max_connections_per_node: i64,
    /// Policy over a limit.
    pub over_limit: OverLimit,
    /// Longest wait under [`OverLimit::Wait`], in milliseconds.
    pub max_wait_ms: i64,
}

/// Everything a user sets about a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// HTTP endpoints, at least one.
    pub endpoints: Vec<String>,
    /// Credentials.
    pub credentials: StoredCredentials,
    /// TLS settings.
    pub tls: StoredTls,
    /// Node discovery enabled.
    pub node_discovery_enabled: bool,
    /// Node list refresh interval in milliseconds (0 = default).
    pub node_discovery_refresh_ms: i64,
    /// Per-node limits.
    pub limits: StoredLimits,
}

/// A registered cluster.
#[derive(Debug, Clone)]
pub struct ClusterRecord {
    /// Id.
    pub id: Uuid,
    /// Settings.
    pub settings: ClusterSettings,
    /// Latest probe, if any.
    pub last_probe: Option<ProbeReport>,
    /// UUID found by the last successful probe: the cluster's identity.
    pub cluster_uuid: Option<String>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last settings change (the optimistic-concurrency version).
    pub updated_at: DateTime<Utc>,
}

/// Filters of [`list`]; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct ClusterFilter {
    /// Name contains this substring.
    pub name_contains: String,
    /// Distribution as last probed.
    pub distribution: Option<Distribution>,
    /// Carries all these labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(sqlx::FromRow)]
struct ClusterRow {
    id: Uuid,
    name: String,
    description: String,
    labels: Json<BTreeMap<String, String>>,
    endpoints: Vec<String>,
    auth_method: String,
    username: Option<String>,
    secret_encrypted: Option<Vec<u8>>,
    secret_updated_at: Option<DateTime<Utc>>,
    tls_ca_certificates_pem: String,
    tls_server_name: String,
    tls_insecure_skip_verify: bool,
    tls_client_certificate_pem: String,
    tls_client_key_encrypted: Option<Vec<u8>>,
    node_discovery_enabled: bool,
    node_discovery_refresh_ms: i64,
    max_qps_per_node: i64,
    max_bytes_per_sec_per_node: i64,
    max_connections_per_node: i64,
    over_limit: String,
    max_wait_ms: i64,
    last_probe: Option<serde_json::Value>,
    cluster_uuid: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ClusterRow> for ClusterRecord {
    type Error = StoreError;

    fn try_from(row: ClusterRow) -> Result<Self, StoreError> {
        let last_probe = row.last_probe.and_then(|json| {
            serde_json::from_value(json)
                .inspect_err(|err| {
                    // A probe stored by an older format is only a cache of
                    // facts: drop it rather than fail the whole read.
                    tracing::warn!(cluster_id = %row.id, error = %err, "ignoring unreadable last_probe");
                })
                .ok()
        });
        Ok(ClusterRecord {
            id: row.id,
            settings: ClusterSettings {
                name: row.name,
                description: row.description,
                labels: row.labels.0,
                endpoints: row.endpoints,
                credentials: StoredCredentials {
                    method: AuthKind::parse(&row.auth_method)?,
                    username: row.username.unwrap_or_default(),
                    secret_encrypted: row.secret_encrypted,
                    secret_updated_at: row.secret_updated_at,
                },
                tls: StoredTls {
                    ca_certificates_pem: row.tls_ca_certificates_pem,
                    server_name: row.tls_server_name,
                    insecure_skip_verify: row.tls_insecure_skip_verify,
                    client_certificate_pem: row.tls_client_certificate_pem,
                    client_key_encrypted: row.tls_client_key_encrypted,
                },
                node_discovery_enabled: row.node_discovery_enabled,
                node_discovery_refresh_ms: row.node_discovery_refresh_ms,
                limits: StoredLimits {
                    max_qps_per_node: row.max_qps_per_node,
                    max_bytes_per_sec_per_node: row.max_bytes_per_sec_per_node,
                    max_connections_per_node: row.max_connections_per_node,
                    over_limit: OverLimit::parse(&row.over_limit)?,
                    max_wait_ms: row.max_wait_ms,
                },
            },
            last_probe,
            cluster_uuid: row.cluster_uuid,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Binds the 21 settings parameters ($1 = id .. $21) shared by the insert
/// and the update.
fn bind_settings<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    id: Uuid,
    s: &'q ClusterSettings,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let username = (s.credentials.method == AuthKind::Basic).then_some(&s.credentials.username);
    query
        .bind(id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(Json(&s.labels))
        .bind(&s.endpoints)
        .bind(s.credentials.method.as_str())
        .bind(username)
        .bind(&s.credentials.secret_encrypted)
        .bind(s.credentials.secret_updated_at)
        .bind(&s.tls.ca_certificates_pem)
        .bind(&s.tls.server_name)
        .bind(s.tls.insecure_skip_verify)
        .bind(&s.tls.client_certificate_pem)
        .bind(&s.tls.client_key_encrypted)
        .bind(s.node_discovery_enabled)
        .bind(s.node_discovery_refresh_ms)
        .bind(s.limits.max_qps_per_node)
        .bind(s.limits.max_bytes_per_sec_per_node)
        .bind(s.limits.max_connections_per_node)
        .bind(s.limits.over_limit.as_str())
        .bind(s.limits.max_wait_ms)
}

/// Maps a unique violation on the name to [`StoreError::NameTaken`].
fn name_conflict(name: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::NameTaken(name.to_string())
        }
        _ => StoreError::Database(err),
    }
}

/// Stores a new cluster under `id`, with its first probe.
pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    settings: &ClusterSettings,
    probe: &ProbeReport,
) -> Result<ClusterRecord, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        bind_settings(
            sqlx::query(include_str!("queries/cluster_insert.sql")),
            id,
            settings,
        )
        .execute(&mut *tx)
        .await
        .map_err(name_conflict(&settings.name))?;
        record_probe_in(&mut tx, id, probe).await?;
        Ok(())
    }
    .await;
    finish(tx, "register cluster", result).await?;
    get(pool, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("cluster {id} vanished after insert")))
}

/// The cluster `id`, if it exists.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<ClusterRecord>, StoreError> {
    sqlx::query_as::<_, ClusterRow>("SELECT * FROM clusters WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(ClusterRecord::try_from)
        .transpose()
}

/// Whether `name` belongs to a cluster other than `except`.
pub async fn name_taken(
    pool: &PgPool,
    name: &str,
    except: Option<Uuid>,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM clusters WHERE name = $1 AND id IS DISTINCT FROM $2)",
    )
    .bind(name)
    .bind(except)
    .fetch_one(pool)
    .await?)
}

/// Up to `limit` clusters matching `filter`, ordered by name, after the
/// name `after`.
pub async fn list(
    pool: &PgPool,
    filter: &ClusterFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ClusterRecord>, StoreError> {
    let name_contains = (!filter.name_contains.is_empty()).then_some(&filter.name_contains);
    let labels = (!filter.labels.is_empty()).then_some(Json(&filter.labels));
    sqlx::query_as::<_, ClusterRow>(include_str!("queries/cluster_list.sql"))
        .bind(after)
        .bind(name_contains)
        .bind(filter.distribution.map(Distribution::as_str))
        .bind(labels)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(ClusterRecord::try_from)
        .collect()
}

/// Replaces the settings of cluster `id` if it was not changed since
/// `read_at` (its `updated_at` when read), recording `probe` with them.
/// Returns `None` when the cluster is gone or was changed meanwhile.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    read_at: DateTime<Utc>,
    settings: &ClusterSettings,
    probe: Option<&ProbeReport>,
) -> Result<Option<ClusterRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        let done = bind_settings(
            sqlx::query(include_str!("queries/cluster_update_settings.sql")),
            id,
            settings,
        )
        .bind(read_at)
        .execute(&mut *tx)
        .await
        .map_err(name_conflict(&settings.name))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(probe) = probe {
            record_probe_in(&mut tx, id, probe).await?;
        }
        Ok(true)
    }
    .await;
    let changed = finish(tx, "update cluster", result).await?;
    if !changed {
        return Ok(None);
    }
    get(pool, id).await
}

/// Stores `probe` as the latest probe of cluster `id`. False when the
/// cluster does not exist.
pub async fn record_probe(
    pool: &PgPool,
    id: Uuid,
    probe: &ProbeReport,
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    record_probe_in(&mut conn, id, probe).await
}

async fn record_probe_in(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    probe: &ProbeReport,
) -> Result<bool, StoreError> {
    // Identity facts only from a successful probe (see the query).
    let version = probe.version.as_ref().filter(|_| probe.ok());
    let uuid = Some(&probe.cluster_uuid).filter(|u| probe.ok() && !u.is_empty());
    let done = sqlx::query(include_str!("queries/cluster_record_probe.sql"))
        .bind(id)
        .bind(version.map(|v| v.distribution.as_str()))
        .bind(version.map(|v| v.number.as_str()))
        .bind(uuid)
        .bind(probe.health.map(|h| h.as_str()))
        .bind(i32::try_from(probe.number_of_nodes).unwrap_or(i32::MAX))
        .bind(probe.probed_at)
        .bind(Json(probe))
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes cluster `id`. False when it did not exist.
/// What still refers to the cluster `id`: the names of its replication
/// tasks (any state) and of its unfinished jobs.
pub async fn users(pool: &PgPool, id: Uuid) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let tasks: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM replication_tasks \
         WHERE primary_cluster_id = $1 OR backup_cluster_id = $1 ORDER BY name",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let jobs: Vec<String> = sqlx::query_scalar(
        "SELECT name || ' (' || kind || ' job ' || id || ')' FROM jobs \
         WHERE $1 = ANY(cluster_ids) AND state NOT IN ('succeeded', 'failed', 'cancelled') \
         ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok((tasks, jobs))
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM clusters WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
