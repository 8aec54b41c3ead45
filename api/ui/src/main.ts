// signalbox's dashboard: the live service graph, releases and proxies.

import "./style.css";
import "uplot/dist/uPlot.min.css";
import { currentToken, onTokenChange, setToken } from "./api";
import { clock, defaultThresholds, loadThresholds, saveThresholds, type Thresholds } from "./format";
import { GraphView } from "./graph";
import { onLayoutEngineReady, startLayoutEngine } from "./layout";
import { syntheticGraph } from "./model";
import type { ProxiesView, ReleasesView } from "./panes";
import type { Boot, Graph } from "./types";

declare global {
  interface Window {
    __signalbox: unknown;
    /** set by boot.ts, the page's first script */
    __signalboxBoot?: Boot;
  }
}

/** When the page's milestones happened (ms after navigation start), for the tests and the curious. */
const timings: Record<string, number> = { script: Math.round(performance.now()) };
const mark = (name: string): void => {
  if (!(name in timings)) timings[name] = Math.round(performance.now());
};

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

// Long tasks (over 50 ms on the main thread), for the tests and the curious.
const longTasks: { start: number; duration: number }[] = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) longTasks.push({ start: Math.round(e.startTime), duration: Math.round(e.duration) });
  }).observe({ type: "longtask", buffered: true });
} catch {
  // Not every browser reports long tasks.
}

const workerUrl = document.querySelector<HTMLMetaElement>('meta[name="signalbox-elk-worker"]')?.content ?? "";
onLayoutEngineReady(() => mark("layoutEngineReady"));

let thresholds: Thresholds = loadThresholds();
const graph = new GraphView($("cy"), $("details"), thresholds);
mark("graphView");
// ELK's worker compiles 1.6 MB of code, and the Releases and Proxies panes
// (with uPlot) are a chunk of their own: they load once the first graph is
// on screen (the quick layout draws that one), or after 1.5 s, so that they
// do not compete with the first paint for the processor.
graph.onFirstRender = () => {
  startLayoutEngine(workerUrl);
  void loadPanes();
};
window.setTimeout(() => {
  startLayoutEngine(workerUrl);
  void loadPanes();
}, 1500);

// The Releases and Proxies panes, once loaded.
let releases: ReleasesView | null = null;
let proxies: ProxiesView | null = null;
let panesLoad: Promise<void> | null = null;
function loadPanes(): Promise<void> {
  panesLoad ??= import("./panes").then(({ ReleasesView, ProxiesView }) => {
    releases = new ReleasesView($("pane-releases"));
    proxies = new ProxiesView($("pane-proxies"));
    releases.onCount = (n) => {
      const b = $("badge-releases");
      b.hidden = n === 0;
      b.textContent = String(n);
    };
    proxies.onCount = (n, nacking) => {
      const b = $("badge-proxies");
      b.hidden = n === 0;
      b.textContent = String(n);
      b.classList.toggle("bad", nacking > 0);
    };
    mark("panes");
    pollPanes(currentPane());
  }, (err: unknown) => {
    // Another try on the next tab change (signalbox may have been restarting).
    panesLoad = null;
    console.error("signalbox: the Releases and Proxies panes did not load", err);
  });
  return panesLoad;
}

// Panes, chosen by the URL's fragment.
type Pane = "graph" | "releases" | "proxies";
const panes: Pane[] = ["graph", "releases", "proxies"];
function currentPane(): Pane {
  const p = location.hash.slice(1) as Pane;
  return panes.includes(p) ? p : "graph";
}
function showPane(): void {
  const cur = currentPane();
  for (const p of panes) {
    $("pane-" + p).hidden = p !== cur;
    $("tab-" + p).classList.toggle("active", p === cur);
    $("tab-" + p).setAttribute("aria-selected", String(p === cur));
  }
  if (cur === "graph") graph.cy.resize();
  else if (!releases) void loadPanes(); // it starts their polling
  pollPanes(cur);
}
/** pollPanes starts the panes' polling: often for the one shown, seldom (for the tabs' badges) for the other. */
function pollPanes(cur: Pane): void {
  releases?.start(cur === "releases" ? 1000 : 5000);
  proxies?.start(cur === "proxies" ? 2000 : 10000);
}
window.addEventListener("hashchange", showPane);

