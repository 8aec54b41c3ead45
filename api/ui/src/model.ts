// What the graph pane draws, from the service graph and the version graph.
//
// Collapsed services are one node each, with the service graph's edges
// (exact quantiles). A service expanded to its versions is a group of
// version nodes; the edges touching it come from the version graph, summed
// where the other end is collapsed (their quantiles are then the largest of
// the summed edges': an upper bound, marked approx).

import type { Graph, GraphEdge, GraphNode } from "./types";

export interface VNode {
  /** "s:<service>" or "v:<service@version>" */
  id: string;
  kind: "service" | "version" | "group";
  service: string;
  version?: string;
  parent?: string;
  rps: number;
  errorRate: number;
  /** the versions the version graph knows of the service (services and groups) */
  versions: GraphNode[];
}

/** VEdge is a drawn edge: the API's edge (summed, for a service edge) with its id. */
export interface VEdge extends GraphEdge {
  id: string;
  /** the quantiles are an upper bound over several version edges */
  approx: boolean;
  /** the version-level edges behind it, for the per-version split */
  parts: GraphEdge[];
}

export interface View {
  nodes: Map<string, VNode>;
  edges: Map<string, VEdge>;
}

export const serviceNodeId = (service: string): string => "s:" + service;
export const versionNodeId = (versionGraphId: string): string => "v:" + versionGraphId;

export function buildView(svc: Graph | null, ver: Graph | null, expanded: ReadonlySet<string>): View {
  const nodes = new Map<string, VNode>();
  const edges = new Map<string, VEdge>();

  const svcNodes = new Map<string, GraphNode>();
  for (const n of svc?.nodes ?? []) svcNodes.set(n.id, n);
  const verNodes = new Map<string, GraphNode>();
  const versionsOf = new Map<string, GraphNode[]>();
  for (const n of ver?.nodes ?? []) {
    verNodes.set(n.id, n);
    const list = versionsOf.get(n.service);
    if (list) list.push(n);
    else versionsOf.set(n.service, [n]);
  }
  for (const list of versionsOf.values()) list.sort((a, b) => compareNames(a.version ?? "", b.version ?? ""));

  const services = new Set<string>([...svcNodes.keys(), ...versionsOf.keys()]);
  const addService = (s: string): void => {
    const sn = svcNodes.get(s);
    const vs = versionsOf.get(s) ?? [];
    let rps = 0;
    let errorRate = 0;
    if (sn) {
      rps = sn.rps;
      errorRate = sn.errorRate;
    } else if (vs.length) {
      let errs = 0;
      for (const v of vs) {
        rps += v.rps;
        errs += v.rps * v.errorRate;
      }
      errorRate = rps > 0 ? errs / rps : 0;
    }
    const group = expanded.has(s) && vs.length > 0;
    nodes.set(serviceNodeId(s), { id: serviceNodeId(s), kind: group ? "group" : "service", service: s, rps, errorRate, versions: vs });
    if (group) {
      for (const v of vs) {
        const id = versionNodeId(v.id);
        nodes.set(id, { id, kind: "version", service: s, version: v.version ?? "", parent: serviceNodeId(s), rps: v.rps, errorRate: v.errorRate, versions: [] });
      }
    }
  };
  for (const s of [...services].sort()) addService(s);

  const serviceOf = (verId: string): string => verNodes.get(verId)?.service ?? verId.split("@")[0];
  const mapVersion = (verId: string): string => {
    const s = serviceOf(verId);
    const id = versionNodeId(verId);
    return expanded.has(s) && nodes.has(id) ? id : serviceNodeId(s);
  };
  const ensure = (id: string): void => {
    if (!nodes.has(id) && id.startsWith("s:")) addService(id.slice(2));
  };

  // Version edges by the displayed ends they join.
  const parts = new Map<string, GraphEdge[]>();
  for (const e of ver?.edges ?? []) {
    const key = `${mapVersion(e.source)}>${mapVersion(e.target)}/${e.protocol}`;
    const list = parts.get(key);
    if (list) list.push(e);
    else parts.set(key, [e]);
  }
  const isGroup = (id: string): boolean => nodes.get(id)?.kind === "group";

  for (const e of svc?.edges ?? []) {
    const src = serviceNodeId(e.source);
    const tgt = serviceNodeId(e.target);
    ensure(src);
    ensure(tgt);
    if (isGroup(src) || isGroup(tgt)) continue;
    const key = `${src}>${tgt}/${e.protocol}`;
    edges.set("e:" + key, { ...e, id: "e:" + key, source: src, target: tgt, approx: false, parts: parts.get(key) ?? [] });
  }
  for (const [key, ps] of parts) {
    const id = "e:" + key;
    if (edges.has(id)) continue;
    const [ends, protocol] = [key.slice(0, key.lastIndexOf("/")), key.slice(key.lastIndexOf("/") + 1)];
    const [src, tgt] = ends.split(">");
    // A collapsed pair the service graph does not have (yet): sum the parts.
    ensure(src);
    ensure(tgt);
    edges.set(id, sumEdges(id, src, tgt, protocol, ps));
  }
  return { nodes, edges };
}

