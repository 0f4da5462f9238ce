// Comparisons: create, follow (WatchCompareJob), the MATCH / MISMATCH
// verdict, per-index results, and the paginated difference list filtered by
// kind and index, with both sides of each document.
import { Fragment } from "preact";
import { useState } from "preact/hooks";
import { compareApi } from "../api";
import { JobStateBadge, OutcomeBadge } from "../badges";
import { count, duration, enumName, time } from "../format";
import { JobState, type Event as TandemEvent } from "../gen/tandem/v1/common_pb";
import { CompareMode, DiffKind, type CompareJob, type RepairCompareDiffsResponse } from "../gen/tandem/v1/compare_pb";
import { useAction, usePages, usePoll, useStream } from "../hooks";
import { JobEvents, JobTargetFields, ProgressBar, jobTargetRequest, terminal, useJobTarget } from "../jobs";
import { ActionError, Button, Check, Field, Header, Live, LoadError, Pager } from "../ui";

const FIELDS = ["name", "source", "target", "task_id", "indices", "options"];

function CompareForm() {
  const [target, setTarget] = useJobTarget();
  const [name, setName] = useState("");
  const [mode, setMode] = useState<CompareMode>(CompareMode.FULL);
  const [recheck, setRecheck] = useState("");
  const [maxDocs, setMaxDocs] = useState("");
  const [ignoreVersions, setIgnoreVersions] = useState(false);
  const action = useAction();
  const err = action.error;
  const submit = async (e: Event) => {
    e.preventDefault();
    const res = await action.run(() =>
      compareApi.createCompareJob({
        requestId: crypto.randomUUID(),
        name,
        ...jobTargetRequest(target),
        options: {
          mode,
          recheckDelay: recheck.trim() ? duration(Number(recheck)) : undefined,
          maxDocsPerSecond: /^\d+$/.test(maxDocs.trim()) ? BigInt(maxDocs.trim()) : 0n,
          ignoreVersions,
        },
      }),
    );
    if (res?.job) window.location.hash = `#/comparisons/${res.job.id}`;
  };
  return (
    <form class="card form" data-testid="compare-form" onSubmit={submit}>
      <h2>New comparison</h2>
      <Field label="Name" id="compare-name" field="name" err={err} hint="empty: generated">
        {(a) => <input {...a} value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />}
      </Field>
      <JobTargetFields prefix="compare" value={target} onChange={setTarget} err={err} />
      <div class="grid3">
        <Field label="Mode" id="compare-mode" field="options.mode" err={err}>
          {(a) => (
            <select {...a} value={String(mode)} onChange={(e) => setMode(Number((e.target as HTMLSelectElement).value))}>
              <option value={String(CompareMode.FULL)}>Full (document differences)</option>
              <option value={String(CompareMode.DIGEST)}>Digest (which partitions differ)</option>
              <option value={String(CompareMode.COUNT_ONLY)}>Counts only</option>
            </select>
          )}
        </Field>
        <Field label="Recheck delay (s)" id="compare-recheck-delay" field="options.recheck_delay" err={err} hint="empty: 30 s">
          {(a) => <input {...a} inputMode="decimal" value={recheck} onInput={(e) => setRecheck((e.target as HTMLInputElement).value)} />}
        </Field>
        <Field label="Max docs/s per side" id="compare-throttle" field="options.max_docs_per_second" err={err} hint="empty: unlimited">
          {(a) => <input {...a} inputMode="numeric" value={maxDocs} onInput={(e) => setMaxDocs((e.target as HTMLInputElement).value)} />}
        </Field>
      </div>
      <Check id="compare-ignore-versions" label="Ignore _version" checked={ignoreVersions} onChange={setIgnoreVersions} />
      <div class="actions">
        <button type="submit" class="btn primary" data-testid="compare-submit" disabled={action.busy}>
          Start comparison
        </button>
      </div>
      <ActionError err={err} testid="compare-form-error" fields={FIELDS} />
    </form>
  );
}

