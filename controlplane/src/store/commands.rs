//! The outbox of gateway commands (table `gateway_commands`, see migration
//! 0005 for the life of a row).
//!
//! Commands and results are stored protobuf-encoded: they are
//! `tandem.v1.GatewayCommand` / `CommandResult` messages and nothing but the
//! control plane reads them.

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgPool;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::StoreError;

/// Channel woken when a gateway has a new command (payload: gateway id).
pub const COMMANDS_CHANNEL: &str = "tandem_gateway_commands";
/// Channel woken when a command has its result (payload: command id).
pub const RESULTS_CHANNEL: &str = "tandem_command_results";

/// Finished commands are kept this long (for audit), then deleted.
const RETENTION: &str = "7 days";

/// A command to store.
#[derive(Debug)]
pub struct NewCommand<'a> {
    /// Its id (also `command.command_id`).
    pub id: Uuid,
    /// Gateway it is for.
    pub gateway_id: &'a str,
    /// Short name of the command, e.g. `peek_records`.
    pub kind: &'a str,
    /// Task it is about.
    pub task_id: &'a str,
    /// The command itself.
    pub command: &'a pb::GatewayCommand,
    /// Never sent after this instant.
    pub expires_at: DateTime<Utc>,
}

/// A command claimed for sending.
#[derive(Debug)]
pub struct Claimed {
    /// When it was created (commands are sent in this order).
    pub created_at: DateTime<Utc>,
    /// The command.
    pub command: pb::GatewayCommand,
}

/// Where a command stands, as far as its caller cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not answered yet.
    Open,
    /// Answered by the gateway.
    Answered(Box<pb::CommandResult>),
    /// Expired before it was answered.
    Expired,
}

/// A command whose result was just stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its kind.
    pub kind: String,
    /// Its final state: `succeeded`, `failed` or `rejected`.
    pub outcome: &'static str,
    /// Its task.
    pub task_id: String,
}

/// Stores `new` as pending and wakes the replicas.
pub async fn insert(pool: &PgPool, new: &NewCommand<'_>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let result = insert_in(&mut tx, new).await;
    super::finish(tx, "insert gateway command", result).await
}

/// [`insert`] within the transaction `tx` (the replicas wake on commit).
pub async fn insert_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    new: &NewCommand<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO gateway_commands (command_id, gateway_id, kind, task_id, command, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new.id)
    .bind(new.gateway_id)
    .bind(new.kind)
    .bind(new.task_id)
    .bind(new.command.encode_to_vec())
    .bind(new.expires_at)
    .execute(&mut **tx)
    .await?;
    notify(tx, COMMANDS_CHANNEL, new.gateway_id).await
}

/// Claims the commands `gateway_id` should get on its stream
/// `connection_id`: pending ones, and those sent on an earlier stream that
/// broke before the answer. Only the stream owning the gateway row may
/// claim. Oldest first.
pub async fn claim(
    pool: &PgPool,
    gateway_id: &str,
    connection_id: Uuid,
) -> Result<Vec<Claimed>, StoreError> {
    let rows: Vec<(DateTime<Utc>, Vec<u8>)> =
        sqlx::query_as(include_str!("queries/command_claim.sql"))
            .bind(gateway_id)
            .bind(connection_id)
            .fetch_all(pool)
            .await?;
    let mut claimed = rows
        .into_iter()
        .map(|(created_at, bytes)| {
            let command = pb::GatewayCommand::decode(bytes.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("stored gateway command: {e}")))?;
            Ok(Claimed {
                created_at,
                command,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by_key(|c| c.created_at);
    Ok(claimed)
}

/// Stores the result of an open command from `gateway_id` and wakes the
/// replicas. `None` when the command is unknown, not this gateway's, or
/// already finished (a repeated answer).
pub async fn finish(
    pool: &PgPool,
    gateway_id: &str,
    result: &pb::CommandResult,
) -> Result<Option<Finished>, StoreError> {
    let Ok(id) = Uuid::parse_str(&result.command_id) else {
        return Ok(None);
    };
    let state = match pb::CommandOutcome::try_from(result.outcome).unwrap_or_default() {
        pb::CommandOutcome::Succeeded => "succeeded",
        pb::CommandOutcome::Rejected => "rejected",
        pb::CommandOutcome::Failed | pb::CommandOutcome::Unspecified => "failed",
    };
    let mut tx = pool.begin().await?;
    let outcome = async {
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE gateway_commands SET state = $3, result = $4, finished_at = now() \
             WHERE command_id = $1 AND gateway_id = $2 AND state IN ('pending', 'sent') \
             RETURNING kind, task_id",
        )
        .bind(id)
        .bind(gateway_id)
        .bind(state)
        .bind(result.encode_to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            notify(&mut tx, RESULTS_CHANNEL, &result.command_id).await?;
        }
        Ok(row.map(|(kind, task_id)| Finished {
            kind,
            outcome: state,
            task_id,
        }))
    }
    .await;
    super::finish(tx, "store command result", outcome).await
}

/// Where the command `id` stands.
pub async fn outcome(pool: &PgPool, id: Uuid) -> Result<Outcome, StoreError> {
    let row: Option<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT state, result FROM gateway_commands WHERE command_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Ok(Outcome::Expired),
        Some((state, _)) if state == "expired" => Ok(Outcome::Expired),
        Some((_, None)) => Ok(Outcome::Open),
        Some((_, Some(bytes))) => pb::CommandResult::decode(bytes.as_slice())
            .map(|r| Outcome::Answered(Box::new(r)))
            .map_err(|e| StoreError::Corrupt(format!("stored command result: {e}"))),
    }
}

/// Marks the command `id` expired unless it was answered meanwhile (its
/// caller gave up: it must not run later). Returns its outcome.
pub async fn expire(pool: &PgPool, id: Uuid) -> Result<Outcome, StoreError> {
    sqlx::query(
        "UPDATE gateway_commands SET state = 'expired', finished_at = now() \
         WHERE command_id = $1 AND state IN ('pending', 'sent')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    outcome(pool, id).await
}

/// Expires the open commands past their deadline and forgets the finished
/// ones older than the retention. Returns the ids and kinds of the expired
/// commands.
pub async fn sweep(pool: &PgPool) -> Result<Vec<(Uuid, String)>, StoreError> {
    let expired: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE gateway_commands SET state = 'expired', finished_at = now() \
         WHERE state IN ('pending', 'sent') AND expires_at <= now() RETURNING command_id, kind",
    )
    .fetch_all(pool)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM gateway_commands WHERE finished_at < now() - interval '{RETENTION}'"
    ))
    .execute(pool)
    .await?;
    Ok(expired)
}

/// Gateways held by the replica `instance_id` that have commands to claim.
pub async fn gateways_with_work(
    pool: &PgPool,
    instance_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT c.gateway_id FROM gateway_commands c \
         JOIN gateways g ON g.id = c.gateway_id \
         WHERE g.connected_to = $1 AND c.expires_at > now() \
           AND (c.state = 'pending' \
                OR (c.state = 'sent' AND c.sent_connection IS DISTINCT FROM g.connection_id))",
    )
    .bind(instance_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

async fn notify(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    channel: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
