//! Reducing a `DesiredState` to what this gateway can apply, and planning
//! the actions that converge it.

use super::*;

// ---------------------------------------------------------------------------
// Desired state.
// ---------------------------------------------------------------------------

/// The part of a `DesiredState` this gateway applies, for its one task.
/// `None` fields leave the gateway as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Version of the desired state this comes from.
    pub version: u64,
    /// Task assigned to this gateway.
    pub task_id: Option<String>,
    /// Replay paused (task mode RECORD_ONLY or PASSTHROUGH) or running
    /// (REPLAY).
    pub paused: Option<bool>,
    /// Primary and backup swapped relative to the configuration (direction
    /// REVERSED).
    pub reversed: Option<bool>,
    /// Bound of the write hold of a role swap, from the task's `WriteHold`.
    pub max_hold_ms: Option<u64>,
    /// `authorization` for the gateway's own requests to the primary, from
    /// the cluster credentials of the assignment (`Some(None)`: the cluster
    /// needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_auth: Option<Option<AuthHeader>>,
    /// The same for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_auth: Option<Option<AuthHeader>>,
    /// Per-node limits of the primary's cluster, from the assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_limits: Option<AssignedLimits>,
    /// The same for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_limits: Option<AssignedLimits>,
}

/// A cluster's per-node limits as the control plane assigns them (0 means
/// unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedLimits {
    /// Requests per second per node.
    pub max_qps_per_node: u32,
    /// Request body bytes per second per node.
    pub max_bytes_per_sec_per_node: u64,
    /// Requests in flight per node.
    pub max_connections_per_node: u32,
    /// Answer 429 at once instead of waiting.
    pub reject: bool,
    /// Longest wait for capacity, in milliseconds (0: the default).
    pub max_wait_ms: u64,
}

impl AssignedLimits {
    /// From the contract's `Limits`.
    pub fn from_proto(limits: &pb::Limits) -> AssignedLimits {
        AssignedLimits {
            max_qps_per_node: limits.max_qps_per_node,
            max_bytes_per_sec_per_node: limits.max_bytes_per_sec_per_node,
            max_connections_per_node: limits.max_connections_per_node,
            reject: limits.over_limit == pb::OverLimitPolicy::Reject as i32,
            max_wait_ms: limits
                .max_wait
                .and_then(std_duration)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// As the gateway's limits configuration.
    pub fn to_config(self) -> crate::limits::LimitsConfig {
        let mut config = crate::limits::LimitsConfig {
            max_qps_per_node: (self.max_qps_per_node > 0)
                .then_some(f64::from(self.max_qps_per_node)),
            max_bytes_per_sec_per_node: (self.max_bytes_per_sec_per_node > 0)
                .then_some(self.max_bytes_per_sec_per_node),
            max_connections_per_node: (self.max_connections_per_node > 0)
                .then_some(self.max_connections_per_node as usize),
            ..Default::default()
        };
        if self.reject {
            config.over_limit = crate::limits::OverLimitPolicy::Reject;
        }
        if self.max_wait_ms > 0 {
            config.max_wait_ms = self.max_wait_ms;
        }
        config
    }
}

/// An `authorization` header value built from cluster credentials; never
/// printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthHeader(pub String);

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHeader(<redacted>)")
    }
}

/// The `authorization` value for `credentials`: `None` when the message
/// carries no method, `Some(None)` for a cluster without authentication.
pub fn auth_header(credentials: Option<&pb::Credentials>) -> Option<Option<AuthHeader>> {
    use base64::Engine;
    let credentials = credentials?;
    match pb::AuthMethod::try_from(credentials.method).ok()? {
        pb::AuthMethod::Unspecified => None,
        pb::AuthMethod::None => Some(None),
        pb::AuthMethod::Basic => Some(Some(AuthHeader(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", credentials.username, credentials.password))
        )))),
        pb::AuthMethod::ApiKey => Some(Some(AuthHeader(format!("ApiKey {}", credentials.api_key)))),
    }
}

impl Target {
    /// Bound of the write hold of a role swap, when the control plane set
    /// one.
    pub fn max_hold(&self) -> Option<Duration> {
        self.max_hold_ms.map(Duration::from_millis)
    }
}

/// A desired state reduced to a [`Target`], with what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpretation {
    /// What will be applied.
    pub target: Target,
    /// Fields this gateway cannot apply (for debug logs; never secrets).
    pub ignored: Vec<String>,
}

