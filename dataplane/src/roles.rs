//! Which cluster is primary and which is backup right now, and the write
//! gate used to swap them without losing or reordering a write.
//!
//! Cutover and rollback are the same operation: hold new writes, let
//! in-flight writes finish, replay the queue to zero lag, swap the roles,
//! release. Clients see at most a bounded pause; afterwards the gateway
//! keeps dual-writing in the new direction (new primary first, old one
//! replayed to), so swapping back is always possible.
//!
//! Every write holds a shared permit of the [`WriteGate`] for its whole
//! duration (forward, record, answer); a hold takes the exclusive side.
//! Tokio's `RwLock` is write-preferring, so once a hold is requested, new
//! writes queue behind it while the in-flight ones finish.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use parking_lot::RwLock;
use tokio::sync::{RwLock as AsyncRwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::upstream::Upstream;

/// The clusters in their current roles. `C` is how a cluster is reached:
/// [`Upstream`] in the gateway, an in-memory cluster in replay unit tests.
#[derive(Debug)]
pub struct RolePair<C = Upstream> {
    /// Receives every request synchronously.
    pub primary: Arc<C>,
    /// Receives replayed writes; `None` for a plain proxy.
    pub backup: Option<Arc<C>>,
    /// True once primary and backup were swapped relative to the
    /// configuration (after a cutover).
    pub reversed: bool,
}

impl<C> Clone for RolePair<C> {
    fn clone(&self) -> Self {
        RolePair {
            primary: self.primary.clone(),
            backup: self.backup.clone(),
            reversed: self.reversed,
        }
    }
}

/// Current roles plus the write gate.
#[derive(Debug)]
pub struct Roles<C = Upstream> {
    current: RwLock<Arc<RolePair<C>>>,
    gate: AsyncRwLock<()>,
    /// Where the direction is persisted, so a restart after a cutover keeps
    /// writing to the new primary (and replays the queue to the right
    /// cluster).
    state_file: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RolesFile {
    reversed: bool,
}

/// A shared permit held by one write while it runs.
pub type WritePermit<'a> = RwLockReadGuard<'a, ()>;

/// The exclusive side of the gate: while held, no write runs.
pub type WriteHold<'a> = RwLockWriteGuard<'a, ()>;

impl<C> Roles<C> {
    /// Roles as configured.
    pub fn new(primary: Arc<C>, backup: Option<Arc<C>>) -> Roles<C> {
        Roles {
            current: RwLock::new(Arc::new(RolePair {
                primary,
                backup,
                reversed: false,
            })),
            gate: AsyncRwLock::new(()),
            state_file: None,
        }
    }

    /// The roles now.
    pub fn current(&self) -> Arc<RolePair<C>> {
        self.current.read().clone()
    }

    /// Waits (at most `max_wait`) for permission to run a write.
    pub async fn write_permit(&self, max_wait: Duration) -> Option<WritePermit<'_>> {
        tokio::time::timeout(max_wait, self.gate.read()).await.ok()
    }

    /// Holds new writes and waits (at most `max_wait`) for in-flight ones
    /// to finish.
    pub async fn hold_writes(&self, max_wait: Duration) -> Option<WriteHold<'_>> {
        tokio::time::timeout(max_wait, self.gate.write()).await.ok()
    }

    /// Swaps primary and backup; requires the write hold so no write sees
    /// half a swap. The new direction is durable before it takes effect.
    /// Returns the new roles.
    pub fn swap(&self, _hold: &WriteHold<'_>) -> Result<Arc<RolePair<C>>, String> {
        let mut current = self.current.write();
        let backup = current
            .backup
            .clone()
            .ok_or_else(|| "no backup cluster is configured".to_string())?;
        let swapped = Arc::new(RolePair {
            primary: backup,
            backup: Some(current.primary.clone()),
            reversed: !current.reversed,
        });
        if let Some(path) = &self.state_file {
            persist(path, swapped.reversed)
                .map_err(|e| format!("cannot persist the new roles in {}: {e}", path.display()))?;
        }
        *current = swapped.clone();
        Ok(swapped)
    }
}

impl Roles<Upstream> {
    /// Roles as configured, then swapped if `state_file` says a cutover
    /// happened before a restart. Later swaps are persisted there.
    pub fn open(
        primary: Arc<Upstream>,
        backup: Option<Arc<Upstream>>,
        state_file: PathBuf,
    ) -> anyhow::Result<Roles> {
        let persisted: RolesFile = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is unreadable ({e}); it records whether primary and backup were swapped: fix or remove it deliberately",
                    state_file.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RolesFile::default(),
            Err(e) => anyhow::bail!("reading {}: {e}", state_file.display()),
        };
        let (primary, backup) = match (persisted.reversed, backup) {
            (true, Some(backup)) => (backup, Some(primary)),
            (true, None) => anyhow::bail!(
                "{} says primary and backup were swapped, but no [backup] is configured",
                state_file.display()
            ),
            (false, backup) => (primary, backup),
        };
        if persisted.reversed {
            tracing::warn!(
                primary = %primary.config().url,
                "starting with primary and backup swapped (a cutover happened before the restart)"
            );
        }
        Ok(Roles {
            current: RwLock::new(Arc::new(RolePair {
                primary,
                backup,
                reversed: persisted.reversed,
            })),
            gate: AsyncRwLock::new(()),
            state_file: Some(state_file),
        })
    }
}

/// Writes the direction atomically: temporary file, fsync, rename, fsync
/// of the directory.
fn persist(path: &Path, reversed: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(serde_json::to_string(&RolesFile { reversed })?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
