//! An in-memory cluster for the replay unit tests: the slice of a typeless
//! Elasticsearch 7 the replayer talks to (`GET /`, `_bulk` with
//! `external_gte`, document `GET`, `_mget`, `_settings`, `_refresh`,
//! `match_all` scrolls, index create and delete), with faults a test can
//! plant (unreachable, whole-request errors, per-document item errors).
//! It proves replay *logic*; behaviour against real clusters is proved
//! by the integration crate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::Method;
use parking_lot::Mutex;
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::{Value, json};

use super::Cluster;
use crate::upstream::{ExchangeError, Response};

/// A document or its delete tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The external version it was written at.
    pub version: i64,
    /// Compact `_source`; `None` for a tombstone.
    pub source: Option<String>,
}

/// An error planted for one document's bulk items.
#[derive(Debug, Clone)]
pub struct ItemFault {
    /// Item status.
    pub status: u16,
    /// `error.type`.
    pub error_type: &'static str,
    /// Items it still applies to (`None`: forever).
    pub times: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    /// Indices that exist.
    indices: BTreeMap<String, ()>,
    /// `(index, id)` → document or tombstone.
    docs: BTreeMap<(String, String), Doc>,
    /// Per-id item faults.
    item_faults: HashMap<String, ItemFault>,
    /// `(path part, status)`: the next request whose path contains the
    /// part gets the status instead of an answer.
    request_faults: VecDeque<(&'static str, u16)>,
    /// `METHOD path` of every request answered, in order.
    log: Vec<String>,
    /// Bodies of the `_bulk` requests answered (not failed), in order.
    bulks: Vec<String>,
}

/// The in-memory cluster.
#[derive(Debug)]
pub struct MemoryCluster {
    role: &'static str,
    down: AtomicBool,
    state: Mutex<State>,
}

impl MemoryCluster {
    /// An empty cluster in `role`.
    pub fn new(role: &'static str) -> MemoryCluster {
        MemoryCluster {
            role,
            down: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Stores a document as if written at `version`.
    pub fn put(&self, index: &str, id: &str, version: i64, source: &str) {
        let mut state = self.state.lock();
        state.indices.insert(index.to_owned(), ());
        state.docs.insert(
            (index.to_owned(), id.to_owned()),
            Doc {
                version,
                source: Some(source.to_owned()),
            },
        );
    }

    /// Deletes a document, leaving a tombstone at `version`.
    pub fn delete(&self, index: &str, id: &str, version: i64) {
        self.state.lock().docs.insert(
            (index.to_owned(), id.to_owned()),
            Doc {
                version,
                source: None,
            },
        );
    }

    /// Live documents: `(index, id)` → `(version, source)`.
    pub fn live(&self) -> BTreeMap<(String, String), (i64, String)> {
        self.state
            .lock()
            .docs
            .iter()
            .filter_map(|(k, d)| Some((k.clone(), (d.version, d.source.clone()?))))
            .collect()
    }

    /// One document or tombstone.
    pub fn doc(&self, index: &str, id: &str) -> Option<Doc> {
        self.state
            .lock()
            .docs
            .get(&(index.to_owned(), id.to_owned()))
            .cloned()
    }

    /// Whether `index` exists.
    pub fn has_index(&self, index: &str) -> bool {
        self.state.lock().indices.contains_key(index)
    }

    /// Makes every exchange fail to connect (or succeed again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Answers the next `n` requests whose path contains `path_part` with
    /// `status` and an error body.
    pub fn fail_requests(&self, path_part: &'static str, n: usize, status: u16) {
        self.state
            .lock()
            .request_faults
            .extend(std::iter::repeat_n((path_part, status), n));
    }

    /// Plants an item error for document `id` in `_bulk` requests.
    pub fn fail_items(&self, id: &str, fault: ItemFault) {
        self.state.lock().item_faults.insert(id.to_owned(), fault);
    }

    /// `METHOD path` of every request answered so far.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().log.clone()
    }

    /// Bodies of the `_bulk` requests answered (not failed) so far.
    pub fn bulks(&self) -> Vec<String> {
        self.state.lock().bulks.clone()
    }

    fn answer(&self, method: &Method, uri: &str, body: &[u8]) -> (u16, Value) {
        let mut state = self.state.lock();
        state.log.push(format!("{method} {uri}"));
        if let Some(at) = state
            .request_faults
            .iter()
            .position(|(p, _)| uri.contains(p))
        {
            let (_, status) = state.request_faults.remove(at).unwrap();
            return (
                status,
                error("planted_exception", "planted request failure"),
            );
        }
        let path = uri.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (&Method::GET, []) => (
                200,
                json!({ "version": { "number": "7.17.0" }, "tagline": "You Know, for Search" }),
            ),
            (&Method::POST, ["_bulk"]) => {
                state.bulks.push(String::from_utf8_lossy(body).into_owned());
                (200, bulk(&mut state, body))
            }
            (&Method::POST, ["_mget"]) => (200, mget(&state, body)),
            (&Method::GET, [index, "_doc", id]) => {
                match state.docs.get(&(index.to_string(), id.to_string())) {
                    Some(Doc {
                        version,
                        source: Some(source),
                    }) => (
                        200,
                        json!({
                            "_index": index, "_id": id, "_version": version, "found": true,
                            "_source": serde_json::from_str::<Value>(source).unwrap(),
                        }),
                    ),
                    _ => (404, json!({ "_index": index, "_id": id, "found": false })),
                }
            }
            (&Method::PUT, [index, "_settings"]) if state.indices.contains_key(*index) => {
                (200, json!({ "acknowledged": true }))
            }
            (&Method::PUT, [_, "_settings"]) => {
                (404, error("index_not_found_exception", "no such index"))
            }
            (&Method::POST, [_, "_refresh"]) => (200, json!({ "_shards": { "failed": 0 } })),
            (&Method::POST, [index, "_search"]) => match_all(&state, index, body),
            (&Method::DELETE, ["_search", "scroll"]) => (200, json!({ "succeeded": true })),
            (&Method::PUT, [index]) if state.indices.contains_key(*index) => (
                400,
                error("resource_already_exists_exception", "index exists"),
            ),
            (&Method::PUT, [index]) => {
                state.indices.insert(index.to_string(), ());
                (200, json!({ "acknowledged": true, "index": index }))
            }
            (&Method::DELETE, [index]) => {
                state.indices.remove(*index);
                state.docs.retain(|(i, _), _| i != index);
                (200, json!({ "acknowledged": true }))
            }
            _ => (400, error("unsupported", &format!("{method} {uri}"))),
        }
    }
}

impl Cluster for MemoryCluster {
    async fn exchange(
        &self,
        header: RequestHeader,
        body: Bytes,
    ) -> Result<Response, ExchangeError> {
        let node = format!("{}-node", self.role);
        if self.down.load(Ordering::SeqCst) {
            return Err(ExchangeError::Connect {
                node,
                source: pingora::Error::new_str("connection refused"),
            });
        }
        let uri = header.uri.to_string();
        let (status, json) = self.answer(&header.method, &uri, &body);
        Ok(Response {
            header: ResponseHeader::build(status, None).unwrap(),
            body: Bytes::from(json.to_string()),
            node,
        })
    }

