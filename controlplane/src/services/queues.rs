//! `tandem.v1.QueueService`: the gateways' replication queues.
//!
//! - **GetQueueStats** is served from the store: each gateway's latest
//!   `QueueStatsReport`, aggregated per task, per gateway and for the
//!   selection (`queues::aggregate`). Figures of a disconnected gateway, or older
//!   than three statistics intervals, are flagged `stale`.
//! - **PeekRecords** and **RepairQueue** are relayed to the gateway owning
//!   the queue as a `GatewayCommand` through the command outbox
//!   ([`crate::fleet::commands::execute`]), whichever replica holds its
//!   stream; the gateway must be connected (`UNAVAILABLE` otherwise). Both
//!   are audited in the log (never with record bodies).
//! - **ListDeadLetters**, **RetryDeadLetters** and **SkipDeadLetters**
//!   ([`dead_letters`]) work on the dead letters the gateways report; retries
//!   and skips are executed by the gateway holding them, through commands
//!   that wait in the outbox while it is disconnected.

pub(crate) mod aggregate;
mod dead_letters;

use std::collections::BTreeMap;

use chrono::Utc;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tandem_proto::v1::command_result::Detail;
use tandem_proto::v1::gateway_command::Command;
use tandem_proto::v1::queue_service_server::QueueService;
use tonic::{Request, Response, Status};

use super::gateways::MAX_TASK_ID_CHARS;
use super::{store_status, timestamp};
use crate::api::Api;
use crate::fleet::{DEFAULT_COMMAND_TIMEOUT, commands};
use crate::store::dead_letters::Action;
use crate::store::gateways::{self as store, Connection, GatewayRecord};
use crate::validate::{self, invalid};
use aggregate::aggregate;

/// PeekRecords defaults and caps (queue.proto).
const DEFAULT_PEEK_RECORDS: u32 = 20;
const MAX_PEEK_RECORDS: u32 = 1000;
const DEFAULT_PEEK_BODY_BYTES: u32 = 65_536;
const MAX_PEEK_BODY_BYTES: u32 = 1_048_576;

#[tonic::async_trait]
impl QueueService for Api {
    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::GetQueueStatsResponse>, Status> {
        let request = request.into_inner();
        validate::max_chars("task_id", &request.task_id, MAX_TASK_ID_CHARS)?;
        let gateway_id = if request.gateway_id.is_empty() {
            None
        } else {
            validate::gateway_id("gateway_id", &request.gateway_id)?;
            Some(request.gateway_id.as_str())
        };
        let records = store::all(&self.pool, gateway_id)
            .await
            .map_err(|e| store_status(e, "reading queue statistics"))?;
        if let Some(id) = gateway_id
            && records.is_empty()
        {
            return Err(super::gateways::not_found(id));
        }
        let task = (!request.task_id.is_empty()).then_some(request.task_id.as_str());
        Ok(Response::new(queue_stats(&records, task)))
    }

