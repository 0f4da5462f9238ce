//! Dead letters through `tandem.v1.QueueService`: records the backup refused
//! for good, as the gateways report them (`DeadLetterReport`), and the
//! operators' decisions about them.
//!
//! - **ListDeadLetters** reads the store; record bodies, when asked for, are
//!   fetched live from the one gateway named (`FetchDeadLettersCommand`),
//!   and the read is audited.
//! - **RetryDeadLetters** / **SkipDeadLetters** move PENDING dead letters to
//!   RETRY_REQUESTED / SKIP_REQUESTED and store one command per gateway
//!   holding them in the same transaction. A connected gateway gets it at
//!   once; a disconnected one when it reconnects (commands live
//!   [`ACTION_TTL`], after which the dead letters are PENDING again). The
//!   gateway's answer settles each dead letter: RETRIED (applied to the
//!   backup), SKIPPED, or PENDING again with the new failure.

use std::collections::HashMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::command_result::Detail;
use tandem_proto::v1::gateway_command::Command;
use tonic::Status;

use super::unexpected_answer;
use crate::api::Api;
use crate::fleet::commands;
use crate::pagination::PageRequest;
use crate::services::store_status;
use crate::store::dead_letters::{self as store, Action, Filter, Selection};
use crate::store::gateways::{self as gateway_store, Connection};
use crate::validate::{self, invalid};

/// How long a retry or skip waits for a disconnected gateway.
pub const ACTION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Body bytes per record returned by ListDeadLetters with bodies.
const MAX_BODY_BYTES: u32 = 65_536;

/// Longest comment kept with a decision.
const MAX_COMMENT_CHARS: usize = 1000;

/// Longest index name filter.
const MAX_INDEX_CHARS: usize = 255;

/// Sort key in page tokens: (created_at in microseconds, gateway, local id).
type TokenKey = (i64, String, i64);

impl Api {
    pub(super) async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, Status> {
        validate::id("task_id", &request.task_id)?;
        let gateway_id = optional_gateway("gateway_id", &request.gateway_id)?;
        if request.include_bodies && gateway_id.is_none() {
            return Err(invalid(
                "gateway_id",
                "required when include_bodies is true (bodies are read from that gateway)",
            ));
        }
        let mut states = Vec::new();
        for (i, raw) in request.states.iter().enumerate() {
            let state = pb::DeadLetterState::try_from(*raw)
                .ok()
                .and_then(store::state_name)
                .ok_or_else(|| {
                    invalid(
                        format!("states[{i}]"),
                        format!("{raw} is not a dead-letter state"),
                    )
                })?;
            if !states.contains(&state) {
                states.push(state);
            }
        }
        if states.is_empty() {
            states = vec!["pending", "retry_requested", "skip_requested"];
        }
        validate::max_chars("index", &request.index, MAX_INDEX_CHARS)?;
        let task = self.load_task(&request.task_id).await?;
        let filter = Filter {
            task_id: task.id.to_string(),
            gateway_id: gateway_id.map(str::to_string),
            states,
            index: (!request.index.is_empty()).then(|| request.index.clone()),
        };
        let fingerprint = format!(
            "{}|{:?}|{:?}|{:?}|{}",
            filter.task_id, filter.gateway_id, filter.states, filter.index, request.include_bodies
        );
        let page =
            PageRequest::<TokenKey>::parse(request.page_size, &request.page_token, &fingerprint)?;
        let after = match &page.after {
            None => None,
            Some((micros, gateway, local)) => Some((
                chrono::DateTime::from_timestamp_micros(*micros).ok_or_else(|| {
                    invalid("page_token", "not a token returned by ListDeadLetters")
                })?,
                gateway.clone(),
                *local,
            )),
        };
        let (mut rows, total) =
            store::list(&self.pool, &filter, after.as_ref(), page.fetch_limit())
                .await
                .map_err(|e| store_status(e, "listing dead letters"))?;
        let next_page_token = page.finish(
            &mut rows,
            |(key, _)| (key.0.timestamp_micros(), key.1.clone(), key.2),
            &fingerprint,
        );
        let mut dead_letters: Vec<pb::DeadLetter> = rows.into_iter().map(|(_, e)| e).collect();
        if let Some(gateway_id) = gateway_id
            && request.include_bodies
            && !dead_letters.is_empty()
        {
            self.attach_bodies(&filter.task_id, gateway_id, &mut dead_letters)
                .await?;
        }
        Ok(pb::ListDeadLettersResponse {
            dead_letters,
            next_page_token,
            total_size: total,
        })
    }

