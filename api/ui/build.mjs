// Builds the dashboard into dist/, which api/ui.go embeds in the binary:
//   dist/index.html                 (no-cache; names the assets below)
//   dist/ui/app-<hash>.js, .css     (bundled and minified by esbuild)
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

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: process.env.SIGNALBOX_UI_DEV !== "1",
  format: "esm",
  target: ["es2022", "chrome100", "firefox100", "safari15"],
  outdir: assets,
  entryNames: "[name]-[hash]",
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => path.basename(p));
const js = outputs.find((f) => /^app-.*\.js$/.test(f));
const css = outputs.find((f) => /^app-.*\.css$/.test(f));
if (!js || !css) throw new Error("esbuild did not write app-*.js and app-*.css: " + outputs.join(", "));

const worker = await readFile(path.join(here, "node_modules/elkjs/lib/elk-worker.min.js"));
const workerName = `elk-worker-${createHash("sha256").update(worker).digest("hex").slice(0, 8)}.js`;
await writeFile(path.join(assets, workerName), worker);

const html = (await readFile(path.join(here, "src/index.html"), "utf8"))
  .replaceAll("%JS%", "/ui/" + js)
  .replaceAll("%CSS%", "/ui/" + css)
  .replaceAll("%ELK%", "/ui/" + workerName);
await writeFile(path.join(dist, "index.html"), html);

let total = 0;
let totalGz = 0;
for (const f of (await readdir(assets)).sort()) {
  const data = await readFile(path.join(assets, f));
  if (!/\.(js|css)$/.test(f)) {
    console.log(`  ui/${f}`);
    continue;
  }
  const gz = gzipSync(data, { level: 9 });
  await writeFile(path.join(assets, f + ".gz"), gz);
  total += data.length;
  totalGz += gz.length;
  console.log(`  ui/${f.padEnd(36)} ${(data.length / 1024).toFixed(0).padStart(6)} KiB  (${(gz.length / 1024).toFixed(0)} KiB gzipped)`);
}
console.log(`dashboard built into ${path.relative(process.cwd(), dist) || "."}/: ${(total / 1024).toFixed(0)} KiB, ${(totalGz / 1024).toFixed(0)} KiB gzipped`);
