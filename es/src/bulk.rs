//! `_bulk` request parsing, and pairing of a bulk request with the
//! primary's response to find the items it accepted.
//!
//! Parsing follows Elasticsearch's `BulkRequestParser`: lines are split on
//! `\n`, blank lines are skipped, a trailing `\r` on a source line is
//! dropped, `index`/`create`/`update` take the next line as their body, and
//! a body that does not end with `\n` is rejected with Elasticsearch's own
//! message. Line numbers in errors are 1-based physical lines, like
//! Elasticsearch's. Only the JSON (NDJSON) format is understood; a gateway
//! must not feed SMILE/CBOR bulk bodies here.

use std::ops::Range;

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub use super::bulk_answer::BulkResponse;
pub use super::classify::BulkDefaults;
use super::classify::{DocOp, pipeline_param};
use super::json::{ObjectOr, Scalar, SingleKey, is_single_json_value};
use super::ops::{AcceptError, DocWriteRequest, ReplicationOp, doc_op_from_result};

/// One action of a bulk request, with its metadata and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    /// `index`, `create`, `update` or `delete` (`index` with
    /// `"op_type":"create"` is reported as `create`).
    pub action: DocOp,
    /// `_index` of the item, else the URL's index.
    pub index: String,
    /// `_type` of the item, else the URL's type, as sent.
    pub doc_type: Option<String>,
    /// `_id`; `None` for auto-generated ids (the primary's response has it).
    pub id: Option<String>,
    /// `routing`/`_routing`, else `parent`/`_parent`, else the URL default.
    pub routing: Option<String>,
    /// `parent`/`_parent` (5.x/6.x parent-child), as sent.
    pub parent: Option<String>,
    /// Client-supplied `version`/`_version` (noted; the primary's resulting
    /// `_version` is what gets replayed).
    pub version: Option<i64>,
    /// Client-supplied `version_type`/`_version_type`.
    pub version_type: Option<String>,
    /// Client-supplied `if_seq_no` (optimistic concurrency on the primary).
    pub if_seq_no: Option<i64>,
    /// Client-supplied `if_primary_term`.
    pub if_primary_term: Option<i64>,
    /// Ingest pipeline of the item, else the URL default; `_none` → `None`.
    pub pipeline: Option<String>,
    /// The body line without its line terminator: the document for
    /// `index`/`create`, the update request for `update`; `None` for
    /// `delete`.
    pub source: Option<Bytes>,
    /// 1-based line number of the action line.
    pub line: usize,
    /// Byte range of the item in the request body: the action line through
    /// the end of the body line, terminators included.
    pub range: Range<usize>,
}

/// Why a bulk body could not be parsed. Each variant names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// The action line is not a JSON object of the form `{"action":{...}}`,
    /// or one of its metadata values has the wrong shape.
    #[error("Malformed action/metadata line [{line}]: {reason}")]
    MalformedAction {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The action is not `index`, `create`, `update` or `delete`.
    #[error(
        "Malformed action/metadata line [{line}], expected field [create], [delete], [index] or [update] but found [{action}]"
    )]
    UnknownAction {
        /// 1-based line number.
        line: usize,
        /// The action name found.
        action: String,
    },
    /// `index`, `create` or `update` is the last line: its body is missing.
    #[error("action [{}] on line [{line}] is not followed by a source line", action.as_str())]
    MissingSource {
        /// 1-based line number of the action line.
        line: usize,
        /// The action.
        action: DocOp,
    },
    /// Neither the item nor the URL names an index.
    #[error("action on line [{line}] names no _index and the request path has none")]
    MissingIndex {
        /// 1-based line number.
        line: usize,
    },
    /// `delete` and `update` need an `_id`.
    #[error("action [{}] on line [{line}] has no _id", action.as_str())]
    MissingId {
        /// 1-based line number.
        line: usize,
        /// The action.
        action: DocOp,
    },
    /// Bytes follow the last `\n` (Elasticsearch 7+ rejects this).
    #[error("The bulk request must be terminated by a newline [\\n]")]
    MissingFinalNewline,
}

/// Parses an NDJSON `_bulk` body with the URL's default index and type.
///
/// Copies `body` once; use [`parse_bulk_bytes`] to share an existing
/// buffer instead.
pub fn parse_bulk(
    body: &[u8],
    default_index: Option<&str>,
    default_type: Option<&str>,
) -> Result<Vec<BulkItem>, BulkError> {
    let defaults = BulkDefaults {
        index: default_index.map(str::to_owned),
        doc_type: default_type.map(str::to_owned),
        routing: None,
        pipeline: None,
    };
    parse_bulk_bytes(&Bytes::copy_from_slice(body), &defaults)
}

