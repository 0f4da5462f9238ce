//! The catalogue of machine-readable reason codes.
//!
//! Every UPPER_SNAKE_CASE reason Tandem puts on the wire is a constant of
//! this module, and nowhere else a string literal: the control plane and the
//! gateway both use these constants, and [`ALL`] lists them with their
//! [`Kind`] and meaning so the operator reference `docs/reason-codes.md` is
//! generated from here (see [`markdown`]; a test fails when the document is
//! stale, and `TANDEM_BLESS=1 cargo test -p tandem-proto` rewrites it).
//!
//! A code's value is its constant's name and never changes once released:
//! clients match on these strings. A code may serve several kinds (a task
//! problem that is also recorded as a task event); it is listed once, under
//! its first kind.

/// Where a reason code appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `ErrorInfo.reason` of a resource the gRPC API returns.
    Error,
    /// `Event.reason` of a task or job event.
    Event,
    /// `ErrorInfo.reason` of a gateway's `CommandResult`.
    Command,
}

impl Kind {
    /// Every kind, in catalogue order.
    pub const ALL: [Kind; 3] = [Kind::Error, Kind::Event, Kind::Command];

    /// Short name, as in the generated table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Error => "error reason",
            Kind::Event => "event",
            Kind::Command => "command result",
        }
    }

    /// Where codes of this kind are found.
    pub fn description(self) -> &'static str {
        match self {
            Kind::Error => {
                "`ErrorInfo.reason` of a resource the gRPC API returns: a cluster \
                 probe's `error`, a job's or partition's `error` / `last_error`, a \
                 task's `problems`, a role swap's `error`. Cutover and Rollback \
                 refusals also quote it in parentheses in their `FAILED_PRECONDITION` \
                 message."
            }
            Kind::Event => {
                "`Event.reason` of a task event (`ListTaskEvents`, `WatchTask`) or \
                 a job event (`WatchMigrationJob`, `WatchCompareJob`)."
            }
            Kind::Command => {
                "`ErrorInfo.reason` of a gateway's answer to a command the control \
                 plane relayed (peek, queue repair, dead letters, reconcile); the \
                 RPC that sent the command quotes it as `REASON: message` in its \
                 status."
            }
        }
    }
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Name of the constant.
    pub name: &'static str,
    /// The string on the wire.
    pub value: &'static str,
    /// Where it appears; the first is the kind it is listed under.
    pub kinds: &'static [Kind],
    /// Lines of the constant's documentation: when it is used and what the
    /// operator should do.
    pub doc: &'static [&'static str],
}

impl Code {
    /// The documentation as one paragraph.
    pub fn description(&self) -> String {
        let mut text = String::new();
        for line in self.doc.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(line);
        }
        text
    }
}

/// Defines one `pub const` per code, with its documentation, and [`ALL`].
macro_rules! catalogue {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $($kind:ident)|+ = $value:literal;
    )+) => {
        $(
            $(#[doc = $doc])+
            pub const $name: &str = $value;
        )+

        /// Every code of the catalogue, grouped by kind.
        pub const ALL: &[Code] = &[$(
            Code {
                name: stringify!($name),
                value: $value,
                kinds: &[$(Kind::$kind),+],
                doc: &[$($doc),+],
            },
        )+];
    };
}