export function CompareList() {
  const jobs = usePoll((signal) => compareApi.listCompareJobs({ pageSize: 100 }, { signal }), 3000, []);
  const list = jobs.data?.jobs ?? [];
  return (
    <section>
      <Header title="Comparisons" />
      <LoadError err={jobs.error} what="comparison jobs" />
      {jobs.data && list.length === 0 && <p class="empty">No comparison yet.</p>}
      {list.length > 0 && (
        <div class="table-wrap">
          <table data-testid="compare-table">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Source → target</th>
                <th scope="col">State</th>
                <th scope="col">Outcome</th>
                <th scope="col">Progress</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.map((j) => (
                <tr key={j.id} data-testid={`compare-row-${j.name}`}>
                  <th scope="row">
                    <a href={`#/comparisons/${j.id}`} data-testid={`compare-link-${j.name}`}>
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
                    <OutcomeBadge outcome={j.summary?.outcome ?? 0} />
                  </td>
                  <td>
                    <ProgressBar p={j.progress} testid={`compare-progress-${j.name}`} />
                  </td>
                  <td class="small">{time(j.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <CompareForm />
    </section>
  );
}

/** A document's `_source`, pretty-printed; "absent" when the side lacks it. */
function DocumentBody(props: { json?: string; testid: string }) {
  if (props.json === undefined) {
    return (
      <span class="muted" data-testid={props.testid}>
        absent
      </span>
    );
  }
  let text = props.json;
  try {
    text = JSON.stringify(JSON.parse(props.json), null, 2);
  } catch {
    // Shown as the cluster returned it.
  }
  return (
    <pre class="document" data-testid={props.testid}>
      {text}
    </pre>
  );
}

const KINDS: DiffKind[] = [DiffKind.MISSING_IN_TARGET, DiffKind.EXTRA_IN_TARGET, DiffKind.CONTENT_DIFFERS, DiffKind.VERSION_DIFFERS];
const PAGE = 50;

function Diffs(props: { job: CompareJob }) {
  const job = props.job;
  const [kind, setKind] = useState<DiffKind>(DiffKind.UNSPECIFIED);
  const [index, setIndex] = useState("");
  const pages = usePages(PAGE);
  // Both sides of each listed document, read from the clusters now.
  const [documents, setDocuments] = useState(false);
  const recorded = job.summary?.diffsRecorded ?? 0n;
  const diffs = usePoll(
    (signal) =>
      compareApi.listCompareDiffs(
        {
          jobId: job.id,
          kinds: kind === DiffKind.UNSPECIFIED ? [] : [kind],
          index,
          pageSize: PAGE,
          pageToken: pages.token,
          includeDocuments: documents,
        },
        { signal },
      ),
    0,
    [job.id, kind, index, pages.token, recorded.toString(), job.state, documents],
  );
  const filter = (f: () => void) => {
    f();
    pages.reset();
  };
  const rows = diffs.data?.diffs ?? [];
  return (
    <section aria-labelledby="diffs-title">
      <h2 id="diffs-title">Differences</h2>
      <div class="filters">
        <label>
          Kind{" "}
          <select data-testid="diff-kind-filter" value={String(kind)} onChange={(e) => filter(() => setKind(Number((e.target as HTMLSelectElement).value)))}>
            <option value={String(DiffKind.UNSPECIFIED)}>every kind</option>
            {KINDS.map((k) => (
              <option key={k} value={String(k)}>
                {enumName(DiffKind, k).toLowerCase().replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </label>
        <label>
          Index{" "}
          <select data-testid="diff-index-filter" value={index} onChange={(e) => filter(() => setIndex((e.target as HTMLSelectElement).value))}>
            <option value="">every index</option>
            {job.indexSummaries.map((s) => (
              <option key={s.index} value={s.index}>
                {s.index}
              </option>
            ))}
          </select>
        </label>
        <label class="check-line">
          <input
            type="checkbox"
            data-testid="diff-show-documents"
            checked={documents}
            onChange={(e) => setDocuments((e.target as HTMLInputElement).checked)}
          />{" "}
          Show both documents
        </label>
        <span data-testid="diff-total">{diffs.data ? `${count(diffs.data.totalSize)} difference(s)` : "…"}</span>
      </div>
      <LoadError err={diffs.error} what="the differences" />
      {diffs.data && rows.length === 0 && <p class="empty">No difference{kind || index ? " matches the filters" : " recorded"}.</p>}
      {rows.length > 0 && (
        <div class="table-wrap">
          <table data-testid="diff-table" class="diffs">
            <thead>
              <tr>
                <th scope="col" rowSpan={2}>
                  Index
                </th>
                <th scope="col" rowSpan={2}>
                  Document id
                </th>
                <th scope="col" rowSpan={2}>
                  Kind
                </th>
                <th scope="colgroup" colSpan={2}>
                  Source ({job.source?.clusterName})
                </th>
                <th scope="colgroup" colSpan={2}>
                  Target ({job.target?.clusterName})
                </th>
                <th scope="col" rowSpan={2}>
                  Detected
                </th>
              </tr>
              <tr>
                <th scope="col">_version</th>
                <th scope="col">_source hash</th>
                <th scope="col">_version</th>
                <th scope="col">_source hash</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <Fragment key={d.id}>
                <tr data-testid="diff-row" data-doc-id={d.docId} data-kind={enumName(DiffKind, d.kind)}>
                  <td>{d.index}</td>
                  <th scope="row" class="mono">
                    {d.docId}
                    {d.routing && <div class="small muted">routing {d.routing}</div>}
                  </th>
                  <td>{enumName(DiffKind, d.kind).toLowerCase().replace(/_/g, " ")}</td>
                  <td class="num">{d.sourceVersion !== undefined ? d.sourceVersion.toString() : <span class="muted">absent</span>}</td>
                  <td class="mono small" title={d.sourceHash}>
                    {d.sourceHash ? d.sourceHash.slice(0, 12) : <span class="muted">absent</span>}
                  </td>
                  <td class="num">{d.targetVersion !== undefined ? d.targetVersion.toString() : <span class="muted">absent</span>}</td>
                  <td class="mono small" title={d.targetHash}>
                    {d.targetHash ? d.targetHash.slice(0, 12) : <span class="muted">absent</span>}
                  </td>
                  <td class="small">
                    {time(d.detectedAt)}
                    {d.repairedAt && <div class="ok-text">repaired {time(d.repairedAt)}</div>}
                  </td>
                </tr>
                {documents && (
                  <tr class="diff-documents" data-testid="diff-documents" data-doc-id={d.docId}>
                    <td colSpan={3} class="small muted">
                      _source now
                    </td>
                    <td colSpan={2}>
                      <DocumentBody json={d.sourceDocument} testid="diff-source-document" />
                    </td>
                    <td colSpan={3}>
                      <DocumentBody json={d.targetDocument} testid="diff-target-document" />
                    </td>
                  </tr>
                )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pages={pages} shown={rows.length} total={diffs.data?.totalSize} nextToken={diffs.data?.nextPageToken} testid="diff" />
    </section>
  );
}

export function CompareDetail(props: { id: string }) {
  const [job, setJob] = useState<CompareJob | undefined>(undefined);
  const [events, setEvents] = useState<TandemEvent[]>([]);
  const [repair, setRepair] = useState<RepairCompareDiffsResponse | undefined>(undefined);
  const action = useAction();
  const stream = useStream(
    (signal) => compareApi.watchCompareJob({ jobId: props.id, updateInterval: { seconds: 1n } }, { signal }),
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
      const res = await compareApi.getCompareJob({ jobId: props.id }, { signal });
      if (res.job) setJob(res.job);
      return res.job;
    },
    stream.live || done ? 0 : 2000,
    [props.id, stream.live, done],
  );
  if (!job) {
    return (
      <section>
        <Header title="Comparison" />
        <LoadError err={poll.error ?? stream.error} what="the comparison" />
        {!poll.error && !stream.error && <p class="muted">Loading…</p>}
      </section>
    );
  }
  const s = job.summary;
  const cancel = async () => {
    const res = await action.run(() => compareApi.cancelCompareJob({ jobId: job.id }));
    if (res?.job) setJob(res.job);
  };
  const runRepair = async () => {
    const res = await action.run(() => compareApi.repairCompareDiffs({ jobId: job.id, taskId: job.taskId }));
    if (res) setRepair(res);
  };
  const full = (job.options?.mode ?? CompareMode.FULL) === CompareMode.FULL || job.options?.mode === CompareMode.UNSPECIFIED;
  return (
    <section>
      <Header title={`Comparison ${job.name || job.id}`}>
        {!done && <Live live={stream.live} polling={!stream.live} />}
      </Header>
      <div class="summary-line">
        <JobStateBadge state={job.state} testid="compare-state" />
        <span class="outcome">
          Outcome: <OutcomeBadge outcome={s?.outcome ?? 0} testid="compare-outcome" />
        </span>
        <span>
          {job.source?.clusterName} → {job.target?.clusterName}
        </span>
        {job.taskId && <a href={`#/tasks/${job.taskId}`}>task</a>}
      </div>
      {job.error && (
        <p class="action-error">
          <span class="code">{job.error.reason}</span> {job.error.message}
        </p>
      )}
      <ProgressBar p={job.progress} testid="compare-progress" />
      <div class="actions">
        {!done && (
          <Button testid="compare-cancel" busy={action.busy} onClick={() => void cancel()}>
            Cancel
          </Button>
        )}
        {job.state === JobState.SUCCEEDED && full && (s?.diffsRecorded ?? 0n) > 0n && (
          <Button testid="compare-repair" busy={action.busy} onClick={() => void runRepair()}>
            Repair the differences
          </Button>
        )}
      </div>
      <ActionError err={action.error} testid="compare-action-error" />
      {repair && (
        <p class="card" data-testid="compare-repair-report" role="status">
          Repair through task {repair.taskId} on gateway {repair.gatewayId}: {count(repair.repaired)} of {count(repair.requested)} document(s)
          equal now{repair.stillDiffering.length > 0 && `, ${repair.stillDiffering.length} still differ`}.
        </p>
      )}
      {s && (
        <dl class="facts" data-testid="compare-summary">
          <div>
            <dt>Indices</dt>
            <dd>
              {s.indicesCompared}/{s.indicesTotal} compared, {s.indicesMatching} matching, {s.indicesDiffering} differing
            </dd>
          </div>
          <div>
            <dt>Documents</dt>
            <dd>
              source {count(s.sourceDocs)}, target {count(s.targetDocs)}
            </dd>
          </div>
          <div>
            <dt>Differences</dt>
            <dd data-testid="compare-diff-counts">
              {count(s.missingInTarget)} missing in target, {count(s.extraInTarget)} extra in target, {count(s.contentDiffers)} content,{" "}
              {count(s.versionDiffers)} version
            </dd>
          </div>
          <div>
            <dt>Transient / version ahead</dt>
            <dd>
              {count(s.transientDiffs)} / {count(s.versionAhead)}
            </dd>
          </div>
          <div>
            <dt>Recorded</dt>
            <dd>
              {count(s.diffsRecorded)}
              {s.diffsTruncated && " (truncated at max_diffs)"}, {s.partitionsMismatched} partition(s) mismatched
            </dd>
          </div>
        </dl>
      )}
      {job.indexSummaries.length > 0 && (
        <div class="table-wrap">
          <table data-testid="compare-indices">
            <thead>
              <tr>
                <th scope="col">Index</th>
                <th scope="col">Outcome</th>
                <th scope="col" class="num">Source docs</th>
                <th scope="col" class="num">Target docs</th>
                <th scope="col" class="num">Missing</th>
                <th scope="col" class="num">Extra</th>
                <th scope="col" class="num">Content</th>
                <th scope="col" class="num">Version</th>
                <th scope="col">Partitions</th>
              </tr>
            </thead>
            <tbody>
              {job.indexSummaries.map((i) => (
                <tr key={i.index} data-testid={`compare-index-${i.index}`}>
                  <th scope="row">
                    {i.index}
                    {i.missingInTarget && <div class="small bad-text">missing in target</div>}
                    {i.missingInSource && <div class="small bad-text">missing in source</div>}
                    {i.error && <div class="small bad-text">{i.error.message}</div>}
                  </th>
                  <td>
                    <OutcomeBadge outcome={i.outcome} />
                  </td>
                  <td class="num">{count(i.sourceDocCount)}</td>
                  <td class="num">{count(i.targetDocCount)}</td>
                  <td class="num">{count(i.missingInTargetDocs)}</td>
                  <td class="num">{count(i.extraInTargetDocs)}</td>
                  <td class="num">{count(i.contentDiffersDocs)}</td>
                  <td class="num">{count(i.versionDiffersDocs)}</td>
                  <td class="small">
                    {i.partitions ? `${i.partitions.done}/${i.partitions.total} done` : "–"}
                    {i.partitionsMismatched > 0 && `, ${i.partitionsMismatched} mismatched`}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {full && <Diffs job={job} />}
      <h2>Events</h2>
      <JobEvents events={events} />
    </section>
  );
}