// The token.
function showToken(): void {
  $("token-state").textContent = currentToken() ? "set" : "none";
}
$("token-button").addEventListener("click", () => {
  const panel = $("token-panel");
  panel.hidden = !panel.hidden;
  if (!panel.hidden) $<HTMLInputElement>("token-input").focus();
});
$("token-panel").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken($<HTMLInputElement>("token-input").value.trim());
  $<HTMLInputElement>("token-input").value = "";
  $("token-panel").hidden = true;
});
$("token-clear").addEventListener("click", () => {
  setToken("");
  $("token-panel").hidden = true;
});
onTokenChange(() => {
  showToken();
  void releases?.refresh();
});
showToken();

// Search and filters.
$<HTMLInputElement>("search").addEventListener("input", (ev) => graph.setFilters({ search: (ev.target as HTMLInputElement).value }));
for (const [id, key] of [["only-matches", "onlyMatches"], ["unhealthy-only", "unhealthyOnly"], ["hide-idle", "hideIdle"]] as const) {
  $<HTMLInputElement>(id).addEventListener("change", (ev) => graph.setFilters({ [key]: (ev.target as HTMLInputElement).checked }));
}
$("fit").addEventListener("click", () => graph.fit());
$("relayout").addEventListener("click", () => graph.relayout());
graph.onLayoutState = (state) => {
  const el = $("layout-state");
  el.textContent = state === "running" ? "refining the layout (ELK, in the background)…" : state === "ready" ? "ELK's layout is ready: Re-layout applies it" : "";
  $("relayout").classList.toggle("ready", state === "ready");
};
$("expand-all").addEventListener("click", () => {
  const services = [...graph.view.nodes.values()].filter((n) => n.kind !== "version" && n.versions.length > 0).map((n) => n.service);
  const all = services.length > 0 && services.every((s) => graph.expanded.has(s));
  for (const s of services) if (all === graph.expanded.has(s)) graph.toggle(s);
});

// Thresholds.
const tform = $<HTMLFormElement>("thresholds");
function showThresholds(): void {
  (tform.elements.namedItem("errWarn") as HTMLInputElement).value = String(+(thresholds.errWarn * 100).toFixed(4));
  (tform.elements.namedItem("errCrit") as HTMLInputElement).value = String(+(thresholds.errCrit * 100).toFixed(4));
  (tform.elements.namedItem("p99Warn") as HTMLInputElement).value = String(thresholds.p99Warn);
  (tform.elements.namedItem("p99Crit") as HTMLInputElement).value = String(thresholds.p99Crit);
}
function useThresholds(t: Thresholds): void {
  thresholds = t;
  saveThresholds(t);
  showThresholds();
  graph.setThresholds(t);
}
tform.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const num = (name: string): number => Number((tform.elements.namedItem(name) as HTMLInputElement).value);
  const t = { errWarn: num("errWarn") / 100, errCrit: num("errCrit") / 100, p99Warn: num("p99Warn"), p99Crit: num("p99Crit") };
  if (Object.values(t).every((v) => Number.isFinite(v) && v >= 0)) useThresholds(t);
});
$("thresholds-reset").addEventListener("click", () => useThresholds({ ...defaultThresholds }));
showThresholds();

// The graph: two streams (by service, by version) over the chosen window.
const windowSelect = $<HTMLSelectElement>("window");
// ?window=1m wins over the window chosen last time.
try {
  const w = new URLSearchParams(location.search).get("window") ?? localStorage.getItem("signalbox.window");
  if (w && [...windowSelect.options].some((o) => o.value === w)) windowSelect.value = w;
} catch {
  // The default window.
}

function showService(g: Graph): void {
  graph.setServiceGraph(g);
  const n = (k: number, one: string, many: string): string => `${k} ${k === 1 ? one : many}`;
  $("graph-info").textContent = `${n(g.nodes.length, "service", "services")} · ${n(g.edges.length, "call", "calls")} · window ${g.window} · ${clock(new Date(g.generatedAt))}`;
}

