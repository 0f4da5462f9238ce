//! Gateway commands through the Postgres outbox (see the [`crate::fleet`]
//! module documentation and `migrations/0005_commands_and_dead_letters.sql`).
//!
//! - [`execute`] stores a command and waits for its result: woken by the
//!   replica that stores the result (a notification on
//!   `tandem_command_results`), or by its own check of the outbox every
//!   [`RESULT_POLL`] in case a notification was missed. A caller that gives
//!   up expires the command, so it never runs after the caller was told it
//!   failed.
//! - Commands stored by others (dead-letter retries and skips, stored with
//!   the dead letters' new state in one transaction, see
//!   [`crate::store::dead_letters::request`]) are sent by [`dispatch`] at
//!   once when the gateway's stream is held here, else by the replica
//!   holding it, else when the gateway reconnects.
//! - [`spawn`] runs, on every replica, the listener that sends the commands of
//!   the gateways held here as soon as they are stored, and a sweep that
//!   catches up on missed notifications and expires overdue commands.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tandem_proto::v1 as pb;
use tandem_proto::v1::command_result::Detail;
use tandem_proto::v1::gateway_command::Command;
use uuid::Uuid;

use super::{Fleet, FleetError};
use crate::store::commands::{self as store, NewCommand, Outcome};
use crate::store::dead_letters::{self, Action};
use tandem_proto::time::timestamp;

/// How often a waiting caller checks the outbox itself.
const RESULT_POLL: Duration = Duration::from_secs(1);

/// Pause between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Longest pause before the listener connects again after a failure.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(10);

/// Short name of a command, as stored in the outbox.
pub fn kind(command: &Command) -> &'static str {
    match command {
        Command::PeekRecords(_) => "peek_records",
        Command::RepairQueue(_) => "repair_queue",
        Command::RetryDeadLetters(_) => "retry_dead_letters",
        Command::SkipDeadLetters(_) => "skip_dead_letters",
        Command::FetchDeadLetters(_) => "fetch_dead_letters",
        Command::ReconcileDocuments(_) => "reconcile_documents",
    }
}

/// A new `GatewayCommand` with id `id`, issued now and expiring at
/// `expires_at` (the gateway refuses it after that).
pub fn envelope(id: Uuid, command: Command, expires_at: DateTime<Utc>) -> pb::GatewayCommand {
    pb::GatewayCommand {
        command_id: id.to_string(),
        issued_at: Some(timestamp(Utc::now())),
        expires_at: Some(timestamp(expires_at)),
        command: Some(command),
    }
}

pub(crate) fn deadline(after: Duration) -> DateTime<Utc> {
    let now = Utc::now();
    chrono::TimeDelta::from_std(after)
        .ok()
        .and_then(|span| now.checked_add_signed(span))
        .unwrap_or(now)
}

fn database(err: impl std::fmt::Display) -> FleetError {
    FleetError::Database(err.to_string())
}

/// Sends `command` about `task_id` to `gateway_id`, wherever its stream
/// is held, and waits up to `timeout` for the result.
pub async fn execute(
    pool: &PgPool,
    fleet: &Fleet,
    gateway_id: &str,
    task_id: &str,
    command: Command,
    timeout: Duration,
) -> Result<pb::CommandResult, FleetError> {
    let id = Uuid::new_v4();
    let kind = kind(&command);
    let envelope = envelope(id, command, deadline(timeout));
    let mut waiter = fleet.await_result(&envelope.command_id);
    let new = NewCommand {
        id,
        gateway_id,
        kind,
        task_id,
        command: &envelope,
        expires_at: deadline(timeout),
    };
    store::insert(pool, &new).await.map_err(database)?;
    if fleet.connection_id(gateway_id).is_some() {
        dispatch(pool, fleet, gateway_id).await;
    }
    let give_up = tokio::time::Instant::now() + timeout;
    let mut poll = tokio::time::interval(RESULT_POLL);
    poll.tick().await;
    loop {
        tokio::select! {
            result = waiter.receiver() => {
                if let Ok(result) = result {
                    return Ok(result);
                }
            }
            _ = poll.tick() => {
                if let Ok(Outcome::Answered(result)) = store::outcome(pool, id).await {
                    return Ok(*result);
                }
            }
            _ = tokio::time::sleep_until(give_up) => break,
        }
    }
    // Too late: make sure it never runs, unless it was answered meanwhile.
    match store::expire(pool, id).await {
        Ok(Outcome::Answered(result)) => Ok(*result),
        _ => {
            fleet.metrics().command_finished(kind, "expired");
            Err(FleetError::Timeout {
                gateway_id: gateway_id.to_string(),
                command_id: id.to_string(),
                timeout,
            })
        }
    }
}

/// Claims and sends the stored commands of `gateway_id` if its stream is
/// held here. Failures are logged: the sweep tries again.
pub(crate) async fn dispatch(pool: &PgPool, fleet: &Fleet, gateway_id: &str) {
    let Some(connection_id) = fleet.connection_id(gateway_id) else {
        return;
    };
    let claimed = match store::claim(pool, gateway_id, connection_id).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(gateway_id, error = %err, "cannot claim gateway commands; retrying at the next sweep");
            return;
        }
    };
    for claimed in claimed {
        let command_id = claimed.command.command_id.clone();
        if let Err(err) = fleet.deliver(gateway_id, claimed.command).await {
            // Still `sent` on this stream: the gateway's next stream gets it.
            tracing::info!(gateway_id, command_id = %command_id, error = %err, "command not delivered; it is sent again when the gateway reconnects");
            return;
        }
        tracing::debug!(gateway_id, command_id = %command_id, "command sent");
    }
}

