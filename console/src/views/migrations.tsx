// Migrations: create with index selection, slices and throttle; progress per
// index with docs/s and ETA (WatchMigrationJob); pause, resume, cancel.
import { useState } from "preact/hooks";
import { migrationApi } from "../api";
import { JobStateBadge } from "../badges";
import { count, enumName, time } from "../format";
import { JobState, type Event as TandemEvent } from "../gen/tandem/v1/common_pb";
import {
  ClusterMetadataKind,
  ClusterMetadataOutcome,
  ExistingIndexPolicy,
  IndexMigrationPhase,
  type MigrationJob,
} from "../gen/tandem/v1/migration_pb";
import { useAction, usePoll, useStream } from "../hooks";
import { JobEvents, JobTargetFields, ProgressBar, jobTargetRequest, terminal, useJobTarget } from "../jobs";
import { ActionError, Badge, Button, Check, Field, Header, Live, LoadError } from "../ui";

const FIELDS = ["name", "source", "target", "task_id", "indices", "options"];

const uint = (s: string): number => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : 0);

function MigrationForm() {
  const [target, setTarget] = useJobTarget();
  const [name, setName] = useState("");
  const [slices, setSlices] = useState("");
  const [batch, setBatch] = useState("");
  const [maxDocs, setMaxDocs] = useState("");
  const [ifExists, setIfExists] = useState<ExistingIndexPolicy>(ExistingIndexPolicy.FAIL);
  const [templates, setTemplates] = useState(false);
  const [pipelines, setPipelines] = useState(false);
  const action = useAction();
  const err = action.error;
  const submit = async (e: Event) => {
    e.preventDefault();
    const res = await action.run(() =>
      migrationApi.createMigrationJob({
        requestId: crypto.randomUUID(),
        name,
        ...jobTargetRequest(target),
        options: {
          slicesPerIndex: uint(slices),
          batchSize: uint(batch),
          maxDocsPerSecond: BigInt(uint(maxDocs)),
          metadata: { ifExists, copyTemplates: templates, copyIngestPipelines: pipelines },
        },
      }),
    );
    if (res?.job) window.location.hash = `#/migrations/${res.job.id}`;
  };
  const text = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  return (
    <form class="card form" data-testid="migration-form" onSubmit={submit}>
      <h2>New migration</h2>
      <Field label="Name" id="migration-name" field="name" err={err} hint="empty: generated">
        {(a) => <input {...a} value={name} onInput={text(setName)} />}
      </Field>
      <JobTargetFields prefix="migration" value={target} onChange={setTarget} err={err} />
      <div class="grid3">
        <Field label="Slices per index" id="migration-slices" field="options.slices_per_index" err={err} hint="empty: primary shards, at most 32">
          {(a) => <input {...a} inputMode="numeric" value={slices} onInput={text(setSlices)} />}
        </Field>
        <Field label="Batch size" id="migration-batch-size" field="options.batch_size" err={err} hint="empty: 1000">
          {(a) => <input {...a} inputMode="numeric" value={batch} onInput={text(setBatch)} />}
        </Field>
        <Field label="Throttle (max docs/s)" id="migration-throttle" field="options.max_docs_per_second" err={err} hint="empty: unlimited">
          {(a) => <input {...a} inputMode="numeric" value={maxDocs} onInput={text(setMaxDocs)} />}
        </Field>
        <Field label="Existing target index" id="migration-if-exists" field="options.metadata.if_exists" err={err}>
          {(a) => (
            <select {...a} value={String(ifExists)} onChange={(e) => setIfExists(Number((e.target as HTMLSelectElement).value))}>
              <option value={String(ExistingIndexPolicy.FAIL)}>Fail the job</option>
              <option value={String(ExistingIndexPolicy.REUSE)}>Reuse it</option>
            </select>
          )}
        </Field>
      </div>
      <Check id="migration-copy-templates" label="Copy matching index templates" checked={templates} onChange={setTemplates} />
      <Check id="migration-copy-pipelines" label="Copy ingest pipelines" checked={pipelines} onChange={setPipelines} />
      <div class="actions">
        <button type="submit" class="btn primary" data-testid="migration-submit" disabled={action.busy}>
          Start migration
        </button>
      </div>
      <ActionError err={err} testid="migration-form-error" fields={FIELDS} />
    </form>
  );
}

