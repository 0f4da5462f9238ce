//! A document's current state on either cluster, and what a replay version
//! conflict means. No I/O: the replayer and the reconciler send what these
//! functions build.
//!
//! Replay applies the primary's `_version` with `external_gte`. The backup
//! refuses a write (409 `version_conflict_engine_exception`) when it holds a
//! higher version of the document, live or as a delete tombstone. That has
//! two very different causes:
//!
//! - **older**: the record is stale; the backup already holds a state the
//!   primary did reach (another gateway or the full copy got there first).
//!   The primary's current `_version` is at least the backup's, and the
//!   record of that state will reach the backup too. Skipping is right.
//! - **regression**: the primary's version went *down*. After a delete, the
//!   primary forgets the document's version once its tombstone is pruned
//!   (`index.gc_deletes`, 60 s by default); a re-created document starts
//!   again at `_version` 1 while the backup's tombstone (kept longer on
//!   purpose) is higher, so every replayed write of the new document would
//!   be refused. The same happens when an index is re-created outside the
//!   replay order. Skipping would leave the clusters different.
//!
//! [`classify_conflict`] tells them apart from the primary's current
//! version (one `_mget`, [`version_mget`]); anything it cannot prove older
//! is *reconciled*: the document's state is read from both clusters and
//! the primary's made true on the backup (see the gateway's `reconcile` module).

use bytes::Bytes;
use serde::Deserialize;

use super::classify::normalize_type;
use super::json::{ObjectOr, Scalar, compact, push_str};
use super::ops::ReplicationOp;
use super::version::ClusterVersion;

/// Identifies one document on either cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocKey {
    /// Concrete index.
    pub index: String,
    /// Mapping type (5.x/6.x), when known.
    pub doc_type: Option<String>,
    /// Document id.
    pub id: String,
    /// Routing the client used.
    pub routing: Option<String>,
}

impl DocKey {
    /// The key of a document op (index, delete, read-repair); `None` for
    /// metadata and query-scoped ops.
    pub fn of(op: &ReplicationOp) -> Option<DocKey> {
        match op {
            ReplicationOp::Index {
                index,
                doc_type,
                id,
                routing,
                ..
            }
            | ReplicationOp::Delete {
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
            } => Some(DocKey {
                index: index.clone(),
                doc_type: doc_type.clone(),
                id: id.clone(),
                routing: routing.clone(),
            }),
            ReplicationOp::IndexMeta { .. } | ReplicationOp::QueryScoped { .. } => None,
        }
    }

    /// A read-repair op for this document (what `read_repair_get_path` and
    /// `read_repair_op` take); `version` is only used when the document is
    /// gone.
    pub fn read_repair(&self, version: i64) -> ReplicationOp {
        ReplicationOp::ReadRepair {
            index: self.index.clone(),
            doc_type: self.doc_type.clone(),
            id: self.id.clone(),
            routing: self.routing.clone(),
            version,
        }
    }
}

/// A document as one cluster holds it now.
#[derive(Debug, Clone, PartialEq)]
pub enum DocState {
    /// The document exists.
    Present {
        /// Its `_version`.
        version: i64,
        /// Its `_source`, compacted to one line.
        source: Bytes,
        /// The mapping type the cluster reported (5.x/6.x).
        doc_type: Option<String>,
        /// The routing the cluster reported.
        routing: Option<String>,
    },
    /// The document (or its index) does not exist.
    Absent,
}

impl DocState {
    /// Reads the answer to a read-repair GET turned into an op by
    /// `read_repair_op`: an index op is a present document, a delete an
    /// absent one.
    pub fn from_read_repair(op: ReplicationOp) -> Option<DocState> {
        match op {
            ReplicationOp::Index {
                version,
                source,
                doc_type,
                routing,
                ..
            } => Some(DocState::Present {
                version,
                source,
                doc_type,
                routing,
            }),
            ReplicationOp::Delete { .. } => Some(DocState::Absent),
            _ => None,
        }
    }

