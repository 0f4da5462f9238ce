//! `tandemctl task ...`: replication tasks, cutover and rollback
//! (ReplicationService).
//!
//! Tasks are named by id or by name wherever one is expected.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tandem_client::v1::replication_service_client::ReplicationServiceClient;
use tandem_client::v1::watch_task_response::Update;
use tandem_client::v1::{
    ClusterRef, CreateTaskRequest, CutoverRequest, DeleteTaskRequest, GetTaskRequest, IndexFilter,
    LabelSet, LagThresholds, ListTasksRequest, PauseTaskRequest, ReplicationTask,
    ResumeTaskRequest, RoleSwapOperation, RoleSwapPhase, RollbackRequest, StartTaskRequest,
    StopTaskRequest, StringList, TaskState, UpdateTaskRequest, WatchTaskRequest,
};
use tandem_client::{AuthenticatedChannel, prost_types};

use super::cluster::{cluster_ref, rpc_error};
use super::output::{self, Output, enum_name, print_json, print_rows, print_table, span, time};

type Client = ReplicationServiceClient<AuthenticatedChannel>;

/// Replication task commands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task: gateways record writes to the primary and replay them
    /// to the backup (unless --start-paused).
    Create(CreateArgs),
    /// Show one task with its per-gateway status.
    Get {
        /// Task id or name.
        task: String,
    },
    /// List tasks, newest first.
    List(ListArgs),
    /// Change a task's name, description, labels, gateways or lag
    /// thresholds (only the flags given change).
    Update(UpdateArgs),
    /// Start replaying a task created with --start-paused.
    Start {
        /// Task id or name.
        task: String,
    },
    /// Pause replay (recording continues).
    Pause {
        /// Task id or name.
        task: String,
    },
    /// Resume replay of a paused (or failed) task.
    Resume {
        /// Task id or name.
        task: String,
    },
    /// Stop replication; gateways keep proxying to the current primary.
    Stop {
        /// Task id or name.
        task: String,
        /// Stop although records are not replayed yet (they are lost for
        /// the backup).
        #[arg(long)]
        discard_unreplayed: bool,
    },
    /// Delete a created, stopped or failed task.
    Delete {
        /// Task id or name.
        task: String,
    },
    /// Swap roles: the backup (new cluster) becomes the primary.
    Cutover(SwapArgs),
    /// Swap roles back (or abort a cutover in progress).
    Rollback(SwapArgs),
    /// Follow a task: snapshots, events and lag samples until interrupted.
    Watch {
        /// Task id or name.
        task: String,
        /// Seconds between lag samples (0: server default, 5 s).
        #[arg(long, default_value_t = 0)]
        lag_interval_secs: u64,
        /// Do not print lag samples.
        #[arg(long)]
        no_lag: bool,
    },
}

/// `task create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Unique name: lowercase letters, digits and '-'.
    name: String,
    /// Cluster applications use today (id or name).
    #[arg(long)]
    primary: String,
    /// Cluster to migrate to (id or name).
    #[arg(long)]
    backup: String,
    /// Gateway id serving the task (repeatable; at least one).
    #[arg(long = "gateway", required = true)]
    gateways: Vec<String>,
    /// Gateway listener; empty means the default listener.
    #[arg(long, default_value = "")]
    listener: String,
    /// Free-text description.
    #[arg(long, default_value = "")]
    description: String,
    /// Label key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Index pattern to replicate (repeatable; none means every index).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Index pattern to exclude (repeatable).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
    /// Record but do not replay until `task start` (run the full migration
    /// first).
    #[arg(long)]
    start_paused: bool,
    /// Default maximum unreplayed records for a cutover (0: not checked).
    #[arg(long, default_value_t = 0)]
    cutover_max_records: u64,
    /// Idempotency key.
    #[arg(long, default_value = "")]
    request_id: String,
}

