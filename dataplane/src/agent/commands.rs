//! Executing checked commands against the gateway's replication. Each
//! function answers exactly one `CommandResult`; the mapping to the
//! contract lives in [`super::protocol`].

use std::sync::Arc;
use std::time::SystemTime;

use tandem_proto::codes;
use tandem_proto::v1 as pb;

use super::protocol::{
    Bodies, CommandKind, DeadLetterContext, dead_letter, failed, parse_dead_letter_ids,
    peek_result, rejected, repair_result, succeeded,
};
use crate::replication::Replication;

/// Who the results are about.
#[derive(Debug, Clone)]
pub struct Context {
    /// The command's id.
    pub command_id: String,
    /// The gateway's task id.
    pub task_id: String,
    /// The gateway's id.
    pub gateway_id: String,
}

/// Runs `kind` and returns its result.
pub async fn execute(
    replication: Arc<Replication>,
    kind: CommandKind,
    ctx: &Context,
) -> pb::CommandResult {
    match kind {
        CommandKind::Retry(c) => retry(&replication, &c, ctx).await,
        CommandKind::Skip(c) => skip(&replication, &c, ctx),
        CommandKind::Fetch(c) => fetch(&replication, &c, ctx),
        CommandKind::Repair(c) => repair(replication, &c, ctx).await,
        CommandKind::Reconcile(c) => reconcile(&replication, &c, ctx).await,
        CommandKind::Peek(c) => {
            // Reads segment files: keep it off the runtime's threads.
            let ctx = ctx.clone();
            let command_id = ctx.command_id.clone();
            tokio::task::spawn_blocking(move || peek(&replication, &c, &ctx))
                .await
                .unwrap_or_else(|err| {
                    failed(
                        &command_id,
                        codes::PEEK_FAILED,
                        &err.to_string(),
                        SystemTime::now(),
                    )
                })
        }
    }
}

/// Most records one peek returns.
const MAX_PEEK_RECORDS: usize = 1000;

fn peek(
    replication: &Replication,
    command: &pb::PeekRecordsCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let limit = match command.max_records as usize {
        0 => 20,
        n => n.min(MAX_PEEK_RECORDS),
    };
    let bodies = if command.include_bodies {
        Bodies::for_fetch(command.max_body_bytes)
    } else {
        Bodies::Redacted
    };
    match replication.peek(command.start_offset, limit) {
        Ok(peeked) => succeeded(
            &ctx.command_id,
            Some(pb::command_result::Detail::Peek(peek_result(
                &peeked, bodies,
            ))),
            SystemTime::now(),
        ),
        Err(err) => failed(
            &ctx.command_id,
            codes::PEEK_FAILED,
            &format!("{err}"),
            SystemTime::now(),
        ),
    }
}

fn detail(
    dead_letters: Vec<pb::DeadLetter>,
    unknown_ids: Vec<String>,
) -> Option<pb::command_result::Detail> {
    Some(pb::command_result::Detail::DeadLetters(
        pb::DeadLetterCommandResult {
            dead_letters,
            unknown_ids,
        },
    ))
}

/// Splits the requested ids into the entries the store holds and the ids
/// it does not know.
fn select(
    replication: &Replication,
    ids: &[String],
) -> (Vec<crate::dead_letters::DeadLetter>, Vec<String>) {
    let (numeric, mut unknown) = parse_dead_letter_ids(ids);
    let found = replication.dead_letters.select(Some(&numeric));
    for id in numeric {
        if !found.iter().any(|e| e.id == id) {
            unknown.push(id.to_string());
        }
    }
    (found, unknown)
}

async fn retry(
    replication: &Replication,
    command: &pb::RetryDeadLettersCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let (found, unknown) = select(replication, &command.dead_letter_ids);
    let dl_ctx = DeadLetterContext {
        task_id: &ctx.task_id,
        gateway_id: &ctx.gateway_id,
        comment: &command.comment,
    };
    if found.is_empty() {
        return succeeded(
            &ctx.command_id,
            detail(Vec::new(), unknown),
            SystemTime::now(),
        );
    }
    let ids: Vec<u64> = found.iter().map(|e| e.id).collect();
    if let Err(err) = replication.retry_dead_letters(Some(&ids)).await {
        return failed(
            &ctx.command_id,
            codes::RETRY_FAILED,
            &format!("{err:#}"),
            SystemTime::now(),
        );
    }
    // Applied entries left the store; the others failed again and carry
    // their new reason.
    let remaining = replication.dead_letters.select(Some(&ids));
    let dead_letters = found
        .iter()
        .map(
            |before| match remaining.iter().find(|e| e.id == before.id) {
                Some(after) => dead_letter(
                    after,
                    dl_ctx,
                    pb::DeadLetterState::Pending,
                    Bodies::Redacted,
                ),
                None => dead_letter(
                    before,
                    dl_ctx,
                    pb::DeadLetterState::Retried,
                    Bodies::Redacted,
                ),
            },
        )
        .collect();
    tracing::info!(
        command_id = %ctx.command_id,
        retried = ids.len(),
        still_failing = remaining.len(),
        "dead letters retried on the control plane's request"
    );
    succeeded(
        &ctx.command_id,
        detail(dead_letters, unknown),
        SystemTime::now(),
    )
}

/// Most documents one reconcile command may name.
const MAX_RECONCILE_DOCUMENTS: usize = 10_000;

