// Browser test of the console with playwright-core and the system Chromium
// (never downloads a browser): signs in with a wrong token (expects the
// refusal), then with the right one, screenshots every view at 1280x800 and
// 400x800, and with --workflow drives the whole workflow through the UI.
//
//   node test/e2e.mjs --url http://127.0.0.1:8088 --token TOKEN \
//        [--screenshots DIR] [--workflow --primary-endpoint URL --backup-endpoint URL]
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

await step("right token signs in", async () => {
  await tid("signin-token").fill(opt.token);
  await tid("signin-submit").click();
  await tid("nav-overview").waitFor({ timeout: 10000 });
  if (page.url().includes(opt.token)) throw new Error("the token is in the URL");
});

if (opt.workflow) {
  const suffix = Date.now().toString(36);
  const [old, neu, task] = [`old-${suffix}`, `new-${suffix}`, `task-${suffix}`];
  await step("register clusters", async () => {
    await tid("nav-clusters").click();
    await tid("cluster-name").fill("Bad Name");
    await tid("cluster-endpoints").fill(opt["primary-endpoint"]);
    await tid("cluster-submit").click();
    await tid("error-cluster-name").waitFor({ timeout: 10000 });
    for (const [name, endpoint] of [
      [old, opt["primary-endpoint"]],
      [neu, opt["backup-endpoint"]],
    ]) {
      await tid("cluster-name").fill(name);
      await tid("cluster-endpoints").fill(endpoint);
      await tid("cluster-submit").click();
      await tid(`cluster-row-${name}`).waitFor({ timeout: 30000 });
    }
  });
  await step("create a paused task", async () => {
    await tid("nav-overview").click();
    await tid("overview-new-task").click();
    await tid("task-name").fill(task);
    await tid("task-primary").selectOption(old);
    await tid("task-backup").selectOption(neu);
    await page.locator('[data-testid^="task-gateway-"]').first().check();
    await tid("task-start-paused").check();
    await tid("task-submit").click();
    await tid("task-state").filter({ hasText: "CREATED" }).waitFor({ timeout: 10000 });
  });
  await step("start and watch the lag reach 0", async () => {
    await tid("task-start").click();
    await tid("task-state").filter({ hasText: "RUNNING" }).waitFor({ timeout: 10000 });
    await tid("task-lag-records").filter({ hasText: /^0$/ }).waitFor({ timeout });
    await shot("task");
  });
  await step("retry a dead letter", async () => {
    await tid("task-queue-link").click();
    const row = page.locator('[data-testid="dead-letter-row"][data-state="PENDING"]').first();
    await row.waitFor({ timeout: 10000 });
    const id = await row.getAttribute("data-id");
    await tid(`dead-letter-retry-${id}`).click();
    await page.locator(`[data-testid="dead-letter-row"][data-id="${id}"]`).waitFor({ state: "detached", timeout });
    await shot("queue");
    await page.goBack();
  });
  await step("comparison MATCH", async () => {
    await tid("nav-comparisons").click();
    await tid("compare-source").selectOption(old);
    await tid("compare-target").selectOption(neu);
    await tid("compare-recheck-delay").fill("1");
    await tid("compare-submit").click();
    await tid("compare-outcome").filter({ hasText: "MATCH" }).waitFor({ timeout });
    await shot("comparison");
  });
  await step("cutover and rollback through the confirmation", async () => {
    await tid("nav-overview").click();
    await tid(`task-link-${task}`).click();
    await tid("task-cutover").click();
    await tid("confirm-preconditions").waitFor();
    await tid("confirm-ok").click();
    await tid("task-direction").filter({ hasText: "REVERSED" }).waitFor({ timeout });
    await tid("task-rollback").click();
    await tid("confirm-ok").click();
    await tid("task-direction").filter({ hasText: "FORWARD" }).waitFor({ timeout });
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
