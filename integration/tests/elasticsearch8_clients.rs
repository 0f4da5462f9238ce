//! What Elasticsearch 8 clients send and check, through the gateway: the
//! compatibility media types (`application/vnd.elasticsearch+json;
//! compatible-with=8`, and `compatible-with=7` with `_type` in bulk lines,
//! which 8.x accepts only in that mode) are forwarded and the writes
//! replicated to a typeless OpenSearch backup; the `X-Elastic-Product`
//! header clients verify reaches them unchanged on reads and writes.

use std::time::Duration;

use serde_json::{Value, json};
use tandem_integration::compare::assert_index_equal;
use tandem_integration::gateway::{GatewayOptions, TestGateway, drain};
use tandem_integration::{env, http, unique_index};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn media(kind: &str, major: u32) -> String {
    format!("application/vnd.elasticsearch+{kind};compatible-with={major}")
}

/// Sends `body` with the compatibility media types of `major`; status,
/// `X-Elastic-Product` and JSON answer.
async fn send(
    method: reqwest::Method,
    url: String,
    major: u32,
    ndjson: bool,
    body: String,
) -> (u16, Option<String>, Value) {
    let response = http()
        .request(method, url)
        .header(
            "content-type",
            media(if ndjson { "x-ndjson" } else { "json" }, major),
        )
        .header("accept", media("json", major))
        .body(body)
        .send()
        .await
        .expect("gateway reachable");
    let status = response.status().as_u16();
    let product = response
        .headers()
        .get("x-elastic-product")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        product,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_media_types_are_forwarded_replicated_and_answered_as_elasticsearch() {
    let (es8, os2) = (&env().cluster("es8").url, &env().cluster("os2").url);
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(es8, os2, dir.path());
    options.paused = true;
    let gateway = TestGateway::start_with(options).await;
    let index = unique_index("es8-clients");
    let elastic = Some("Elasticsearch".to_owned());

    // An 8.x client: typeless, compatible-with=8.
    let lines: String = (0..20)
        .map(|i| {
            format!(
                "{}\n{}\n",
                json!({ "index": { "_index": index, "_id": i.to_string() } }),
                json!({ "n": i, "client": 8 })
            )
        })
        .collect();
    let (status, product, answer) = send(
        reqwest::Method::POST,
        format!("{}/_bulk", gateway.url),
        8,
        true,
        lines,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], json!(false), "{answer}");
    assert_eq!(product, elastic, "bulk answer keeps X-Elastic-Product");
    let (status, product, answer) = send(
        reqwest::Method::PUT,
        format!("{}/{index}/_doc/single", gateway.url),
        8,
        false,
        json!({ "n": 100, "client": 8 }).to_string(),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(product, elastic);

    // A 7.x client talking to 8.x in compatibility mode: `_type` in bulk
    // lines is accepted there, and must not reach the typeless backup.
    let lines: String = (20..30)
        .map(|i| {
            format!(
                "{}\n{}\n",
                json!({ "index": { "_index": index, "_type": "_doc", "_id": i.to_string() } }),
                json!({ "n": i, "client": 7 })
            )
        })
        .collect();
    let (status, _, answer) = send(
        reqwest::Method::POST,
        format!("{}/_bulk", gateway.url),
        7,
        true,
        lines,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], json!(false), "{answer}");
    let (status, _, answer) = send(
        reqwest::Method::DELETE,
        format!("{}/{index}/_doc/3", gateway.url),
        7,
        false,
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // Reads are answered by the primary, header included.
    let (status, product, answer) = send(
        reqwest::Method::POST,
        format!("{}/{index}/_search?size=0", gateway.url),
        8,
        false,
        json!({ "query": { "match_all": {} } }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(product, elastic, "reads keep X-Elastic-Product");

    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(assert_index_equal(es8, os2, &index).await, 30);
    gateway.stop();
    for url in [es8, os2] {
        http()
            .delete(format!("{url}/{index}"))
            .send()
            .await
            .expect("delete");
    }
}
