//! Dead letters, queue records, peeks and repair reports as the contract
//! carries them.

use super::*;

/// Whether dead-letter bodies are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Redacted: only sizes.
    Redacted,
    /// Included, truncated to this many bytes.
    Included(usize),
}

impl Bodies {
    /// Bodies for a fetch asking for at most `max_body_bytes` (0 = 64 KiB,
    /// capped to 1 MiB).
    pub fn for_fetch(max_body_bytes: u32) -> Bodies {
        let max = match max_body_bytes as usize {
            0 => DEFAULT_MAX_BODY_BYTES,
            n => n.min(MAX_BODY_BYTES),
        };
        Bodies::Included(max)
    }
}

/// Context of a dead letter in the contract.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterContext<'a> {
    /// Task id.
    pub task_id: &'a str,
    /// Gateway id.
    pub gateway_id: &'a str,
    /// Comment of the command that acted on it.
    pub comment: &'a str,
}

/// The contract's view of a dead letter.
pub fn dead_letter(
    entry: &DeadLetter,
    ctx: DeadLetterContext<'_>,
    state: pb::DeadLetterState,
    bodies: Bodies,
) -> pb::DeadLetter {
    let at = Some(timestamp(millis_to_time(entry.failed_at_ms)));
    pb::DeadLetter {
        id: entry.id.to_string(),
        task_id: ctx.task_id.to_string(),
        gateway_id: ctx.gateway_id.to_string(),
        record: Some(queue_record(entry, bodies)),
        failure: Some(pb::DeadLetterFailure {
            http_status: u32::from(entry.status),
            error_type: String::new(),
            error_reason: entry.reason.clone(),
            attempts: entry.retries.saturating_add(1),
            cluster_id: String::new(),
        }),
        state: state as i32,
        created_at: at,
        updated_at: at,
        comment: ctx.comment.to_string(),
    }
}

pub(super) fn op_kind(kind: &str) -> pb::OpKind {
    match kind {
        "index" => pb::OpKind::DocumentIndex,
        "delete" => pb::OpKind::DocumentDelete,
        "read_repair" => pb::OpKind::DocumentUpdate,
        "index_meta" => pb::OpKind::IndexMetadata,
        "query_scoped" => pb::OpKind::QueryScoped,
        _ => pb::OpKind::Unspecified,
    }
}

pub(super) fn doc_path(
    index: &str,
    doc_type: Option<&str>,
    id: &str,
    routing: Option<&str>,
    update: bool,
) -> String {
    let (index, id) = (encode_path_segment(index), encode_path_segment(id));
    let mut path = match (doc_type, update) {
        (Some(t), false) => format!("/{index}/{}/{id}", encode_path_segment(t)),
        (Some(t), true) => format!("/{index}/{}/{id}/_update", encode_path_segment(t)),
        (None, false) => format!("/{index}/_doc/{id}"),
        (None, true) => format!("/{index}/_update/{id}"),
    };
    if let Some(routing) = routing {
        path.push_str("?routing=");
        path.push_str(&encode_path_segment(routing));
    }
    path
}

/// The queue record behind a dead letter, body per `bodies`.
pub fn queue_record(entry: &DeadLetter, bodies: Bodies) -> pb::QueueRecord {
    let mut record = match entry.op() {
        Ok(op) => op_record(&op, bodies),
        Err(_) => pb::QueueRecord {
            index: entry.index.clone().unwrap_or_default(),
            doc_id: entry.doc_id.clone().unwrap_or_default(),
            version: entry.version,
            ..Default::default()
        },
    };
    record.offset = entry.queue_offset;
    record.op_kind = op_kind(&entry.kind) as i32;
    record
}

