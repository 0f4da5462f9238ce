// Overview: every task with its state, direction, lag and health, the fleet,
// the pending dead letters, and whether each task is ready to cut over.
import { gatewayApi, queueApi, replicationApi } from "../api";
import { DirectionBadge, HealthBadge, TaskStateBadge } from "../badges";
import { count, span } from "../format";
import { GatewayConnectionState } from "../gen/tandem/v1/gateway_pb";
import { TaskState, type ReplicationTask } from "../gen/tandem/v1/replication_pb";
import { usePoll } from "../hooks";
import { deadLetters, lagRecords, lagSeconds, swapReadiness } from "../tasks";
import { Badge, Header, LoadError } from "../ui";

function Readiness(props: { task: ReplicationTask }) {
  const t = props.task;
  if (t.state === TaskState.CUTTING_OVER || t.state === TaskState.ROLLING_BACK) {
    return (
      <Badge tone="info" testid={`ready-${t.name}`}>
        {t.state === TaskState.CUTTING_OVER ? "cutting over…" : "rolling back…"}
      </Badge>
    );
  }
  if (t.state === TaskState.STOPPED) return <span class="muted">–</span>;
  const r = swapReadiness(t);
  return r.ready ? (
    <Badge tone="ok" testid={`ready-${t.name}`} title={`Every precondition of a ${r.kind} holds now`}>
      {r.kind === "cutover" ? "ready to cut over" : "ready to roll back"}
    </Badge>
  ) : (
    <span data-testid={`ready-${t.name}`} class="not-ready">
      <Badge tone="muted">not ready</Badge> <span class="small muted">{r.blocker}</span>
    </span>
  );
}

export function OverviewView() {
  const tasks = usePoll((signal) => replicationApi.listTasks({ pageSize: 1000 }, { signal }), 2000, []);
  const gateways = usePoll((signal) => gatewayApi.listGateways({ pageSize: 1000 }, { signal }), 2000, []);
  const stats = usePoll((signal) => queueApi.getQueueStats({}, { signal }), 2000, []);
  const list = tasks.data?.tasks ?? [];
  const gws = gateways.data?.gateways ?? [];
  const connected = gws.filter((g) => g.connectionState === GatewayConnectionState.CONNECTED).length;
  const inSync = gws.filter((g) => g.desiredVersion === g.appliedVersion).length;
  const active = list.filter((t) => t.state !== TaskState.STOPPED);
  const fleet = stats.data?.fleet;
  const dead = fleet ? fleet.deadLetters : list.reduce((a, t) => a + deadLetters(t), 0n);
  return (
    <section>
      <Header title="Overview">
        <a class="btn primary" href="#/tasks/new" data-testid="overview-new-task">
          New task
        </a>
      </Header>
      <LoadError err={tasks.error} what="tasks" />
      <div class="cards">
        <div class="card stat">
          <span class="stat-label">Active tasks</span>
          <span class="stat-value" data-testid="overview-active-tasks">
            {tasks.data ? active.length : "…"}
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Gateways connected</span>
          <span class="stat-value" data-testid="overview-gateways-connected">
            {gateways.data ? `${connected} / ${gws.length}` : "…"}
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Gateways in sync</span>
          <span class="stat-value" data-testid="overview-gateways-in-sync">
            {gateways.data ? `${inSync} / ${gws.length}` : "…"}
          </span>
        </div>
        <div class={"card stat" + (dead > 0n ? " alert" : "")}>
          <span class="stat-label">Pending dead letters</span>
          <span class="stat-value" data-testid="overview-dead-letters">
            {stats.data || tasks.data ? count(dead) : "…"}
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Fleet lag</span>
          <span class="stat-value" data-testid="overview-fleet-lag">
            {fleet ? `${count(fleet.lagRecords)} rec` : "…"}
          </span>
        </div>
      </div>
      <h2>Replication tasks</h2>
      {tasks.data && list.length === 0 && (
        <p class="empty">
          No task yet. <a href="#/clusters">Register the clusters</a>, then <a href="#/tasks/new">create a task</a>.
        </p>
      )}
      {list.length > 0 && (
        <div class="table-wrap">
          <table data-testid="overview-tasks">
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">State</th>
                <th scope="col">Direction</th>
                <th scope="col">Primary → backup</th>
                <th scope="col" class="num">Lag (records)</th>
                <th scope="col" class="num">Lag (time)</th>
                <th scope="col">Gateways</th>
                <th scope="col" class="num">Dead letters</th>
                <th scope="col">Health</th>
                <th scope="col">Cutover</th>
              </tr>
            </thead>
            <tbody>
              {list.map((t) => {
                const gConnected = t.gateways.filter((g) => g.connected).length;
                const gSync = t.gateways.filter((g) => g.inSync).length;
                return (
                  <tr key={t.id} data-testid={`task-row-${t.name}`}>
                    <th scope="row">
                      <a href={`#/tasks/${t.id}`} data-testid={`task-link-${t.name}`}>
                        {t.name}
                      </a>
                    </th>
                    <td>
                      <TaskStateBadge state={t.state} testid={`task-state-${t.name}`} />
                    </td>
                    <td>
                      <DirectionBadge direction={t.direction} />
                    </td>
                    <td class="small">
                      {t.primary?.clusterName} → {t.backup?.clusterName}
                    </td>
                    <td class="num" data-testid={`task-lag-records-${t.name}`}>
                      {count(lagRecords(t))}
                    </td>
                    <td class="num" data-testid={`task-lag-seconds-${t.name}`}>
                      {span(lagSeconds(t))}
                    </td>
                    <td class="small">
                      {gConnected}/{t.gateways.length} connected, {gSync} in sync
                    </td>
                    <td class="num">
                      <a href={`#/queue/${t.id}`}>{count(deadLetters(t))}</a>
                    </td>
                    <td>
                      <HealthBadge
                        health={t.health}
                        testid={`task-health-${t.name}`}
                        title={t.problems.map((p) => p.message).join("\n")}
                      />
                    </td>
                    <td>
                      <Readiness task={t} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <h2>Gateways</h2>
      <LoadError err={gateways.error} what="gateways" />
      {gateways.data && gws.length === 0 && <p class="empty">No gateway has connected yet.</p>}
      {gws.length > 0 && (
        <p>
          {connected} of {gws.length} connected, {inSync} in sync. <a href="#/gateways">Fleet table</a>
        </p>
      )}
    </section>
  );
}
