//! Starting in-process gateways for tests.

use std::time::Duration;

use tandem_gateway::{GatewayConfig, GatewayHandle};

use crate::{free_port, http};

/// A gateway running in this test process; stopped on drop.
#[derive(Debug)]
pub struct TestGateway {
    /// Base URL applications use, e.g. `http://127.0.0.1:40001`.
    pub url: String,
    /// Base URL of the admin endpoint.
    pub admin_url: String,
    handle: Option<GatewayHandle>,
}

impl TestGateway {
    /// Starts a gateway forwarding to `primary_url` and waits until it is
    /// ready.
    pub async fn start(primary_url: &str) -> TestGateway {
        let port = free_port();
        let admin_port = free_port();
        let toml = format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             [primary]\nurl = \"{primary_url}\"\nconnect_timeout_ms = 2000\n"
        );
        let config = GatewayConfig::from_toml_with_env(&toml, []).expect("valid test config");
        let handle = tandem_gateway::spawn(&config, false).expect("start gateway");
        let gateway = TestGateway {
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            handle: Some(handle),
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let client = http();
        for _ in 0..100 {
            let admin = client.get(format!("{}/ready", self.admin_url)).send().await;
            let proxy =
                tokio::net::TcpStream::connect(self.url.trim_start_matches("http://")).await;
            if admin.is_ok_and(|r| r.status().is_success()) && proxy.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway at {} did not become ready", self.url);
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}
