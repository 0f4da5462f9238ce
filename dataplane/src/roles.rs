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

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{RwLock as AsyncRwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::upstream::Upstream;

/// The clusters in their current roles.
#[derive(Debug, Clone)]
pub struct RolePair {
    /// Receives every request synchronously.
    pub primary: Arc<Upstream>,
    /// Receives replayed writes; `None` for a plain proxy.
    pub backup: Option<Arc<Upstream>>,
    /// True once primary and backup were swapped relative to the
    /// configuration (after a cutover).
    pub reversed: bool,
}

/// Current roles plus the write gate.
#[derive(Debug)]
pub struct Roles {
    current: RwLock<Arc<RolePair>>,
    gate: AsyncRwLock<()>,
}

/// A shared permit held by one write while it runs.
pub type WritePermit<'a> = RwLockReadGuard<'a, ()>;

/// The exclusive side of the gate: while held, no write runs.
pub type WriteHold<'a> = RwLockWriteGuard<'a, ()>;

impl Roles {
    /// Roles as configured.
    pub fn new(primary: Arc<Upstream>, backup: Option<Arc<Upstream>>) -> Roles {
        Roles {
            current: RwLock::new(Arc::new(RolePair {
                primary,
                backup,
                reversed: false,
            })),
            gate: AsyncRwLock::new(()),
        }
    }

    /// The roles now.
    pub fn current(&self) -> Arc<RolePair> {
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
    /// half a swap. Returns the new roles.
    pub fn swap(&self, _hold: &WriteHold<'_>) -> Option<Arc<RolePair>> {
        let mut current = self.current.write();
        let backup = current.backup.clone()?;
        let swapped = Arc::new(RolePair {
            primary: backup,
            backup: Some(current.primary.clone()),
            reversed: !current.reversed,
        });
        *current = swapped.clone();
        Some(swapped)
    }
}
