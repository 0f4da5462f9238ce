//! The control plane's gRPC API over mutual TLS: clients (the Rust SDK /
//! tandemctl and a real gateway's agent) need a certificate signed by the
//! configured client CA, and the bearer token on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tandem_client::{BearerToken, Tls};
use tandem_controlplane::config::ControlPlaneConfig;
use tandem_controlplane::secrets::SecretKey;
use tandem_integration::free_port;
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::Code;

const TOKEN: &str = "controlplane-tls-test-token-0123456789";

/// A CA, and certificates it signed, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// Creates CA `ca` (files `<ca>-ca.pem`) and certificates `<ca>-<name>`
    /// (`.pem` + `.key`) for each `(name, server?)`.
    fn issue(&self, ca: &str, leaves: &[(&str, bool)]) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("tandem test {ca} CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        self.write(&format!("{ca}-ca.pem"), &issuer.pem());
        for (name, server) in leaves {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
            params.extended_key_usages = vec![if *server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            self.write(&format!("{ca}-{name}.pem"), &cert.pem());
            self.write(&format!("{ca}-{name}.key"), &key.serialize_pem());
        }
    }
}

fn tls(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> Tls {
    Tls {
        ca_file: ca.map(Path::to_path_buf),
        cert_file: client.map(|c| c.0.to_path_buf()),
        key_file: client.map(|c| c.1.to_path_buf()),
    }
}

/// ListClusters over `endpoint` with `tls` and `token`: the status code, or
/// `None` when no TLS session could be set up at all.
async fn list_clusters(endpoint: &str, tls: &Tls, token: &str) -> Result<Code, String> {
    let channel = tandem_client::connect_with(endpoint, tls)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut clusters =
        tandem_client::cluster_client(channel, BearerToken::new(Some(token)).unwrap());
    Ok(
        match clusters
            .list_clusters(pb::ListClustersRequest::default())
            .await
        {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_of_the_client_ca() {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    pki.issue("good", &[("server", true), ("client", false)]);
    pki.issue("rogue", &[("client", false)]);

    // Misconfigurations are refused at start, naming the flag.
    let base = ControlPlaneConfig {
        database_url: tandem_integration::fresh_database("cp_tls").await,
        database_wait_secs: 10,
        auth_tokens: vec![TOKEN.to_string()],
        secret_key: Some(SecretKey::generate().to_base64()),
        agent_heartbeat_interval_ms: 300,
        agent_stats_interval_ms: 300,
        ..Default::default()
    };
    let refused = |config: ControlPlaneConfig| format!("{:#}", config.tls().unwrap_err());
    assert!(
        refused(ControlPlaneConfig {
            tls_cert_file: Some(pki.path("good-server.pem")),
            ..base.clone()
        })
        .starts_with("--tls-cert-file"),
    );
    assert!(
        refused(ControlPlaneConfig {
            tls_cert_file: Some(pki.path("good-server.pem")),
            tls_key_file: Some(pki.path("missing.key")),
            ..base.clone()
        })
        .starts_with("--tls-key-file: cannot read"),
    );
    let not_pem = pki.write("not-pem.txt", "hello");
    assert!(
        refused(ControlPlaneConfig {
            tls_cert_file: Some(pki.path("good-server.pem")),
            tls_key_file: Some(pki.path("good-server.key")),
            tls_client_ca_file: Some(not_pem),
            ..base.clone()
        })
        .starts_with("--tls-client-ca-file:"),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ControlPlaneConfig {
        listen: listener.local_addr().unwrap(),
        tls_cert_file: Some(pki.path("good-server.pem")),
        tls_key_file: Some(pki.path("good-server.key")),
        tls_client_ca_file: Some(pki.path("good-ca.pem")),
        ..base
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tandem_controlplane::serve(&config, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    let endpoint = format!("https://localhost:{port}");
    let ca = pki.path("good-ca.pem");
    let good = (pki.path("good-client.pem"), pki.path("good-client.key"));
    let rogue = (pki.path("rogue-client.pem"), pki.path("rogue-client.key"));
    let trusted = tls(Some(&ca), Some((&good.0, &good.1)));

    // Certificate of the client CA + token: served.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match list_clusters(&endpoint, &trusted, TOKEN).await {
            Ok(Code::Ok) => break,
            other if tokio::time::Instant::now() < deadline => {
                let _ = other;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("the trusted client is refused: {other:?}"),
        }
    }
    // The certificate does not replace the token.
    assert_eq!(
        list_clusters(&endpoint, &trusted, "wrong-token-wrong-token").await,
        Ok(Code::Unauthenticated)
    );
    // No client certificate, or one from another CA: no session.
    for (what, settings) in [
        ("no client certificate", tls(Some(&ca), None)),
        (
            "a certificate of another CA",
            tls(Some(&ca), Some((&rogue.0, &rogue.1))),
        ),
    ] {
        let outcome = list_clusters(&endpoint, &settings, TOKEN).await;
        assert!(
            !matches!(outcome, Ok(Code::Ok | Code::Unauthenticated)),
            "{what}: {outcome:?}"
        );
    }
    // A client that does not trust the server's CA refuses the server.
    let outcome = list_clusters(&endpoint, &tls(None, Some((&good.0, &good.1))), TOKEN).await;
    assert!(!matches!(outcome, Ok(Code::Ok)), "{outcome:?}");
    // Plaintext gRPC against the TLS listener fails.
    let outcome = list_clusters(&format!("http://localhost:{port}"), &Tls::default(), TOKEN).await;
    assert!(!matches!(outcome, Ok(Code::Ok)), "{outcome:?}");

    // A real gateway's agent connects with its certificate and registers.
    let env = tandem_integration::env();
    let data = tempfile::tempdir().unwrap();
    let gw = format!("gw-tls-{}", tandem_integration::unique_index("g"));
    let mut options = GatewayOptions::replicating(
        &env.cluster("es7").url,
        &env.cluster("os2").url,
        data.path(),
    );
    options.paused = true;
    options.extra_toml = format!(
        "[control_plane]\nendpoint = \"{endpoint}\"\ntoken = \"{TOKEN}\"\ngateway_id = \"{gw}\"\n\
         heartbeat_interval_ms = 300\nreconnect_max_ms = 500\n\
         advertised_address = \"127.0.0.1:{}\"\n\
         ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        free_port(),
        ca.display(),
        good.0.display(),
        good.1.display()
    );
    let _gateway = TestGateway::start_with(options).await;
    let channel = tandem_client::connect_with(&endpoint, &trusted)
        .await
        .unwrap();
    let mut gateways =
        tandem_client::gateway_client(channel, BearerToken::new(Some(TOKEN)).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = gateways
            .get_gateway(pb::GetGatewayRequest {
                gateway_id: gw.clone(),
            })
            .await;
        if let Ok(found) = &found
            && found
                .get_ref()
                .gateway
                .as_ref()
                .is_some_and(|g| g.connection_state == pb::GatewayConnectionState::Connected as i32)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never connected over mutual TLS: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
