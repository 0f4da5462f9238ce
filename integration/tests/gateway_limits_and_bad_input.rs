//! Per-node limits measured through the gateway, and bad input: clear
//! errors, and nothing recorded that the primary did not accept.

use std::time::Instant;

use serde_json::{Value, json};
use tandem_integration::client::{bulk, create_index};
use tandem_integration::gateway::{GatewayOptions, TestGateway, replication_status};
use tandem_integration::{SearchCluster, env, http, unique_index};

fn primary_and_backup() -> (&'static SearchCluster, &'static SearchCluster) {
    let clusters = &env().clusters;
    (&clusters[0], &clusters[1])
}

async fn next_offset(admin_url: &str) -> u64 {
    replication_status(admin_url).await["queue"]["next_offset"]
        .as_u64()
        .expect("next_offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_qps_stays_within_20_percent_of_the_per_node_limit() {
    let (primary, _) = primary_and_backup();
    let mut options = GatewayOptions::proxy(&primary.url);
    options.extra_toml = "[primary.limits]\nmax_qps_per_node = 40\n".into();
    let gw = TestGateway::start_with(options).await;
    let client = http();
    // Warm the connection pool, then send 160 requests from 8 clients.
    client.get(&gw.url).send().await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), gw.url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let status = client.get(&url).send().await.unwrap().status();
                assert_eq!(status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let qps = 160.0 / started.elapsed().as_secs_f64();
    assert!(
        (32.0..=48.0).contains(&qps),
        "measured {qps:.1} requests/s for a limit of 40"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_bytes_per_second_stay_within_20_percent_of_the_per_node_limit() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    options.extra_toml = "[primary.limits]\nmax_bytes_per_sec_per_node = 200000\n".into();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("bytes-limit");
    // 32 bulk requests of ~40 kB: ~1.3 MB at 200 kB/s is about 6 s.
    let mut body = String::new();
    for i in 0..100 {
        body.push_str(&json!({ "index": { "_index": index, "_id": i.to_string() } }).to_string());
        body.push('\n');
        body.push_str(&json!({ "pad": "x".repeat(340) }).to_string());
        body.push('\n');
    }
    // Create the index and warm the connection pool first: index creation
    // would make the first measured request slow.
    create_index(
        &primary.url,
        &index,
        json!({ "properties": { "pad": { "type": "keyword", "index": false } } }),
    )
    .await;
    let (status, _) = bulk(
        format!("{}/_bulk", gw.url),
        &[
            json!({ "index": { "_index": index, "_id": "warm-up" } }),
            json!({ "pad": "" }),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // Four concurrent clients, so the limiter (not the upstream's
    // latency) sets the pace. The rate is measured between the first and
    // the last completion: every request after the first waits for the
    // previous one's bytes, and a constant latency shifts them all alike.
    let client = http();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, body) = (client.clone(), gw.url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for _ in 0..8 {
                let response = client
                    .post(format!("{url}/_bulk"))
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                done.push(Instant::now());
            }
            done
        }));
    }
    let mut completions = Vec::new();
    for task in tasks {
        completions.extend(task.await.unwrap());
    }
    completions.sort();
    let span = (*completions.last().unwrap() - completions[0]).as_secs_f64();
    let rate = ((completions.len() - 1) * body.len()) as f64 / span;
    assert!(
        (160_000.0..=240_000.0).contains(&rate),
        "measured {rate:.0} bytes/s for a limit of 200000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_with_reject_policy_gets_429_with_retry_after() {
    let (primary, _) = primary_and_backup();
    let mut options = GatewayOptions::proxy(&primary.url);
    options.extra_toml = "[primary.limits]\nmax_qps_per_node = 1\nover_limit = \"reject\"\n".into();
    let gw = TestGateway::start_with(options).await;
    let client = http();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..5 {
        let response = client.get(&gw.url).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .to_string();
            let body: Value = response.json().await.unwrap();
            refused = Some((retry_after, body));
        }
    }
    assert_eq!(statuses[0], 200);
    let (retry_after, body) = refused.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    assert_eq!(body["error"]["type"], "tandem_rate_limited");
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("max_qps_per_node")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_record_nothing() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    options.top_level_toml = "max_body_bytes = 4096".into();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("bad-input");
    let client = http();
    let before = next_offset(&gw.admin_url).await;

    // Malformed NDJSON: refused before the primary sees it.
    let response = client
        .post(format!("{}/_bulk", gw.url))
        .header("content-type", "application/x-ndjson")
        .body(format!("{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"1\"}}}}\n{{\"a\":1}}\n{{not json\n{{\"b\":2}}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("line [3]"), "{reason}");

    // Missing final newline, as Elasticsearch itself requires.
    let response = client
        .post(format!("{}/{index}/_bulk", gw.url))
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("newline"),
        "{body}"
    );

    // Oversized body: 413, not forwarded.
    let big = json!({ "pad": "x".repeat(10_000) });
    let response = client
        .put(format!("{}/{index}/_doc/big", gw.url))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "tandem_request_too_large");

    // A write the gateway cannot replicate is refused, not passed through.
    let response = client
        .post(format!("{}/_reindex", gw.url))
        .json(&json!({ "source": { "index": "a" }, "dest": { "index": "b" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "tandem_unsupported_write");

    // A write the primary rejects is answered as the primary answered and
    // not recorded.
    let response = client
        .put(format!(
            "{}/{index}/_doc/1?version=5&version_type=bogus",
            gw.url
        ))
        .json(&json!({ "a": 1 }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());

    assert_eq!(next_offset(&gw.admin_url).await, before, "nothing recorded");
    let missing = client
        .get(format!("{}/{index}/_doc/big", primary.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        404,
        "oversized write never reached the primary"
    );
}

fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match encoding {
        "gzip" => {
            let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            out.write_all(data).unwrap();
            out.finish().unwrap()
        }
        _ => {
            let mut out = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            out.write_all(data).unwrap();
            out.finish().unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_writes_are_decoded_forwarded_recorded_and_replayed() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.top_level_toml = "max_body_bytes = 65536".into();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("compressed");
    let client = http();

    // A gzip bulk (what Beats and Logstash send with compression on) and a
    // deflate single-document write both reach the primary and are replayed.
    let mut lines = String::new();
    for i in 0..50 {
        lines.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"g{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    let response = client
        .post(format!("{}/_bulk", gw.url))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(compress("gzip", lines.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"], false, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 50);
    let response = client
        .put(format!("{}/{index}/_doc/d1", gw.url))
        .header("content-type", "application/json")
        .header("content-encoding", "deflate")
        .body(compress("deflate", br#"{"n":1000}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let status =
        tandem_integration::gateway::drain(&gw.admin_url, std::time::Duration::from_secs(30)).await;
    assert_eq!(status["dead_letters"], 0, "{status}");
    let copied =
        tandem_integration::compare::assert_index_equal(&primary.url, &backup.url, &index).await;
    assert_eq!(copied, 51);
    let before = next_offset(&gw.admin_url).await;

    // An encoding the gateway cannot read: 415, nothing forwarded.
    let response = client
        .put(format!("{}/{index}/_doc/br", gw.url))
        .header("content-encoding", "br")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["type"], "tandem_unsupported_encoding",
        "{body}"
    );
    // A body that is not the gzip it claims to be: 400.
    let response = client
        .put(format!("{}/{index}/_doc/bad", gw.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(b"{\"n\":1}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "tandem_bad_encoding", "{body}");
    // Small on the wire, too large once decompressed: 413 (no decompression
    // bomb gets past max_body_bytes).
    let bomb = format!("{{\"pad\":\"{}\"}}", "x".repeat(1_000_000));
    let compressed = compress("gzip", bomb.as_bytes());
    assert!(compressed.len() < 65_536);
    let response = client
        .put(format!("{}/{index}/_doc/bomb", gw.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(next_offset(&gw.admin_url).await, before, "nothing recorded");
    for id in ["br", "bad", "bomb"] {
        let found = client
            .get(format!("{}/{index}/_doc/{id}", primary.url))
            .send()
            .await
            .unwrap();
        assert_eq!(found.status(), 404, "{id} never reached the primary");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_new_writes_with_507_and_keeps_every_acked_one() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    options.extra_toml = "[queue]\nsegment_bytes = 4096\nmax_bytes = 8192\n".into();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("queue-full");
    let client = http();
    let mut acked = 0;
    let mut refused = None;
    for i in 0..200 {
        let response = client
            .put(format!("{}/{index}/_doc/{i}", gw.url))
            .json(&json!({ "pad": "y".repeat(200) }))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => acked += 1,
            507 => {
                refused = Some((i, response.json::<Value>().await.unwrap()));
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let (refused_id, body) = refused.expect("the queue filled up");
    assert_eq!(body["error"]["type"], "tandem_queue_full");
    // The refused write never reached the primary...
    let status = client
        .get(format!("{}/{index}/_doc/{refused_id}", primary.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    // ...and every acknowledged one is in the queue (the index was
    // auto-created by the first write: one record per document).
    let recorded = replication_status(&gw.admin_url).await["replayer"]["lag_records"]
        .as_u64()
        .unwrap();
    assert_eq!(recorded, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_discovery_lists_the_clusters_http_nodes() {
    let (primary, _) = primary_and_backup();
    let mut options = GatewayOptions::proxy(&primary.url);
    // Point the seed at "localhost": discovery must replace it with the
    // node's published address.
    options.primary = primary.url.replace("127.0.0.1", "localhost");
    options.extra_toml = "discovery = true\ndiscovery_interval_secs = 1\n".into();
    let gw = TestGateway::start_with(options).await;
    let port = primary.url.rsplit(':').next().unwrap().to_string();
    let mut nodes = Value::Null;
    for _ in 0..50 {
        let body: Value = http()
            .get(format!("{}/upstreams", gw.admin_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        nodes = body["upstreams"][0]["nodes"].clone();
        if nodes == json!([format!("127.0.0.1:{port}")]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(nodes, json!([format!("127.0.0.1:{port}")]));
    // Requests still go through.
    let status = http().get(&gw.url).send().await.unwrap().status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sent_with_expect_continue_get_an_interim_100() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("expect");
    let body = format!("{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"1\"}}}}\n{{\"a\":1}}\n");
    let mut stream = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /_bulk HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/x-ndjson\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The client holds the body back until it hears 100 Continue.
    let mut interim = [0u8; 25];
    tokio::time::timeout(
        std::time::Duration::from_millis(500),
        stream.read_exact(&mut interim),
    )
    .await
    .expect("100 Continue within 500 ms")
    .unwrap();
    assert!(
        String::from_utf8_lossy(&interim).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.contains("200 OK"), "{response}");
    assert_eq!(
        next_offset(&gw.admin_url).await,
        1,
        "the write was recorded"
    );
}
