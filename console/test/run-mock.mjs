// Bundles test/mock-server.ts with esbuild (into test-output/) and runs it.
//   node test/run-mock.mjs [--port 8088] [--token TOKEN]
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const dir = dirname(fileURLToPath(import.meta.url));
const out = join(dir, "..", "test-output", "mock-server.mjs");
await build({
  entryPoints: [join(dir, "mock-server.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outfile: out,
  logLevel: "warning",
  banner: { js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);" },
});
process.argv.push("--dist", join(dir, "..", "dist"));
await import(out);
