/**
 * Smoke test of the SDK against a real control plane and a real
 * Elasticsearch 7.17 node. Run by test.sh; reads
 *   TANDEM_SDK_ENDPOINT     control plane, http://127.0.0.1:port
 *   TANDEM_SDK_TOKEN        its bearer token
 *   TANDEM_SDK_CLUSTER_URL  an Elasticsearch 7.17 node, http://host:port
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { connect, Distribution, isServiceError, status, type TandemClient } from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const endpoint = env("TANDEM_SDK_ENDPOINT");
const token = env("TANDEM_SDK_TOKEN");
const clusterUrl = env("TANDEM_SDK_CLUSTER_URL");

/** Runs `call`, which must fail with gRPC status `code`; returns the error's details. */
async function expectStatus(code: status, call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
  } catch (error) {
    assert.ok(isServiceError(error), `expected a gRPC status, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${status[code]}, got ${status[error.code]}: ${error.details}`);
    return error.details;
  }
  assert.fail(`expected ${status[code]}, but the call succeeded`);
}

const steps: Array<[string, (tandem: TandemClient) => Promise<void>]> = [];
function step(name: string, run: (tandem: TandemClient) => Promise<void>): void {
  steps.push([name, run]);
}

const name = `sdk-ts-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
/** Id of the cluster the test registered, until it deletes it. */
let clusterId = "";

step("a wrong token is refused with UNAUTHENTICATED", async () => {
  const intruder = connect(endpoint, "not-the-token");
  try {
    await expectStatus(status.UNAUTHENTICATED, () => intruder.clusters.listClusters({}));
  } finally {
    intruder.close();
  }
});

step("a bad endpoint is refused with INVALID_ARGUMENT naming endpoints[0]", async (tandem) => {
  const details = await expectStatus(status.INVALID_ARGUMENT, () =>
    tandem.clusters.registerCluster({ name, endpoints: ["ftp://x"] }),
  );
  assert.ok(details.startsWith("endpoints[0]"), `details should start with "endpoints[0]": ${details}`);
});

step("RegisterCluster probes the real Elasticsearch 7 node", async (tandem) => {
  const { cluster } = await tandem.clusters.registerCluster({
    name,
    description: "TypeScript SDK smoke test",
    labels: { "created-by": "sdk-ts-smoke" },
    endpoints: [clusterUrl],
  });
  assert.ok(cluster, "response has a cluster");
  assert.ok(cluster.id, "cluster has an id");
  assert.equal(cluster.name, name);
  const version = cluster.lastProbe?.version;
  assert.equal(version?.distribution, Distribution.DISTRIBUTION_ELASTICSEARCH);
  assert.ok(version?.number.startsWith("7."), `version should start with "7.": ${version?.number}`);
  assert.equal(version?.major, 7);
  assert.equal(cluster.lastProbe?.reachable, true);
  assert.ok(cluster.createdAt instanceof Date, "createdAt is a Date");
  clusterId = cluster.id;
});

step("GetCluster and ListClusters find it", async (tandem) => {
  const { cluster } = await tandem.clusters.getCluster({ clusterId });
  assert.equal(cluster?.id, clusterId);
  assert.equal(cluster?.name, name);
  assert.equal(cluster?.labels["created-by"], "sdk-ts-smoke");

  const listed = await tandem.clusters.listClusters({ nameContains: name, pageSize: 10 });
  assert.deepEqual(
    listed.clusters.map((c) => c.id),
    [clusterId],
  );
});

step("ListGateways and GetQueueStats answer", async (tandem) => {
  const gateways = await tandem.gateways.listGateways({ pageSize: 100 });
  assert.ok(Array.isArray(gateways.gateways));
  const stats = await tandem.queue.getQueueStats({});
  assert.ok(Array.isArray(stats.tasks));
});

step("a server stream reports its status (WatchTask of an unknown task)", async (tandem) => {
  await expectStatus(status.NOT_FOUND, async () => {
    for await (const update of tandem.replication.watchTask({ taskId: "00000000-0000-0000-0000-000000000000" }, { timeoutMs: 10_000 })) {
      assert.fail(`unexpected update ${JSON.stringify(update)}`);
    }
  });
});

step("DeleteCluster, then GetCluster gives NOT_FOUND", async (tandem) => {
  const deletedId = clusterId;
  await tandem.clusters.deleteCluster({ clusterId: deletedId });
  clusterId = ""; // nothing left to clean up
  await expectStatus(status.NOT_FOUND, () => tandem.clusters.getCluster({ clusterId: deletedId }));
});

async function main(): Promise<void> {
  const tandem = connect(endpoint, token, { timeoutMs: 20_000 });
  await tandem.waitForReady(10_000);
  let failed = false;
  try {
    for (const [title, run] of steps) {
      const started = Date.now();
      try {
        await run(tandem);
        console.log(`ok   ${title} (${Date.now() - started} ms)`);
      } catch (error) {
        failed = true;
        console.error(`FAIL ${title}\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        break;
      }
    }
  } finally {
    if (clusterId !== "") {
      await tandem.clusters.deleteCluster({ clusterId }).catch(() => {});
    }
    tandem.close();
  }
  if (failed) process.exit(1);
  console.log(`smoke test passed against ${endpoint}`);
}

await main();
