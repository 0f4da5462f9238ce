//! Cross-version rewriting of metadata and query-scoped requests before
//! they are replayed to the backup.
//!
//! The rewrite normalises a recorded request towards what the backup's
//! version expects, whatever version the primary was; it is idempotent,
//! and a body that needs no change is passed through byte for byte. What
//! is and is not rewritten is listed in `docs/cross-version.md`.

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value};

use super::classify::{MetaKind, RequestClass, classify};
use super::ops::ReplicationOp;
use super::replay::ReplayTarget;
use super::uri::{self, UriError, encode_path_segment, raw_segments};

/// A request ready to send to the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// HTTP method.
    pub method: Method,
    /// `path[?query]`.
    pub path: String,
    /// Body (possibly rewritten).
    pub body: Bytes,
}

/// Why a request cannot be rewritten for the backup; such ops go to the
/// dead-letter store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// Only metadata and query-scoped ops are replayed as requests.
    #[error("a [{kind}] op is not replayed as a request")]
    NotARequestOp {
        /// [`ReplicationOp::kind_name`] of the op.
        kind: &'static str,
    },
    /// The recorded path does not decode.
    #[error("recorded path cannot be decoded: {0}")]
    BadPath(#[from] UriError),
    /// A 5.x multi-type mapping cannot exist on a typeless backup.
    #[error("mappings define several types {types:?}; a typeless backup holds one")]
    MultipleMappingTypes {
        /// The type names found.
        types: Vec<String>,
    },
    /// A template with several patterns cannot be written to 5.x, which
    /// takes a single `template` pattern.
    #[error("template has {0} index patterns; Elasticsearch 5.x takes one")]
    MultipleIndexPatterns(usize),
    /// A query-scoped op whose matches cannot be listed (not a by-query
    /// path, a body that is not a JSON object).
    #[error("cannot list what the by-query write matches: {0}")]
    NotByQuery(String),
}

/// Root-level keys of a mapping (as opposed to type names).
const MAPPING_ROOT_PARAMS: &[&str] = &[
    "properties",
    "dynamic",
    "dynamic_templates",
    "date_detection",
    "dynamic_date_formats",
    "numeric_detection",
    "enabled",
    "runtime",
    "subobjects",
    "_source",
    "_routing",
    "_meta",
    "_field_names",
    "_all",
    "_parent",
    "_size",
    "_timestamp",
    "_ttl",
    "_data_stream_timestamp",
    "_id",
    "_index",
    "_type",
    "_analyzer",
    "_boost",
    "include_in_all",
];

