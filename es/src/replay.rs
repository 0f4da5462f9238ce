//! Building the requests that apply recorded ops to the backup, and
//! reading the backup's answers. No I/O: the replayer sends what these
//! functions build.
//!
//! Document ops go in `_bulk` batches with external versioning
//! (`version_type=external_gte`, `version` = the primary's `_version`), so
//! whatever order ops reach the backup in, each document ends at the
//! primary's latest version. Bulk metadata is spelled the way the backup's
//! major version expects it:
//!
//! | backup              | keys                                                         |
//! |---------------------|--------------------------------------------------------------|
//! | Elasticsearch 5.x   | `_index`, `_type`, `_id`, `_routing`, `_version`, `_version_type` |
//! | Elasticsearch 6.x   | `_index`, `_type`, `_id`, `routing`, `version`, `version_type`    |
//! | Elasticsearch 7.x+, OpenSearch | `_index`, `_id`, `routing`, `version`, `version_type` (no `_type`) |

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::classify::{MetaKind, RequestClass, classify, normalize_type};
use super::data_stream::stream_of_backing_index;
use super::json::{ObjectOr, Scalar, SingleKey, compact, push_str};
use super::ops::ReplicationOp;
use super::uri::{self, encode_path_segment};
use super::version::ClusterVersion;

/// The backup a batch is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTarget {
    /// The backup's version (decides key spelling and `_type`).
    pub version: ClusterVersion,
    /// For 5.x/6.x backups: the mapping type of each index (from
    /// `GET /_mapping`), used when an op carries no type. Ignored for
    /// typeless backups.
    pub index_types: HashMap<String, String>,
}

impl ReplayTarget {
    /// A target with no known index types.
    pub fn new(version: ClusterVersion) -> Self {
        Self {
            version,
            index_types: HashMap::new(),
        }
    }

    /// Adds the mapping type of `index` on a 5.x/6.x backup.
    pub fn with_index_type(
        mut self,
        index: impl Into<String>,
        doc_type: impl Into<String>,
    ) -> Self {
        self.index_types.insert(index.into(), doc_type.into());
        self
    }

    /// The `_type` to send for a document of `index`: `None` on typeless
    /// backups; on 6.x the index's known type, else the op's own; on 5.x
    /// the op's own type (unless it starts with `_`), else the index's;
    /// else `_doc` (6.x) / `doc` (5.x).
    pub fn doc_type_for<'a>(&'a self, index: &str, op_type: Option<&'a str>) -> Option<&'a str> {
        if !self.version.has_mapping_types() {
            return None;
        }
        let index_type = self.index_types.get(index).map(String::as_str);
        if self.version.uses_underscored_bulk_params() {
            // 5.x allows several types per index, but refuses names
            // starting with `_` (`_doc` written on 6.x and later): those
            // documents take the index's type there.
            op_type
                .filter(|t| !t.starts_with('_'))
                .or(index_type)
                .or(self.version.default_doc_type())
        } else {
            // 6.x indices hold exactly one type: a document recorded with
            // another (`doc` from a 5.x primary) must take the index's.
            index_type.or(op_type).or(self.version.default_doc_type())
        }
    }
}

/// Why a batch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Only index and delete ops go into a bulk batch; read-repair ops go
    /// through [`read_repair_get_path`] + [`read_repair_op`] first, and
    /// metadata/query-scoped ops are sent alone.
    #[error("a [{kind}] op cannot go into a replay bulk batch")]
    NotBulkReplayable {
        /// [`ReplicationOp::kind_name`] of the op.
        kind: &'static str,
    },
    /// External versions must not be negative.
    #[error("document [{id}] has an invalid version {version}")]
    InvalidVersion {
        /// Document id.
        id: String,
        /// The version.
        version: i64,
    },
    /// The source still spans several lines after compaction (not JSON).
    #[error("document [{id}] source cannot be put on one NDJSON line")]
    MultiLineSource {
        /// Document id.
        id: String,
    },
    /// A document of a data stream at a version above 1 was updated in
    /// place on the primary (`if_seq_no` into a backing index): the
    /// backup accepts creates only through the stream, so the update
    /// cannot be replayed (see [`crate::data_stream`]).
    #[error(
        "document [{id}] of data stream backing index [{index}] was updated (version {version}): \
         data streams accept only creates through the stream, so the update cannot be replayed; \
         compare the stream and repair it by hand"
    )]
    DataStreamUpdate {
        /// Backing index.
        index: String,
        /// Document id.
        id: String,
        /// The primary's version.
        version: i64,
    },
}

/// Builds the NDJSON `_bulk` body that applies `ops` (index and delete ops
/// only) to the backup with `version_type=external_gte`. The body ends with
/// a newline. Item `i` of the backup's response answers `ops[i]`.
pub fn build_replay_bulk<'a>(
    ops: impl IntoIterator<Item = &'a ReplicationOp>,
    target: &ReplayTarget,
) -> Result<Vec<u8>, ReplayError> {
    let mut buf = Vec::new();
    for op in ops {
        match op {
            ReplicationOp::Index {
                index,
                doc_type,
                id,
                routing,
                version,
                source,
                ..
            } => {
                let source = compact(source);
                if memchr::memchr(b'\n', &source).is_some() {
                    return Err(ReplayError::MultiLineSource { id: id.clone() });
                }
                if let Some(stream) = stream_of_backing_index(index) {
                    if *version > 1 {
                        return Err(ReplayError::DataStreamUpdate {
                            index: index.clone(),
                            id: id.clone(),
                            version: *version,
                        });
                    }
                    push_stream_create(&mut buf, target, stream, id, routing.as_deref());
                    buf.extend_from_slice(&source);
                    buf.push(b'\n');
                    continue;
                }
                push_action(
                    &mut buf,
                    "index",
                    target,
                    index,
                    doc_type.as_deref(),
                    id,
                    routing.as_deref(),
                    *version,
                )?;
                buf.extend_from_slice(&source);
                buf.push(b'\n');
            }
            ReplicationOp::Delete {
                index,
                doc_type,
                id,
                routing,
                version,
            } => push_action(
                &mut buf,
                "delete",
                target,
                index,
                doc_type.as_deref(),
                id,
                routing.as_deref(),
                *version,
            )?,
            other => {
                return Err(ReplayError::NotBulkReplayable {
                    kind: other.kind_name(),
                });
            }
        }
    }
    Ok(buf)
}

