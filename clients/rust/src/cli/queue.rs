//! `tandemctl queue ...`: the gateways' replication queues (QueueService).

use clap::Subcommand;
use serde_json::{Value, json};
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::queue_service_client::QueueServiceClient;
use tandem_client::v1::{
    DeadLetter, DeadLetterState, DispatchedCommand, GetQueueStatsRequest, ListDeadLettersRequest,
    PeekRecordsRequest, QueueRecord, RepairQueueRequest, RetryDeadLettersRequest,
    SkipDeadLettersRequest,
};

use super::cluster::rpc_error;
use super::output::{self, Output, enum_name, next_page, print_json, print_table, time};

type Client = QueueServiceClient<AuthenticatedChannel>;

/// Queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue statistics as last reported by the gateways: fleet-wide, per
    /// task (with the per-gateway breakdown) and per gateway.
    Stats {
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this gateway (id).
        #[arg(long)]
        gateway: Option<String>,
    },
    /// Read queue records of one gateway without consuming them (bodies
    /// redacted unless --bodies; reading bodies is audited).
    Peek {
        /// Task id.
        #[arg(long)]
        task: String,
        /// Gateway id.
        #[arg(long)]
        gateway: String,
        /// First offset (default: the next record to replay).
        #[arg(long)]
        from: Option<u64>,
        /// Records at most.
        #[arg(long, default_value_t = 20)]
        max: u32,
        /// Include record bodies.
        #[arg(long)]
        bodies: bool,
    },
    /// List a task's dead letters (unresolved ones unless --state).
    DeadLetters {
        /// Task id.
        #[arg(long)]
        task: String,
        /// Only this gateway's.
        #[arg(long)]
        gateway: Option<String>,
        /// Only these states (pending, retry-requested, retried,
        /// skip-requested, skipped; repeatable).
        #[arg(long = "state")]
        states: Vec<String>,
        /// Page size (0: server default).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// Page token from a previous list.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Replay dead letters again (after fixing their cause).
    Retry {
        /// Task id.
        #[arg(long)]
        task: String,
        /// Dead-letter ids (`<gateway>/<n>`); or --all.
        ids: Vec<String>,
        /// Every pending dead letter of the task (or of --gateway).
        #[arg(long)]
        all: bool,
        /// With --all: only this gateway's.
        #[arg(long)]
        gateway: Option<String>,
        /// Note kept for audit.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Abandon dead letters: they are never replayed.
    Skip {
        /// Task id.
        #[arg(long)]
        task: String,
        /// Dead-letter ids (`<gateway>/<n>`); or --all.
        ids: Vec<String>,
        /// Every pending dead letter of the task (or of --gateway).
        #[arg(long)]
        all: bool,
        /// With --all: only this gateway's.
        #[arg(long)]
        gateway: Option<String>,
        /// Why they are abandoned (required; kept for audit).
        #[arg(long)]
        comment: String,
    },
    /// Skip the corrupt region a gateway's replay is halted on; --dry-run
    /// reports exactly what would be lost.
    Repair {
        /// Task id.
        #[arg(long)]
        task: String,
        /// Gateway id.
        #[arg(long)]
        gateway: String,
        /// Only report.
        #[arg(long)]
        dry_run: bool,
        /// Why the loss is accepted (required unless --dry-run).
        #[arg(long, default_value = "")]
        comment: String,
    },
}

fn state_value(text: &str) -> anyhow::Result<i32> {
    let name = format!(
        "DEAD_LETTER_STATE_{}",
        text.trim().to_ascii_uppercase().replace('-', "_")
    );
    DeadLetterState::from_str_name(&name)
        .map(|s| s as i32)
        .ok_or_else(|| anyhow::anyhow!("--state: unknown dead-letter state {text:?}"))
}

fn record_json(record: &QueueRecord) -> Value {
    json!({
        "offset": record.offset,
        "op": enum_name(record.op_kind().as_str_name().trim_start_matches("OP_KIND_")),
        "index": record.index,
        "id": record.doc_id,
        "version": record.version,
        "version_fenced": record.version_fenced,
        "method": record.http_method,
        "path": record.path,
        "size_bytes": record.size_bytes,
        "body": (!record.body.is_empty()).then(|| String::from_utf8_lossy(&record.body).to_string()),
        "body_redacted": record.body_redacted,
        "enqueued_at": time(record.enqueued_at.as_ref()),
    })
}

fn dead_letter_json(entry: &DeadLetter) -> Value {
    let failure = entry.failure.clone().unwrap_or_default();
    json!({
        "id": entry.id,
        "gateway": entry.gateway_id,
        "state": enum_name(entry.state().as_str_name().trim_start_matches("DEAD_LETTER_STATE_")),
        "record": entry.record.as_ref().map(record_json),
        "http_status": failure.http_status,
        "reason": failure.error_reason,
        "attempts": failure.attempts,
        "comment": entry.comment,
        "created_at": time(entry.created_at.as_ref()),
        "updated_at": time(entry.updated_at.as_ref()),
    })
}

fn print_dispatch(matched: u32, commands: &[DispatchedCommand], output: Output) {
    if output == Output::Json {
        print_json(&json!({
            "matched": matched,
            "commands": commands.iter().map(|c| json!({
                "gateway": c.gateway_id,
                "command_id": c.command_id,
                "dead_letters": c.dead_letter_count,
                "delivered": c.delivered,
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    println!("{matched} dead letter(s) matched");
    let rows: Vec<Vec<String>> = commands
        .iter()
        .map(|c| {
            vec![
                c.gateway_id.clone(),
                c.command_id.clone(),
                c.dead_letter_count.to_string(),
                if c.delivered {
                    "sent".into()
                } else {
                    "waits for the gateway".into()
                },
            ]
        })
        .collect();
    if !rows.is_empty() {
        print_table(&["GATEWAY", "COMMAND", "DEAD LETTERS", "DELIVERY"], &rows);
    }
}

/// Runs a queue command.
pub async fn run(mut client: Client, command: QueueCommand, output: Output) -> anyhow::Result<()> {
    match command {
        QueueCommand::Stats { task, gateway } => {
            let stats = client
                .get_queue_stats(GetQueueStatsRequest {
                    task_id: task.unwrap_or_default(),
                    gateway_id: gateway.unwrap_or_default(),
                })
                .await
                .map_err(|s| rpc_error("GetQueueStats", s))?
                .into_inner();
            output::queue_stats(&stats, output);
        }
        QueueCommand::Peek {
            task,
            gateway,
            from,
            max,
            bodies,
        } => {
            let peek = client
                .peek_records(PeekRecordsRequest {
                    task_id: task,
                    gateway_id: gateway,
                    start_offset: from,
                    max_records: max,
                    include_bodies: bodies,
                    max_body_bytes: 0,
                })
                .await
                .map_err(|s| rpc_error("PeekRecords", s))?
                .into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "records": peek.records.iter().map(record_json).collect::<Vec<_>>(),
                    "next_offset": peek.next_offset,
                    "first_offset": peek.first_offset,
                    "head_offset": peek.head_offset,
                    "committed_offset": peek.committed_offset,
                })),
                Output::Table => {
                    let rows: Vec<Vec<String>> = peek
                        .records
                        .iter()
                        .map(|r| {
                            vec![
                                r.offset.to_string(),
                                enum_name(r.op_kind().as_str_name().trim_start_matches("OP_KIND_")),
                                format!("{} {}", r.http_method, r.path),
                                r.version.map_or("-".into(), |v| v.to_string()),
                                r.size_bytes.to_string(),
                                time(r.enqueued_at.as_ref()),
                            ]
                        })
                        .collect();
                    print_table(
                        &["OFFSET", "OP", "REQUEST", "VERSION", "BYTES", "ENQUEUED"],
                        &rows,
                    );
                    println!(
                        "\noffsets: first {}, next to replay {}, head {}; continue with --from {}",
                        peek.first_offset,
                        peek.committed_offset,
                        peek.head_offset,
                        peek.next_offset
                    );
                }
            }
        }
        QueueCommand::DeadLetters {
            task,
            gateway,
            states,
            page_size,
            page_token,
        } => {
            let states = states
                .iter()
                .map(|s| state_value(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let page = client
                .list_dead_letters(ListDeadLettersRequest {
                    task_id: task,
                    gateway_id: gateway.unwrap_or_default(),
                    states,
                    page_size,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("ListDeadLetters", s))?
                .into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "dead_letters": page.dead_letters.iter().map(dead_letter_json).collect::<Vec<_>>(),
                    "total": page.total_size,
                    "next_page_token": page.next_page_token,
                })),
                Output::Table => {
                    let rows: Vec<Vec<String>> = page
                        .dead_letters
                        .iter()
                        .map(|e| {
                            let failure = e.failure.clone().unwrap_or_default();
                            let record = e.record.clone().unwrap_or_default();
                            vec![
                                e.id.clone(),
                                enum_name(
                                    e.state()
                                        .as_str_name()
                                        .trim_start_matches("DEAD_LETTER_STATE_"),
                                ),
                                format!("{}/{}", record.index, record.doc_id),
                                failure.http_status.to_string(),
                                failure.error_reason.chars().take(80).collect(),
                                time(e.created_at.as_ref()),
                            ]
                        })
                        .collect();
                    print_table(
                        &["ID", "STATE", "DOCUMENT", "STATUS", "REASON", "SINCE"],
                        &rows,
                    );
                    println!("{} in total", page.total_size);
                    next_page(&page.next_page_token);
                }
            }
        }
        QueueCommand::Retry {
            task,
            ids,
            all,
            gateway,
            comment,
        } => {
            let answer = client
                .retry_dead_letters(RetryDeadLettersRequest {
                    task_id: task,
                    dead_letter_ids: ids,
                    all,
                    gateway_id: gateway.unwrap_or_default(),
                    comment,
                })
                .await
                .map_err(|s| rpc_error("RetryDeadLetters", s))?
                .into_inner();
            print_dispatch(answer.matched_count, &answer.commands, output);
        }
        QueueCommand::Skip {
            task,
            ids,
            all,
            gateway,
            comment,
        } => {
            let answer = client
                .skip_dead_letters(SkipDeadLettersRequest {
                    task_id: task,
                    dead_letter_ids: ids,
                    all,
                    gateway_id: gateway.unwrap_or_default(),
                    comment,
                })
                .await
                .map_err(|s| rpc_error("SkipDeadLetters", s))?
                .into_inner();
            print_dispatch(answer.matched_count, &answer.commands, output);
        }
        QueueCommand::Repair {
            task,
            gateway,
            dry_run,
            comment,
        } => {
            let result = client
                .repair_queue(RepairQueueRequest {
                    task_id: task,
                    gateway_id: gateway,
                    dry_run,
                    comment,
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("RepairQueue", s))?
                .into_inner()
                .result
                .unwrap_or_default();
            print_json(&json!({
                "dry_run": result.dry_run,
                "first_lost_offset": result.first_lost_offset,
                "resume_offset": result.resume_offset,
                "records_lost": result.records_lost,
                "bytes_lost": result.bytes_lost,
                "segments": result.segments,
            }));
        }
    }
    Ok(())
}