/// The request that replays a metadata or query-scoped op on `target`.
///
/// - Drops `include_type_name` (bodies are normalised instead), and for
///   query-scoped ops `wait_for_completion`, so the replayer waits for the
///   by-query run to finish before replaying what follows it.
/// - On typeless backups (Elasticsearch 7+, OpenSearch): removes the type
///   level of `mappings` (create index, legacy template, rollover) and of
///   put-mapping bodies, dropping `_default_`; rewrites typed paths
///   `/{index}/_mapping/{type}`, `/{index}/{type}/_mapping` and
///   `/{index}/{type}/_update_by_query|_delete_by_query` to typeless ones.
/// - On 5.x/6.x backups: nests typeless `mappings` under the index's type
///   (known type, else `_doc`/`doc`), sends put-mapping to
///   `/{index}/_mapping/{type}`.
/// - Legacy templates: `template` ↔ `index_patterns` for 5.x vs 6.x+.
pub fn replay_request(
    op: &ReplicationOp,
    target: &ReplayTarget,
) -> Result<ReplayRequest, RewriteError> {
    let (method, path_and_query, body, query_scoped) = match op {
        ReplicationOp::IndexMeta { method, path, body } => (method, path, body, false),
        ReplicationOp::QueryScoped { method, path, body } => (method, path, body, true),
        other => {
            return Err(RewriteError::NotARequestOp {
                kind: other.kind_name(),
            });
        }
    };
    let (path, query) = uri::split_path_query(path_and_query);
    let segments = uri::decoded_segments(path)?;
    let typeless = !target.version.has_mapping_types();
    let kind = match classify(method, path, query) {
        RequestClass::IndexMeta { kind, .. } => Some(kind),
        _ => None,
    };

    let dropped: &[&str] = if query_scoped {
        &["include_type_name", "wait_for_completion"]
    } else {
        &["include_type_name"]
    };
    let query = filter_query(query, dropped);

    let mut new_segments: Option<Vec<String>> = None;
    let mut path_type: Option<String> = None;
    let index = segments
        .first()
        .filter(|s| !s.starts_with('_') || *s == "_all")
        .cloned();
    let type_for = |index: Option<&str>| -> Option<String> {
        let index = index.unwrap_or_default();
        target.doc_type_for(index, None).map(str::to_owned)
    };
    match (
        kind,
        segments
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Some(MetaKind::PutMapping), segs) => {
            let (prefix, ty): (&[&str], Option<&str>) = match segs {
                [i, "_mapping" | "_mappings", t] => (std::slice::from_ref(i), Some(t)),
                [i, t, "_mapping" | "_mappings"] => (std::slice::from_ref(i), Some(t)),
                ["_mapping" | "_mappings", t] => (&[], Some(t)),
                [i, "_mapping" | "_mappings"] => (std::slice::from_ref(i), None),
                _ => (&[], None),
            };
            path_type = ty.map(str::to_owned);
            if typeless && ty.is_some() {
                new_segments = Some(
                    prefix
                        .iter()
                        .map(|s| s.to_string())
                        .chain(["_mapping".into()])
                        .collect(),
                );
            } else if !typeless && ty.is_none() && segs.len() == prefix.len() + 1 {
                let ty = type_for(index.as_deref()).unwrap_or_else(|| "_doc".into());
                new_segments = Some(
                    prefix
                        .iter()
                        .map(|s| s.to_string())
                        .chain(["_mapping".into(), ty])
                        .collect(),
                );
            }
        }
        (None, [i, _ty, api @ ("_update_by_query" | "_delete_by_query")])
            if query_scoped && typeless =>
        {
            new_segments = Some(vec![i.to_string(), api.to_string()]);
        }
        _ => {}
    }
    let path = match new_segments {
        Some(segs) => {
            let encoded: Vec<String> = segs.iter().map(|s| encode_path_segment(s)).collect();
            format!("/{}", encoded.join("/"))
        }
        None => format!("/{}", raw_segments(path).collect::<Vec<_>>().join("/")),
    };
    let path = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    };

    let body = match kind {
        Some(kind) => rewrite_body(
            kind,
            body,
            typeless,
            target,
            index.as_deref(),
            path_type.as_deref(),
        )?,
        None => body.clone(),
    };
    Ok(ReplayRequest {
        method: method.clone(),
        path,
        body,
    })
}

/// Keeps the raw `key=value` pairs whose decoded key is not in `dropped`.
fn filter_query(query: Option<&str>, dropped: &[&str]) -> Option<String> {
    let query = query?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let key = uri::decode_query_component(key).unwrap_or_else(|_| key.to_owned());
            !dropped.contains(&key.as_str())
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn rewrite_body(
    kind: MetaKind,
    body: &Bytes,
    typeless: bool,
    target: &ReplayTarget,
    index: Option<&str>,
    path_type: Option<&str>,
) -> Result<Bytes, RewriteError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(body.clone());
    }
    let Ok(Value::Object(mut root)) = serde_json::from_slice::<Value>(body) else {
        // Not a JSON object: nothing we know how to rewrite; the backup
        // will judge it.
        return Ok(body.clone());
    };
    let mut changed = false;
    match kind {
        MetaKind::CreateIndex | MetaKind::Rollover | MetaKind::LegacyTemplate => {
            if let Some(Value::Object(mappings)) = root.get_mut("mappings") {
                let wrap_type = match kind {
                    MetaKind::CreateIndex => target.doc_type_for(index.unwrap_or_default(), None),
                    _ => target.version.default_doc_type(),
                };
                changed |= normalize_mappings(mappings, typeless, wrap_type)?;
            }
            if kind == MetaKind::LegacyTemplate {
                changed |= normalize_template_patterns(
                    &mut root,
                    target.version.uses_underscored_bulk_params(),
                )?;
            }
        }
        MetaKind::PutMapping if typeless => {
            // The body is the mapping itself, possibly `{"type": {...}}`.
            let typed_keys = mapping_types(&root);
            let matches_path = match (&typed_keys, path_type) {
                (Some(keys), Some(t)) => keys.iter().any(|k| k == t || k == "_default_"),
                (Some(_), None) => true,
                _ => false,
            };
            if matches_path {
                changed |= normalize_mappings(&mut root, true, None)?;
            }
        }
        _ => {}
    }
    if !changed {
        return Ok(body.clone());
    }
    Ok(Bytes::from(
        serde_json::to_vec(&root).unwrap_or_else(|_| body.to_vec()),
    ))
}