/// Parses an NDJSON `_bulk` body; item sources are zero-copy slices of
/// `body`.
pub fn parse_bulk_bytes(body: &Bytes, defaults: &BulkDefaults) -> Result<Vec<BulkItem>, BulkError> {
    // Two lines per item at most (deletes have one): sized once, so the
    // items (a few hundred bytes each) are never moved by growth.
    let mut items = Vec::with_capacity(memchr::memchr_iter(b'\n', body).count() / 2 + 1);
    let mut lines = Lines {
        data: body,
        pos: 0,
        line: 0,
    };
    while let Some(action_line) = lines.next_line()? {
        let raw = &body[action_line.clone()];
        if raw.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            continue;
        }
        let line = lines.line;
        let meta = parse_action_line(raw, line, defaults)?;
        let (source, end) = if meta.action == DocOp::Delete {
            (None, lines.pos)
        } else {
            let Some(source_line) = lines.next_line()? else {
                return Err(BulkError::MissingSource {
                    line,
                    action: meta.action,
                });
            };
            let mut source_end = source_line.end;
            if source_end > source_line.start && body[source_end - 1] == b'\r' {
                source_end -= 1;
            }
            (Some(body.slice(source_line.start..source_end)), lines.pos)
        };
        items.push(BulkItem {
            action: meta.action,
            index: meta.index,
            doc_type: meta.doc_type,
            id: meta.id,
            routing: meta.routing,
            parent: meta.parent,
            version: meta.version,
            version_type: meta.version_type,
            if_seq_no: meta.if_seq_no,
            if_primary_term: meta.if_primary_term,
            pipeline: meta.pipeline,
            source,
            line,
            range: action_line.start..end,
        });
    }
    Ok(items)
}

/// Gives every `index` / `create` item without an `_id` the id `new_id()`
/// returns, in `items` and in the action line of the body, so a write in
/// flight can be named before the primary answers. Returns the rewritten
/// body, or `None` when no item needed an id (the body is unchanged). An
/// action line that spells `_id` at all (e.g. `"_id": null`) is left to
/// the primary.
pub fn assign_missing_ids(
    body: &Bytes,
    items: &mut [BulkItem],
    mut new_id: impl FnMut() -> String,
) -> Option<Bytes> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for item in items.iter_mut() {
        if item.id.is_some() || !matches!(item.action, DocOp::Index | DocOp::Create) {
            continue;
        }
        let start = item.range.start;
        let line_end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |n| start + n);
        let line = &body[start..line_end];
        if memchr::memmem::find(line, b"\"_id\"").is_some() {
            continue;
        }
        // The outer object's first value is the action's object: the
        // second `{` of the line (the action name holds no brace).
        let Some(inner) = memchr::memchr_iter(b'{', line).nth(1) else {
            continue;
        };
        let empty = line[inner + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'}');
        let id = new_id();
        let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
        buf.extend_from_slice(&body[copied..start + inner + 1]);
        buf.extend_from_slice(b"\"_id\":");
        super::json::push_str(buf, &id);
        if !empty {
            buf.push(b',');
        }
        copied = start + inner + 1;
        item.id = Some(id);
    }
    let mut buf = out?;
    buf.extend_from_slice(&body[copied..]);
    Some(Bytes::from(buf))
}

/// Line splitter that mirrors Elasticsearch's `findNextMarker`.
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    /// The next line's range without its `\n`, `None` at the end of the
    /// data, or an error when the data does not end with `\n`.
    fn next_line(&mut self) -> Result<Option<Range<usize>>, BulkError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match memchr::memchr(b'\n', rest) {
            Some(offset) => {
                let range = self.pos..self.pos + offset;
                self.pos += offset + 1;
                self.line += 1;
                Ok(Some(range))
            }
            None if rest.is_empty() => Ok(None),
            None => Err(BulkError::MissingFinalNewline),
        }
    }
}

struct ActionMeta {
    action: DocOp,
    index: String,
    doc_type: Option<String>,
    id: Option<String>,
    routing: Option<String>,
    parent: Option<String>,
    version: Option<i64>,
    version_type: Option<String>,
    if_seq_no: Option<i64>,
    if_primary_term: Option<i64>,
    pipeline: Option<String>,
}

