// Badges for the API's states, with one tone per meaning.
import { JobState } from "./gen/tandem/v1/common_pb";
import { ClusterHealth } from "./gen/tandem/v1/cluster_pb";
import { CompareOutcome } from "./gen/tandem/v1/compare_pb";
import { DrainState, GatewayConnectionState } from "./gen/tandem/v1/gateway_pb";
import { ConsumerState, DeadLetterState } from "./gen/tandem/v1/queue_pb";
import { ReplicationDirection, TaskHealth, TaskState } from "./gen/tandem/v1/replication_pb";
import { enumName } from "./format";
import { Badge, type Tone } from "./ui";

export function TaskStateBadge(props: { state: TaskState; testid?: string }) {
  const tone: Tone = (
    {
      [TaskState.RUNNING]: "ok",
      [TaskState.CREATED]: "info",
      [TaskState.PAUSED]: "warn",
      [TaskState.CUTTING_OVER]: "info",
      [TaskState.ROLLING_BACK]: "info",
      [TaskState.STOPPED]: "muted",
      [TaskState.FAILED]: "bad",
    } as Record<number, Tone>
  )[props.state] ?? "muted";
  return (
    <Badge tone={tone} testid={props.testid}>
      {enumName(TaskState, props.state)}
    </Badge>
  );
}

export function DirectionBadge(props: { direction: ReplicationDirection; testid?: string }) {
  return (
    <Badge tone={props.direction === ReplicationDirection.REVERSED ? "warn" : "muted"} testid={props.testid}>
      {enumName(ReplicationDirection, props.direction)}
    </Badge>
  );
}

export function HealthBadge(props: { health: TaskHealth; testid?: string; title?: string }) {
  const tone: Tone =
    props.health === TaskHealth.HEALTHY ? "ok" : props.health === TaskHealth.DEGRADED ? "warn" : props.health === TaskHealth.BLOCKED ? "bad" : "muted";
  return (
    <Badge tone={tone} testid={props.testid} title={props.title}>
      {props.health === TaskHealth.UNSPECIFIED ? "UNKNOWN" : enumName(TaskHealth, props.health)}
    </Badge>
  );
}

export function ClusterHealthBadge(props: { health: ClusterHealth; testid?: string }) {
  const tone: Tone =
    props.health === ClusterHealth.GREEN ? "ok" : props.health === ClusterHealth.YELLOW ? "warn" : props.health === ClusterHealth.RED ? "bad" : "muted";
  return (
    <Badge tone={tone} testid={props.testid}>
      {props.health === ClusterHealth.UNSPECIFIED ? "UNKNOWN" : enumName(ClusterHealth, props.health)}
    </Badge>
  );
}

export function JobStateBadge(props: { state: JobState; testid?: string }) {
  const tone: Tone = (
    {
      [JobState.PENDING]: "info",
      [JobState.RUNNING]: "info",
      [JobState.PAUSING]: "warn",
      [JobState.PAUSED]: "warn",
      [JobState.CANCELLING]: "warn",
      [JobState.CANCELLED]: "muted",
      [JobState.SUCCEEDED]: "ok",
      [JobState.FAILED]: "bad",
    } as Record<number, Tone>
  )[props.state] ?? "muted";
  return (
    <Badge tone={tone} testid={props.testid}>
      {enumName(JobState, props.state)}
    </Badge>
  );
}

export function OutcomeBadge(props: { outcome: CompareOutcome; testid?: string }) {
  if (props.outcome === CompareOutcome.MATCH)
    return (
      <Badge tone="ok" testid={props.testid}>
        MATCH
      </Badge>
    );
  if (props.outcome === CompareOutcome.MISMATCH)
    return (
      <Badge tone="bad" testid={props.testid}>
        MISMATCH
      </Badge>
    );
  return (
    <Badge tone="muted" testid={props.testid}>
      undecided
    </Badge>
  );
}

export function ConnectionBadge(props: { state: GatewayConnectionState; testid?: string }) {
  const on = props.state === GatewayConnectionState.CONNECTED;
  return (
    <Badge tone={on ? "ok" : "bad"} testid={props.testid}>
      {on ? "CONNECTED" : "DISCONNECTED"}
    </Badge>
  );
}

export function DrainBadge(props: { state: DrainState; testid?: string }) {
  const tone: Tone = props.state === DrainState.DRAINING ? "warn" : props.state === DrainState.DRAINED ? "info" : "ok";
  return (
    <Badge tone={tone} testid={props.testid}>
      {props.state === DrainState.UNSPECIFIED ? "SERVING" : enumName(DrainState, props.state)}
    </Badge>
  );
}

export function ConsumerBadge(props: { state: ConsumerState; testid?: string }) {
  const tone: Tone =
    props.state === ConsumerState.RUNNING
      ? "ok"
      : props.state === ConsumerState.BLOCKED_CORRUPT
        ? "bad"
        : props.state === ConsumerState.BACKING_OFF || props.state === ConsumerState.PAUSED
          ? "warn"
          : "muted";
  return (
    <Badge tone={tone} testid={props.testid}>
      {props.state === ConsumerState.UNSPECIFIED ? "UNKNOWN" : enumName(ConsumerState, props.state)}
    </Badge>
  );
}

export function DeadLetterBadge(props: { state: DeadLetterState; testid?: string }) {
  const tone: Tone =
    props.state === DeadLetterState.PENDING ? "bad" : props.state === DeadLetterState.RETRIED || props.state === DeadLetterState.SKIPPED ? "muted" : "warn";
  return (
    <Badge tone={tone} testid={props.testid}>
      {enumName(DeadLetterState, props.state)}
    </Badge>
  );
}
