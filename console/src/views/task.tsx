// Task detail: state, direction, live lag charts (WatchTask stream, GetTask
// polling while the stream is down), recorded vs replayed rate, events,
// lifecycle actions, and cutover / rollback behind a confirmation that shows
// the preconditions the control plane checks.
import { useEffect, useState } from "preact/hooks";
import { replicationApi } from "../api";
import { ConsumerBadge, DirectionBadge, HealthBadge, TaskStateBadge } from "../badges";
import { LineChart } from "../chart";
import { ago, count, date, dur, duration, enumName, rate, seconds, span, time } from "../format";
import { EventSeverity, type Event as TandemEvent } from "../gen/tandem/v1/common_pb";
import {
  ReplicationDirection,
  RoleSwapKind,
  RoleSwapPhase,
  TaskState,
  type RoleSwapOperation,
  type ReplicationTask,
} from "../gen/tandem/v1/replication_pb";
import { useAction, usePoll, useStream } from "../hooks";
import { deadLetters, lagRecords, lagSeconds, preconditions } from "../tasks";
import { ActionError, Badge, Button, Check, Dialog, Field, Header, Live, LoadError } from "../ui";

/** One point of the charts. */
interface Sample {
  t: number;
  records: number;
  lag: number;
  append: number;
  replay: number;
}

const MAX_SAMPLES = 600;
const MAX_EVENTS = 200;

function EventList(props: { events: TandemEvent[] }) {
  if (props.events.length === 0) return <p class="empty">No event yet.</p>;
  return (
    <ol class="timeline" data-testid="task-events">
      {props.events.map((e) => (
        <li key={e.id || `${e.gatewayId}/${e.sequence}`} class={`sev-${enumName(EventSeverity, e.severity).toLowerCase()}`} data-reason={e.reason}>
          <time>{time(e.occurredAt)}</time> <span class="code">{e.reason}</span> {e.message}
          {e.gatewayId && <span class="small muted"> · gateway {e.gatewayId}</span>}
        </li>
      ))}
    </ol>
  );
}

function Operation(props: { op: RoleSwapOperation; current: boolean }) {
  const op = props.op;
  const failed = op.phase === RoleSwapPhase.FAILED;
  return (
    <div class={`card operation ${failed ? "bad" : ""}`} data-testid={props.current ? "task-operation" : "task-last-operation"}>
      <strong>
        {props.current ? "In progress: " : "Last: "}
        {enumName(RoleSwapKind, op.kind).toLowerCase()}
      </strong>{" "}
      <Badge tone={failed ? "bad" : op.phase === RoleSwapPhase.SUCCEEDED ? "ok" : "info"} testid={props.current ? "task-operation-phase" : "task-last-operation-phase"}>
        {enumName(RoleSwapPhase, op.phase)}
      </Badge>{" "}
      <span class="small">
        gateways ready {op.gatewaysReady}/{op.gatewaysTotal}, started {time(op.startedAt)}, lag at start {dur(op.startLag)} /{" "}
        {count(op.startLagRecords)} records, hold timeout {dur(op.holdTimeout)}
        {op.holdStartedAt && <>, writes held from {time(op.holdStartedAt)}</>}
        {op.holdReleasedAt && <> to {time(op.holdReleasedAt)}</>}
        {op.finishedAt && <>, finished {time(op.finishedAt)}</>}
      </span>
      {op.error && (
        <p class="action-error">
          <span class="code">{op.error.reason}</span> {op.error.message}
        </p>
      )}
    </div>
  );
}

