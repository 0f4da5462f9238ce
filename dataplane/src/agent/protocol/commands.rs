//! Checking commands from the control plane, building their results, and
//! remembering which ones ran.

use super::*;
use tandem_proto::codes;

// ---------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------

/// A command that passed [`check_command`].
#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    /// Retry dead letters.
    Retry(pb::RetryDeadLettersCommand),
    /// Skip dead letters.
    Skip(pb::SkipDeadLettersCommand),
    /// Fetch dead letters with bodies.
    Fetch(pb::FetchDeadLettersCommand),
    /// Repair the queue.
    Repair(pb::RepairQueueCommand),
    /// Read queue records.
    Peek(pb::PeekRecordsCommand),
    /// Reconcile documents from the primary.
    Reconcile(pb::ReconcileDocumentsCommand),
}

/// Checks what can be checked before executing `command`: expiry, that the
/// gateway replicates, that it supports the command and serves its task.
/// `Err` is the `CommandResult` to answer at once.
pub fn check_command(
    command: &pb::GatewayCommand,
    now: SystemTime,
    task_id: &str,
    replication: bool,
) -> Result<CommandKind, Box<pb::CommandResult>> {
    use pb::gateway_command::Command;
    let id = command.command_id.as_str();
    let expired = command
        .expires_at
        .and_then(|expires| SystemTime::try_from(expires).ok())
        .is_some_and(|expires| expires < now);
    if expired {
        return Err(rejected(id, codes::EXPIRED, "the command expired before it ran", now).into());
    }
    if !replication {
        return Err(rejected(
            id,
            codes::REPLICATION_NOT_CONFIGURED,
            "this gateway has no backup cluster, hence no queue nor dead letters",
            now,
        )
        .into());
    }
    let (command_task, kind) = match &command.command {
        None => {
            return Err(rejected(
                id,
                codes::UNSUPPORTED_COMMAND,
                "unknown command kind (newer control plane?)",
                now,
            )
            .into());
        }
        Some(Command::PeekRecords(c)) => (&c.task_id, CommandKind::Peek(c.clone())),
        Some(Command::RetryDeadLetters(c)) => (&c.task_id, CommandKind::Retry(c.clone())),
        Some(Command::SkipDeadLetters(c)) => (&c.task_id, CommandKind::Skip(c.clone())),
        Some(Command::FetchDeadLetters(c)) => (&c.task_id, CommandKind::Fetch(c.clone())),
        Some(Command::RepairQueue(c)) => (&c.task_id, CommandKind::Repair(c.clone())),
        Some(Command::ReconcileDocuments(c)) => (&c.task_id, CommandKind::Reconcile(c.clone())),
    };
    if !command_task.is_empty() && command_task != task_id {
        return Err(rejected(
            id,
            codes::UNKNOWN_TASK,
            &format!("this gateway serves task {task_id:?}, not {command_task:?}"),
            now,
        )
        .into());
    }
    Ok(kind)
}

pub(super) fn error_info(reason: &str, message: &str, now: SystemTime) -> pb::ErrorInfo {
    pb::ErrorInfo {
        reason: reason.to_string(),
        message: message.to_string(),
        occurred_at: Some(timestamp(now)),
        metadata: HashMap::new(),
    }
}

/// A SUCCEEDED result.
pub fn succeeded(
    command_id: &str,
    detail: Option<pb::command_result::Detail>,
    now: SystemTime,
) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Succeeded as i32,
        error: None,
        completed_at: Some(timestamp(now)),
        detail,
    }
}

/// A REJECTED result (not executed).
pub fn rejected(
    command_id: &str,
    reason: &str,
    message: &str,
    now: SystemTime,
) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Rejected as i32,
        error: Some(error_info(reason, message, now)),
        completed_at: Some(timestamp(now)),
        detail: None,
    }
}

/// A FAILED result (executed, and it failed).
pub fn failed(command_id: &str, reason: &str, message: &str, now: SystemTime) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Failed as i32,
        error: Some(error_info(reason, message, now)),
        completed_at: Some(timestamp(now)),
        detail: None,
    }
}

/// The message wrapping a command result.
pub fn command_result_message(result: pb::CommandResult) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::CommandResult(result))
}

/// Splits dead-letter ids into the gateway's numeric ids and the ones that
/// cannot be its ids (answered as unknown). Duplicates are dropped.
pub fn parse_dead_letter_ids(ids: &[String]) -> (Vec<u64>, Vec<String>) {
    let mut parsed = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match id.trim().parse::<u64>() {
            Ok(n) if !parsed.contains(&n) => parsed.push(n),
            Ok(_) => {}
            Err(_) => {
                if !unknown.contains(id) {
                    unknown.push(id.clone());
                }
            }
        }
    }
    (parsed, unknown)
}

// ---------------------------------------------------------------------------
// Command de-duplication and reconnect backoff.
// ---------------------------------------------------------------------------

