//! Reading whole indices from two clusters and comparing them document by
//! document (`_id`, `_source`, `_version`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::http;

/// `_id` → (`_version`, `_source`) of every document in `index`.
pub async fn documents(cluster: &str, index: &str) -> BTreeMap<String, (i64, Value)> {
    let client = http();
    let refreshed = client
        .post(format!("{cluster}/{index}/_refresh"))
        .send()
        .await
        .expect("refresh");
    assert!(
        refreshed.status().is_success(),
        "refresh {index} on {cluster}: {}",
        refreshed.status()
    );
    let response: Value = client
        .post(format!("{cluster}/{index}/_search?scroll=1m"))
        .json(&json!({ "size": 1000, "version": true, "query": { "match_all": {} }, "sort": ["_doc"] }))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search JSON");
    let mut docs = BTreeMap::new();
    let mut page = response;
    loop {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        for hit in hits {
            docs.insert(
                hit["_id"].as_str().expect("_id").to_string(),
                (
                    hit["_version"].as_i64().expect("_version"),
                    hit["_source"].clone(),
                ),
            );
        }
        let scroll_id = page["_scroll_id"].as_str().expect("scroll id").to_string();
        page = client
            .post(format!("{cluster}/_search/scroll"))
            .json(&json!({ "scroll": "1m", "scroll_id": scroll_id }))
            .send()
            .await
            .expect("scroll")
            .json()
            .await
            .expect("scroll JSON");
    }
    docs
}

/// Asserts `index` holds the same documents, sources and versions on both
/// clusters; returns the document count.
pub async fn assert_index_equal(primary: &str, backup: &str, index: &str) -> usize {
    let a = documents(primary, index).await;
    let b = documents(backup, index).await;
    let mut problems = Vec::new();
    for (id, (version, source)) in &a {
        match b.get(id) {
            None => problems.push(format!("{id}: missing on backup")),
            Some((v, s)) if v != version || s != source => problems.push(format!(
                "{id}: primary v{version} {source} / backup v{v} {s}"
            )),
            Some(_) => {}
        }
    }
    for id in b.keys().filter(|id| !a.contains_key(*id)) {
        problems.push(format!("{id}: extra on backup"));
    }
    assert!(
        problems.is_empty(),
        "{index} differs ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
    a.len()
}

/// Asserts `index` holds the same ids and sources on both clusters, with
/// every backup `_version` at or above the primary's (a document re-created
/// after the primary pruned its tombstone is repaired above the backup's
/// tombstone, so its version may run ahead); returns the document count.
pub async fn assert_converged(primary: &str, backup: &str, index: &str) -> usize {
    let a = documents(primary, index).await;
    let b = documents(backup, index).await;
    let mut problems = Vec::new();
    for (id, (version, source)) in &a {
        match b.get(id) {
            None => problems.push(format!(
                "{id}: missing on backup (primary v{version} {source})"
            )),
            Some((v, s)) if s != source => problems.push(format!(
                "{id}: primary v{version} {source} / backup v{v} {s}"
            )),
            Some((v, _)) if v < version => {
                problems.push(format!("{id}: backup v{v} behind primary v{version}"))
            }
            Some(_) => {}
        }
    }
    for (id, (v, s)) in b.iter().filter(|(id, _)| !a.contains_key(*id)) {
        problems.push(format!("{id}: extra on backup (v{v} {s})"));
    }
    assert!(
        problems.is_empty(),
        "{index} differs ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
    a.len()
}