/** The confirmation of a cutover or rollback. */
function SwapDialog(props: { task: ReplicationTask; rollback: boolean; onClose: () => void }) {
  const { task, rollback } = props;
  const verb = rollback ? "Roll back" : "Cut over";
  const [maxLag, setMaxLag] = useState("");
  const [maxRecords, setMaxRecords] = useState("");
  const [hold, setHold] = useState("10");
  const [allowDead, setAllowDead] = useState(false);
  const [verdict, setVerdict] = useState<RoleSwapOperation | undefined>(undefined);
  const check = useAction();
  const action = useAction();
  const lagNum = maxLag.trim() === "" ? undefined : Number(maxLag);
  const recNum = /^\d+$/.test(maxRecords.trim()) ? BigInt(maxRecords.trim()) : undefined;
  const list = preconditions(task, rollback, { maxLagSeconds: lagNum, maxLagRecords: recNum, allowDeadLetters: allowDead });
  const request = (dryRun: boolean) => ({
    taskId: task.id,
    maxLag: lagNum !== undefined && Number.isFinite(lagNum) ? duration(lagNum) : undefined,
    maxLagRecords: recNum,
    holdTimeout: hold.trim() === "" ? undefined : duration(Number(hold)),
    allowDeadLetters: allowDead,
    dryRun,
  });
  const call = (dryRun: boolean): Promise<{ task?: ReplicationTask; operation?: RoleSwapOperation }> =>
    rollback ? replicationApi.rollback(request(dryRun)) : replicationApi.cutover(request(dryRun));
  const dryRun = async () => {
    const res = await check.run(() => call(true));
    setVerdict(res?.operation);
  };
  // Ask the control plane at once, so its verdict is there before the user decides.
  useEffect(() => {
    void dryRun();
  }, []);
  const confirm = async () => {
    const res = await action.run(() => call(false));
    if (res) props.onClose();
  };
  const fields = ["max_lag", "max_lag_records", "hold_timeout", "allow_dead_letters"];
  const text = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  return (
    <Dialog title={`${verb} task ${task.name}?`} testid="confirm-dialog" onClose={props.onClose}>
      <p>
        {rollback
          ? `${task.primary?.clusterName} stops being the primary: ${task.backup?.clusterName} serves clients again, and every write keeps being replayed to ${task.primary?.clusterName}.`
          : `${task.backup?.clusterName} becomes the primary on every gateway at once; ${task.primary?.clusterName} keeps receiving every write as the backup, so you can roll back.`}{" "}
        New writes are held on the gateways (at most the hold timeout) while the queues drain and the roles swap.
      </p>
      <h3>Preconditions the control plane checks</h3>
      <ul class="preconditions" data-testid="confirm-preconditions">
        {list.map((p) => (
          <li key={p.key} class={p.ok ? "ok" : "bad"} data-testid={`precondition-${p.key}`} data-ok={p.ok ? "true" : "false"}>
            <span aria-hidden="true">{p.ok ? "✓" : "✗"}</span> <span class="sr-only">{p.ok ? "holds:" : "fails:"}</span> {p.label}{" "}
            <span class="small muted">({p.detail})</span>
          </li>
        ))}
      </ul>
      <div class="grid3">
        <Field label="Max lag (s)" id="swap-max-lag" field="max_lag" err={action.error ?? check.error} hint="empty: the task's threshold">
          {(a) => <input {...a} inputMode="decimal" value={maxLag} onInput={text(setMaxLag)} />}
        </Field>
        <Field label="Max unreplayed records" id="swap-max-records" field="max_lag_records" err={action.error ?? check.error} hint="empty: the task's threshold">
          {(a) => <input {...a} inputMode="numeric" value={maxRecords} onInput={text(setMaxRecords)} />}
        </Field>
        <Field label="Hold timeout (s)" id="swap-hold-timeout" field="hold_timeout" err={action.error ?? check.error} hint="at most 60">
          {(a) => <input {...a} inputMode="decimal" value={hold} onInput={text(setHold)} />}
        </Field>
      </div>
      <Check id="swap-allow-dead-letters" label="Proceed although dead letters are unresolved" checked={allowDead} onChange={setAllowDead} err={action.error} field="allow_dead_letters" />
      <div class="dry-run" data-testid="confirm-dry-run" role="status">
        {check.busy && "Asking the control plane…"}
        {!check.busy && verdict && verdict.phase === RoleSwapPhase.SUCCEEDED && (
          <span class="ok-text">The control plane's dry run: every precondition holds.</span>
        )}
        {!check.busy && verdict && verdict.phase === RoleSwapPhase.FAILED && (
          <span class="bad-text">
            The control plane's dry run refuses: <span class="code">{verdict.error?.reason}</span> {verdict.error?.message}
          </span>
        )}
        <ActionError err={check.error} testid="confirm-dry-run-error" fields={fields} />
      </div>
      <ActionError err={action.error} testid="confirm-error" fields={fields} />
      <div class="actions">
        <Button testid="confirm-ok" kind="danger" busy={action.busy} onClick={() => void confirm()}>
          {verb}
        </Button>
        <Button testid="confirm-check" busy={check.busy} onClick={() => void dryRun()}>
          Check with the control plane
        </Button>
        <Button testid="confirm-cancel" onClick={props.onClose}>
          Cancel
        </Button>
      </div>
    </Dialog>
  );
}