/// The action line of a `create` through data stream `stream`: no type
/// (data streams exist from 7.9, typeless) and no version (a data stream
/// accepts only internal versioning for creates).
fn push_stream_create(
    buf: &mut Vec<u8>,
    target: &ReplayTarget,
    stream: &str,
    id: &str,
    routing: Option<&str>,
) {
    buf.extend_from_slice(b"{\"create\":{\"_index\":");
    push_str(buf, stream);
    buf.extend_from_slice(b",\"_id\":");
    push_str(buf, id);
    if let Some(r) = routing {
        let key: &[u8] = if target.version.uses_underscored_bulk_params() {
            b",\"_routing\":"
        } else {
            b",\"routing\":"
        };
        buf.extend_from_slice(key);
        push_str(buf, r);
    }
    buf.extend_from_slice(b"}}\n");
}

#[allow(clippy::too_many_arguments)]
fn push_action(
    buf: &mut Vec<u8>,
    action: &str,
    target: &ReplayTarget,
    index: &str,
    doc_type: Option<&str>,
    id: &str,
    routing: Option<&str>,
    version: i64,
) -> Result<(), ReplayError> {
    if version < 0 {
        return Err(ReplayError::InvalidVersion {
            id: id.to_owned(),
            version,
        });
    }
    let underscored = target.version.uses_underscored_bulk_params();
    let (routing_key, version_key, version_type_key) = if underscored {
        ("_routing", "_version", "_version_type")
    } else {
        ("routing", "version", "version_type")
    };
    buf.extend_from_slice(b"{\"");
    buf.extend_from_slice(action.as_bytes());
    buf.extend_from_slice(b"\":{\"_index\":");
    push_str(buf, index);
    if let Some(t) = target.doc_type_for(index, doc_type) {
        buf.extend_from_slice(b",\"_type\":");
        push_str(buf, t);
    }
    buf.extend_from_slice(b",\"_id\":");
    push_str(buf, id);
    if let Some(r) = routing {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(routing_key.as_bytes());
        buf.extend_from_slice(b"\":");
        push_str(buf, r);
    }
    buf.extend_from_slice(
        format!(",\"{version_key}\":{version},\"{version_type_key}\":\"external_gte\"}}}}\n")
            .as_bytes(),
    );
    Ok(())
}

/// How the backup answered one replayed item or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Applied (2xx), or an already-satisfied delete (404: the document or
    /// its index is absent, which is the goal; under external versioning
    /// Elasticsearch still records the delete's version).
    Applied,
    /// 409 `version_conflict_engine_exception` under `external_gte`: the
    /// backup holds a higher version (live or a delete tombstone). Either
    /// the op is older than what the backup holds, or the primary's version
    /// regressed (a document re-created after its tombstone was pruned):
    /// `super::docstate::classify_conflict` tells which.
    VersionConflict {
        /// The backup's current version, from the error's reason.
        current: Option<i64>,
    },
    /// Worth retrying with backoff: 429, 5xx, rejected execution, circuit
    /// breakers, cluster blocks (e.g. flood-stage read-only), unavailable
    /// shards.
    Retryable {
        /// HTTP status of the item (0 when absent).
        status: u16,
        /// `type: reason` of the error.
        reason: String,
    },
    /// Will not succeed by retrying: goes to the dead-letter store.
    Failed {
        /// HTTP status of the item (0 when absent).
        status: u16,
        /// `type: reason` of the error, or what was malformed.
        reason: String,
    },
}

impl ItemOutcome {
    /// Whether the op can leave the queue as applied without looking
    /// further (a version conflict must be classified first).
    pub fn counts_as_applied(&self) -> bool {
        matches!(self, Self::Applied)
    }
}

const RETRYABLE_ERRORS: &[&str] = &[
    "es_rejected_execution_exception",
    "opensearch_rejected_execution_exception",
    "rejected_execution_exception",
    "circuit_breaking_exception",
    "cluster_block_exception",
    "unavailable_shards_exception",
    "no_shard_available_action_exception",
    "node_not_connected_exception",
    "node_closed_exception",
    "connect_transport_exception",
    "receive_timeout_transport_exception",
    "process_cluster_event_timeout_exception",
    "timeout_exception",
];

/// Path and query of a replay `_bulk`. `filter_path` trims the backup's
/// answer to what [`parse_bulk_response_for_replay`] reads: every item
/// keeps its action key and `status`, and `error` (type, reason,
/// `caused_by`) when it has one; the item count and order are unchanged.
/// Elasticsearch 5+ and OpenSearch support it, and error answers for the
/// whole request are never filtered.
pub const REPLAY_BULK_PATH: &str = "/_bulk?filter_path=items.*.status,items.*.error";

/// The backup's answer to a replay `_bulk`, borrowed from its bytes.
#[derive(Deserialize)]
struct ReplayAnswer<'a> {
    #[serde(borrow)]
    items: Option<Vec<SingleKey<'a, ObjectOr<'a, ReplayItem<'a>>>>>,
}

