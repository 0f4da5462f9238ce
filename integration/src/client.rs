//! Small HTTP helpers the tests share: calls that return status and JSON,
//! `_bulk` from JSON lines, index creation, document writes, admin calls.

use std::ops::Range;

use reqwest::Method;
use serde_json::{Value, json};

use crate::http;

/// Sends a request with an optional JSON body; returns the status and the
/// JSON answer (`Null` when the body is not JSON).
pub async fn call(method: Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = http().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts `lines` as an NDJSON `_bulk` body to `url`.
pub async fn bulk(url: String, lines: &[Value]) -> (u16, Value) {
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let response = http()
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("bulk");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates `index` with one shard, no replicas and `mappings`; panics with
/// the cluster's answer on failure.
pub async fn create_index(url: &str, index: &str, mappings: Value) {
    let (status, body) = call(
        Method::PUT,
        format!("{url}/{index}"),
        Some(json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": mappings
        })),
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "create {index}: {status} {body}"
    );
}

/// `PUT /{index}/_doc/{id}`; returns the status (0 when the connection
/// failed).
pub async fn put_doc(url: &str, index: &str, id: &str, body: Value) -> u16 {
    http()
        .put(format!("{url}/{index}/_doc/{id}"))
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Indexes `{"i": n}` as document `n` for every `n` in `ids`, asserting
/// each is created.
pub async fn index_numbered_docs(url: &str, index: &str, ids: Range<u32>) {
    for i in ids {
        let status = put_doc(url, index, &i.to_string(), json!({ "i": i })).await;
        assert_eq!(status, 201, "document {i}");
    }
}

/// POSTs to a gateway admin endpoint and returns its JSON answer.
pub async fn admin_post(admin_url: &str, path: &str, body: Option<Value>) -> Value {
    let (status, value) = call(Method::POST, format!("{admin_url}{path}"), body).await;
    assert!(status < 500, "{path}: {status} {value}");
    value
}