/// `task update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Task id or name.
    task: String,
    /// New unique name.
    #[arg(long)]
    name: Option<String>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// Replace all labels with these, key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    clear_labels: bool,
    /// Replace the task's gateways with these ids (repeatable). A gateway
    /// leaves only once drained with its queue for the task replayed.
    #[arg(long = "gateway", conflicts_with_all = ["add_gateways", "remove_gateways"])]
    gateways: Vec<String>,
    /// Add this gateway id to the task's gateways (repeatable).
    #[arg(long = "add-gateway")]
    add_gateways: Vec<String>,
    /// Remove this gateway id from the task's gateways (repeatable).
    #[arg(long = "remove-gateway")]
    remove_gateways: Vec<String>,
    /// Lag (seconds, worst gateway) above which the task turns degraded
    /// (0: default, 60 s).
    #[arg(long)]
    warning_lag_secs: Option<u64>,
    /// Unreplayed records above which the task turns degraded (0: none).
    #[arg(long)]
    warning_records: Option<u64>,
    /// Default maximum lag (seconds) to start a cutover or rollback (0:
    /// default, 5 s).
    #[arg(long)]
    cutover_max_lag_secs: Option<u64>,
    /// Default maximum unreplayed records to start a cutover or rollback
    /// (0: not checked).
    #[arg(long)]
    cutover_max_records: Option<u64>,
}

/// `task list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks in this state (repeatable).
    #[arg(long = "state", value_enum)]
    states: Vec<StateArg>,
    /// Only tasks using this cluster id.
    #[arg(long)]
    cluster: Option<String>,
    /// Only tasks served by this gateway id.
    #[arg(long)]
    gateway: Option<String>,
    /// Page size (0: server default). Without --page-token every page is
    /// fetched.
    #[arg(long, default_value_t = 0)]
    page_size: i32,
    /// Fetch only the page of this token.
    #[arg(long)]
    page_token: Option<String>,
}

/// `task cutover` / `task rollback`.
#[derive(Debug, Args)]
pub struct SwapArgs {
    /// Task id or name.
    task: String,
    /// Maximum lag (seconds, worst gateway) to start.
    #[arg(long)]
    max_lag_secs: Option<u64>,
    /// Maximum unreplayed records (summed over gateways) to start.
    #[arg(long)]
    max_lag_records: Option<u64>,
    /// Maximum time writes may be held, in seconds (default 10, at most 60).
    #[arg(long)]
    hold_timeout_secs: Option<u64>,
    /// Proceed although dead letters are unresolved.
    #[arg(long)]
    allow_dead_letters: bool,
    /// Only check the preconditions.
    #[arg(long)]
    dry_run: bool,
    /// Follow the operation until it finishes.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120, requires = "wait")]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Created,
    Running,
    Paused,
    CuttingOver,
    RollingBack,
    Stopped,
    Failed,
}

