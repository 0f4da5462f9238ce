// Browser test of the console with playwright-core and the system Chromium
// (never downloads a browser): signs in with a wrong token (expects the
// refusal), then with the right one, screenshots every view at 1280x800 and
// 400x800, and with --workflow drives the whole workflow through the UI.
//
//   node test/e2e.mjs --url http://127.0.0.1:8088 --token TOKEN \
//        [--screenshots DIR] [--workflow --primary-endpoint URL --backup-endpoint URL \
//         --gateway-id ID --gateway-url URL --index NAME]
//
// The workflow (against a real control plane, a real gateway joined to it
// and two real clusters; integration/tests/web_console.rs runs it): register
// both clusters, see the gateway join, create a paused task, write through
// the gateway (the lag shows it), start and watch the lag fall to 0, retry a
// dead letter (a document the backup refused until its index was fixed),
// a comparison says MATCH, a document planted on the backup is listed as a
// difference, cutover and rollback through the confirmation dialog.
//
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    screenshots: { type: "string", default: "test-output/screenshots" },
    workflow: { type: "boolean", default: false },
    "primary-endpoint": { type: "string", default: "http://127.0.0.1:9200" },
    "backup-endpoint": { type: "string", default: "http://127.0.0.1:9201/os" },
    "gateway-id": { type: "string", default: "" },
    "gateway-url": { type: "string", default: "" },
    index: { type: "string", default: "console-e2e" },
    timeout: { type: "string", default: "120" },
  },
});
if (!opt.url || !opt.token) {
  console.error("usage: node test/e2e.mjs --url URL --token TOKEN [--screenshots DIR] [--workflow]");
  process.exit(2);
}
mkdirSync(opt.screenshots, { recursive: true });
const timeout = Number(opt.timeout) * 1000;
let passed = 0;
let failed = 0;

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${String(err?.message ?? err).split("\n")[0]}`);
  }
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true });
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const external = [];
page.on("request", (r) => {
  if (!r.url().startsWith(opt.url)) external.push(r.url());
});
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
  if (m.text().includes(opt.token)) consoleErrors.push("the token appeared in the console");
});
const tid = (id) => page.getByTestId(id);
const shot = async (name) => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: join(opt.screenshots, `${name}-1280.png`), fullPage: true });
  await page.setViewportSize({ width: 400, height: 800 });
  await page.screenshot({ path: join(opt.screenshots, `${name}-400.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
};

await step("wrong token is refused", async () => {
  await page.goto(opt.url);
  await tid("signin-token").fill("not-the-token-at-all");
  await tid("signin-submit").click();
  await tid("signin-error").filter({ hasText: "The control plane refused this token" }).waitFor({ timeout: 10000 });
  await shot("signin-refused");
});

await step("right token signs in, by keyboard", async () => {
  await tid("signin-token").fill("");
  await tid("signin-token").focus();
  await page.keyboard.type(opt.token);
  await page.keyboard.press("Enter");
  await tid("nav-overview").waitFor({ timeout: 10000 });
  // Navigation links are reachable and work from the keyboard.
  await tid("nav-clusters").focus();
  await page.keyboard.press("Enter");
  await tid("cluster-name").waitFor({ timeout: 10000 });
  if (page.url().includes(opt.token)) throw new Error("the token is in the URL");
});

