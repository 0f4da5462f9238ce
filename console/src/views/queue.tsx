// Queues: per-gateway statistics of a task's queue, dead letters with retry
// and skip, record peeking (bodies redacted unless asked) and the audited
// repair of a corrupt queue with its dry-run report.
import { useState } from "preact/hooks";
import { gatewayApi, queueApi, replicationApi } from "../api";
import { ConsumerBadge, DeadLetterBadge, TaskStateBadge } from "../badges";
import { bytes, count, dur, enumName, rate, time } from "../format";
import {
  ConsumerState,
  DeadLetterState,
  OpKind,
  type DeadLetter,
  type GatewayTaskQueueStats,
  type PeekRecordsResponse,
  type QueueRecord,
  type QueueRepairResult,
} from "../gen/tandem/v1/queue_pb";
import type { ReplicationTask } from "../gen/tandem/v1/replication_pb";
import { useAction, usePages, usePoll } from "../hooks";
import { ActionError, Badge, Button, Check, Dialog, Field, Header, LoadError, Pager } from "../ui";

const decoder = new TextDecoder();

function Body(props: { r: QueueRecord }) {
  const r = props.r;
  if (r.bodyRedacted) return <span class="muted small">redacted ({bytes(r.bodySizeBytes)})</span>;
  if (r.body.length === 0) return <span class="muted small">no body</span>;
  let text = decoder.decode(r.body);
  try {
    text = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Not one JSON value (NDJSON or truncated): shown as it is.
  }
  return (
    <details>
      <summary>
        body ({bytes(r.bodySizeBytes)}
        {r.bodyTruncated ? ", truncated" : ""})
      </summary>
      <pre class="body" data-testid="record-body">
        {text}
      </pre>
    </details>
  );
}

function recordLine(r: QueueRecord) {
  return (
    <>
      <span class="code">{enumName(OpKind, r.opKind)}</span> {r.httpMethod} <span class="mono">{r.path}</span>
      {r.docId && (
        <span class="small muted">
          {" "}
          · {r.index}/{r.docId}
          {r.version !== undefined ? ` v${r.version}` : ""}
        </span>
      )}
    </>
  );
}

function DeadLetterRow(props: { d: DeadLetter; onChanged: () => void }) {
  const d = props.d;
  const [skipping, setSkipping] = useState(false);
  const [comment, setComment] = useState("");
  const action = useAction();
  const retry = async () => {
    const res = await action.run(() => queueApi.retryDeadLetters({ taskId: d.taskId, deadLetterIds: [d.id], comment: "retried from the console" }));
    if (res) props.onChanged();
  };
  const skip = async () => {
    const res = await action.run(() => queueApi.skipDeadLetters({ taskId: d.taskId, deadLetterIds: [d.id], comment }));
    if (res) {
      setSkipping(false);
      props.onChanged();
    }
  };
  const f = d.failure;
  return (
    <>
      <tr data-testid="dead-letter-row" data-id={d.id} data-state={enumName(DeadLetterState, d.state)}>
        <td class="small">
          {d.record ? recordLine(d.record) : d.id}
          {d.record && <Body r={d.record} />}
        </td>
        <td class="small">{d.gatewayId}</td>
        <td class="small">
          {f && (
            <>
              HTTP {f.httpStatus} <span class="code">{f.errorType}</span> {f.errorReason}
              <div class="muted">{f.attempts} attempt(s)</div>
            </>
          )}
        </td>
        <td>
          <DeadLetterBadge state={d.state} testid={`dead-letter-state-${d.id}`} />
          {d.comment && <div class="small muted">{d.comment}</div>}
        </td>
        <td class="small">{time(d.createdAt)}</td>
        <td class="row-actions">
          {d.state === DeadLetterState.PENDING && (
            <>
              <Button testid={`dead-letter-retry-${d.id}`} busy={action.busy} onClick={() => void retry()}>
                Retry
              </Button>
              <Button testid={`dead-letter-skip-${d.id}`} kind="danger" onClick={() => setSkipping(!skipping)} aria-expanded={skipping}>
                Skip…
              </Button>
            </>
          )}
        </td>
      </tr>
      {(skipping || action.error) && (
        <tr class="detail-row">
          <td colSpan={6}>
            {skipping && (
              <form
                class="inline-form"
                onSubmit={(e) => {
                  e.preventDefault();
                  void skip();
                }}
              >
                <Field label="Why this write is abandoned (audited)" id={`dead-letter-skip-comment-${d.id}`} field="comment" err={action.error}>
                  {(a) => <input {...a} value={comment} onInput={(e) => setComment((e.target as HTMLInputElement).value)} />}
                </Field>
                <button type="submit" class="btn danger" data-testid={`dead-letter-skip-confirm-${d.id}`} disabled={action.busy}>
                  Skip for good
                </button>
              </form>
            )}
            <ActionError err={action.error} testid={`dead-letter-error-${d.id}`} fields={skipping ? ["comment"] : []} />
          </td>
        </tr>
      )}
    </>
  );
}