/// The type names of a typed mapping (`{"tweet": {"properties": ..}}`),
/// `None` for a typeless one (`{"properties": ..}`) or an empty one.
fn mapping_types(mapping: &Map<String, Value>) -> Option<Vec<String>> {
    let typed = !mapping.is_empty()
        && mapping
            .iter()
            .all(|(k, v)| v.is_object() && !MAPPING_ROOT_PARAMS.contains(&k.as_str()));
    typed.then(|| mapping.keys().cloned().collect())
}

/// A typed mapping with several types, which a typeless index cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipleMappingTypes {
    /// The type names found.
    pub types: Vec<String>,
}

/// What [`mapping_for_target`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingChange {
    /// Already right for the target.
    Unchanged,
    /// A typed mapping lost its type (named here) for a typeless target.
    TypeRemoved(String),
    /// A typeless mapping was wrapped in this type for a typed target.
    WrappedIn(String),
    /// A type the target refuses (`_doc` on 5.x) took the target's name.
    Renamed {
        /// The source's type.
        from: String,
        /// The target's.
        to: String,
    },
}

/// Rewrites a mapping object (the value of `mappings`) in place for a
/// typeless target (Elasticsearch 7+, OpenSearch) or a typed one (5.x,
/// 6.x). Whether the mapping is typed is read from its shape: every key an
/// object that is not a mapping parameter (`{"tweet": {"properties": ..}}`).
///
/// - typed → typeless: the single type's body becomes the mapping
///   (`_default_` is dropped); several types are refused, a typeless
///   index holds one;
/// - typeless → typed: wrapped in `wrap_type` (`_doc` when `None`; pass
///   the target's type, e.g. `doc` on 5.x, see
///   [`crate::ClusterVersion::default_doc_type`]);
/// - anything else, and an empty mapping, is left alone.
///
/// Used by the replayer (index creation, templates, put-mapping) and the
/// full copy (target index creation).
pub fn mapping_for_target(
    mapping: &mut Map<String, Value>,
    typeless: bool,
    wrap_type: Option<&str>,
) -> Result<MappingChange, MultipleMappingTypes> {
    match (mapping_types(mapping), typeless) {
        (Some(types), true) => {
            let real: Vec<String> = types.into_iter().filter(|t| t != "_default_").collect();
            let (name, inner) = match real.as_slice() {
                [] => ("_default_".to_owned(), Map::new()),
                [only] => match mapping.remove(only) {
                    Some(Value::Object(inner)) => (only.clone(), inner),
                    _ => (only.clone(), Map::new()),
                },
                _ => return Err(MultipleMappingTypes { types: real }),
            };
            *mapping = inner;
            Ok(MappingChange::TypeRemoved(name))
        }
        (None, false) if !mapping.is_empty() => {
            let ty = wrap_type.unwrap_or("_doc").to_owned();
            let inner = std::mem::take(mapping);
            mapping.insert(ty.clone(), Value::Object(inner));
            Ok(MappingChange::WrappedIn(ty))
        }
        // `_doc` (6.x) towards a target whose type may not start with `_`
        // (5.x: `wrap_type` is `doc` there).
        (Some(types), false)
            if types.len() == 1
                && types[0].starts_with('_')
                && types[0] != "_default_"
                && wrap_type.is_some_and(|w| !w.starts_with('_')) =>
        {
            let from = types[0].clone();
            let to = wrap_type.unwrap_or_default().to_owned();
            let inner = mapping.remove(&from).unwrap_or_default();
            mapping.insert(to.clone(), inner);
            Ok(MappingChange::Renamed { from, to })
        }
        _ => Ok(MappingChange::Unchanged),
    }
}

