//! Replaying `_update_by_query` / `_delete_by_query` as the reconciliation
//! of the documents they match, so that by-query writes are version-fenced
//! like every other document write.
//!
//! Re-running a by-query write on the backup is not enough: its search sees
//! what the backup's last refresh made visible, the primary's run saw what
//! *its* last refresh made visible, and writes racing with it may be seen on
//! one side only. The two runs can select different documents, with no
//! error anywhere. An update script may not even run on the backup (another
//! major version, no painless).
//!
//! Instead the replayer, once every record before the op has been applied:
//!
//! 1. refreshes the op's indices on the backup ([`refresh_path`]);
//! 2. lists, with a scroll, the backup documents the op's query matches
//!    there ([`match_search`], [`parse_match_page`]): the documents the op
//!    may have changed, in the state the primary had them before it;
//! 3. reads each page's documents from the primary in one `_mget`
//!    ([`crate::docstate::source_mget`]), and writes what the primary
//!    holds now, version-fenced ([`page_ops`]): a document gone from the
//!    primary is deleted above the backup's version; one whose primary
//!    version equals the backup's was not changed and is skipped.
//!
//! Whatever the primary's run selected, the backup ends with the primary's
//! state of every document the query matches on the backup. A document the
//! query matches on the primary only (one the backup already lacked) is
//! outside this op: the verifier and the comparison job find such earlier
//! differences.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::classify::normalize_type;
use super::docstate::{DocKey, DocState};
use super::json::push_str;
use super::ops::ReplicationOp;
use super::replay::ReplayTarget;
use super::rewrite::{RewriteError, replay_request};
use super::uri::{self, encode_path_segment};

/// Documents listed per scroll page (and read per `_mget`).
pub const PAGE_SIZE: usize = 500;
/// How long the backup keeps the scroll between pages.
pub const SCROLL_KEEP_ALIVE: &str = "2m";
/// Path of the scroll continuation and clearing requests.
pub const SCROLL_PATH: &str = "/_search/scroll";

/// URI-search parameters of a by-query request that change which documents
/// match; every other parameter (refresh, conflicts, slices, throttling,
/// `max_docs`...) only changes how the run goes and is dropped.
const MATCH_PARAMS: &[&str] = &[
    "q",
    "df",
    "default_operator",
    "analyzer",
    "analyze_wildcard",
    "lenient",
    "routing",
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
];

/// Path of the refresh sent to the backup before a query-scoped op, so its
/// search sees every document replayed before it. `None` for other ops.
pub fn refresh_path(op: &ReplicationOp) -> Option<String> {
    let ReplicationOp::QueryScoped { .. } = op else {
        return None;
    };
    let target = match op.index() {
        Some(index) => format!("/{}", encode_path_segment(&index)),
        None => String::new(),
    };
    Some(format!(
        "{target}/_refresh?ignore_unavailable=true&allow_no_indices=true"
    ))
}

/// The first request of the scroll that lists what a query-scoped op
/// matches on `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchSearch {
    /// `POST` path with query.
    pub path: String,
    /// JSON body: the op's `query`, ids and versions only, in index order.
    pub body: Vec<u8>,
}

/// The search listing the documents `op` (a query-scoped op) matches on
/// the backup, with the same path rewrite as replaying it would use
/// (typed paths on typeless backups).
pub fn match_search(
    op: &ReplicationOp,
    target: &ReplayTarget,
) -> Result<MatchSearch, RewriteError> {
    let ReplicationOp::QueryScoped { .. } = op else {
        return Err(RewriteError::NotARequestOp {
            kind: op.kind_name(),
        });
    };
    let request = replay_request(op, target)?;
    let (path, query) = uri::split_path_query(&request.path);
    let search_path = match path.rsplit_once('/') {
        Some((prefix, "_update_by_query" | "_delete_by_query")) => format!("{prefix}/_search"),
        _ => {
            return Err(RewriteError::NotByQuery(format!(
                "not a by-query path: {path}"
            )));
        }
    };
    let mut params: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            MATCH_PARAMS.contains(&key)
        })
        .collect();
    let scroll = format!("scroll={SCROLL_KEEP_ALIVE}");
    params.push(&scroll);
    #[derive(Deserialize)]
    struct ByQueryBody<'a> {
        #[serde(borrow)]
        query: Option<&'a RawValue>,
    }
    let first = request.body.iter().find(|b| !b.is_ascii_whitespace());
    let query = if first.is_none() {
        None
    } else if first != Some(&b'{') {
        return Err(RewriteError::NotByQuery("body is not a JSON object".into()));
    } else {
        serde_json::from_slice::<ByQueryBody<'_>>(&request.body)
            .map_err(|e| RewriteError::NotByQuery(format!("body is not a JSON object: {e}")))?
            .query
            .map(RawValue::get)
    };
    let mut body = Vec::with_capacity(128 + query.map_or(0, str::len));
    body.extend_from_slice(b"{");
    if let Some(query) = query {
        body.extend_from_slice(b"\"query\":");
        body.extend_from_slice(query.as_bytes());
        body.push(b',');
    }
    body.extend_from_slice(
        format!("\"_source\":false,\"version\":true,\"size\":{PAGE_SIZE},\"sort\":[\"_doc\"]}}")
            .as_bytes(),
    );
    Ok(MatchSearch {
        path: format!("{search_path}?{}", params.join("&")),
        body,
    })
}

