//! Per-node limits on an upstream: requests per second, bytes per second and
//! concurrent requests.
//!
//! Each upstream node gets its own [`NodeLimiter`], so a cluster of five
//! nodes with `max_qps_per_node = 100` accepts about 500 requests/s in total
//! — the seed recipe's semantics. Rates are enforced with GCRA (the "virtual
//! scheduling" form of a token bucket): every request reserves a slot
//! `cost / rate` seconds after the previous one, with a small burst window.
//! Unlike a refilling bucket it needs one timestamp of state, handles costs
//! larger than the burst (a 10 MB bulk against a 1 MB/s limit waits 10 s
//! rather than being refused forever), and never lets long idle periods
//! build up a burst that overshoots the limit.
//!
//! Over a limit a request either waits (bounded by `max_wait`) or is refused
//! at once, according to [`OverLimitPolicy`]. Requests that would wait longer
//! than `max_wait` are refused without consuming capacity.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// What to do with a request over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverLimitPolicy {
    /// Wait until the request fits, for at most `max_wait_ms`; then refuse.
    #[default]
    Wait,
    /// Refuse at once with HTTP 429.
    Reject,
}

/// Limits applied to every node of one upstream cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Maximum requests per second sent to each node; unset = unlimited.
    #[serde(default)]
    pub max_qps_per_node: Option<f64>,
    /// Maximum request-body bytes per second sent to each node; unset =
    /// unlimited.
    #[serde(default)]
    pub max_bytes_per_sec_per_node: Option<u64>,
    /// Maximum requests in flight to each node at once; unset = unlimited.
    #[serde(default)]
    pub max_connections_per_node: Option<usize>,
    /// Behaviour over a limit.
    #[serde(default)]
    pub over_limit: OverLimitPolicy,
    /// Longest a request may wait for capacity under the `wait` policy, in
    /// milliseconds.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

fn default_max_wait_ms() -> u64 {
    10_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_qps_per_node: None,
            max_bytes_per_sec_per_node: None,
            max_connections_per_node: None,
            over_limit: OverLimitPolicy::Wait,
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

impl LimitsConfig {
    /// Checks values; `prefix` is the dotted path of this table.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        if let Some(qps) = self.max_qps_per_node
            && !(qps.is_finite() && qps > 0.0)
        {
            return Err(format!(
                "{prefix}.max_qps_per_node: must be a positive number, got {qps}"
            ));
        }
        if self.max_bytes_per_sec_per_node == Some(0) {
            return Err(format!(
                "{prefix}.max_bytes_per_sec_per_node: must be greater than 0"
            ));
        }
        if self.max_connections_per_node == Some(0) {
            return Err(format!(
                "{prefix}.max_connections_per_node: must be greater than 0"
            ));
        }
        Ok(())
    }

    fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per second.
    Qps,
    /// Bytes per second.
    Bytes,
    /// Concurrent requests.
    Connections,
}

impl LimitKind {
    /// Name used in error bodies and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Qps => "max_qps_per_node",
            LimitKind::Bytes => "max_bytes_per_sec_per_node",
            LimitKind::Connections => "max_connections_per_node",
        }
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("over the {} limit of upstream node {node}; retry after {retry_after:?}", kind.as_str())]
pub struct LimitExceeded {
    /// The limit that refused the request.
    pub kind: LimitKind,
    /// The node the request was meant for.
    pub node: String,
    /// A hint for the client's `Retry-After`.
    pub retry_after: Duration,
}

/// Rate limiter in GCRA form: one "theoretical arrival time".
#[derive(Debug)]
struct Gcra {
    /// Seconds of capacity per unit of cost (1 / rate).
    interval: f64,
    /// How far ahead of real time the schedule may run (the burst).
    burst: Duration,
    tat: Mutex<Instant>,
}

