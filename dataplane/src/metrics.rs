//! Prometheus metrics of one gateway, served at the admin `/metrics`.
//!
//! Each gateway owns its own [`Registry`] (no process globals), so several
//! gateways can run in one process — the integration tests do.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a proxied request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request class: read, bulk, doc_write, index_meta, query_scoped, ...
    pub class: &'static str,
    /// Upstream role: primary or backup.
    pub upstream: &'static str,
    /// Status class: 2xx, 4xx, 5xx, or `error` when no response came back.
    pub status: &'static str,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// Request class.
    pub class: &'static str,
    /// Upstream role.
    pub upstream: &'static str,
}

/// Labels of limiter metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Upstream role.
    pub upstream: String,
    /// Which limit: max_qps_per_node, max_bytes_per_sec_per_node, ...
    pub limit: String,
}

/// Labels of replay metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Operation kind: index, delete, read_repair, index_meta, query_scoped.
    pub kind: String,
}

/// Labels of replay version conflicts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConflictLabels {
    /// `older` (skipped: the primary moved past the backup) or `reconcile`
    /// (not provably older: reconciled from the primary).
    pub class: String,
}

/// Labels of reconciled documents.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// What asked for it: `version_conflict`, `unknown_outcome`, ...
    pub cause: String,
    /// `in_sync` (already equal) or `repaired` (the backup differed).
    pub result: String,
}

/// Labels of a count by cause.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// `unknown_outcome` or `restart`.
    pub cause: String,
}