fn parse_action_line(
    raw: &[u8],
    line: usize,
    defaults: &BulkDefaults,
) -> Result<ActionMeta, BulkError> {
    let malformed = |reason: String| BulkError::MalformedAction { line, reason };
    // Read in one pass into what the gateway needs; no `Value` tree.
    let mut params = RawParams::default();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let parsed = LineSeed(&mut params)
        .deserialize(&mut de)
        .and_then(|line| de.end().map(|()| line))
        .map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    let (action_name, shape) = match parsed {
        ActionLine::NotObject => return Err(malformed("expected a JSON object".into())),
        ActionLine::KeyCount => {
            return Err(malformed("expected exactly one action field".into()));
        }
        ActionLine::Entry(name, params) => (name, params),
    };
    let mut action = match &*action_name {
        "index" => DocOp::Index,
        "create" => DocOp::Create,
        "update" => DocOp::Update,
        "delete" => DocOp::Delete,
        _ => {
            return Err(BulkError::UnknownAction {
                line,
                action: action_name.into_owned(),
            });
        }
    };
    match shape {
        ActionParams::Object => {}
        ActionParams::Other(kind) => {
            return Err(malformed(format!(
                "expected an object after [{action_name}] but found [{kind}]"
            )));
        }
    }
    let text = |field: Option<(&str, MetaValue<'_>)>| -> Result<Option<String>, BulkError> {
        let Some((key, value)) = field else {
            return Ok(None);
        };
        match value {
            MetaValue::Null => Ok(None),
            MetaValue::Str(s) => Ok(Some(s.into_owned())),
            MetaValue::Number(n) => Ok(Some(n.to_string())),
            MetaValue::Bool(b) => Ok(Some(b.to_string())),
            MetaValue::Compound(kind) => Err(malformed(format!(
                "expected a simple value for field [{key}] but found [{kind}]"
            ))),
        }
    };
    let long = |field: Option<(&str, MetaValue<'_>)>| -> Result<Option<i64>, BulkError> {
        let Some((key, value)) = field else {
            return Ok(None);
        };
        let n = match value {
            MetaValue::Null => return Ok(None),
            MetaValue::Number(n) => n.as_i64(),
            MetaValue::Str(s) => s.trim().parse().ok(),
            MetaValue::Bool(_) | MetaValue::Compound(_) => None,
        };
        n.map(Some)
            .ok_or_else(|| malformed(format!("expected an integer for field [{key}]")))
    };
    let index = text(params.index)?;
    let doc_type = text(params.doc_type)?;
    let id = text(params.id)?;
    let routing = text(params.routing)?;
    let parent = text(params.parent)?;
    let version = long(params.version)?;
    let version_type = text(params.version_type)?;
    let if_seq_no = long(params.if_seq_no)?;
    let if_primary_term = long(params.if_primary_term)?;
    let pipeline = text(params.pipeline)?;
    let op_type = text(params.op_type)?;
    if action == DocOp::Index && op_type.as_deref() == Some("create") {
        action = DocOp::Create;
    }
    let Some(index) = index.or_else(|| defaults.index.clone()) else {
        return Err(BulkError::MissingIndex { line });
    };
    if id.is_none() && matches!(action, DocOp::Delete | DocOp::Update) {
        return Err(BulkError::MissingId { line, action });
    }
    let pipeline = match pipeline {
        // An explicit item pipeline (even `_none`) overrides the URL's.
        Some(item) => pipeline_param(Some(&item)),
        None => defaults.pipeline.clone(),
    };
    Ok(ActionMeta {
        action,
        index,
        doc_type: doc_type.or_else(|| defaults.doc_type.clone()),
        id,
        routing: routing
            .or_else(|| parent.clone())
            .or_else(|| defaults.routing.clone()),
        parent,
        version,
        version_type,
        if_seq_no,
        if_primary_term,
        pipeline,
    })
}

/// An action line as read: `{"<action>": {<params>}}`.
enum ActionLine<'a> {
    /// The only key and its value.
    Entry(Cow<'a, str>, ActionParams),
    /// An object with no key or several.
    KeyCount,
    /// Not an object.
    NotObject,
}

/// The value after the action name.
enum ActionParams {
    /// An object: its fields are in the [`RawParams`] given to the seed.
    Object,
    /// Anything else, by JSON kind.
    Other(&'static str),
}

/// The metadata fields as sent, each with the key it was spelled with
/// (`routing` or `_routing`...). A field given twice keeps its last value,
/// as Elasticsearch reads them in order. Other parameters
/// (`retry_on_conflict`, `_source`, `require_alias`, `dynamic_templates`...)
/// do not change what gets replayed; the primary judges them.
#[derive(Default)]
struct RawParams<'a> {
    index: Option<(&'static str, MetaValue<'a>)>,
    doc_type: Option<(&'static str, MetaValue<'a>)>,
    id: Option<(&'static str, MetaValue<'a>)>,
    routing: Option<(&'static str, MetaValue<'a>)>,
    parent: Option<(&'static str, MetaValue<'a>)>,
    version: Option<(&'static str, MetaValue<'a>)>,
    version_type: Option<(&'static str, MetaValue<'a>)>,
    if_seq_no: Option<(&'static str, MetaValue<'a>)>,
    if_primary_term: Option<(&'static str, MetaValue<'a>)>,
    pipeline: Option<(&'static str, MetaValue<'a>)>,
    op_type: Option<(&'static str, MetaValue<'a>)>,
}

/// One metadata value, as Elasticsearch's parser sees its token.
enum MetaValue<'a> {
    Null,
    Str(Cow<'a, str>),
    Number(serde_json::Number),
    Bool(bool),
    /// An array or an object (named by kind in errors).
    Compound(&'static str),
}

/// Reads an action line, filling the [`RawParams`] it holds; the
/// parameters are written in place, never moved.
struct LineSeed<'p, 'a>(&'p mut RawParams<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for LineSeed<'_, 'a> {
    type Value = ActionLine<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for LineSeed<'_, 'a> {
    type Value = ActionLine<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action line")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(Scalar::Str(name)) = map.next_key::<Scalar<'de>>()? else {
            return Ok(ActionLine::KeyCount);
        };
        let params = map.next_value_seed(ParamsSeed(self.0))?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<IgnoredAny>()?;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(ActionLine::KeyCount);
        }
        Ok(ActionLine::Entry(name, params))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(ActionLine::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ActionLine::NotObject)
    }
}