/// Body of the request for the next page of a scroll.
pub fn scroll_body(scroll_id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(scroll_id.len() + 40);
    body.extend_from_slice(b"{\"scroll\":\"");
    body.extend_from_slice(SCROLL_KEEP_ALIVE.as_bytes());
    body.extend_from_slice(b"\",\"scroll_id\":");
    push_str(&mut body, scroll_id);
    body.push(b'}');
    body
}

/// Body of the request that frees a scroll (`DELETE` [`SCROLL_PATH`]).
pub fn clear_scroll_body(scroll_id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(scroll_id.len() + 20);
    body.extend_from_slice(b"{\"scroll_id\":[");
    push_str(&mut body, scroll_id);
    body.extend_from_slice(b"]}");
    body
}

/// One page of matching documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchPage {
    /// Scroll to continue with (absent on some answers without hits).
    pub scroll_id: Option<String>,
    /// Each matching document with the `_version` the backup holds.
    pub hits: Vec<(DocKey, i64)>,
}

#[derive(Deserialize)]
struct SearchAnswer {
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    hits: Option<Hits>,
    #[serde(rename = "_shards")]
    shards: Option<Shards>,
}

#[derive(Deserialize)]
struct Shards {
    failed: Option<u64>,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_type")]
    doc_type: Option<String>,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_routing")]
    routing: Option<String>,
    #[serde(rename = "_version")]
    version: Option<i64>,
}

