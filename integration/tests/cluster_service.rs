//! ClusterService end to end: a control plane on a fresh Postgres database
//! registers, probes, lists, updates and deletes the real Elasticsearch and
//! OpenSearch clusters of the test environment.
//!
//! Error paths use what a real deployment meets: a closed port, the
//! Postgres port (not HTTP), and, for refused credentials, a small HTTP
//! front that behaves like a secured cluster: it answers 401 to wrong
//! credentials and forwards requests with the right ones to the real
//! Elasticsearch node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::cluster_service_client::ClusterServiceClient;
use tandem_client::v1::{
    AuthMethod, Cluster, ClusterHealth, Credentials, DeleteClusterRequest, Distribution,
    GetClusterRequest, LabelSet, Limits, ListClustersRequest, NodeDiscovery, OverLimitPolicy,
    ProbeClusterRequest, RegisterClusterRequest, StringList, TlsSettings, UpdateClusterRequest,
};
use tandem_controlplane::config::ControlPlaneConfig;
use tandem_controlplane::secrets::SecretKey;
use tandem_integration::controlplane::{ControlPlaneApi, InProcessControlPlane};
use tandem_integration::{SearchCluster, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;

const TOKEN: &str = "cluster-service-test-token-0123456789";

type Client = ClusterServiceClient<AuthenticatedChannel>;

/// A control plane running in this process on its own database.
type TestControlPlane = InProcessControlPlane;

/// A control plane on a fresh database, with a fresh secret key.
async fn start_control_plane() -> TestControlPlane {
    let database_url = tandem_integration::fresh_database("cp_clusters").await;
    start_on(&database_url, &SecretKey::generate().to_base64()).await
}

/// A control plane on `database_url` sealing secrets with `secret_key`.
async fn start_on(database_url: &str, secret_key: &str) -> TestControlPlane {
    let mut config = InProcessControlPlane::config(database_url, TOKEN);
    config.secret_key = Some(secret_key.to_string());
    InProcessControlPlane::start(config).await
}

fn es7() -> &'static SearchCluster {
    tandem_integration::env().cluster("es7")
}

fn os2() -> &'static SearchCluster {
    tandem_integration::env().cluster("os2")
}

fn register(name: &str, endpoint: &str) -> RegisterClusterRequest {
    RegisterClusterRequest {
        name: name.to_string(),
        endpoints: vec![endpoint.to_string()],
        ..Default::default()
    }
}

fn basic(username: &str, password: &str) -> Option<Credentials> {
    Some(Credentials {
        method: AuthMethod::Basic as i32,
        username: username.into(),
        password: password.into(),
        ..Default::default()
    })
}

/// Asserts `result` failed with `code` and a message containing every
/// needle; returns the message.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    needles: &[&str],
) -> String {
    let status = result.expect_err("the RPC should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{:?} lacks {needle:?}",
            status.message()
        );
    }
    status.message().to_string()
}

async fn registered(client: &mut Client, request: RegisterClusterRequest) -> Cluster {
    let name = request.name.clone();
    client
        .register_cluster(request)
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e:?}"))
        .into_inner()
        .cluster
        .unwrap()
}

async fn get(client: &mut Client, id: &str) -> Result<Cluster, tonic::Status> {
    client
        .get_cluster(GetClusterRequest {
            cluster_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().cluster.unwrap())
}

/// `GET {url}{path}` on a real cluster, as JSON.
async fn cluster_json(url: &str, path: &str) -> serde_json::Value {
    tandem_integration::http()
        .get(format!("{url}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A tiny HTTP/1.1 server for the error paths no real cluster here offers.
struct HttpFront {
    url: String,
    /// `authorization` header of every request received ("" when absent).
    seen_authorizations: Arc<parking_lot::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

enum Behaviour {
    /// Like a secured cluster: 401 unless the basic credentials match, then
    /// forwards the request to a real cluster.
    Secured {
        upstream: String,
        authorization: String,
    },
    /// An HTTP server that is not a search cluster.
    WebPage,
}

impl HttpFront {
    async fn start(behaviour: Behaviour) -> HttpFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let behaviour = Arc::new(behaviour);
        let seen_in_task = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let behaviour = behaviour.clone();
                let seen = seen_in_task.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, &behaviour, &seen).await;
                });
            }
        });
        HttpFront {
            url,
            seen_authorizations: seen,
            task,
        }
    }
}

impl Drop for HttpFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one request (GET only, no body) and closes the connection.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    behaviour: &Behaviour,
    seen: &parking_lot::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let authorization = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    seen.lock().push(authorization.clone());

    let (status, content_type, extra, body) = match behaviour {
        Behaviour::WebPage => (
            "200 OK",
            "text/html",
            "",
            "<html><body>It works!</body></html>".to_string(),
        ),
        Behaviour::Secured {
            authorization: expected,
            ..
        } if authorization != *expected => (
            "401 Unauthorized",
            "application/json",
            "WWW-Authenticate: Basic realm=\"security\" charset=\"UTF-8\"\r\n",
            r#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user for REST request [/]"}],"type":"security_exception","reason":"unable to authenticate user for REST request [/]"},"status":401}"#.to_string(),
        ),
        Behaviour::Secured { upstream, .. } => {
            let response = tandem_integration::http()
                .get(format!("{upstream}{path}"))
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let code = response.status();
            let body = response.text().await.map_err(std::io::Error::other)?;
            let status = format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or(""));
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return stream.write_all(reply.as_bytes()).await;
        }
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await
}

