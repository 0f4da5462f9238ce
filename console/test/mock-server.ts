// A fake control plane for developing and smoke-testing the console without
// Postgres, gateways or clusters: serves console/dist/ and a small in-memory
// imitation of the tandem.v1 services over gRPC-web on one HTTP/1.1 port,
// with the same bearer-token check. Its answers are plausible, not faithful:
// the real tests run against tandem-controlplane --ui-listen.
//
//   node test/run-mock.mjs [--port 8088] [--token TOKEN]
import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join } from "node:path";
import { ClusterHealth, ClusterService, type Cluster, ClusterSchema } from "../src/gen/tandem/v1/cluster_pb";
import { Distribution, EventSeverity, JobState, EventSchema } from "../src/gen/tandem/v1/common_pb";
import { CompareOutcome, CompareService, DiffKind, type CompareJob, CompareJobSchema, CompareDiffSchema } from "../src/gen/tandem/v1/compare_pb";
import { DrainState, DrainStatusSchema, GatewayConnectionState, GatewayService, GatewaySchema, type Gateway } from "../src/gen/tandem/v1/gateway_pb";
import { IndexMigrationPhase, MigrationService, MigrationJobSchema, type MigrationJob } from "../src/gen/tandem/v1/migration_pb";
import { ConsumerState, DeadLetterState, OpKind, QueueService, DeadLetterSchema, QueueStatsSchema, type DeadLetter } from "../src/gen/tandem/v1/queue_pb";
import {
  ReplicationDirection,
  ReplicationService,
  RoleSwapKind,
  RoleSwapPhase,
  TaskHealth,
  TaskMode,
  TaskState,
  ReplicationTaskSchema,
  type ReplicationTask,
} from "../src/gen/tandem/v1/replication_pb";

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const PORT = Number(arg("--port", "8088"));
const TOKEN = arg("--token", "mock-token-0123456789");
const DIST = arg("--dist", join(import.meta.dirname ?? ".", "..", "dist"));

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
const uuid = () => crypto.randomUUID();
const invalid = (field: string, problem: string) => new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);

const clusters = new Map<string, Cluster>();
const tasks = new Map<string, ReplicationTask>();
const compares = new Map<string, CompareJob>();
const migrations = new Map<string, MigrationJob>();
const deadLetters = new Map<string, DeadLetter>();
const GW = "gw-1";
const gateway: Gateway = create(GatewaySchema, {
  id: GW,
  name: "gateway-1",
  advertisedAddress: "127.0.0.1:9201",
  version: "0.1.0",
  connectionState: GatewayConnectionState.CONNECTED,
  drain: { state: DrainState.SERVING },
  ready: true,
  desiredVersion: 1n,
  appliedVersion: 1n,
  queueStats: { depthRecords: 0n },
  lastSeenAt: timestampNow(),
});