/** A request to a cluster or the gateway; fails unless 2xx. */
async function es(method, url, body) {
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Retries `fn` every 500 ms until it resolves or the timeout ran out. */
async function eventually(fn) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

if (opt.workflow) {
  const suffix = Date.now().toString(36);
  const [old, neu, task] = [`old-${suffix}`, `new-${suffix}`, `task-${suffix}`];
  const [primary, backup, gateway, index] = [
    opt["primary-endpoint"],
    opt["backup-endpoint"],
    opt["gateway-url"],
    opt.index,
  ];
  const refused = `${index}-refused`;
  await step("register clusters", async () => {
    await tid("nav-clusters").click();
    await tid("cluster-name").fill("Bad Name");
    await tid("cluster-endpoints").fill(primary);
    await tid("cluster-submit").click();
    await tid("error-cluster-name").waitFor({ timeout: 10000 });
    for (const [name, endpoint] of [
      [old, primary],
      [neu, backup],
    ]) {
      await tid("cluster-name").fill(name);
      await tid("cluster-endpoints").fill(endpoint);
      await tid("cluster-submit").click();
      await tid(`cluster-row-${name}`).waitFor({ timeout: 30000 });
    }
    await shot("clusters-registered");
  });
  await step("the gateway joins the fleet", async () => {
    await tid("nav-gateways").click();
    await tid(`gateway-row-${opt["gateway-id"]}`).waitFor({ timeout: 30000 });
  });
  await step("create a paused task", async () => {
    await tid("nav-overview").click();
    await tid("overview-new-task").click();
    await tid("task-name").fill(task);
    await tid("task-primary").selectOption(old);
    await tid("task-backup").selectOption(neu);
    await tid(`task-gateway-${opt["gateway-id"]}`).check();
    await tid("task-start-paused").check();
    await tid("task-submit").click();
    await tid("task-state").filter({ hasText: /CREATED|PAUSED/ }).waitFor({ timeout: 10000 });
  });
  await step("writes through the paused gateway show as lag", async () => {
    // The backup refuses this index's documents until it is fixed.
    await es("PUT", `${backup}/${refused}`, { mappings: { properties: { n: { type: "integer" } } } });
    for (let i = 0; i < 20; i++) {
      await es("PUT", `${gateway}/${index}/_doc/${i}`, { i, phase: "recorded" });
    }
    await es("PUT", `${gateway}/${refused}/_doc/1`, { n: "not a number" });
    await tid("task-lag-records").filter({ hasText: /^[1-9][0-9]*$/ }).waitFor({ timeout });
    await shot("task-paused");
  });
  await step("start and watch the lag fall to 0", async () => {
    await tid("task-start").click();
    await tid("task-state").filter({ hasText: "RUNNING" }).waitFor({ timeout: 10000 });
    await tid("task-lag-records").filter({ hasText: /^0$/ }).waitFor({ timeout });
    await shot("task");
  });
  await step("retry a dead letter", async () => {
    await tid("task-queue-link").click();
    const row = page.locator('[data-testid="dead-letter-row"][data-state="PENDING"]').first();
    await row.waitFor({ timeout });
    await shot("queue");
    const id = await row.getAttribute("data-id");
    // Fix what the backup refused, then retry from the console.
    await es("DELETE", `${backup}/${refused}`);
    await tid(`dead-letter-retry-${id}`).click();
    await page
      .locator(`[data-testid="dead-letter-row"][data-id="${id}"][data-state="PENDING"]`)
      .waitFor({ state: "detached", timeout });
    // The retry is replayed by the gateway: the document arrives.
    await eventually(() => es("GET", `${backup}/${refused}/_doc/1`));
    await shot("queue-retried");
  });
  const compare = async (name) => {
    await tid("nav-comparisons").click();
    await tid("compare-source").selectOption(old);
    await tid("compare-target").selectOption(neu);
    await tid("compare-include").fill(`${index}*`);
    await tid("compare-recheck-delay").fill("1");
    await tid("compare-submit").click();
    await tid("compare-state").filter({ hasText: "SUCCEEDED" }).waitFor({ timeout });
    await shot(name);
  };
  await step("comparison MATCH", async () => {
    await compare("comparison-match");
    await tid("compare-outcome").filter({ hasText: "MATCH" }).waitFor({ timeout: 10000 });
  });
  await step("a planted difference is listed", async () => {
    await es("PUT", `${backup}/${index}/_doc/planted?refresh=true`, { planted: true });
    await compare("comparison-mismatch");
    await tid("compare-outcome").filter({ hasText: "MISMATCH" }).waitFor({ timeout: 10000 });
    await page.locator('[data-testid="diff-row"][data-doc-id="planted"]').waitFor({ timeout: 10000 });
    // Both sides of the document, read from the clusters.
    await tid("diff-show-documents").check();
    const both = page.locator('[data-testid="diff-documents"][data-doc-id="planted"]');
    await both.getByTestId("diff-target-document").filter({ hasText: '"planted": true' }).waitFor({ timeout: 10000 });
    await both.getByTestId("diff-source-document").filter({ hasText: "absent" }).waitFor({ timeout: 10000 });
    await shot("comparison-documents");
    await es("DELETE", `${backup}/${index}/_doc/planted?refresh=true`);
  });
  await step("cutover and rollback through the confirmation", async () => {
    await tid("nav-overview").click();
    await tid(`task-link-${task}`).click();
    await tid("task-cutover").click();
    await tid("confirm-preconditions").waitFor();
    await shot("cutover-confirmation");
    await tid("confirm-ok").click();
    await tid("task-direction").filter({ hasText: "REVERSED" }).waitFor({ timeout });
    await es("PUT", `${gateway}/${index}/_doc/after-cutover`, { phase: "reversed" });
    await tid("task-rollback").click();
    await tid("confirm-ok").click();
    await tid("task-direction").filter({ hasText: "FORWARD" }).waitFor({ timeout });
    await es("PUT", `${gateway}/${index}/_doc/after-rollback`, { phase: "rolled back" });
  });
}

for (const view of ["overview", "clusters", "gateways", "queue", "migrations", "comparisons"]) {
  await step(`view ${view}`, async () => {
    await tid(`nav-${view}`).click();
    await page.locator("main h1").first().waitFor({ timeout: 10000 });
    await page.waitForTimeout(1000);
    await shot(view);
  });
}

await step("sign out", async () => {
  await tid("signout").click();
  await tid("signin-token").waitFor();
});
await step("no external fetch, no console error", async () => {
  if (external.length) throw new Error(`external requests: ${external.join(", ")}`);
  if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(" | ")}`);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