/// Reduces `state` to what this gateway applies. The task kept is the one
/// with id `current_task` if present, else the first one served by the
/// default listener; other tasks are ignored.
pub fn interpret_desired_state(
    state: &pb::DesiredState,
    current_task: Option<&str>,
) -> Interpretation {
    let mut ignored = Vec::new();
    let chosen = current_task
        .and_then(|current| state.tasks.iter().position(|t| t.task_id == current))
        .or_else(|| {
            state
                .tasks
                .iter()
                .position(|t| t.listener.is_empty() || t.listener == "default")
        });
    for (i, task) in state.tasks.iter().enumerate() {
        if Some(i) != chosen {
            ignored.push(format!(
                "task {:?} (listener {:?}): this gateway serves a single task on its default listener",
                task.task_id, task.listener
            ));
        }
    }
    let mut target = Target {
        version: state.version,
        ..Target::default()
    };
    match chosen.and_then(|i| state.tasks.get(i)) {
        None if state.tasks.is_empty() => ignored.push(
            "no task assigned: the gateway keeps recording and replaying as configured".into(),
        ),
        None => {}
        Some(task) => {
            if !task.task_id.is_empty() {
                target.task_id = Some(task.task_id.clone());
            }
            target.paused = match pb::TaskMode::try_from(task.mode) {
                Ok(pb::TaskMode::RecordOnly) => Some(true),
                Ok(pb::TaskMode::Replay) => Some(false),
                Ok(pb::TaskMode::Passthrough) => {
                    ignored.push(
                        "mode PASSTHROUGH: replay is paused but accepted writes are still \
                         recorded (recording cannot be turned off at run time)"
                            .into(),
                    );
                    Some(true)
                }
                _ => None,
            };
            target.reversed = match pb::ReplicationDirection::try_from(task.direction) {
                Ok(pb::ReplicationDirection::Forward) => Some(false),
                Ok(pb::ReplicationDirection::Reversed) => Some(true),
                _ => None,
            };
            if let Some(hold) = &task.write_hold {
                target.max_hold_ms = hold
                    .timeout
                    .and_then(std_duration)
                    .filter(|d| !d.is_zero())
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                ignored.push(format!(
                    "write hold {:?}: only bounds the hold of a role swap; writes are not held on their own",
                    hold.hold_id
                ));
            }
            if task.primary.is_some() || task.backup.is_some() {
                target.primary_auth =
                    auth_header(task.primary.as_ref().and_then(|p| p.credentials.as_ref()));
                target.backup_auth =
                    auth_header(task.backup.as_ref().and_then(|b| b.credentials.as_ref()));
                target.primary_limits = task
                    .primary
                    .as_ref()
                    .and_then(|p| p.limits.as_ref())
                    .map(AssignedLimits::from_proto);
                target.backup_limits = task
                    .backup
                    .as_ref()
                    .and_then(|b| b.limits.as_ref())
                    .map(AssignedLimits::from_proto);
                ignored.push(
                    "primary/backup endpoints, TLS and node discovery: upstreams come from the \
                     gateway's configuration (credentials and limits apply where it sets none)"
                        .into(),
                );
            }
            let unsupported = [
                ("indices", task.indices.is_some()),
                ("queue_policy", task.queue_policy.is_some()),
                ("replay", task.replay.is_some()),
                ("shadow_reads", task.shadow_reads.is_some()),
                ("type_rewrite", task.type_rewrite.is_some()),
            ];
            for (field, set) in unsupported {
                if set {
                    ignored.push(format!(
                        "task {field}: not applied at run time (gateway configuration rules)"
                    ));
                }
            }
        }
    }
    if !state.deletable_queue_task_ids.is_empty() {
        ignored.push("deletable_queue_task_ids: the agent never deletes queues".into());
    }
    Interpretation { target, ignored }
}

/// The gateway's state that a [`Target`] is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actual {
    /// The gateway replicates (has a backup); without it nothing applies.
    pub replication: bool,
    /// The replayer is paused.
    pub paused: bool,
    /// The roles are swapped.
    pub reversed: bool,
}

/// One step towards a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pause the replayer.
    Pause,
    /// Resume the replayer.
    Resume,
    /// Swap primary and backup (`Replication::cutover`), holding writes at
    /// most `max_hold` (the gateway's default when `None`).
    SwapRoles {
        /// Bound of the write hold.
        max_hold: Option<Duration>,
    },
}