export function MigrationList() {
  const jobs = usePoll((signal) => migrationApi.listMigrationJobs({ pageSize: 100 }, { signal }), 3000, []);
  const list = jobs.data?.jobs ?? [];
  return (
    <section>
      <Header title="Migrations" />
      <LoadError err={jobs.error} what="migration jobs" />
      {jobs.data && list.length === 0 && <p class="empty">No migration yet.</p>}
      {list.length > 0 && (
        <div class="table-wrap">
          <table data-testid="migration-table">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Source → target</th>
                <th scope="col">State</th>
                <th scope="col">Progress</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.map((j) => (
                <tr key={j.id} data-testid={`migration-row-${j.name}`}>
                  <th scope="row">
                    <a href={`#/migrations/${j.id}`} data-testid={`migration-link-${j.name}`}>
                      {j.name || j.id}
                    </a>
                  </th>
                  <td class="small">
                    {j.source?.clusterName} → {j.target?.clusterName}
                  </td>
                  <td>
                    <JobStateBadge state={j.state} />
                  </td>
                  <td>
                    <ProgressBar p={j.progress} testid={`migration-progress-${j.name}`} />
                  </td>
                  <td class="small">{time(j.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <MigrationForm />
    </section>
  );
}

export function MigrationDetail(props: { id: string }) {
  const [job, setJob] = useState<MigrationJob | undefined>(undefined);
  const [events, setEvents] = useState<TandemEvent[]>([]);
  const action = useAction();
  const stream = useStream(
    (signal) => migrationApi.watchMigrationJob({ jobId: props.id, updateInterval: { seconds: 1n } }, { signal }),
    (m) => {
      if (m.update.case === "job") setJob(m.update.value);
      else if (m.update.case === "event") {
        const e = m.update.value;
        setEvents((l) => [e, ...l].slice(0, 200));
      }
    },
    [props.id],
  );
  const done = job !== undefined && terminal(job.state);
  const poll = usePoll(
    async (signal) => {
      if (stream.live || (done && stream.ended)) return undefined;
      const res = await migrationApi.getMigrationJob({ jobId: props.id }, { signal });
      if (res.job) setJob(res.job);
      return res.job;
    },
    stream.live || done ? 0 : 2000,
    [props.id, stream.live, done],
  );
  if (!job) {
    return (
      <section>
        <Header title="Migration" />
        <LoadError err={poll.error ?? stream.error} what="the migration" />
        {!poll.error && !stream.error && <p class="muted">Loading…</p>}
      </section>
    );
  }
  const act = async (call: () => Promise<{ job?: MigrationJob }>) => {
    const res = await action.run(call);
    if (res?.job) setJob(res.job);
  };
  const s = job.state;
  return (
    <section>
      <Header title={`Migration ${job.name || job.id}`}>{!done && <Live live={stream.live} polling={!stream.live} />}</Header>
      <div class="summary-line">
        <JobStateBadge state={s} testid="migration-state" />
        <span>
          {job.source?.clusterName} → {job.target?.clusterName}
        </span>
        {job.taskId && <a href={`#/tasks/${job.taskId}`}>task</a>}
        <span class="small muted">
          {count(job.docsSkippedNewer)} skipped as newer, {count(job.docsFailed)} refused
        </span>
      </div>
      {job.error && (
        <p class="action-error">
          <span class="code">{job.error.reason}</span> {job.error.message}
        </p>
      )}
      <ProgressBar p={job.progress} testid="migration-progress" label="All indices" />
      <div class="actions">
        {(s === JobState.PENDING || s === JobState.RUNNING) && (
          <Button testid="migration-pause" busy={action.busy} onClick={() => void act(() => migrationApi.pauseMigrationJob({ jobId: job.id }))}>
            Pause
          </Button>
        )}
        {(s === JobState.PAUSING || s === JobState.PAUSED) && (
          <Button testid="migration-resume" kind="primary" busy={action.busy} onClick={() => void act(() => migrationApi.resumeMigrationJob({ jobId: job.id }))}>
            Resume
          </Button>
        )}
        {s === JobState.FAILED && (
          <Button
            testid="migration-retry"
            busy={action.busy}
            onClick={() => void act(() => migrationApi.resumeMigrationJob({ jobId: job.id, retryFailedPartitions: true }))}
          >
            Retry failed partitions
          </Button>
        )}
        {!done && (
          <Button testid="migration-cancel" kind="danger" busy={action.busy} onClick={() => void act(() => migrationApi.cancelMigrationJob({ jobId: job.id }))}>
            Cancel
          </Button>
        )}
      </div>
      <ActionError err={action.error} testid="migration-action-error" />
      <h2>Indices</h2>
      {job.indexProgress.length === 0 && <p class="empty">Not planned yet.</p>}
      <ul class="index-progress" data-testid="migration-indices">
        {job.indexProgress.map((i) => (
          <li key={i.sourceIndex} data-testid={`index-progress-${i.sourceIndex}`}>
            <div class="index-head">
              <strong>{i.sourceIndex}</strong>
              {i.targetIndex !== i.sourceIndex && <span class="small"> → {i.targetIndex}</span>}{" "}
              <Badge tone={i.phase === IndexMigrationPhase.FAILED ? "bad" : i.phase === IndexMigrationPhase.DONE ? "ok" : "info"}>
                {enumName(IndexMigrationPhase, i.phase)}
              </Badge>
              {(i.docsSkippedNewer > 0n || i.docsFailed > 0n) && (
                <span class="small muted">
                  {" "}
                  {count(i.docsSkippedNewer)} skipped as newer, {count(i.docsFailed)} refused
                </span>
              )}
            </div>
            <ProgressBar p={i.progress} testid={`index-bar-${i.sourceIndex}`} />
            {i.error && (
              <p class="small bad-text">
                <span class="code">{i.error.reason}</span> {i.error.message}
              </p>
            )}
            {i.warnings.length > 0 && (
              <ul class="warnings">
                {i.warnings.map((w) => (
                  <li key={w}>{w}</li>
                ))}
              </ul>
            )}
          </li>
        ))}
      </ul>
      {job.clusterMetadata.length > 0 && (
        <>
          <h2>Cluster metadata</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Kind</th>
                  <th scope="col">Name</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {job.clusterMetadata.map((m) => (
                  <tr key={`${m.kind}/${m.name}`}>
                    <td>{enumName(ClusterMetadataKind, m.kind).toLowerCase().replace(/_/g, " ")}</td>
                    <td>{m.name}</td>
                    <td>
                      <Badge tone={m.outcome === ClusterMetadataOutcome.REFUSED ? "bad" : "ok"}>{enumName(ClusterMetadataOutcome, m.outcome)}</Badge>
                    </td>
                    <td class="small">{m.detail}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h2>Events</h2>
      <JobEvents events={events} />
    </section>
  );
}
