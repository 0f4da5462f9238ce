//! Replication ops: what the gateway records for the replayer, their queue
//! encoding, and how single-request writes turn into ops.
//!
//! # Queue encoding (format version 1)
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      kind: 1 index, 2 delete, 3 read-repair, 4 index-meta, 5 query-scoped
//! then fields, each: tag (1 byte) | length (LEB128 varint) | payload
//!   1 index (UTF-8)   2 doc_type (UTF-8)   3 id (UTF-8)   4 routing (UTF-8)
//!   5 version (i64 LE, 8 bytes)   6 seq_no (i64 LE)   7 primary_term (i64 LE)
//!   8 source (bytes)   9 method (UTF-8)   10 path (UTF-8)   11 body (bytes)
//! ```
//!
//! Every field is length-prefixed, so a reader can walk a record without
//! knowing its fields. Tags below 128 must be understood: an unknown one is
//! an error. Tags from 128 up are optional extensions a reader may skip, so
//! a later writer can add hints without a format bump. Fields that do not
//! belong to the record's kind, duplicates, missing required fields,
//! invalid UTF-8 and trailing bytes are errors; decoding never panics.

use std::borrow::Cow;

use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::classify::{DocOp, MetaKind, RecordedRequest, RequestClass, normalize_type};
use super::json::{Scalar, compact, is_single_json_value};
use super::uri;

/// The current queue format version, the first byte of every record.
pub const OP_FORMAT_VERSION: u8 = 1;

/// One write the primary accepted, as the replayer needs it. Carries no
/// client credentials: metadata paths are stored in origin form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationOp {
    /// Index the full document with external version `version`.
    Index {
        /// Concrete index (from the primary's response; aliases resolved).
        index: String,
        /// Mapping type the primary reported (5.x/6.x); `None` for `_doc`
        /// and typeless clusters.
        doc_type: Option<String>,
        /// Document id (auto-generated ids included).
        id: String,
        /// Routing the client used.
        routing: Option<String>,
        /// The `_version` the primary assigned.
        version: i64,
        /// The `_seq_no` the primary assigned, where reported (6.0+).
        seq_no: Option<i64>,
        /// The `_primary_term`, where reported (6.0+).
        primary_term: Option<i64>,
        /// The document, one line of JSON.
        source: Bytes,
    },
    /// Delete with external version `version`.
    Delete {
        /// Concrete index.
        index: String,
        /// Mapping type (5.x/6.x).
        doc_type: Option<String>,
        /// Document id.
        id: String,
        /// Routing the client used.
        routing: Option<String>,
        /// The `_version` the primary assigned to the delete.
        version: i64,
    },
    /// Re-read the document from the primary at replay time and index it
    /// (or delete it when gone): partial updates, scripted updates,
    /// pipeline-processed and non-JSON documents.
    ReadRepair {
        /// Concrete index.
        index: String,
        /// Mapping type (5.x/6.x).
        doc_type: Option<String>,
        /// Document id.
        id: String,
        /// Routing the client used.
        routing: Option<String>,
        /// The `_version` the primary reported for the write; a delete
        /// issued because the document is gone uses it.
        version: i64,
    },
    /// An index/cluster metadata write, replayed as a request.
    IndexMeta {
        /// HTTP method.
        method: Method,
        /// `path[?query]`, origin form.
        path: String,
        /// Request body as sent.
        body: Bytes,
    },
    /// `_update_by_query` / `_delete_by_query`, replayed as a request; not
    /// version-fenced.
    QueryScoped {
        /// HTTP method.
        method: Method,
        /// `path[?query]`, origin form.
        path: String,
        /// Request body as sent.
        body: Bytes,
    },
}

