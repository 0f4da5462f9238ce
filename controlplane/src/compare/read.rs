//! Reading the documents of one index on one side of a comparison: a plain
//! scroll over the whole index, and a lookup of given ids (the recheck).
//! An index that does not exist on that side reads as empty.

use reqwest::Method;
use serde_json::{Value, json};
use tandem_proto::codes;

use super::digest::{SourceMatch, raw_source_hash};
use crate::jobs::JobFailure;
use crate::migration::hits::{SearchPage, parse_search_page};
use crate::migration::search::SearchClient;
use tandem_es::uri::encode_path_segment;

/// Keep-alive of a comparison scroll between two pages.
const SCROLL_KEEP_ALIVE: &str = "5m";

/// What a comparison needs of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSummary {
    /// `_id`.
    pub id: String,
    /// `_version` (0 when the cluster did not return it).
    pub version: i64,
    /// Hash of the `_source` ([`raw_source_hash`]).
    pub hash: String,
    /// Custom routing, empty when none.
    pub routing: String,
}

fn summaries(page: SearchPage, mode: SourceMatch) -> Vec<DocSummary> {
    page.hits
        .into_iter()
        .map(|hit| DocSummary {
            hash: raw_source_hash(hit.source.as_deref(), mode),
            id: hit.id,
            version: hit.version.unwrap_or(0),
            routing: hit.routing.unwrap_or_default(),
        })
        .collect()
}

/// Sends a search and reads its answer, keeping `_source` bytes.
async fn search_page(
    client: &SearchClient,
    path: &str,
    body: &Value,
) -> Result<SearchPage, JobFailure> {
    let bytes = client.expect_bytes(Method::POST, path, Some(body)).await?;
    parse_search_page(&bytes).map_err(|e| {
        JobFailure::transient(
            codes::UPSTREAM_PROTOCOL_ERROR,
            format!(
                "cluster {}: POST {path} answered something that is not a search answer: {e}",
                client.name
            ),
        )
    })
}

/// A scroll over every document of one index.
#[derive(Debug)]
pub struct Scroll<'a> {
    client: &'a SearchClient,
    index: &'a str,
    batch: u32,
    scroll_id: Option<String>,
    finished: bool,
    mode: SourceMatch,
}

impl<'a> Scroll<'a> {
    /// A scroll over `index` on `client`, `batch` documents per page,
    /// sources hashed under `mode`.
    pub fn new(
        client: &'a SearchClient,
        index: &'a str,
        exists: bool,
        batch: u32,
        mode: SourceMatch,
    ) -> Self {
        Scroll {
            client,
            index,
            batch,
            scroll_id: None,
            finished: !exists,
            mode,
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
                    encode_path_segment(self.index)
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
        let mut page = search_page(self.client, &path, &body).await?;
        self.scroll_id = page.scroll_id.take();
        let docs = summaries(page, self.mode);
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
    mode: SourceMatch,
) -> Result<Vec<DocSummary>, JobFailure> {
    let mut found = Vec::new();
    if !exists {
        return Ok(found);
    }
    let path = format!("/{}/_search", encode_path_segment(index));
    for chunk in ids.chunks(500) {
        let body = json!({
            "size": chunk.len(),
            "version": true,
            "query": { "ids": { "values": chunk } },
        });
        found.extend(summaries(search_page(client, &path, &body).await?, mode));
    }
    Ok(found)
}

/// The `_source` (compacted JSON) of each of `ids` in `index` on `client`,
/// by id, read now; an absent index or document is left out.
pub async fn sources(
    client: &SearchClient,
    index: &str,
    ids: &[String],
) -> Result<std::collections::HashMap<String, String>, JobFailure> {
    let mut found = std::collections::HashMap::new();
    if !crate::migration::metadata::exists(client, index).await? {
        return Ok(found);
    }
    let path = format!("/{}/_search", encode_path_segment(index));
    for chunk in ids.chunks(500) {
        let body = json!({ "size": chunk.len(), "query": { "ids": { "values": chunk } } });
        for hit in search_page(client, &path, &body).await?.hits {
            if let Some(source) = hit.source {
                found.insert(hit.id, source);
            }
        }
    }
    Ok(found)
}
