//! The official Python Elasticsearch / OpenSearch clients, for tests that
//! drive a gateway the way applications do.
//!
//! `scripts/pyclients.sh` keeps one venv per client outside the clone
//! (pinned in `integration/pyclients/<name>.txt`, built on first use, a
//! hash check afterwards); `integration/pyclients/drive.py` does the writes
//! and reads and prints a JSON summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::{repo_root, run_script};

/// How long one run of the driver may take (the venv is made ready before
/// it starts).
const DRIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// An official client, named like its requirement file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PythonClient {
    /// `elasticsearch` 7.x, for Elasticsearch 7 primaries.
    Elasticsearch7,
    /// `elasticsearch` 8.x, for Elasticsearch 8 primaries.
    Elasticsearch8,
    /// `opensearch-py` 2.x, for OpenSearch primaries.
    OpenSearch2,
}

impl PythonClient {
    /// The name `scripts/pyclients.sh` and `drive.py` know it by.
    pub fn name(self) -> &'static str {
        match self {
            PythonClient::Elasticsearch7 => "elasticsearch7",
            PythonClient::Elasticsearch8 => "elasticsearch8",
            PythonClient::OpenSearch2 => "opensearch2",
        }
    }

    /// The Python interpreter of this client's venv, made ready (installed
    /// when missing or outdated) once per test process. Panics when it
    /// cannot be.
    pub fn interpreter(self) -> PathBuf {
        static READY: Mutex<Option<HashMap<PythonClient, PathBuf>>> = Mutex::new(None);
        let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
        ready
            .get_or_insert_with(HashMap::new)
            .entry(self)
            .or_insert_with(|| {
                run_script("scripts/pyclients.sh", &[self.name()])
                    .map(PathBuf::from)
                    .unwrap_or_else(|e| panic!("the {} Python client: {e:#}", self.name()))
            })
            .clone()
    }

    /// Runs `drive.py` with this client against `url` (a gateway), writing
    /// `index`, and returns its summary; panics with the driver's own
    /// message when any call failed or what it read back differs from what
    /// it wrote.
    pub async fn drive(self, url: &str, index: &str) -> Value {
        let python = tokio::task::spawn_blocking(move || self.interpreter())
            .await
            .expect("venv setup thread");
        let run = tokio::process::Command::new(&python)
            .arg(repo_root().join("integration/pyclients/drive.py"))
            .args(["--client", self.name(), "--url", url, "--index", index])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(DRIVE_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("drive.py ({}) ran over {DRIVE_TIMEOUT:?}", self.name()))
            .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "drive.py with {} against {url} failed ({}):\n{stderr}",
            self.name(),
            output.status
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "drive.py printed no JSON summary ({e}): {}\n{stderr}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}