/// Why a queue record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpDecodeError {
    /// Zero-length record.
    #[error("empty record")]
    Empty,
    /// Written by a format this build does not know.
    #[error("unsupported op format version {0} (this build reads {OP_FORMAT_VERSION})")]
    UnsupportedFormat(u8),
    /// Unknown op kind byte.
    #[error("unknown op kind {0}")]
    UnknownKind(u8),
    /// The record ends inside a field.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// A field's payload is invalid (bad UTF-8, wrong integer width, bad
    /// method), unknown, duplicated or not valid for the kind.
    #[error("field {tag}: {reason}")]
    BadField {
        /// Field tag.
        tag: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// A field the kind requires is absent.
    #[error("missing required field [{0}]")]
    MissingField(&'static str),
}

/// Why the primary's answer could not be turned into replication ops. The
/// caller must not record anything for the request, and should surface
/// the error (the write was applied on the primary but cannot be
/// replicated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// A bulk response without an `items` array.
    #[error("bulk response has no items array")]
    NoItems,
    /// The response has a different number of items than the request.
    #[error("bulk request has {request} items but the response has {response}")]
    CountMismatch {
        /// Items parsed from the request.
        request: usize,
        /// Items in the response.
        response: usize,
    },
    /// Item `item` of the response is for a different action.
    #[error("bulk item {item}: request action [{request}] but response action [{response}]")]
    ActionMismatch {
        /// 0-based position.
        item: usize,
        /// Action in the request.
        request: &'static str,
        /// Action key in the response.
        response: String,
    },
    /// A successful item or response lacks what replication needs.
    #[error("{}: {reason}", item.map_or_else(|| "response".to_owned(), |i| format!("bulk item {i}")))]
    Malformed {
        /// 0-based bulk position, `None` for a single-request response.
        item: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// [`accepted_single`] was called for a `_bulk` request; use
    /// [`super::bulk::accepted_ops`].
    #[error("a _bulk response must be paired with its items (accepted_ops)")]
    NotSingleWrite,
}

const KIND_INDEX: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_READ_REPAIR: u8 = 3;
const KIND_INDEX_META: u8 = 4;
const KIND_QUERY_SCOPED: u8 = 5;

const F_INDEX: u8 = 1;
const F_DOC_TYPE: u8 = 2;
const F_ID: u8 = 3;
const F_ROUTING: u8 = 4;
const F_VERSION: u8 = 5;
const F_SEQ_NO: u8 = 6;
const F_PRIMARY_TERM: u8 = 7;
const F_SOURCE: u8 = 8;
const F_METHOD: u8 = 9;
const F_PATH: u8 = 10;
const F_BODY: u8 = 11;
const FIRST_OPTIONAL_TAG: u8 = 128;

impl ReplicationOp {
    /// Encodes the op for the queue (see the module docs for the format).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_size_hint());
        match self {
            Self::Index {
                index,
                doc_type,
                id,
                routing,
                version,
                seq_no,
                primary_term,
                source,
            } => {
                w.header(KIND_INDEX);
                w.doc_fields(index, doc_type, id, routing, *version);
                w.opt_i64(F_SEQ_NO, *seq_no);
                w.opt_i64(F_PRIMARY_TERM, *primary_term);
                w.bytes(F_SOURCE, source);
            }
            Self::Delete {
                index,
                doc_type,
                id,
                routing,
                version,
            } => {
                w.header(KIND_DELETE);
                w.doc_fields(index, doc_type, id, routing, *version);
            }
            Self::ReadRepair {
                index,
                doc_type,
                id,
                routing,
                version,
            } => {
                w.header(KIND_READ_REPAIR);
                w.doc_fields(index, doc_type, id, routing, *version);
            }
            Self::IndexMeta { method, path, body } => {
                w.header(KIND_INDEX_META);
                w.request_fields(method, path, body);
            }
            Self::QueryScoped { method, path, body } => {
                w.header(KIND_QUERY_SCOPED);
                w.request_fields(method, path, body);
            }
        }
        w.buf
    }

    fn encoded_size_hint(&self) -> usize {
        64 + match self {
            Self::Index {
                source, index, id, ..
            } => source.len() + index.len() + id.len(),
            Self::Delete { index, id, .. } | Self::ReadRepair { index, id, .. } => {
                index.len() + id.len()
            }
            Self::IndexMeta { path, body, .. } | Self::QueryScoped { path, body, .. } => {
                path.len() + body.len()
            }
        }
    }

    /// Decodes a queue record. Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, OpDecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(OpDecodeError::Empty)?;
        if format != OP_FORMAT_VERSION {
            return Err(OpDecodeError::UnsupportedFormat(format));
        }
        let (&kind, _) = rest.split_first().ok_or(OpDecodeError::Truncated(1))?;
        let allowed: &[u8] = match kind {
            KIND_INDEX => &[
                F_INDEX,
                F_DOC_TYPE,
                F_ID,
                F_ROUTING,
                F_VERSION,
                F_SEQ_NO,
                F_PRIMARY_TERM,
                F_SOURCE,
            ],
            KIND_DELETE | KIND_READ_REPAIR => &[F_INDEX, F_DOC_TYPE, F_ID, F_ROUTING, F_VERSION],
            KIND_INDEX_META | KIND_QUERY_SCOPED => &[F_METHOD, F_PATH, F_BODY],
            other => return Err(OpDecodeError::UnknownKind(other)),
        };
        let fields = Fields::read(bytes, 2, allowed)?;
        let op = match kind {
            KIND_INDEX => Self::Index {
                index: fields.string(F_INDEX, "index")?,
                doc_type: fields.opt_string(F_DOC_TYPE)?,
                id: fields.string(F_ID, "id")?,
                routing: fields.opt_string(F_ROUTING)?,
                version: fields.i64(F_VERSION, "version")?,
                seq_no: fields.opt_i64(F_SEQ_NO)?,
                primary_term: fields.opt_i64(F_PRIMARY_TERM)?,
                source: Bytes::copy_from_slice(
                    fields
                        .raw(F_SOURCE)
                        .ok_or(OpDecodeError::MissingField("source"))?,
                ),
            },
            KIND_DELETE => Self::Delete {
                index: fields.string(F_INDEX, "index")?,
                doc_type: fields.opt_string(F_DOC_TYPE)?,
                id: fields.string(F_ID, "id")?,
                routing: fields.opt_string(F_ROUTING)?,
                version: fields.i64(F_VERSION, "version")?,
            },
            KIND_READ_REPAIR => Self::ReadRepair {
                index: fields.string(F_INDEX, "index")?,
                doc_type: fields.opt_string(F_DOC_TYPE)?,
                id: fields.string(F_ID, "id")?,
                routing: fields.opt_string(F_ROUTING)?,
                version: fields.i64(F_VERSION, "version")?,
            },
            _ => {
                let method = fields.string(F_METHOD, "method")?;
                let method =
                    Method::from_bytes(method.as_bytes()).map_err(|_| OpDecodeError::BadField {
                        tag: F_METHOD,
                        reason: "not an HTTP method",
                    })?;
                let path = fields.string(F_PATH, "path")?;
                let body = Bytes::copy_from_slice(
                    fields
                        .raw(F_BODY)
                        .ok_or(OpDecodeError::MissingField("body"))?,
                );
                if kind == KIND_INDEX_META {
                    Self::IndexMeta { method, path, body }
                } else {
                    Self::QueryScoped { method, path, body }
                }
            }
        };
        Ok(op)
    }

    /// Whether replaying the op is guarded by external versioning, so it
    /// converges whatever order it arrives in: document ops, and by-query
    /// ops (replayed as the version-fenced reconciliation of what they
    /// match, see `crate::by_query`). Metadata ops are not, and are
    /// shown as such in the queue view.
    pub fn version_fenced(&self) -> bool {
        !matches!(self, Self::IndexMeta { .. })
    }

    /// A short stable name for logs, metrics and the queue view.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Index { .. } => "index",
            Self::Delete { .. } => "delete",
            Self::ReadRepair { .. } => "read_repair",
            Self::IndexMeta { .. } => "index_meta",
            Self::QueryScoped { .. } => "query_scoped",
        }
    }

    /// The index the op touches: the concrete index of document ops; for
    /// metadata and query-scoped ops the index expression of the path
    /// (`None` for cluster-wide calls such as `POST /_aliases`).
    pub fn index(&self) -> Option<Cow<'_, str>> {
        match self {
            Self::Index { index, .. }
            | Self::Delete { index, .. }
            | Self::ReadRepair { index, .. } => Some(Cow::Borrowed(index)),
            Self::IndexMeta { path, .. } | Self::QueryScoped { path, .. } => {
                let (path, _) = uri::split_path_query(path);
                let first = uri::raw_segments(path).next()?;
                let first = uri::decode_path_segment(first).ok()?;
                (first == "_all" || !first.starts_with('_')).then_some(Cow::Owned(first))
            }
        }
    }

    /// The document id of document ops.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Index { id, .. } | Self::Delete { id, .. } | Self::ReadRepair { id, .. } => {
                Some(id)
            }
            _ => None,
        }
    }

    /// The primary's `_version` of document ops.
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Index { version, .. }
            | Self::Delete { version, .. }
            | Self::ReadRepair { version, .. } => Some(*version),
            _ => None,
        }
    }

    /// A JSON description for the queue view. Document sources and request
    /// bodies are replaced by their size unless `with_bodies`.
    pub fn describe(&self, with_bodies: bool) -> Value {
        let body_view = |b: &Bytes| -> Value {
            if with_bodies {
                Value::String(String::from_utf8_lossy(b).into_owned())
            } else {
                json!({ "redacted_bytes": b.len() })
            }
        };
        let mut v = json!({
            "kind": self.kind_name(),
            "version_fenced": self.version_fenced(),
        });
        let Some(obj) = v.as_object_mut() else {
            return v;
        };
        match self {
            Self::Index {
                index,
                doc_type,
                id,
                routing,
                version,
                seq_no,
                primary_term,
                source,
            } => {
                describe_doc(obj, index, doc_type, id, routing, *version);
                obj.insert("seq_no".into(), json!(seq_no));
                obj.insert("primary_term".into(), json!(primary_term));
                obj.insert("source".into(), body_view(source));
            }
            Self::Delete {
                index,
                doc_type,
                id,
                routing,
                version,
            }
            | Self::ReadRepair {
                index,
                doc_type,
                id,
                routing,
                version,
            } => describe_doc(obj, index, doc_type, id, routing, *version),
            Self::IndexMeta { method, path, body } | Self::QueryScoped { method, path, body } => {
                obj.insert("method".into(), json!(method.as_str()));
                obj.insert("path".into(), json!(path));
                obj.insert("body".into(), body_view(body));
            }
        }
        v
    }
}