let streams: EventSource[] = [];
let connected = false;
let lastEvent = 0;
function connect(): void {
  for (const s of streams) s.close();
  connected = true;
  const win = windowSelect.value;
  mark("connect");
  const open = (by: "service" | "version", apply: (g: Graph) => void): EventSource => {
    const query = `window=${encodeURIComponent(win)}&by=${by}`;
    const es = new EventSource(`/api/v1/graph/stream?${query}`);
    es.addEventListener("open", () => mark("open:" + by));
    es.addEventListener("graph", (ev) => {
      lastEvent = Date.now();
      mark("firstEvent:" + by);
      setLive("live");
      apply(JSON.parse((ev as MessageEvent<string>).data) as Graph);
    });
    es.addEventListener("error", () => setLive(es.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
    // The server could not make the graph: say so until the next one.
    es.addEventListener("graph-error", (ev) => {
      let why = "the graph could not be made";
      try {
        why = (JSON.parse((ev as MessageEvent<string>).data) as { error?: string }).error ?? why;
      } catch {
        // The default text.
      }
      setLive("failing", why);
    });
    return es;
  };
  streams = [open("service", showService), open("version", (g) => graph.setVersionGraph(g))];
}
function setLive(state: "live" | "reconnecting" | "closed" | "stale" | "fixture" | "failing", why = ""): void {
  const el = $("live");
  el.className = "live " + state;
  el.textContent = { live: "live", reconnecting: "reconnecting…", closed: "disconnected", stale: "stale", fixture: "fixture", failing: "no graph" }[state];
  el.title = why;
}
windowSelect.addEventListener("change", () => {
  try {
    localStorage.setItem("signalbox.window", windowSelect.value);
  } catch {
    // Kept for this page only.
  }
  connect();
});
window.setInterval(() => {
  if (lastEvent && Date.now() - lastEvent > 12000 && $("live").classList.contains("live")) setLive("stale");
}, 2000);

/** after resolves with null after ms milliseconds. */
const after = (ms: number): Promise<null> => new Promise((resolve) => window.setTimeout(() => resolve(null), ms));

/**
 * start draws the graph boot.ts asked for (before this script had even
 * loaded), then opens the streams, once that graph is on screen: they
 * would only compete with its drawing for the processor. Without boot's
 * graph (another window chosen, no answer, or none within 3 s), the
 * streams open at once.
 */
async function start(): Promise<void> {
  const boot = window.__signalboxBoot;
  const win = windowSelect.value;
  if (boot && boot.window === win) {
    Object.assign(timings, boot.timings);
    const [svc, ver] = (await Promise.race([boot.graphs, after(3000)])) ?? [];
    Object.assign(timings, boot.timings);
    // The window may have changed meanwhile, and the streams with it.
    if (svc && !connected && windowSelect.value === win) {
      mark("bootData");
      const painted = graph.nextPaint();
      showService(svc);
      if (ver) graph.setVersionGraph(ver);
      graph.flush();
      await Promise.race([painted, after(3000)]);
    }
  }
  if (!connected) connect();
}

// ?fixture=<same-origin URL of a Graph JSON> or ?fixture=synthetic:<nodes>,<edges> draws that instead of the streams.
const fixture = new URLSearchParams(location.search).get("fixture");
async function loadFixture(spec: string): Promise<void> {
  setLive("fixture");
  let g: Graph;
  const m = /^synthetic:(\d+),(\d+)$/.exec(spec);
  if (m) g = syntheticGraph(Number(m[1]), Number(m[2]));
  else {
    const resp = await fetch(spec);
    g = (await resp.json()) as Graph;
  }
  $("graph-info").textContent = `fixture: ${g.nodes.length} nodes · ${g.edges.length} edges`;
  await graph.show(g);
}

// The hook for tests and the curious.
window.__signalbox = {
  graph,
  cy: graph.cy,
  /** the Releases pane (null until the panes load, just after the first graph) */
  get releases() {
    return releases;
  },
  get proxies() {
    return proxies;
  },
  longTasks,
  timings,
  get renders() {
    return graph.renders;
  },
  /** ms after navigation start when the first graph with nodes was on screen (0: not yet) */
  get firstRenderAt() {
    return graph.firstRenderAt;
  },
  snapshot: () => graph.snapshot(),
  show: (g: Graph) => graph.show(g),
  synthetic: (n: number, m: number) => syntheticGraph(n, m),
  expand: (service: string): void => {
    if (!graph.expanded.has(service)) graph.toggle(service);
  },
  select: (id: string): void => {
    graph.cy.getElementById(id).emit("tap");
  },
};

if (fixture) void loadFixture(fixture);
else void start();
showPane();
mark("ready");