impl StateArg {
    fn proto(self) -> TaskState {
        match self {
            StateArg::Created => TaskState::Created,
            StateArg::Running => TaskState::Running,
            StateArg::Paused => TaskState::Paused,
            StateArg::CuttingOver => TaskState::CuttingOver,
            StateArg::RollingBack => TaskState::RollingBack,
            StateArg::Stopped => TaskState::Stopped,
            StateArg::Failed => TaskState::Failed,
        }
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

fn secs(seconds: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: seconds.try_into().unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// The UpdateTaskRequest for `args` on `current`: gateway additions and
/// removals and single lag thresholds are merged with the current values,
/// since the request replaces whole lists and threshold sets.
fn update_request(
    args: UpdateArgs,
    current: &ReplicationTask,
) -> anyhow::Result<UpdateTaskRequest> {
    let labels = if args.clear_labels {
        Some(LabelSet::default())
    } else if !args.labels.is_empty() {
        Some(LabelSet {
            labels: args.labels.into_iter().collect(),
        })
    } else {
        None
    };
    let gateway_ids = if !args.gateways.is_empty() {
        Some(args.gateways)
    } else if !args.add_gateways.is_empty() || !args.remove_gateways.is_empty() {
        for id in &args.remove_gateways {
            if !current.gateway_ids.contains(id) {
                bail!(
                    "--remove-gateway {id}: not a gateway of task {}",
                    current.name
                );
            }
        }
        let mut ids: Vec<String> = current
            .gateway_ids
            .iter()
            .filter(|id| !args.remove_gateways.contains(id))
            .cloned()
            .collect();
        for id in args.add_gateways {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Some(ids)
    } else {
        None
    };
    let lag_thresholds = if args.warning_lag_secs.is_some()
        || args.warning_records.is_some()
        || args.cutover_max_lag_secs.is_some()
        || args.cutover_max_records.is_some()
    {
        let mut thresholds = current.lag_thresholds.unwrap_or_default();
        if let Some(s) = args.warning_lag_secs {
            thresholds.warning_lag = Some(secs(s));
        }
        if let Some(n) = args.warning_records {
            thresholds.warning_records = n;
        }
        if let Some(s) = args.cutover_max_lag_secs {
            thresholds.cutover_max_lag = Some(secs(s));
        }
        if let Some(n) = args.cutover_max_records {
            thresholds.cutover_max_records = n;
        }
        Some(thresholds)
    } else {
        None
    };
    let request = UpdateTaskRequest {
        task_id: current.id.clone(),
        name: args.name,
        description: args.description,
        labels,
        gateway_ids: gateway_ids.map(|values| StringList { values }),
        lag_thresholds,
        ..Default::default()
    };
    if request
        == (UpdateTaskRequest {
            task_id: current.id.clone(),
            ..Default::default()
        })
    {
        bail!("nothing to change: give at least one of the update flags (see --help)");
    }
    Ok(request)
}

/// Runs a task command.
pub async fn run(mut client: Client, command: TaskCommand, output: Output) -> anyhow::Result<()> {
    match command {
        TaskCommand::Create(args) => {
            let task = client
                .create_task(CreateTaskRequest {
                    request_id: args.request_id,
                    name: args.name,
                    description: args.description,
                    labels: args.labels.into_iter().collect(),
                    primary: Some(cluster_ref(&args.primary)),
                    backup: Some(cluster_ref(&args.backup)),
                    gateway_ids: args.gateways,
                    listener: args.listener,
                    indices: (!args.include.is_empty() || !args.exclude.is_empty()).then_some(
                        IndexFilter {
                            include: args.include,
                            exclude: args.exclude,
                            include_hidden: false,
                        },
                    ),
                    start_paused: args.start_paused,
                    lag_thresholds: (args.cutover_max_records > 0).then(|| LagThresholds {
                        cutover_max_records: args.cutover_max_records,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("CreateTask", s))?
                .into_inner()
                .task
                .context("CreateTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Update(args) => {
            let current = find(&mut client, &args.task).await?;
            let request = update_request(args, &current)?;
            let task = client
                .update_task(request)
                .await
                .map_err(|s| rpc_error("UpdateTask", s))?
                .into_inner()
                .task
                .context("UpdateTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Get { task } => {
            let task = find(&mut client, &task).await?;
            print_task(&task, output);
        }
        TaskCommand::List(args) => {
            let one_page = args.page_token.is_some();
            let mut request = ListTasksRequest {
                page_size: args.page_size,
                page_token: args.page_token.unwrap_or_default(),
                states: args.states.iter().map(|s| s.proto() as i32).collect(),
                cluster_id: args.cluster.unwrap_or_default(),
                gateway_id: args.gateway.unwrap_or_default(),
                ..Default::default()
            };
            let mut tasks = Vec::new();
            loop {
                let page = client
                    .list_tasks(request.clone())
                    .await
                    .map_err(|s| rpc_error("ListTasks", s))?
                    .into_inner();
                tasks.extend(page.tasks);
                if page.next_page_token.is_empty() {
                    break;
                }
                if one_page {
                    output::next_page(&page.next_page_token);
                    break;
                }
                request.page_token = page.next_page_token;
            }
            print_tasks(&tasks, output);
        }
        TaskCommand::Start { task } => {
            let task_id = find(&mut client, &task).await?.id;
            let task = client
                .start_task(StartTaskRequest { task_id })
                .await
                .map_err(|s| rpc_error("StartTask", s))?
                .into_inner()
                .task
                .context("StartTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Pause { task } => {
            let task_id = find(&mut client, &task).await?.id;
            let task = client
                .pause_task(PauseTaskRequest { task_id })
                .await
                .map_err(|s| rpc_error("PauseTask", s))?
                .into_inner()
                .task
                .context("PauseTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Resume { task } => {
            let task_id = find(&mut client, &task).await?.id;
            let task = client
                .resume_task(ResumeTaskRequest { task_id })
                .await
                .map_err(|s| rpc_error("ResumeTask", s))?
                .into_inner()
                .task
                .context("ResumeTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Stop {
            task,
            discard_unreplayed,
        } => {
            let task_id = find(&mut client, &task).await?.id;
            let task = client
                .stop_task(StopTaskRequest {
                    task_id,
                    discard_unreplayed,
                })
                .await
                .map_err(|s| rpc_error("StopTask", s))?
                .into_inner()
                .task
                .context("StopTask returned no task")?;
            print_task(&task, output);
        }
        TaskCommand::Delete { task } => {
            let task_id = find(&mut client, &task).await?.id;
            client
                .delete_task(DeleteTaskRequest {
                    task_id: task_id.clone(),
                })
                .await
                .map_err(|s| rpc_error("DeleteTask", s))?;
            match output {
                Output::Json => print_json(&json!({ "deleted": task_id })),
                Output::Table => println!("deleted task {task_id}"),
            }
        }
        TaskCommand::Cutover(args) => swap(&mut client, args, true, output).await?,
        TaskCommand::Rollback(args) => swap(&mut client, args, false, output).await?,
        TaskCommand::Watch {
            task,
            lag_interval_secs,
            no_lag,
        } => {
            let task_id = find(&mut client, &task).await?.id;
            let mut updates = client
                .watch_task(WatchTaskRequest {
                    task_id,
                    lag_sample_interval: (lag_interval_secs > 0).then(|| secs(lag_interval_secs)),
                    exclude_lag_samples: no_lag,
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("WatchTask", s))?
                .into_inner();
            while let Some(message) = updates
                .message()
                .await
                .map_err(|s| rpc_error("WatchTask", s))?
            {
                match (message.update, output) {
                    (Some(Update::Task(task)), Output::Json) => {
                        println!("{}", json!({ "task": task_json(&task) }));
                    }
                    (Some(Update::Task(task)), Output::Table) => println!("{}", summary(&task)),
                    (Some(Update::Event(event)), Output::Json) => println!(
                        "{}",
                        json!({ "event": { "reason": event.reason, "message": event.message, "occurred_at": time(event.occurred_at.as_ref()) } })
                    ),
                    (Some(Update::Event(event)), Output::Table) => println!(
                        "{}  event {}: {}",
                        time(event.occurred_at.as_ref()),
                        event.reason,
                        event.message
                    ),
                    (Some(Update::LagSample(sample)), Output::Json) => println!(
                        "{}",
                        json!({ "lag_sample": { "lag_records": sample.lag_records, "sampled_at": time(sample.sampled_at.as_ref()) } })
                    ),
                    (Some(Update::LagSample(sample)), Output::Table) => println!(
                        "{}  lag {} records, oldest {}",
                        time(sample.sampled_at.as_ref()),
                        sample.lag_records,
                        span(sample.lag.as_ref())
                    ),
                    (None, _) => {}
                }
            }
        }
    }
    Ok(())
}

async fn swap(
    client: &mut Client,
    args: SwapArgs,
    cutover: bool,
    output: Output,
) -> anyhow::Result<()> {
    let task_id = find(client, &args.task).await?.id;
    let max_lag = args.max_lag_secs.map(secs);
    let hold_timeout = args.hold_timeout_secs.map(secs);
    let (task, operation) = if cutover {
        let response = client
            .cutover(CutoverRequest {
                task_id: task_id.clone(),
                max_lag,
                max_lag_records: args.max_lag_records,
                hold_timeout,
                allow_dead_letters: args.allow_dead_letters,
                dry_run: args.dry_run,
                ..Default::default()
            })
            .await
            .map_err(|s| rpc_error("Cutover", s))?
            .into_inner();
        (response.task, response.operation)
    } else {
        let response = client
            .rollback(RollbackRequest {
                task_id: task_id.clone(),
                max_lag,
                max_lag_records: args.max_lag_records,
                hold_timeout,
                allow_dead_letters: args.allow_dead_letters,
                dry_run: args.dry_run,
            })
            .await
            .map_err(|s| rpc_error("Rollback", s))?
            .into_inner();
        (response.task, response.operation)
    };
    let operation = operation.context("no operation returned")?;
    if args.dry_run || !args.wait {
        print_operation(&operation, output);
        if let (Some(task), false) = (task, args.dry_run) {
            eprintln!("{}", summary(&task));
        }
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let task = client
            .get_task(GetTaskRequest {
                task_id: task_id.clone(),
            })
            .await
            .map_err(|s| rpc_error("GetTask", s))?
            .into_inner()
            .task
            .context("GetTask returned no task")?;
        eprintln!("{}", summary(&task));
        if let Some(last) = task
            .last_operation
            .as_ref()
            .filter(|o| o.id == operation.id)
        {
            print_operation(last, output);
            if last.phase() == RoleSwapPhase::Failed {
                bail!("the operation failed");
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the operation did not finish within {}s", args.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The task `task` names: an id, or a name.
async fn find(client: &mut Client, task: &str) -> anyhow::Result<ReplicationTask> {
    match client
        .get_task(GetTaskRequest {
            task_id: task.to_string(),
        })
        .await
    {
        Ok(response) => {
            return response
                .into_inner()
                .task
                .context("GetTask returned no task");
        }
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) => {}
        Err(status) => return Err(rpc_error("GetTask", status)),
    }
    let mut request = ListTasksRequest::default();
    loop {
        let page = client
            .list_tasks(request.clone())
            .await
            .map_err(|s| rpc_error("ListTasks", s))?
            .into_inner();
        if let Some(found) = page.tasks.into_iter().find(|t| t.name == task) {
            return Ok(found);
        }
        if page.next_page_token.is_empty() {
            bail!("no task with id or name {task:?}");
        }
        request.page_token = page.next_page_token;
    }
}

fn lag_records(task: &ReplicationTask) -> u64 {
    task.queue_stats.as_ref().map_or(0, |q| q.lag_records)
}

fn summary(task: &ReplicationTask) -> String {
    format!(
        "{}  {} {} {} lag={} records, gateways in sync {}/{}",
        time(task.updated_at.as_ref()),
        task.name,
        enum_name(task.state().as_str_name()),
        enum_name(task.direction().as_str_name()),
        lag_records(task),
        task.gateways.iter().filter(|g| g.in_sync).count(),
        task.gateways.len()
    )
}

fn operation_json(op: &RoleSwapOperation) -> Value {
    json!({
        "id": op.id,
        "kind": enum_name(op.kind().as_str_name()),
        "phase": enum_name(op.phase().as_str_name()),
        "gateways_total": op.gateways_total,
        "gateways_ready": op.gateways_ready,
        "started_at": time(op.started_at.as_ref()),
        "finished_at": time(op.finished_at.as_ref()),
        "error": op.error.as_ref().map(|e| json!({ "reason": e.reason, "message": e.message })),
    })
}

fn print_operation(op: &RoleSwapOperation, output: Output) {
    match output {
        Output::Json => print_json(&operation_json(op)),
        Output::Table => print_rows(&[
            ("operation", op.id.clone()),
            ("kind", enum_name(op.kind().as_str_name())),
            ("phase", enum_name(op.phase().as_str_name())),
            (
                "gateways ready",
                format!("{}/{}", op.gateways_ready, op.gateways_total),
            ),
            (
                "error",
                op.error
                    .as_ref()
                    .map_or("-".into(), |e| format!("{}: {}", e.reason, e.message)),
            ),
        ]),
    }
}

fn cluster_name(c: Option<&ClusterRef>) -> String {
    c.map_or("-".into(), |c| {
        if c.cluster_name.is_empty() {
            c.cluster_id.clone()
        } else {
            c.cluster_name.clone()
        }
    })
}

fn task_json(task: &ReplicationTask) -> Value {
    json!({
        "id": task.id,
        "name": task.name,
        "state": enum_name(task.state().as_str_name()),
        "direction": enum_name(task.direction().as_str_name()),
        "primary": cluster_name(task.primary.as_ref()),
        "backup": cluster_name(task.backup.as_ref()),
        "health": enum_name(task.health().as_str_name()),
        "lag_records": lag_records(task),
        "gateways": task.gateways.iter().map(|g| json!({
            "gateway_id": g.gateway_id,
            "connected": g.connected,
            "in_sync": g.in_sync,
            "mode": enum_name(g.mode().as_str_name()),
            "direction": enum_name(g.direction().as_str_name()),
            "lag_records": g.lag_records,
        })).collect::<Vec<_>>(),
        "problems": task.problems.iter().map(|p| json!({ "reason": p.reason, "message": p.message })).collect::<Vec<_>>(),
        "current_operation": task.current_operation.as_ref().map(operation_json),
        "last_operation": task.last_operation.as_ref().map(operation_json),
        "created_at": time(task.created_at.as_ref()),
        "updated_at": time(task.updated_at.as_ref()),
    })
}

fn print_task(task: &ReplicationTask, output: Output) {
    match output {
        Output::Json => print_json(&task_json(task)),
        Output::Table => {
            print_rows(&[
                ("id", task.id.clone()),
                ("name", task.name.clone()),
                ("state", enum_name(task.state().as_str_name())),
                ("direction", enum_name(task.direction().as_str_name())),
                ("primary", cluster_name(task.primary.as_ref())),
                ("backup", cluster_name(task.backup.as_ref())),
                ("health", enum_name(task.health().as_str_name())),
                ("lag", format!("{} records", lag_records(task))),
                ("labels", output::pairs(task.labels.iter())),
                ("created", time(task.created_at.as_ref())),
                ("updated", time(task.updated_at.as_ref())),
            ]);
            for p in &task.problems {
                println!("problem  {}: {}", p.reason, p.message);
            }
            if let Some(op) = &task.current_operation {
                println!();
                print_operation(op, output);
            }
            println!();
            let rows: Vec<Vec<String>> = task
                .gateways
                .iter()
                .map(|g| {
                    vec![
                        g.gateway_id.clone(),
                        g.connected.to_string(),
                        g.in_sync.to_string(),
                        enum_name(g.mode().as_str_name()),
                        enum_name(g.direction().as_str_name()),
                        g.lag_records.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "GATEWAY",
                    "CONNECTED",
                    "IN SYNC",
                    "MODE",
                    "DIRECTION",
                    "LAG",
                ],
                &rows,
            );
        }
    }
}

fn print_tasks(tasks: &[ReplicationTask], output: Output) {
    match output {
        Output::Json => print_json(&Value::Array(tasks.iter().map(task_json).collect())),
        Output::Table => {
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.id.clone(),
                        enum_name(t.state().as_str_name()),
                        enum_name(t.direction().as_str_name()),
                        cluster_name(t.primary.as_ref()),
                        cluster_name(t.backup.as_ref()),
                        lag_records(t).to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "ID",
                    "STATE",
                    "DIRECTION",
                    "PRIMARY",
                    "BACKUP",
                    "LAG",
                ],
                &rows,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_client::v1::ReplicationDirection;

    #[test]
    fn clusters_are_referenced_by_id_or_name() {
        let by_id = cluster_ref("0b7c1f5e-8a9d-4c2e-9f3a-123456789abc");
        assert_eq!(by_id.cluster_id.len(), 36);
        assert!(by_id.cluster_name.is_empty());
        let by_name = cluster_ref("es-old");
        assert_eq!(by_name.cluster_name, "es-old");
    }

    fn update_args(flags: &[&str]) -> UpdateArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: UpdateArgs,
        }
        let argv = ["task-update", "t"].iter().chain(flags);
        Cli::try_parse_from(argv).unwrap().args
    }

    fn current() -> ReplicationTask {
        ReplicationTask {
            id: "0b7c1f5e-8a9d-4c2e-9f3a-123456789abc".into(),
            name: "t".into(),
            gateway_ids: vec!["gw-a".into(), "gw-b".into()],
            lag_thresholds: Some(LagThresholds {
                warning_records: 100,
                cutover_max_records: 10,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn updates_send_only_the_flags_given() {
        let request = update_request(
            update_args(&["--name", "u", "--label", "team=search"]),
            &current(),
        )
        .unwrap();
        assert_eq!(request.task_id, current().id);
        assert_eq!(request.name.as_deref(), Some("u"));
        assert_eq!(request.labels.unwrap().labels["team"], "search");
        assert!(request.description.is_none());
        assert!(request.gateway_ids.is_none() && request.lag_thresholds.is_none());
        let cleared = update_request(update_args(&["--clear-labels"]), &current()).unwrap();
        assert_eq!(cleared.labels, Some(LabelSet::default()));
        let err = update_request(update_args(&[]), &current()).unwrap_err();
        assert!(err.to_string().contains("nothing to change"), "{err}");
    }

    #[test]
    fn gateway_and_threshold_flags_merge_with_the_current_task() {
        let request = update_request(
            update_args(&[
                "--add-gateway",
                "gw-c",
                "--remove-gateway",
                "gw-a",
                "--warning-records",
                "7",
            ]),
            &current(),
        )
        .unwrap();
        assert_eq!(request.gateway_ids.unwrap().values, ["gw-b", "gw-c"]);
        let thresholds = request.lag_thresholds.unwrap();
        assert_eq!(thresholds.warning_records, 7);
        assert_eq!(thresholds.cutover_max_records, 10);
        let replaced = update_request(update_args(&["--gateway", "gw-z"]), &current()).unwrap();
        assert_eq!(replaced.gateway_ids.unwrap().values, ["gw-z"]);
        let err =
            update_request(update_args(&["--remove-gateway", "gw-x"]), &current()).unwrap_err();
        assert!(err.to_string().contains("gw-x"), "{err}");
    }

    #[test]
    fn summaries_name_state_and_direction() {
        let task = ReplicationTask {
            name: "t".into(),
            state: TaskState::Running as i32,
            direction: ReplicationDirection::Reversed as i32,
            ..Default::default()
        };
        let text = summary(&task);
        assert!(text.contains("t RUNNING REVERSED"), "{text}");
    }
}
