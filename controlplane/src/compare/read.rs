//! Reading the documents of one index on one side of a comparison: a plain
//! scroll over the whole index, and a lookup of given ids (the recheck).
//! An index that does not exist on that side reads as empty.

use reqwest::Method;
use serde_json::{Value, json};

use super::digest::source_hash;
use crate::jobs::JobFailure;
use crate::migration::search::{SearchClient, segment};

/// Keep-alive of a comparison scroll between two pages.
const SCROLL_KEEP_ALIVE: &str = "5m";

/// What a comparison needs of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSummary {
    /// `_id`.
    pub id: String,
    /// `_version` (0 when the cluster did not return it).
    pub version: i64,
    /// Hash of the canonical `_source` ([`source_hash`]).
    pub hash: String,
    /// Custom routing, empty when none.
    pub routing: String,
}

fn summaries(body: &Value) -> Vec<DocSummary> {
    body["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|hit| {
            Some(DocSummary {
                id: hit["_id"].as_str()?.to_string(),
                version: hit["_version"].as_i64().unwrap_or(0),
                hash: source_hash(&hit["_source"]),
                routing: hit["_routing"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// A scroll over every document of one index.
#[derive(Debug)]
pub struct Scroll<'a> {
    client: &'a SearchClient,
    index: &'a str,
    batch: u32,
    scroll_id: Option<String>,
    finished: bool,
}

impl<'a> Scroll<'a> {
    /// A scroll over `index` on `client`, `batch` documents per page.
    pub fn new(client: &'a SearchClient, index: &'a str, exists: bool, batch: u32) -> Self {
        Scroll {
            client,
            index,
            batch,
            scroll_id: None,
            finished: !exists,
        }
    }

    /// The next page; empty once every document was read.
    pub async fn next(&mut self) -> Result<Vec<DocSummary>, JobFailure> {
        if self.finished {
            return Ok(Vec::new());
        }
        let (path, body) = match &self.scroll_id {
            None => (
                format!(
                    "/{}/_search?scroll={SCROLL_KEEP_ALIVE}",
                    segment(self.index)
                ),
                json!({
                    "size": self.batch,
                    "version": true,
                    "sort": ["_doc"],
                    "query": { "match_all": {} },
                }),
            ),
            Some(id) => (
                "/_search/scroll".to_string(),
                json!({ "scroll": SCROLL_KEEP_ALIVE, "scroll_id": id }),
            ),
        };
        let body = self.client.expect(Method::POST, &path, Some(&body)).await?;
        self.scroll_id = body["_scroll_id"].as_str().map(str::to_string);
        let docs = summaries(&body);
        if docs.is_empty() {
            self.close().await;
        }
        Ok(docs)
    }

    /// Releases the scroll context (best effort; it expires anyway).
    pub async fn close(&mut self) {
        self.finished = true;
        if let Some(id) = self.scroll_id.take() {
            let body = json!({ "scroll_id": [id] });
            if let Err(err) = self
                .client
                .call(Method::DELETE, "/_search/scroll", Some(&body))
                .await
            {
                tracing::debug!(index = %self.index, error = %err, "cannot clear a scroll");
            }
        }
    }
}

/// The documents among `ids` that `index` holds on `client` now (nothing
/// when the index does not exist there).
pub async fn lookup(
    client: &SearchClient,
    index: &str,
    exists: bool,
    ids: &[String],
) -> Result<Vec<DocSummary>, JobFailure> {
    let mut found = Vec::new();
    if !exists {
        return Ok(found);
    }
    let path = format!("/{}/_search", segment(index));
    for chunk in ids.chunks(500) {
        let body = json!({
            "size": chunk.len(),
            "version": true,
            "query": { "ids": { "values": chunk } },
        });
        let body = client.expect(Method::POST, &path, Some(&body)).await?;
        found.extend(summaries(&body));
    }
    Ok(found)
}
