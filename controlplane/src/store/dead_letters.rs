//! Dead letters (table `dead_letters`): what the gateways report in their
//! `DeadLetterReport`s, and the operators' retry / skip requests with the
//! commands that carry them.
//!
//! The gateway numbers its dead letters per task (`local_id`); the API id
//! is `<gateway id>/<local id>` ([`public_id`]), unique within a task since
//! gateway ids never contain `/`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::PgPool;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::StoreError;
use super::commands::{self, NewCommand};
use tandem_proto::time::timestamp;

/// The API id of the dead letter `local_id` held by `gateway_id`.
pub fn public_id(gateway_id: &str, local_id: i64) -> String {
    format!("{gateway_id}/{local_id}")
}

/// Splits an API id into gateway id and local id; `None` when malformed.
pub fn parse_public_id(id: &str) -> Option<(&str, i64)> {
    let (gateway, local) = id.rsplit_once('/')?;
    let local: i64 = local.parse().ok().filter(|n| *n >= 0)?;
    (!gateway.is_empty()).then_some((gateway, local))
}

/// Database name of a state.
pub fn state_name(state: pb::DeadLetterState) -> Option<&'static str> {
    Some(match state {
        pb::DeadLetterState::Unspecified => return None,
        pb::DeadLetterState::Pending => "pending",
        pb::DeadLetterState::RetryRequested => "retry_requested",
        pb::DeadLetterState::Retried => "retried",
        pb::DeadLetterState::SkipRequested => "skip_requested",
        pb::DeadLetterState::Skipped => "skipped",
    })
}

fn state_from_name(name: &str) -> pb::DeadLetterState {
    match name {
        "pending" => pb::DeadLetterState::Pending,
        "retry_requested" => pb::DeadLetterState::RetryRequested,
        "retried" => pb::DeadLetterState::Retried,
        "skip_requested" => pb::DeadLetterState::SkipRequested,
        "skipped" => pb::DeadLetterState::Skipped,
        _ => pb::DeadLetterState::Unspecified,
    }
}

/// Stores the dead letters a gateway reported (new ones, or ones whose
/// replay failed again). A reported dead letter is PENDING again unless a
/// retry or skip is in flight. Entries with a malformed id are skipped and
/// counted in the result.
pub async fn record_report(
    pool: &PgPool,
    gateway_id: &str,
    reported: &[pb::DeadLetter],
) -> Result<usize, StoreError> {
    let mut malformed = 0;
    let mut tx = pool.begin().await?;
    let result = async {
        for entry in reported {
            let Ok(local_id) = entry.id.parse::<i64>() else {
                malformed += 1;
                continue;
            };
            let created_at = entry
                .created_at
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
                .unwrap_or_else(Utc::now);
            let index = entry
                .record
                .as_ref()
                .map(|r| r.index.as_str())
                .unwrap_or("");
            sqlx::query(include_str!("queries/dead_letter_report.sql"))
                .bind(&entry.task_id)
                .bind(gateway_id)
                .bind(local_id)
                .bind(index)
                .bind(without_body(entry).encode_to_vec())
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
        }
        Ok(malformed)
    }
    .await;
    super::finish(tx, "store dead-letter report", result).await
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Task (required).
    pub task_id: String,
    /// Only this gateway's.
    pub gateway_id: Option<String>,
    /// Only these states (database names); never empty.
    pub states: Vec<&'static str>,
    /// Only this index's.
    pub index: Option<String>,
}

/// Sort key of a listing: newest first.
pub type Key = (DateTime<Utc>, String, i64);