fn describe_doc(
    obj: &mut Map<String, Value>,
    index: &str,
    doc_type: &Option<String>,
    id: &str,
    routing: &Option<String>,
    version: i64,
) {
    obj.insert("index".into(), json!(index));
    obj.insert("type".into(), json!(doc_type));
    obj.insert("id".into(), json!(id));
    obj.insert("routing".into(), json!(routing));
    obj.insert("version".into(), json!(version));
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    fn header(&mut self, kind: u8) {
        self.buf.push(OP_FORMAT_VERSION);
        self.buf.push(kind);
    }

    fn bytes(&mut self, tag: u8, payload: &[u8]) {
        self.buf.push(tag);
        let mut len = payload.len() as u64;
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                self.buf.push(low);
                break;
            }
            self.buf.push(low | 0x80);
        }
        self.buf.extend_from_slice(payload);
    }

    fn opt_str(&mut self, tag: u8, s: &Option<String>) {
        if let Some(s) = s {
            self.bytes(tag, s.as_bytes());
        }
    }

    fn opt_i64(&mut self, tag: u8, v: Option<i64>) {
        if let Some(v) = v {
            self.bytes(tag, &v.to_le_bytes());
        }
    }

    fn doc_fields(
        &mut self,
        index: &str,
        doc_type: &Option<String>,
        id: &str,
        routing: &Option<String>,
        version: i64,
    ) {
        self.bytes(F_INDEX, index.as_bytes());
        self.opt_str(F_DOC_TYPE, doc_type);
        self.bytes(F_ID, id.as_bytes());
        self.opt_str(F_ROUTING, routing);
        self.bytes(F_VERSION, &version.to_le_bytes());
    }

    fn request_fields(&mut self, method: &Method, path: &str, body: &[u8]) {
        self.bytes(F_METHOD, method.as_str().as_bytes());
        self.bytes(F_PATH, path.as_bytes());
        self.bytes(F_BODY, body);
    }
}

