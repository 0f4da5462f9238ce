//! The agent protocol as pure functions: building the messages the gateway
//! sends from snapshots of its state, reducing a `DesiredState` to what the
//! gateway can apply, planning the actions that converge the gateway to it,
//! and checking commands. Nothing here does I/O, so all of it is unit
//! tested; the stream loop in [`super`] only captures snapshots, calls these
//! functions and moves messages.
//!
//! By what they carry: `report` (hello, heartbeats, queue statistics),
//! `desired` (desired state → target → actions), `commands` (checks,
//! results, de-duplication), `records` (dead letters, queue records, peeks,
//! repair reports); time conversions (from `tandem_proto::time`) and the
//! reconnect backoff stay here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tandem_proto::v1 as pb;

use crate::dead_letters::DeadLetter;
use crate::queue::{ConsumerStats, QueueStats, RepairReport};
use crate::replication::{Peeked, REPLAYER};
use tandem_es::ops::ReplicationOp;
use tandem_es::uri::encode_path_segment;

mod commands;
mod desired;
mod records;
mod report;

pub use commands::*;
pub use desired::*;
pub use records::*;
pub use report::*;

/// Task id reported for the gateway's replication before the control plane
/// assigned one (no desired state received yet, or one without tasks). The
/// gateway runs a single replication (its `[backup]`), so it reports at most
/// one task: the task of the latest desired state, else this id.
pub const LOCAL_TASK_ID: &str = "local";

/// Capabilities announced in `AgentHello` by a gateway that replicates.
/// Not announced: `write_hold` (a hold on its own, without a role swap),
/// `shadow_reads`, queue peeking and draining, which this gateway cannot do.
pub const CAPABILITIES: &[&str] = &[
    "dual_write",
    "queue.v1",
    "read_repair",
    "mapping_type_rewrite",
    "cutover",
    "dead_letters",
    "queue_repair",
];

/// Default and maximum body bytes returned per dead letter by a fetch.
const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
const MAX_BODY_BYTES: usize = 1 << 20;

/// Most dead letters sent in one `DeadLetterReport`.
pub const DEAD_LETTER_REPORT_MAX: usize = 500;

// ---------------------------------------------------------------------------
// Time conversions.
// ---------------------------------------------------------------------------

pub use tandem_proto::time::{duration, std_duration, timestamp};

fn millis_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An interval the control plane asked for, when positive, clamped to the
/// range accepted for `heartbeat_interval_ms`.
pub fn clamp_interval(d: Option<prost_types::Duration>) -> Option<Duration> {
    let d = std_duration(d?)?;
    if d.is_zero() {
        return None;
    }
    let range = super::config::HEARTBEAT_RANGE_MS;
    Some(d.clamp(
        Duration::from_millis(*range.start()),
        Duration::from_millis(*range.end()),
    ))
}

/// Exponential backoff with jitter: `initial * 2^n` capped at `max`, each
/// delay drawn in `[delay/2, delay]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` (at most `max`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial: initial.min(max),
            max,
            attempt: 0,
        }
    }

    /// The next delay; `jitter` in `[0, 1]` picks where in `[d/2, d]`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(800));
        for _ in 0..100 {
            let d = backoff.next_delay(0.7);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn intervals_from_the_control_plane_are_clamped() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        assert_eq!(clamp_interval(None), None);
        assert_eq!(clamp_interval(d(0, 0)), None);
        assert_eq!(clamp_interval(d(-1, 0)), None);
        assert_eq!(clamp_interval(d(0, 1000)), Some(Duration::from_millis(100)));
        assert_eq!(clamp_interval(d(2, 0)), Some(Duration::from_secs(2)));
        assert_eq!(clamp_interval(d(86_400, 0)), Some(Duration::from_secs(600)));
    }
}