/// Operations counted per kind, so a batch updates each per-kind counter
/// once instead of once per op (no label `String` and family lock per op).
#[derive(Debug, Default)]
pub struct OpKindCounts(Vec<(&'static str, u64)>);

impl OpKindCounts {
    /// Counts one op of `kind`.
    pub fn add(&mut self, kind: &'static str) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.0.push((kind, 1)),
        }
    }

    /// Ops counted, all kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// Adds the counts to a per-kind counter family.
    pub fn add_to(&self, family: &Family<OpLabels, Counter>) {
        for (kind, n) in &self.0 {
            family
                .get_or_create(&OpLabels {
                    kind: (*kind).to_owned(),
                })
                .inc_by(*n);
        }
    }
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by class, upstream and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// End-to-end latency seen by clients, by class.
    pub request_duration: Family<ClassLabels, Histogram>,
    /// Requests that waited for a per-node limit.
    pub limiter_waits: Family<ClassLabels, Counter>,
    /// Total time spent waiting for limits, in seconds.
    pub limiter_wait_seconds: Family<ClassLabels, Counter<f64, AtomicU64>>,
    /// Requests refused by a limit.
    pub limiter_rejections: Family<LimitLabels, Counter>,
    /// Operations recorded in the queue.
    pub recorded_ops: Family<OpLabels, Counter>,
    /// Operations applied to the backup.
    pub replayed_ops: Family<OpLabels, Counter>,
    /// Replay attempts that failed and will be retried.
    pub replay_retries: Counter,
    /// Operations currently in the dead-letter store.
    pub dead_letters: Gauge,
    /// Unreplayed records in the queue.
    pub queue_depth_records: Gauge,
    /// Bytes of unreplayed records on disk.
    pub queue_depth_bytes: Gauge,
    /// Age of the oldest unreplayed record, in seconds.
    pub queue_oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Records the replayer is behind the writer.
    pub replay_lag_records: Gauge,
    /// How far behind the replayer is, in seconds of enqueue time.
    pub replay_lag_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the replayer is paused.
    pub replay_paused: Gauge,
    /// 1 while the replayer is halted on a corrupt record.
    pub replay_halted: Gauge,
    /// Writes the primary applied that could not be recorded (the clusters
    /// differ until a comparison repairs them).
    pub unrecorded_writes: Counter,
    /// Writes whose connection to the primary failed mid-exchange, so the
    /// client could not be told whether they were applied.
    pub unknown_outcome_writes: Counter,
    /// 1 while the agent's stream to the control plane is open.
    pub agent_connected: Gauge,
    /// Replay version conflicts, by class.
    pub replay_version_conflicts: Family<ConflictLabels, Counter>,
    /// Documents reconciled from the primary, by cause and result.
    pub reconciled_documents: Family<ReconcileLabels, Counter>,
    /// Documents queued for reconciliation, by cause.
    pub reconciles_queued: Family<CauseLabels, Counter>,
    /// Documents of writes found in flight at start-up.
    pub inflight_at_start: Counter,
    /// Writes in flight (at a crash or with an unknown outcome) that name
    /// no document and cannot be reconciled by id.
    pub unreconcilable_writes: Counter,
    /// Sampled documents the verifier read from both clusters.
    pub verified_documents: Counter,
    /// Divergences the verifier confirmed (each queued for repair).
    pub verifier_divergences: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under `tandem_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered to clients", requests.clone());
        let request_duration = Family::<ClassLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Client-visible request latency",
            request_duration.clone(),
        );
        let limiter_waits = Family::<ClassLabels, Counter>::default();
        registry.register(
            "limiter_waits",
            "Requests that waited for a per-node limit",
            limiter_waits.clone(),
        );
        let limiter_wait_seconds = Family::<ClassLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "limiter_wait_seconds",
            "Time spent waiting for per-node limits",
            limiter_wait_seconds.clone(),
        );
        let limiter_rejections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limiter_rejections",
            "Requests refused by a per-node limit",
            limiter_rejections.clone(),
        );
        let recorded_ops = Family::<OpLabels, Counter>::default();
        registry.register(
            "recorded_ops",
            "Operations accepted by the primary and recorded in the queue",
            recorded_ops.clone(),
        );
        let replayed_ops = Family::<OpLabels, Counter>::default();
        registry.register(
            "replayed_ops",
            "Operations applied to the backup",
            replayed_ops.clone(),
        );
        let replay_retries = Counter::default();
        registry.register(
            "replay_retries",
            "Replay attempts that failed and were retried",
            replay_retries.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "dead_letters",
            "Operations in the dead-letter store",
            dead_letters.clone(),
        );
        let queue_depth_records = Gauge::default();
        registry.register(
            "queue_depth_records",
            "Unreplayed records in the queue",
            queue_depth_records.clone(),
        );
        let queue_depth_bytes = Gauge::default();
        registry.register(
            "queue_depth_bytes",
            "Bytes of queue segments on disk",
            queue_depth_bytes.clone(),
        );
        let queue_oldest_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest unreplayed record",
            queue_oldest_age_seconds.clone(),
        );
        let replay_lag_records = Gauge::default();
        registry.register(
            "replay_lag_records",
            "Records the replayer is behind",
            replay_lag_records.clone(),
        );
        let replay_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "replay_lag_seconds",
            "Seconds the replayer is behind",
            replay_lag_seconds.clone(),
        );
        let replay_paused = Gauge::default();
        registry.register(
            "replay_paused",
            "1 while the replayer is paused",
            replay_paused.clone(),
        );
        let replay_halted = Gauge::default();
        registry.register(
            "replay_halted",
            "1 while the replayer is halted on a corrupt record",
            replay_halted.clone(),
        );
        let unrecorded_writes = Counter::default();
        registry.register(
            "unrecorded_writes",
            "Writes applied on the primary that could not be recorded for the backup",
            unrecorded_writes.clone(),
        );
        let unknown_outcome_writes = Counter::default();
        registry.register(
            "unknown_outcome_writes",
            "Writes whose connection to the primary failed after they were sent",
            unknown_outcome_writes.clone(),
        );
        let agent_connected = Gauge::default();
        registry.register(
            "agent_connected",
            "1 while the agent stream to the control plane is open",
            agent_connected.clone(),
        );
        let replay_version_conflicts = Family::<ConflictLabels, Counter>::default();
        registry.register(
            "replay_version_conflicts",
            "Replay writes the backup refused as a version conflict, by class (older: skipped; reconcile: checked against the primary)",
            replay_version_conflicts.clone(),
        );
        let reconciled_documents = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciled_documents",
            "Documents compared on both clusters and made equal to the primary, by cause and result (repaired: the backup differed)",
            reconciled_documents.clone(),
        );
        let reconciles_queued = Family::<CauseLabels, Counter>::default();
        registry.register(
            "reconciles_queued",
            "Documents queued to be read from the primary and made true on the backup, by cause (unknown_outcome, restart)",
            reconciles_queued.clone(),
        );
        let inflight_at_start = Counter::default();
        registry.register(
            "inflight_documents_at_start",
            "Documents of writes that were in flight when the gateway last stopped (queued for reconciliation)",
            inflight_at_start.clone(),
        );
        let unreconcilable_writes = Counter::default();
        registry.register(
            "unreconcilable_writes",
            "Writes whose outcome is unknown and that name no document (metadata, by-query, unreadable journal): run a comparison job",
            unreconcilable_writes.clone(),
        );
        let verified_documents = Counter::default();
        registry.register(
            "verified_documents",
            "Sampled replayed documents the verifier read from both clusters",
            verified_documents.clone(),
        );
        let verifier_divergences = Counter::default();
        registry.register(
            "verifier_divergences",
            "Documents the verifier found different on the backup after every record was replayed (each is repaired from the primary)",
            verifier_divergences.clone(),
        );
        Metrics {
            registry,
            verified_documents,
            verifier_divergences,
            reconciles_queued,
            inflight_at_start,
            unreconcilable_writes,
            replay_version_conflicts,
            reconciled_documents,
            agent_connected,
            unrecorded_writes,
            unknown_outcome_writes,
            requests,
            request_duration,
            limiter_waits,
            limiter_wait_seconds,
            limiter_rejections,
            recorded_ops,
            replayed_ops,
            replay_retries,
            dead_letters,
            queue_depth_records,
            queue_depth_bytes,
            queue_oldest_age_seconds,
            replay_lag_records,
            replay_lag_seconds,
            replay_paused,
            replay_halted,
        }
    }

    /// Records one answered request.
    /// Labels are static strings: no allocation per request (this runs
    /// for every proxied read).
    pub fn observe_request(
        &self,
        class: &'static str,
        upstream: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "error",
        };
        self.requests
            .get_or_create(&RequestLabels {
                class,
                upstream,
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&ClassLabels { class, upstream })
            .observe(elapsed.as_secs_f64());
    }

    /// Records time a request waited for a per-node limit.
    pub fn observe_limiter_wait(
        &self,
        class: &'static str,
        upstream: &'static str,
        waited: Duration,
    ) {
        if waited < Duration::from_micros(100) {
            return;
        }
        let labels = ClassLabels { class, upstream };
        self.limiter_waits.get_or_create(&labels).inc();
        self.limiter_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }

    /// Records a request refused by a limit.
    pub fn observe_limiter_rejection(&self, upstream: &str, limit: &str) {
        self.limiter_rejections
            .get_or_create(&LimitLabels {
                upstream: upstream.to_string(),
                limit: limit.to_string(),
            })
            .inc();
    }

    /// Counts classified version conflicts: `older` skipped, `reconcile`
    /// checked against the primary (zero counts are not touched).
    pub fn observe_conflicts(&self, older: u64, reconcile: u64) {
        use tandem_es::docstate::ConflictClass;
        for (class, n) in [
            (ConflictClass::Older, older),
            (ConflictClass::Reconcile, reconcile),
        ] {
            if n > 0 {
                self.replay_version_conflicts
                    .get_or_create(&ConflictLabels {
                        class: class.label().to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts one reconciled document.
    pub fn observe_reconciled(&self, cause: &str, outcome: &crate::reconcile::Reconciled) {
        let result = match outcome {
            crate::reconcile::Reconciled::InSync => "in_sync",
            crate::reconcile::Reconciled::Repaired { .. } => "repaired",
        };
        self.reconciled_documents
            .get_or_create(&ReconcileLabels {
                cause: cause.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_contains_observed_requests() {
        let metrics = Metrics::new();
        metrics.observe_request("bulk", "primary", 200, Duration::from_millis(3));
        metrics.observe_request("read", "primary", 0, Duration::from_millis(1));
        metrics.queue_depth_records.set(42);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"tandem_requests_total{class="bulk",upstream="primary",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"status="error""#), "{text}");
        assert!(text.contains("tandem_queue_depth_records 42"), "{text}");
        assert!(
            text.contains("tandem_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
