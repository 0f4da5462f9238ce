//! The control plane runs against a real Postgres: it applies its migrations,
//! serves gRPC health, and lists every service of the contract through
//! reflection (what `grpcurl list` shows), and exports Prometheus metrics on
//! its metrics listener.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use sqlx::Connection;
use tandem_controlplane::config::ControlPlaneConfig;
use tandem_integration::controlplane::{ControlPlaneApi, InProcessControlPlane};
use tandem_integration::{free_port, repo_root};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const TOKEN: &str = "controlplane-grpc-test-token";

/// A control plane running in this process on its own fresh database,
/// with a metrics listener.
async fn start_control_plane() -> InProcessControlPlane {
    let database_url = tandem_integration::fresh_database("cp_test").await;
    let mut config = InProcessControlPlane::config(&database_url, TOKEN);
    config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], free_port())));
    InProcessControlPlane::start(config).await
}

/// Base URL of the metrics listener of `cp` (`http://127.0.0.1:PORT`).
fn metrics_url(cp: &InProcessControlPlane) -> String {
    format!("http://{}", cp.settings().metrics_listen.unwrap())
}

/// Service names declared in `proto/tandem/v1/*.proto`.
fn contract_services() -> BTreeSet<String> {
    let dir = repo_root().join("proto/tandem/v1");
    let mut services = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("package "))
            .map(|p| p.trim_end_matches(';').trim().to_string())
            .unwrap();
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("service ") {
                let name = rest.split_whitespace().next().unwrap();
                services.insert(format!("{package}.{name}"));
            }
        }
    }
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_of_the_contract() {
    let cp = start_control_plane().await;
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let listed: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();

    let expected = contract_services();
    assert!(expected.len() >= 6, "contract declares {expected:?}");
    let missing: Vec<_> = expected.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "not served: {missing:?} (listed {listed:?})"
    );
    assert!(listed.contains("grpc.health.v1.Health"));
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_for_every_service_with_postgres_up() {
    let cp = start_control_plane().await;
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    let mut health = HealthClient::new(channel);
    let mut names: Vec<String> = contract_services().into_iter().collect();
    names.push(String::new());
    for service in names {
        let status = health
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "tandem.v1.NoSuchService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_on_start_and_are_idempotent() {
    let cp = start_control_plane().await;
    let database_url = cp.settings().database_url.clone();
    cp.stop().await;

    let mut conn = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in ["clusters", "gateways", "_sqlx_migrations"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        tandem_controlplane::store::MIGRATOR.iter().count()
    );

    // A second start on the same database applies nothing new and serves.
    let pool =
        tandem_controlplane::store::connect_and_migrate(&database_url, Duration::from_secs(5))
            .await
            .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_fails_clearly_when_postgres_is_unreachable() {
    let url = format!("postgres://tandem:hunter2@127.0.0.1:{}/tandem", free_port());
    let config = ControlPlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url,
        database_wait_secs: 1,
        insecure_no_auth: true,
        secret_key: Some(tandem_controlplane::secrets::SecretKey::generate().to_base64()),
        ..Default::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tandem_controlplane::serve(&config, listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to Postgres"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked in: {err}");
}

/// `GET {metrics_url}/metrics`: the exposition, after checking its status and
/// content type.
async fn scrape(cp: &InProcessControlPlane) -> String {
    let response = tandem_integration::http()
        .get(format!("{}/metrics", metrics_url(cp)))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

fn rpc_series(service: &str, method: &str, code: &str) -> String {
    format!(
        r#"tandem_controlplane_grpc_requests_total{{service="{service}",method="{method}",code="{code}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rpcs_by_method_and_code_and_show_the_fleet() {
    use tandem_proto::v1 as pb;

    let cp = start_control_plane().await;
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    let token = |t: Option<&str>| tandem_client::BearerToken::new(t).unwrap();
    let mut clusters = tandem_client::cluster_client(channel.clone(), token(Some(TOKEN)));
    let mut anonymous = tandem_client::cluster_client(channel.clone(), token(None));

    clusters
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .unwrap();
    for _ in 0..2 {
        let invalid = clusters
            .get_cluster(pb::GetClusterRequest {
                cluster_id: "not-a-uuid".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument, "{invalid:?}");
    }
    let refused = anonymous
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // One gateway connects over a real agent stream.
    let (up, rx) = tokio::sync::mpsc::channel(4);
    up.send(pb::AgentStreamRequest {
        payload: Some(pb::agent_stream_request::Payload::Hello(pb::AgentHello {
            gateway_id: "metrics-gw-1".into(),
            name: "metrics-gw-1".into(),
            version: "0.1.0".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut gateways = tandem_client::gateway_client(channel, token(Some(TOKEN)));
    let mut down = gateways
        .agent_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let welcome = down.message().await.unwrap().unwrap().payload.unwrap();
    assert!(
        matches!(welcome, pb::agent_stream_response::Payload::Welcome(_)),
        "{welcome:?}"
    );

    let text = scrape(&cp).await;
    let cluster_service = "tandem.v1.ClusterService";
    assert_eq!(
        sample(&text, &rpc_series(cluster_service, "ListClusters", "OK")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &rpc_series(cluster_service, "GetCluster", "INVALID_ARGUMENT")
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &rpc_series(cluster_service, "ListClusters", "UNAUTHENTICATED")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tandem_controlplane_grpc_request_duration_seconds_count{service="tandem.v1.ClusterService",method="ListClusters"}"#
        ),
        Some(2.0),
        "{text}"
    );
    // An open stream is not counted until it ends, but is an agent stream.
    assert!(!text.contains(r#"method="AgentStream""#), "{text}");
    assert_eq!(
        sample(&text, "tandem_controlplane_agent_streams"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tandem_controlplane_gateways_known"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tandem_controlplane_gateways_connected"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tandem_controlplane_gateways_draining"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"tandem_controlplane_tasks{state="running"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "tandem_controlplane_database_up"), Some(1.0));
    let pool = sample(&text, "tandem_controlplane_database_pool_connections").unwrap();
    assert!(pool >= 1.0, "{text}");

    // The agent ends its stream: it is counted with the code it ended with,
    // and the gateway is no longer connected.
    drop(up);
    while down.message().await.unwrap().is_some() {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&cp).await;
        let ended = sample(
            &text,
            &rpc_series("tandem.v1.GatewayService", "AgentStream", "OK"),
        );
        if ended == Some(1.0)
            && sample(&text, "tandem_controlplane_gateways_connected") == Some(0.0)
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended stream is not counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&text, "tandem_controlplane_agent_streams"),
        Some(0.0)
    );

    // With its database gone the control plane still answers scrapes.
    let admin_url = tandem_integration::database_url();
    let name = cp
        .settings()
        .database_url
        .rsplit_once('/')
        .unwrap()
        .1
        .to_string();
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let text = scrape(&cp).await;
    assert_eq!(
        sample(&text, "tandem_controlplane_database_up"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tandem_controlplane_gateways_known"),
        None,
        "{text}"
    );
    assert_eq!(
        sample(&text, &rpc_series(cluster_service, "ListClusters", "OK")),
        Some(1.0)
    );
    let health = tandem_integration::http()
        .get(format!("{}/health", metrics_url(&cp)))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    cp.stop().await;
}

/// Passes messages through as raw bytes: lets one client call every RPC of
/// the contract without knowing its message types.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = bytes::Buf::copy_to_bytes(src, bytes::Buf::remaining(src));
        Ok(Some(bytes.to_vec()))
    }
}

/// Calls `/service/method` with an empty message and `authorization`
/// (if any); returns the status code the server answered with.
async fn call_raw(
    channel: tonic::transport::Channel,
    path: &str,
    method: &prost_types::MethodDescriptorProto,
    authorization: Option<&str>,
) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().unwrap();
    fn with_auth<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }
    let client_streaming = method.client_streaming.unwrap_or(false);
    let server_streaming = method.server_streaming.unwrap_or(false);
    let result = match (client_streaming, server_streaming) {
        (false, false) => grpc
            .unary(with_auth(Vec::new(), authorization), path, RawCodec)
            .await
            .map(|_| ()),
        (false, true) => grpc
            .server_streaming(with_auth(Vec::new(), authorization), path, RawCodec)
            .await
            .map(|_| ()),
        (true, _) => grpc
            .streaming(
                with_auth(tokio_stream::iter(vec![Vec::new()]), authorization),
                path,
                RawCodec,
            )
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_of_the_contract_refuses_a_missing_or_wrong_token() {
    use prost::Message;
    let cp = start_control_plane().await;
    let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
    let descriptors =
        prost_types::FileDescriptorSet::decode(tandem_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut checked = 0;
    for file in descriptors
        .file
        .iter()
        .filter(|f| f.package() == "tandem.v1")
    {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/tandem.v1.{}/{}", service.name(), method.name());
                for authorization in [
                    None,
                    Some("Bearer wrong-token-wrong-token"),
                    Some("Basic dXNlcjpwYXNz"),
                ] {
                    let code = call_raw(channel.clone(), &path, method, authorization).await;
                    assert_eq!(
                        code,
                        tonic::Code::Unauthenticated,
                        "{path} with authorization {authorization:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    // Every RPC of the contract, not a sample of them.
    assert!(
        checked >= 46,
        "only {checked} RPCs found in the descriptor set"
    );
    cp.stop().await;
}