/// One item of a replay `_bulk` answer, under its action key.
#[derive(Deserialize)]
struct ReplayItem<'a> {
    #[serde(borrow)]
    status: Option<Scalar<'a>>,
    #[serde(borrow)]
    error: Option<ErrorDetail<'a>>,
}

/// An item's or a response's `error`: an object, or a plain string on 5.x.
#[derive(Debug, Default)]
struct ErrorDetail<'a> {
    /// `error.type`.
    error_type: Option<Cow<'a, str>>,
    /// `error.reason`, or the whole error when it is a string.
    reason: Option<Cow<'a, str>>,
    /// `error.caused_by.type`.
    caused_by_type: Option<Cow<'a, str>>,
}

/// The fields of an `error` object that classification reads.
#[derive(Deserialize)]
struct ErrorObject<'a> {
    #[serde(rename = "type", borrow)]
    error_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    reason: Option<Scalar<'a>>,
    #[serde(borrow)]
    caused_by: Option<ObjectOr<'a, CausedBy<'a>>>,
}

/// `error.caused_by`.
#[derive(Deserialize)]
struct CausedBy<'a> {
    #[serde(rename = "type", borrow)]
    error_type: Option<Scalar<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ErrorDetail<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = |s: Option<Scalar<'a>>| match s {
            Some(Scalar::Str(s)) => Some(s),
            _ => None,
        };
        Ok(
            match ObjectOr::<'a, ErrorObject<'a>>::deserialize(deserializer)? {
                ObjectOr::Scalar(Scalar::Str(s)) => ErrorDetail {
                    reason: Some(s),
                    ..ErrorDetail::default()
                },
                ObjectOr::Scalar(_) => ErrorDetail::default(),
                ObjectOr::Object(object) => ErrorDetail {
                    error_type: text(object.error_type),
                    reason: text(object.reason),
                    caused_by_type: object
                        .caused_by
                        .and_then(ObjectOr::object)
                        .and_then(|c| text(c.error_type)),
                },
            },
        )
    }
}

impl ErrorDetail<'_> {
    /// `type: reason` (or what there is of it).
    fn description(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or_default();
        match &self.error_type {
            Some(t) => format!("{t}: {reason}"),
            None => reason.to_owned(),
        }
    }
}

/// Classifies each item of the backup's answer to a replay `_bulk` (sent
/// to [`REPLAY_BULK_PATH`]), in order, reading only each item's action
/// key, `status` and `error`. An answer without an `items` array yields an
/// empty vector: a length different from the batch means the answer
/// cannot be paired and the whole batch must be retried. `Err` when the
/// body is not JSON.
pub fn parse_bulk_response_for_replay(body: &[u8]) -> Result<Vec<ItemOutcome>, serde_json::Error> {
    let answer: ReplayAnswer<'_> = serde_json::from_slice(body)?;
    Ok(answer
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| match item {
            SingleKey::Entry(action, ObjectOr::Object(body)) => {
                let status = body
                    .status
                    .as_ref()
                    .and_then(Scalar::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0);
                let error = body.error.unwrap_or_default();
                if action == "create"
                    && status == 409
                    && error.error_type.as_deref() == Some("version_conflict_engine_exception")
                {
                    // Replay sends `create` only through a data stream
                    // (see `crate::data_stream`): the document is already
                    // there, and data-stream documents are append-only.
                    return ItemOutcome::Applied;
                }
                outcome(action == "delete", status, &error)
            }
            _ => ItemOutcome::Failed {
                status: 0,
                reason: "malformed bulk response item".into(),
            },
        })
        .collect())
}

fn outcome(is_delete: bool, status: u16, error: &ErrorDetail<'_>) -> ItemOutcome {
    let error_type = error.error_type.as_deref();
    let caused_by_type = error.caused_by_type.as_deref();
    match status {
        200..=299 => ItemOutcome::Applied,
        404 if is_delete => ItemOutcome::Applied,
        409 if error_type == Some("version_conflict_engine_exception") => {
            ItemOutcome::VersionConflict {
                current: error
                    .reason
                    .as_deref()
                    .and_then(super::docstate::conflict_current_version),
            }
        }
        _ if status == 429
            || status >= 500
            || error_type.is_some_and(|t| RETRYABLE_ERRORS.contains(&t))
            || caused_by_type.is_some_and(|t| RETRYABLE_ERRORS.contains(&t)) =>
        {
            ItemOutcome::Retryable {
                status,
                reason: error.description(),
            }
        }
        _ => ItemOutcome::Failed {
            status,
            reason: error.description(),
        },
    }
}

/// Classifies the backup's answer to a replayed metadata or query-scoped
/// request (see [`super::rewrite::replay_request`]).
///
/// Besides 2xx, these count as applied: creating an index or data stream
/// that already exists (the migration job may have created it), and
/// deleting an index, alias, template, pipeline or script that is already
/// gone. A query-scoped request whose response lists `failures` is
/// `Failed`: it was partly applied, and retrying a non-idempotent script
/// could apply it twice, so an operator decides.
pub fn request_outcome(op: &ReplicationOp, status: u16, response: &Value) -> ItemOutcome {
    // Every field is read leniently: reading a `Value` cannot fail.
    let error = response
        .get("error")
        .and_then(|e| ErrorDetail::deserialize(e).ok())
        .unwrap_or_default();
    let error_type = error.error_type.as_deref();
    let reason = error.description();
    let (method, path) = match op {
        ReplicationOp::IndexMeta { method, path, .. } => (method, path),
        ReplicationOp::QueryScoped { .. } => {
            let failures = response
                .get("failures")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if (200..300).contains(&status) && failures > 0 {
                return ItemOutcome::Failed {
                    status,
                    reason: format!("{failures} failures: {}", response["failures"]),
                };
            }
            return request_failure_or(outcome(false, status, &error), status, reason);
        }
        other => {
            return ItemOutcome::Failed {
                status,
                reason: format!("[{}] ops are replayed in bulk", other.kind_name()),
            };
        }
    };
    let already = match error_type {
        Some("resource_already_exists_exception" | "index_already_exists_exception") => {
            *method == Method::PUT
                && meta_kind(method, path)
                    .is_some_and(|k| matches!(k, MetaKind::CreateIndex | MetaKind::DataStream))
        }
        Some(
            "index_not_found_exception"
            | "aliases_not_found_exception"
            | "resource_not_found_exception"
            | "index_template_missing_exception",
        ) => *method == Method::DELETE,
        _ => false,
    };
    if already || (status == 404 && *method == Method::DELETE && error_type.is_none()) {
        return ItemOutcome::Applied;
    }
    request_failure_or(outcome(false, status, &error), status, reason)
}