    /// The `_version` of a present document.
    pub fn version(&self) -> Option<i64> {
        match self {
            DocState::Present { version, .. } => Some(*version),
            DocState::Absent => None,
        }
    }

    /// Whether both hold the same document: both absent, or both present
    /// with the same JSON `_source` (versions aside). Sources are compared
    /// byte for byte after compaction, then as JSON values, so whitespace
    /// and key order alone do not count as a difference.
    pub fn same_content(&self, other: &DocState) -> bool {
        match (self, other) {
            (DocState::Absent, DocState::Absent) => true,
            (DocState::Present { source: a, .. }, DocState::Present { source: b, .. }) => {
                if compact(a) == compact(b) {
                    return true;
                }
                match (
                    serde_json::from_slice::<serde_json::Value>(a),
                    serde_json::from_slice::<serde_json::Value>(b),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// The op that makes a backup hold this state at `version`: an index
    /// of the document, or a delete when absent.
    pub fn to_op(&self, key: &DocKey, version: i64) -> ReplicationOp {
        match self {
            DocState::Present {
                source,
                doc_type,
                routing,
                ..
            } => ReplicationOp::Index {
                index: key.index.clone(),
                doc_type: doc_type.clone().or_else(|| key.doc_type.clone()),
                id: key.id.clone(),
                routing: routing.clone().or_else(|| key.routing.clone()),
                version,
                seq_no: None,
                primary_term: None,
                source: source.clone(),
            },
            DocState::Absent => ReplicationOp::Delete {
                index: key.index.clone(),
                doc_type: key.doc_type.clone(),
                id: key.id.clone(),
                routing: key.routing.clone(),
                version,
            },
        }
    }
}

/// The primary's current version of one document, from [`version_mget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentVersion {
    /// The document exists at this `_version`.
    Found(i64),
    /// The document or its index does not exist.
    Missing,
    /// The cluster could not tell (shard failure, malformed item).
    Unknown(String),
}

/// What a replay version conflict is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictClass {
    /// The record is older than what the backup holds, and the primary is
    /// at or past the backup's version: skip it.
    Older,
    /// Not provably older: reconcile the document from the primary.
    Reconcile,
}

impl ConflictClass {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ConflictClass::Older => "older",
            ConflictClass::Reconcile => "reconcile",
        }
    }
}

/// Classifies a version conflict from the version the backup reported
/// (`backup_current`, from the conflict's reason) and the primary's
/// current version. Only a primary that holds the document at or past the
/// backup's version proves the record merely older.
pub fn classify_conflict(backup_current: Option<i64>, primary: &CurrentVersion) -> ConflictClass {
    match (backup_current, primary) {
        (Some(backup), CurrentVersion::Found(primary)) if *primary >= backup => {
            ConflictClass::Older
        }
        _ => ConflictClass::Reconcile,
    }
}

/// The backup's current version from a version conflict's reason, e.g.
/// `[1]: version conflict, current version [9] is higher than the one
/// provided [3]` → 9. Same wording on Elasticsearch 5–8 and OpenSearch.
pub fn conflict_current_version(reason: &str) -> Option<i64> {
    let start = reason.find("current version [")? + "current version [".len();
    let end = reason[start..].find(']')? + start;
    reason[start..end].parse().ok()
}

/// Path and body of an `_mget` asking `cluster` for the current version of
/// each of `keys` (no `_source`), answered in order; see
/// [`parse_version_mget`].
pub fn version_mget(keys: &[DocKey], cluster: &ClusterVersion) -> (&'static str, Vec<u8>) {
    (
        "/_mget?realtime=true&filter_path=docs._version,docs.found,docs.error",
        mget_body(keys, cluster, false),
    )
}

