/**
 * Registers two clusters, creates a replication task between them and
 * watches it. Type-checked by test.sh (not run there: it needs a gateway).
 *
 *   npm run build:test && TANDEM_ENDPOINT=http://127.0.0.1:50051 TANDEM_TOKEN=... \
 *     node build/examples/quickstart.js http://old-es:9200 http://new-es:9200 <gateway-id>
 *
 * In your own code, import from "@tandem/sdk" instead of "../src/index.js".
 */
import {
  connect,
  isServiceError,
  status,
  TaskState,
  taskStateToJSON,
} from "../src/index.js";

const [oldUrl, newUrl, gatewayId] = process.argv.slice(2);
if (!oldUrl || !newUrl || !gatewayId) {
  console.error("usage: quickstart.js OLD_CLUSTER_URL NEW_CLUSTER_URL GATEWAY_ID");
  process.exit(2);
}

const tandem = connect(process.env.TANDEM_ENDPOINT ?? "http://127.0.0.1:50051", process.env.TANDEM_TOKEN);

try {
  // Register a cluster: the control plane probes it first.
  const { cluster: old } = await tandem.clusters.registerCluster({
    name: "es-old",
    endpoints: [oldUrl],
  });
  console.log(`registered ${old?.name}: ${old?.lastProbe?.version?.number}`);
  await tandem.clusters.registerCluster({ name: "es-new", endpoints: [newUrl] });

  // Create a task; clusters are referred to by id or by name.
  const { task } = await tandem.replication.createTask({
    name: "orders",
    primary: { clusterName: "es-old" },
    backup: { clusterName: "es-new" },
    gatewayIds: [gatewayId],
    indices: { include: ["orders-*"] },
  });
  if (!task) throw new Error("CreateTask returned no task");

  // Watch it: a task snapshot first, then events and lag samples.
  const updates = tandem.replication.watchTask({ taskId: task.id });
  for await (const update of updates) {
    if (update.task) {
      console.log(`state ${taskStateToJSON(update.task.state)}`);
      if (update.task.state === TaskState.TASK_STATE_RUNNING) updates.cancel();
    } else if (update.event) {
      console.log(`event ${update.event.reason}: ${update.event.message}`);
    } else if (update.lagSample) {
      console.log(`lag ${update.lagSample.lagRecords} records`);
    }
  }
} catch (error) {
  if (isServiceError(error) && error.code === status.INVALID_ARGUMENT) {
    // details starts with the offending field, e.g. "endpoints[0]: ..."
    console.error(`bad request: ${error.details}`);
  } else if (isServiceError(error) && error.code === status.ALREADY_EXISTS) {
    console.error(`already there: ${error.details}`);
  } else {
    throw error;
  }
} finally {
  tandem.close();
}