// Names made of lower-case letters, digits, dots and dashes sort alike by
// code point and by localeCompare (the root collation orders - . digits
// letters as ASCII does): those skip localeCompare, whose first call loads
// the collation data, tens of milliseconds as the first graph is drawn.
const plainName = /^[0-9a-z.-]*$/;

/** compareNames orders names as localeCompare does. */
function compareNames(a: string, b: string): number {
  if (plainName.test(a) && plainName.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return a.localeCompare(b);
}

function sumEdges(id: string, source: string, target: string, protocol: string, ps: GraphEdge[]): VEdge {
  const e: VEdge = {
    id, source, target, protocol, requests: 0, errors: 0, bytes: 0, rps: 0, errorRate: 0, byClass: {},
    p50Ms: 0, p95Ms: 0, p99Ms: 0, approx: ps.length > 1, parts: ps,
  };
  for (const p of ps) {
    e.requests += p.requests;
    e.errors += p.errors;
    e.bytes += p.bytes;
    e.rps += p.rps;
    for (const [k, v] of Object.entries(p.byClass ?? {})) e.byClass[k] = (e.byClass[k] ?? 0) + v;
    if (p.requests > 0) {
      e.p50Ms = Math.max(e.p50Ms, p.p50Ms);
      e.p95Ms = Math.max(e.p95Ms, p.p95Ms);
      e.p99Ms = Math.max(e.p99Ms, p.p99Ms);
    }
  }
  e.errorRate = e.requests > 0 ? e.errors / e.requests : 0;
  return e;
}

/** A layered synthetic graph of n services and m edges, for trying the page at scale (?fixture=synthetic:1000,2000). */
export function syntheticGraph(n: number, m: number, seed = 1): Graph {
  let s = seed >>> 0;
  const rand = (): number => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const layers = Math.max(2, Math.round(Math.sqrt(n) / 2.5));
  const names: string[] = [];
  const layerOf: number[] = [];
  const byLayer: number[][] = Array.from({ length: layers }, () => []);
  for (let i = 0; i < n; i++) {
    names.push("svc-" + String(i).padStart(4, "0"));
    const l = i < layers ? i : Math.floor(rand() * layers);
    layerOf.push(l);
    byLayer[l].push(i);
  }
  const seen = new Set<string>();
  const edges: GraphEdge[] = [];
  const inRps = new Array<number>(n).fill(0);
  const inErr = new Array<number>(n).fill(0);
  for (let tries = 0; edges.length < m && tries < m * 20; tries++) {
    const a = Math.floor(rand() * n);
    if (layerOf[a] >= layers - 1) continue;
    const tl = Math.min(layers - 1, layerOf[a] + 1 + Math.floor(rand() * 2));
    const pool = byLayer[tl];
    const b = pool[Math.floor(rand() * pool.length)];
    const key = a + ">" + b;
    if (seen.has(key)) continue;
    seen.add(key);
    const r = Math.round(Math.exp(rand() * 6) * 100) / 100;
    const er = rand() < 0.08 ? rand() * 0.12 : rand() * 0.004;
    const requests = Math.round(r * 300);
    const errors = Math.round(requests * er);
    const p50 = 2 + rand() * 40;
    edges.push({
      source: names[a], target: names[b], protocol: rand() < 0.7 ? "grpc" : "http", requests, errors, bytes: 0,
      rps: r, errorRate: requests ? errors / requests : 0,
      byClass: { "2xx": requests - errors, "3xx": 0, "4xx": 0, "5xx": errors, connFailure: 0 },
      p50Ms: p50, p95Ms: p50 * (2 + rand() * 3), p99Ms: p50 * (4 + rand() * 30),
    });
    inRps[b] += r;
    inErr[b] += r * (requests ? errors / requests : 0);
  }
  return {
    generatedAt: new Date().toISOString(), window: "5m0s",
    nodes: names.map((name, i) => ({ id: name, service: name, rps: inRps[i], errorRate: inRps[i] ? inErr[i] / inRps[i] : 0 })),
    edges,
  };
}