    fn url(&self) -> &str {
        "memory://cluster"
    }

    fn role(&self) -> &'static str {
        self.role
    }
}

fn error(error_type: &str, reason: &str) -> Value {
    json!({ "error": { "type": error_type, "reason": reason }, "status": 400 })
}

/// `_bulk` under `external_gte`: a write lower than what the document (or
/// its tombstone) holds is a version conflict.
fn bulk(state: &mut State, body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    while let Some(line) = lines.next() {
        let action: Value = serde_json::from_str(line).expect("bulk action line");
        let (kind, meta) = action.as_object().unwrap().iter().next().unwrap();
        let index = meta["_index"].as_str().unwrap().to_owned();
        let id = meta["_id"].as_str().unwrap().to_owned();
        let version = meta["version"].as_i64().expect("replay sends a version");
        assert_eq!(meta["version_type"], "external_gte");
        let source = match kind.as_str() {
            "index" => Some(lines.next().expect("index source line").to_owned()),
            "delete" => None,
            other => panic!("unexpected bulk action {other}"),
        };
        if let Some(fault) = state.item_faults.get_mut(&id)
            && fault.times != Some(0)
        {
            if let Some(n) = &mut fault.times {
                *n -= 1;
            }
            let (status, error_type) = (fault.status, fault.error_type);
            items.push(json!({ kind: { "status": status, "error": { "type": error_type, "reason": "planted" } } }));
            continue;
        }
        let key = (index.clone(), id.clone());
        let current = state.docs.get(&key).map(|d| d.version);
        if let Some(current) = current.filter(|c| version < *c) {
            items.push(json!({ kind: { "status": 409, "error": {
                "type": "version_conflict_engine_exception",
                "reason": format!("[{id}]: version conflict, current version [{current}] is higher than the one provided [{version}]"),
            } } }));
            continue;
        }
        let live = state.docs.get(&key).is_some_and(|d| d.source.is_some());
        state.indices.insert(index, ());
        let status = match (&source, live) {
            (Some(_), true) => 200,
            (Some(_), false) => 201,
            (None, true) => 200,
            (None, false) => 404,
        };
        state.docs.insert(key, Doc { version, source });
        items.push(json!({ kind: { "status": status } }));
    }
    json!({ "items": items })
}

fn mget(state: &State, body: &[u8]) -> Value {
    let request: Value = serde_json::from_slice(body).expect("_mget body");
    let docs: Vec<Value> = request["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let index = d["_index"].as_str().unwrap();
            let id = d["_id"].as_str().unwrap();
            match state.docs.get(&(index.to_owned(), id.to_owned())) {
                Some(Doc {
                    version,
                    source: Some(source),
                }) => json!({
                    "_index": index, "_id": id, "_version": version, "found": true,
                    "_source": serde_json::from_str::<Value>(source).unwrap(),
                }),
                _ => json!({ "_index": index, "_id": id, "found": false }),
            }
        })
        .collect();
    json!({ "docs": docs })
}

/// A search listing every live document of `index` (only `match_all` or
/// no query is understood), on one page.
fn match_all(state: &State, index: &str, body: &[u8]) -> (u16, Value) {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match request.get("query") {
        None => {}
        Some(q) if q.get("match_all").is_some() => {}
        Some(q) => return (400, error("unsupported", &format!("query {q}"))),
    }
    let hits: Vec<Value> = state
        .docs
        .iter()
        .filter(|((i, _), d)| i == index && d.source.is_some())
        .map(|((i, id), d)| json!({ "_index": i, "_id": id, "_version": d.version }))
        .collect();
    (
        200,
        json!({ "_scroll_id": "scroll-1", "_shards": { "failed": 0 }, "hits": { "hits": hits } }),
    )
}
