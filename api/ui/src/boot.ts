// The page's first script: a few hundred bytes that ask for the graph at
// once, so that signalbox computes it and the browser receives it while
// the app's bundle (mostly Cytoscape) downloads and compiles; the app then
// draws it without waiting for the live stream's first message.
//
// It is a classic script of its own (build.mjs), first in the page's head:
// it runs as soon as it arrives, before the page is laid out, where an
// async module waited for that layout, and the answer then often came after
// the app was ready. It imports nothing, so that it stays one small file.
// The app works without it (it then opens the streams at once).

import type { Boot, Graph } from "./types";

// The windows the page offers (index.html's select) and its default.
const windows = ["1m", "5m", "15m"];
const fallback = "5m";

function chosenWindow(q: URLSearchParams): string {
  let w: string | null = null;
  try {
    w = q.get("window") ?? localStorage.getItem("signalbox.window");
  } catch {
    // No storage: the URL or the default.
    w = q.get("window");
  }
  return w && windows.includes(w) ? w : fallback;
}

function fetchGraph(win: string, by: "service" | "version"): Promise<Graph | null> {
  return fetch(`/api/v1/graph?window=${encodeURIComponent(win)}&by=${by}`, { headers: { Accept: "application/json" }, cache: "no-store" })
    .then((r) => (r.ok ? (r.json() as Promise<Graph>) : null))
    .catch(() => null);
}

const q = new URLSearchParams(location.search);
// A fixture draws no live graph.
if (!q.has("fixture")) {
  const win = chosenWindow(q);
  const timings: Record<string, number> = { boot: Math.round(performance.now()) };
  const boot: Boot = {
    window: win,
    timings,
    graphs: Promise.all([fetchGraph(win, "service"), fetchGraph(win, "version")]).then((gs) => {
      timings.bootFetched = Math.round(performance.now());
      return gs;
    }),
  };
  (window as unknown as { __signalboxBoot?: Boot }).__signalboxBoot = boot;
}