impl Gcra {
    fn new(rate: f64, burst_cost: f64) -> Gcra {
        let interval = 1.0 / rate;
        Gcra {
            interval,
            burst: Duration::from_secs_f64(interval * burst_cost),
            tat: Mutex::new(Instant::now()),
        }
    }

    /// Reserves `cost` units if the wait is at most `max_wait`; returns the
    /// wait, or `Err(wait)` without reserving.
    fn reserve(&self, cost: f64, max_wait: Duration) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut tat = self.tat.lock();
        let start = (*tat).max(now);
        // A request may start once the schedule is within the burst window of
        // real time; its own cost is paid by the requests after it, so one
        // large body on an idle node is not delayed.
        let allowed_at = start.checked_sub(self.burst).unwrap_or(now);
        let wait = allowed_at.saturating_duration_since(now);
        let new_tat = start + Duration::from_secs_f64(cost * self.interval);
        if wait > max_wait {
            return Err(wait);
        }
        *tat = new_tat;
        Ok(wait)
    }
}

/// Held while a request is in flight to a node; releases its connection slot
/// on drop.
#[derive(Debug)]
pub struct NodePermit {
    _slot: Option<OwnedSemaphorePermit>,
    /// Time spent waiting for capacity.
    pub waited: Duration,
}

/// The limits of one upstream node.
#[derive(Debug)]
pub struct NodeLimiter {
    node: String,
    policy: OverLimitPolicy,
    max_wait: Duration,
    qps: Option<Gcra>,
    bytes: Option<Gcra>,
    slots: Option<Arc<Semaphore>>,
}

impl NodeLimiter {
    /// A limiter for `node` (used in errors) with `config`.
    pub fn new(node: impl Into<String>, config: &LimitsConfig) -> NodeLimiter {
        NodeLimiter {
            node: node.into(),
            policy: config.over_limit,
            max_wait: config.max_wait(),
            // Burst of a tenth of a second's worth, at least one request.
            qps: config
                .max_qps_per_node
                .map(|rate| Gcra::new(rate, (rate / 10.0).max(1.0))),
            bytes: config
                .max_bytes_per_sec_per_node
                .map(|rate| Gcra::new(rate as f64, (rate as f64 / 10.0).max(1.0))),
            slots: config
                .max_connections_per_node
                .map(|n| Arc::new(Semaphore::new(n))),
        }
    }

    /// Whether any limit is configured.
    pub fn is_unlimited(&self) -> bool {
        self.qps.is_none() && self.bytes.is_none() && self.slots.is_none()
    }