/// A version conflict means something different for a whole request
/// (a by-query run aborted part-way) than for one external-versioned
/// document: only `Applied` and `Retryable` carry over.
fn request_failure_or(outcome: ItemOutcome, status: u16, reason: String) -> ItemOutcome {
    match outcome {
        ItemOutcome::Applied | ItemOutcome::Retryable { .. } => outcome,
        ItemOutcome::VersionConflict { .. } | ItemOutcome::Failed { .. } => ItemOutcome::Failed {
            status,
            reason: if reason.is_empty() {
                format!("HTTP status {status}")
            } else {
                reason
            },
        },
    }
}

fn meta_kind(method: &Method, path_and_query: &str) -> Option<MetaKind> {
    let (path, query) = uri::split_path_query(path_and_query);
    match classify(method, path, query) {
        RequestClass::IndexMeta { kind, .. } => Some(kind),
        _ => None,
    }
}

/// The `GET` path (with query) that reads a read-repair op's document from
/// the primary, for the primary's version: `/{index}/_doc/{id}` on typeless
/// clusters, `/{index}/{type}/{id}` on 5.x/6.x (type `_all` when the op has
/// none, which matches the index's single type). `None` for other ops.
pub fn read_repair_get_path(op: &ReplicationOp, primary: &ClusterVersion) -> Option<String> {
    let ReplicationOp::ReadRepair {
        index,
        doc_type,
        id,
        routing,
        ..
    } = op
    else {
        return None;
    };
    let type_segment = if primary.has_mapping_types() {
        doc_type.as_deref().unwrap_or("_all")
    } else {
        "_doc"
    };
    let mut path = format!(
        "/{}/{}/{}",
        encode_path_segment(index),
        encode_path_segment(type_segment),
        encode_path_segment(id)
    );
    if let Some(r) = routing {
        path.push_str("?routing=");
        path.push_str(&encode_path_segment(r));
    }
    Some(path)
}

/// Why a read-repair could not produce an op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadRepairError {
    /// The op is not a read-repair op.
    #[error("not a read-repair op")]
    NotReadRepair,
    /// The primary could not answer now (429/5xx/timeout-like): retry.
    #[error("primary answered {status}: {reason}")]
    Retryable {
        /// HTTP status.
        status: u16,
        /// What the primary said.
        reason: String,
    },
    /// The document cannot be repaired this way (no `_source`, malformed
    /// answer...): dead-letter it.
    #[error("cannot read-repair ({status}): {reason}")]
    Failed {
        /// HTTP status.
        status: u16,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
struct GetResponse<'a> {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_type")]
    doc_type: Option<String>,
    #[serde(rename = "_version")]
    version: Option<i64>,
    #[serde(rename = "_seq_no")]
    seq_no: Option<i64>,
    #[serde(rename = "_primary_term")]
    primary_term: Option<i64>,
    #[serde(rename = "_routing")]
    routing: Option<String>,
    found: Option<bool>,
    #[serde(rename = "_source", borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<ErrorDetail<'a>>,
}