function probe(endpoint: string) {
  if (endpoint.includes("unreachable")) {
    return { reachable: false, endpoint, probedAt: timestampNow(), error: { reason: "UPSTREAM_UNREACHABLE", message: `connection refused at ${endpoint}` } };
  }
  const os = endpoint.includes("os");
  return {
    reachable: true,
    credentialsValid: true,
    version: { distribution: os ? Distribution.OPENSEARCH : Distribution.ELASTICSEARCH, number: os ? "2.19.0" : "7.17.10" },
    clusterName: "mock",
    health: ClusterHealth.GREEN,
    numberOfNodes: 1,
    numberOfDataNodes: 1,
    nodes: [{ nodeId: "n1", name: "node-1", httpAddress: endpoint.replace(/^https?:\/\//, ""), version: os ? "2.19.0" : "7.17.10", roles: ["data", "master"] }],
    endpoint,
    probedAt: timestampNow(),
  };
}

function refOf(ref: { clusterId: string; clusterName: string } | undefined, field: string) {
  const c = [...clusters.values()].find((x) => x.id === ref?.clusterId || x.name === ref?.clusterName);
  if (!c) throw invalid(field, "required: no such cluster");
  return { clusterId: c.id, clusterName: c.name };
}

// Lag of each task: grows while recording only, drains while replaying.
const lag = new Map<string, number>();
setInterval(() => {
  for (const t of tasks.values()) {
    let l = lag.get(t.id) ?? 0;
    if (t.state === TaskState.CREATED || t.state === TaskState.PAUSED) l += 7;
    else if (t.state !== TaskState.STOPPED) l = Math.max(0, l - 40);
    lag.set(t.id, l);
    const g = t.gateways[0];
    if (g) {
      g.lagRecords = BigInt(l);
      g.lag = create(DurationSchema, { seconds: BigInt(Math.floor(l / 20)) });
      g.deadLetters = BigInt([...deadLetters.values()].filter((d) => d.taskId === t.id && d.state === DeadLetterState.PENDING).length);
      g.consumerState = t.state === TaskState.RUNNING ? ConsumerState.RUNNING : ConsumerState.PAUSED;
    }
    t.queueStats = create(QueueStatsSchema, { lagRecords: BigInt(l), appendRecordsPerSecond: 7, replayRecordsPerSecond: t.state === TaskState.RUNNING && l > 0 ? 40 : 0, deadLetters: g?.deadLetters ?? 0n });
    if (t.state === TaskState.CUTTING_OVER || t.state === TaskState.ROLLING_BACK) {
      const rollback = t.state === TaskState.ROLLING_BACK;
      t.state = TaskState.RUNNING;
      t.direction = rollback ? ReplicationDirection.FORWARD : ReplicationDirection.REVERSED;
      [t.primary, t.backup] = [t.backup, t.primary];
      if (t.currentOperation) {
        t.currentOperation.phase = RoleSwapPhase.SUCCEEDED;
        t.currentOperation.finishedAt = timestampNow();
        t.lastOperation = t.currentOperation;
        t.currentOperation = undefined;
      }
      if (g) g.direction = t.direction;
    }
  }
  for (const j of compares.values()) {
    if (j.state === JobState.PENDING) j.state = JobState.RUNNING;
    else if (j.state === JobState.RUNNING && j.progress) {
      j.progress.docsDone = j.progress.docsTotal;
      j.state = JobState.SUCCEEDED;
      j.summary!.outcome = j.name.includes("planted") ? CompareOutcome.MISMATCH : CompareOutcome.MATCH;
      j.summary!.diffsRecorded = j.name.includes("planted") ? 1n : 0n;
      j.summary!.missingInTarget = j.summary!.diffsRecorded;
    }
  }
  for (const j of migrations.values()) {
    if (j.state === JobState.PENDING) j.state = JobState.RUNNING;
    else if (j.state === JobState.RUNNING && j.progress) {
      j.progress.docsDone = j.progress.docsDone + 500n > j.progress.docsTotal ? j.progress.docsTotal : j.progress.docsDone + 500n;
      for (const i of j.indexProgress) {
        i.progress = j.progress;
        i.phase = j.progress.docsDone === j.progress.docsTotal ? IndexMigrationPhase.DONE : IndexMigrationPhase.DOCUMENTS;
      }
      if (j.progress.docsDone === j.progress.docsTotal) j.state = JobState.SUCCEEDED;
    } else if (j.state === JobState.PAUSING) j.state = JobState.PAUSED;
    else if (j.state === JobState.CANCELLING) j.state = JobState.CANCELLED;
  }
}, 500);

function task(id: string): ReplicationTask {
  const t = tasks.get(id);
  if (!t) throw new ConnectError(`task_id: no task with id ${id}`, Code.NotFound);
  return t;
}

function routes(router: ConnectRouter) {
  router.service(ClusterService, {
    listClusters: () => ({ clusters: [...clusters.values()].sort((a, b) => a.name.localeCompare(b.name)) }),
    registerCluster: (req) => {
      if (!req.name) throw invalid("name", "required");
      if (!/^[a-z0-9-]{1,63}$/.test(req.name)) throw invalid("name", `${JSON.stringify(req.name)} must be 1-63 lowercase letters, digits and '-'`);
      if ([...clusters.values()].some((c) => c.name === req.name)) throw new ConnectError(`name: a cluster named ${req.name} exists`, Code.AlreadyExists);
      if (req.endpoints.length === 0) throw invalid("endpoints", "at least one endpoint is required");
      req.endpoints.forEach((e, i) => {
        if (!/^https?:\/\/[^/]+/.test(e)) throw invalid(`endpoints[${i}]`, `${JSON.stringify(e)} is not a URL`);
      });
      const p = probe(req.endpoints[0]!);
      if (p.error && !req.allowUnreachable) {
        throw new ConnectError(`probe failed (${p.error.reason}): ${p.error.message}; fix the cluster settings, or set allow_unreachable to register it anyway`, Code.FailedPrecondition);
      }
      const c = create(ClusterSchema, { id: req.validateOnly ? "" : uuid(), name: req.name, description: req.description, endpoints: req.endpoints, lastProbe: p, createdAt: timestampNow() });
      if (!req.validateOnly) clusters.set(c.id, c);
      return { cluster: c };
    },
    probeCluster: (req) => {
      const c = clusters.get(req.clusterId);
      if (!c) throw new ConnectError(`cluster_id: no cluster with id ${req.clusterId}`, Code.NotFound);
      c.lastProbe = create(ClusterSchema, { lastProbe: probe(c.endpoints[0] ?? "") }).lastProbe;
      return { probe: c.lastProbe };
    },
    updateCluster: (req) => {
      const c = clusters.get(req.clusterId);
      if (!c) throw new ConnectError(`cluster_id: no cluster with id ${req.clusterId}`, Code.NotFound);
      if (req.name !== undefined) c.name = req.name;
      if (req.description !== undefined) c.description = req.description;
      if (req.endpoints) c.endpoints = req.endpoints.values;
      return { cluster: c };
    },
    deleteCluster: (req) => {
      const used = [...tasks.values()].filter((t) => t.primary?.clusterId === req.clusterId || t.backup?.clusterId === req.clusterId);
      if (used.length) throw new ConnectError(`cluster_id: cluster ${req.clusterId} is used by replication task(s) ${used.map((t) => t.id).join(", ")}`, Code.FailedPrecondition);
      clusters.delete(req.clusterId);
      return {};
    },
  });
  router.service(GatewayService, {
    listGateways: () => ({ gateways: [gateway] }),
    getGateway: (req) => {
      if (req.gatewayId !== GW) throw new ConnectError(`gateway_id: no gateway ${req.gatewayId}`, Code.NotFound);
      return { gateway };
    },
    async *watchGateway(_req, ctx) {
      while (!ctx.signal.aborted) {
        gateway.lastSeenAt = timestampNow();
        yield { update: { case: "gateway", value: gateway } };
        await sleep(2000, ctx.signal);
      }
    },
    drainGateway: () => {
      gateway.drain = create(DrainStatusSchema, { state: DrainState.DRAINING, startedAt: timestampNow() });
      return { gateway };
    },
    undrainGateway: () => {
      gateway.drain = create(DrainStatusSchema, { state: DrainState.SERVING });
      return { gateway };
    },
  });
  router.service(ReplicationService, {
    listTasks: () => ({ tasks: [...tasks.values()].reverse() }),
    getTask: (req) => ({ task: task(req.taskId) }),
    createTask: (req) => {
      if (!req.name) throw invalid("name", "required");
      const primary = refOf(req.primary, "primary");
      const backup = refOf(req.backup, "backup");
      if (primary.clusterId === backup.clusterId) throw invalid("backup", "must differ from the primary");
      if (req.gatewayIds.length === 0) throw invalid("gateway_ids", "at least one gateway is required");
      const t = create(ReplicationTaskSchema, {
        id: uuid(),
        name: req.name,
        state: req.startPaused ? TaskState.CREATED : TaskState.RUNNING,
        direction: ReplicationDirection.FORWARD,
        primary,
        backup,
        gatewayIds: req.gatewayIds,
        health: TaskHealth.HEALTHY,
        gateways: req.gatewayIds.map((g) => ({ gatewayId: g, connected: true, inSync: true, mode: TaskMode.RECORD_ONLY, direction: ReplicationDirection.FORWARD })),
        createdAt: timestampNow(),
      });
      tasks.set(t.id, t);
      lag.set(t.id, 120);
      const d = create(DeadLetterSchema, {
        id: uuid(),
        taskId: t.id,
        gatewayId: GW,
        state: DeadLetterState.PENDING,
        record: { offset: 3n, opKind: OpKind.DOCUMENT_INDEX, index: "logs-1", docId: "42", httpMethod: "PUT", path: "/logs-1/_doc/42", bodyRedacted: true, bodySizeBytes: 31 },
        failure: { httpStatus: 400, errorType: "mapper_parsing_exception", errorReason: "failed to parse field [n] of type [long]", attempts: 1 },
        createdAt: timestampNow(),
      });
      deadLetters.set(d.id, d);
      return { task: t };
    },
    startTask: (req) => {
      const t = task(req.taskId);
      if (t.state !== TaskState.CREATED && t.state !== TaskState.RUNNING) throw new ConnectError(`task_id: cannot start a task in state ${TaskState[t.state]}`, Code.FailedPrecondition);
      t.state = TaskState.RUNNING;
      t.startedAt = timestampNow();
      return { task: t };
    },
    pauseTask: (req) => {
      const t = task(req.taskId);
      t.state = TaskState.PAUSED;
      return { task: t };
    },
    resumeTask: (req) => {
      const t = task(req.taskId);
      t.state = TaskState.RUNNING;
      return { task: t };
    },
    stopTask: (req) => {
      const t = task(req.taskId);
      if ((lag.get(t.id) ?? 0) > 0 && !req.discardUnreplayed) throw new ConnectError(`discard_unreplayed: ${lag.get(t.id)} records are not replayed`, Code.FailedPrecondition);
      t.state = TaskState.STOPPED;
      return { task: t };
    },
    deleteTask: (req) => {
      tasks.delete(req.taskId);
      return {};
    },
    cutover: (req) => swap(req.taskId, false, req.dryRun, req.allowDeadLetters),
    rollback: (req) => swap(req.taskId, true, req.dryRun, req.allowDeadLetters),
    listTaskEvents: () => ({ events: [] }),
    async *watchTask(req, ctx) {
      let seq = 0n;
      yield { update: { case: "task", value: task(req.taskId) } };
      yield { update: { case: "event", value: create(EventSchema, { id: uuid(), sequence: ++seq, occurredAt: timestampNow(), severity: EventSeverity.INFO, reason: "WATCH_STARTED", message: "mock stream opened" }) } };
      while (!ctx.signal.aborted) {
        await sleep(1000, ctx.signal);
        const t = task(req.taskId);
        yield { update: { case: "task", value: t } };
        yield { update: { case: "lagSample", value: { sampledAt: timestampNow(), lagRecords: t.queueStats?.lagRecords ?? 0n, lag: t.gateways[0]?.lag, appendRecordsPerSecond: 7, replayRecordsPerSecond: t.queueStats?.replayRecordsPerSecond ?? 0 } } };
      }
    },
  });
  function swap(id: string, rollback: boolean, dryRun: boolean, allowDead: boolean) {
    const t = task(id);
    const from = rollback ? ReplicationDirection.REVERSED : ReplicationDirection.FORWARD;
    let refusal: string | undefined;
    if (t.state !== TaskState.RUNNING || t.direction !== from) refusal = `task_id: the task must be TASK_STATE_RUNNING in direction ${ReplicationDirection[from]}`;
    else if ((lag.get(id) ?? 0) > 100) refusal = `max_lag: lag is above the maximum 5s; wait for the backlog to drain`;
    else if (!allowDead && (t.gateways[0]?.deadLetters ?? 0n) > 0n) refusal = `allow_dead_letters: ${t.gateways[0]!.deadLetters} dead letters are unresolved; resolve them or set allow_dead_letters`;
    const op = { id: uuid(), kind: rollback ? RoleSwapKind.ROLLBACK : RoleSwapKind.CUTOVER, phase: RoleSwapPhase.CHECKING, gatewaysTotal: 1, startedAt: timestampNow() };
    if (dryRun) {
      return { task: t, operation: { ...op, phase: refusal ? RoleSwapPhase.FAILED : RoleSwapPhase.SUCCEEDED, error: refusal ? { reason: "PRECONDITION", message: refusal } : undefined } };
    }
    if (refusal) throw new ConnectError(refusal, Code.FailedPrecondition);
    t.state = rollback ? TaskState.ROLLING_BACK : TaskState.CUTTING_OVER;
    t.currentOperation = create(ReplicationTaskSchema, { currentOperation: { ...op, phase: RoleSwapPhase.DRAINING } }).currentOperation;
    return { task: t, operation: t.currentOperation };
  }
  router.service(QueueService, {
    getQueueStats: (req) => ({
      fleet: { lagRecords: BigInt([...lag.values()].reduce((a, b) => a + b, 0)), deadLetters: BigInt([...deadLetters.values()].filter((d) => d.state === DeadLetterState.PENDING).length) },
      tasks: req.taskId ? [{ taskId: req.taskId, total: task(req.taskId).queueStats, gateways: [{ gatewayId: GW, stats: task(req.taskId).queueStats }] }] : [],
    }),
    listDeadLetters: (req) => {
      const states = req.states.length ? req.states : [DeadLetterState.PENDING, DeadLetterState.RETRY_REQUESTED, DeadLetterState.SKIP_REQUESTED];
      const list = [...deadLetters.values()].filter((d) => d.taskId === req.taskId && states.includes(d.state));
      return { deadLetters: list, totalSize: BigInt(list.length) };
    },
    retryDeadLetters: (req) => {
      let n = 0;
      for (const d of deadLetters.values()) {
        if (d.taskId === req.taskId && d.state === DeadLetterState.PENDING && (req.all || req.deadLetterIds.includes(d.id))) {
          d.state = DeadLetterState.RETRIED;
          n++;
        }
      }
      return { matchedCount: n };
    },
    skipDeadLetters: (req) => {
      if (!req.comment) throw invalid("comment", "required: say why the records are abandoned");
      let n = 0;
      for (const d of deadLetters.values()) {
        if (d.taskId === req.taskId && d.state === DeadLetterState.PENDING && (req.all || req.deadLetterIds.includes(d.id))) {
          d.state = DeadLetterState.SKIPPED;
          d.comment = req.comment;
          n++;
        }
      }
      return { matchedCount: n };
    },
    peekRecords: (req) => {
      const start = req.startOffset ?? 0n;
      const body = new TextEncoder().encode(JSON.stringify({ message: "hello", n: 1 }));
      return {
        records: [0n, 1n, 2n].map((i) => ({
          offset: start + i,
          opKind: OpKind.DOCUMENT_INDEX,
          index: "logs-1",
          docId: String(start + i),
          httpMethod: "PUT",
          path: `/logs-1/_doc/${start + i}`,
          version: 1n,
          enqueuedAt: timestampNow(),
          sizeBytes: 120,
          bodySizeBytes: body.length,
          body: req.includeBodies ? body : new Uint8Array(),
          bodyRedacted: !req.includeBodies,
        })),
        nextOffset: start + 3n,
        headOffset: 10n,
      };
    },
  });
  router.service(CompareService, {
    listCompareJobs: () => ({ jobs: [...compares.values()].reverse() }),
    getCompareJob: (req) => ({ job: compares.get(req.jobId) }),
    createCompareJob: (req) => {
      const j = create(CompareJobSchema, {
        id: uuid(),
        name: req.name || "compare",
        source: refOf(req.source, "source"),
        target: refOf(req.target, "target"),
        taskId: req.taskId,
        options: req.options,
        state: JobState.PENDING,
        progress: { docsTotal: 2000n, docsDone: 0n },
        summary: { indicesTotal: 1, sourceDocs: 2000n, targetDocs: 2000n },
        indexSummaries: [{ index: "logs-1", sourceDocCount: 2000n, targetDocCount: 2000n }],
        createdAt: timestampNow(),
      });
      compares.set(j.id, j);
      return { job: j };
    },
    cancelCompareJob: (req) => {
      const j = compares.get(req.jobId)!;
      j.state = JobState.CANCELLED;
      return { job: j };
    },
    async *watchCompareJob(req, ctx) {
      while (!ctx.signal.aborted) {
        const j = compares.get(req.jobId);
        if (!j) throw new ConnectError(`job_id: no job ${req.jobId}`, Code.NotFound);
        yield { update: { case: "job", value: j } };
        if (j.state === JobState.SUCCEEDED || j.state === JobState.CANCELLED) return;
        await sleep(1000, ctx.signal);
      }
    },
    listCompareDiffs: (req) => {
      const j = compares.get(req.jobId);
      const diffs =
        j && j.summary?.diffsRecorded
          ? [create(CompareDiffSchema, { id: "d1", index: "logs-1", docId: "planted-1", kind: DiffKind.MISSING_IN_TARGET, sourceVersion: 3n, sourceHash: "9f86d081884c7d65", detectedAt: timestampNow() })]
          : [];
      const kept = diffs.filter((d) => req.kinds.length === 0 || req.kinds.includes(d.kind));
      return { diffs: kept, totalSize: BigInt(kept.length) };
    },
  });
  router.service(MigrationService, {
    listMigrationJobs: () => ({ jobs: [...migrations.values()].reverse() }),
    getMigrationJob: (req) => ({ job: migrations.get(req.jobId) }),
    createMigrationJob: (req) => {
      const j = create(MigrationJobSchema, {
        id: uuid(),
        name: req.name || "migration",
        source: refOf(req.source, "source"),
        target: refOf(req.target, "target"),
        state: JobState.PENDING,
        progress: { docsTotal: 2000n, docsDone: 0n, docsPerSecond: 1000 },
        indexProgress: [{ sourceIndex: "logs-1", targetIndex: "logs-1", phase: IndexMigrationPhase.PENDING }],
        createdAt: timestampNow(),
      });
      migrations.set(j.id, j);
      return { job: j };
    },
    pauseMigrationJob: (req) => {
      const j = migrations.get(req.jobId)!;
      j.state = JobState.PAUSING;
      return { job: j };
    },
    resumeMigrationJob: (req) => {
      const j = migrations.get(req.jobId)!;
      j.state = JobState.RUNNING;
      return { job: j };
    },
    cancelMigrationJob: (req) => {
      const j = migrations.get(req.jobId)!;
      j.state = JobState.CANCELLING;
      return { job: j };
    },
    async *watchMigrationJob(req, ctx) {
      while (!ctx.signal.aborted) {
        const j = migrations.get(req.jobId);
        if (!j) throw new ConnectError(`job_id: no job ${req.jobId}`, Code.NotFound);
        yield { update: { case: "job", value: j } };
        if (j.state === JobState.SUCCEEDED || j.state === JobState.CANCELLED) return;
        await sleep(1000, ctx.signal);
      }
    },
  });
}

const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };

const handler = connectNodeAdapter({
  routes,
  grpc: false,
  connect: false,
  grpcWeb: true,
  interceptors: [
    (next) => async (req) => {
      if (req.header.get("authorization") !== `Bearer ${TOKEN}`) {
        throw new ConnectError("missing or invalid bearer token", Code.Unauthenticated);
      }
      return next(req);
    },
  ],
  fallback: (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const file = path === "/" || !TYPES[extname(path)] ? "index.html" : path.slice(1);
    try {
      const body = readFileSync(join(DIST, file));
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  },
});

createServer(handler).listen(PORT, "127.0.0.1", () => {
  console.log(`mock control plane on http://127.0.0.1:${PORT} (token ${TOKEN})`);
});