/// The fields of one record, as slices into it. At most 11 known tags, so
/// a small array indexed by tag.
struct Fields<'a> {
    by_tag: [Option<&'a [u8]>; 12],
}

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8], mut pos: usize, allowed: &[u8]) -> Result<Self, OpDecodeError> {
        let mut by_tag: [Option<&'a [u8]>; 12] = [None; 12];
        while pos < bytes.len() {
            let tag = bytes[pos];
            pos += 1;
            let mut len: u64 = 0;
            let mut shift = 0u32;
            loop {
                let &b = bytes.get(pos).ok_or(OpDecodeError::Truncated(pos))?;
                pos += 1;
                if shift > 63 || (shift == 63 && b > 1) {
                    return Err(OpDecodeError::BadField {
                        tag,
                        reason: "length does not fit in 64 bits",
                    });
                }
                len |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            let remaining = (bytes.len() - pos) as u64;
            if len > remaining {
                return Err(OpDecodeError::Truncated(bytes.len()));
            }
            let end = pos + len as usize;
            let payload = &bytes[pos..end];
            pos = end;
            if tag >= FIRST_OPTIONAL_TAG {
                continue;
            }
            if !allowed.contains(&tag) {
                return Err(OpDecodeError::BadField {
                    tag,
                    reason: "unknown field or not valid for this kind",
                });
            }
            let slot = &mut by_tag[usize::from(tag)];
            if slot.is_some() {
                return Err(OpDecodeError::BadField {
                    tag,
                    reason: "duplicate field",
                });
            }
            *slot = Some(payload);
        }
        Ok(Self { by_tag })
    }

    fn raw(&self, tag: u8) -> Option<&'a [u8]> {
        self.by_tag.get(usize::from(tag)).copied().flatten()
    }

    fn opt_string(&self, tag: u8) -> Result<Option<String>, OpDecodeError> {
        self.raw(tag)
            .map(|b| {
                std::str::from_utf8(b)
                    .map(str::to_owned)
                    .map_err(|_| OpDecodeError::BadField {
                        tag,
                        reason: "not valid UTF-8",
                    })
            })
            .transpose()
    }

    fn string(&self, tag: u8, name: &'static str) -> Result<String, OpDecodeError> {
        self.opt_string(tag)?
            .ok_or(OpDecodeError::MissingField(name))
    }

    fn opt_i64(&self, tag: u8) -> Result<Option<i64>, OpDecodeError> {
        self.raw(tag)
            .map(|b| {
                <[u8; 8]>::try_from(b).map(i64::from_le_bytes).map_err(|_| {
                    OpDecodeError::BadField {
                        tag,
                        reason: "integer field must be 8 bytes",
                    }
                })
            })
            .transpose()
    }

    fn i64(&self, tag: u8, name: &'static str) -> Result<i64, OpDecodeError> {
        self.opt_i64(tag)?.ok_or(OpDecodeError::MissingField(name))
    }
}

/// What the request said about a document write, for building its op from
/// the primary's per-document result.
pub(crate) struct DocWriteRequest<'a> {
    pub(crate) op: DocOp,
    pub(crate) doc_type: Option<&'a str>,
    pub(crate) routing: Option<&'a str>,
    /// For index/create: the document when it can be replayed verbatim
    /// (single-line JSON, no pipeline). `None` means read-repair.
    pub(crate) index_source: Option<Bytes>,
}

/// The fields of a document write result the gateway reads: a `_bulk`
/// answer item's body or a single-document write answer. Strings borrow
/// from the answer; every other field is skipped without being built.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DocResult<'a> {
    /// `_index`: the concrete index (aliases resolved).
    #[serde(rename = "_index", borrow)]
    pub(crate) index: Option<Scalar<'a>>,
    /// `_type` (5.x/6.x).
    #[serde(rename = "_type", borrow)]
    pub(crate) doc_type: Option<Scalar<'a>>,
    /// `_id` (auto-generated ids are known here).
    #[serde(rename = "_id", borrow)]
    pub(crate) id: Option<Scalar<'a>>,
    /// `_version` assigned by the primary.
    #[serde(rename = "_version", borrow)]
    pub(crate) version: Option<Scalar<'a>>,
    /// `_seq_no` (6.x+).
    #[serde(rename = "_seq_no", borrow)]
    pub(crate) seq_no: Option<Scalar<'a>>,
    /// `_primary_term` (6.x+).
    #[serde(rename = "_primary_term", borrow)]
    pub(crate) primary_term: Option<Scalar<'a>>,
    /// `result`: `created`, `updated`, `deleted`, `noop`, `not_found`.
    #[serde(borrow)]
    pub(crate) result: Option<Scalar<'a>>,
    /// The item's HTTP status (`_bulk` items only).
    #[serde(borrow)]
    pub(crate) status: Option<Scalar<'a>>,
}

