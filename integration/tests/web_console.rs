//! The web console's listener (`--ui-listen`) of a real control plane on
//! real Postgres: the console's page with its security headers, and every
//! `tandem.v1` service over gRPC-web behind the same token check as gRPC;
//! then the operator's workflow driven through the console in headless
//! Chromium (`console/test/e2e.mjs`, playwright-core with Debian's
//! `chromium`), against a real gateway and real clusters.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use prost::Message;
use tandem_integration::compare::assert_index_equal;
use tandem_integration::controlplane::{ControlPlaneApi, InProcessControlPlane};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::workflow::{drained_since, wait_task};
use tandem_integration::{env, free_port, fresh_database, http, repo_root, unique_index};
use tandem_proto::v1 as pb;

const TOKEN: &str = "web-console-test-token";

/// A control plane with its console on a free port; the console's URL.
async fn console(name: &str) -> (InProcessControlPlane, String) {
    let database = fresh_database(name).await;
    let mut config = InProcessControlPlane::config(&database, TOKEN);
    let ui = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.ui_listen = Some(ui);
    let cp = InProcessControlPlane::start(config).await;
    (cp, format!("http://{ui}"))
}

/// One gRPC-web call (binary): the HTTP status, the `grpc-status` (from
/// the headers of a trailers-only answer, else from the trailer frame)
/// and the message bytes.
async fn grpc_web(
    url: &str,
    method: &str,
    token: Option<&str>,
    request: impl Message,
) -> (u16, String, Vec<u8>) {
    let message = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut call = http()
        .post(format!("{url}/{method}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(token) = token {
        call = call.header("authorization", format!("Bearer {token}"));
    }
    let response = call.send().await.expect("gRPC-web call");
    let status = response.status().as_u16();
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.expect("gRPC-web body").to_vec();
    // Frames: flag byte, big-endian length, payload; flag 0x80 = trailers.
    let (mut message, mut trailer_status) = (Vec::new(), None);
    let mut rest = bytes.as_slice();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            let text = String::from_utf8_lossy(payload);
            trailer_status = text
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()));
        } else {
            message = payload.to_vec();
        }
        rest = &rest[5 + len..];
    }
    let grpc_status = header_status
        .or(trailer_status)
        .unwrap_or_else(|| "none".into());
    (status, grpc_status, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_grpc_web_share_one_origin_and_one_token_check() {
    let (cp, url) = console("web_console").await;

    // The page, with headers that forbid fetches elsewhere and framing.
    let page = http().get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external fetch: {html}"
    );
    // The console routes in the fragment; any other path is the page too.
    let deep = http().get(format!("{url}/tasks/x")).send().await.unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.text().await.unwrap(), html);

    // gRPC-web with the token: a real answer.
    let (status, grpc, message) = grpc_web(
        &url,
        "tandem.v1.ClusterService/ListClusters",
        Some(TOKEN),
        pb::ListClustersRequest::default(),
    )
    .await;
    assert_eq!((status, grpc.as_str()), (200, "0"));
    let listed =
        pb::ListClustersResponse::decode(message.as_slice()).expect("a ListClustersResponse");
    assert!(listed.clusters.is_empty());

    // A wrong or missing token is refused as on the gRPC listener.
    for token in [Some("not-the-right-token-at-all"), None] {
        let (status, grpc, _) = grpc_web(
            &url,
            "tandem.v1.ClusterService/ListClusters",
            token,
            pb::ListClustersRequest::default(),
        )
        .await;
        assert_eq!((status, grpc.as_str()), (200, "16"), "token {token:?}");
    }
    // A method no service has.
    let (_, grpc, _) = grpc_web(
        &url,
        "tandem.v1.NoSuchService/Nothing",
        Some(TOKEN),
        pb::ListClustersRequest::default(),
    )
    .await;
    assert_eq!(grpc, "12");

    cp.stop().await;
    // Stopping the control plane closes the console too.
    assert!(http().get(format!("{url}/")).send().await.is_err());
}

/// How long the browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workflow_runs_from_the_console_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's chromium package (scripts/dev test does) or set CHROMIUM"
    );
    let console_dir = repo_root().join("console");
    let deps = std::process::Command::new(console_dir.join("build.sh"))
        .arg("--deps-only")
        .status()
        .expect("run console/build.sh --deps-only");
    assert!(deps.success(), "console/build.sh --deps-only failed");

    let env = env();
    let (primary, backup) = (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    );
    let (cp, url) = console("web_console_workflow").await;
    let queue = tempfile::tempdir().unwrap();
    let gateway_id = "gw-console";
    let mut options = GatewayOptions::replicating(&primary, &backup, queue.path());
    options.paused = true;
    options.extra_toml = cp.agent_section(gateway_id);
    let gateway = TestGateway::start_with(options).await;
    let index = unique_index("console");
    let screenshots = std::env::temp_dir().join(format!("tandem-console-screenshots-{index}"));

    let run = tokio::process::Command::new("node")
        .arg(console_dir.join("test/e2e.mjs"))
        .args(["--url", &url, "--token", TOKEN, "--workflow"])
        .args(["--primary-endpoint", &primary, "--backup-endpoint", &backup])
        .args(["--gateway-id", gateway_id, "--gateway-url", &gateway.url])
        .args(["--index", &index])
        .arg("--screenshots")
        .arg(&screenshots)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .expect("the browser run ends in time")
        .expect("run node console/test/e2e.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\nscreenshots: {}", screenshots.display());
    assert!(
        output.status.success(),
        "the console workflow failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // What the console did is what the clusters hold.
    let mut tasks = cp.tasks().await;
    let listed = tasks
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .expect("list tasks")
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1, "the console created one task");
    let task = listed[0].id.clone();
    let since = SystemTime::now();
    wait_task(&mut tasks, &task, "drained", drained_since(since)).await;
    // 20 recorded, one after the cutover, one after the rollback.
    assert_eq!(assert_index_equal(&primary, &backup, &index).await, 22);
    assert_eq!(
        assert_index_equal(&primary, &backup, &format!("{index}-refused")).await,
        1,
        "the dead letter retried from the console was applied"
    );
    gateway.stop();
    cp.stop().await;
}