/// Reads a page of [`match_search`] or a scroll continuation. `Err` when
/// the answer is not a search answer, or when shards failed (the page may
/// be incomplete: the whole op is tried again).
pub fn parse_match_page(body: &[u8]) -> Result<MatchPage, String> {
    let answer: SearchAnswer =
        serde_json::from_slice(body).map_err(|e| format!("not a search answer: {e}"))?;
    if let Some(failed) = answer.shards.and_then(|s| s.failed).filter(|f| *f > 0) {
        return Err(format!("{failed} shards failed"));
    }
    let hits = answer.hits.ok_or("search answer without hits")?.hits;
    let hits = hits
        .into_iter()
        .map(|hit| {
            let version = hit
                .version
                .filter(|v| *v >= 0)
                .ok_or_else(|| format!("hit [{}] has no _version", hit.id))?;
            Ok((
                DocKey {
                    index: hit.index,
                    doc_type: normalize_type(hit.doc_type.as_deref()),
                    id: hit.id,
                    routing: hit.routing,
                },
                version,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(MatchPage {
        scroll_id: answer.scroll_id,
        hits,
    })
}

/// The ops that make the backup hold the primary's current state of every
/// matched document: `primary[i]` is the primary's state of `hits[i]`.
/// A document whose primary version equals the backup's is unchanged and
/// gets no op; one gone from the primary is deleted one above the backup's
/// version (strictly above, so a stale record of it cannot undo the
/// delete); any other is written at the primary's version.
pub fn page_ops(hits: &[(DocKey, i64)], primary: &[DocState]) -> Vec<ReplicationOp> {
    hits.iter()
        .zip(primary)
        .filter_map(|((key, backup_version), state)| match state {
            DocState::Present { version, .. } if version == backup_version => None,
            DocState::Present { version, .. } => Some(state.to_op(key, *version)),
            DocState::Absent => Some(state.to_op(key, backup_version.saturating_add(1))),
        })
        .collect()
}

/// The scroll id of a page, if the answer carries one (to clear it when
/// the page itself cannot be read).
pub fn scroll_id_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "_scroll_id")]
        scroll_id: Option<String>,
    }
    serde_json::from_slice::<Id>(body).ok()?.scroll_id
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::version::ClusterVersion;

    fn by_query(path: &str, body: &str) -> ReplicationOp {
        ReplicationOp::QueryScoped {
            method: Method::POST,
            path: path.into(),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn target(major: u32) -> ReplayTarget {
        ReplayTarget::new(ClusterVersion::elasticsearch(major, 8))
    }

    fn body_json(search: &MatchSearch) -> Value {
        serde_json::from_slice(&search.body).unwrap()
    }

    #[test]
    fn by_query_writes_are_preceded_by_a_refresh_of_their_indices() {
        assert_eq!(
            refresh_path(&by_query(
                "/logs-*,other/_delete_by_query?refresh=true",
                "{}"
            ))
            .as_deref(),
            Some("/logs-%2A%2Cother/_refresh?ignore_unavailable=true&allow_no_indices=true")
        );
        assert_eq!(
            refresh_path(&by_query("/tweets/tweet/_update_by_query", "")).as_deref(),
            Some("/tweets/_refresh?ignore_unavailable=true&allow_no_indices=true")
        );
        let meta = ReplicationOp::IndexMeta {
            method: Method::PUT,
            path: "/tweets".into(),
            body: Bytes::new(),
        };
        assert_eq!(refresh_path(&meta), None);
    }

    #[test]
    fn the_match_search_keeps_the_query_and_what_selects_documents() {
        let op = by_query(
            "/logs/_delete_by_query?conflicts=proceed&routing=u1&refresh=true&max_docs=5&q=level:debug&slices=auto",
            r#"{"query": {"range": {"n": {"gte": 1.50}}}, "max_docs": 5, "script": {"source": "x"}}"#,
        );
        let search = match_search(&op, &target(7)).unwrap();
        assert_eq!(
            search.path,
            "/logs/_search?routing=u1&q=level:debug&scroll=2m"
        );
        assert_eq!(
            body_json(&search),
            json!({ "query": { "range": { "n": { "gte": 1.50 } } }, "_source": false,
                    "version": true, "size": PAGE_SIZE, "sort": ["_doc"] })
        );
        // The query's bytes are carried as they were sent.
        assert!(String::from_utf8_lossy(&search.body).contains("1.50"));
    }

    #[test]
    fn the_match_search_follows_the_type_rewrite_and_defaults_to_every_document() {
        let typed = by_query("/tweets/tweet/_update_by_query", "");
        let on_7 = match_search(&typed, &target(7)).unwrap();
        assert_eq!(on_7.path, "/tweets/_search?scroll=2m");
        assert_eq!(
            body_json(&on_7),
            json!({ "_source": false, "version": true, "size": PAGE_SIZE, "sort": ["_doc"] })
        );
        let on_6 = match_search(&typed, &target(6)).unwrap();
        assert_eq!(on_6.path, "/tweets/tweet/_search?scroll=2m");
        assert!(match_search(&by_query("/t/_delete_by_query", "[1]"), &target(7)).is_err());
        assert!(match_search(&by_query("/t/_delete_by_query", "{x"), &target(7)).is_err());
        let meta = ReplicationOp::IndexMeta {
            method: Method::PUT,
            path: "/t".into(),
            body: Bytes::new(),
        };
        assert!(match_search(&meta, &target(7)).is_err());
    }

    #[test]
    fn match_pages_name_each_document_with_the_backups_version() {
        let page = parse_match_page(
            br#"{"_scroll_id":"abc","_shards":{"total":1,"failed":0},"hits":{"hits":[
                {"_index":"t","_type":"_doc","_id":"1","_version":3},
                {"_index":"t","_type":"tweet","_id":"2","_routing":"u","_version":1}]}}"#,
        )
        .unwrap();
        assert_eq!(page.scroll_id.as_deref(), Some("abc"));
        assert_eq!(page.hits.len(), 2);
        assert_eq!(page.hits[0].0.doc_type, None);
        assert_eq!(page.hits[0].1, 3);
        assert_eq!(page.hits[1].0.doc_type.as_deref(), Some("tweet"));
        assert_eq!(page.hits[1].0.routing.as_deref(), Some("u"));
        assert!(
            parse_match_page(br#"{"_shards":{"failed":1},"hits":{"hits":[]}}"#)
                .unwrap_err()
                .contains("shards failed")
        );
        assert!(parse_match_page(br#"{"hits":{"hits":[{"_index":"t","_id":"1"}]}}"#).is_err());
        assert!(parse_match_page(b"<html>").is_err());
        assert_eq!(
            scroll_id_of(br#"{"_scroll_id":"x","hits":5}"#).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn page_ops_write_what_the_primary_holds_now() {
        let key = |id: &str| DocKey {
            index: "t".into(),
            doc_type: None,
            id: id.into(),
            routing: None,
        };
        let present = |version| DocState::Present {
            version,
            source: Bytes::from_static(br#"{"n":1}"#),
            doc_type: None,
            routing: None,
        };
        let hits = [(key("same"), 4), (key("updated"), 4), (key("deleted"), 4)];
        let ops = page_ops(&hits, &[present(4), present(5), DocState::Absent]);
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], ReplicationOp::Index { id, version: 5, .. } if id == "updated"));
        assert!(matches!(&ops[1], ReplicationOp::Delete { id, version: 5, .. } if id == "deleted"));
    }

    #[test]
    fn scroll_bodies_escape_the_id() {
        assert_eq!(
            scroll_body("a\"b"),
            br#"{"scroll":"2m","scroll_id":"a\"b"}"#.to_vec()
        );
        assert_eq!(clear_scroll_body("x"), br#"{"scroll_id":["x"]}"#.to_vec());
    }
}
