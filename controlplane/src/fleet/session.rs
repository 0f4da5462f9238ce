//! The control plane's side of one `GatewayService.AgentStream` (see the
//! [`crate::fleet`] module documentation for the protocol).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tandem_proto::v1 as pb;
use tandem_proto::v1::agent_stream_request::Payload as Inbound;
use tandem_proto::v1::agent_stream_response::Payload as Outbound;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::{AgentLink, Fleet, HELLO_TIMEOUT, OUTBOUND_CAPACITY, commands, load_desired_state};
use crate::secrets::SecretBox;
use tandem_proto::time::{duration, timestamp};

use crate::services::store_status;
use crate::store::dead_letters;
use crate::store::gateways::{self as store, Registration, Reports};
use crate::validate::{self, invalid};

/// Longest a closing session waits for its last report write.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the session of a new agent stream: reads and checks the hello,
/// registers the gateway, queues the welcome and the desired state, and
/// runs the rest of the stream in a task of its own. Errors are the RPC's
/// status (the stream never opened).
pub(crate) async fn open(
    fleet: Fleet,
    pool: PgPool,
    mut inbound: Streaming<pb::AgentStreamRequest>,
) -> Result<BoxStream<pb::AgentStreamResponse>, Status> {
    let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Err(_) => {
            return Err(Status::deadline_exceeded(format!(
                "hello: no AgentHello within {}s of opening the stream",
                HELLO_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(status)) => return Err(status),
        Ok(Ok(None)) => {
            return Err(invalid(
                "hello",
                "the stream ended before its first message; send AgentHello first",
            ));
        }
        Ok(Ok(Some(message))) => message,
    };
    let hello = match first.payload {
        Some(Inbound::Hello(hello)) => hello,
        other => {
            return Err(invalid(
                "hello",
                format!(
                    "the first message of an agent stream must be AgentHello, got {}",
                    payload_kind(other.as_ref())
                ),
            ));
        }
    };
    check_hello(&hello)?;

    let settings = fleet.settings();
    let name = default_name(&hello);
    let connection_id = Uuid::new_v4();
    let record = store::register(
        &pool,
        &Registration {
            hello: &hello,
            name: &name,
            connection_id,
            instance_id: fleet.instance_id(),
            heartbeat_interval: settings.heartbeat_interval,
            stats_interval: settings.stats_interval,
        },
    )
    .await
    .map_err(|e| store_status(e, &format!("registering gateway {}", hello.gateway_id)))?;

    let desired = load_desired_state(&pool, fleet.secrets(), &record)
        .await
        .map_err(|e| {
            store_status(
                e,
                &format!("reading the desired state of gateway {}", record.id),
            )
        })?;
    let (outbound, responses) = mpsc::channel(OUTBOUND_CAPACITY);
    let welcome = pb::AgentWelcome {
        gateway_id: record.id.clone(),
        heartbeat_interval: Some(duration(settings.heartbeat_interval)),
        stats_interval: Some(duration(settings.stats_interval)),
        server_time: Some(timestamp(chrono::Utc::now())),
        control_plane_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    for payload in [Outbound::Welcome(welcome), Outbound::DesiredState(desired)] {
        // The channel is new and larger than two: this cannot fail.
        let _ = outbound.try_send(Ok(pb::AgentStreamResponse {
            payload: Some(payload),
        }));
    }
    let (link, closed, replaced) =
        fleet.attach(&record.id, connection_id, outbound, record.desired_version);
    tracing::info!(
        gateway_id = %record.id,
        name = %record.name,
        advertised_address = %record.advertised_address,
        version = %record.version,
        applied_version = record.applied_version,
        desired_version = record.desired_version,
        replaced,
        "gateway connected"
    );

    let session = Session {
        writer: Writer::spawn(
            pool.clone(),
            fleet.secrets().clone(),
            link.clone(),
            record.id.clone(),
            connection_id,
        ),
        gateway_id: record.id,
        connection_id,
        fleet,
        pool,
        link,
        events_acknowledgeable: true,
    };
    // Commands stored while the gateway was away, or sent on its previous
    // stream and never answered.
    let (pool, fleet, gateway_id) = (
        session.pool.clone(),
        session.fleet.clone(),
        session.gateway_id.clone(),
    );
    tokio::spawn(async move { commands::dispatch(&pool, &fleet, &gateway_id).await });
    tokio::spawn(session.run(inbound, closed));
    Ok(Box::pin(ReceiverStream::new(responses)))
}

/// The name stored for a gateway: its configured one, else its host name,
/// else its id.
fn default_name(hello: &pb::AgentHello) -> String {
    [&hello.name, &hello.hostname, &hello.gateway_id]
        .into_iter()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Checks an `AgentHello`; errors name the field (`hello.gateway_id`).
fn check_hello(hello: &pb::AgentHello) -> Result<(), Status> {
    validate::gateway_id("hello.gateway_id", &hello.gateway_id)?;
    validate::max_chars("hello.name", &hello.name, 253)?;
    validate::labels("hello.labels", &hello.labels)?;
    for (field, value, max) in [
        ("hello.advertised_address", &hello.advertised_address, 255),
        ("hello.admin_address", &hello.admin_address, 255),
        ("hello.hostname", &hello.hostname, 253),
        ("hello.version", &hello.version, 128),
        ("hello.build", &hello.build, 128),
    ] {
        validate::max_chars(field, value, max)?;
    }
    if hello.capabilities.len() > 256 {
        return Err(invalid("hello.capabilities", "at most 256 entries"));
    }
    for (i, capability) in hello.capabilities.iter().enumerate() {
        validate::max_chars(&validate::index("hello.capabilities", i), capability, 64)?;
    }
    if hello.listeners.len() > 64 {
        return Err(invalid("hello.listeners", "at most 64 listeners"));
    }
    for (i, listener) in hello.listeners.iter().enumerate() {
        let path = validate::index("hello.listeners", i);
        validate::max_chars(&validate::field(&path, "name"), &listener.name, 63)?;
        validate::max_chars(&validate::field(&path, "address"), &listener.address, 255)?;
    }
    if hello.local_task_ids.len() > 10_000 {
        return Err(invalid("hello.local_task_ids", "at most 10000 entries"));
    }
    for (i, task) in hello.local_task_ids.iter().enumerate() {
        validate::max_chars(&validate::index("hello.local_task_ids", i), task, 128)?;
    }
    Ok(())
}

/// The name of a message kind, for errors and logs.
fn payload_kind(payload: Option<&Inbound>) -> &'static str {
    match payload {
        None => "an empty or unknown message",
        Some(Inbound::Hello(_)) => "hello",
        Some(Inbound::Heartbeat(_)) => "heartbeat",
        Some(Inbound::QueueStats(_)) => "queue_stats",
        Some(Inbound::Events(_)) => "events",
        Some(Inbound::DeadLetters(_)) => "dead_letters",
        Some(Inbound::CommandResult(_)) => "command_result",
    }
}

/// How a session ended.
enum End {
    /// The agent closed its side.
    AgentClosed,
    /// The inbound stream failed (connection lost, reset).
    Failed(Status),
    /// The control plane closes the stream with this status.
    Closed(Status),
}

struct Session {
    gateway_id: String,
    connection_id: Uuid,
    fleet: Fleet,
    pool: PgPool,
    link: Arc<AgentLink>,
    writer: Writer,
    /// False once storing an event batch failed: acknowledging a later batch
    /// would claim the failed one stored too. The agent sends the events
    /// again after a reconnect.
    events_acknowledgeable: bool,
}

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::AgentStreamRequest>,
        mut closed: oneshot::Receiver<Status>,
    ) {
        let silence = self.fleet.settings().heartbeat_interval * 3;
        let fleet = self.fleet.clone();
        let end = loop {
            tokio::select! {
                status = &mut closed => {
                    break End::Closed(status.unwrap_or_else(|_| Status::aborted("agent stream closed")));
                }
                _ = fleet.shutting_down() => {
                    break End::Closed(Status::unavailable(
                        "the control plane is shutting down; reconnect (to another replica if there is one)",
                    ));
                }
                message = tokio::time::timeout(silence, inbound.message()) => match message {
                    Err(_) => break End::Closed(Status::deadline_exceeded(format!(
                        "no message from the gateway for {} ms (three heartbeat intervals); reconnect",
                        silence.as_millis()
                    ))),
                    Ok(Ok(None)) => break End::AgentClosed,
                    Ok(Err(status)) => break End::Failed(status),
                    Ok(Ok(Some(message))) => self.handle(message).await,
                },
            }
        };
        self.close(end).await;
    }

    async fn handle(&mut self, message: pb::AgentStreamRequest) {
        match message.payload {
            Some(Inbound::Heartbeat(heartbeat)) => self.writer.update(|r| {
                r.heartbeat = Some(heartbeat);
            }),
            Some(Inbound::QueueStats(report)) => self.writer.update(|r| {
                r.queue_stats = Some(report);
            }),
            Some(Inbound::Events(batch)) => {
                self.writer.update(|_| {});
                self.store_events(batch.events).await;
            }
            Some(Inbound::CommandResult(result)) => {
                self.writer.update(|_| {});
                commands::on_result(&self.pool, &self.fleet, &self.gateway_id, result).await;
            }
            Some(Inbound::DeadLetters(report)) => {
                self.writer.update(|_| {});
                match dead_letters::record_report(
                    &self.pool,
                    &self.gateway_id,
                    &report.dead_letters,
                )
                .await
                {
                    Ok(0) => {}
                    Ok(malformed) => tracing::warn!(
                        gateway_id = %self.gateway_id,
                        malformed,
                        "dead letters with a malformed id ignored"
                    ),
                    // The gateway reports them again with their next change;
                    // until then ListDeadLetters misses them.
                    Err(err) => tracing::warn!(
                        gateway_id = %self.gateway_id,
                        error = %err,
                        "cannot store a dead-letter report"
                    ),
                }
            }
            Some(Inbound::Hello(_)) => {
                self.writer.update(|_| {});
                tracing::warn!(
                    gateway_id = %self.gateway_id,
                    "second AgentHello on one stream ignored; open a new stream to register again"
                );
            }
            // A kind of message newer than this control plane.
            None => self.writer.update(|_| {}),
        }
    }

    async fn store_events(&mut self, events: Vec<pb::Event>) {
        let Some(last) = events.iter().map(|e| e.sequence).max() else {
            return;
        };
        if !self.events_acknowledgeable {
            return;
        }
        if let Err(err) = store::insert_events(&self.pool, &self.gateway_id, &events).await {
            tracing::warn!(
                gateway_id = %self.gateway_id,
                error = %err,
                "cannot store gateway events; they stay in the gateway's outbox until it reconnects"
            );
            self.events_acknowledgeable = false;
            return;
        }
        let _ = self
            .link
            .send(Outbound::EventAck(pb::EventAck { sequence: last }))
            .await;
    }

    /// Ends the session: last report write, unregistration, DISCONNECTED
    /// (if this stream still owns the gateway), then the stream's end.
    async fn close(self, end: End) {
        self.writer.finish().await;
        self.fleet.detach(&self.gateway_id, self.connection_id);
        let owner = match store::mark_disconnected(&self.pool, &self.gateway_id, self.connection_id)
            .await
        {
            Ok(owner) => owner,
            Err(err) => {
                // The liveness sweep marks it once the database is back.
                tracing::warn!(
                    gateway_id = %self.gateway_id,
                    error = %err,
                    "cannot mark the gateway disconnected"
                );
                false
            }
        };
        let (reason, status) = match end {
            End::AgentClosed => ("closed by the gateway".to_string(), None),
            End::Failed(status) => (format!("stream failed: {}", status.message()), None),
            End::Closed(status) => (status.message().to_string(), Some(status)),
        };
        if owner {
            tracing::info!(gateway_id = %self.gateway_id, reason = %reason, "gateway disconnected");
        } else {
            tracing::info!(
                gateway_id = %self.gateway_id,
                reason = %reason,
                "agent stream ended; the gateway is held by a newer stream"
            );
        }
        self.link.end_stream(status).await;
    }
}

/// Writes a stream's reports to the database, latest values only (see the
/// module documentation of [`crate::fleet`]).
struct Writer {
    shared: Arc<WriterShared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct WriterShared {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    /// Something arrived since the last write (a message without a report
    /// still refreshes `last_seen_at`).
    dirty: bool,
    reports: Reports,
    /// The session ends: write what is pending, then stop.
    closing: bool,
}

impl Writer {
    fn spawn(
        pool: PgPool,
        secrets: SecretBox,
        link: Arc<AgentLink>,
        gateway_id: String,
        connection_id: Uuid,
    ) -> Self {
        let shared = Arc::new(WriterShared::default());
        let task = tokio::spawn(write_loop(
            shared.clone(),
            pool,
            secrets,
            link,
            gateway_id,
            connection_id,
        ));
        Writer { shared, task }
    }

    /// Records a message: `change` updates the pending reports.
    fn update(&self, change: impl FnOnce(&mut Reports)) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        change(&mut pending.reports);
        pending.dirty = true;
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// Writes what is pending (waiting at most [`FINAL_WRITE_TIMEOUT`]) and
    /// stops.
    async fn finish(mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if tokio::time::timeout(FINAL_WRITE_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

async fn write_loop(
    shared: Arc<WriterShared>,
    pool: PgPool,
    secrets: SecretBox,
    link: Arc<AgentLink>,
    gateway_id: String,
    connection_id: Uuid,
) {
    let mut failures: u32 = 0;
    loop {
        let next = {
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            match (pending.dirty, pending.closing) {
                (false, true) => None,
                (false, false) => Some(None),
                (true, closing) => {
                    pending.dirty = false;
                    Some(Some((std::mem::take(&mut pending.reports), closing)))
                }
            }
        };
        let (reports, closing) = match next {
            None => return,
            Some(None) => {
                // `notify_one` keeps a permit when nobody waits: no wake-up
                // is lost between the check above and this wait.
                shared.wake.notified().await;
                continue;
            }
            Some(Some(work)) => work,
        };
        match store::record_reports(&pool, &gateway_id, connection_id, &reports).await {
            Ok(Some(record)) => {
                failures = 0;
                if record.desired_version > link.pushed_version() {
                    // Changed by another replica (or a caller that did not
                    // push): deliver it now.
                    match load_desired_state(&pool, &secrets, &record).await {
                        Ok(state) => {
                            let _ = link.push(state).await;
                        }
                        Err(err) => {
                            tracing::warn!(gateway_id = %gateway_id, error = %err, "cannot read the desired state; retrying after the next report");
                        }
                    }
                }
            }
            Ok(None) => {
                link.close(Status::aborted(
                    "another agent stream of this gateway took over (or the gateway was deleted); reconnect",
                ));
                return;
            }
            Err(err) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(
                        gateway_id = %gateway_id,
                        error = %err,
                        failures,
                        "cannot store gateway reports; retrying with the latest ones"
                    );
                }
                if closing && failures >= 3 {
                    return;
                }
                // Put the reports back unless newer ones arrived meanwhile.
                {
                    let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if pending.reports.heartbeat.is_none() {
                        pending.reports.heartbeat = reports.heartbeat;
                    }
                    if pending.reports.queue_stats.is_none() {
                        pending.reports.queue_stats = reports.queue_stats;
                    }
                    pending.dirty = true;
                }
                let backoff = Duration::from_millis(200) * failures.min(25);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str) -> pb::AgentHello {
        pb::AgentHello {
            gateway_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn hello_errors_name_the_field() {
        check_hello(&hello("0b6f1c1e-7d0e-4f7e-9d55-2f0b8a3c9e11")).unwrap();
        let status = check_hello(&hello("")).unwrap_err();
        assert!(
            status.message().starts_with("hello.gateway_id: "),
            "{status}"
        );
        let mut bad = hello("gw-1");
        bad.listeners.push(pb::Listener {
            name: "x".repeat(64),
            ..Default::default()
        });
        let status = check_hello(&bad).unwrap_err();
        assert!(
            status.message().starts_with("hello.listeners[0].name: "),
            "{status}"
        );
        let mut bad = hello("gw-1");
        bad.labels.insert("Zone".into(), "a".into());
        let status = check_hello(&bad).unwrap_err();
        assert!(status.message().starts_with("hello.labels["), "{status}");
    }

    #[test]
    fn names_default_to_host_then_id() {
        let mut h = hello("gw-1");
        assert_eq!(default_name(&h), "gw-1");
        h.hostname = "host-a".into();
        assert_eq!(default_name(&h), "host-a");
        h.name = "edge-1".into();
        assert_eq!(default_name(&h), "edge-1");
    }
}
