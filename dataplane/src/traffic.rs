//! Client traffic bookkeeping for draining a gateway: requests in flight,
//! time since the last one, and whether a drain was requested.
//!
//! While draining, the gateway keeps serving whatever still arrives, but
//! its readiness endpoint answers 503 so load balancers move new traffic
//! to other gateways. The agent reports DRAINED once nothing is in flight,
//! no request arrived for the quiet period and the queue is replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Quiet period without client requests before a draining gateway counts
/// as drained.
pub const DRAIN_QUIET_PERIOD: Duration = Duration::from_secs(2);

/// Shared traffic counters of one gateway.
#[derive(Debug, Default)]
pub struct Traffic {
    in_flight: AtomicU32,
    last_request_ms: AtomicU64,
    draining: AtomicBool,
}

/// Held for the life of one client request.
#[derive(Debug)]
pub struct InFlight(Arc<Traffic>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.last_request_ms.store(now_ms(), Ordering::Release);
    }
}

impl Traffic {
    /// Counts a request until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_request_ms.store(now_ms(), Ordering::Release);
        InFlight(self.clone())
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Time since the last request started or finished (`None` before the
    /// first request).
    pub fn idle_for(&self) -> Option<Duration> {
        match self.last_request_ms.load(Ordering::Acquire) {
            0 => None,
            last => Some(Duration::from_millis(now_ms().saturating_sub(last))),
        }
    }

    /// Starts or cancels a drain.
    pub fn set_draining(&self, draining: bool) {
        let was = self.draining.swap(draining, Ordering::AcqRel);
        if was != draining {
            tracing::warn!(draining, "gateway drain state changed");
        }
    }

    /// Whether a drain was requested.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// True when draining and nothing is left to wait for (given the
    /// replay lag of the gateway's queue).
    pub fn is_drained(&self, lag_records: u64) -> bool {
        self.is_draining()
            && self.in_flight() == 0
            && self
                .idle_for()
                .is_none_or(|idle| idle >= DRAIN_QUIET_PERIOD)
            && lag_records == 0
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_needs_no_requests_quiet_time_and_no_lag() {
        let traffic = Arc::new(Traffic::default());
        assert!(!traffic.is_drained(0), "not draining");
        traffic.set_draining(true);
        assert!(traffic.is_drained(0), "no traffic ever");
        assert!(!traffic.is_drained(3), "queue not replayed");
        let request = traffic.begin();
        assert_eq!(traffic.in_flight(), 1);
        assert!(!traffic.is_drained(0), "a request in flight");
        drop(request);
        assert_eq!(traffic.in_flight(), 0);
        assert!(!traffic.is_drained(0), "within the quiet period");
        traffic.set_draining(false);
        assert!(!traffic.is_draining());
    }
}
