//! Postgres access: connection pool, schema migrations, and one module per
//! table family. Every SQL statement of the control plane lives under this
//! module; the rest of the crate calls these functions and runs no query
//! itself (the command listener in `fleet::commands` only subscribes, with
//! sqlx's `PgListener`, to the channels [`commands`] names).
//!
//! Migrations live in `controlplane/migrations/` and are embedded in the
//! binary; they are applied at start-up, under Postgres's advisory lock so
//! several control-plane replicas starting together do not race.
//!
//! Longer SQL lives in `queries/*.sql`, pulled in with `include_str!`. Row
//! structs (`#[derive(sqlx::FromRow)]`) stay private to their module, which
//! hands out plain domain types instead. Those records belong to the store:
//! modules above it (jobs, comparison, services) use or re-export them, so
//! the store imports none of them back.
//!
//! - [`clusters`]: the cluster registry.
//! - [`gateways`]: the gateway fleet (agent registrations, reports, drain
//!   requests, events).
//! - [`commands`]: the outbox of gateway commands.
//! - [`dead_letters`]: dead letters reported by the gateways, and the
//!   operators' retry / skip requests.
//! - [`tasks`]: replication tasks, their role swaps and events.
//! - [`jobs`]: migration and comparison jobs, their partitions (leases,
//!   checkpoints) and events; the lifecycle is in [`crate::jobs`].
//! - [`compare_diffs`]: document differences confirmed by comparison jobs.
//! - [`counts`]: fleet-wide counts read by the metrics scrape.

pub mod clusters;
pub mod commands;
pub mod compare_diffs;
pub mod counts;
pub mod dead_letters;
pub mod gateways;
pub mod jobs;
pub mod tasks;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is already used.
    #[error("name {0:?} is already taken")]
    NameTaken(String),
    /// A stored row violates what the code expects.
    #[error("inconsistent stored data: {0}")]
    Corrupt(String),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Ends a transaction after its work produced `result`: commits on `Ok`,
/// rolls back (and logs `what`) on `Err`.
///
/// ```text
/// let mut tx = pool.begin().await?;
/// let result = async { /* queries on &mut *tx */ }.await;
/// finish(tx, "register cluster", result).await
/// ```
pub async fn finish<T>(
    tx: Transaction<'static, Postgres>,
    what: &str,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            tracing::debug!(error = %err, "{what}: rolling back");
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "{what}: rollback failed");
            }
            Err(err)
        }
    }
}

/// The embedded schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects to Postgres, retrying with backoff for up to `wait` (the
/// database may still be starting), then applies pending migrations.
pub async fn connect_and_migrate(url: &str, wait: Duration) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    let pool = loop {
        match PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
        {
            Ok(pool) => break pool,
            Err(err) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %err, "Postgres not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot connect to Postgres at {}: {err}",
                    redact_url(url)
                ));
            }
        }
    };
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("applying database migrations: {e}"))?;
    Ok(pool)
}

/// `url` with any password replaced by `***`, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://tandem:s3cret@127.0.0.1:5432/tandem"),
            "postgres://tandem:***@127.0.0.1:5432/tandem"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/tandem"),
            "postgres://127.0.0.1/tandem"
        );
    }
}
