//! # tandem-integration
//!
//! Harness for end-to-end tests against **real** services: a PostgreSQL
//! server and real Elasticsearch / OpenSearch nodes, all started by the
//! project's own scripts (`scripts/postgres.sh`, `scripts/search/node.sh`).
//!
//! Services are shared by every test in a process and come from one of two
//! places:
//!
//! - **Already running** (what `scripts/dev test` does): set
//!   `TANDEM_TEST_DATABASE_URL` and `TANDEM_TEST_CLUSTERS`
//!   (`flavor=url,flavor=url`, e.g. `es7=http://127.0.0.1:9201,os2=...`).
//! - **Started on demand** when those variables are absent: the harness runs
//!   the scripts into a temporary state directory and leaves behind a small
//!   watchdog that stops them when the test process exits.
//!
//! Either way every service is health-checked before a test uses it; a
//! missing or dead service fails the test, it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

/// Flavors started when `TANDEM_TEST_CLUSTERS` is not set: three major
/// versions of two distributions, so cross-version paths (mapping types
/// included) are real. Tests that need "any two" clusters use the first two.
pub const DEFAULT_FLAVORS: &[&str] = &["es7", "os2", "es6"];

/// A running search cluster.
#[derive(Debug, Clone)]
pub struct SearchCluster {
    /// Launcher flavor, e.g. `es7`, `os2`.
    pub flavor: String,
    /// Base URL, e.g. `http://127.0.0.1:39201`.
    pub url: String,
    /// `elasticsearch` or `opensearch`, as reported by the node.
    pub distribution: String,
    /// Version number reported by the node, e.g. `7.17.29`.
    pub version: String,
}

impl SearchCluster {
    /// Major version number.
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// The shared services of one test process.
#[derive(Debug)]
pub struct TestEnv {
    /// Postgres URL of a database the tests may freely use.
    pub database_url: String,
    /// The search clusters, in the order of their flavors.
    pub clusters: Vec<SearchCluster>,
}

impl TestEnv {
    /// The cluster of `flavor`; panics with the list of available ones.
    pub fn cluster(&self, flavor: &str) -> &SearchCluster {
        self.clusters
            .iter()
            .find(|c| c.flavor == flavor)
            .unwrap_or_else(|| {
                let have: Vec<_> = self.clusters.iter().map(|c| c.flavor.as_str()).collect();
                panic!("no {flavor} cluster in the test environment (have {have:?})")
            })
    }
}

static DATABASE_URL: OnceLock<String> = OnceLock::new();
static CLUSTERS: OnceLock<Vec<SearchCluster>> = OnceLock::new();
static ENV: OnceLock<TestEnv> = OnceLock::new();
static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The shared test environment (Postgres and every search cluster), started
/// on first use. Panics with the reason when a service cannot be started or
/// is not healthy.
pub fn env() -> &'static TestEnv {
    ENV.get_or_init(|| TestEnv {
        database_url: database_url().to_string(),
        clusters: clusters().to_vec(),
    })
}

/// URL of the shared test Postgres, started on first use.
pub fn database_url() -> &'static str {
    DATABASE_URL.get_or_init(|| {
        let url = match std::env::var("TANDEM_TEST_DATABASE_URL") {
            Ok(url) => url,
            Err(_) => {
                let dir = state_dir().join("postgres");
                run_script("scripts/postgres.sh", &["start", path_str(&dir)])
                    .unwrap_or_else(|e| panic!("cannot start Postgres: {e:#}"))
            }
        };
        check_postgres(&url).unwrap_or_else(|e| panic!("test Postgres unavailable: {e:#}"));
        url
    })
}