    async fn peek_records(
        &self,
        request: Request<pb::PeekRecordsRequest>,
    ) -> Result<Response<pb::PeekRecordsResponse>, Status> {
        let request = request.into_inner();
        task_id(&request.task_id)?;
        let gateway = self.gateway(&request.gateway_id).await?;
        let max_records = match request.max_records {
            0 => DEFAULT_PEEK_RECORDS,
            n => n.min(MAX_PEEK_RECORDS),
        };
        let max_body_bytes = match request.max_body_bytes {
            0 => DEFAULT_PEEK_BODY_BYTES,
            n => n.min(MAX_PEEK_BODY_BYTES),
        };
        let command = Command::PeekRecords(pb::PeekRecordsCommand {
            task_id: request.task_id.clone(),
            start_offset: request.start_offset,
            max_records,
            include_bodies: request.include_bodies,
            max_body_bytes,
        });
        let detail = self
            .relay(&gateway, "PeekRecords", &request.task_id, command)
            .await?;
        let Some(Detail::Peek(peek)) = detail else {
            return Err(unexpected_answer(&gateway.id, "PeekRecords"));
        };
        if request.include_bodies {
            // Document bodies may hold personal data: reading them is audited.
            tracing::info!(
                audit = true,
                gateway_id = %gateway.id,
                task_id = %request.task_id,
                records = peek.records.len(),
                first_offset = peek.records.first().map(|r| r.offset).unwrap_or(peek.next_offset),
                "queue records read with their bodies"
            );
        }
        Ok(Response::new(pb::PeekRecordsResponse {
            records: peek.records,
            next_offset: peek.next_offset,
            first_offset: peek.first_offset,
            head_offset: peek.head_offset,
            committed_offset: peek.committed_offset,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.list_dead_letters(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn retry_dead_letters(
        &self,
        request: Request<pb::RetryDeadLettersRequest>,
    ) -> Result<Response<pb::RetryDeadLettersResponse>, Status> {
        let r = request.into_inner();
        let (matched_count, commands) = self
            .decide_dead_letters(
                Action::Retry,
                &r.task_id,
                &r.dead_letter_ids,
                r.all,
                &r.gateway_id,
                &r.comment,
            )
            .await?;
        Ok(Response::new(pb::RetryDeadLettersResponse {
            matched_count,
            commands,
        }))
    }

    async fn skip_dead_letters(
        &self,
        request: Request<pb::SkipDeadLettersRequest>,
    ) -> Result<Response<pb::SkipDeadLettersResponse>, Status> {
        let r = request.into_inner();
        let (matched_count, commands) = self
            .decide_dead_letters(
                Action::Skip,
                &r.task_id,
                &r.dead_letter_ids,
                r.all,
                &r.gateway_id,
                &r.comment,
            )
            .await?;
        Ok(Response::new(pb::SkipDeadLettersResponse {
            matched_count,
            commands,
        }))
    }

    async fn repair_queue(
        &self,
        request: Request<pb::RepairQueueRequest>,
    ) -> Result<Response<pb::RepairQueueResponse>, Status> {
        let request = request.into_inner();
        task_id(&request.task_id)?;
        if !request.dry_run {
            validate::required("comment", &request.comment).map_err(|_| {
                invalid(
                    "comment",
                    "required unless dry_run: say why data loss is accepted",
                )
            })?;
        }
        validate::max_chars("comment", &request.comment, 1000)?;
        let gateway = self.gateway(&request.gateway_id).await?;
        let command = Command::RepairQueue(pb::RepairQueueCommand {
            task_id: request.task_id.clone(),
            expected_offset: request.expected_offset,
            dry_run: request.dry_run,
            comment: request.comment.clone(),
        });
        let detail = self
            .relay(&gateway, "RepairQueue", &request.task_id, command)
            .await?;
        let Some(Detail::Repair(result)) = detail else {
            return Err(unexpected_answer(&gateway.id, "RepairQueue"));
        };
        tracing::warn!(
            audit = true,
            gateway_id = %gateway.id,
            task_id = %request.task_id,
            dry_run = result.dry_run,
            first_lost_offset = result.first_lost_offset,
            resume_offset = result.resume_offset,
            records_lost = result.records_lost,
            bytes_lost = result.bytes_lost,
            comment = %request.comment,
            "queue repair"
        );
        Ok(Response::new(pb::RepairQueueResponse {
            result: Some(result),
        }))
    }
}

impl Api {
    /// Sends `command` to `gateway` and maps its answer: the result detail
    /// when it SUCCEEDED, a status otherwise.
    pub(crate) async fn relay(
        &self,
        gateway: &GatewayRecord,
        rpc: &str,
        task_id: &str,
        command: Command,
    ) -> Result<Option<Detail>, Status> {
        if gateway.connection == Connection::Disconnected {
            return Err(Status::unavailable(format!(
                "gateway_id: gateway {} is not connected; {rpc} needs the gateway holding the queue",
                gateway.id
            )));
        }
        let result = commands::execute(
            &self.pool,
            &self.fleet,
            &gateway.id,
            task_id,
            command,
            DEFAULT_COMMAND_TIMEOUT,
        )
        .await
        .map_err(|e| e.status("gateway_id"))?;
        let error = result.error.clone().unwrap_or_default();
        let explained = || {
            if error.reason.is_empty() {
                error.message.clone()
            } else {
                format!("{}: {}", error.reason, error.message)
            }
        };
        match pb::CommandOutcome::try_from(result.outcome).unwrap_or_default() {
            pb::CommandOutcome::Succeeded => Ok(result.detail),
            pb::CommandOutcome::Rejected => Err(match error.reason.as_str() {
                codes::OUT_OF_RANGE | codes::OFFSET_OUT_OF_RANGE => Status::out_of_range(format!(
                    "start_offset: gateway {} rejected {rpc}: {}",
                    gateway.id,
                    explained()
                )),
                codes::UNKNOWN_TASK | codes::TASK_NOT_FOUND => Status::not_found(format!(
                    "task_id: gateway {} has no queue for this task ({})",
                    gateway.id,
                    explained()
                )),
                _ => Status::failed_precondition(format!(
                    "gateway {} rejected {rpc}: {}",
                    gateway.id,
                    explained()
                )),
            }),
            pb::CommandOutcome::Failed => Err(Status::internal(format!(
                "gateway {} failed to execute {rpc}: {}",
                gateway.id,
                explained()
            ))),
            pb::CommandOutcome::Unspecified => Err(unexpected_answer(&gateway.id, rpc)),
        }
    }
}

fn task_id(value: &str) -> Result<(), Status> {
    validate::required("task_id", value)?;
    validate::max_chars("task_id", value, MAX_TASK_ID_CHARS)
}

fn unexpected_answer(gateway_id: &str, rpc: &str) -> Status {
    Status::internal(format!(
        "gateway {gateway_id} answered {rpc} without the expected result; \
         check that the gateway version supports it"
    ))
}

/// Whether the statistics of `record` are only the last known values.
fn stale(record: &GatewayRecord, now: chrono::DateTime<Utc>) -> bool {
    if record.connection != Connection::Connected {
        return true;
    }
    let max_age =
        chrono::TimeDelta::from_std(record.stats_interval * 3).unwrap_or(chrono::TimeDelta::MAX);
    record
        .queue_stats_at
        .is_none_or(|at| now.signed_duration_since(at) > max_age)
}

/// The GetQueueStats response over `records` (ordered by id), restricted to
/// `task` when given. Gateways that never reported statistics are left out.
fn queue_stats(records: &[GatewayRecord], task: Option<&str>) -> pb::GetQueueStatsResponse {
    let now = Utc::now();
    let mut tasks: BTreeMap<String, Vec<pb::GatewayTaskQueueStats>> = BTreeMap::new();
    let mut gateways = Vec::new();
    let mut selected: Vec<pb::QueueStats> = Vec::new();
    for record in records {
        let Some(report) = &record.last_queue_stats else {
            continue;
        };
        let stale = stale(record, now);
        let mut own = Vec::new();
        for entry in &report.tasks {
            if task.is_some_and(|t| t != entry.task_id) {
                continue;
            }
            let stats = entry.stats.clone().unwrap_or_default();
            tasks
                .entry(entry.task_id.clone())
                .or_default()
                .push(pb::GatewayTaskQueueStats {
                    gateway_id: record.id.clone(),
                    stats: Some(stats.clone()),
                    stale,
                });
            own.push(stats);
        }
        if task.is_some() && own.is_empty() {
            continue;
        }
        gateways.push(pb::GatewayQueueStats {
            gateway_id: record.id.clone(),
            total: Some(aggregate(&own)),
            stale,
        });
        selected.extend(own);
    }
    pb::GetQueueStatsResponse {
        fleet: Some(aggregate(&selected)),
        tasks: tasks
            .into_iter()
            .map(|(task_id, gateways)| pb::TaskQueueStats {
                total: Some(aggregate(gateways.iter().filter_map(|g| g.stats.as_ref()))),
                task_id,
                gateways,
            })
            .collect(),
        gateways,
        generated_at: Some(timestamp(now)),
    }
}