/// `Basic base64(user:password)`, as HTTP basic authentication sends it.
fn basic_header(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// A port with nothing listening.
fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// `host:port` of a URL.
fn host_port(url: &str) -> &str {
    url.split("://").nth(1).unwrap().trim_end_matches('/')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_elasticsearch_and_opensearch_with_probed_version_health_and_nodes() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    for (cluster, distribution) in [
        (es7(), Distribution::Elasticsearch),
        (os2(), Distribution::Opensearch),
    ] {
        let name = format!("real-{}", cluster.flavor);
        let got = registered(&mut client, register(&name, &cluster.url)).await;
        let root = cluster_json(&cluster.url, "/").await;
        let health = cluster_json(&cluster.url, "/_cluster/health").await;

        assert_eq!(got.name, name);
        assert_eq!(got.id.len(), 36, "id {:?} is not a UUID", got.id);
        assert_eq!(got.endpoints, [cluster.url.as_str()]);
        let probe = got
            .last_probe
            .clone()
            .expect("registration stores its probe");
        assert!(probe.error.is_none(), "{:?}", probe.error);
        assert!(probe.reachable && probe.credentials_valid);
        assert_eq!(probe.endpoint, cluster.url);
        assert!(probe.latency.is_some() && probe.probed_at.is_some());

        let version = probe.version.clone().unwrap();
        assert_eq!(version.distribution(), distribution, "{}", cluster.flavor);
        assert_eq!(version.number, cluster.version);
        let parts: Vec<u32> = cluster
            .version
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!([version.major, version.minor, version.patch], parts[..3]);
        assert_eq!(version.lucene_version, root["version"]["lucene_version"]);
        assert_eq!(probe.cluster_name, root["cluster_name"]);
        assert_eq!(probe.cluster_uuid, root["cluster_uuid"]);
        assert!(!probe.cluster_uuid.is_empty());

        let expected_health = match health["status"].as_str().unwrap() {
            "green" => ClusterHealth::Green,
            "yellow" => ClusterHealth::Yellow,
            other => panic!("test cluster is {other}"),
        };
        assert_eq!(probe.health(), expected_health);
        assert_eq!(u64::from(probe.number_of_nodes), health["number_of_nodes"]);
        assert_eq!(
            u64::from(probe.number_of_data_nodes),
            health["number_of_data_nodes"]
        );
        assert_eq!(probe.nodes.len(), probe.number_of_nodes as usize);
        let node = &probe.nodes[0];
        assert_eq!(node.http_address, host_port(&cluster.url));
        assert_eq!(node.version, cluster.version);
        assert!(!node.node_id.is_empty() && !node.name.is_empty());
        assert!(
            node.roles.iter().any(|r| r == "data"),
            "roles {:?}",
            node.roles
        );
        assert!(probe.warnings.is_empty(), "{:?}", probe.warnings);
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_returns_what_register_stored() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let request = RegisterClusterRequest {
        description: "the old production cluster".into(),
        labels: HashMap::from([
            ("env".to_string(), "prod".to_string()),
            ("tandem.io/role".to_string(), "source".to_string()),
        ]),
        node_discovery: Some(NodeDiscovery {
            enabled: true,
            refresh_interval: Some(prost_duration(30)),
        }),
        limits: Some(Limits {
            max_qps_per_node: 500,
            max_bytes_per_sec_per_node: 100 * 1024 * 1024,
            max_connections_per_node: 200,
            over_limit: OverLimitPolicy::Reject as i32,
            max_wait: Some(prost_duration(2)),
        }),
        ..register("es-old", &format!("{}/", es7().url))
    };
    let created = registered(&mut client, request).await;
    let fetched = get(&mut client, &created.id).await.unwrap();
    assert_eq!(fetched, created);

    assert_eq!(fetched.description, "the old production cluster");
    assert_eq!(fetched.labels["tandem.io/role"], "source");
    assert_eq!(fetched.endpoints, [es7().url.clone()], "trailing / trimmed");
    let discovery = fetched.node_discovery.unwrap();
    assert!(discovery.enabled);
    assert_eq!(discovery.refresh_interval, Some(prost_duration(30)));
    let limits = fetched.limits.unwrap();
    assert_eq!(limits.max_qps_per_node, 500);
    assert_eq!(limits.max_bytes_per_sec_per_node, 100 * 1024 * 1024);
    assert_eq!(limits.max_connections_per_node, 200);
    assert_eq!(limits.over_limit(), OverLimitPolicy::Reject);
    assert_eq!(limits.max_wait, Some(prost_duration(2)));
    let credentials = fetched.credentials.unwrap();
    assert_eq!(credentials.method(), AuthMethod::None);
    assert!(!credentials.secret_set);
    let tls = fetched.tls.unwrap();
    assert!(!tls.insecure_skip_verify && !tls.client_private_key_set);
    assert!(fetched.created_at.is_some() && fetched.updated_at.is_some());
    cp.stop().await;
}

fn prost_duration(seconds: i64) -> tandem_client::prost_types::Duration {
    tandem_client::prost_types::Duration { seconds, nanos: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_ordered_by_name_paginated_and_filtered() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    // Registered out of order; two OpenSearch, three Elasticsearch.
    for (name, cluster, team) in [
        ("delta", es7(), "search"),
        ("alpha", os2(), "logs"),
        ("echo", es7(), "logs"),
        ("bravo", es7(), "search"),
        ("charlie", os2(), "search"),
    ] {
        let request = RegisterClusterRequest {
            labels: HashMap::from([("team".to_string(), team.to_string())]),
            ..register(name, &cluster.url)
        };
        registered(&mut client, request).await;
    }

    let mut names = Vec::new();
    let mut pages = 0;
    let mut request = ListClustersRequest {
        page_size: 2,
        ..Default::default()
    };
    loop {
        let page = client
            .list_clusters(request.clone())
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.clusters.len() <= 2);
        names.extend(page.clusters.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(pages, 3);

    let list = |request: ListClustersRequest| {
        let mut client = client.clone();
        async move {
            let page = client.list_clusters(request).await.unwrap().into_inner();
            assert!(page.next_page_token.is_empty());
            page.clusters
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        }
    };
    let all = list(ListClustersRequest::default()).await;
    assert_eq!(all.len(), 5, "page_size 0 means the default of 100");
    let os = list(ListClustersRequest {
        distribution: Distribution::Opensearch as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(os, ["alpha", "charlie"]);
    let logs = list(ListClustersRequest {
        labels: HashMap::from([("team".to_string(), "logs".to_string())]),
        ..Default::default()
    })
    .await;
    assert_eq!(logs, ["alpha", "echo"]);
    let es_search_with_a = list(ListClustersRequest {
        name_contains: "a".into(),
        distribution: Distribution::Elasticsearch as i32,
        labels: HashMap::from([("team".to_string(), "search".to_string())]),
        ..Default::default()
    })
    .await;
    assert_eq!(es_search_with_a, ["bravo", "delta"]);

    // A token is only valid with the filters it was issued for.
    let first = client
        .list_clusters(ListClustersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    expect_err(
        client
            .list_clusters(ListClustersRequest {
                page_size: 1,
                page_token: first.next_page_token,
                name_contains: "a".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["page_token: "],
    );
    expect_err(
        client
            .list_clusters(ListClustersRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["page_token: "],
    );
    expect_err(
        client
            .list_clusters(ListClustersRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["page_size: "],
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_only_the_fields_set_and_reprobes_when_endpoints_change() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let created = registered(
        &mut client,
        RegisterClusterRequest {
            description: "before".into(),
            labels: HashMap::from([("env".to_string(), "prod".to_string())]),
            ..register("es-main", &es7().url)
        },
    )
    .await;
    let first_probe = created.last_probe.clone().unwrap();

    // Settings that do not touch the connection: no new probe.
    let updated = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: created.id.clone(),
            name: Some("es-renamed".into()),
            description: Some("after".into()),
            labels: Some(LabelSet {
                labels: HashMap::from([("env".to_string(), "staging".to_string())]),
            }),
            limits: Some(Limits {
                max_qps_per_node: 10,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(updated.name, "es-renamed");
    assert_eq!(updated.description, "after");
    assert_eq!(updated.labels["env"], "staging");
    assert_eq!(updated.limits.as_ref().unwrap().max_qps_per_node, 10);
    assert_eq!(updated.endpoints, created.endpoints, "unset fields stay");
    assert_eq!(updated.created_at, created.created_at);
    assert_ne!(updated.updated_at, created.updated_at);
    assert_eq!(
        updated.last_probe.as_ref().unwrap().probed_at,
        first_probe.probed_at,
        "no connection change, no probe"
    );
    assert_eq!(get(&mut client, &created.id).await.unwrap(), updated);

    // New endpoints (the same cluster under another address): re-probed.
    let localhost = es7().url.replace("127.0.0.1", "localhost");
    let moved = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: created.id.clone(),
            endpoints: Some(StringList {
                values: vec![localhost.clone()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(moved.endpoints, [localhost.as_str()]);
    let probe = moved.last_probe.unwrap();
    assert_ne!(probe.probed_at, first_probe.probed_at, "re-probed");
    assert_eq!(probe.endpoint, localhost);
    assert_eq!(probe.cluster_uuid, first_probe.cluster_uuid);
    assert_eq!(moved.name, "es-renamed", "earlier changes kept");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_refuses_endpoints_of_another_cluster_or_unreachable_ones() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let created = registered(&mut client, register("es-main", &es7().url)).await;
    let endpoints_update = |endpoint: &str, allow_unreachable: bool| UpdateClusterRequest {
        cluster_id: created.id.clone(),
        endpoints: Some(StringList {
            values: vec![endpoint.to_string()],
        }),
        allow_unreachable,
        ..Default::default()
    };

    // Another cluster's endpoint: refused, even with allow_unreachable.
    let os_uuid = cluster_json(&os2().url, "/").await["cluster_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    for allow in [false, true] {
        expect_err(
            client
                .update_cluster(endpoints_update(&os2().url, allow))
                .await,
            Code::FailedPrecondition,
            &["endpoints: ", &os_uuid, "UUID"],
        );
    }
    let unchanged = get(&mut client, &created.id).await.unwrap();
    assert_eq!(unchanged.endpoints, [es7().url.clone()]);

    // An unreachable endpoint: refused unless allow_unreachable.
    let closed = closed_endpoint();
    expect_err(
        client
            .update_cluster(endpoints_update(&closed, false))
            .await,
        Code::FailedPrecondition,
        &["UPSTREAM_UNREACHABLE", &closed, "allow_unreachable"],
    );
    let accepted = client
        .update_cluster(endpoints_update(&closed, true))
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert_eq!(accepted.endpoints, [closed.as_str()]);
    let probe = accepted.last_probe.unwrap();
    assert!(!probe.reachable);
    assert_eq!(probe.error.unwrap().reason, "UPSTREAM_UNREACHABLE");

    // Back to the real cluster: its identity was kept through the outage.
    let back = client
        .update_cluster(endpoints_update(&es7().url, false))
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert!(back.last_probe.unwrap().error.is_none());
    expect_err(
        client
            .update_cluster(endpoints_update(&os2().url, true))
            .await,
        Code::FailedPrecondition,
        &["UUID"],
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_cluster_then_every_rpc_gives_not_found() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let keep = registered(&mut client, register("keep", &os2().url)).await;
    let gone = registered(&mut client, register("gone", &es7().url)).await;
    client
        .delete_cluster(DeleteClusterRequest {
            cluster_id: gone.id.clone(),
        })
        .await
        .unwrap();

    let id = gone.id.clone();
    expect_err(
        get(&mut client, &id).await.map(tonic::Response::new),
        Code::NotFound,
        &["cluster_id: ", &id],
    );
    expect_err(
        client
            .delete_cluster(DeleteClusterRequest {
                cluster_id: id.clone(),
            })
            .await,
        Code::NotFound,
        &[&id],
    );
    expect_err(
        client
            .probe_cluster(ProbeClusterRequest {
                cluster_id: id.clone(),
            })
            .await,
        Code::NotFound,
        &[&id],
    );
    expect_err(
        client
            .update_cluster(UpdateClusterRequest {
                cluster_id: id.clone(),
                description: Some("x".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &[&id],
    );
    let names: Vec<String> = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clusters
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["keep"]);
    assert_eq!(get(&mut client, &keep.id).await.unwrap(), keep);

    // The name is free again.
    registered(&mut client, register("gone", &es7().url)).await;
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_gives_already_exists() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    registered(&mut client, register("taken", &es7().url)).await;
    let other = registered(&mut client, register("other", &os2().url)).await;

    expect_err(
        client.register_cluster(register("taken", &os2().url)).await,
        Code::AlreadyExists,
        &["name: ", "\"taken\""],
    );
    expect_err(
        client
            .register_cluster(RegisterClusterRequest {
                validate_only: true,
                ..register("taken", &os2().url)
            })
            .await,
        Code::AlreadyExists,
        &["taken"],
    );
    expect_err(
        client
            .update_cluster(UpdateClusterRequest {
                cluster_id: other.id.clone(),
                name: Some("taken".into()),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        &["name: ", "taken"],
    );
    // Renaming a cluster to its own name is no conflict.
    client
        .update_cluster(UpdateClusterRequest {
            cluster_id: other.id.clone(),
            name: Some("other".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_probes_but_stores_nothing() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let checked = registered(
        &mut client,
        RegisterClusterRequest {
            validate_only: true,
            ..register("dry-run", &os2().url)
        },
    )
    .await;
    assert_eq!(checked.id, "", "nothing stored, no id");
    assert_eq!(checked.name, "dry-run");
    let probe = checked.last_probe.unwrap();
    assert_eq!(
        probe.version.unwrap().distribution(),
        Distribution::Opensearch
    );
    let list = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.clusters.is_empty());
    // A failed probe still refuses a dry run.
    expect_err(
        client
            .register_cluster(RegisterClusterRequest {
                validate_only: true,
                ..register("dry-run", &closed_endpoint())
            })
            .await,
        Code::FailedPrecondition,
        &["UPSTREAM_UNREACHABLE"],
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_register_field_gives_invalid_argument_naming_it() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let base = || register("valid-name", &es7().url);
    let url = es7().url.clone();
    let cases: Vec<(&str, RegisterClusterRequest)> = vec![
        (
            "name: required",
            RegisterClusterRequest {
                name: String::new(),
                ..base()
            },
        ),
        (
            "name: ",
            RegisterClusterRequest {
                name: "Upper".into(),
                ..base()
            },
        ),
        (
            "name: ",
            RegisterClusterRequest {
                name: "has space".into(),
                ..base()
            },
        ),
        (
            "name: ",
            RegisterClusterRequest {
                name: "x".repeat(64),
                ..base()
            },
        ),
        (
            "description: ",
            RegisterClusterRequest {
                description: "d".repeat(1025),
                ..base()
            },
        ),
        (
            "labels[\"Bad\"]: ",
            RegisterClusterRequest {
                labels: HashMap::from([("Bad".to_string(), "x".to_string())]),
                ..base()
            },
        ),
        (
            "labels[\"ok\"]: ",
            RegisterClusterRequest {
                labels: HashMap::from([("ok".to_string(), "v".repeat(254))]),
                ..base()
            },
        ),
        (
            "endpoints: at least one",
            RegisterClusterRequest {
                endpoints: vec![],
                ..base()
            },
        ),
        (
            "endpoints[0]: ",
            RegisterClusterRequest {
                endpoints: vec!["127.0.0.1:9200".into()],
                ..base()
            },
        ),
        (
            "endpoints[0]: ",
            RegisterClusterRequest {
                endpoints: vec!["ftp://es:21".into()],
                ..base()
            },
        ),
        (
            "endpoints[0]: ",
            RegisterClusterRequest {
                endpoints: vec![format!("{url}/prefix")],
                ..base()
            },
        ),
        (
            "endpoints[0]: must not contain credentials",
            RegisterClusterRequest {
                endpoints: vec!["http://elastic:hunter2@127.0.0.1:9200".into()],
                ..base()
            },
        ),
        (
            "endpoints[1]: duplicates endpoints[0]",
            RegisterClusterRequest {
                endpoints: vec![url.clone(), format!("{url}/")],
                ..base()
            },
        ),
        (
            "credentials.method: required",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    username: "u".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "credentials.method: ",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    method: 42,
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "credentials.username: required",
            RegisterClusterRequest {
                credentials: basic("", "pw"),
                ..base()
            },
        ),
        (
            "credentials.username: ",
            RegisterClusterRequest {
                credentials: basic("a:b", "pw"),
                ..base()
            },
        ),
        (
            "credentials.password: required",
            RegisterClusterRequest {
                credentials: basic("elastic", ""),
                ..base()
            },
        ),
        (
            "credentials.api_key: must be empty",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    method: AuthMethod::Basic as i32,
                    username: "u".into(),
                    password: "p".into(),
                    api_key: "k".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "credentials.api_key: required",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    method: AuthMethod::ApiKey as i32,
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "credentials.api_key: must be printable",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    method: AuthMethod::ApiKey as i32,
                    api_key: "has space".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "credentials.username: must be empty",
            RegisterClusterRequest {
                credentials: Some(Credentials {
                    method: AuthMethod::None as i32,
                    username: "u".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "tls.ca_certificates_pem: ",
            RegisterClusterRequest {
                tls: Some(TlsSettings {
                    ca_certificates_pem: "not a certificate".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "tls.server_name: ",
            RegisterClusterRequest {
                tls: Some(TlsSettings {
                    server_name: "bad name!".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "tls.client_private_key_pem: required",
            RegisterClusterRequest {
                tls: Some(TlsSettings {
                    client_certificate_pem: "x".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "tls.client_private_key_pem: must be empty",
            RegisterClusterRequest {
                tls: Some(TlsSettings {
                    client_private_key_pem: "x".into(),
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "node_discovery.refresh_interval: ",
            RegisterClusterRequest {
                node_discovery: Some(NodeDiscovery {
                    enabled: true,
                    refresh_interval: Some(tandem_client::prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    }),
                }),
                ..base()
            },
        ),
        (
            "node_discovery.refresh_interval: ",
            RegisterClusterRequest {
                node_discovery: Some(NodeDiscovery {
                    enabled: true,
                    refresh_interval: Some(tandem_client::prost_types::Duration {
                        seconds: 0,
                        nanos: 1000,
                    }),
                }),
                ..base()
            },
        ),
        (
            "limits.max_bytes_per_sec_per_node: ",
            RegisterClusterRequest {
                limits: Some(Limits {
                    max_bytes_per_sec_per_node: u64::MAX,
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "limits.over_limit: ",
            RegisterClusterRequest {
                limits: Some(Limits {
                    over_limit: 9,
                    ..Default::default()
                }),
                ..base()
            },
        ),
        (
            "limits.max_wait: ",
            RegisterClusterRequest {
                limits: Some(Limits {
                    max_wait: Some(prost_duration(7200)),
                    ..Default::default()
                }),
                ..base()
            },
        ),
    ];
    for (expected, request) in cases {
        let message = expect_err(
            client.register_cluster(request).await,
            Code::InvalidArgument,
            &[],
        );
        assert!(
            message.starts_with(expected) || message.contains(expected),
            "expected {expected:?}, got {message:?}"
        );
        let field = expected.split(": ").next().unwrap();
        assert!(
            message.starts_with(field),
            "{message:?} does not start with {field:?}"
        );
        assert!(!message.contains("hunter2"), "secret echoed: {message}");
    }
    let list = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.clusters.is_empty(), "nothing invalid was stored");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ids_filters_and_update_fields_give_invalid_argument_naming_them() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let created = registered(&mut client, register("target", &es7().url)).await;

    for bad in ["", "42", "not-a-uuid"] {
        let id = bad.to_string();
        expect_err(
            get(&mut client, &id).await.map(tonic::Response::new),
            Code::InvalidArgument,
            &["cluster_id: "],
        );
        expect_err(
            client
                .delete_cluster(DeleteClusterRequest {
                    cluster_id: id.clone(),
                })
                .await,
            Code::InvalidArgument,
            &["cluster_id: "],
        );
        expect_err(
            client
                .probe_cluster(ProbeClusterRequest {
                    cluster_id: id.clone(),
                })
                .await,
            Code::InvalidArgument,
            &["cluster_id: "],
        );
        expect_err(
            client
                .update_cluster(UpdateClusterRequest {
                    cluster_id: id.clone(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &["cluster_id: "],
        );
    }

    let update = |f: fn(&mut UpdateClusterRequest)| {
        let mut request = UpdateClusterRequest {
            cluster_id: created.id.clone(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    let cases: Vec<(&str, UpdateClusterRequest)> = vec![
        ("name: ", update(|r| r.name = Some("NOPE".into()))),
        ("name: required", update(|r| r.name = Some(String::new()))),
        (
            "endpoints.values: at least one",
            update(|r| r.endpoints = Some(StringList::default())),
        ),
        (
            "endpoints.values[0]: ",
            update(|r| {
                r.endpoints = Some(StringList {
                    values: vec!["nope".into()],
                })
            }),
        ),
        (
            "labels.labels[\"A\"]: ",
            update(|r| {
                r.labels = Some(LabelSet {
                    labels: HashMap::from([("A".to_string(), String::new())]),
                })
            }),
        ),
        // Switching to basic auth needs a password: nothing is stored yet.
        (
            "credentials.password: required",
            update(|r| r.credentials = basic("elastic", "")),
        ),
        (
            "limits.over_limit: ",
            update(|r| {
                r.limits = Some(Limits {
                    over_limit: 77,
                    ..Default::default()
                })
            }),
        ),
    ];
    for (expected, request) in cases {
        expect_err(
            client.update_cluster(request).await,
            Code::InvalidArgument,
            &[expected],
        );
    }
    assert_eq!(
        get(&mut client, &created.id).await.unwrap(),
        created,
        "nothing changed"
    );

    expect_err(
        client
            .list_clusters(ListClustersRequest {
                distribution: 5,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["distribution: "],
    );
    expect_err(
        client
            .list_clusters(ListClustersRequest {
                labels: HashMap::from([("Bad Key".to_string(), "x".to_string())]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["labels[\"Bad Key\"]: "],
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_is_refused_clearly_unless_allowed() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let closed = closed_endpoint();
    expect_err(
        client.register_cluster(register("down", &closed)).await,
        Code::FailedPrecondition,
        &[
            "probe failed (UPSTREAM_UNREACHABLE)",
            &closed,
            "allow_unreachable",
        ],
    );
    let stored = registered(
        &mut client,
        RegisterClusterRequest {
            allow_unreachable: true,
            ..register("down", &closed)
        },
    )
    .await;
    let probe = stored.last_probe.unwrap();
    assert!(!probe.reachable && !probe.credentials_valid);
    assert!(probe.version.is_none());
    assert_eq!(probe.health(), ClusterHealth::Unspecified);
    let error = probe.error.unwrap();
    assert_eq!(error.reason, "UPSTREAM_UNREACHABLE");
    assert!(error.message.contains(&closed), "{}", error.message);
    assert_eq!(error.metadata["endpoint"], closed);

    // With several endpoints the first one that answers wins; the dead one
    // is reported as a warning.
    let mixed = registered(
        &mut client,
        RegisterClusterRequest {
            endpoints: vec![closed.clone(), es7().url.clone()],
            ..register("mixed", &closed)
        },
    )
    .await;
    let probe = mixed.last_probe.unwrap();
    assert!(probe.error.is_none(), "{:?}", probe.error);
    assert_eq!(probe.endpoint, es7().url);
    assert!(
        probe.warnings.iter().any(|w| w.contains(&closed)),
        "{:?}",
        probe.warnings
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_is_not_a_search_cluster_is_refused_clearly() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;

    // The Postgres port speaks no HTTP at all.
    let db = tandem_integration::database_url();
    let hostport = db.rsplit('@').next().unwrap().split('/').next().unwrap();
    let postgres = format!("http://{hostport}");
    expect_err(
        client
            .register_cluster(register("postgres", &postgres))
            .await,
        Code::FailedPrecondition,
        &["probe failed (UPSTREAM_PROTOCOL_ERROR)", &postgres],
    );

    // https towards a plain-HTTP port: the TLS handshake fails.
    let https = es7().url.replace("http://", "https://");
    expect_err(
        client.register_cluster(register("tls", &https)).await,
        Code::FailedPrecondition,
        &["probe failed (TLS_ERROR)", &https, "check the tls settings"],
    );

    // A web server answers HTTP, but not like a search cluster.
    let web = HttpFront::start(Behaviour::WebPage).await;
    let message = expect_err(
        client.register_cluster(register("web", &web.url)).await,
        Code::FailedPrecondition,
        &["probe failed (NOT_A_SEARCH_CLUSTER)", &web.url, "It works!"],
    );
    assert!(message.contains("version.number"), "{message}");
    let stored = registered(
        &mut client,
        RegisterClusterRequest {
            allow_unreachable: true,
            ..register("web", &web.url)
        },
    )
    .await;
    let probe = stored.last_probe.unwrap();
    assert!(probe.reachable, "it did answer HTTP");
    assert_eq!(probe.error.unwrap().metadata["http_status"], "200");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_refused_by_a_secured_cluster_give_a_clear_error() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let secured = HttpFront::start(Behaviour::Secured {
        upstream: es7().url.clone(),
        authorization: basic_header("tandem", "correct horse"),
    })
    .await;

    let message = expect_err(
        client
            .register_cluster(RegisterClusterRequest {
                credentials: basic("tandem", "wrong battery"),
                ..register("secured", &secured.url)
            })
            .await,
        Code::FailedPrecondition,
        &[
            "probe failed (AUTHENTICATION_FAILED)",
            "401",
            "unable to authenticate user",
            "credentials.username and credentials.password",
        ],
    );
    assert!(
        !message.contains("wrong battery"),
        "password echoed: {message}"
    );
    assert_eq!(
        secured.seen_authorizations.lock().last().unwrap(),
        &basic_header("tandem", "wrong battery"),
        "the probe sent the given credentials"
    );
    expect_err(
        client
            .register_cluster(register("secured", &secured.url))
            .await,
        Code::FailedPrecondition,
        &["AUTHENTICATION_FAILED", "set `credentials`"],
    );

    // Stored anyway when asked to; the probe result says why it failed.
    let stored = registered(
        &mut client,
        RegisterClusterRequest {
            credentials: basic("tandem", "wrong battery"),
            allow_unreachable: true,
            ..register("secured", &secured.url)
        },
    )
    .await;
    let probe = stored.last_probe.unwrap();
    assert!(probe.reachable && !probe.credentials_valid);
    let error = probe.error.unwrap();
    assert_eq!(error.reason, "AUTHENTICATION_FAILED");
    assert_eq!(error.metadata["http_status"], "401");

    // The right password reaches the real Elasticsearch behind.
    let fixed = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: stored.id.clone(),
            credentials: basic("tandem", "correct horse"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let probe = fixed.last_probe.unwrap();
    assert!(probe.error.is_none(), "{:?}", probe.error);
    assert!(probe.credentials_valid);
    assert_eq!(probe.version.unwrap().number, es7().version);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_stored_encrypted_and_never_returned() {
    const PASSWORD: &str = "s3cret-Passw0rd-never-shown";
    const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let secured = HttpFront::start(Behaviour::Secured {
        upstream: es7().url.clone(),
        authorization: basic_header("tandem", PASSWORD),
    })
    .await;
    let register_response = client
        .register_cluster(RegisterClusterRequest {
            credentials: basic("tandem", PASSWORD),
            ..register("with-password", &secured.url)
        })
        .await
        .unwrap()
        .into_inner();
    let with_key = registered(
        &mut client,
        RegisterClusterRequest {
            credentials: Some(Credentials {
                method: AuthMethod::ApiKey as i32,
                api_key: API_KEY.into(),
                ..Default::default()
            }),
            allow_unreachable: true,
            ..register("with-api-key", &secured.url)
        },
    )
    .await;
    let created = register_response.cluster.clone().unwrap();
    let credentials = created.credentials.clone().unwrap();
    assert_eq!(credentials.method(), AuthMethod::Basic);
    assert_eq!(credentials.username, "tandem");
    assert!(credentials.password.is_empty());
    assert!(credentials.secret_set);
    assert!(credentials.secret_updated_at.is_some());
    assert!(with_key.credentials.as_ref().unwrap().api_key.is_empty());
    assert!(with_key.credentials.as_ref().unwrap().secret_set);

    // No response of any RPC carries either secret.
    let get_response = get(&mut client, &created.id).await.unwrap();
    let list_response = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let update_response = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: created.id.clone(),
            description: Some("touched".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let probe_response = client
        .probe_cluster(ProbeClusterRequest {
            cluster_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let everything = format!(
        "{register_response:?}{with_key:?}{get_response:?}{list_response:?}{update_response:?}{probe_response:?}"
    );
    for secret in [PASSWORD, API_KEY] {
        assert!(!everything.contains(secret), "a response carries {secret}");
    }
    assert_eq!(list_response.clusters.len(), 2);

    // In the database the secrets are sealed: neither clear text nor a
    // trivial encoding of it.
    let mut db = sqlx::PgConnection::connect(&cp.settings().database_url)
        .await
        .unwrap();
    let rows: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT name, secret_encrypted FROM clusters ORDER BY name")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let dump: String = sqlx::query_scalar("SELECT string_agg(c::text, ' ') FROM clusters c")
        .fetch_one(&mut db)
        .await
        .unwrap();
    for secret in [PASSWORD, API_KEY] {
        assert!(!dump.contains(secret), "clear text in the clusters table");
    }
    for (name, sealed) in rows {
        let sealed = sealed.unwrap_or_else(|| panic!("{name}: no secret stored"));
        let secret = if name == "with-password" {
            PASSWORD
        } else {
            API_KEY
        };
        assert!(
            sealed.len() >= secret.len() + 16 + 24,
            "{name}: too short to be sealed"
        );
        assert!(
            !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{name}: clear text in secret_encrypted"
        );
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        let secret_hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!hex.contains(&secret_hex));
    }

    // The stored password is what the probe sends.
    let probe = probe_response.probe.unwrap();
    assert!(probe.error.is_none(), "{:?}", probe.error);
    assert_eq!(
        secured.seen_authorizations.lock().last().unwrap(),
        &basic_header("tandem", PASSWORD)
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secret_is_kept_when_an_update_leaves_the_password_empty() {
    const PASSWORD: &str = "kept-password-123";
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let secured = HttpFront::start(Behaviour::Secured {
        upstream: es7().url.clone(),
        authorization: basic_header("tandem", PASSWORD),
    })
    .await;
    let created = registered(
        &mut client,
        RegisterClusterRequest {
            credentials: basic("tandem", PASSWORD),
            ..register("kept", &secured.url)
        },
    )
    .await;
    let set_at = created.credentials.unwrap().secret_updated_at;

    // Same method, empty password: the stored one is kept and used by the
    // re-probe that the endpoint change triggers.
    let localhost = secured.url.replace("127.0.0.1", "localhost");
    let updated = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: created.id.clone(),
            endpoints: Some(StringList {
                values: vec![localhost.clone()],
            }),
            credentials: basic("tandem", ""),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let credentials = updated.credentials.unwrap();
    assert!(credentials.secret_set);
    assert_eq!(credentials.secret_updated_at, set_at, "secret unchanged");
    let probe = updated.last_probe.unwrap();
    assert!(probe.error.is_none(), "{:?}", probe.error);
    assert_eq!(probe.endpoint, localhost);

    // Credentials removed: nothing stored any more.
    let open = client
        .update_cluster(UpdateClusterRequest {
            cluster_id: created.id.clone(),
            credentials: Some(Credentials {
                method: AuthMethod::None as i32,
                ..Default::default()
            }),
            allow_unreachable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    assert!(!open.credentials.unwrap().secret_set);
    assert_eq!(
        open.last_probe.unwrap().error.unwrap().reason,
        "AUTHENTICATION_FAILED"
    );
    let mut db = sqlx::PgConnection::connect(&cp.settings().database_url)
        .await
        .unwrap();
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT secret_encrypted FROM clusters")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(sealed.is_none());
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_secret_key_cannot_use_the_stored_passwords() {
    let database_url = tandem_integration::fresh_database("cp_clusters").await;
    let cp = start_on(&database_url, &SecretKey::generate().to_base64()).await;
    let mut client = cp.clusters().await;
    let secured = HttpFront::start(Behaviour::Secured {
        upstream: es7().url.clone(),
        authorization: basic_header("tandem", "pw-123"),
    })
    .await;
    let created = registered(
        &mut client,
        RegisterClusterRequest {
            credentials: basic("tandem", "pw-123"),
            ..register("sealed", &secured.url)
        },
    )
    .await;
    cp.stop().await;

    let cp = start_on(&database_url, &SecretKey::generate().to_base64()).await;
    let mut client = cp.clusters().await;
    // Reading needs no secret...
    assert_eq!(get(&mut client, &created.id).await.unwrap().name, "sealed");
    // ...probing does, and says why it cannot.
    expect_err(
        client
            .probe_cluster(ProbeClusterRequest {
                cluster_id: created.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        &["credentials: ", "secret key"],
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_cluster_stores_a_fresh_result_and_failures_are_not_rpc_errors() {
    let cp = start_control_plane().await;
    let mut client = cp.clusters().await;
    let up = registered(&mut client, register("up", &os2().url)).await;
    let probed = client
        .probe_cluster(ProbeClusterRequest {
            cluster_id: up.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .probe
        .unwrap();
    assert!(probed.error.is_none());
    assert_ne!(probed.probed_at, up.last_probe.as_ref().unwrap().probed_at);
    let stored = get(&mut client, &up.id).await.unwrap();
    assert_eq!(stored.last_probe.as_ref(), Some(&probed));
    assert_eq!(
        stored.updated_at, up.updated_at,
        "a probe is no settings change"
    );

    let down = registered(
        &mut client,
        RegisterClusterRequest {
            allow_unreachable: true,
            ..register("down", &closed_endpoint())
        },
    )
    .await;
    let failed = client
        .probe_cluster(ProbeClusterRequest {
            cluster_id: down.id.clone(),
        })
        .await
        .expect("a failed probe is a successful RPC")
        .into_inner()
        .probe
        .unwrap();
    assert_eq!(failed.error.unwrap().reason, "UPSTREAM_UNREACHABLE");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_rpc_requires_the_bearer_token() {
    let cp = start_control_plane().await;
    let created = registered(&mut cp.clusters().await, register("guarded", &es7().url)).await;
    let id = created.id.clone();

    for (bearer, needle) in [
        (None, "missing bearer token"),
        (
            Some("wrong-token-wrong-token-wrong"),
            "invalid bearer token",
        ),
    ] {
        let mut client = cp.clusters_with(bearer).await;
        let checks: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "RegisterCluster",
                client
                    .register_cluster(register("sneaky", &es7().url))
                    .await
                    .map(drop),
            ),
            (
                "GetCluster",
                client
                    .get_cluster(GetClusterRequest {
                        cluster_id: id.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "ListClusters",
                client
                    .list_clusters(ListClustersRequest::default())
                    .await
                    .map(drop),
            ),
            (
                "UpdateCluster",
                client
                    .update_cluster(UpdateClusterRequest {
                        cluster_id: id.clone(),
                        description: Some("sneaky".into()),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            ),
            (
                "DeleteCluster",
                client
                    .delete_cluster(DeleteClusterRequest {
                        cluster_id: id.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "ProbeCluster",
                client
                    .probe_cluster(ProbeClusterRequest {
                        cluster_id: id.clone(),
                    })
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, result) in checks {
            let status = result.expect_err(rpc);
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{rpc} with {bearer:?}: {status:?}"
            );
            assert!(status.message().contains(needle), "{rpc}: {status:?}");
        }
    }

    // Another scheme than Bearer is refused too.
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    let mut basic_client =
        ClusterServiceClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", format!("Basic {TOKEN}").parse().unwrap());
            Ok(r)
        });
    let status = basic_client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{status:?}");

    // Nothing was changed by the refused calls.
    let mut client = cp.clusters().await;
    assert_eq!(get(&mut client, &id).await.unwrap(), created);
    let list = client
        .list_clusters(ListClustersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.clusters.len(), 1);

    // Health needs no token.
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_refuses_to_start_without_token_or_secret_key() {
    let database_url = tandem_integration::database_url().to_string();
    let key = SecretKey::generate().to_base64();
    let cases = [
        (
            ControlPlaneConfig {
                database_url: database_url.clone(),
                secret_key: Some(key.clone()),
                ..Default::default()
            },
            vec!["--auth-token", "--insecure-no-auth"],
        ),
        (
            ControlPlaneConfig {
                database_url: database_url.clone(),
                auth_tokens: vec!["short".into()],
                secret_key: Some(key.clone()),
                ..Default::default()
            },
            vec!["--auth-token", "at least 16"],
        ),
        (
            ControlPlaneConfig {
                database_url: database_url.clone(),
                auth_tokens: vec![TOKEN.into()],
                ..Default::default()
            },
            vec!["--secret-key-file", "TANDEM_SECRET_KEY"],
        ),
        (
            ControlPlaneConfig {
                database_url: database_url.clone(),
                auth_tokens: vec![TOKEN.into()],
                secret_key: Some("c2hvcnQ=".into()),
                ..Default::default()
            },
            vec!["TANDEM_SECRET_KEY", "32"],
        ),
    ];
    for (config, needles) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            tandem_controlplane::serve(&config, listener, std::future::pending()),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        let message = format!("{err:#}");
        for needle in needles {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        assert!(!message.contains("c2hvcnQ"), "key echoed: {message}");
    }
}