/// [`mapping_for_target`], saying only whether the mapping changed.
fn normalize_mappings(
    mapping: &mut Map<String, Value>,
    typeless: bool,
    wrap_type: Option<&str>,
) -> Result<bool, RewriteError> {
    match mapping_for_target(mapping, typeless, wrap_type) {
        Ok(change) => Ok(change != MappingChange::Unchanged),
        Err(MultipleMappingTypes { types }) => Err(RewriteError::MultipleMappingTypes { types }),
    }
}

/// `index_patterns` (6.0+) vs `template` (5.x) in legacy templates.
fn normalize_template_patterns(
    root: &mut Map<String, Value>,
    to_5x: bool,
) -> Result<bool, RewriteError> {
    if to_5x {
        let Some(patterns) = root.remove("index_patterns") else {
            return Ok(false);
        };
        let single = match patterns {
            Value::String(s) => s,
            Value::Array(mut list) if list.len() == 1 => match list.pop() {
                Some(Value::String(s)) => s,
                _ => return Err(RewriteError::MultipleIndexPatterns(1)),
            },
            Value::Array(list) => return Err(RewriteError::MultipleIndexPatterns(list.len())),
            _ => return Err(RewriteError::MultipleIndexPatterns(0)),
        };
        root.insert("template".into(), Value::String(single));
        Ok(true)
    } else {
        if root.contains_key("index_patterns") {
            return Ok(false);
        }
        let Some(pattern) = root.remove("template") else {
            return Ok(false);
        };
        root.insert("index_patterns".into(), Value::Array(vec![pattern]));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ClusterVersion;
    use serde_json::json;

    fn es(major: u32) -> ReplayTarget {
        ReplayTarget::new(ClusterVersion::elasticsearch(major, 0))
    }

    fn meta(method: Method, path: &str, body: Value) -> ReplicationOp {
        ReplicationOp::IndexMeta {
            method,
            path: path.into(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        }
    }

    fn run(op: &ReplicationOp, target: &ReplayTarget) -> (String, Value) {
        let req = replay_request(op, target).unwrap();
        let body = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&req.body).unwrap()
        };
        (req.path, body)
    }

    #[test]
    fn create_index_mappings_lose_their_type_on_7() {
        let op = meta(
            Method::PUT,
            "/tweets?include_type_name=true&wait_for_active_shards=1",
            json!({"settings": {"number_of_shards": 1},
                   "mappings": {"_doc": {"properties": {"msg": {"type": "text"}}}}}),
        );
        let (path, body) = run(&op, &es(7));
        assert_eq!(path, "/tweets?wait_for_active_shards=1");
        assert_eq!(
            body,
            json!({"settings": {"number_of_shards": 1},
                   "mappings": {"properties": {"msg": {"type": "text"}}}})
        );
        // OpenSearch too; and already-typeless mappings are untouched.
        let os = ReplayTarget::new(ClusterVersion::opensearch(2, 11));
        let (_, body) = run(&op, &os);
        assert_eq!(
            body["mappings"],
            json!({"properties": {"msg": {"type": "text"}}})
        );
    }

    #[test]
    fn default_mapping_is_dropped_and_multiple_types_refused() {
        let op = meta(
            Method::PUT,
            "/t",
            json!({"mappings": {"_default_": {"_all": {"enabled": false}}, "tweet": {"properties": {}}}}),
        );
        let (_, body) = run(&op, &es(7));
        assert_eq!(body, json!({"mappings": {"properties": {}}}));
        let op = meta(
            Method::PUT,
            "/t",
            json!({"mappings": {"tweet": {}, "user": {}}}),
        );
        assert!(matches!(
            replay_request(&op, &es(8)),
            Err(RewriteError::MultipleMappingTypes { types }) if types == ["tweet", "user"]
        ));
    }

    #[test]
    fn mapping_for_target_says_what_it_changed() {
        let object = |v: Value| v.as_object().unwrap().clone();
        let mut typed =
            object(json!({"_default_": {}, "tweet": {"properties": {"a": {"type": "text"}}}}));
        assert_eq!(
            mapping_for_target(&mut typed, true, None),
            Ok(MappingChange::TypeRemoved("tweet".into()))
        );
        assert_eq!(
            Value::Object(typed),
            json!({"properties": {"a": {"type": "text"}}})
        );

        let mut typeless = object(json!({"dynamic": "strict", "properties": {}}));
        assert_eq!(
            mapping_for_target(&mut typeless, false, Some("doc")),
            Ok(MappingChange::WrappedIn("doc".into()))
        );
        assert_eq!(
            Value::Object(typeless.clone()),
            json!({"doc": {"dynamic": "strict", "properties": {}}})
        );
        // Already typed for a typed target, already typeless for a typeless one.
        assert_eq!(
            mapping_for_target(&mut typeless, false, None),
            Ok(MappingChange::Unchanged)
        );
        let mut plain = object(json!({"_source": {"enabled": false}}));
        assert_eq!(
            mapping_for_target(&mut plain, true, None),
            Ok(MappingChange::Unchanged)
        );
        assert_eq!(
            mapping_for_target(&mut Map::new(), false, None),
            Ok(MappingChange::Unchanged)
        );

        let mut underscored = object(json!({"_doc": {"properties": {}}}));
        assert_eq!(
            mapping_for_target(&mut underscored, false, Some("doc")),
            Ok(MappingChange::Renamed {
                from: "_doc".into(),
                to: "doc".into()
            })
        );
        assert_eq!(
            Value::Object(underscored),
            json!({"doc": {"properties": {}}})
        );
        let mut kept = object(json!({"_doc": {"properties": {}}}));
        assert_eq!(
            mapping_for_target(&mut kept, false, Some("_doc")),
            Ok(MappingChange::Unchanged)
        );

        let mut two = object(json!({"a": {}, "b": {}}));
        assert_eq!(
            mapping_for_target(&mut two, true, None),
            Err(MultipleMappingTypes {
                types: vec!["a".into(), "b".into()]
            })
        );
    }

    #[test]
    fn typeless_mappings_gain_a_type_on_6_and_5() {
        let op = meta(
            Method::PUT,
            "/tweets",
            json!({"mappings": {"properties": {"a": {"type": "keyword"}}}}),
        );
        let (_, body) = run(&op, &es(6));
        assert_eq!(
            body,
            json!({"mappings": {"_doc": {"properties": {"a": {"type": "keyword"}}}}})
        );
        let (_, body) = run(&op, &es(5));
        assert_eq!(
            body,
            json!({"mappings": {"doc": {"properties": {"a": {"type": "keyword"}}}}})
        );
        let (_, body) = run(&op, &es(6).with_index_type("tweets", "tweet"));
        assert_eq!(
            body,
            json!({"mappings": {"tweet": {"properties": {"a": {"type": "keyword"}}}}})
        );
        // Typed stays typed on 6.
        let typed = meta(
            Method::PUT,
            "/tweets",
            json!({"mappings": {"tweet": {"properties": {}}}}),
        );
        let req = replay_request(&typed, &es(6)).unwrap();
        assert_eq!(
            req.body,
            match &typed {
                ReplicationOp::IndexMeta { body, .. } => body.clone(),
                _ => unreachable!(),
            }
        );
    }

    #[test]
    fn put_mapping_paths_and_bodies() {
        let typed_body = json!({"tweet": {"properties": {"a": {"type": "long"}}}});
        let bare_body = json!({"properties": {"a": {"type": "long"}}});
        for path in [
            "/tw/_mapping/tweet",
            "/tw/tweet/_mapping",
            "/tw/_mappings/tweet",
        ] {
            let (p, b) = run(&meta(Method::PUT, path, typed_body.clone()), &es(7));
            assert_eq!((p.as_str(), &b), ("/tw/_mapping", &bare_body), "{path}");
            let (p, b) = run(&meta(Method::PUT, path, bare_body.clone()), &es(7));
            assert_eq!((p.as_str(), &b), ("/tw/_mapping", &bare_body), "{path}");
        }
        let (p, b) = run(
            &meta(
                Method::PUT,
                "/tw/_mapping?include_type_name=false",
                bare_body.clone(),
            ),
            &es(6),
        );
        assert_eq!((p.as_str(), &b), ("/tw/_mapping/_doc", &bare_body));
        let (p, _) = run(
            &meta(Method::PUT, "/tw/_mapping", bare_body.clone()),
            &es(6).with_index_type("tw", "tweet"),
        );
        assert_eq!(p, "/tw/_mapping/tweet");
        let (p, b) = run(
            &meta(Method::PUT, "/tw/_mapping/tweet", bare_body.clone()),
            &es(6),
        );
        assert_eq!((p.as_str(), &b), ("/tw/_mapping/tweet", &bare_body));
    }

    #[test]
    fn legacy_template_patterns_follow_the_target() {
        let v5 = meta(
            Method::PUT,
            "/_template/t",
            json!({"template": "logs-*", "mappings": {"doc": {}}}),
        );
        let (_, body) = run(&v5, &es(7));
        assert_eq!(body, json!({"index_patterns": ["logs-*"], "mappings": {}}));
        let v7 = meta(
            Method::PUT,
            "/_template/t",
            json!({"index_patterns": ["logs-*"], "mappings": {"properties": {}}}),
        );
        let (_, body) = run(&v7, &es(5));
        assert_eq!(
            body,
            json!({"template": "logs-*", "mappings": {"doc": {"properties": {}}}})
        );
        let many = meta(
            Method::PUT,
            "/_template/t",
            json!({"index_patterns": ["a-*", "b-*"]}),
        );
        assert_eq!(
            replay_request(&many, &es(5)),
            Err(RewriteError::MultipleIndexPatterns(2))
        );
        assert!(replay_request(&many, &es(6)).is_ok());
    }

    #[test]
    fn query_scoped_waits_and_loses_its_type_on_typeless_targets() {
        let op = ReplicationOp::QueryScoped {
            method: Method::POST,
            path: "/tw/tweet/_update_by_query?conflicts=proceed&wait_for_completion=false".into(),
            body: Bytes::from_static(b"{\"script\":{\"source\":\"ctx._source.n++\"}}"),
        };
        let req = replay_request(&op, &es(8)).unwrap();
        assert_eq!(req.path, "/tw/_update_by_query?conflicts=proceed");
        assert_eq!(
            req.body,
            Bytes::from_static(b"{\"script\":{\"source\":\"ctx._source.n++\"}}")
        );
        let req = replay_request(&op, &es(6)).unwrap();
        assert_eq!(req.path, "/tw/tweet/_update_by_query?conflicts=proceed");
    }

    #[test]
    fn untouched_requests_keep_their_bytes() {
        let raw = Bytes::from_static(
            b"{ \"actions\" : [ {\"add\": {\"index\": \"a\", \"alias\": \"b\"}} ] }",
        );
        let op = ReplicationOp::IndexMeta {
            method: Method::POST,
            path: "/_aliases".into(),
            body: raw.clone(),
        };
        let req = replay_request(&op, &es(7)).unwrap();
        assert_eq!(
            req,
            ReplayRequest {
                method: Method::POST,
                path: "/_aliases".into(),
                body: raw
            }
        );
        let enc = ReplicationOp::IndexMeta {
            method: Method::DELETE,
            path: "/caf%C3%A9".into(),
            body: Bytes::new(),
        };
        assert_eq!(replay_request(&enc, &es(7)).unwrap().path, "/caf%C3%A9");
        let doc = ReplicationOp::Delete {
            index: "i".into(),
            doc_type: None,
            id: "1".into(),
            routing: None,
            version: 1,
        };
        assert_eq!(
            replay_request(&doc, &es(7)),
            Err(RewriteError::NotARequestOp { kind: "delete" })
        );
    }
}