catalogue! {
    // -----------------------------------------------------------------
    // Error reasons: cluster probes (RegisterCluster, UpdateCluster,
    // ProbeCluster).
    // -----------------------------------------------------------------

    /// A cluster was probed while it has no endpoint. Add at least one
    /// endpoint with UpdateCluster.
    NO_ENDPOINT: Error = "NO_ENDPOINT";

    /// A cluster could not be reached: connection refused, name resolution
    /// failed, or no endpoint answered (a probe; a job connecting to its
    /// clusters or losing one in the middle of a request, which is
    /// retried). Check the endpoints and the network path from the control
    /// plane to the cluster.
    UPSTREAM_UNREACHABLE: Error = "UPSTREAM_UNREACHABLE";

    /// A probed endpoint did not answer within the probe timeout
    /// (`--probe-timeout-secs`, `TANDEM_PROBE_TIMEOUT_SECS`). Check the
    /// cluster's load and the network; raise the timeout for slow links.
    UPSTREAM_TIMEOUT: Error = "UPSTREAM_TIMEOUT";

    /// The TLS handshake with an endpoint failed (certificate not trusted,
    /// name mismatch, protocol). Check the cluster's `tls` settings: CA
    /// certificates, `server_name`, client certificate.
    TLS_ERROR: Error = "TLS_ERROR";

    /// The cluster's TLS settings cannot be used (a PEM does not parse, the
    /// client key does not match); nothing was contacted. The metadata
    /// `field` names the setting to fix.
    TLS_CONFIG_INVALID: Error = "TLS_CONFIG_INVALID";

    /// A cluster answered something that is not the expected HTTP or JSON:
    /// a probed endpoint that does not speak HTTP (a transport port?), or a
    /// search, point-in-time or `_bulk` answer a job cannot read (retried).
    /// Check that the endpoint is the cluster's HTTP port and that no proxy
    /// in between alters the answers.
    UPSTREAM_PROTOCOL_ERROR: Error = "UPSTREAM_PROTOCOL_ERROR";

    /// The cluster refused the credentials (HTTP 401 to `GET /`). Check the
    /// cluster's `credentials` (username and password, or API key).
    AUTHENTICATION_FAILED: Error = "AUTHENTICATION_FAILED";

    /// The cluster accepted the credentials but denied `GET /` (HTTP 403).
    /// Grant them the `monitor` cluster privilege.
    AUTHORIZATION_FAILED: Error = "AUTHORIZATION_FAILED";

    /// `GET /` answered an unexpected HTTP status (metadata `http_status`;
    /// the message quotes the cluster's reason). Check the cluster (no
    /// elected master?) or the proxy in front of it.
    UNEXPECTED_STATUS: Error = "UNEXPECTED_STATUS";

    /// The endpoint answered `GET /` but not like Elasticsearch or
    /// OpenSearch (no `version.number`). Point the cluster's endpoints at
    /// the search cluster's HTTP port.
    NOT_A_SEARCH_CLUSTER: Error = "NOT_A_SEARCH_CLUSTER";

    /// ProbeCluster found that the endpoints lead to a cluster whose UUID
    /// differs from the registered one. Point the endpoints back at the
    /// registered cluster; a cluster that was really rebuilt must be
    /// registered anew.
    CLUSTER_UUID_MISMATCH: Error = "CLUSTER_UUID_MISMATCH";

    // -----------------------------------------------------------------
    // Error reasons: migration and comparison jobs (job `error`,
    // partition `last_error`).
    // -----------------------------------------------------------------

    /// A job could not read or write the control plane's database
    /// (checkpoint, cluster lookup, recording differences); the attempt is
    /// retried. Check Postgres and the control plane's connection to it.
    STORE_UNAVAILABLE: Error = "STORE_UNAVAILABLE";

    /// A job names a cluster that is no longer registered. Register the
    /// cluster and create the job again.
    CLUSTER_NOT_FOUND: Error = "CLUSTER_NOT_FOUND";

    /// The stored credentials or TLS key of a cluster a job uses cannot be
    /// opened (the control plane runs with another secret key than the one
    /// that sealed them?). Check the secret key, or set the cluster's
    /// credentials again with UpdateCluster, then create the job again.
    SECRET_UNUSABLE: Error = "SECRET_UNUSABLE";

    /// A cluster answered a job's request with HTTP 429 or 5xx (metadata
    /// `http_status`); the attempt is retried. When attempts run out, check
    /// the cluster's health and load, lower the job's rate limits, then
    /// resume a migration job with `retry_failed_partitions` (or run a
    /// comparison job again).
    UPSTREAM_ERROR: Error = "UPSTREAM_ERROR";

    /// A cluster refused a job's request with another 4xx status (metadata
    /// `http_status`; the message quotes the method, path and the
    /// cluster's reason); not retried. Fix the cause (privileges, closed
    /// index...), then resume a migration job with
    /// `retry_failed_partitions` (or run a comparison job again).
    UPSTREAM_REFUSED: Error = "UPSTREAM_REFUSED";

    /// The stored spec of a job cannot be read (written by an incompatible
    /// control-plane version). Create the job again.
    SPEC_UNREADABLE: Error = "SPEC_UNREADABLE";

    /// A migration job asked for point-in-time reads but the source does
    /// not support them (Elasticsearch before 7.10, OpenSearch before
    /// 2.4). Use READ_STRATEGY_SCROLL or READ_STRATEGY_AUTO.
    POINT_IN_TIME_UNSUPPORTED: Error = "POINT_IN_TIME_UNSUPPORTED";

    /// Planning found target indices that already exist while the job's
    /// policy is EXISTING_INDEX_POLICY_FAIL (metadata `indices`). Delete
    /// them, or create the job with EXISTING_INDEX_POLICY_REUSE.
    TARGET_INDEX_EXISTS: Error = "TARGET_INDEX_EXISTS";

    /// A snapshot-based migration job (MIGRATION_MODE_SNAPSHOT) selected
    /// indices the target cannot restore (metadata `indices`, `rule`): the
    /// source's version writes snapshots the target cannot read, or an index
    /// was created by a version the target does not read (Elasticsearch N
    /// reads indices created by N and N-1, OpenSearch 1 by Elasticsearch
    /// 6.x-7.10.2 and OpenSearch 1, OpenSearch 2 by Elasticsearch
    /// 7.0-7.10.2 and OpenSearch 1-2, OpenSearch 3 by OpenSearch 2-3; see
    /// docs/cross-version.md). Use MIGRATION_MODE_DOCUMENTS for those
    /// indices.
    SNAPSHOT_VERSION_UNSUPPORTED: Error = "SNAPSHOT_VERSION_UNSUPPORTED";

    /// A cluster refused to register the snapshot repository of a
    /// snapshot-based migration job (metadata `cluster`): usually the
    /// location is not listed in the nodes' `path.repo`, or the target does
    /// not see the directory the source writes. Fix the location or the
    /// nodes' `path.repo`, then create the job again.
    SNAPSHOT_REPOSITORY_REFUSED: Error = "SNAPSHOT_REPOSITORY_REFUSED";

    /// The snapshot of a snapshot-based migration job failed or was partial
    /// on the source, or the target refused or failed to restore it
    /// (metadata `snapshot`; the message quotes the cluster's reason).
    /// Nothing is retried: inspect the snapshot, delete what was restored,
    /// and create the job again.
    SNAPSHOT_FAILED: Error = "SNAPSHOT_FAILED";

    /// The target refused to create an index because of its mappings
    /// (metadata `index`, `http_status`). Adjust the type rewrite options,
    /// or create the index on the target yourself and reuse it.
    MAPPING_REJECTED: Error = "MAPPING_REJECTED";

    /// The target refused to create an index for another reason than its
    /// mappings, or refused too many of its settings (metadata `index`).
    /// Exclude or override the offending settings (`excluded_settings`,
    /// `settings_overrides`), or create the index yourself and reuse it.
    INDEX_CREATION_FAILED: Error = "INDEX_CREATION_FAILED";

    /// A source index has several mapping types and the typeless target
    /// holds only one. Split the index by type on the source first.
    MULTIPLE_MAPPING_TYPES: Error = "MULTIPLE_MAPPING_TYPES";

    /// A partition used its last attempt (job event, with the partition's
    /// own reason as attribute `reason`); the job then ends FAILED with
    /// this reason (metadata `index`, `partition_reason`). Read the
    /// partition's `last_error`, fix its cause, then resume a migration job
    /// with `retry_failed_partitions` (or run a comparison job again).
    PARTITION_FAILED: Error | Event = "PARTITION_FAILED";

    /// A partition's worker stopped renewing its lease (a control-plane
    /// replica crashed or stalled) and every attempt is used. Check the
    /// replicas' logs, then resume a migration job with
    /// `retry_failed_partitions` (or run a comparison job again).
    LEASE_EXPIRED: Error = "LEASE_EXPIRED";

    // -----------------------------------------------------------------
    // Error reasons: replication tasks (task `problems`, Cutover and
    // Rollback refusals, role swap `error`).
    // -----------------------------------------------------------------

    /// A gateway of the task has no agent stream; a role swap is refused
    /// until it is back. Check the gateway process and its connection to
    /// the control plane, or remove a gateway gone for good from the task.
    GATEWAY_DISCONNECTED: Error = "GATEWAY_DISCONNECTED";

    /// A gateway has not applied the task's latest desired state yet; a
    /// role swap is refused meanwhile. It normally clears within a
    /// heartbeat; if it lasts, read the gateway's logs.
    GATEWAY_OUT_OF_SYNC: Error = "GATEWAY_OUT_OF_SYNC";

    /// A gateway's queue is corrupt and its replay is blocked (task health
    /// BLOCKED). Inspect it with PeekRecords, skip the damaged records with
    /// RepairQueue, then run a comparison job.
    QUEUE_CORRUPT: Error = "QUEUE_CORRUPT";

    /// Cutover or Rollback refused: a gateway's replay is blocked by a
    /// corrupt queue. Repair the queue first (see QUEUE_CORRUPT).
    CONSUMER_BLOCKED: Error = "CONSUMER_BLOCKED";

    /// The task's replication lag (time or records) is above its warning
    /// thresholds (`lag_thresholds.warning_lag`, `warning_records`). Check
    /// the backup cluster's health and throughput, the dead letters and
    /// the gateways' logs; it clears once the backlog drains.
    LAG_ABOVE_THRESHOLD: Error = "LAG_ABOVE_THRESHOLD";

    /// Cutover or Rollback refused: the lag is above the request's
    /// `max_lag` / `max_lag_records` (or the task's cutover maximums). Wait
    /// for the backlog to drain and try again.
    LAG_ABOVE_MAXIMUM: Error = "LAG_ABOVE_MAXIMUM";

    /// The task has unresolved dead letters; Cutover and Rollback are
    /// refused unless `allow_dead_letters` is set. List them with
    /// ListDeadLetters, fix their cause and retry them, or skip them.
    DEAD_LETTERS: Error = "DEAD_LETTERS";

    /// A gateway's verifier found documents different on the backup after
    /// every record was replayed, and repaired each from the primary (task
    /// event, and task problem for a while after). Run a comparison job to
    /// check the rest, and look for writes reaching the backup around the
    /// gateways.
    BACKUP_DIVERGED: Error | Event = "BACKUP_DIVERGED";

    /// A gateway had writes with an unknown outcome (the primary's answer
    /// was lost) that name no document, so they could not be reconciled
    /// (task event, and task problem for a while after). Run a comparison
    /// job and repair its differences.
    UNRECONCILABLE_WRITES: Error | Event = "UNRECONCILABLE_WRITES";

    /// Cutover or Rollback refused: the task is not RUNNING in the
    /// direction the swap starts from. Resume the task, or check which
    /// direction it runs in.
    TASK_NOT_RUNNING: Error = "TASK_NOT_RUNNING";

    /// A cutover was aborted by a Rollback request while in progress; roles
    /// are unchanged. Start the cutover again when ready.
    ABORTED_BY_ROLLBACK: Error = "ABORTED_BY_ROLLBACK";

    /// A role swap failed: not every gateway reported the new direction
    /// before the hold timeout (plus one heartbeat) expired, and the old
    /// direction was published again.
    /// Check that every gateway is connected and in sync, then try again,
    /// possibly with a longer `hold_timeout`.
    DEADLINE_EXCEEDED: Error = "DEADLINE_EXCEEDED";

    // -----------------------------------------------------------------
    // Events: replication tasks.
    // -----------------------------------------------------------------

    /// A task was created. Informational.
    TASK_CREATED: Event = "TASK_CREATED";

    /// A task was started: its gateways begin replaying. Informational.
    TASK_STARTED: Event = "TASK_STARTED";

    /// A task was paused: its gateways keep recording writes but stop
    /// replaying them. Informational.
    TASK_PAUSED: Event = "TASK_PAUSED";

    /// A paused task was resumed, or a FAILED task resumed in its earlier
    /// state with its desired state published again. Informational.
    TASK_RESUMED: Event = "TASK_RESUMED";

    /// A task was stopped. Informational.
    TASK_STOPPED: Event = "TASK_STOPPED";

    /// A task's settings were changed; the message lists the changes.
    /// Informational.
    TASK_UPDATED: Event = "TASK_UPDATED";

    /// A cutover started: the new direction is published with writes held
    /// for at most the hold timeout. Watch the task until it ends.
    CUTOVER_STARTED: Event = "CUTOVER_STARTED";

    /// Every gateway runs in the direction the cutover asked for.
    /// Informational.
    CUTOVER_SUCCEEDED: Event = "CUTOVER_SUCCEEDED";

    /// Not every gateway reported the cutover's direction in time; the old
    /// direction was published again (see DEADLINE_EXCEEDED).
    CUTOVER_FAILED: Event = "CUTOVER_FAILED";

    /// A Rollback request aborted the cutover in progress; roles are
    /// unchanged.
    CUTOVER_ABORTED: Event = "CUTOVER_ABORTED";

    /// A rollback started: the opposite direction is published with writes
    /// held for at most the hold timeout. Watch the task until it ends.
    ROLLBACK_STARTED: Event = "ROLLBACK_STARTED";

    /// Every gateway runs in the direction the rollback asked for.
    /// Informational.
    ROLLBACK_SUCCEEDED: Event = "ROLLBACK_SUCCEEDED";

    /// Not every gateway reported the rollback's direction in time; the
    /// previous direction was published again (see DEADLINE_EXCEEDED).
    ROLLBACK_FAILED: Event = "ROLLBACK_FAILED";

    // -----------------------------------------------------------------
    // Events: migration and comparison jobs.
    // -----------------------------------------------------------------

    /// A job was created. Informational.
    JOB_CREATED: Event = "JOB_CREATED";

    /// A job changed state (attributes `from_state`, `to_state`; `reason`
    /// when it failed, see the job's `error`).
    JOB_STATE_CHANGED: Event = "JOB_STATE_CHANGED";

    /// A planning attempt failed for a reason another attempt may cure
    /// (quoted in the message); planning is tried again once the lease
    /// expires. If it keeps failing, act on the quoted reason.
    PLANNING_RETRY: Event = "PLANNING_RETRY";

    /// A scroll slice could not continue from its checkpoint (a crash or an
    /// expired scroll context) and restarts from its first document, which
    /// is safe: writes are externally versioned. If frequent, use
    /// point-in-time reads or a longer `keep_alive`.
    PARTITION_RESTARTED: Event = "PARTITION_RESTARTED";

    /// Documents below the target's version although the source had not
    /// moved (re-created after a delete whose tombstone was pruned) were
    /// written above the target's version (ADR 006). Informational.
    DOCUMENTS_REWRITTEN_ABOVE_TARGET: Event = "DOCUMENTS_REWRITTEN_ABOVE_TARGET";

    /// The target refused documents of a batch (counted in `docs_failed`;
    /// attributes `document_ids`, `reason`), for example on a mapping
    /// conflict. Fix the mapping or the documents; a comparison job lists
    /// them as missing.
    DOCUMENT_REJECTED: Event = "DOCUMENT_REJECTED";

    // -----------------------------------------------------------------
    // Gateway command results.
    // -----------------------------------------------------------------

    /// Rejected: the command reached the gateway after it expired (the
    /// gateway was away too long). Send the request again.
    EXPIRED: Command = "EXPIRED";

    /// Rejected: the gateway has no backup cluster, hence no queue nor dead
    /// letters. Address the request to a gateway that replicates the task.
    REPLICATION_NOT_CONFIGURED: Command = "REPLICATION_NOT_CONFIGURED";

    /// Rejected: the gateway does not know this kind of command (it is
    /// older than the control plane). Upgrade the gateway.
    UNSUPPORTED_COMMAND: Command = "UNSUPPORTED_COMMAND";

    /// Rejected: the gateway serves another task than the command names;
    /// the control plane answers NOT_FOUND. Check the task and gateway ids.
    UNKNOWN_TASK: Command = "UNKNOWN_TASK";

    /// Accepted from gateways like UNKNOWN_TASK (the control plane answers
    /// NOT_FOUND); not sent by the gateways of this release.
    TASK_NOT_FOUND: Command = "TASK_NOT_FOUND";

    /// Accepted from gateways for a start offset outside the queue (the
    /// control plane answers OUT_OF_RANGE); not sent by the gateways of
    /// this release.
    OFFSET_OUT_OF_RANGE: Command = "OFFSET_OUT_OF_RANGE";

    /// Same as OFFSET_OUT_OF_RANGE.
    OUT_OF_RANGE: Command = "OUT_OF_RANGE";

    /// Failed: the gateway could not read the queue records to peek.
    /// Check the gateway's logs and its queue directory.
    PEEK_FAILED: Command = "PEEK_FAILED";

    /// Failed: the gateway could not retry the dead letters. Check the
    /// gateway's logs and the backup cluster, then retry again.
    RETRY_FAILED: Command = "RETRY_FAILED";

    /// Failed: the gateway could not record the dead letters as skipped.
    /// Check the gateway's logs and disk, then skip again.
    SKIP_FAILED: Command = "SKIP_FAILED";

    /// Rejected: a reconcile command (sent by RepairCompareDiffs) named more
    /// documents than a gateway takes at once (10 000). Repair fewer
    /// differences per call (`max_diffs`).
    TOO_MANY_DOCUMENTS: Command = "TOO_MANY_DOCUMENTS";

    /// Rejected: a document of a reconcile command lacks its index or id.
    INVALID_DOCUMENT: Command = "INVALID_DOCUMENT";

    /// Failed: the gateway could not queue the documents to reconcile
    /// (RepairCompareDiffs). Check the gateway's logs and disk, then repair
    /// again.
    QUEUE_FAILED: Command = "QUEUE_FAILED";

    /// Rejected: RepairQueue found no corruption blocking the replay;
    /// nothing was changed. Nothing to do.
    QUEUE_NOT_BLOCKED: Command = "QUEUE_NOT_BLOCKED";

    /// Rejected: the queue is blocked at another offset than the request's
    /// `expected_offset`; nothing was changed. Read the offset again from
    /// the queue statistics (`corruption.offset`) and retry with it.
    QUEUE_NOT_BLOCKED_AT_OFFSET: Command = "QUEUE_NOT_BLOCKED_AT_OFFSET";

    /// Failed: the queue repair itself failed and the queue stays blocked.
    /// Check the gateway's logs and disk.
    REPAIR_FAILED: Command = "REPAIR_FAILED";
}