/// The shared search clusters, started on first use.
pub fn clusters() -> &'static [SearchCluster] {
    CLUSTERS.get_or_init(|| {
        let specs: Vec<(String, Option<String>)> = match std::env::var("TANDEM_TEST_CLUSTERS") {
            Ok(list) => parse_cluster_list(&list)
                .unwrap_or_else(|e| panic!("{e:#}"))
                .into_iter()
                .map(|(f, u)| (f, Some(u)))
                .collect(),
            Err(_) => DEFAULT_FLAVORS
                .iter()
                .map(|f| (f.to_string(), None))
                .collect(),
        };
        // Start missing nodes in parallel: each takes tens of seconds.
        let handles: Vec<_> = specs
            .into_iter()
            .map(|(flavor, url)| {
                std::thread::spawn(move || -> anyhow::Result<SearchCluster> {
                    let url = match url {
                        Some(url) => url,
                        None => {
                            let dir = state_dir().join(&flavor);
                            run_script_with(
                                &[("TANDEM_SEARCH_SHARED_REPO", shared_repo().as_os_str())],
                                "scripts/search/node.sh",
                                &["start", &flavor, path_str(&dir)],
                            )?
                        }
                    };
                    probe_cluster(&flavor, &url)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("cluster start thread panicked")
                    .unwrap_or_else(|e| panic!("test search cluster unavailable: {e:#}"))
            })
            .collect()
    })
}

/// The directory every test search node lists in `path.repo`, where a
/// snapshot written by one cluster is restored by another (snapshot-based
/// backfill): `TANDEM_TEST_SHARED_REPO` with already running services
/// (`scripts/dev up` writes it), else `<state>/shared-repo` of the nodes this
/// process starts itself.
pub fn shared_repo() -> PathBuf {
    match std::env::var("TANDEM_TEST_SHARED_REPO") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ if std::env::var_os("TANDEM_TEST_CLUSTERS").is_some() => panic!(
            "TANDEM_TEST_CLUSTERS is set but TANDEM_TEST_SHARED_REPO is not: start the nodes \
             with `scripts/dev up` (it shares a snapshot directory between them) and source \
             its env file"
        ),
        _ => state_dir().join("shared-repo"),
    }
}

/// State directory for services this process starts itself, watched so the
/// services stop when the process exits.
fn state_dir() -> &'static Path {
    STATE_DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("tandem-test-env-")
            .tempdir()
            .expect("create test state dir")
            .keep();
        spawn_watchdog(&dir).expect("spawn environment watchdog");
        dir
    })
}

/// Root of the repository (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_path_buf()
}

/// A loopback port that was free a moment ago, and not handed out before
/// by this process: the kernel may give a just-released port again, so two
/// calls in a row (a gateway's listen and admin ports) could otherwise get
/// the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A lowercase index name unique to this process and call.
pub fn unique_index(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// An HTTP client for talking to clusters and gateways in tests.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build HTTP client")
}

/// Creates an empty database named `<prefix>_<pid>_<n>` on the test
/// Postgres and returns its URL, so each test gets a schema of its own.
pub async fn fresh_database(prefix: &str) -> String {
    use sqlx::Connection;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = database_url();
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("connect to the test Postgres: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let (server, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{server}/{name}")
}

/// Parses `flavor=url,flavor=url`.
pub fn parse_cluster_list(list: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (flavor, url) = item
                .split_once('=')
                .with_context(|| format!("TANDEM_TEST_CLUSTERS item {item:?} is not flavor=url"))?;
            Ok((
                flavor.trim().to_string(),
                url.trim().trim_end_matches('/').to_string(),
            ))
        })
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("state dir path is UTF-8")
}

/// Runs a project script and returns the last line of its stdout.
pub(crate) fn run_script(script: &str, args: &[&str]) -> anyhow::Result<String> {
    run_script_with(&[], script, args)
}