/// One page of dead letters matching `filter` after `after`, at most
/// `limit`, and the total number matching.
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    after: Option<&Key>,
    limit: i64,
) -> Result<(Vec<(Key, pb::DeadLetter)>, u64), StoreError> {
    type Row = (
        String,
        i64,
        String,
        Vec<u8>,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(include_str!("queries/dead_letter_list.sql"))
        .bind(&filter.task_id)
        .bind(filter.gateway_id.as_deref())
        .bind(&filter.states)
        .bind(filter.index.as_deref())
        .bind(after.map(|k| k.0))
        .bind(after.map(|k| k.1.as_str()))
        .bind(after.map(|k| k.2))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let (total,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM dead_letters WHERE task_id = $1 \
         AND ($2::text IS NULL OR gateway_id = $2) AND state = ANY($3) \
         AND ($4::text IS NULL OR index_name = $4)",
    )
    .bind(&filter.task_id)
    .bind(filter.gateway_id.as_deref())
    .bind(&filter.states)
    .bind(filter.index.as_deref())
    .fetch_one(pool)
    .await?;
    let page = rows
        .into_iter()
        .map(
            |(gateway_id, local_id, state, bytes, comment, created_at, updated_at)| {
                let mut entry = pb::DeadLetter::decode(bytes.as_slice())
                    .map_err(|e| StoreError::Corrupt(format!("stored dead letter: {e}")))?;
                entry.id = public_id(&gateway_id, local_id);
                entry.task_id = filter.task_id.clone();
                entry.gateway_id = gateway_id.clone();
                entry.state = state_from_name(&state) as i32;
                entry.comment = comment;
                entry.created_at = Some(timestamp(created_at));
                entry.updated_at = Some(timestamp(updated_at));
                Ok(((created_at, gateway_id, local_id), entry))
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((page, u64::try_from(total).unwrap_or(0)))
}

/// Which dead letters a retry or skip request is about.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These (gateway id, local id) pairs.
    Ids(Vec<(String, i64)>),
    /// Every PENDING one of the task, or of one gateway.
    All {
        /// Only this gateway's.
        gateway_id: Option<String>,
    },
}

/// A retry or a skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replay again.
    Retry,
    /// Abandon.
    Skip,
}

impl Action {
    fn requested_state(self) -> &'static str {
        match self {
            Action::Retry => "retry_requested",
            Action::Skip => "skip_requested",
        }
    }

    fn resolved_state(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Skip => "skipped",
        }
    }

    /// Command kind in the outbox.
    pub fn kind(self) -> &'static str {
        match self {
            Action::Retry => "retry_dead_letters",
            Action::Skip => "skip_dead_letters",
        }
    }
}

/// A command carrying part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// Gateway holding the dead letters.
    pub gateway_id: String,
    /// Command sent to it.
    pub command_id: Uuid,
    /// Dead letters it covers.
    pub count: u32,
}

/// Moves the PENDING dead letters of `selection` to the requested state of
/// `action` and queues one command per gateway holding them (built by
/// `command` from the gateway id, command id and local ids), all in one
/// transaction. Returns the commands.
pub async fn request(
    pool: &PgPool,
    task_id: &str,
    selection: &Selection,
    action: Action,
    comment: &str,
    expires_at: DateTime<Utc>,
    command: impl Fn(&str, Uuid, &[i64]) -> pb::GatewayCommand,
) -> Result<Vec<Dispatch>, StoreError> {
    let (pairs_gateways, pairs_locals, all, only_gateway) = match selection {
        Selection::Ids(pairs) => (
            pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
            false,
            None,
        ),
        Selection::All { gateway_id } => (Vec::new(), Vec::new(), true, gateway_id.clone()),
    };
    let mut tx = pool.begin().await?;
    let result = async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(include_str!("queries/dead_letter_request.sql"))
                .bind(task_id)
                .bind(action.requested_state())
                .bind(comment)
                .bind(all)
                .bind(only_gateway.as_deref())
                .bind(&pairs_gateways)
                .bind(&pairs_locals)
                .fetch_all(&mut *tx)
                .await?;
        let mut by_gateway: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (gateway, local) in rows {
            by_gateway.entry(gateway).or_default().push(local);
        }
        let mut dispatches = Vec::new();
        for (gateway_id, mut locals) in by_gateway {
            locals.sort_unstable();
            let id = Uuid::new_v4();
            let built = command(&gateway_id, id, &locals);
            commands::insert_in(
                &mut tx,
                &NewCommand {
                    id,
                    gateway_id: &gateway_id,
                    kind: action.kind(),
                    task_id,
                    command: &built,
                    expires_at,
                },
            )
            .await?;
            sqlx::query(
                "UPDATE dead_letters SET command_id = $4 \
                 WHERE task_id = $1 AND gateway_id = $2 AND local_id = ANY($3)",
            )
            .bind(task_id)
            .bind(&gateway_id)
            .bind(&locals)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            dispatches.push(Dispatch {
                gateway_id,
                command_id: id,
                count: u32::try_from(locals.len()).unwrap_or(u32::MAX),
            });
        }
        Ok(dispatches)
    }
    .await;
    super::finish(tx, "request dead-letter action", result).await
}