/// The contract's view of a queue record (offset, enqueue time and size
/// left to the caller).
pub fn op_record(op: &ReplicationOp, bodies: Bodies) -> pb::QueueRecord {
    let mut record = pb::QueueRecord {
        op_kind: op_kind(op.kind_name()) as i32,
        index: op.index().map(|i| i.into_owned()).unwrap_or_default(),
        doc_id: op.id().unwrap_or_default().to_string(),
        version: op.version(),
        version_fenced: op.version_fenced(),
        ..Default::default()
    };
    let body = match op {
        ReplicationOp::Index {
            index,
            doc_type,
            id,
            routing,
            seq_no,
            primary_term,
            source,
            ..
        } => {
            record.mapping_type = doc_type.clone().unwrap_or_default();
            record.routing = routing.clone().unwrap_or_default();
            record.seq_no = *seq_no;
            record.primary_term = *primary_term;
            record.http_method = "PUT".into();
            record.path = doc_path(index, doc_type.as_deref(), id, routing.as_deref(), false);
            source.clone()
        }
        ReplicationOp::Delete {
            index,
            doc_type,
            id,
            routing,
            ..
        }
        | ReplicationOp::ReadRepair {
            index,
            doc_type,
            id,
            routing,
            ..
        } => {
            let update = matches!(op, ReplicationOp::ReadRepair { .. });
            record.mapping_type = doc_type.clone().unwrap_or_default();
            record.routing = routing.clone().unwrap_or_default();
            record.http_method = if update { "POST" } else { "DELETE" }.into();
            record.path = doc_path(index, doc_type.as_deref(), id, routing.as_deref(), update);
            bytes::Bytes::new()
        }
        ReplicationOp::IndexMeta { method, path, body }
        | ReplicationOp::QueryScoped { method, path, body } => {
            record.http_method = method.to_string();
            record.path = path.clone();
            body.clone()
        }
    };
    record.body_size_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
    match bodies {
        Bodies::Redacted => record.body_redacted = !body.is_empty(),
        Bodies::Included(max) => {
            record.body_truncated = body.len() > max;
            record.body = body.slice(..body.len().min(max)).to_vec();
        }
    }
    record
}

/// The contract's view of a peek: records with their op decoded (an
/// undecodable record keeps only its offset, time and size; the replayer
/// halts on it and RepairQueue deals with it).
pub fn peek_result(peeked: &Peeked, bodies: Bodies) -> pb::PeekRecordsCommandResult {
    let records = peeked
        .records
        .iter()
        .map(|r| {
            let mut record = match ReplicationOp::decode(&r.payload) {
                Ok(op) => op_record(&op, bodies),
                Err(_) => pb::QueueRecord::default(),
            };
            record.offset = r.offset;
            record.enqueued_at = Some(timestamp(millis_to_time(r.enqueued_at_ms)));
            record.size_bytes = u32::try_from(r.payload.len()).unwrap_or(u32::MAX);
            record
        })
        .collect::<Vec<_>>();
    pb::PeekRecordsCommandResult {
        next_offset: peeked.records.last().map_or(peeked.from, |r| r.offset + 1),
        records,
        first_offset: peeked.first_offset,
        head_offset: peeked.head_offset,
        committed_offset: peeked.next_to_replay,
    }
}

/// Dead letters new or changed (retried) since `reported` (id → retries)
/// was last updated, at most [`DEAD_LETTER_REPORT_MAX`].
pub fn dead_letter_changes(
    reported: &HashMap<u64, u32>,
    current: &[DeadLetter],
) -> Vec<DeadLetter> {
    current
        .iter()
        .filter(|e| reported.get(&e.id) != Some(&e.retries))
        .take(DEAD_LETTER_REPORT_MAX)
        .cloned()
        .collect()
}

/// A `DeadLetterReport` (bodies never included).
pub fn dead_letter_report(
    entries: &[DeadLetter],
    task_id: &str,
    gateway_id: &str,
) -> pb::AgentStreamRequest {
    let ctx = DeadLetterContext {
        task_id,
        gateway_id,
        comment: "",
    };
    request(pb::agent_stream_request::Payload::DeadLetters(
        pb::DeadLetterReport {
            dead_letters: entries
                .iter()
                .map(|e| dead_letter(e, ctx, pb::DeadLetterState::Pending, Bodies::Redacted))
                .collect(),
        },
    ))
}

