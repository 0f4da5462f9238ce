//! Starting gateways for tests: in-process (fast) or as a child process
//! (for `kill -9`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tandem_gateway::{GatewayConfig, GatewayHandle};

use crate::{built_binary, free_port, http, on_test_exit};

/// How to configure a test gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Primary cluster URL.
    pub primary: String,
    /// Backup cluster URL; `None` for a plain proxy.
    pub backup: Option<String>,
    /// Queue and dead-letter directory.
    pub data_dir: Option<PathBuf>,
    /// Start with the replayer paused.
    pub paused: bool,
    /// Extra top-level keys (e.g. `max_body_bytes = 4096`).
    pub top_level_toml: String,
    /// Extra TOML tables appended to the generated config (e.g. `[queue]`).
    pub extra_toml: String,
    /// Extra keys of the `[replay]` table (e.g. `reconcile_delay_ms = 200`).
    pub replay_toml: String,
}

impl GatewayOptions {
    /// A plain proxy in front of `primary`.
    pub fn proxy(primary: &str) -> GatewayOptions {
        GatewayOptions {
            primary: primary.to_string(),
            backup: None,
            data_dir: None,
            paused: false,
            top_level_toml: String::new(),
            extra_toml: String::new(),
            replay_toml: String::new(),
        }
    }

    /// A dual-writing gateway from `primary` to `backup`, queue in `data_dir`.
    pub fn replicating(primary: &str, backup: &str, data_dir: &Path) -> GatewayOptions {
        GatewayOptions {
            backup: Some(backup.to_string()),
            data_dir: Some(data_dir.to_path_buf()),
            ..GatewayOptions::proxy(primary)
        }
    }

    fn toml(&self, port: u16, admin_port: u16) -> String {
        let mut toml =
            format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n");
        toml.push_str(&self.top_level_toml);
        toml.push('\n');
        if let Some(dir) = &self.data_dir {
            toml.push_str(&format!("data_dir = {:?}\n", dir.display().to_string()));
        }
        toml.push_str(&format!(
            "[primary]\nurl = \"{}\"\nconnect_timeout_ms = 2000\n",
            self.primary
        ));
        if let Some(backup) = &self.backup {
            toml.push_str(&format!(
                "[backup]\nurl = \"{backup}\"\nconnect_timeout_ms = 2000\nread_timeout_ms = 30000\n"
            ));
            toml.push_str(&format!(
                "[replay]\nstart_paused = {}\nretry_initial_ms = 50\nretry_max_ms = 500\n{}\n",
                self.paused, self.replay_toml
            ));
        }
        toml.push_str(&self.extra_toml);
        toml
    }
}

/// A gateway in this test process; stopped on drop.
#[derive(Debug)]
pub struct TestGateway {
    /// Base URL applications use, e.g. `http://127.0.0.1:40001`.
    pub url: String,
    /// Base URL of the admin endpoint.
    pub admin_url: String,
    handle: Option<GatewayHandle>,
}

impl TestGateway {
    /// Starts a plain proxy forwarding to `primary_url`.
    pub async fn start(primary_url: &str) -> TestGateway {
        Self::start_with(GatewayOptions::proxy(primary_url)).await
    }

    /// Starts a gateway dual-writing from `primary` to `backup` (queue in
    /// `data_dir`) and waits until it is ready.
    pub async fn replicating(primary: &str, backup: &str, data_dir: &Path) -> TestGateway {
        TestGateway::start_with(GatewayOptions::replicating(primary, backup, data_dir)).await
    }

    /// Starts a gateway with `options` and waits until it is ready.
    pub async fn start_with(options: GatewayOptions) -> TestGateway {
        let port = free_port();
        let admin_port = free_port();
        let config = GatewayConfig::from_toml_with_env(&options.toml(port, admin_port), [])
            .expect("valid test config");
        let handle = tandem_gateway::spawn(&config, false).expect("start gateway");
        let gateway = TestGateway {
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            handle: Some(handle),
        };
        wait_ready(&gateway.url, &gateway.admin_url).await;
        gateway
    }

    /// Stops the gateway now.
    pub fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

/// A gateway running as a child process (the real binary), for crash
/// tests; killed on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    /// Base URL applications use.
    pub url: String,
    /// Base URL of the admin endpoint.
    pub admin_url: String,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts `tandem-gateway` with `options` and waits until it is ready.
    pub async fn start(options: &GatewayOptions, config_path: &Path) -> GatewayProcess {
        let port = free_port();
        let admin_port = free_port();
        std::fs::write(config_path, options.toml(port, admin_port)).expect("write config");
        let child = Command::new(gateway_binary())
            .arg("--config")
            .arg(config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tandem-gateway");
        on_test_exit(
            Some(child.id()),
            "kill -9 $1",
            &[child.id().to_string().as_ref()],
        )
        .expect("watch the gateway process");
        let process = GatewayProcess {
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            child: Some(child),
        };
        wait_ready(&process.url, &process.admin_url).await;
        process
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill_9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Path of the `tandem-gateway` binary, built on first use (a private
/// copy, see [`crate::built_binary`]).
pub fn gateway_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("tandem-gateway", "tandem-gateway"))
        .clone()
}

async fn wait_ready(url: &str, admin_url: &str) {
    let client = http();
    for _ in 0..200 {
        let admin = client.get(format!("{admin_url}/ready")).send().await;
        let proxy = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await;
        if admin.is_ok_and(|r| r.status().is_success()) && proxy.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway at {url} did not become ready");
}

/// The gateway's `/replication` status.
pub async fn replication_status(admin_url: &str) -> Value {
    http()
        .get(format!("{admin_url}/replication"))
        .send()
        .await
        .expect("admin reachable")
        .json()
        .await
        .expect("status is JSON")
}

/// Resumes the replayer and waits until the queue is fully replayed and no
/// document waits to be reconciled.
pub async fn drain(admin_url: &str, timeout: Duration) -> Value {
    let client = http();
    let resumed = client
        .post(format!("{admin_url}/replication/resume"))
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(resumed.status(), 200);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = replication_status(admin_url).await;
        if status["replayer"]["lag_records"] == 0
            && status["queue"]["next_offset"].as_u64().is_some()
            && status["pending_reconciles"].as_u64().unwrap_or(0) == 0
        {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replication did not drain in {timeout:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
