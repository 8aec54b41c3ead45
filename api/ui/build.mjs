// Builds the dashboard into dist/, which api/ui.go embeds in the binary:
//   dist/index.html                 (no-cache; names the assets below)
//   dist/ui/boot-<hash>.js          (the page's first script, a classic one: it asks for the graph at once)
//   dist/ui/app-<hash>.js, .css     (the app, bundled and minified by esbuild: what draws the first graph)
//   dist/ui/chunk-<hash>.js         (code the app shares with its lazy chunks)
//   dist/ui/panes-<hash>.js         (Releases and Proxies, with uPlot: loaded after the first graph)
//   dist/ui/elk-worker-<hash>.js    (ELK's layout worker, as elkjs ships it)
//   dist/ui/*.js.gz, *.css.gz       (gzipped copies, served when accepted)
//   dist/ui/*.LEGAL.txt             (the bundled libraries' licence notices)
// Asset names carry a content hash, so they are cached for good.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
const assets = path.join(dist, "ui");

// Everything but the committed placeholder goes.
await mkdir(dist, { recursive: true });
for (const f of await readdir(dist)) {
  if (f !== "README.txt") await rm(path.join(dist, f), { recursive: true, force: true });
}
await mkdir(assets, { recursive: true });

const options = {
  absWorkingDir: here,
  bundle: true,
  minify: process.env.SIGNALBOX_UI_DEV !== "1",
  target: ["es2022", "chrome100", "firefox100", "safari15"],
  outdir: assets,
  entryNames: "[name]-[hash]",
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
};
// boot.ts is a classic script of its own, first in the page's head: it asks
// for the graph while the app downloads and compiles.
const boot = await esbuild.build({ ...options, entryPoints: { boot: "src/boot.ts" }, format: "iife" });
const result = await esbuild.build({
  ...options,
  entryPoints: { app: "src/main.ts" },
  // Dynamic imports (the panes) become chunks of their own.
  splitting: true,
  format: "esm",
  chunkNames: "[name]-[hash]",
});

// The outputs by what they are.
const outputs = result.metafile.outputs;
const name = (p) => path.basename(p);
const appOut = Object.keys(outputs).find((p) => outputs[p].entryPoint === "src/main.ts" && p.endsWith(".js"));
const bootOut = Object.keys(boot.metafile.outputs).find((p) => p.endsWith(".js"));
const cssOut = appOut && outputs[appOut].cssBundle;
if (!appOut || !bootOut || !cssOut) throw new Error("esbuild did not write app-*.js, app-*.css and boot-*.js: " + Object.keys(outputs).map(name).join(", "));
// What the app needs before it runs (its static imports, transitively), all
// preloaded; the rest (its dynamic imports) it loads later.
const initial = new Set();
const visit = (p) => {
  if (initial.has(p)) return;
  initial.add(p);
  for (const i of outputs[p].imports) if (i.kind === "import-statement") visit(i.path);
};
visit(appOut);
const preload = [...initial].map((p) => `<link rel="modulepreload" href="/ui/${name(p)}">`).join("\n");

const worker = await readFile(path.join(here, "node_modules/elkjs/lib/elk-worker.min.js"));
const workerName = `elk-worker-${createHash("sha256").update(worker).digest("hex").slice(0, 8)}.js`;
await writeFile(path.join(assets, workerName), worker);

const html = (await readFile(path.join(here, "src/index.html"), "utf8"))
  .replaceAll("%PRELOAD%", preload)
  .replaceAll("%BOOT%", "/ui/" + name(bootOut))
  .replaceAll("%JS%", "/ui/" + name(appOut))
  .replaceAll("%CSS%", "/ui/" + name(cssOut))
  .replaceAll("%ELK%", "/ui/" + workerName);
await writeFile(path.join(dist, "index.html"), html);

const first = new Set([...initial, bootOut, cssOut].map(name));
const kib = (n) => (n / 1024).toFixed(0);
const sums = { first: [0, 0], later: [0, 0] };
for (const f of (await readdir(assets)).sort()) {
  const data = await readFile(path.join(assets, f));
  if (!/\.(js|css)$/.test(f)) {
    console.log(`  ui/${f}`);
    continue;
  }
  const gz = gzipSync(data, { level: 9 });
  await writeFile(path.join(assets, f + ".gz"), gz);
  const when = first.has(f) ? "first" : "later";
  if (f !== workerName) {
    sums[when][0] += data.length;
    sums[when][1] += gz.length;
  }
  const what = f === workerName ? "the layout worker, after the first graph" : when === "first" ? "before the first graph" : "loaded after the first graph";
  console.log(`  ui/${f.padEnd(36)} ${kib(data.length).padStart(6)} KiB  (${kib(gz.length).padStart(4)} KiB gzipped)  ${what}`);
}
console.log(`dashboard built into ${path.relative(process.cwd(), dist) || "."}/: ${kib(sums.first[0])} KiB before the first graph (${kib(sums.first[1])} KiB gzipped), ${kib(sums.later[0])} KiB after it (${kib(sums.later[1])} KiB gzipped), and the layout worker`);
