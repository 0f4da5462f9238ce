// Gateways: the fleet table (WatchGateway stream, ListGateways meanwhile),
// drain and undrain.
import { useState } from "preact/hooks";
import { gatewayApi, replicationApi } from "../api";
import { ConnectionBadge, DrainBadge } from "../badges";
import { ago, bytes, count, dur, enumName, rate, span, seconds } from "../format";
import { ReplicationDirection, TaskMode } from "../gen/tandem/v1/replication_pb";
import { DrainState, type Gateway } from "../gen/tandem/v1/gateway_pb";
import { useAction, usePoll, useStream } from "../hooks";
import { ActionError, Badge, Button, Header, Live, LoadError } from "../ui";

/** What a gateway does for one task, from the task's per-gateway status. */
interface GatewayTask {
  taskId: string;
  taskName: string;
  mode: TaskMode;
  direction: ReplicationDirection;
}

function GatewayRow(props: { g: Gateway; tasks: GatewayTask[]; onChanged: (g: Gateway) => void }) {
  const g = props.g;
  const action = useAction();
  const state = g.drain?.state ?? DrainState.SERVING;
  const draining = state === DrainState.DRAINING || state === DrainState.DRAINED;
  const q = g.queueStats;
  const act = async (drain: boolean) => {
    const res = await action.run<{ gateway?: Gateway }>(() =>
      drain ? gatewayApi.drainGateway({ gatewayId: g.id }) : gatewayApi.undrainGateway({ gatewayId: g.id }),
    );
    if (res?.gateway) props.onChanged(res.gateway);
  };
  // Ids are unique; names default to the host name, shared by gateways on one machine.
  const key = g.id;
  return (
    <>
      <tr data-testid={`gateway-row-${key}`}>
        <th scope="row">
          {g.name || g.id}
          <div class="small muted">
            {g.advertisedAddress} · v{g.version}
          </div>
        </th>
        <td>
          <ConnectionBadge state={g.connectionState} testid={`gateway-connection-${key}`} />
          <div class="small muted">seen {ago(g.lastSeenAt)}</div>
        </td>
        <td>
          <DrainBadge state={state} testid={`gateway-drain-state-${key}`} />
          {state === DrainState.DRAINING && g.drain && (
            <div class="small muted">
              idle {dur(g.drain.idleFor)} of {dur(g.drain.quietPeriod)}, {g.drain.inFlightRequests} in flight, {count(g.drain.lagRecords)} to
              replay
            </div>
          )}
        </td>
        <td>
          {g.desiredVersion === g.appliedVersion ? (
            <Badge tone="ok">in sync</Badge>
          ) : (
            <Badge tone="warn" title={`applied ${g.appliedVersion}, desired ${g.desiredVersion}`}>
              applying
            </Badge>
          )}
        </td>
        <td class="small" data-testid={`gateway-tasks-${key}`}>
          {props.tasks.length
            ? props.tasks.map((t) => (
                <div key={t.taskId}>
                  <a href={`#/tasks/${t.taskId}`}>{t.taskName}</a>: {enumName(TaskMode, t.mode).toLowerCase().replace("_", " ")},{" "}
                  {enumName(ReplicationDirection, t.direction).toLowerCase()}
                </div>
              ))
            : g.taskIds.length
              ? g.taskIds.map((t) => (
                  <a key={t} href={`#/tasks/${t}`}>
                    {t.slice(0, 8)}{" "}
                  </a>
                ))
              : "–"}
        </td>
        <td class="num" data-testid={`gateway-depth-${key}`}>
          {q ? count(q.depthRecords) : "–"}
          <div class="small muted">{q ? bytes(q.depthBytes) : ""}</div>
        </td>
        <td class="num">{q ? span(seconds(q.oldestRecordAge)) : "–"}</td>
        <td class="num">{q ? rate(q.replayRecordsPerSecond) : "–"}</td>
        <td class="num">{g.diskTotalBytes > 0n ? `${bytes(g.diskFreeBytes)} free` : "–"}</td>
        <td class="row-actions">
          {draining ? (
            <Button testid={`gateway-undrain-${key}`} busy={action.busy} onClick={() => void act(false)}>
              Undrain
            </Button>
          ) : (
            <Button testid={`gateway-drain-${key}`} busy={action.busy} onClick={() => void act(true)}>
              Drain
            </Button>
          )}
        </td>
      </tr>
      {action.error && (
        <tr class="detail-row">
          <td colSpan={10}>
            <ActionError err={action.error} testid={`gateway-action-error-${key}`} />
          </td>
        </tr>
      )}
    </>
  );
}

export function GatewayView() {
  const [fleet, setFleet] = useState<Map<string, Gateway>>(new Map());
  const put = (g: Gateway) => setFleet((m) => new Map(m).set(g.id, g));
  const stream = useStream(
    (signal) => gatewayApi.watchGateway({}, { signal }),
    (m) => {
      if (m.update.case === "gateway") put(m.update.value);
    },
    [],
    true,
  );
  // The list (every 10 s, 2 s while the stream is down) also drops deleted gateways.
  const list = usePoll(
    async (signal) => {
      const res = await gatewayApi.listGateways({ pageSize: 1000 }, { signal });
      setFleet(new Map(res.gateways.map((g) => [g.id, g])));
      return res.gateways.length;
    },
    stream.live ? 10000 : 2000,
    [stream.live],
  );
  const tasks = usePoll((signal) => replicationApi.listTasks({ pageSize: 1000 }, { signal }), 5000, []);
  const byGateway = new Map<string, GatewayTask[]>();
  for (const t of tasks.data?.tasks ?? []) {
    for (const g of t.gateways) {
      const entry = { taskId: t.id, taskName: t.name, mode: g.mode, direction: g.direction };
      byGateway.set(g.gatewayId, [...(byGateway.get(g.gatewayId) ?? []), entry]);
    }
  }
  const gws = [...fleet.values()].sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
  return (
    <section>
      <Header title="Gateways">
        <Live live={stream.live} polling={!stream.live} />
      </Header>
      <LoadError err={list.error} what="gateways" />
      {list.data === 0 && gws.length === 0 && <p class="empty">No gateway has connected yet.</p>}
      {gws.length > 0 && (
        <div class="table-wrap">
          <table data-testid="gateway-table">
            <thead>
              <tr>
                <th scope="col">Gateway</th>
                <th scope="col">Connection</th>
                <th scope="col">Drain</th>
                <th scope="col">Desired state</th>
                <th scope="col">Tasks: mode, direction</th>
                <th scope="col" class="num">Queue depth</th>
                <th scope="col" class="num">Oldest record</th>
                <th scope="col" class="num">Replay rec/s</th>
                <th scope="col" class="num">Disk</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {gws.map((g) => (
                <GatewayRow key={g.id} g={g} tasks={byGateway.get(g.id) ?? []} onChanged={put} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