/// Where a command id stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandSeen {
    /// Never seen: execute it.
    New,
    /// Being executed; its result will be sent when done.
    Running,
    /// Done: send this result again.
    Done(Box<pb::CommandResult>),
}

/// Recent command ids and results, so a command delivered again (after a
/// reconnect) is executed at most once and answered with the same result.
/// Bounded: the oldest ids are forgotten first. Kept in memory only.
#[derive(Debug)]
pub struct CommandLog {
    capacity: usize,
    order: VecDeque<String>,
    entries: HashMap<String, Option<pb::CommandResult>>,
}

impl CommandLog {
    /// A log remembering `capacity` commands.
    pub fn new(capacity: usize) -> CommandLog {
        CommandLog {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            entries: HashMap::new(),
        }
    }

    /// Looks `id` up; a new id is recorded as running.
    pub fn begin(&mut self, id: &str) -> CommandSeen {
        match self.entries.get(id) {
            Some(Some(result)) => return CommandSeen::Done(Box::new(result.clone())),
            Some(None) => return CommandSeen::Running,
            None => {}
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id.to_string());
        self.entries.insert(id.to_string(), None);
        CommandSeen::New
    }

    /// Records the result of `id`.
    pub fn finish(&mut self, result: &pb::CommandResult) {
        if let Some(slot) = self.entries.get_mut(&result.command_id) {
            *slot = Some(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: &str, command: pb::gateway_command::Command) -> pb::GatewayCommand {
        pb::GatewayCommand {
            command_id: id.into(),
            issued_at: None,
            expires_at: None,
            command: Some(command),
        }
    }

    fn reason(result: &pb::CommandResult) -> &str {
        result.error.as_ref().map_or("", |e| e.reason.as_str())
    }

    #[test]
    fn commands_are_checked_before_running() {
        use pb::gateway_command::Command;
        let now = SystemTime::now();
        let skip = Command::SkipDeadLetters(pb::SkipDeadLettersCommand {
            task_id: "t-1".into(),
            dead_letter_ids: vec!["1".into()],
            comment: String::new(),
        });
        assert!(matches!(
            check_command(&command("c1", skip.clone()), now, "t-1", true),
            Ok(CommandKind::Skip(_))
        ));
        let err = check_command(&command("c2", skip.clone()), now, "t-2", true).unwrap_err();
        assert_eq!(err.command_id, "c2");
        assert_eq!(err.outcome, pb::CommandOutcome::Rejected as i32);
        assert_eq!(reason(&err), codes::UNKNOWN_TASK);
        let err = check_command(&command("c3", skip.clone()), now, "t-1", false).unwrap_err();
        assert_eq!(reason(&err), codes::REPLICATION_NOT_CONFIGURED);
        let mut expired = command("c4", skip);
        expired.expires_at = Some(timestamp(now - Duration::from_secs(1)));
        assert_eq!(
            reason(&check_command(&expired, now, "t-1", true).unwrap_err()),
            codes::EXPIRED
        );
        let peek = Command::PeekRecords(pb::PeekRecordsCommand::default());
        assert!(matches!(
            check_command(&command("c5", peek), now, "t-1", true),
            Ok(CommandKind::Peek(_))
        ));
        let mut unknown = command("c6", Command::RepairQueue(Default::default()));
        unknown.command = None;
        assert_eq!(
            reason(&check_command(&unknown, now, "t-1", true).unwrap_err()),
            codes::UNSUPPORTED_COMMAND
        );
        // An empty task id means "the gateway's task".
        let repair = Command::RepairQueue(pb::RepairQueueCommand {
            dry_run: true,
            ..Default::default()
        });
        assert!(matches!(
            check_command(&command("c7", repair), now, "t-1", true),
            Ok(CommandKind::Repair(_))
        ));
    }

    #[test]
    fn dead_letter_ids_are_parsed() {
        let ids = ["3", "x", "3", " 4 ", "x", "-1"].map(String::from);
        let (parsed, unknown) = parse_dead_letter_ids(&ids);
        assert_eq!(parsed, vec![3, 4]);
        assert_eq!(unknown, vec!["x".to_string(), "-1".to_string()]);
    }

    #[test]
    fn command_log_deduplicates_and_forgets_the_oldest() {
        let mut log = CommandLog::new(2);
        assert_eq!(log.begin("a"), CommandSeen::New);
        assert_eq!(log.begin("a"), CommandSeen::Running);
        let result = succeeded("a", None, SystemTime::now());
        log.finish(&result);
        assert_eq!(log.begin("a"), CommandSeen::Done(Box::new(result)));
        assert_eq!(log.begin("b"), CommandSeen::New);
        assert_eq!(log.begin("c"), CommandSeen::New);
        assert_eq!(log.begin("a"), CommandSeen::New, "a was forgotten");
    }
}
