//! The control plane runs against a real Postgres: it applies its migrations,
//! serves gRPC health, and lists every service of the contract through
//! reflection (what `grpcurl list` shows).

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Connection;
use tandem_controlplane::config::ControlPlaneConfig;
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

/// A control plane running in this process on its own fresh database.
struct TestControlPlane {
    endpoint: String,
    database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestControlPlane {
    async fn start() -> TestControlPlane {
        let database_url = tandem_integration::fresh_database("cp_test").await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let config = ControlPlaneConfig {
            listen: listener.local_addr().unwrap(),
            database_url: database_url.clone(),
            database_wait_secs: 10,
            auth_tokens: vec!["controlplane-grpc-test-token".into()],
            secret_key: Some(tandem_controlplane::secrets::SecretKey::generate().to_base64()),
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tandem_controlplane::serve(&config, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        // Wait until the server answers (it migrates the database first).
        for _ in 0..100 {
            if let Ok(channel) = tandem_client::connect(&endpoint).await {
                let mut health = HealthClient::new(channel);
                if health.check(HealthCheckRequest::default()).await.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        TestControlPlane {
            endpoint,
            database_url,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
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
    let cp = TestControlPlane::start().await;
    let channel = tandem_client::connect(&cp.endpoint).await.unwrap();
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
    let cp = TestControlPlane::start().await;
    let channel = tandem_client::connect(&cp.endpoint).await.unwrap();
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
    let cp = TestControlPlane::start().await;
    let database_url = cp.database_url.clone();
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