/// Applies a gateway's answer to a retry or skip command: each dead letter
/// takes the state the gateway reports (RETRIED, SKIPPED, or PENDING again
/// with its new failure); ids the gateway no longer holds were resolved on
/// the gateway directly and take the resolved state of `action`.
pub async fn apply_result(
    pool: &PgPool,
    task_id: &str,
    gateway_id: &str,
    action: Action,
    detail: &pb::DeadLetterCommandResult,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        for entry in &detail.dead_letters {
            let Ok(local_id) = entry.id.parse::<i64>() else {
                continue;
            };
            let state = pb::DeadLetterState::try_from(entry.state)
                .ok()
                .and_then(state_name)
                .unwrap_or("pending");
            sqlx::query(
                "UPDATE dead_letters SET state = $4, dead_letter = $5, updated_at = now(), \
                 command_id = NULL WHERE task_id = $1 AND gateway_id = $2 AND local_id = $3",
            )
            .bind(task_id)
            .bind(gateway_id)
            .bind(local_id)
            .bind(state)
            .bind(without_body(entry).encode_to_vec())
            .execute(&mut *tx)
            .await?;
        }
        let unknown: Vec<i64> = detail
            .unknown_ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        if !unknown.is_empty() {
            sqlx::query(
                "UPDATE dead_letters SET state = $4, updated_at = now(), command_id = NULL, \
                 comment = comment || ' (no longer held by the gateway: resolved there directly)' \
                 WHERE task_id = $1 AND gateway_id = $2 AND local_id = ANY($3) AND state = $5",
            )
            .bind(task_id)
            .bind(gateway_id)
            .bind(&unknown)
            .bind(action.resolved_state())
            .bind(action.requested_state())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
    .await;
    super::finish(tx, "apply dead-letter command result", result).await
}

/// Puts back to PENDING the dead letters whose retry or skip command
/// expired before the gateway answered (or was refused by it).
pub async fn release(pool: &PgPool, command_ids: &[Uuid]) -> Result<u64, StoreError> {
    if command_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE dead_letters SET state = 'pending', command_id = NULL, updated_at = now() \
         WHERE command_id = ANY($1) AND state IN ('retry_requested', 'skip_requested')",
    )
    .bind(command_ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// `entry` without its record body (bodies are never stored).
fn without_body(entry: &pb::DeadLetter) -> pb::DeadLetter {
    let mut entry = entry.clone();
    if let Some(record) = entry.record.as_mut() {
        record.body.clear();
        record.body_redacted = true;
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_round_trip_and_reject_malformed_ones() {
        let id = public_id("gw-1.zone:7", 42);
        assert_eq!(parse_public_id(&id), Some(("gw-1.zone:7", 42)));
        for bad in ["", "42", "/42", "gw/", "gw/x", "gw/-1"] {
            assert_eq!(parse_public_id(bad), None, "{bad:?}");
        }
    }
}
