// What the console derives from a replication task: the preconditions the
// control plane checks before a cutover or rollback (CutoverRequest in
// proto/tandem/v1/replication.proto; controlplane/src/services/replication/
// swap.rs), evaluated on the latest snapshot so the user sees them before
// asking.
import { ConsumerState } from "./gen/tandem/v1/queue_pb";
import {
  ReplicationDirection,
  TaskState,
  type ReplicationTask,
} from "./gen/tandem/v1/replication_pb";
import { count, seconds, span } from "./format";

/** Default maximum lag of a role swap when the task sets none (5 s). */
export const DEFAULT_MAX_LAG_SECONDS = 5;

/** Options of a role swap that change what is checked. */
export interface SwapOptions {
  /** Maximum lag in seconds; undefined means the task's threshold. */
  maxLagSeconds?: number;
  /** Maximum unreplayed records; undefined means the task's threshold. */
  maxLagRecords?: bigint;
  allowDeadLetters: boolean;
}

/** One precondition and whether the latest snapshot satisfies it. */
export interface Precondition {
  /** Stable key (data-testid `precondition-<key>`). */
  key: string;
  label: string;
  ok: boolean;
  detail: string;
}

/** Sum of unreplayed records over the task's gateways. */
export function lagRecords(task: ReplicationTask): bigint {
  if (task.gateways.length === 0) return task.queueStats?.lagRecords ?? 0n;
  return task.gateways.reduce((a, g) => a + g.lagRecords, 0n);
}

/** Lag in seconds of the worst gateway. */
export function lagSeconds(task: ReplicationTask): number {
  if (task.gateways.length === 0) return seconds(task.queueStats?.lag);
  return Math.max(0, ...task.gateways.map((g) => seconds(g.lag)));
}

/** Unresolved dead letters over the task's gateways. */
export function deadLetters(task: ReplicationTask): bigint {
  if (task.gateways.length === 0) return task.queueStats?.deadLetters ?? 0n;
  return task.gateways.reduce((a, g) => a + g.deadLetters, 0n);
}

/** The preconditions of a cutover (or, with `rollback`, of a rollback). */
export function preconditions(task: ReplicationTask, rollback: boolean, opts: SwapOptions): Precondition[] {
  const from = rollback ? ReplicationDirection.REVERSED : ReplicationDirection.FORWARD;
  const fromName = rollback ? "REVERSED" : "FORWARD";
  const t = task.lagThresholds;
  const maxLag =
    opts.maxLagSeconds ?? (t && seconds(t.cutoverMaxLag) > 0 ? seconds(t.cutoverMaxLag) : DEFAULT_MAX_LAG_SECONDS);
  const maxRecords = opts.maxLagRecords ?? t?.cutoverMaxRecords ?? 0n;
  const recordsChecked = opts.maxLagRecords !== undefined || maxRecords > 0n;
  const disconnected = task.gateways.filter((g) => !g.connected).map((g) => g.gatewayId);
  const outOfSync = task.gateways.filter((g) => !g.inSync).map((g) => g.gatewayId);
  const blocked = task.gateways
    .filter((g) => g.consumerState === ConsumerState.BLOCKED_CORRUPT)
    .map((g) => g.gatewayId);
  const records = lagRecords(task);
  const lag = lagSeconds(task);
  const dead = deadLetters(task);
  const list: Precondition[] = [
    {
      key: "state",
      label: `Task RUNNING in direction ${fromName}`,
      ok: task.state === TaskState.RUNNING && task.direction === from,
      detail: `now ${TaskState[task.state]} ${ReplicationDirection[task.direction]}`,
    },
    {
      key: "connected",
      label: "Every gateway connected",
      ok: task.gateways.length > 0 && disconnected.length === 0,
      detail: disconnected.length ? `disconnected: ${disconnected.join(", ")}` : `${task.gateways.length} connected`,
    },
    {
      key: "in-sync",
      label: "Every gateway in sync (applied the latest desired state)",
      ok: task.gateways.length > 0 && outOfSync.length === 0,
      detail: outOfSync.length ? `out of sync: ${outOfSync.join(", ")}` : "all in sync",
    },
    {
      key: "consumers",
      label: "No consumer blocked by a corrupt record",
      ok: blocked.length === 0,
      detail: blocked.length ? `blocked: ${blocked.join(", ")}` : "none blocked",
    },
    {
      key: "lag",
      label: `Lag (worst gateway) at most ${span(maxLag)}`,
      ok: lag <= maxLag,
      detail: `now ${span(lag)}`,
    },
  ];
  if (recordsChecked) {
    list.push({
      key: "lag-records",
      label: `Unreplayed records at most ${count(maxRecords)}`,
      ok: records <= maxRecords,
      detail: `now ${count(records)}`,
    });
  }
  list.push({
    key: "dead-letters",
    label: opts.allowDeadLetters ? "Dead letters allowed (they will be missing on the new primary)" : "No unresolved dead letters",
    ok: opts.allowDeadLetters || dead === 0n,
    detail: `${count(dead)} unresolved`,
  });
  return list;
}

/** Whether the task could be cut over (or rolled back) now, with the task's thresholds. */
export function swapReadiness(task: ReplicationTask): { kind: "cutover" | "rollback"; ready: boolean; blocker?: string } {
  const rollback = task.direction === ReplicationDirection.REVERSED;
  const failed = preconditions(task, rollback, { allowDeadLetters: false }).find((p) => !p.ok);
  return {
    kind: rollback ? "rollback" : "cutover",
    ready: !failed,
    blocker: failed ? `${failed.label} — ${failed.detail}` : undefined,
  };
}