/// Path and body of an `_mget` reading each of `keys` whole from `cluster`
/// (version, `_source`, type, routing), answered in order; see
/// [`parse_source_mget`].
pub fn source_mget(keys: &[DocKey], cluster: &ClusterVersion) -> (&'static str, Vec<u8>) {
    ("/_mget?realtime=true", mget_body(keys, cluster, true))
}

fn mget_body(keys: &[DocKey], cluster: &ClusterVersion, source: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 * keys.len() + 16);
    body.extend_from_slice(b"{\"docs\":[");
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"_index\":");
        push_str(&mut body, &key.index);
        if cluster.has_mapping_types()
            && let Some(t) = &key.doc_type
        {
            body.extend_from_slice(b",\"_type\":");
            push_str(&mut body, t);
        }
        body.extend_from_slice(b",\"_id\":");
        push_str(&mut body, &key.id);
        if let Some(r) = &key.routing {
            body.extend_from_slice(b",\"routing\":");
            push_str(&mut body, r);
        }
        if !source {
            body.extend_from_slice(b",\"_source\":false");
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    body
}

#[derive(Deserialize)]
struct SourceMgetAnswer<'a> {
    #[serde(borrow)]
    docs: Option<Vec<SourceMgetDoc<'a>>>,
}

#[derive(Deserialize)]
struct SourceMgetDoc<'a> {
    #[serde(rename = "_id")]
    id: Option<String>,
    #[serde(rename = "_type")]
    doc_type: Option<String>,
    #[serde(rename = "_version")]
    version: Option<i64>,
    #[serde(rename = "_routing")]
    routing: Option<String>,
    found: Option<bool>,
    #[serde(rename = "_source", borrow)]
    source: Option<&'a serde_json::value::RawValue>,
    error: Option<serde_json::Value>,
}