/// Path of the generated reference, from the workspace root.
pub const DOC_PATH: &str = "docs/reason-codes.md";

/// The operator reference `docs/reason-codes.md`, generated from [`ALL`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Reason codes\n\
         \n\
         <!-- Generated from proto/src/codes.rs; do not edit. Regenerate with \
         `TANDEM_BLESS=1 cargo test -p tandem-proto`. -->\n\
         \n\
         Every machine-readable reason code Tandem uses, in UPPER_SNAKE_CASE. The \
         strings are stable across releases: match on them, not on messages.\n\
         \n\
         Kinds:\n\
         \n",
    );
    for kind in Kind::ALL {
        out.push_str(&format!("- **{}**: {}\n", kind.name(), kind.description()));
    }
    out.push_str("\n| Code | Kind | Meaning and what to do |\n|---|---|---|\n");
    for code in ALL {
        let kinds: Vec<&str> = code.kinds.iter().map(|k| k.name()).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.value,
            kinds.join(", "),
            code.description().replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn values_are_unique_and_equal_their_names() {
        let mut seen = BTreeSet::new();
        for code in ALL {
            assert_eq!(
                code.value, code.name,
                "{} must be spelled as its name",
                code.name
            );
            assert!(seen.insert(code.value), "{} is listed twice", code.value);
            assert!(
                code.value
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{} is not UPPER_SNAKE_CASE",
                code.value
            );
            assert!(
                !code.description().is_empty(),
                "{} has no description",
                code.name
            );
            assert!(!code.kinds.is_empty(), "{} has no kind", code.name);
        }
    }

    #[test]
    fn codes_are_grouped_by_their_first_kind() {
        let firsts: Vec<Kind> = ALL.iter().map(|c| c.kinds[0]).collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        assert_eq!(
            firsts, sorted,
            "keep each code under its first kind's heading"
        );
    }

    #[test]
    fn reason_codes_document_is_up_to_date() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(DOC_PATH);
        let expected = markdown();
        if std::env::var_os("TANDEM_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &expected).unwrap();
            return;
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "{DOC_PATH} differs from the catalogue in proto/src/codes.rs; \
             regenerate it with `TANDEM_BLESS=1 cargo test -p tandem-proto`"
        );
    }
}