/** Dead letters listed per page. */
const DEAD_LETTER_PAGE = 50;

function DeadLetters(props: { task: ReplicationTask; gateway: string }) {
  const [showResolved, setShowResolved] = useState(false);
  const [bodies, setBodies] = useState(false);
  const withBodies = bodies && props.gateway !== "";
  const pages = usePages(DEAD_LETTER_PAGE);
  const list = usePoll(
    (signal) =>
      queueApi.listDeadLetters(
        {
          taskId: props.task.id,
          gatewayId: props.gateway,
          states: showResolved ? [DeadLetterState.PENDING, DeadLetterState.RETRY_REQUESTED, DeadLetterState.SKIP_REQUESTED, DeadLetterState.RETRIED, DeadLetterState.SKIPPED] : [],
          includeBodies: withBodies,
          pageSize: DEAD_LETTER_PAGE,
          pageToken: pages.token,
        },
        { signal },
      ),
    3000,
    [props.task.id, props.gateway, showResolved, withBodies, pages.token],
  );
  const all = useAction();
  const retryAll = async () => {
    const res = await all.run(() => queueApi.retryDeadLetters({ taskId: props.task.id, all: true, gatewayId: props.gateway, comment: "retried from the console" }));
    if (res) list.reload();
  };
  const rows = list.data?.deadLetters ?? [];
  return (
    <section aria-labelledby="dl-title">
      <h2 id="dl-title">Dead letters</h2>
      <div class="filters">
        <Check
          id="dead-letters-show-resolved"
          label="Show resolved"
          checked={showResolved}
          onChange={(on) => {
            setShowResolved(on);
            pages.reset();
          }}
        />
        <Check id="dead-letters-bodies" label={props.gateway ? "Show bodies (audited)" : "Show bodies (choose a gateway first)"} checked={withBodies} onChange={setBodies} />
        <span data-testid="dead-letters-total">{list.data ? `${count(list.data.totalSize)} dead letter(s)` : "…"}</span>
        <Button testid="dead-letters-retry-all" busy={all.busy} disabled={rows.every((d) => d.state !== DeadLetterState.PENDING)} onClick={() => void retryAll()}>
          Retry all pending
        </Button>
      </div>
      <ActionError err={all.error} testid="dead-letters-error" />
      <LoadError err={list.error} what="dead letters" />
      {list.data && rows.length === 0 && <p class="empty">No dead letter{showResolved ? "" : " waiting for a decision"}.</p>}
      {rows.length > 0 && (
        <div class="table-wrap">
          <table data-testid="dead-letter-table">
            <thead>
              <tr>
                <th scope="col">Record</th>
                <th scope="col">Gateway</th>
                <th scope="col">Failure</th>
                <th scope="col">State</th>
                <th scope="col">Dead-lettered</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <DeadLetterRow key={d.id} d={d} onChanged={list.reload} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pages={pages} shown={rows.length} total={list.data?.totalSize} nextToken={list.data?.nextPageToken} testid="dead-letters" />
    </section>
  );
}

function Peek(props: { task: ReplicationTask; gateways: string[]; gateway: string }) {
  const [gateway, setGateway] = useState(props.gateway || props.gateways[0] || "");
  const [offset, setOffset] = useState("");
  const [max, setMax] = useState("20");
  const [bodies, setBodies] = useState(false);
  const [result, setResult] = useState<PeekRecordsResponse | undefined>(undefined);
  const action = useAction();
  const err = action.error;
  const peek = async (e?: Event, start?: bigint) => {
    e?.preventDefault();
    const res = await action.run(() =>
      queueApi.peekRecords({
        taskId: props.task.id,
        gatewayId: gateway,
        startOffset: start ?? (/^\d+$/.test(offset.trim()) ? BigInt(offset.trim()) : undefined),
        maxRecords: Number(max) || 0,
        includeBodies: bodies,
      }),
    );
    if (res) setResult(res);
  };
  return (
    <section aria-labelledby="peek-title">
      <h2 id="peek-title">Peek at records</h2>
      <form class="card form" data-testid="peek-form" onSubmit={(e) => void peek(e)}>
        <div class="grid3">
          <Field label="Gateway" id="peek-gateway" field="gateway_id" err={err}>
            {(a) => (
              <select {...a} value={gateway} onChange={(e) => setGateway((e.target as HTMLSelectElement).value)}>
                {props.gateways.map((g) => (
                  <option key={g} value={g}>
                    {g}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Start offset" id="peek-offset" field="start_offset" err={err} hint="empty: the next record to replay">
            {(a) => <input {...a} inputMode="numeric" value={offset} onInput={(e) => setOffset((e.target as HTMLInputElement).value)} />}
          </Field>
          <Field label="Records" id="peek-max" field="max_records" err={err}>
            {(a) => <input {...a} inputMode="numeric" value={max} onInput={(e) => setMax((e.target as HTMLInputElement).value)} />}
          </Field>
        </div>
        <Check id="peek-bodies" label="Include bodies (they may hold personal data; audited)" checked={bodies} onChange={setBodies} />
        <div class="actions">
          <button type="submit" class="btn primary" data-testid="peek-submit" disabled={action.busy || !gateway}>
            Peek
          </button>
          {result && result.records.length > 0 && (
            <Button testid="peek-more" busy={action.busy} onClick={() => void peek(undefined, result.nextOffset)}>
              Next records
            </Button>
          )}
        </div>
        <ActionError err={err} testid="peek-error" fields={["gateway_id", "start_offset", "max_records"]} />
      </form>
      {result && (
        <>
          <p class="small muted" data-testid="peek-offsets">
            offsets: first {count(result.firstOffset)}, committed {count(result.committedOffset)}, head {count(result.headOffset)}
          </p>
          {result.records.length === 0 && <p class="empty">No record at this offset.</p>}
          <ol class="records" data-testid="peek-records">
            {result.records.map((r) => (
              <li key={r.offset.toString()} data-testid="peek-record" data-offset={r.offset.toString()}>
                <span class="mono">#{r.offset.toString()}</span> {recordLine(r)}{" "}
                <span class="small muted">
                  {time(r.enqueuedAt)}, {bytes(r.sizeBytes)}
                </span>
                <Body r={r} />
              </li>
            ))}
          </ol>
        </>
      )}
    </section>
  );
}

function RepairDialog(props: { task: ReplicationTask; g: GatewayTaskQueueStats; onClose: () => void }) {
  const corruption = props.g.stats?.corruption;
  const [report, setReport] = useState<QueueRepairResult | undefined>(undefined);
  const [comment, setComment] = useState("");
  const action = useAction();
  const run = async (dryRun: boolean) => {
    const res = await action.run(() =>
      queueApi.repairQueue({
        taskId: props.task.id,
        gatewayId: props.g.gatewayId,
        expectedOffset: corruption?.offset ?? 0n,
        dryRun,
        comment: dryRun ? "" : comment,
      }),
    );
    if (res?.result) setReport(res.result);
  };
  return (
    <Dialog title={`Repair the queue of ${props.g.gatewayId}?`} testid="confirm-dialog" onClose={props.onClose}>
      <p>
        The consumer stopped at offset {corruption?.offset.toString()} ({corruption?.detail}, segment {corruption?.segment}). A repair skips the
        unreadable range: those writes never reach the backup. Run the dry run first to see exactly what would be lost.
      </p>
      {report && (
        <dl class="facts" data-testid="repair-report" role="status">
          <div>
            <dt>{report.dryRun ? "Would lose" : "Lost"}</dt>
            <dd>
              {count(report.recordsLost)} record(s), {bytes(report.bytesLost)}
            </dd>
          </div>
          <div>
            <dt>Offsets</dt>
            <dd>
              first lost {count(report.firstLostOffset)}, resume at {count(report.resumeOffset)}
            </dd>
          </div>
          <div>
            <dt>Segments</dt>
            <dd>{report.segments.join(", ") || "–"}</dd>
          </div>
          {report.repairedAt && (
            <div>
              <dt>Repaired</dt>
              <dd>{time(report.repairedAt)}</dd>
            </div>
          )}
        </dl>
      )}
      <Field label="Why this data loss is accepted (audited)" id="repair-comment" field="comment" err={action.error}>
        {(a) => <input {...a} value={comment} onInput={(e) => setComment((e.target as HTMLInputElement).value)} />}
      </Field>
      <ActionError err={action.error} testid="confirm-error" fields={["comment"]} />
      <div class="actions">
        <Button testid="repair-dry-run" busy={action.busy} onClick={() => void run(true)}>
          Dry run
        </Button>
        <Button testid="repair-apply" kind="danger" busy={action.busy} disabled={!report || !report.dryRun} onClick={() => void run(false)}>
          Repair
        </Button>
        <Button testid="confirm-cancel" onClick={props.onClose}>
          Close
        </Button>
      </div>
    </Dialog>
  );
}

function TaskQueue(props: { task: ReplicationTask; gateway: string }) {
  const t = props.task;
  const [gateway, setGateway] = useState(props.gateway);
  const [repairing, setRepairing] = useState<GatewayTaskQueueStats | undefined>(undefined);
  const stats = usePoll((signal) => queueApi.getQueueStats({ taskId: t.id }, { signal }), 2000, [t.id]);
  const per = stats.data?.tasks.find((x) => x.taskId === t.id)?.gateways ?? [];
  const gatewayIds = t.gatewayIds.length ? t.gatewayIds : per.map((g) => g.gatewayId);
  return (
    <section>
      <Header title={`Queue of task ${t.name}`}>
        <a class="btn plain" href={`#/tasks/${t.id}`}>
          Task
        </a>
      </Header>
      <div class="summary-line">
        <TaskStateBadge state={t.state} />
        <label>
          Gateway{" "}
          <select data-testid="queue-gateway-filter" value={gateway} onChange={(e) => setGateway((e.target as HTMLSelectElement).value)}>
            <option value="">every gateway</option>
            {gatewayIds.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </label>
      </div>
      <LoadError err={stats.error} what="queue statistics" />
      <div class="table-wrap">
        <table data-testid="queue-stats">
          <thead>
            <tr>
              <th scope="col">Gateway</th>
              <th scope="col">Consumer</th>
              <th scope="col" class="num">Depth</th>
              <th scope="col" class="num">Lag (records)</th>
              <th scope="col" class="num">Lag</th>
              <th scope="col" class="num">Recorded / replayed per s</th>
              <th scope="col" class="num">Dead letters</th>
              <th scope="col">Corruption</th>
            </tr>
          </thead>
          <tbody>
            {per
              .filter((g) => !gateway || g.gatewayId === gateway)
              .map((g) => {
                const s = g.stats;
                return (
                  <tr key={g.gatewayId} data-testid={`queue-gateway-${g.gatewayId}`}>
                    <th scope="row" class="small">
                      {g.gatewayId} {g.stale && <Badge tone="warn">stale</Badge>}
                    </th>
                    <td>
                      <ConsumerBadge state={s?.consumerState ?? 0} />
                    </td>
                    <td class="num">
                      {count(s?.depthRecords)} <div class="small muted">{bytes(s?.depthBytes)}</div>
                    </td>
                    <td class="num">{count(s?.lagRecords)}</td>
                    <td class="num">{dur(s?.lag)}</td>
                    <td class="num">
                      {rate(s?.appendRecordsPerSecond)} / {rate(s?.replayRecordsPerSecond)}
                    </td>
                    <td class="num">{count(s?.deadLetters)}</td>
                    <td class="small">
                      {s?.corruption || s?.consumerState === ConsumerState.BLOCKED_CORRUPT ? (
                        <>
                          <span class="bad-text">
                            at offset {s.corruption?.offset.toString()}: {s.corruption?.detail}
                          </span>{" "}
                          <Button testid={`repair-open-${g.gatewayId}`} kind="danger" onClick={() => setRepairing(g)}>
                            Repair…
                          </Button>
                        </>
                      ) : (
                        "none"
                      )}
                    </td>
                  </tr>
                );
              })}
          </tbody>
        </table>
      </div>
      <DeadLetters task={t} gateway={gateway} />
      {gatewayIds.length > 0 && <Peek task={t} gateways={gatewayIds} gateway={gateway} key={gateway} />}
      {repairing && <RepairDialog task={t} g={repairing} onClose={() => setRepairing(undefined)} />}
    </section>
  );
}

/** #/queue: every task's queue; #/queue/<task>[/<gateway>]; #/queue/<gateway>: that gateway's tasks. */
export function QueueView(props: { id?: string; gateway?: string }) {
  const id = props.id;
  const found = usePoll(
    async (signal) => {
      if (!id) {
        const res = await replicationApi.listTasks({ pageSize: 1000 }, { signal });
        return { tasks: res.tasks };
      }
      try {
        const res = await replicationApi.getTask({ taskId: id }, { signal });
        return { task: res.task };
      } catch (err) {
        // Not a task id: perhaps a gateway's.
        const gw = await gatewayApi.getGateway({ gatewayId: id }, { signal }).catch(() => {
          throw err;
        });
        const res = await replicationApi.listTasks({ pageSize: 1000, gatewayId: id }, { signal });
        return { gatewayName: gw.gateway?.name || id, tasks: res.tasks };
      }
    },
    0,
    [id],
  );
  const d = found.data;
  if (d?.task) return <TaskQueue task={d.task} gateway={props.gateway ?? ""} />;
  const title = d && "gatewayName" in d ? `Queues of gateway ${d.gatewayName}` : "Queues";
  return (
    <section>
      <Header title={title} />
      <LoadError err={found.error} what={id ? `the task or gateway ${id}` : "tasks"} />
      {d?.tasks && d.tasks.length === 0 && <p class="empty">No task.</p>}
      {d?.tasks && d.tasks.length > 0 && (
        <ul class="plain-list">
          {d.tasks.map((t) => (
            <li key={t.id}>
              <a href={id ? `#/queue/${t.id}/${encodeURIComponent(id)}` : `#/queue/${t.id}`} data-testid={`queue-task-${t.name}`}>
                {t.name}
              </a>{" "}
              <TaskStateBadge state={t.state} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