/// Reads the value after the action name into the [`RawParams`].
struct ParamsSeed<'p, 'a>(&'p mut RawParams<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for ParamsSeed<'_, 'a> {
    type Value = ActionParams;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ParamsSeed<'_, 'a> {
    type Value = ActionParams;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("action parameters")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let params = self.0;
        while let Some(Scalar::Str(key)) = map.next_key::<Scalar<'de>>()? {
            let (name, slot) = match &*key {
                "_index" => ("_index", &mut params.index),
                "_type" => ("_type", &mut params.doc_type),
                "_id" => ("_id", &mut params.id),
                "routing" => ("routing", &mut params.routing),
                "_routing" => ("_routing", &mut params.routing),
                "parent" => ("parent", &mut params.parent),
                "_parent" => ("_parent", &mut params.parent),
                "version" => ("version", &mut params.version),
                "_version" => ("_version", &mut params.version),
                "version_type" => ("version_type", &mut params.version_type),
                "_version_type" => ("_version_type", &mut params.version_type),
                "if_seq_no" => ("if_seq_no", &mut params.if_seq_no),
                "if_primary_term" => ("if_primary_term", &mut params.if_primary_term),
                "pipeline" => ("pipeline", &mut params.pipeline),
                "op_type" => ("op_type", &mut params.op_type),
                "_op_type" => ("_op_type", &mut params.op_type),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<MetaValue<'de>>()?;
            // `pipeline: null` leaves an earlier pipeline in place.
            if !(name == "pipeline" && matches!(value, MetaValue::Null)) {
                *slot = Some((name, value));
            }
        }
        Ok(ActionParams::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(ActionParams::Other("array"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("string"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("number"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("number"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("boolean"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ActionParams::Other("null"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MetaValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = MetaValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MetaValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MetaValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MetaValue::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MetaValue::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MetaValue::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                // Like `Value`: a float that is not finite reads as null.
                Ok(serde_json::Number::from_f64(v).map_or(MetaValue::Null, MetaValue::Number))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(MetaValue::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MetaValue::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(MetaValue::Compound("array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(MetaValue::Compound("object"))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Pairs the request items with the primary's `_bulk` response and returns
/// the replication ops for the items the primary accepted, in request order.
///
/// Items are paired by position; the counts and the action of each pair
/// must match, and every accepted item must carry `_index`, `_id` and
/// `_version`, otherwise the whole response is refused with an error (the
/// caller must not record a partial result). Items with a non-2xx `status`
/// are left out (mapping conflicts, version conflicts, a delete of a
/// missing document answered 404 `not_found`), as are `noop` updates.
///
/// The `_index` and `_id` of an op come from the response: aliases are
/// resolved to the concrete index, auto-generated ids are known.
/// Index/create items whose body went through an ingest pipeline, or whose
/// body is not a single JSON value, become read-repair ops.
pub fn accepted_ops(
    items: &[BulkItem],
    response: &BulkResponse<'_>,
) -> Result<Vec<ReplicationOp>, AcceptError> {
    let Some(results) = &response.items else {
        return Err(AcceptError::NoItems);
    };
    if results.len() != items.len() {
        return Err(AcceptError::CountMismatch {
            request: items.len(),
            response: results.len(),
        });
    }
    let mut ops = Vec::new();
    for (position, (item, result)) in items.iter().zip(results).enumerate() {
        let malformed = |reason: String| AcceptError::Malformed {
            item: Some(position),
            reason,
        };
        let (key, body) = match result {
            SingleKey::Entry(key, body) => (key, body),
            SingleKey::NotObject => {
                return Err(malformed("response item is not an object".into()));
            }
            SingleKey::KeyCount => {
                return Err(malformed(
                    "response item must have exactly one action key".into(),
                ));
            }
        };
        if key != item.action.as_str() {
            return Err(AcceptError::ActionMismatch {
                item: position,
                request: item.action.as_str(),
                response: key.clone().into_owned(),
            });
        }
        let ObjectOr::Object(body) = body else {
            return Err(malformed(format!("[{key}] is not an object")));
        };
        let Some(status) = body.status.as_ref().and_then(Scalar::as_u64) else {
            return Err(malformed("missing numeric status".into()));
        };
        if !(200..300).contains(&status) {
            continue;
        }
        let source = item.source.as_ref().filter(|s| is_single_json_value(s));
        let request = DocWriteRequest {
            op: item.action,
            doc_type: item.doc_type.as_deref(),
            routing: item.routing.as_deref(),
            index_source: match item.action {
                DocOp::Index | DocOp::Create if item.pipeline.is_none() => source.cloned(),
                _ => None,
            },
        };
        if let Some(op) = doc_op_from_result(&request, body, Some(position))? {
            ops.push(op);
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn missing_ids_are_assigned_in_items_and_body() {
        let body = Bytes::from_static(
            b"{\"index\":{\"_index\":\"a\"}}\n{\"n\":1}\n{ \"create\" : { } }\n{\"n\":2}\n{\"index\":{\"_id\":\"x\"}}\n{\"n\":3}\n{\"delete\":{\"_id\":\"y\"}}\n{\"index\":{\"_id\":null}}\n{\"n\":4}\n",
        );
        let defaults = BulkDefaults {
            index: Some("d".into()),
            ..BulkDefaults::default()
        };
        let mut items = parse_bulk_bytes(&body, &defaults).unwrap();
        let mut n = 0;
        let rewritten = assign_missing_ids(&body, &mut items, || {
            n += 1;
            format!("gen-{n}")
        })
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            "{\"index\":{\"_id\":\"gen-1\",\"_index\":\"a\"}}\n{\"n\":1}\n{ \"create\" : {\"_id\":\"gen-2\" } }\n{\"n\":2}\n{\"index\":{\"_id\":\"x\"}}\n{\"n\":3}\n{\"delete\":{\"_id\":\"y\"}}\n{\"index\":{\"_id\":null}}\n{\"n\":4}\n"
        );
        let ids: Vec<Option<&str>> = items.iter().map(|i| i.id.as_deref()).collect();
        assert_eq!(
            ids,
            [Some("gen-1"), Some("gen-2"), Some("x"), Some("y"), None]
        );
        // The rewritten body parses to the same items.
        let again = parse_bulk_bytes(&rewritten, &defaults).unwrap();
        assert_eq!(again.len(), 5);
        assert_eq!(again[1].id.as_deref(), Some("gen-2"));
        assert_eq!(again[0].index, "a");
        let mut none_needed = parse_bulk_bytes(
            &Bytes::from_static(b"{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n"),
            &defaults,
        )
        .unwrap();
        assert!(assign_missing_ids(&body, &mut none_needed, || unreachable!()).is_none());
    }
    use serde_json::json;

    /// [`accepted_ops`] on `response` as the primary's bytes.
    fn accepted(items: &[BulkItem], response: &Value) -> Result<Vec<ReplicationOp>, AcceptError> {
        let bytes = response.to_string();
        accepted_ops(items, &serde_json::from_str(&bytes).unwrap())
    }

    fn parse(body: &str) -> Result<Vec<BulkItem>, BulkError> {
        parse_bulk(body.as_bytes(), None, None)
    }

    fn src(item: &BulkItem) -> &str {
        std::str::from_utf8(item.source.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn parses_all_four_actions() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n",
            "{\"f\":1}\n",
            "{\"create\":{\"_index\":\"a\",\"_id\":\"2\",\"routing\":\"r\"}}\n",
            "{\"f\":2}\n",
            "{\"update\":{\"_index\":\"a\",\"_id\":\"3\",\"retry_on_conflict\":3}}\n",
            "{\"doc\":{\"f\":3}}\n",
            "{\"delete\":{\"_index\":\"a\",\"_id\":\"4\"}}\n",
        );
        let items = parse(body).unwrap();
        assert_eq!(items.len(), 4);
        let actions: Vec<_> = items.iter().map(|i| i.action).collect();
        assert_eq!(
            actions,
            [DocOp::Index, DocOp::Create, DocOp::Update, DocOp::Delete]
        );
        assert_eq!(src(&items[0]), "{\"f\":1}");
        assert_eq!(items[1].routing.as_deref(), Some("r"));
        assert_eq!(src(&items[2]), "{\"doc\":{\"f\":3}}");
        assert_eq!(items[3].source, None);
        assert_eq!(
            items.iter().map(|i| i.line).collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        // Ranges tile the body.
        assert_eq!(items[0].range.start, 0);
        for pair in items.windows(2) {
            assert_eq!(pair[0].range.end, pair[1].range.start);
        }
        assert_eq!(items[3].range.end, body.len());
        assert_eq!(
            &body[items[1].range.clone()],
            "{\"create\":{\"_index\":\"a\",\"_id\":\"2\",\"routing\":\"r\"}}\n{\"f\":2}\n"
        );
    }

    #[test]
    fn url_defaults_apply_and_item_metadata_overrides_them() {
        let defaults = BulkDefaults {
            index: Some("url-idx".into()),
            doc_type: Some("tweet".into()),
            routing: Some("url-r".into()),
            pipeline: Some("url-p".into()),
        };
        let body = Bytes::from_static(
            b"{\"index\":{}}\n{}\n{\"index\":{\"_index\":\"b\",\"_type\":\"t2\",\"_routing\":\"r2\",\"pipeline\":\"_none\"}}\n{}\n",
        );
        let items = parse_bulk_bytes(&body, &defaults).unwrap();
        assert_eq!(items[0].index, "url-idx");
        assert_eq!(items[0].doc_type.as_deref(), Some("tweet"));
        assert_eq!(items[0].routing.as_deref(), Some("url-r"));
        assert_eq!(items[0].pipeline.as_deref(), Some("url-p"));
        assert_eq!(items[0].id, None);
        assert_eq!(items[1].index, "b");
        assert_eq!(items[1].doc_type.as_deref(), Some("t2"));
        assert_eq!(items[1].routing.as_deref(), Some("r2"));
        assert_eq!(items[1].pipeline, None);
    }

    #[test]
    fn notes_client_versioning_and_legacy_keys() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":7,\"_version\":\"5\",\"_version_type\":\"external\",\"_parent\":\"p1\"}}\n",
            "{}\n",
            "{\"index\":{\"_index\":\"a\",\"_id\":\"8\",\"if_seq_no\":3,\"if_primary_term\":1,\"op_type\":\"create\",\"routing\":null}}\n",
            "{}\n",
        );
        let items = parse(body).unwrap();
        assert_eq!(items[0].id.as_deref(), Some("7"));
        assert_eq!(items[0].version, Some(5));
        assert_eq!(items[0].version_type.as_deref(), Some("external"));
        assert_eq!(items[0].parent.as_deref(), Some("p1"));
        assert_eq!(items[0].routing.as_deref(), Some("p1"));
        assert_eq!(items[1].if_seq_no, Some(3));
        assert_eq!(items[1].if_primary_term, Some(1));
        assert_eq!(items[1].action, DocOp::Create);
        assert_eq!(items[1].routing, None);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let body = "\r\n{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\r\n{\"f\":1}\r\n\n  \n{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\r\n";
        let items = parse(body).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(src(&items[0]), "{\"f\":1}");
        assert_eq!(items[0].line, 2);
        assert_eq!(items[1].line, 6);
    }

    #[test]
    fn unicode_ids_and_sources() {
        let body = "{\"index\":{\"_index\":\"índice\",\"_id\":\"日本/é\\u00e9\"}}\n{\"t\":\"✓\"}\n";
        let items = parse(body).unwrap();
        assert_eq!(items[0].index, "índice");
        assert_eq!(items[0].id.as_deref(), Some("日本/éé"));
        assert_eq!(src(&items[0]), "{\"t\":\"✓\"}");
    }

    #[test]
    fn empty_body_has_no_items() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("\n\n").unwrap(), vec![]);
    }

    #[test]
    fn missing_final_newline_is_rejected_like_elasticsearch() {
        let err = parse("{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}").unwrap_err();
        assert_eq!(err, BulkError::MissingFinalNewline);
        assert_eq!(
            err.to_string(),
            "The bulk request must be terminated by a newline [\\n]"
        );
        assert_eq!(
            parse("{\"index\":{\"_index\":\"a\"}}\n{\"f\":1}").unwrap_err(),
            BulkError::MissingFinalNewline
        );
        assert_eq!(
            parse("{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n ").unwrap_err(),
            BulkError::MissingFinalNewline
        );
    }

    #[test]
    fn malformed_action_lines_name_the_line() {
        let cases = [
            ("{\"index\":{}}\n{}\n{not json}\n", 3),
            ("[1,2]\n", 1),
            ("\"index\"\n", 1),
            ("{}\n", 1),
            ("{\"index\":{},\"delete\":{}}\n{}\n", 1),
            ("{\"index\":null}\n{}\n", 1),
            ("{\"index\":{\"_index\":\"a\",\"_id\":[1]}}\n{}\n", 1),
            ("{\"index\":{\"_index\":\"a\",\"version\":\"x\"}}\n{}\n", 1),
            ("{\"index\":{\"_index\":\"a\"}} trailing\n{}\n", 1),
        ];
        for (body, line) in cases {
            match parse_bulk(body.as_bytes(), Some("default"), None) {
                Err(BulkError::MalformedAction { line: got, .. }) => {
                    assert_eq!(got, line, "{body:?}")
                }
                other => panic!("{body:?}: expected MalformedAction, got {other:?}"),
            }
        }
    }

    #[test]
    fn metadata_is_read_in_order_and_scalars_as_text() {
        let first =
            parse("{\"index\":{\"_index\":\"a\",\"_routing\":\"x\",\"routing\":\"y\"}}\n{}\n");
        assert_eq!(first.unwrap()[0].routing.as_deref(), Some("y"));
        let last =
            parse("{\"index\":{\"routing\":\"y\",\"_index\":\"a\",\"_routing\":\"x\"}}\n{}\n");
        assert_eq!(last.unwrap()[0].routing.as_deref(), Some("x"));
        let items = parse(
            "{\"index\":{\"_index\":\"a\",\"_id\":5,\"routing\":1.5,\"_type\":true,\"version\":\" 7 \",\"if_seq_no\":null,\"_source\":[1],\"x\":{}}}\n{}\n",
        )
        .unwrap();
        let item = &items[0];
        assert_eq!(item.id.as_deref(), Some("5"));
        assert_eq!(item.routing.as_deref(), Some("1.5"));
        assert_eq!(item.doc_type.as_deref(), Some("true"));
        assert_eq!((item.version, item.if_seq_no), (Some(7), None));
        // Escaped keys and values are read decoded.
        let escaped = parse("{\"index\":{\"_ind\\u0065x\":\"a\\\"b\"}}\n{}\n").unwrap();
        assert_eq!(escaped[0].index, "a\"b");
        let err = parse("{\"index\":{\"_index\":\"a\",\"routing\":{\"x\":1}}}\n{}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a simple value for field [routing] but found [object]"),
            "{err}"
        );
        let err = parse("{\"delete\":[]}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("expected an object after [delete] but found [array]"),
            "{err}"
        );
    }

    #[test]
    fn unknown_action() {
        let err = parse("{\"upsert\":{\"_index\":\"a\"}}\n{}\n").unwrap_err();
        assert_eq!(
            err,
            BulkError::UnknownAction {
                line: 1,
                action: "upsert".into()
            }
        );
        assert!(
            err.to_string()
                .contains("expected field [create], [delete], [index] or [update]")
        );
    }

    #[test]
    fn missing_source_line() {
        let body =
            "{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"index\":{\"_index\":\"a\"}}\n";
        assert_eq!(
            parse(body).unwrap_err(),
            BulkError::MissingSource {
                line: 2,
                action: DocOp::Index
            }
        );
    }

    #[test]
    fn missing_index_and_missing_id() {
        assert_eq!(
            parse("{\"index\":{\"_id\":\"1\"}}\n{}\n").unwrap_err(),
            BulkError::MissingIndex { line: 1 }
        );
        assert_eq!(
            parse("{\"delete\":{\"_index\":\"a\"}}\n").unwrap_err(),
            BulkError::MissingId {
                line: 1,
                action: DocOp::Delete
            }
        );
        assert_eq!(
            parse("{\"update\":{\"_index\":\"a\"}}\n{}\n").unwrap_err(),
            BulkError::MissingId {
                line: 1,
                action: DocOp::Update
            }
        );
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        const PIECES: &[&[u8]] = &[
            b"{",
            b"}",
            b"\"",
            b"\n",
            b"\r\n",
            b"\r",
            b"index",
            b"create",
            b"update",
            b"delete",
            b"\"_index\"",
            b"\"_id\"",
            b":",
            b",",
            b"[",
            b"]",
            b"null",
            b"1",
            b"\\",
            b" ",
            "é".as_bytes(),
            &[0xff],
            &[0],
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut body = Vec::new();
            for _ in 0..(next() % 24) {
                body.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let _ = parse_bulk(&body, Some("d"), None);
            let _ = parse_bulk(&body, None, None);
        }
    }

    fn ok_item(
        action: &str,
        index: &str,
        id: &str,
        version: i64,
        status: u16,
        result: &str,
    ) -> Value {
        json!({ action: {
            "_index": index, "_type": "_doc", "_id": id, "_version": version,
            "result": result, "_seq_no": version - 1, "_primary_term": 1, "status": status
        }})
    }

    #[test]
    fn bulk_items_rejected_by_primary_are_not_replayed() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n",
            "{\"index\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"n\":\"not a number\"}\n",
            "{\"create\":{\"_index\":\"a\",\"_id\":\"3\"}}\n{\"n\":3}\n",
            "{\"delete\":{\"_index\":\"a\",\"_id\":\"4\"}}\n",
            "{\"delete\":{\"_index\":\"a\",\"_id\":\"5\"}}\n",
        );
        let items = parse(body).unwrap();
        let response = json!({"took": 3, "errors": true, "items": [
            ok_item("index", "a", "1", 1, 201, "created"),
            {"index": {"_index": "a", "_type": "_doc", "_id": "2", "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"}}},
            {"create": {"_index": "a", "_type": "_doc", "_id": "3", "status": 409,
                "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}}},
            {"delete": {"_index": "a", "_type": "_doc", "_id": "4", "_version": 2, "result": "not_found", "status": 404}},
            ok_item("delete", "a", "5", 3, 200, "deleted"),
        ]});
        let ops = accepted(&items, &response).unwrap();
        assert_eq!(
            ops,
            vec![
                ReplicationOp::Index {
                    index: "a".into(),
                    doc_type: None,
                    id: "1".into(),
                    routing: None,
                    version: 1,
                    seq_no: Some(0),
                    primary_term: Some(1),
                    source: Bytes::from_static(b"{\"n\":1}"),
                },
                ReplicationOp::Delete {
                    index: "a".into(),
                    doc_type: None,
                    id: "5".into(),
                    routing: None,
                    version: 3,
                },
            ]
        );
    }

    #[test]
    fn auto_generated_ids_and_concrete_indices_come_from_the_response() {
        let body = "{\"index\":{\"_index\":\"write-alias\",\"routing\":\"r\"}}\n{\"n\":1}\n";
        let items = parse(body).unwrap();
        let response =
            json!({"items": [ok_item("index", "logs-000002", "AVx9z", 1, 201, "created")]});
        let ops = accepted(&items, &response).unwrap();
        let [
            ReplicationOp::Index {
                index, id, routing, ..
            },
        ] = ops.as_slice()
        else {
            panic!("{ops:?}");
        };
        assert_eq!(index, "logs-000002");
        assert_eq!(id, "AVx9z");
        assert_eq!(routing.as_deref(), Some("r"));
    }

    #[test]
    fn updates_become_read_repair_and_noops_are_dropped() {
        let body = concat!(
            "{\"update\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"doc\":{\"x\":1}}\n",
            "{\"update\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"doc\":{\"x\":1}}\n",
        );
        let items = parse(body).unwrap();
        let response = json!({"items": [
            ok_item("update", "a", "1", 4, 200, "updated"),
            ok_item("update", "a", "2", 2, 200, "noop"),
        ]});
        let ops = accepted(&items, &response).unwrap();
        assert_eq!(
            ops,
            vec![ReplicationOp::ReadRepair {
                index: "a".into(),
                doc_type: None,
                id: "1".into(),
                routing: None,
                version: 4,
            }]
        );
    }

    #[test]
    fn pipelines_and_non_json_sources_become_read_repair() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\",\"pipeline\":\"geoip\"}}\n{\"ip\":\"1.2.3.4\"}\n",
            "{\"index\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"a\":1} {\"b\":2}\n",
        );
        let items = parse(body).unwrap();
        let response = json!({"items": [
            ok_item("index", "a", "1", 1, 201, "created"),
            ok_item("index", "a", "2", 1, 201, "created"),
        ]});
        let ops = accepted(&items, &response).unwrap();
        assert!(
            ops.iter()
                .all(|op| matches!(op, ReplicationOp::ReadRepair { .. })),
            "{ops:?}"
        );
    }

    #[test]
    fn answer_fields_are_read_whatever_else_the_answer_holds() {
        let items = parse(concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"q\\\"1\"}}\n{\"n\":1}\n",
            "{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n",
        ))
        .unwrap();
        // Escaped strings, unknown and nested fields, a float and a null.
        let response = br#"{"took":1.5,"errors":false,"ingest_took":null,"items":[
            {"index":{"_index":"a","_id":"q\"1","_version":7,"result":"created","forced_refresh":true,
                "_shards":{"total":2,"successful":1,"failed":0,"failures":[{"x":[1,{"y":null}]}]},
                "_seq_no":-2,"_primary_term":1,"status":201,"get":{"_source":{"n":1}}}},
            {"delete":{"_index":"a","_id":"2","_version":3,"result":"deleted","status":200,"_type":null}}]}"#;
        let answer: BulkResponse<'_> = serde_json::from_slice(response).unwrap();
        assert_eq!(
            accepted_ops(&items, &answer).unwrap(),
            vec![
                ReplicationOp::Index {
                    index: "a".into(),
                    doc_type: None,
                    id: "q\"1".into(),
                    routing: None,
                    version: 7,
                    seq_no: None,
                    primary_term: Some(1),
                    source: Bytes::from_static(b"{\"n\":1}"),
                },
                ReplicationOp::Delete {
                    index: "a".into(),
                    doc_type: None,
                    id: "2".into(),
                    routing: None,
                    version: 3,
                },
            ]
        );
    }

    #[test]
    fn typed_items_keep_their_type() {
        let items = parse("{\"index\":{\"_index\":\"a\",\"_type\":\"tweet\",\"_id\":\"1\"}}\n{}\n")
            .unwrap();
        let response = json!({"items": [{"index": {"_index": "a", "_type": "tweet", "_id": "1",
            "_version": 1, "result": "created", "status": 201}}]});
        let ops = accepted(&items, &response).unwrap();
        assert!(matches!(&ops[0], ReplicationOp::Index { doc_type: Some(t), .. } if t == "tweet"));
    }

    #[test]
    fn pairing_errors_refuse_the_whole_response() {
        let items = parse("{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n").unwrap();
        assert_eq!(
            accepted(
                &items,
                &json!({"items": [ok_item("delete", "a", "1", 2, 200, "deleted")]})
            ),
            Err(AcceptError::CountMismatch {
                request: 2,
                response: 1
            })
        );
        assert_eq!(
            accepted(&items, &json!({"error": {"type": "x"}, "status": 400})),
            Err(AcceptError::NoItems)
        );
        assert!(matches!(
            accepted(
                &items,
                &json!({"items": [
                    ok_item("delete", "a", "1", 2, 200, "deleted"),
                    ok_item("index", "a", "2", 2, 200, "created"),
                ]})
            ),
            Err(AcceptError::ActionMismatch { item: 1, .. })
        ));
        // An accepted item without a version cannot be fenced.
        assert!(matches!(
            accepted(
                &items,
                &json!({"items": [
                    ok_item("delete", "a", "1", 2, 200, "deleted"),
                    {"delete": {"_index": "a", "_id": "2", "result": "deleted", "status": 200}},
                ]})
            ),
            Err(AcceptError::Malformed { item: Some(1), .. })
        ));
        assert!(matches!(
            accepted(&items, &json!({"items": [1, 2]})),
            Err(AcceptError::Malformed { item: Some(0), .. })
        ));
        for bad in [
            json!({"delete": {"_index": "a", "_id": "1", "_version": 2, "status": 200}, "index": {}}),
            json!({}),
            json!({"delete": [1]}),
            json!({"delete": {"_index": "a", "_id": "1", "_version": 2, "status": "200"}}),
        ] {
            assert!(
                matches!(
                    accepted(
                        &items,
                        &json!({"items": [bad, ok_item("delete", "a", "2", 2, 200, "deleted")]})
                    ),
                    Err(AcceptError::Malformed { item: Some(0), .. })
                ),
                "{bad}"
            );
        }
    }
}