/// Builds the op for one successful (2xx) document write result: a bulk
/// item body or a single-request response. `None` for a `noop` update.
pub(crate) fn doc_op_from_result(
    req: &DocWriteRequest<'_>,
    result: &DocResult<'_>,
    item: Option<usize>,
) -> Result<Option<ReplicationOp>, AcceptError> {
    let malformed = |reason: String| AcceptError::Malformed { item, reason };
    let outcome = result.result.as_ref().and_then(Scalar::as_str);
    if req.op == DocOp::Update && outcome == Some("noop") {
        return Ok(None);
    }
    let text = |field: &Option<Scalar<'_>>, key: &str| -> Result<String, AcceptError> {
        match field.as_ref().and_then(Scalar::as_str) {
            Some(s) => Ok(s.to_owned()),
            None => Err(malformed(format!("accepted write has no string [{key}]"))),
        }
    };
    let index = text(&result.index, "_index")?;
    let id = text(&result.id, "_id")?;
    let version = match result.version.as_ref().and_then(Scalar::as_i64) {
        Some(v) if v >= 0 => v,
        _ => return Err(malformed("accepted write has no valid [_version]".into())),
    };
    let non_negative =
        |field: &Option<Scalar<'_>>| field.as_ref().and_then(Scalar::as_i64).filter(|v| *v >= 0);
    let doc_type = match result.doc_type.as_ref().and_then(Scalar::as_str) {
        Some(t) => normalize_type(Some(t)),
        None => normalize_type(req.doc_type),
    };
    let routing = req.routing.map(str::to_owned);
    let op = match (req.op, &req.index_source) {
        (DocOp::Delete, _) => ReplicationOp::Delete {
            index,
            doc_type,
            id,
            routing,
            version,
        },
        (DocOp::Index | DocOp::Create, Some(source)) => ReplicationOp::Index {
            index,
            doc_type,
            id,
            routing,
            version,
            seq_no: non_negative(&result.seq_no),
            primary_term: non_negative(&result.primary_term),
            source: source.clone(),
        },
        (DocOp::Index | DocOp::Create | DocOp::Update, _) => ReplicationOp::ReadRepair {
            index,
            doc_type,
            id,
            routing,
            version,
        },
    };
    Ok(Some(op))
}

/// Turns the primary's answer to a single-document, metadata or
/// query-scoped write into the op to record; `Ok(None)` when there is
/// nothing to replay.
///
/// Nothing is recorded unless `status` is 2xx. For document writes the
/// final `_index` (aliases resolved), `_id` (auto ids), `_version`,
/// `_seq_no` and `_primary_term` come from `response`; a `noop` update
/// records nothing; an index/create whose body is not one JSON value, or
/// that went through `?pipeline=`, becomes read-repair. A 2xx response
/// that is not a document-write result at all (`POST /idx/_doc/_search` is
/// a typed search before 8.x) records nothing, while one that looks like a
/// write result but lacks `_index`/`_id`/`_version` is an error.
///
/// Metadata ops replay the request as sent, except: a rollover records the
/// index it actually created (`new_index`) without its `conditions` (and
/// nothing if it did not roll over or was a dry run), and a create-index
/// with date math records the concrete name from the response's `index`.
///
/// `_bulk` requests are an error here: pair them with
/// [`super::bulk::accepted_ops`].
pub fn accepted_single(
    class: &RequestClass,
    request_body: &[u8],
    status: u16,
    response: &Value,
) -> Result<Option<ReplicationOp>, AcceptError> {
    if let RequestClass::Bulk(_) = class {
        return Err(AcceptError::NotSingleWrite);
    }
    if !(200..300).contains(&status) {
        return Ok(None);
    }
    match class {
        RequestClass::DocWrite(write) => {
            let Some(result) = response.as_object() else {
                return Err(AcceptError::Malformed {
                    item: None,
                    reason: "response is not a JSON object".into(),
                });
            };
            if !["_version", "result", "_id"]
                .iter()
                .any(|k| result.contains_key(*k))
            {
                return Ok(None);
            }
            let index_source = match write.op {
                DocOp::Index | DocOp::Create if write.pipeline.is_none() => {
                    let compacted = compact(request_body);
                    is_single_json_value(&compacted).then(|| Bytes::copy_from_slice(&compacted))
                }
                _ => None,
            };
            let req = DocWriteRequest {
                op: write.op,
                doc_type: write.doc_type.as_deref(),
                routing: write.routing.as_deref(),
                index_source,
            };
            // Every field is read leniently: reading a `Value` object
            // cannot fail.
            let result = DocResult::deserialize(response).map_err(|e| AcceptError::Malformed {
                item: None,
                reason: e.to_string(),
            })?;
            doc_op_from_result(&req, &result, None)
        }
        RequestClass::IndexMeta { kind, request, .. } => {
            accepted_meta(*kind, request, request_body, response)
        }
        RequestClass::QueryScoped { .. } => Ok(query_scoped_op(class, request_body)),
        _ => Ok(None),
    }
}

/// The op that records a by-query write, `None` for other classes.
///
/// Its replay reconciles the documents the query matches (see
/// `crate::by_query`), which is right whether the primary's run
/// changed all, some or none of them. So a run that may have stopped part
/// way (a 409 on a version conflict, a 5xx, a connection broken after
/// sending) is recorded too, not only a 2xx.
pub fn query_scoped_op(class: &RequestClass, request_body: &[u8]) -> Option<ReplicationOp> {
    match class {
        RequestClass::QueryScoped { request, .. } => Some(ReplicationOp::QueryScoped {
            method: request.method.clone(),
            path: request.path.clone(),
            body: Bytes::copy_from_slice(request_body),
        }),
        _ => None,
    }
}