async fn reconcile(
    replication: &Replication,
    command: &pb::ReconcileDocumentsCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let now = SystemTime::now;
    if command.documents.len() > MAX_RECONCILE_DOCUMENTS {
        return rejected(
            &ctx.command_id,
            codes::TOO_MANY_DOCUMENTS,
            &format!(
                "documents: {} given, at most {MAX_RECONCILE_DOCUMENTS} per command",
                command.documents.len()
            ),
            now(),
        );
    }
    let mut keys = Vec::with_capacity(command.documents.len());
    for (i, doc) in command.documents.iter().enumerate() {
        if doc.index.is_empty() || doc.id.is_empty() {
            return rejected(
                &ctx.command_id,
                codes::INVALID_DOCUMENT,
                &format!("documents[{i}]: index and id are required"),
                now(),
            );
        }
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
        keys.push(tandem_es::docstate::DocKey {
            index: doc.index.clone(),
            doc_type: optional(&doc.doc_type),
            id: doc.id.clone(),
            routing: optional(&doc.routing),
        });
    }
    match replication
        .reconcile_now(&keys, crate::replication::ReconcileCause::CompareRepair)
        .await
    {
        Ok(()) => {
            tracing::info!(
                command_id = %ctx.command_id,
                documents = keys.len(),
                "documents queued for reconciliation on the control plane's request"
            );
            succeeded(
                &ctx.command_id,
                Some(pb::command_result::Detail::Reconcile(
                    pb::ReconcileDocumentsResult {
                        queued: keys.len() as u64,
                    },
                )),
                now(),
            )
        }
        Err(err) => failed(
            &ctx.command_id,
            codes::QUEUE_FAILED,
            &err.to_string(),
            now(),
        ),
    }
}

fn skip(
    replication: &Replication,
    command: &pb::SkipDeadLettersCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let (found, unknown) = select(replication, &command.dead_letter_ids);
    let ids: Vec<u64> = found.iter().map(|e| e.id).collect();
    if !ids.is_empty() {
        if let Err(err) = replication.skip_dead_letters(Some(&ids)) {
            return failed(
                &ctx.command_id,
                codes::SKIP_FAILED,
                &format!("{err:#}"),
                SystemTime::now(),
            );
        }
        tracing::warn!(
            command_id = %ctx.command_id,
            ids = ?ids,
            comment = %command.comment,
            "dead letters skipped on the control plane's request"
        );
    }
    let dl_ctx = DeadLetterContext {
        task_id: &ctx.task_id,
        gateway_id: &ctx.gateway_id,
        comment: &command.comment,
    };
    let dead_letters = found
        .iter()
        .map(|e| dead_letter(e, dl_ctx, pb::DeadLetterState::Skipped, Bodies::Redacted))
        .collect();
    succeeded(
        &ctx.command_id,
        detail(dead_letters, unknown),
        SystemTime::now(),
    )
}

fn fetch(
    replication: &Replication,
    command: &pb::FetchDeadLettersCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let (found, unknown) = select(replication, &command.dead_letter_ids);
    let dl_ctx = DeadLetterContext {
        task_id: &ctx.task_id,
        gateway_id: &ctx.gateway_id,
        comment: "",
    };
    let bodies = Bodies::for_fetch(command.max_body_bytes);
    let dead_letters = found
        .iter()
        .map(|e| dead_letter(e, dl_ctx, pb::DeadLetterState::Pending, bodies))
        .collect();
    succeeded(
        &ctx.command_id,
        detail(dead_letters, unknown),
        SystemTime::now(),
    )
}

/// How a repair went, computed off the async threads.
enum RepairOutcome {
    /// No corruption blocks the replayer.
    NotBlocked(String),
    /// Blocked elsewhere than the command expected.
    WrongOffset(u64),
    /// The dry run or the repair.
    Done(crate::queue::RepairReport),
    /// The repair itself failed.
    Failed(String),
}

async fn repair(
    replication: Arc<Replication>,
    command: &pb::RepairQueueCommand,
    ctx: &Context,
) -> pb::CommandResult {
    let expected = command.expected_offset;
    let dry_run = command.dry_run;
    // Repairs scan segment files: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || {
        let probe = match replication.repair(true) {
            Ok(probe) => probe,
            Err(err) => return RepairOutcome::NotBlocked(err.to_string()),
        };
        if probe.first_lost_offset != expected {
            return RepairOutcome::WrongOffset(probe.first_lost_offset);
        }
        if dry_run {
            return RepairOutcome::Done(probe);
        }
        match replication.repair(false) {
            Ok(report) => RepairOutcome::Done(report),
            Err(err) => RepairOutcome::Failed(err.to_string()),
        }
    })
    .await
    .unwrap_or_else(|join| RepairOutcome::Failed(join.to_string()));
    let now = SystemTime::now();
    let id = &ctx.command_id;
    match outcome {
        RepairOutcome::NotBlocked(err) => rejected(
            id,
            codes::QUEUE_NOT_BLOCKED,
            &format!("nothing to repair: {err}"),
            now,
        ),
        RepairOutcome::WrongOffset(at) => rejected(
            id,
            codes::QUEUE_NOT_BLOCKED_AT_OFFSET,
            &format!("the queue is blocked at offset {at}, not at the expected {expected}"),
            now,
        ),
        RepairOutcome::Failed(err) => failed(id, codes::REPAIR_FAILED, &err, now),
        RepairOutcome::Done(report) => {
            if !report.dry_run {
                tracing::warn!(
                    command_id = %id,
                    comment = %command.comment,
                    first_lost = report.first_lost_offset,
                    records_lost = report.records_lost,
                    "queue repaired on the control plane's request"
                );
            }
            succeeded(
                id,
                Some(pb::command_result::Detail::Repair(repair_result(
                    &report, now,
                ))),
                now,
            )
        }
    }
}