/// Handles a `CommandResult` received from `gateway_id`: stores it (waking
/// callers on every replica), applies dead-letter outcomes, and hands it to
/// a caller waiting on this process.
pub(crate) async fn on_result(
    pool: &PgPool,
    fleet: &Fleet,
    gateway_id: &str,
    result: pb::CommandResult,
) {
    match store::finish(pool, gateway_id, &result).await {
        Ok(Some(finished)) => {
            fleet
                .metrics()
                .command_finished(&finished.kind, finished.outcome);
            let action = match finished.kind.as_str() {
                "retry_dead_letters" => Some(Action::Retry),
                "skip_dead_letters" => Some(Action::Skip),
                _ => None,
            };
            if let Some(action) = action {
                apply_dead_letter_result(pool, gateway_id, &finished.task_id, action, &result)
                    .await;
            }
        }
        Ok(None) => {
            tracing::debug!(gateway_id, command_id = %result.command_id, "result of a command already finished or unknown");
        }
        Err(err) => {
            tracing::warn!(gateway_id, command_id = %result.command_id, error = %err, "cannot store a command result");
        }
    }
    fleet.complete(result);
}

async fn apply_dead_letter_result(
    pool: &PgPool,
    gateway_id: &str,
    task_id: &str,
    action: Action,
    result: &pb::CommandResult,
) {
    let applied = match (
        pb::CommandOutcome::try_from(result.outcome).unwrap_or_default(),
        &result.detail,
    ) {
        (pb::CommandOutcome::Succeeded, Some(Detail::DeadLetters(detail))) => {
            dead_letters::apply_result(pool, task_id, gateway_id, action, detail).await
        }
        // Refused or failed as a whole: the dead letters wait for a new
        // decision.
        _ => match Uuid::parse_str(&result.command_id) {
            Ok(id) => dead_letters::release(pool, &[id]).await.map(|_| ()),
            Err(_) => Ok(()),
        },
    };
    if let Err(err) = applied {
        tracing::warn!(gateway_id, task_id, command_id = %result.command_id, error = %err, "cannot apply a dead-letter command result");
    }
}

/// Runs the notification listener and the sweep until the fleet shuts
/// down.
pub fn spawn(pool: PgPool, fleet: Fleet) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = listen(&pool, &fleet) => {}
            _ = sweep(&pool, &fleet) => {}
            _ = fleet.shutting_down() => {}
        }
    })
}

async fn listen(pool: &PgPool, fleet: &Fleet) {
    let mut failures: u32 = 0;
    loop {
        if let Err(err) = listen_once(pool, fleet).await {
            failures += 1;
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(error = %err, failures, "command notifications lost; the sweep covers them until the listener reconnects");
            }
        }
        let backoff = (Duration::from_millis(250) * failures.min(40)).min(MAX_LISTEN_BACKOFF);
        tokio::time::sleep(backoff.max(Duration::from_millis(100))).await;
    }
}

async fn listen_once(pool: &PgPool, fleet: &Fleet) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([store::COMMANDS_CHANNEL, store::RESULTS_CHANNEL])
        .await?;
    // Whatever was stored while the listener was away.
    catch_up(pool, fleet).await;
    loop {
        let notification = listener.recv().await?;
        let payload = notification.payload();
        if notification.channel() == store::COMMANDS_CHANNEL {
            if fleet.connection_id(payload).is_some() {
                dispatch(pool, fleet, payload).await;
            }
        } else if fleet.awaits(payload)
            && let Ok(id) = Uuid::parse_str(payload)
            && let Ok(Outcome::Answered(result)) = store::outcome(pool, id).await
        {
            fleet.complete(*result);
        }
    }
}

async fn sweep(pool: &PgPool, fleet: &Fleet) {
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store::sweep(pool).await {
            Ok(expired) if !expired.is_empty() => {
                for (_, kind) in &expired {
                    fleet.metrics().command_finished(kind, "expired");
                }
                let expired: Vec<Uuid> = expired.into_iter().map(|(id, _)| id).collect();
                tracing::info!(
                    commands = expired.len(),
                    "gateway commands expired before their gateway answered"
                );
                if let Err(err) = dead_letters::release(pool, &expired).await {
                    tracing::warn!(error = %err, "cannot release the dead letters of expired commands");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "command sweep failed; retrying"),
        }
        catch_up(pool, fleet).await;
    }
}

/// Sends the open commands of every gateway held here.
async fn catch_up(pool: &PgPool, fleet: &Fleet) {
    match store::gateways_with_work(pool, fleet.instance_id()).await {
        Ok(gateways) => {
            for gateway_id in gateways {
                dispatch(pool, fleet, &gateway_id).await;
            }
        }
        Err(err) => tracing::debug!(error = %err, "cannot look for gateway commands; retrying"),
    }
}