    /// Replaces the redacted records of `dead_letters` (all held by
    /// `gateway_id`) by the gateway's copies with bodies.
    async fn attach_bodies(
        &self,
        task_id: &str,
        gateway_id: &str,
        dead_letters: &mut [pb::DeadLetter],
    ) -> Result<(), Status> {
        let gateway = self.gateway(gateway_id).await?;
        let local_ids: Vec<String> = dead_letters
            .iter()
            .filter_map(|e| store::parse_public_id(&e.id).map(|(_, local)| local.to_string()))
            .collect();
        let command = Command::FetchDeadLetters(pb::FetchDeadLettersCommand {
            task_id: task_id.to_string(),
            dead_letter_ids: local_ids,
            max_body_bytes: MAX_BODY_BYTES,
        });
        let detail = self
            .relay(&gateway, "ListDeadLetters", task_id, command)
            .await?;
        let Some(Detail::DeadLetters(fetched)) = detail else {
            return Err(unexpected_answer(gateway_id, "ListDeadLetters"));
        };
        let mut records: HashMap<String, pb::QueueRecord> = fetched
            .dead_letters
            .into_iter()
            .filter_map(|e| Some((e.id, e.record?)))
            .collect();
        let mut with_bodies = 0;
        for entry in dead_letters.iter_mut() {
            let local = store::parse_public_id(&entry.id).map(|(_, local)| local.to_string());
            if let Some(record) = local.and_then(|l| records.remove(&l)) {
                entry.record = Some(record);
                with_bodies += 1;
            }
        }
        // Document bodies may hold personal data: reading them is audited.
        tracing::info!(
            audit = true,
            gateway_id,
            task_id,
            dead_letters = with_bodies,
            "dead letters read with their bodies"
        );
        Ok(())
    }

    /// RetryDeadLetters and SkipDeadLetters.
    pub(super) async fn decide_dead_letters(
        &self,
        action: Action,
        task_id: &str,
        ids: &[String],
        all: bool,
        gateway_id: &str,
        comment: &str,
    ) -> Result<(u32, Vec<pb::DispatchedCommand>), Status> {
        validate::id("task_id", task_id)?;
        let gateway_id = optional_gateway("gateway_id", gateway_id)?;
        let selection = match (all, ids.is_empty()) {
            (true, false) => {
                return Err(invalid(
                    "all",
                    "mutually exclusive with dead_letter_ids: set one of them",
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "dead_letter_ids",
                    "required: list the dead letters (ids from ListDeadLetters), or set all",
                ));
            }
            (true, true) => Selection::All {
                gateway_id: gateway_id.map(str::to_string),
            },
            (false, false) => {
                if gateway_id.is_some() {
                    return Err(invalid(
                        "gateway_id",
                        "only with all (listed dead letters already name their gateway)",
                    ));
                }
                let mut pairs = Vec::with_capacity(ids.len());
                for (i, id) in ids.iter().enumerate() {
                    let (gateway, local) = store::parse_public_id(id).ok_or_else(|| {
                        invalid(
                            format!("dead_letter_ids[{i}]"),
                            format!(
                                "{id:?} is not a dead-letter id; ids look like <gateway id>/<number> (see ListDeadLetters)"
                            ),
                        )
                    })?;
                    pairs.push((gateway.to_string(), local));
                }
                Selection::Ids(pairs)
            }
        };
        if action == Action::Skip {
            validate::required("comment", comment).map_err(|_| {
                invalid(
                    "comment",
                    "required: say why these records are abandoned (kept for audit)",
                )
            })?;
        }
        validate::max_chars("comment", comment, MAX_COMMENT_CHARS)?;

        let task_id = self.load_task(task_id).await?.id.to_string();
        let expires_at = commands::deadline(ACTION_TTL);
        let dispatches = store::request(
            &self.pool,
            &task_id,
            &selection,
            action,
            comment,
            expires_at,
            |_, id, locals| {
                let dead_letter_ids = locals.iter().map(i64::to_string).collect();
                let command = match action {
                    Action::Retry => Command::RetryDeadLetters(pb::RetryDeadLettersCommand {
                        task_id: task_id.clone(),
                        dead_letter_ids,
                        comment: comment.to_string(),
                    }),
                    Action::Skip => Command::SkipDeadLetters(pb::SkipDeadLettersCommand {
                        task_id: task_id.clone(),
                        dead_letter_ids,
                        comment: comment.to_string(),
                    }),
                };
                commands::envelope(id, command, expires_at)
            },
        )
        .await
        .map_err(|e| store_status(e, "recording the dead-letter decision"))?;

        let mut matched = 0u32;
        let mut dispatched = Vec::with_capacity(dispatches.len());
        for dispatch in dispatches {
            matched = matched.saturating_add(dispatch.count);
            commands::dispatch(&self.pool, &self.fleet, &dispatch.gateway_id).await;
            let delivered = matches!(
                gateway_store::get(&self.pool, &dispatch.gateway_id).await,
                Ok(Some(g)) if g.connection == Connection::Connected
            );
            dispatched.push(pb::DispatchedCommand {
                gateway_id: dispatch.gateway_id,
                command_id: dispatch.command_id.to_string(),
                dead_letter_count: dispatch.count,
                delivered,
            });
        }
        tracing::info!(
            audit = true,
            task_id = %task_id,
            action = action.kind(),
            matched,
            commands = dispatched.len(),
            comment,
            "dead-letter decision"
        );
        Ok((matched, dispatched))
    }
}

fn optional_gateway<'a>(field: &str, value: &'a str) -> Result<Option<&'a str>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    validate::gateway_id(field, value)?;
    Ok(Some(value))
}