fn accepted_meta(
    kind: MetaKind,
    request: &RecordedRequest,
    body: &[u8],
    response: &Value,
) -> Result<Option<ReplicationOp>, AcceptError> {
    let meta = |path: String, body: Bytes| {
        Ok(Some(ReplicationOp::IndexMeta {
            method: request.method.clone(),
            path,
            body,
        }))
    };
    let (path, query) = uri::split_path_query(&request.path);
    let first_segment = uri::raw_segments(path).next().unwrap_or_default();
    match kind {
        MetaKind::Rollover => {
            if response.get("dry_run").and_then(Value::as_bool) == Some(true)
                || response.get("rolled_over").and_then(Value::as_bool) == Some(false)
            {
                return Ok(None);
            }
            let Some(new_index) = response.get("new_index").and_then(Value::as_str) else {
                return Err(AcceptError::Malformed {
                    item: None,
                    reason: "rollover response has no [new_index]".into(),
                });
            };
            let query = query.map(|q| {
                q.split('&')
                    .filter(|p| p.split('=').next() != Some("dry_run"))
                    .collect::<Vec<_>>()
                    .join("&")
            });
            // A data stream's rollover is recorded with its new backing
            // index too: the replayer brings the backup's stream to that
            // generation (see `crate::data_stream`).
            let path = with_query(
                format!(
                    "/{first_segment}/_rollover/{}",
                    uri::encode_path_segment(new_index)
                ),
                query.as_deref(),
            );
            let body = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(mut obj)) => {
                    // The primary already decided; the backup must roll over
                    // unconditionally, to the same index name.
                    obj.remove("conditions");
                    Bytes::from(serde_json::to_vec(&obj).unwrap_or_else(|_| body.to_vec()))
                }
                _ => Bytes::copy_from_slice(body),
            };
            meta(path, body)
        }
        MetaKind::CreateIndex => {
            let concrete = response.get("index").and_then(Value::as_str);
            let requested = uri::decode_path_segment(first_segment).ok();
            let path = match concrete {
                Some(name) if Some(name) != requested.as_deref() => {
                    with_query(format!("/{}", uri::encode_path_segment(name)), query)
                }
                _ => request.path.clone(),
            };
            meta(path, Bytes::copy_from_slice(body))
        }
        _ => meta(request.path.clone(), Bytes::copy_from_slice(body)),
    }
}