    /// Admits a request carrying `body_bytes` to this node, waiting or
    /// refusing according to the policy.
    pub async fn acquire(&self, body_bytes: u64) -> Result<NodePermit, LimitExceeded> {
        let started = Instant::now();
        let budget = match self.policy {
            OverLimitPolicy::Wait => self.max_wait,
            OverLimitPolicy::Reject => Duration::ZERO,
        };
        let slot = match &self.slots {
            None => None,
            Some(slots) => {
                let acquired = match self.policy {
                    OverLimitPolicy::Reject => slots.clone().try_acquire_owned().ok(),
                    OverLimitPolicy::Wait => {
                        tokio::time::timeout(budget, slots.clone().acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok)
                    }
                };
                Some(acquired.ok_or_else(|| self.exceeded(LimitKind::Connections, budget))?)
            }
        };
        let mut wait = Duration::ZERO;
        if let Some(qps) = &self.qps {
            let remaining = budget.saturating_sub(started.elapsed());
            wait = qps
                .reserve(1.0, remaining)
                .map_err(|w| self.exceeded(LimitKind::Qps, w))?;
        }
        if let Some(bytes) = &self.bytes
            && body_bytes > 0
        {
            let remaining = budget.saturating_sub(started.elapsed());
            let byte_wait = bytes
                .reserve(body_bytes as f64, remaining)
                .map_err(|w| self.exceeded(LimitKind::Bytes, w))?;
            wait = wait.max(byte_wait);
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(NodePermit {
            _slot: slot,
            waited: started.elapsed(),
        })
    }

    fn exceeded(&self, kind: LimitKind, retry_after: Duration) -> LimitExceeded {
        LimitExceeded {
            kind,
            node: self.node.clone(),
            retry_after: retry_after.max(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(qps: Option<f64>, bytes: Option<u64>, conns: Option<usize>) -> LimitsConfig {
        LimitsConfig {
            max_qps_per_node: qps,
            max_bytes_per_sec_per_node: bytes,
            max_connections_per_node: conns,
            ..LimitsConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn qps_limit_spaces_requests_evenly() {
        let limiter = NodeLimiter::new("n1", &config(Some(50.0), None, None));
        let start = Instant::now();
        for _ in 0..205 {
            limiter.acquire(0).await.unwrap();
        }
        // 205 requests at 50/s with a burst of 5: about 4 seconds.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((3.9..=4.1).contains(&elapsed), "took {elapsed}s");
    }

    #[tokio::test(start_paused = true)]
    async fn byte_limit_makes_large_bodies_wait_proportionally() {
        let limiter = NodeLimiter::new("n1", &config(None, Some(1_000_000), None));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(1_000_000).await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        // The first megabyte goes at once; each further one waits for the
        // previous one's second of capacity (less the 0.1 s burst window).
        assert!((3.8..=4.0).contains(&elapsed), "took {elapsed}s");
    }

    #[tokio::test(start_paused = true)]
    async fn reject_policy_refuses_without_waiting() {
        let mut cfg = config(Some(10.0), None, None);
        cfg.over_limit = OverLimitPolicy::Reject;
        let limiter = NodeLimiter::new("n1", &cfg);
        // A request on an idle node plus the burst window (a tenth of a
        // second, one request at 10/s) pass; the next is refused.
        limiter.acquire(0).await.unwrap();
        limiter.acquire(0).await.unwrap();
        let err = limiter.acquire(0).await.unwrap_err();
        assert_eq!(err.kind, LimitKind::Qps);
        assert!(err.retry_after >= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_policy_refuses_beyond_max_wait_without_consuming_capacity() {
        let mut cfg = config(None, Some(1_000), None);
        cfg.max_wait_ms = 500;
        let limiter = NodeLimiter::new("n1", &cfg);
        // The first 10 kB goes at once and books 10 s of capacity...
        limiter.acquire(10_000).await.unwrap();
        // ...so the next request would wait ~9.9 s: refused.
        let err = limiter.acquire(10).await.unwrap_err();
        assert_eq!(err.kind, LimitKind::Bytes);
        assert!(err.retry_after > Duration::from_secs(9), "{err:?}");
        // The refused request consumed nothing: after the booked 10 s a
        // request passes at once.
        tokio::time::advance(Duration::from_secs(10)).await;
        let permit = limiter.acquire(10).await.unwrap();
        assert!(permit.waited < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn connection_limit_caps_requests_in_flight() {
        let mut cfg = config(None, None, Some(2));
        cfg.max_wait_ms = 100;
        let limiter = NodeLimiter::new("n1", &cfg);
        let a = limiter.acquire(0).await.unwrap();
        let _b = limiter.acquire(0).await.unwrap();
        let err = limiter.acquire(0).await.unwrap_err();
        assert_eq!(err.kind, LimitKind::Connections);
        drop(a);
        limiter.acquire(0).await.unwrap();
    }

    #[test]
    fn invalid_limits_name_the_field() {
        let err = config(Some(0.0), None, None)
            .validate("primary.limits")
            .unwrap_err();
        assert!(err.starts_with("primary.limits.max_qps_per_node"), "{err}");
        let err = config(None, None, Some(0))
            .validate("backup.limits")
            .unwrap_err();
        assert!(
            err.starts_with("backup.limits.max_connections_per_node"),
            "{err}"
        );
    }
}