/// Turns the primary's answer to [`read_repair_get_path`] into the op to
/// replay: the full document at the version the primary reports now
/// (`found: true`), or a delete at the op's version when the document or
/// its index is gone (`found: false` / `index_not_found_exception`). The
/// `_source` is taken byte for byte (compacted), never re-serialised.
pub fn read_repair_op(
    op: &ReplicationOp,
    status: u16,
    body: &[u8],
) -> Result<ReplicationOp, ReadRepairError> {
    let ReplicationOp::ReadRepair {
        index,
        doc_type,
        id,
        routing,
        version,
    } = op
    else {
        return Err(ReadRepairError::NotReadRepair);
    };
    let failed = |reason: String| ReadRepairError::Failed { status, reason };
    let parsed: GetResponse<'_> = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) if status == 429 || status >= 500 => {
            return Err(ReadRepairError::Retryable {
                status,
                reason: format!("unparseable body: {e}"),
            });
        }
        Err(e) => return Err(failed(format!("unparseable GET response: {e}"))),
    };
    let error_type = parsed.error.as_ref().and_then(|e| e.error_type.as_deref());
    let reason = parsed
        .error
        .as_ref()
        .map(ErrorDetail::description)
        .unwrap_or_default();
    let gone = || ReplicationOp::Delete {
        index: index.clone(),
        doc_type: doc_type.clone(),
        id: id.clone(),
        routing: routing.clone(),
        version: *version,
    };
    match status {
        200 if parsed.found == Some(true) => {
            let Some(version) = parsed.version.filter(|v| *v >= 0) else {
                return Err(failed("GET response has no _version".into()));
            };
            let source = parsed
                .source
                .map(RawValue::get)
                .filter(|s| s.trim() != "null");
            let Some(source) = source else {
                return Err(failed(
                    "document has no _source (disabled in the mapping?)".into(),
                ));
            };
            Ok(ReplicationOp::Index {
                index: parsed.index.unwrap_or_else(|| index.clone()),
                doc_type: match parsed.doc_type {
                    Some(t) => normalize_type(Some(&t)),
                    None => doc_type.clone(),
                },
                id: id.clone(),
                routing: parsed.routing.or_else(|| routing.clone()),
                version,
                seq_no: parsed.seq_no.filter(|v| *v >= 0),
                primary_term: parsed.primary_term.filter(|v| *v >= 0),
                source: Bytes::copy_from_slice(&compact(source.as_bytes())),
            })
        }
        404 if parsed.found == Some(false) => Ok(gone()),
        404 if error_type == Some("index_not_found_exception") => Ok(gone()),
        s if s == 429 || s >= 500 => Err(ReadRepairError::Retryable { status, reason }),
        _ => Err(failed(if reason.is_empty() {
            "unexpected GET response".into()
        } else {
            reason
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index_op(doc_type: Option<&str>, routing: Option<&str>) -> ReplicationOp {
        ReplicationOp::Index {
            index: "tweets".into(),
            doc_type: doc_type.map(Into::into),
            id: "1".into(),
            routing: routing.map(Into::into),
            version: 3,
            seq_no: Some(2),
            primary_term: Some(1),
            source: Bytes::from_static(b"{\"msg\":\"hi\"}"),
        }
    }

    fn delete_op() -> ReplicationOp {
        ReplicationOp::Delete {
            index: "tweets".into(),
            doc_type: None,
            id: "2".into(),
            routing: None,
            version: 5,
        }
    }

    fn body(ops: &[ReplicationOp], target: &ReplayTarget) -> String {
        String::from_utf8(build_replay_bulk(ops, target).unwrap()).unwrap()
    }

    #[test]
    fn documents_typed_doc_on_6_and_later_take_the_index_type_on_5() {
        let es5 = ReplayTarget::new(ClusterVersion::elasticsearch(5, 6));
        assert_eq!(es5.doc_type_for("tweets", Some("_doc")), Some("doc"));
        assert_eq!(es5.doc_type_for("tweets", Some("tweet")), Some("tweet"));
        let es5 = es5.with_index_type("tweets", "tweet");
        assert_eq!(es5.doc_type_for("tweets", Some("_doc")), Some("tweet"));
        let es6 = ReplayTarget::new(ClusterVersion::elasticsearch(6, 8));
        assert_eq!(es6.doc_type_for("tweets", Some("_doc")), Some("_doc"));
        assert_eq!(es6.doc_type_for("tweets", Some("doc")), Some("doc"));
        // A 6.x index holds one type: documents recorded on 5.x as `doc`
        // take it.
        let es6 = es6.with_index_type("tweets", "_doc");
        assert_eq!(es6.doc_type_for("tweets", Some("doc")), Some("_doc"));
        assert_eq!(es6.doc_type_for("other", Some("doc")), Some("doc"));
        let body = body(
            &[index_op(Some("_doc"), None)],
            &ReplayTarget::new(ClusterVersion::elasticsearch(5, 6)),
        );
        assert!(body.contains(r#""_type":"doc""#), "{body}");
    }

    #[test]
    fn documents_of_a_data_stream_are_created_through_the_stream() {
        let target = ReplayTarget::new(ClusterVersion::opensearch(2, 19));
        let created = ReplicationOp::Index {
            index: ".ds-logs-app-000002".into(),
            doc_type: Some("_doc".into()),
            id: "a1".into(),
            routing: Some("r".into()),
            version: 1,
            seq_no: Some(4),
            primary_term: Some(1),
            source: Bytes::from_static(br#"{"@timestamp":"2026-12-08T00:00:00Z"}"#),
        };
        let deleted = ReplicationOp::Delete {
            index: ".ds-logs-app-000001".into(),
            doc_type: None,
            id: "a0".into(),
            routing: None,
            version: 2,
        };
        assert_eq!(
            body(&[created.clone(), deleted], &target),
            concat!(
                "{\"create\":{\"_index\":\"logs-app\",\"_id\":\"a1\",\"routing\":\"r\"}}\n",
                "{\"@timestamp\":\"2026-12-08T00:00:00Z\"}\n",
                "{\"delete\":{\"_index\":\".ds-logs-app-000001\",\"_id\":\"a0\",\"version\":2,\"version_type\":\"external_gte\"}}\n",
            )
        );
        let updated = match created {
            ReplicationOp::Index {
                index,
                doc_type,
                id,
                routing,
                seq_no,
                primary_term,
                source,
                ..
            } => ReplicationOp::Index {
                index,
                doc_type,
                id,
                routing,
                version: 3,
                seq_no,
                primary_term,
                source,
            },
            _ => unreachable!(),
        };
        let refused = build_replay_bulk([&updated], &target).unwrap_err();
        assert!(matches!(
            refused,
            ReplayError::DataStreamUpdate { version: 3, .. }
        ));
        assert!(
            refused.to_string().contains(".ds-logs-app-000002"),
            "{refused}"
        );
    }

    #[test]
    fn a_create_the_backup_already_holds_counts_as_applied() {
        let answer = br#"{"errors":true,"items":[
            {"create":{"_index":".ds-l-000001","_id":"a","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a]: version conflict, document already exists (current version [1])"}}},
            {"create":{"_index":".ds-l-000001","_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},
            {"index":{"_index":"i","_id":"c","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[c]: version conflict, current version [4] is higher or equal to the one provided [2]"}}}]}"#;
        let outcomes = parse_bulk_response_for_replay(answer).unwrap();
        assert_eq!(outcomes[0], ItemOutcome::Applied);
        assert!(matches!(
            outcomes[1],
            ItemOutcome::Failed { status: 400, .. }
        ));
        assert!(matches!(outcomes[2], ItemOutcome::VersionConflict { .. }));
    }

    #[test]
    fn replay_body_for_elasticsearch_5() {
        let target = ReplayTarget::new(ClusterVersion::elasticsearch(5, 6));
        assert_eq!(
            body(&[index_op(Some("tweet"), Some("u1")), delete_op()], &target),
            concat!(
                "{\"index\":{\"_index\":\"tweets\",\"_type\":\"tweet\",\"_id\":\"1\",\"_routing\":\"u1\",\"_version\":3,\"_version_type\":\"external_gte\"}}\n",
                "{\"msg\":\"hi\"}\n",
                "{\"delete\":{\"_index\":\"tweets\",\"_type\":\"doc\",\"_id\":\"2\",\"_version\":5,\"_version_type\":\"external_gte\"}}\n",
            )
        );
    }

    #[test]
    fn replay_body_for_elasticsearch_6() {
        let target = ReplayTarget::new(ClusterVersion::elasticsearch(6, 8));
        assert_eq!(
            body(&[index_op(None, Some("u1")), delete_op()], &target),
            concat!(
                "{\"index\":{\"_index\":\"tweets\",\"_type\":\"_doc\",\"_id\":\"1\",\"routing\":\"u1\",\"version\":3,\"version_type\":\"external_gte\"}}\n",
                "{\"msg\":\"hi\"}\n",
                "{\"delete\":{\"_index\":\"tweets\",\"_type\":\"_doc\",\"_id\":\"2\",\"version\":5,\"version_type\":\"external_gte\"}}\n",
            )
        );
        // A known index type is used whatever the op says: a 6.x index
        // holds one type, and refuses documents of another.
        let target = target.with_index_type("tweets", "tweet");
        let out = body(
            &[index_op(None, None), index_op(Some("other"), None)],
            &target,
        );
        assert!(out.starts_with("{\"index\":{\"_index\":\"tweets\",\"_type\":\"tweet\","));
        assert!(!out.contains("\"_type\":\"other\""), "{out}");
    }

    #[test]
    fn replay_body_for_elasticsearch_7_drops_types() {
        let target = ReplayTarget::new(ClusterVersion::elasticsearch(7, 17))
            .with_index_type("tweets", "tweet");
        assert_eq!(
            body(&[index_op(Some("tweet"), None), delete_op()], &target),
            concat!(
                "{\"index\":{\"_index\":\"tweets\",\"_id\":\"1\",\"version\":3,\"version_type\":\"external_gte\"}}\n",
                "{\"msg\":\"hi\"}\n",
                "{\"delete\":{\"_index\":\"tweets\",\"_id\":\"2\",\"version\":5,\"version_type\":\"external_gte\"}}\n",
            )
        );
    }

    #[test]
    fn replay_body_for_opensearch_2_is_like_7() {
        let os = ReplayTarget::new(ClusterVersion::opensearch(2, 11));
        let es7 = ReplayTarget::new(ClusterVersion::elasticsearch(7, 10));
        let ops = [index_op(Some("tweet"), Some("r")), delete_op()];
        assert_eq!(body(&ops, &os), body(&ops, &es7));
    }

    #[test]
    fn replay_body_escapes_and_compacts() {
        let op = ReplicationOp::Index {
            index: "i".into(),
            doc_type: None,
            id: "a\"b\\c\n✓".into(),
            routing: None,
            version: 1,
            seq_no: None,
            primary_term: None,
            source: Bytes::from_static(b"{\n \"a\": \"x y\"\n}"),
        };
        let out = body(
            &[op],
            &ReplayTarget::new(ClusterVersion::elasticsearch(8, 0)),
        );
        assert_eq!(
            out,
            "{\"index\":{\"_index\":\"i\",\"_id\":\"a\\\"b\\\\c\\n✓\",\"version\":1,\"version_type\":\"external_gte\"}}\n{\"a\":\"x y\"}\n"
        );
        // The body is a valid bulk body for our own parser.
        let items = crate::bulk::parse_bulk(out.as_bytes(), None, None).unwrap();
        assert_eq!(items[0].id.as_deref(), Some("a\"b\\c\n✓"));
        assert_eq!(items[0].version, Some(1));
        assert_eq!(items[0].version_type.as_deref(), Some("external_gte"));
    }

    #[test]
    fn replay_body_refuses_other_ops_and_bad_versions() {
        let target = ReplayTarget::new(ClusterVersion::elasticsearch(7, 17));
        let rr = ReplicationOp::ReadRepair {
            index: "i".into(),
            doc_type: None,
            id: "1".into(),
            routing: None,
            version: 1,
        };
        assert_eq!(
            build_replay_bulk(&[rr], &target),
            Err(ReplayError::NotBulkReplayable {
                kind: "read_repair"
            })
        );
        let neg = ReplicationOp::Delete {
            index: "i".into(),
            doc_type: None,
            id: "1".into(),
            routing: None,
            version: -1,
        };
        assert!(matches!(
            build_replay_bulk(&[neg], &target),
            Err(ReplayError::InvalidVersion { .. })
        ));
        let multi = ReplicationOp::Index {
            index: "i".into(),
            doc_type: None,
            id: "1".into(),
            routing: None,
            version: 1,
            seq_no: None,
            primary_term: None,
            source: Bytes::from_static(b"{\"a\":\"raw\nnewline\"}"),
        };
        assert!(matches!(
            build_replay_bulk(&[multi], &target),
            Err(ReplayError::MultiLineSource { .. })
        ));
        assert_eq!(build_replay_bulk(&[], &target), Ok(Vec::new()));
    }

    #[test]
    fn bulk_outcomes_are_classified() {
        let resp = json!({"errors": true, "items": [
            {"index": {"_index": "i", "_id": "1", "_version": 3, "result": "created", "status": 201}},
            {"index": {"_index": "i", "_id": "2", "status": 409, "error": {"type": "version_conflict_engine_exception",
                "reason": "[2]: version conflict, current version [9] is higher than the one provided [3]"}}},
            {"delete": {"_index": "i", "_id": "3", "_version": 4, "result": "not_found", "status": 404}},
            {"index": {"_index": "i", "_id": "4", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"_index": "i", "_id": "5", "status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
            {"index": {"_index": "i", "_id": "6", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"}}},
            {"index": {"_index": "i", "_id": "7", "status": 403, "error": {"type": "cluster_block_exception", "reason": "index read-only / allow delete (api)"}}},
            {"index": {"_index": "i", "_id": "8", "status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index [i]"}}},
            {"index": {"_index": "i", "_id": "9", "status": 500, "error": "IllegalStateException[boom]"}},
            "garbage",
        ]});
        let outcomes = replay_outcomes(&resp);
        assert_eq!(outcomes.len(), 10);
        assert_eq!(outcomes[0], ItemOutcome::Applied);
        assert_eq!(
            outcomes[1],
            ItemOutcome::VersionConflict { current: Some(9) }
        );
        assert_eq!(outcomes[2], ItemOutcome::Applied);
        assert!(
            matches!(&outcomes[3], ItemOutcome::Retryable { status: 429, reason } if reason.starts_with("es_rejected_execution_exception"))
        );
        assert!(matches!(
            outcomes[4],
            ItemOutcome::Retryable { status: 503, .. }
        ));
        assert_eq!(
            outcomes[5],
            ItemOutcome::Failed {
                status: 400,
                reason: "mapper_parsing_exception: failed to parse field [n]".into()
            }
        );
        assert!(matches!(
            outcomes[6],
            ItemOutcome::Retryable { status: 403, .. }
        ));
        assert!(matches!(
            outcomes[7],
            ItemOutcome::Failed { status: 404, .. }
        ));
        assert!(
            matches!(&outcomes[8], ItemOutcome::Retryable { status: 500, reason } if reason.contains("boom"))
        );
        assert!(matches!(outcomes[9], ItemOutcome::Failed { status: 0, .. }));
        assert!(outcomes[0].counts_as_applied() && !outcomes[1].counts_as_applied());
        assert!(!outcomes[3].counts_as_applied());
        assert!(replay_outcomes(&json!({"error": "x", "status": 429})).is_empty());
        assert!(parse_bulk_response_for_replay(b"<html>").is_err());
    }

    fn replay_outcomes(resp: &Value) -> Vec<ItemOutcome> {
        parse_bulk_response_for_replay(resp.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn filtered_bulk_outcomes_are_classified() {
        // What `REPLAY_BULK_PATH`'s filter_path leaves of an answer: the
        // action key and status, plus the error of failed items.
        let resp = br#"{"items":[{"index":{"status":201}},{"delete":{"status":404}},
            {"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"v","index_uuid":"u","shard":"0","index":"i"}}},
            {"index":{"status":400,"error":{"type":"remote_transport_exception","reason":"a \"quoted\" reason",
                "caused_by":{"type":"es_rejected_execution_exception","reason":"full","caused_by":{"type":"x"}}}}},
            {"delete":{"status":400,"error":{"type":"illegal_argument_exception","reason":"no","caused_by":"text"}}}]}"#;
        assert_eq!(
            parse_bulk_response_for_replay(resp).unwrap(),
            vec![
                ItemOutcome::Applied,
                ItemOutcome::Applied,
                ItemOutcome::VersionConflict { current: None },
                ItemOutcome::Retryable {
                    status: 400,
                    reason: "remote_transport_exception: a \"quoted\" reason".into()
                },
                ItemOutcome::Failed {
                    status: 400,
                    reason: "illegal_argument_exception: no".into()
                },
            ]
        );
        assert!(REPLAY_BULK_PATH.starts_with("/_bulk?filter_path="));
    }

    fn meta(method: Method, path: &str) -> ReplicationOp {
        ReplicationOp::IndexMeta {
            method,
            path: path.into(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn request_outcomes_treat_already_done_as_applied() {
        let exists = json!({"error": {"type": "resource_already_exists_exception", "reason": "index [i/x] already exists"}, "status": 400});
        assert_eq!(
            request_outcome(&meta(Method::PUT, "/i"), 400, &exists),
            ItemOutcome::Applied
        );
        let old_exists = json!({"error": {"type": "index_already_exists_exception", "reason": "exists"}, "status": 400});
        assert_eq!(
            request_outcome(&meta(Method::PUT, "/i"), 400, &old_exists),
            ItemOutcome::Applied
        );
        let missing = json!({"error": {"type": "index_not_found_exception", "reason": "no such index [i]"}, "status": 404});
        assert_eq!(
            request_outcome(&meta(Method::DELETE, "/i"), 404, &missing),
            ItemOutcome::Applied
        );
        assert_eq!(
            request_outcome(&meta(Method::PUT, "/i/_mapping"), 404, &missing),
            ItemOutcome::Failed {
                status: 404,
                reason: "index_not_found_exception: no such index [i]".into()
            }
        );
        assert_eq!(
            request_outcome(
                &meta(Method::PUT, "/i"),
                200,
                &json!({"acknowledged": true})
            ),
            ItemOutcome::Applied
        );
        assert!(matches!(
            request_outcome(
                &meta(Method::PUT, "/i/_settings"),
                503,
                &json!({"error": {"type": "process_cluster_event_timeout_exception"}})
            ),
            ItemOutcome::Retryable { .. }
        ));
    }

    #[test]
    fn query_scoped_with_failures_is_not_applied() {
        let op = ReplicationOp::QueryScoped {
            method: Method::POST,
            path: "/i/_update_by_query".into(),
            body: Bytes::new(),
        };
        assert_eq!(
            request_outcome(&op, 200, &json!({"updated": 3, "failures": []})),
            ItemOutcome::Applied
        );
        assert!(matches!(
            request_outcome(
                &op,
                200,
                &json!({"updated": 2, "failures": [{"cause": {"type": "x"}}]})
            ),
            ItemOutcome::Failed { status: 200, .. }
        ));
        assert!(matches!(
            request_outcome(
                &op,
                409,
                &json!({"failures": [], "error": {"type": "version_conflict_engine_exception"}})
            ),
            ItemOutcome::Failed { status: 409, .. }
        ));
    }

    fn rr(doc_type: Option<&str>, routing: Option<&str>) -> ReplicationOp {
        ReplicationOp::ReadRepair {
            index: "tweets".into(),
            doc_type: doc_type.map(Into::into),
            id: "a/1".into(),
            routing: routing.map(Into::into),
            version: 4,
        }
    }

    #[test]
    fn read_repair_paths_per_version() {
        let es7 = ClusterVersion::elasticsearch(7, 17);
        let es6 = ClusterVersion::elasticsearch(6, 8);
        let es5 = ClusterVersion::elasticsearch(5, 6);
        let os2 = ClusterVersion::opensearch(2, 11);
        assert_eq!(
            read_repair_get_path(&rr(Some("tweet"), None), &es7).unwrap(),
            "/tweets/_doc/a%2F1"
        );
        assert_eq!(
            read_repair_get_path(&rr(None, Some("u 1")), &os2).unwrap(),
            "/tweets/_doc/a%2F1?routing=u%201"
        );
        assert_eq!(
            read_repair_get_path(&rr(Some("tweet"), None), &es6).unwrap(),
            "/tweets/tweet/a%2F1"
        );
        assert_eq!(
            read_repair_get_path(&rr(None, None), &es6).unwrap(),
            "/tweets/_all/a%2F1"
        );
        assert_eq!(
            read_repair_get_path(&rr(None, None), &es5).unwrap(),
            "/tweets/_all/a%2F1"
        );
        assert_eq!(read_repair_get_path(&delete_op(), &es7), None);
    }

    #[test]
    fn read_repair_found_becomes_versioned_index_with_exact_source() {
        let get = br#"{"_index":"tweets","_type":"_doc","_id":"a/1","_version":6,"_seq_no":9,"_primary_term":1,"found":true,"_source":{"big":12345678901234567890123,"f":1.50,"z":1,"a":2}}"#;
        let op = read_repair_op(&rr(None, Some("u1")), 200, get).unwrap();
        assert_eq!(
            op,
            ReplicationOp::Index {
                index: "tweets".into(),
                doc_type: None,
                id: "a/1".into(),
                routing: Some("u1".into()),
                version: 6,
                seq_no: Some(9),
                primary_term: Some(1),
                source: Bytes::from_static(
                    br#"{"big":12345678901234567890123,"f":1.50,"z":1,"a":2}"#
                ),
            }
        );
    }

    #[test]
    fn read_repair_missing_becomes_versioned_delete() {
        let expected = ReplicationOp::Delete {
            index: "tweets".into(),
            doc_type: Some("tweet".into()),
            id: "a/1".into(),
            routing: None,
            version: 4,
        };
        let not_found = br#"{"_index":"tweets","_type":"tweet","_id":"a/1","found":false}"#;
        assert_eq!(
            read_repair_op(&rr(Some("tweet"), None), 404, not_found).unwrap(),
            expected
        );
        let no_index = br#"{"error":{"root_cause":[],"type":"index_not_found_exception","reason":"no such index [tweets]"},"status":404}"#;
        assert_eq!(
            read_repair_op(&rr(Some("tweet"), None), 404, no_index).unwrap(),
            expected
        );
    }

    #[test]
    fn read_repair_errors() {
        let op = rr(None, None);
        let no_source = br#"{"_index":"tweets","_id":"a/1","_version":2,"found":true}"#;
        assert!(matches!(
            read_repair_op(&op, 200, no_source),
            Err(ReadRepairError::Failed { .. })
        ));
        let busy =
            br#"{"error":{"type":"es_rejected_execution_exception","reason":"full"},"status":429}"#;
        assert!(matches!(
            read_repair_op(&op, 429, busy),
            Err(ReadRepairError::Retryable { status: 429, .. })
        ));
        assert!(matches!(
            read_repair_op(&op, 502, b"<html>bad gateway</html>"),
            Err(ReadRepairError::Retryable { .. })
        ));
        assert!(matches!(
            read_repair_op(&op, 200, b"not json"),
            Err(ReadRepairError::Failed { .. })
        ));
        let denied = br#"{"error":{"type":"security_exception","reason":"no"},"status":403}"#;
        assert!(matches!(
            read_repair_op(&op, 403, denied),
            Err(ReadRepairError::Failed { status: 403, .. })
        ));
        assert_eq!(
            read_repair_op(&delete_op(), 200, b"{}"),
            Err(ReadRepairError::NotReadRepair)
        );
    }
}