fn with_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::DocWrite;
    use crate::classify::classify;

    fn samples() -> Vec<ReplicationOp> {
        vec![
            ReplicationOp::Index {
                index: "logs-000001".into(),
                doc_type: Some("tweet".into()),
                id: "日本/1".into(),
                routing: Some("r".into()),
                version: 7,
                seq_no: Some(41),
                primary_term: Some(2),
                source: Bytes::from_static(b"{\"msg\":\"hello\\nworld\",\"n\":1.50}"),
            },
            ReplicationOp::Index {
                index: "a".into(),
                doc_type: None,
                id: "1".into(),
                routing: None,
                version: 1,
                seq_no: None,
                primary_term: None,
                source: Bytes::new(),
            },
            ReplicationOp::Delete {
                index: "a".into(),
                doc_type: None,
                id: "x".into(),
                routing: None,
                version: i64::MAX,
            },
            ReplicationOp::ReadRepair {
                index: "a".into(),
                doc_type: Some("doc".into()),
                id: "".into(),
                routing: Some("".into()),
                version: 0,
            },
            ReplicationOp::IndexMeta {
                method: Method::PUT,
                path: "/idx?include_type_name=true".into(),
                body: Bytes::from_static(b"{\"mappings\":{}}"),
            },
            ReplicationOp::QueryScoped {
                method: Method::POST,
                path: "/a,b/_delete_by_query?conflicts=proceed".into(),
                body: Bytes::from(vec![b'x'; 300]),
            },
        ]
    }

    #[test]
    fn encode_decode_round_trips() {
        for op in samples() {
            let encoded = op.encode();
            assert_eq!(encoded[0], OP_FORMAT_VERSION);
            assert_eq!(ReplicationOp::decode(&encoded).unwrap(), op);
        }
    }

    #[test]
    fn decode_rejects_every_truncation_and_never_panics_on_bit_flips() {
        for op in samples() {
            let encoded = op.encode();
            // The last field of every kind is required, so no strict prefix
            // of a record is a record.
            for len in 0..encoded.len() {
                assert!(
                    ReplicationOp::decode(&encoded[..len]).is_err(),
                    "{op:?} cut at {len}"
                );
            }
            for i in 0..encoded.len() {
                for bit in 0..8 {
                    let mut flipped = encoded.clone();
                    flipped[i] ^= 1 << bit;
                    let _ = ReplicationOp::decode(&flipped);
                }
            }
        }
    }

    #[test]
    fn decode_survives_random_garbage() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 && !buf.is_empty() {
                buf[0] = OP_FORMAT_VERSION;
            }
            let _ = ReplicationOp::decode(&buf);
        }
    }

    #[test]
    fn decode_errors_are_specific() {
        assert_eq!(ReplicationOp::decode(&[]), Err(OpDecodeError::Empty));
        assert_eq!(
            ReplicationOp::decode(&[9, 1]),
            Err(OpDecodeError::UnsupportedFormat(9))
        );
        assert_eq!(
            ReplicationOp::decode(&[1]),
            Err(OpDecodeError::Truncated(1))
        );
        assert_eq!(
            ReplicationOp::decode(&[1, 99]),
            Err(OpDecodeError::UnknownKind(99))
        );
        assert_eq!(
            ReplicationOp::decode(&[1, KIND_DELETE]),
            Err(OpDecodeError::MissingField("index"))
        );
        // A length running past the end.
        assert_eq!(
            ReplicationOp::decode(&[1, KIND_DELETE, F_INDEX, 5, b'a']),
            Err(OpDecodeError::Truncated(5))
        );
        // A source field on a delete.
        assert!(matches!(
            ReplicationOp::decode(&[1, KIND_DELETE, F_SOURCE, 0]),
            Err(OpDecodeError::BadField { tag: F_SOURCE, .. })
        ));
        // Duplicate field.
        assert!(matches!(
            ReplicationOp::decode(&[1, KIND_DELETE, F_INDEX, 1, b'a', F_INDEX, 1, b'b']),
            Err(OpDecodeError::BadField { tag: F_INDEX, .. })
        ));
        // Varint longer than 64 bits.
        let mut long = vec![1, KIND_DELETE, F_INDEX];
        long.extend([0xff; 11]);
        assert!(matches!(
            ReplicationOp::decode(&long),
            Err(OpDecodeError::BadField { .. })
        ));
        // Trailing junk that is not a whole field.
        let mut with_tail = samples()[2].encode();
        with_tail.push(F_INDEX);
        assert!(matches!(
            ReplicationOp::decode(&with_tail),
            Err(OpDecodeError::Truncated(_))
        ));
    }

    #[test]
    fn unknown_optional_fields_are_skipped() {
        let op = samples()[2].clone();
        let mut encoded = op.encode();
        encoded.extend([200, 3, b'a', b'b', b'c']);
        assert_eq!(ReplicationOp::decode(&encoded).unwrap(), op);
    }

    #[test]
    fn kinds_fencing_and_index() {
        let ops = samples();
        let names: Vec<_> = ops.iter().map(ReplicationOp::kind_name).collect();
        assert_eq!(
            names,
            [
                "index",
                "index",
                "delete",
                "read_repair",
                "index_meta",
                "query_scoped"
            ]
        );
        let fenced: Vec<_> = ops.iter().map(ReplicationOp::version_fenced).collect();
        assert_eq!(fenced, [true, true, true, true, false, true]);
        assert_eq!(ops[0].index().as_deref(), Some("logs-000001"));
        assert_eq!(ops[4].index().as_deref(), Some("idx"));
        assert_eq!(ops[5].index().as_deref(), Some("a,b"));
        let aliases = ReplicationOp::IndexMeta {
            method: Method::POST,
            path: "/_aliases".into(),
            body: Bytes::new(),
        };
        assert_eq!(aliases.index(), None);
        assert_eq!(ops[2].version(), Some(i64::MAX));
        assert_eq!(ops[4].id(), None);
    }

    #[test]
    fn describe_redacts_bodies_by_default() {
        let op = &samples()[0];
        let redacted = op.describe(false);
        assert_eq!(
            redacted["source"],
            json!({"redacted_bytes": op_source_len(op)})
        );
        assert_eq!(redacted["kind"], "index");
        assert_eq!(redacted["version_fenced"], true);
        let full = op.describe(true);
        assert!(full["source"].as_str().unwrap().contains("hello"));
    }

    fn op_source_len(op: &ReplicationOp) -> usize {
        match op {
            ReplicationOp::Index { source, .. } => source.len(),
            _ => 0,
        }
    }

    fn class(method: Method, target: &str) -> RequestClass {
        let (path, query) = uri::split_path_query(target);
        classify(&method, path, query)
    }

    #[test]
    fn single_index_takes_id_and_version_from_response_and_compacts_source() {
        let c = class(Method::POST, "/alias/_doc?routing=u1");
        let body = b"{\n  \"title\": \"a b\",\n  \"n\": 1\n}\n";
        let resp = json!({"_index": "idx-2", "_type": "_doc", "_id": "auto1", "_version": 1,
            "result": "created", "_seq_no": 5, "_primary_term": 3});
        let op = accepted_single(&c, body, 201, &resp).unwrap().unwrap();
        assert_eq!(
            op,
            ReplicationOp::Index {
                index: "idx-2".into(),
                doc_type: None,
                id: "auto1".into(),
                routing: Some("u1".into()),
                version: 1,
                seq_no: Some(5),
                primary_term: Some(3),
                source: Bytes::from_static(b"{\"title\":\"a b\",\"n\":1}"),
            }
        );
    }

    #[test]
    fn single_writes_are_recorded_only_when_accepted() {
        let c = class(Method::PUT, "/idx/_doc/1");
        let conflict =
            json!({"error": {"type": "version_conflict_engine_exception"}, "status": 409});
        assert_eq!(accepted_single(&c, b"{}", 409, &conflict), Ok(None));
        let c = class(Method::DELETE, "/idx/_doc/1");
        let missing = json!({"_index": "idx", "_id": "1", "_version": 2, "result": "not_found"});
        assert_eq!(accepted_single(&c, b"", 404, &missing), Ok(None));
        let deleted = json!({"_index": "idx", "_id": "1", "_version": 3, "result": "deleted"});
        assert_eq!(
            accepted_single(&c, b"", 200, &deleted).unwrap(),
            Some(ReplicationOp::Delete {
                index: "idx".into(),
                doc_type: None,
                id: "1".into(),
                routing: None,
                version: 3
            })
        );
    }

    #[test]
    fn single_update_is_read_repair_unless_noop() {
        let c = class(Method::POST, "/idx/tweet/1/_update");
        let updated = json!({"_index": "idx", "_type": "tweet", "_id": "1", "_version": 4, "result": "updated"});
        assert_eq!(
            accepted_single(&c, b"{\"doc\":{}}", 200, &updated).unwrap(),
            Some(ReplicationOp::ReadRepair {
                index: "idx".into(),
                doc_type: Some("tweet".into()),
                id: "1".into(),
                routing: None,
                version: 4
            })
        );
        let noop =
            json!({"_index": "idx", "_type": "tweet", "_id": "1", "_version": 4, "result": "noop"});
        assert_eq!(accepted_single(&c, b"{\"doc\":{}}", 200, &noop), Ok(None));
    }

    #[test]
    fn single_pipeline_or_non_json_body_is_read_repair() {
        let resp = json!({"_index": "idx", "_id": "1", "_version": 1, "result": "created"});
        let c = class(Method::PUT, "/idx/_doc/1?pipeline=geo");
        assert!(matches!(
            accepted_single(&c, b"{}", 201, &resp),
            Ok(Some(ReplicationOp::ReadRepair { .. }))
        ));
        let c = class(Method::PUT, "/idx/_doc/1");
        assert!(matches!(
            accepted_single(&c, b"title: yaml\n", 201, &resp),
            Ok(Some(ReplicationOp::ReadRepair { .. }))
        ));
    }

    #[test]
    fn typed_search_on_doc_type_records_nothing_but_broken_write_results_are_errors() {
        let c = class(Method::POST, "/idx/_doc/_search");
        assert!(matches!(c, RequestClass::DocWrite(DocWrite { .. })));
        let search = json!({"took": 1, "hits": {"total": 0, "hits": []}});
        assert_eq!(accepted_single(&c, b"{}", 200, &search), Ok(None));
        let broken = json!({"_id": "1", "result": "created"});
        assert!(matches!(
            accepted_single(&c, b"{}", 201, &broken),
            Err(AcceptError::Malformed { item: None, .. })
        ));
    }

    #[test]
    fn bulk_class_is_refused() {
        let c = class(Method::POST, "/_bulk");
        assert_eq!(
            accepted_single(&c, b"", 200, &json!({"items": []})),
            Err(AcceptError::NotSingleWrite)
        );
        assert_eq!(
            accepted_single(&RequestClass::Read, b"", 200, &json!({})),
            Ok(None)
        );
    }

    #[test]
    fn index_meta_is_recorded_as_sent() {
        let c = class(Method::PUT, "/idx/_mapping?include_type_name=false");
        let body = b"{\"properties\":{\"a\":{\"type\":\"keyword\"}}}";
        assert_eq!(
            accepted_single(&c, body, 200, &json!({"acknowledged": true})).unwrap(),
            Some(ReplicationOp::IndexMeta {
                method: Method::PUT,
                path: "/idx/_mapping?include_type_name=false".into(),
                body: Bytes::from_static(body),
            })
        );
        let err = json!({"error": {"type": "illegal_argument_exception"}, "status": 400});
        assert_eq!(accepted_single(&c, body, 400, &err), Ok(None));
    }

    #[test]
    fn create_index_with_date_math_records_the_concrete_name() {
        let c = class(
            Method::PUT,
            "/%3Clogs-%7Bnow%2Fd%7D%3E?wait_for_active_shards=1",
        );
        let resp =
            json!({"acknowledged": true, "shards_acknowledged": true, "index": "logs-2024.05.01"});
        let Some(ReplicationOp::IndexMeta { path, .. }) =
            accepted_single(&c, b"{}", 200, &resp).unwrap()
        else {
            panic!("expected IndexMeta");
        };
        assert_eq!(path, "/logs-2024.05.01?wait_for_active_shards=1");
        let c = class(Method::PUT, "/plain");
        let resp = json!({"acknowledged": true, "index": "plain"});
        let Some(ReplicationOp::IndexMeta { path, .. }) =
            accepted_single(&c, b"", 200, &resp).unwrap()
        else {
            panic!("expected IndexMeta");
        };
        assert_eq!(path, "/plain");
    }

    #[test]
    fn rollover_records_the_new_index_without_conditions() {
        let c = class(
            Method::POST,
            "/logs-write/_rollover?dry_run=false&wait_for_active_shards=1",
        );
        let body = br#"{"conditions":{"max_docs":1000},"settings":{"index.number_of_shards":2}}"#;
        let rolled = json!({"acknowledged": true, "old_index": "logs-000001",
            "new_index": "logs-000002", "rolled_over": true, "dry_run": false});
        let op = accepted_single(&c, body, 200, &rolled).unwrap().unwrap();
        assert_eq!(
            op,
            ReplicationOp::IndexMeta {
                method: Method::POST,
                path: "/logs-write/_rollover/logs-000002?wait_for_active_shards=1".into(),
                body: Bytes::from_static(br#"{"settings":{"index.number_of_shards":2}}"#),
            }
        );
        let not_rolled =
            json!({"new_index": "logs-000002", "rolled_over": false, "dry_run": false});
        assert_eq!(accepted_single(&c, body, 200, &not_rolled), Ok(None));
        let dry = json!({"new_index": "logs-000002", "rolled_over": false, "dry_run": true});
        assert_eq!(accepted_single(&c, body, 200, &dry), Ok(None));
    }

    #[test]
    fn query_scoped_is_recorded_as_sent() {
        let c = class(Method::POST, "/idx/_delete_by_query?conflicts=proceed");
        let body = br#"{"query":{"term":{"a":1}}}"#;
        let resp = json!({"took": 5, "deleted": 3, "failures": []});
        assert_eq!(
            accepted_single(&c, body, 200, &resp).unwrap(),
            Some(ReplicationOp::QueryScoped {
                method: Method::POST,
                path: "/idx/_delete_by_query?conflicts=proceed".into(),
                body: Bytes::from_static(body),
            })
        );
    }
}