function StopDialog(props: { task: ReplicationTask; onClose: () => void }) {
  const [discard, setDiscard] = useState(false);
  const action = useAction();
  const stop = async () => {
    const res = await action.run(() => replicationApi.stopTask({ taskId: props.task.id, discardUnreplayed: discard }));
    if (res) props.onClose();
  };
  return (
    <Dialog title={`Stop task ${props.task.name}?`} testid="confirm-dialog" onClose={props.onClose}>
      <p>
        Replication ends for good: gateways keep proxying to the current primary ({props.task.primary?.clusterName}) but stop
        recording and replaying. {count(lagRecords(props.task))} record(s) are not replayed yet.
      </p>
      <Check id="stop-discard-unreplayed" label="Discard unreplayed records (they never reach the backup)" checked={discard} onChange={setDiscard} err={action.error} field="discard_unreplayed" />
      <ActionError err={action.error} testid="confirm-error" fields={["discard_unreplayed"]} />
      <div class="actions">
        <Button testid="confirm-ok" kind="danger" busy={action.busy} onClick={() => void stop()}>
          Stop
        </Button>
        <Button testid="confirm-cancel" onClick={props.onClose}>
          Cancel
        </Button>
      </div>
    </Dialog>
  );
}

export function TaskDetail(props: { id: string }) {
  const [task, setTask] = useState<ReplicationTask | undefined>(undefined);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [events, setEvents] = useState<TandemEvent[]>([]);
  const [dialog, setDialog] = useState<"cutover" | "rollback" | "stop" | "delete" | null>(null);
  const action = useAction();

  const addSample = (s: Sample) => setSamples((list) => [...list.slice(-(MAX_SAMPLES - 1)), s]);
  const addEvents = (more: TandemEvent[]) =>
    setEvents((list) => {
      const seen = new Set(list.map((e) => e.id || `${e.gatewayId}/${e.sequence}`));
      const fresh = more.filter((e) => !seen.has(e.id || `${e.gatewayId}/${e.sequence}`));
      const all = [...fresh, ...list];
      all.sort((a, b) => (date(b.occurredAt)?.getTime() ?? 0) - (date(a.occurredAt)?.getTime() ?? 0));
      return all.slice(0, MAX_EVENTS);
    });
  const sampleOf = (t: ReplicationTask): Sample => ({
    t: Date.now(),
    records: Number(lagRecords(t)),
    lag: lagSeconds(t),
    append: t.queueStats?.appendRecordsPerSecond ?? 0,
    replay: t.queueStats?.replayRecordsPerSecond ?? 0,
  });

  const stream = useStream(
    (signal) => replicationApi.watchTask({ taskId: props.id, lagSampleInterval: { seconds: 1n } }, { signal }),
    (m) => {
      switch (m.update.case) {
        case "task":
          setTask(m.update.value);
          break;
        case "event":
          addEvents([m.update.value]);
          break;
        case "lagSample": {
          const s = m.update.value;
          addSample({
            t: date(s.sampledAt)?.getTime() ?? Date.now(),
            records: Number(s.lagRecords),
            lag: seconds(s.lag),
            append: s.appendRecordsPerSecond,
            replay: s.replayRecordsPerSecond,
          });
          break;
        }
      }
    },
    [props.id],
    true,
  );
  // While the stream is down, GetTask every 2 s keeps the view live.
  const poll = usePoll(
    async (signal) => {
      if (stream.live) return undefined;
      const res = await replicationApi.getTask({ taskId: props.id }, { signal });
      if (res.task) {
        setTask(res.task);
        addSample(sampleOf(res.task));
      }
      return res.task;
    },
    stream.live ? 0 : 2000,
    [props.id, stream.live],
  );
  usePoll(
    async (signal) => {
      const res = await replicationApi.listTaskEvents({ taskId: props.id, pageSize: 100 }, { signal });
      addEvents(res.events);
      return res.events.length;
    },
    0,
    [props.id],
  );

  const lifecycle = async (call: () => Promise<{ task?: ReplicationTask }>) => {
    const res = await action.run(call);
    if (res?.task) setTask(res.task);
  };
  const remove = async () => {
    const res = await action.run(() => replicationApi.deleteTask({ taskId: props.id }));
    setDialog(null);
    if (res) window.location.hash = "#/overview";
  };

  if (!task) {
    return (
      <section>
        <Header title="Task" />
        <LoadError err={poll.error ?? stream.error} what="the task" />
        {!poll.error && !stream.error && <p class="muted">Loading…</p>}
      </section>
    );
  }
  const t = task;
  const s = t.state;
  const forward = t.direction !== ReplicationDirection.REVERSED;
  return (
    <section>
      <Header title={`Task ${t.name}`}>
        <Live live={stream.live} polling={!stream.live} />
      </Header>
      <div class="summary-line">
        <TaskStateBadge state={s} testid="task-state" /> <DirectionBadge direction={t.direction} testid="task-direction" />{" "}
        <HealthBadge health={t.health} testid="task-health" />
        <span>
          primary <strong data-testid="task-primary">{t.primary?.clusterName}</strong> → backup{" "}
          <strong data-testid="task-backup">{t.backup?.clusterName}</strong>
        </span>
        <span class="small muted">
          created {time(t.createdAt)}
          {t.startedAt && <>, started {time(t.startedAt)}</>}
          {t.listener && <>, listener {t.listener}</>}
        </span>
      </div>
      {t.error && (
        <p class="action-error">
          <span class="code">{t.error.reason}</span> {t.error.message}
        </p>
      )}
      {t.problems.length > 0 && (
        <ul class="problems" data-testid="task-problems">
          {t.problems.map((p, i) => (
            <li key={i}>
              <span class="code">{p.reason}</span> {p.message}
            </li>
          ))}
        </ul>
      )}
      <div class="actions" role="group" aria-label="Task actions">
        {s === TaskState.CREATED && (
          <Button testid="task-start" kind="primary" busy={action.busy} onClick={() => void lifecycle(() => replicationApi.startTask({ taskId: t.id }))}>
            Start replay
          </Button>
        )}
        {s === TaskState.RUNNING && (
          <Button testid="task-pause" busy={action.busy} onClick={() => void lifecycle(() => replicationApi.pauseTask({ taskId: t.id }))}>
            Pause
          </Button>
        )}
        {(s === TaskState.PAUSED || s === TaskState.FAILED) && (
          <Button testid="task-resume" kind="primary" busy={action.busy} onClick={() => void lifecycle(() => replicationApi.resumeTask({ taskId: t.id }))}>
            Resume
          </Button>
        )}
        {s === TaskState.RUNNING && forward && (
          <Button testid="task-cutover" kind="danger" onClick={() => setDialog("cutover")}>
            Cut over…
          </Button>
        )}
        {s === TaskState.RUNNING && !forward && (
          <Button testid="task-rollback" kind="danger" onClick={() => setDialog("rollback")}>
            Roll back…
          </Button>
        )}
        {s === TaskState.CUTTING_OVER && (
          <Button testid="task-abort-cutover" kind="danger" busy={action.busy} onClick={() => void lifecycle(() => replicationApi.rollback({ taskId: t.id }))}>
            Abort cutover
          </Button>
        )}
        {s !== TaskState.STOPPED && s !== TaskState.CUTTING_OVER && s !== TaskState.ROLLING_BACK && (
          <Button testid="task-stop" onClick={() => setDialog("stop")}>
            Stop…
          </Button>
        )}
        {(s === TaskState.CREATED || s === TaskState.STOPPED || s === TaskState.FAILED) && (
          <Button testid="task-delete" kind="danger" onClick={() => setDialog("delete")}>
            Delete…
          </Button>
        )}
        <a class="btn plain" href={`#/queue/${t.id}`} data-testid="task-queue-link">
          Queue and dead letters
        </a>
      </div>
      <ActionError err={action.error} testid="task-action-error" />
      {t.currentOperation && <Operation op={t.currentOperation} current />}
      {!t.currentOperation && t.lastOperation && <Operation op={t.lastOperation} current={false} />}
      <div class="cards">
        <div class="card stat">
          <span class="stat-label">Lag (records)</span>
          <span class="stat-value" data-testid="task-lag-records">
            {count(lagRecords(t))}
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Lag (oldest record)</span>
          <span class="stat-value" data-testid="task-lag-seconds">
            {span(lagSeconds(t))}
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Recorded / replayed per s</span>
          <span class="stat-value" data-testid="task-rates">
            {rate(t.queueStats?.appendRecordsPerSecond)} / {rate(t.queueStats?.replayRecordsPerSecond)}
          </span>
        </div>
        <div class={"card stat" + (deadLetters(t) > 0n ? " alert" : "")}>
          <span class="stat-label">Dead letters</span>
          <span class="stat-value" data-testid="task-dead-letters">
            <a href={`#/queue/${t.id}`}>{count(deadLetters(t))}</a>
          </span>
        </div>
      </div>
      <div class="charts">
        <LineChart title="Lag" unit="records" testid="lag-chart" series={[{ name: "unreplayed records", cls: "s1", points: samples.map((p) => [p.t, p.records]) }]} />
        <LineChart title="Lag age" unit="s" testid="lag-seconds-chart" series={[{ name: "oldest unreplayed", cls: "s3", points: samples.map((p) => [p.t, p.lag]) }]} />
        <LineChart
          title="Recorded vs replayed"
          unit="rec/s"
          testid="rate-chart"
          series={[
            { name: "recorded", cls: "s1", points: samples.map((p) => [p.t, p.append]) },
            { name: "replayed", cls: "s2", points: samples.map((p) => [p.t, p.replay]) },
          ]}
        />
      </div>
      <h2>Gateways</h2>
      <div class="table-wrap">
        <table data-testid="task-gateways">
          <thead>
            <tr>
              <th scope="col">Gateway</th>
              <th scope="col">Connected</th>
              <th scope="col">In sync</th>
              <th scope="col">Direction</th>
              <th scope="col">Consumer</th>
              <th scope="col" class="num">Lag (records)</th>
              <th scope="col" class="num">Lag</th>
              <th scope="col" class="num">Dead letters</th>
              <th scope="col">Reported</th>
            </tr>
          </thead>
          <tbody>
            {t.gateways.map((g) => (
              <tr key={g.gatewayId} data-testid={`task-gateway-${g.gatewayId}`}>
                <th scope="row" class="small">
                  <a href={`#/queue/${t.id}/${encodeURIComponent(g.gatewayId)}`}>{g.gatewayId}</a>
                </th>
                <td>{g.connected ? <Badge tone="ok">yes</Badge> : <Badge tone="bad">no</Badge>}</td>
                <td>{g.inSync ? <Badge tone="ok">yes</Badge> : <Badge tone="warn">no</Badge>}</td>
                <td>{enumName(ReplicationDirection, g.direction)}</td>
                <td>
                  <ConsumerBadge state={g.consumerState} />
                </td>
                <td class="num">{count(g.lagRecords)}</td>
                <td class="num">{dur(g.lag)}</td>
                <td class="num">{count(g.deadLetters)}</td>
                <td class="small">{ago(g.reportedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>Events</h2>
      <EventList events={events} />
      {(dialog === "cutover" || dialog === "rollback") && <SwapDialog task={t} rollback={dialog === "rollback"} onClose={() => setDialog(null)} />}
      {dialog === "stop" && <StopDialog task={t} onClose={() => setDialog(null)} />}
      {dialog === "delete" && (
        <Dialog title={`Delete task ${t.name}?`} testid="confirm-dialog" onClose={() => setDialog(null)}>
          <p>Its gateways delete its queues and no longer proxy its listener (clients get 503): repoint applications first.</p>
          <ActionError err={action.error} testid="confirm-error" />
          <div class="actions">
            <Button testid="confirm-ok" kind="danger" busy={action.busy} onClick={() => void remove()}>
              Delete
            </Button>
            <Button testid="confirm-cancel" onClick={() => setDialog(null)}>
              Cancel
            </Button>
          </div>
        </Dialog>
      )}
    </section>
  );
}