/// [`run_script`] with extra environment variables.
fn run_script_with(
    envs: &[(&str, &std::ffi::OsStr)],
    script: &str,
    args: &[&str],
) -> anyhow::Result<String> {
    let output = Command::new(repo_root().join(script))
        .envs(envs.iter().copied())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {script}"))?;
    if !output.status.success() {
        bail!("{script} {args:?} failed with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .with_context(|| format!("{script} {args:?} printed no URL"))
}

/// Leaves a detached shell that stops everything in `state` once this test
/// process is gone.
fn spawn_watchdog(state: &Path) -> anyhow::Result<()> {
    let root = repo_root();
    on_test_exit(
        None,
        "for d in \"$1\"/*/; do [ -f \"$d/pid\" ] && \"$2/scripts/search/node.sh\" stop \"$d\"; done; \
         \"$2/scripts/postgres.sh\" stop \"$1/postgres\"; rm -rf \"$1\"",
        &[state.as_os_str(), root.as_os_str()],
    )
    .context("spawn environment watchdog")
}

/// Leaves a detached shell that runs `cleanup` (a shell snippet whose `$1`,
/// `$2`... are `args`) once this test process is gone, so a test that
/// panics or is killed does not leave servers behind. With `while_alive`,
/// the watch ends without cleanup as soon as that process is gone (it was
/// stopped normally, and its pid may be reused).
pub(crate) fn on_test_exit(
    while_alive: Option<u32>,
    cleanup: &str,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let early_exit = while_alive
        .map(|pid| format!("kill -0 {pid} 2>/dev/null || exit 0; "))
        .unwrap_or_default();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do {early_exit}sleep 1; done; {cleanup}",
        me = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawn watchdog shell")?;
    Ok(())
}

/// Builds binary `bin` of `package` and returns a private copy of it, made
/// once per test process: the target directory may be shared with other
/// checkouts whose builds overwrite the binary, and a process restarted by a
/// test must run the same code as before.
pub(crate) fn built_binary(package: &str, bin: &str) -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(repo_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {bin} failed");
    // Test binaries live in <target>/debug/deps; binaries in <target>/debug.
    let exe = std::env::current_exe().expect("current exe");
    let built = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(bin);
    let dir = state_dir().join("bin");
    std::fs::create_dir_all(&dir).expect("create the binary directory");
    let copy = dir.join(bin);
    std::fs::copy(&built, &copy)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), copy.display()));
    copy
}

fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    // The harness may be first used from inside a test's runtime; run the
    // probes on a separate thread with a runtime of their own.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build runtime")
                    .block_on(future)
            })
            .join()
            .expect("probe thread panicked")
    })
}

fn check_postgres(url: &str) -> anyhow::Result<()> {
    // A TCP connect is enough here: the control-plane tests open real
    // sessions and fail loudly if the server is not Postgres.
    let rest = url.split('@').next_back().unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    std::net::TcpStream::connect(hostport)
        .with_context(|| format!("Postgres not reachable at {hostport}"))?;
    Ok(())
}

fn probe_cluster(flavor: &str, url: &str) -> anyhow::Result<SearchCluster> {
    let url = url.trim_end_matches('/').to_string();
    let info: serde_json::Value = block_on(async {
        let resp = http()
            .get(format!(
                "{url}/_cluster/health?wait_for_status=yellow&timeout=60s"
            ))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("health of {url} answered {}", resp.status());
        }
        Ok::<_, anyhow::Error>(http().get(&url).send().await?.json().await?)
    })
    .with_context(|| format!("{flavor} cluster at {url} is not healthy"))?;
    let version = info["version"]["number"]
        .as_str()
        .with_context(|| format!("{url}: no version.number in {info}"))?
        .to_string();
    let distribution = info["version"]["distribution"]
        .as_str()
        .unwrap_or("elasticsearch")
        .to_string();
    Ok(SearchCluster {
        flavor: flavor.to_string(),
        url,
        distribution,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_list_parses_pairs_and_trims() {
        let parsed =
            parse_cluster_list(" es7=http://127.0.0.1:1/ , os2=http://127.0.0.1:2").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("es7".to_string(), "http://127.0.0.1:1".to_string()),
                ("os2".to_string(), "http://127.0.0.1:2".to_string()),
            ]
        );
        assert!(parse_cluster_list("es7").is_err());
    }
}

pub mod client;
pub mod compare;
pub mod controlplane;
pub mod gateway;
pub mod postgres;
pub mod pyclients;
pub mod relay;
pub mod secured;
pub mod workflow;