/// The actions that take the gateway from `actual` to `target`, in order.
/// A role swap drains the queue, so a paused replayer is resumed first (and
/// paused again afterwards when the target wants it paused).
pub fn plan(target: &Target, actual: Actual) -> Vec<Action> {
    if !actual.replication {
        return Vec::new();
    }
    let want_paused = target.paused.unwrap_or(actual.paused);
    let swap = target.reversed.is_some_and(|r| r != actual.reversed);
    let mut actions = Vec::new();
    let mut paused = actual.paused;
    if swap {
        if paused {
            actions.push(Action::Resume);
            paused = false;
        }
        actions.push(Action::SwapRoles {
            max_hold: target.max_hold(),
        });
    }
    if want_paused != paused {
        actions.push(if want_paused {
            Action::Pause
        } else {
            Action::Resume
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        id: &str,
        listener: &str,
        mode: pb::TaskMode,
        dir: pb::ReplicationDirection,
    ) -> pb::TaskAssignment {
        pb::TaskAssignment {
            task_id: id.into(),
            listener: listener.into(),
            mode: mode as i32,
            direction: dir as i32,
            ..Default::default()
        }
    }

    #[test]
    fn desired_state_reduces_to_the_served_task() {
        let state = pb::DesiredState {
            version: 3,
            tasks: vec![
                task(
                    "other",
                    "search",
                    pb::TaskMode::Replay,
                    pb::ReplicationDirection::Forward,
                ),
                task(
                    "t-1",
                    "",
                    pb::TaskMode::RecordOnly,
                    pb::ReplicationDirection::Reversed,
                ),
            ],
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(
            interp.target,
            Target {
                version: 3,
                task_id: Some("t-1".into()),
                paused: Some(true),
                reversed: Some(true),
                max_hold_ms: None,
                ..Target::default()
            }
        );
        assert_eq!(interp.ignored.len(), 1, "{:?}", interp.ignored);
        assert!(interp.ignored[0].contains("other"));

        // The current task wins even on another listener.
        let interp = interpret_desired_state(&state, Some("other"));
        assert_eq!(interp.target.task_id.as_deref(), Some("other"));
        assert_eq!(interp.target.paused, Some(false));
        assert_eq!(interp.target.reversed, Some(false));
    }

    #[test]
    fn unsupported_fields_are_listed_without_secrets() {
        let mut t = task(
            "t-1",
            "default",
            pb::TaskMode::Replay,
            pb::ReplicationDirection::Forward,
        );
        t.backup = Some(pb::UpstreamAssignment {
            endpoints: vec!["http://new:9200".into()],
            credentials: Some(pb::Credentials {
                method: pb::AuthMethod::Basic as i32,
                username: "replayer".into(),
                password: "hunter2-secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        t.write_hold = Some(pb::WriteHold {
            hold_id: "h-1".into(),
            timeout: Some(prost_types::Duration {
                seconds: 7,
                nanos: 0,
            }),
            deadline: None,
        });
        t.queue_policy = Some(pb::QueuePolicy::default());
        let state = pb::DesiredState {
            version: 9,
            tasks: vec![t],
            drain: true,
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(interp.target.max_hold_ms, Some(7000));
        assert_eq!(interp.target.max_hold(), Some(Duration::from_secs(7)));
        let notes = interp.ignored.join("\n");
        assert!(notes.contains("primary/backup endpoints"), "{notes}");
        // The backup's credentials apply (and never show in Debug output).
        let auth = interp.target.backup_auth.clone().flatten().unwrap();
        assert_eq!(auth.0, "Basic cmVwbGF5ZXI6aHVudGVyMi1zZWNyZXQ=");
        assert!(!format!("{:?}", interp.target).contains("cmVwbGF5"));
        assert_eq!(
            interp.target.primary_auth, None,
            "no credentials sent for the primary"
        );
        assert!(notes.contains("queue_policy"), "{notes}");
        assert!(!notes.contains("drain"), "drain is applied: {notes}");
        assert!(notes.contains("h-1"), "{notes}");
        assert!(!notes.contains("hunter2"), "{notes}");
    }

    #[test]
    fn empty_desired_state_changes_nothing() {
        let state = pb::DesiredState {
            version: 2,
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, Some("t-1"));
        assert_eq!(
            interp.target,
            Target {
                version: 2,
                ..Target::default()
            }
        );
        let actual = Actual {
            replication: true,
            paused: true,
            reversed: true,
        };
        assert!(plan(&interp.target, actual).is_empty());
    }

    #[test]
    fn passthrough_pauses_replay() {
        let state = pb::DesiredState {
            version: 2,
            tasks: vec![task(
                "t",
                "",
                pb::TaskMode::Passthrough,
                pb::ReplicationDirection::Unspecified,
            )],
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(interp.target.paused, Some(true));
        assert_eq!(interp.target.reversed, None);
        assert!(interp.ignored[0].contains("PASSTHROUGH"));
    }

    #[test]
    fn plan_pauses_resumes_and_swaps() {
        let actual = |paused, reversed| Actual {
            replication: true,
            paused,
            reversed,
        };
        let target = |paused, reversed| Target {
            version: 1,
            task_id: None,
            paused,
            reversed,
            max_hold_ms: Some(1500),
            ..Target::default()
        };
        assert_eq!(
            plan(&target(Some(true), Some(false)), actual(false, false)),
            vec![Action::Pause]
        );
        assert_eq!(
            plan(&target(Some(false), None), actual(true, false)),
            vec![Action::Resume]
        );
        assert!(plan(&target(Some(false), Some(false)), actual(false, false)).is_empty());
        let swap = Action::SwapRoles {
            max_hold: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            plan(&target(Some(false), Some(true)), actual(false, false)),
            vec![swap]
        );
        assert_eq!(
            plan(&target(None, Some(false)), actual(false, true)),
            vec![swap]
        );
        // A swap drains the queue: a paused replayer runs for it, then
        // pauses again if the target wants it paused.
        assert_eq!(
            plan(&target(Some(true), Some(true)), actual(true, false)),
            vec![Action::Resume, swap, Action::Pause]
        );
        assert_eq!(
            plan(&target(Some(false), Some(true)), actual(true, false)),
            vec![Action::Resume, swap]
        );
        // Nothing applies to a gateway without replication.
        let proxy = Actual {
            replication: false,
            paused: false,
            reversed: false,
        };
        assert!(plan(&target(Some(true), Some(true)), proxy).is_empty());
    }
}