/// Reads the answer to [`source_mget`]: the state of each of `keys`, in
/// order. `Err` when the answer does not pair with `keys` or when a
/// document cannot be read (an error other than a missing index, a
/// document without `_source`): the caller retries or gives up.
pub fn parse_source_mget(body: &[u8], keys: &[DocKey]) -> Result<Vec<DocState>, String> {
    let answer: SourceMgetAnswer<'_> =
        serde_json::from_slice(body).map_err(|e| format!("not an _mget answer: {e}"))?;
    let docs = answer.docs.unwrap_or_default();
    if docs.len() != keys.len() {
        return Err(format!(
            "_mget answered {} documents for {}",
            docs.len(),
            keys.len()
        ));
    }
    docs.into_iter()
        .zip(keys)
        .map(|(doc, key)| {
            if doc.id.as_deref().is_some_and(|id| id != key.id) {
                return Err(format!("_mget answered [{:?}] for [{}]", doc.id, key.id));
            }
            if let Some(error) = doc.error {
                let text = error.to_string();
                if text.contains("index_not_found_exception") {
                    return Ok(DocState::Absent);
                }
                return Err(format!(
                    "[{}]: {}",
                    key.id,
                    text.chars().take(300).collect::<String>()
                ));
            }
            match (doc.found, doc.version) {
                (Some(false), _) => Ok(DocState::Absent),
                (Some(true), Some(version)) if version >= 0 => {
                    let source = doc
                        .source
                        .map(|s| s.get())
                        .filter(|s| s.trim() != "null")
                        .ok_or_else(|| {
                            format!("[{}] has no _source (disabled in the mapping?)", key.id)
                        })?;
                    Ok(DocState::Present {
                        version,
                        source: Bytes::copy_from_slice(&compact(source.as_bytes())),
                        doc_type: normalize_type(doc.doc_type.as_deref())
                            .or_else(|| key.doc_type.clone()),
                        routing: doc.routing.or_else(|| key.routing.clone()),
                    })
                }
                _ => Err(format!("[{}]: no found/_version in the item", key.id)),
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct MgetAnswer<'a> {
    #[serde(borrow)]
    docs: Option<Vec<ObjectOr<'a, MgetDoc>>>,
}

#[derive(Deserialize)]
struct MgetDoc {
    #[serde(rename = "_version")]
    version: Option<i64>,
    found: Option<bool>,
    error: Option<serde_json::Value>,
}

/// Reads the answer to [`version_mget`]: one [`CurrentVersion`] per key, in
/// order. `Err` when the answer is not an `_mget` answer of `expected`
/// documents (the whole request should be retried).
pub fn parse_version_mget(body: &[u8], expected: usize) -> Result<Vec<CurrentVersion>, String> {
    let answer: MgetAnswer<'_> =
        serde_json::from_slice(body).map_err(|e| format!("not an _mget answer: {e}"))?;
    let docs = answer.docs.unwrap_or_default();
    if docs.len() != expected {
        return Err(format!(
            "_mget answered {} documents for {expected}",
            docs.len()
        ));
    }
    Ok(docs
        .into_iter()
        .map(|doc| match doc {
            ObjectOr::Object(doc) => {
                if let Some(error) = doc.error {
                    let text = error.to_string();
                    if text.contains("index_not_found_exception") {
                        return CurrentVersion::Missing;
                    }
                    return CurrentVersion::Unknown(text.chars().take(300).collect());
                }
                match (doc.found, doc.version) {
                    (Some(true), Some(v)) if v >= 0 => CurrentVersion::Found(v),
                    (Some(false), _) => CurrentVersion::Missing,
                    _ => CurrentVersion::Unknown("no found/_version in the item".into()),
                }
            }
            ObjectOr::Scalar(Scalar::Str(s)) => CurrentVersion::Unknown(s.into_owned()),
            ObjectOr::Scalar(_) => CurrentVersion::Unknown("malformed _mget item".into()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn key(id: &str) -> DocKey {
        DocKey {
            index: "tweets".into(),
            doc_type: Some("tweet".into()),
            id: id.into(),
            routing: None,
        }
    }

    #[test]
    fn conflict_reason_yields_the_backups_version() {
        assert_eq!(
            conflict_current_version(
                "version_conflict_engine_exception: [7]: version conflict, current version [9] is higher than the one provided [3]"
            ),
            Some(9)
        );
        assert_eq!(
            conflict_current_version(
                "[tweet][7]: version conflict, current version [12] is higher or equal to the one provided [12]"
            ),
            Some(12)
        );
        assert_eq!(conflict_current_version("version conflict"), None);
        assert_eq!(conflict_current_version("current version [x]"), None);
    }

    #[test]
    fn only_a_primary_at_or_past_the_backup_proves_a_conflict_older() {
        use ConflictClass::*;
        assert_eq!(classify_conflict(Some(5), &CurrentVersion::Found(5)), Older);
        assert_eq!(classify_conflict(Some(5), &CurrentVersion::Found(9)), Older);
        // Deleted and re-created on the primary after its tombstone was
        // pruned: the primary is below the backup's tombstone.
        assert_eq!(
            classify_conflict(Some(5), &CurrentVersion::Found(1)),
            Reconcile
        );
        assert_eq!(
            classify_conflict(Some(5), &CurrentVersion::Missing),
            Reconcile
        );
        assert_eq!(
            classify_conflict(None, &CurrentVersion::Found(9)),
            Reconcile
        );
        assert_eq!(
            classify_conflict(Some(1), &CurrentVersion::Unknown("x".into())),
            Reconcile
        );
    }

    #[test]
    fn version_mget_asks_for_versions_only_spelled_for_the_cluster() {
        let keys = [
            key("1"),
            DocKey {
                routing: Some("u\"1".into()),
                ..key("2")
            },
        ];
        let (path, body) = version_mget(&keys, &ClusterVersion::elasticsearch(6, 8));
        assert!(path.starts_with("/_mget?"));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"docs": [
                {"_index": "tweets", "_type": "tweet", "_id": "1", "_source": false},
                {"_index": "tweets", "_type": "tweet", "_id": "2", "routing": "u\"1", "_source": false},
            ]})
        );
        let (_, body) = version_mget(&keys[..1], &ClusterVersion::elasticsearch(7, 17));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            serde_json::json!({"docs": [{"_index": "tweets", "_id": "1", "_source": false}]})
        );
    }

    #[test]
    fn source_mget_reads_whole_documents_byte_for_byte() {
        let keys = [key("1"), key("2"), key("3")];
        let (path, body) = source_mget(&keys[..1], &ClusterVersion::opensearch(2, 19));
        assert_eq!(path, "/_mget?realtime=true");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            serde_json::json!({"docs": [{"_index": "tweets", "_id": "1"}]})
        );
        let answer = br#"{"docs":[
            {"_index":"tweets","_type":"_doc","_id":"1","_version":4,"found":true,"_source":{"z": 1.50, "a":1}},
            {"_index":"tweets","_id":"2","found":false},
            {"_index":"x","_id":"3","error":{"type":"index_not_found_exception","reason":"no such index [x]"}}]}"#;
        let states = parse_source_mget(answer, &keys).unwrap();
        assert_eq!(
            states[0],
            DocState::Present {
                version: 4,
                source: Bytes::from_static(br#"{"z":1.50,"a":1}"#),
                doc_type: Some("tweet".into()),
                routing: None,
            }
        );
        assert_eq!(states[1..], [DocState::Absent, DocState::Absent]);
        assert!(parse_source_mget(answer, &keys[..2]).is_err());
        let no_source = br#"{"docs":[{"_id":"1","_version":4,"found":true}]}"#;
        assert!(parse_source_mget(no_source, &keys[..1]).is_err());
        let failed = br#"{"docs":[{"_id":"1","error":{"type":"shard_failure","reason":"boom"}}]}"#;
        assert!(
            parse_source_mget(failed, &keys[..1])
                .unwrap_err()
                .contains("boom")
        );
        let unpaired = br#"{"docs":[{"_id":"9","found":false}]}"#;
        assert!(parse_source_mget(unpaired, &keys[..1]).is_err());
    }

    #[test]
    fn version_mget_answers_are_read_in_order() {
        let answer = br#"{"docs":[{"_version":4,"found":true},{"found":false},
            {"error":{"type":"index_not_found_exception","reason":"no such index [x]"}},
            {"error":{"type":"shard_failure","reason":"boom"}}]}"#;
        assert_eq!(
            parse_version_mget(answer, 4).unwrap(),
            vec![
                CurrentVersion::Found(4),
                CurrentVersion::Missing,
                CurrentVersion::Missing,
                CurrentVersion::Unknown(r#"{"reason":"boom","type":"shard_failure"}"#.into()),
            ]
        );
        assert!(parse_version_mget(answer, 3).is_err());
        assert!(parse_version_mget(b"<html>", 1).is_err());
    }

    #[test]
    fn content_is_compared_as_json_not_as_versions() {
        let doc = |version, source: &'static str| DocState::Present {
            version,
            source: Bytes::from_static(source.as_bytes()),
            doc_type: None,
            routing: None,
        };
        assert!(doc(1, r#"{"a":1,"b":2}"#).same_content(&doc(7, r#"{ "b": 2, "a": 1 }"#)));
        assert!(!doc(1, r#"{"a":1}"#).same_content(&doc(1, r#"{"a":2}"#)));
        assert!(!doc(1, r#"{"a":1}"#).same_content(&DocState::Absent));
        assert!(DocState::Absent.same_content(&DocState::Absent));
        let op = doc(3, r#"{"a":1}"#).to_op(&key("1"), 9);
        assert_eq!(op.version(), Some(9));
        assert_eq!(op.kind_name(), "index");
        assert_eq!(DocState::Absent.to_op(&key("1"), 4).kind_name(), "delete");
    }
}
