//! A private Postgres server that a test may stop and start again, for
//! outage tests (the shared test Postgres must never be stopped).
//!
//! It runs `scripts/postgres.sh` on a state directory of its own. Stopping
//! keeps the data; starting again serves it on a new free port, so the URL
//! changes across restarts ([`PrivatePostgres::url`]). The server is stopped
//! on drop, and by a watchdog if the test process dies first.

use std::path::Path;

use crate::{on_test_exit, repo_root, run_script};

/// A Postgres server owned by one test; stopped on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    url: Option<String>,
}

impl PrivatePostgres {
    /// Initializes and starts a server in a new state directory.
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::Builder::new()
            .prefix("tandem-private-pg-")
            .tempdir()
            .expect("create the Postgres state directory");
        let script = repo_root().join("scripts/postgres.sh");
        on_test_exit(
            None,
            "[ -d \"$1\" ] && \"$2\" stop \"$1\"; rm -rf \"$1\"",
            &[dir.path().as_os_str(), script.as_os_str()],
        )
        .expect("watch the private Postgres");
        let mut server = PrivatePostgres { dir, url: None };
        server.restart();
        server
    }

    /// URL of the `tandem` database while the server runs; panics while it
    /// is stopped.
    pub fn url(&self) -> &str {
        self.url
            .as_deref()
            .expect("the private Postgres is stopped: no URL")
    }

    /// Starts the stopped server again (on a new port; see [`Self::url`]).
    pub fn restart(&mut self) {
        let url = run_script("scripts/postgres.sh", &["start", state(self.dir.path())])
            .unwrap_or_else(|e| panic!("cannot start the private Postgres: {e:#}"));
        self.url = Some(url);
    }

    /// Stops the server (fast shutdown: sessions are cut), keeping its data.
    pub fn stop(&mut self) {
        assert!(
            stop_server(self.dir.path()),
            "scripts/postgres.sh stop failed"
        );
        self.url = None;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.url.is_some() {
            // No panic here: drop may run while a failed test unwinds.
            stop_server(self.dir.path());
        }
    }
}

fn state(dir: &Path) -> &str {
    dir.to_str().expect("state dir path is UTF-8")
}

/// Runs `scripts/postgres.sh stop <dir>`; true when it succeeded.
fn stop_server(dir: &Path) -> bool {
    std::process::Command::new(repo_root().join("scripts/postgres.sh"))
        .args(["stop", state(dir)])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
