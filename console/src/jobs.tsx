// Pieces shared by migration and comparison jobs.
import { useState } from "preact/hooks";
import { clusterApi, replicationApi } from "./api";
import { count, dur, list, percent, rate, time } from "./format";
import { JobState, type Progress, type Event as TandemEvent } from "./gen/tandem/v1/common_pb";
import type { ReplicationTask } from "./gen/tandem/v1/replication_pb";
import { usePoll } from "./hooks";
import type { ApiError } from "./api";
import { Bar, Field } from "./ui";
import { ClusterSelect } from "./views/task-create";

/** Whether a job state is terminal. */
export function terminal(s: JobState): boolean {
  return s === JobState.SUCCEEDED || s === JobState.FAILED || s === JobState.CANCELLED;
}

/** A progress bar with documents, docs/s and ETA. */
export function ProgressBar(props: { p: Progress | undefined; testid: string; label?: string }) {
  const p = props.p;
  if (!p) return <Bar pct={0} label="not started" testid={props.testid} />;
  const pct = percent(p.docsDone, p.docsTotal);
  const text = `${props.label ? props.label + ": " : ""}${count(p.docsDone)} / ${p.docsTotal > 0n ? count(p.docsTotal) : "?"} docs${
    p.docsTotal > 0n ? ` (${pct.toFixed(0)}%)` : ""
  }`;
  return (
    <div class="progress">
      <Bar pct={pct} label={text} testid={props.testid} />
      <span class="small muted">
        {rate(p.docsPerSecond)} docs/s{p.eta ? `, ETA ${dur(p.eta)}` : ""}
        {p.partitions && p.partitions.total > 0 && (
          <>
            , partitions {p.partitions.done}/{p.partitions.total} done
            {p.partitions.failed > 0 && <strong class="bad-text">, {p.partitions.failed} failed</strong>}
          </>
        )}
      </span>
    </div>
  );
}

/** The events of a job, newest first. */
export function JobEvents(props: { events: TandemEvent[] }) {
  if (props.events.length === 0) return <p class="empty">No event yet.</p>;
  return (
    <ol class="timeline" data-testid="job-events">
      {props.events.map((e, i) => (
        <li key={e.id || i} data-reason={e.reason}>
          <time>{time(e.occurredAt)}</time> <span class="code">{e.reason}</span> {e.message}
          {e.index && <span class="small muted"> · {e.index}</span>}
        </li>
      ))}
    </ol>
  );
}

/** The clusters, tasks and index selection of a job creation form. */
export interface JobTarget {
  source: string;
  target: string;
  taskId: string;
  include: string;
  exclude: string;
}

/** Form state of JobTargetFields. */
export function useJobTarget() {
  return useState<JobTarget>({ source: "", target: "", taskId: "", include: "", exclude: "" });
}

/** The request fields of a JobTarget. */
export function jobTargetRequest(t: JobTarget) {
  return {
    source: { clusterName: t.source },
    target: { clusterName: t.target },
    taskId: t.taskId,
    indices: t.include || t.exclude ? { include: list(t.include), exclude: list(t.exclude) } : undefined,
  };
}

/** Source, target, task and index selection inputs (ids `${prefix}-source` ...). */
export function JobTargetFields(props: {
  prefix: string;
  value: JobTarget;
  onChange: (v: JobTarget) => void;
  err: ApiError | null;
}) {
  const clusters = usePoll((signal) => clusterApi.listClusters({ pageSize: 1000 }, { signal }), 10000, []);
  const tasks = usePoll((signal) => replicationApi.listTasks({ pageSize: 1000 }, { signal }), 10000, []);
  const names = (clusters.data?.clusters ?? []).map((c) => c.name);
  const v = props.value;
  const set = (patch: Partial<JobTarget>) => props.onChange({ ...v, ...patch });
  const pickTask = (id: string) => {
    const t: ReplicationTask | undefined = tasks.data?.tasks.find((x) => x.id === id);
    set(t ? { taskId: id, source: t.primary?.clusterName ?? "", target: t.backup?.clusterName ?? "" } : { taskId: "" });
  };
  const p = props.prefix;
  return (
    <>
      <div class="grid3">
        <Field label="Replication task (optional)" id={`${p}-task`} field="task_id" err={props.err} hint="sets source and target from the task">
          {(a) => (
            <select {...a} value={v.taskId} onChange={(e) => pickTask((e.target as HTMLSelectElement).value)}>
              <option value="">— none —</option>
              {(tasks.data?.tasks ?? []).map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Source" id={`${p}-source`} field="source" err={props.err}>
          {(a) => <ClusterSelect a={a} value={v.source} onChange={(x) => set({ source: x })} names={names} />}
        </Field>
        <Field label="Target" id={`${p}-target`} field="target" err={props.err}>
          {(a) => <ClusterSelect a={a} value={v.target} onChange={(x) => set({ target: x })} names={names} />}
        </Field>
      </div>
      <div class="grid2">
        <Field label="Include indices" id={`${p}-include`} field="indices" err={props.err} hint="patterns, comma separated; empty: every index">
          {(a) => <input {...a} value={v.include} placeholder="logs-*" onInput={(e) => set({ include: (e.target as HTMLInputElement).value })} />}
        </Field>
        <Field label="Exclude indices" id={`${p}-exclude`} field="indices.exclude" err={props.err}>
          {(a) => <input {...a} value={v.exclude} onInput={(e) => set({ exclude: (e.target as HTMLInputElement).value })} />}
        </Field>
      </div>
    </>
  );
}