/// The contract's view of a queue repair.
pub fn repair_result(report: &RepairReport, now: SystemTime) -> pb::QueueRepairResult {
    pb::QueueRepairResult {
        dry_run: report.dry_run,
        first_lost_offset: report.first_lost_offset,
        resume_offset: report.resume_offset,
        records_lost: report.records_lost,
        bytes_lost: report.bytes_skipped,
        segments: vec![segment_name(report)],
        repaired_at: (!report.dry_run).then(|| timestamp(now)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dead_letters::DeadLetterStore;

    fn stored_dead_letters() -> (tempfile::TempDir, Vec<DeadLetter>) {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path()).unwrap();
        let index = ReplicationOp::Index {
            index: "logs".into(),
            doc_type: None,
            id: "a b".into(),
            routing: Some("r1".into()),
            version: 5,
            seq_no: Some(9),
            primary_term: Some(1),
            source: bytes::Bytes::from_static(br#"{"field":"value-0123456789"}"#),
        };
        store
            .add(40, &index, 400, "mapper_parsing_exception: bad")
            .unwrap();
        let meta = ReplicationOp::IndexMeta {
            method: http::Method::PUT,
            path: "/logs/_mapping".into(),
            body: bytes::Bytes::from_static(b"{}"),
        };
        store
            .add(41, &meta, 400, "illegal_argument_exception")
            .unwrap();
        let entries = store.list();
        (dir, entries)
    }

    #[test]
    fn dead_letters_map_with_redacted_or_truncated_bodies() {
        let (_dir, entries) = stored_dead_letters();
        let ctx = DeadLetterContext {
            task_id: "t-1",
            gateway_id: "gw",
            comment: "audit",
        };
        let dl = dead_letter(
            &entries[0],
            ctx,
            pb::DeadLetterState::Pending,
            Bodies::Redacted,
        );
        assert_eq!(dl.id, entries[0].id.to_string());
        assert_eq!(dl.gateway_id, "gw");
        assert_eq!(dl.comment, "audit");
        let failure = dl.failure.unwrap();
        assert_eq!(failure.http_status, 400);
        assert_eq!(failure.attempts, 1);
        let record = dl.record.unwrap();
        assert_eq!(record.offset, 40);
        assert_eq!(record.op_kind, pb::OpKind::DocumentIndex as i32);
        assert_eq!(record.index, "logs");
        assert_eq!(record.doc_id, "a b");
        assert_eq!(record.version, Some(5));
        assert_eq!(record.seq_no, Some(9));
        assert!(record.version_fenced);
        assert_eq!(record.http_method, "PUT");
        assert_eq!(record.path, "/logs/_doc/a%20b?routing=r1");
        assert!(record.body_redacted);
        assert!(record.body.is_empty());
        assert_eq!(record.body_size_bytes, 28);

        let record = queue_record(&entries[0], Bodies::Included(10));
        assert_eq!(record.body, br#"{"field":""#.to_vec());
        assert!(record.body_truncated);
        assert!(!record.body_redacted);

        let record = queue_record(&entries[1], Bodies::for_fetch(0));
        assert_eq!(record.op_kind, pb::OpKind::IndexMetadata as i32);
        assert!(!record.version_fenced);
        assert_eq!(record.path, "/logs/_mapping");
        assert_eq!(record.body, b"{}".to_vec());
        assert!(!record.body_truncated);
        assert_eq!(Bodies::for_fetch(u32::MAX), Bodies::Included(1 << 20));
    }

    #[test]
    fn dead_letter_changes_report_new_and_retried_entries() {
        let (_dir, mut entries) = stored_dead_letters();
        let mut reported = HashMap::new();
        assert_eq!(dead_letter_changes(&reported, &entries).len(), 2);
        for e in &entries {
            reported.insert(e.id, e.retries);
        }
        assert!(dead_letter_changes(&reported, &entries).is_empty());
        entries[1].retries += 1;
        let changed = dead_letter_changes(&reported, &entries);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, entries[1].id);
        let msg = dead_letter_report(&changed, "t", "gw");
        let Some(pb::agent_stream_request::Payload::DeadLetters(report)) = msg.payload else {
            panic!("not a dead-letter report");
        };
        assert_eq!(
            report.dead_letters[0].state,
            pb::DeadLetterState::Pending as i32
        );
        assert!(
            report.dead_letters[0]
                .record
                .as_ref()
                .unwrap()
                .body
                .is_empty()
        );
    }

    #[test]
    fn repair_reports_map_to_the_contract() {
        let report = RepairReport {
            consumer: REPLAYER.into(),
            segment: PathBuf::from("/q/00000000000000000001.seg"),
            position: 10,
            detail: "crc".into(),
            first_lost_offset: 5,
            last_lost_offset: 6,
            records_lost: 2,
            bytes_skipped: 99,
            resume_offset: 7,
            dry_run: true,
        };
        let now = SystemTime::now();
        let result = repair_result(&report, now);
        assert!(result.dry_run);
        assert_eq!(result.records_lost, 2);
        assert_eq!(
            result.resume_offset - result.first_lost_offset,
            result.records_lost
        );
        assert_eq!(result.bytes_lost, 99);
        assert_eq!(
            result.segments,
            vec!["00000000000000000001.seg".to_string()]
        );
        assert_eq!(result.repaired_at, None);
        let applied = repair_result(
            &RepairReport {
                dry_run: false,
                ..report
            },
            now,
        );
        assert_eq!(applied.repaired_at, Some(timestamp(now)));
    }
}
