// The layered layout: ELK's "layered" algorithm (Sugiyama), run in a Web
// Worker so a graph of thousands of elements never blocks the page.

import ELK from "elkjs/lib/elk-api.js";
import type { ElkNode, ElkExtendedEdge, LayoutOptions } from "elkjs/lib/elk-api.js";
import type { View } from "./model";

export interface Size { w: number; h: number }
export type Positions = Map<string, { x: number; y: number }>;

let engine: InstanceType<typeof ELK> | null = null;
let ready = false;
const readyListeners: (() => void)[] = [];

/** startLayoutEngine loads the layout worker at once, so that it is compiled by the time data comes. */
export function startLayoutEngine(workerUrl: string): void {
  if (engine) return;
  engine = new ELK({ workerUrl });
  // A first, empty layout tells when the worker has loaded.
  void engine.layout({ id: "warmup", children: [] }).then(() => {
    ready = true;
    for (const f of readyListeners.splice(0)) f();
  }, (err: unknown) => console.error("signalbox: the layout worker failed to start", err));
}

/** layoutEngineReady reports whether ELK's worker has loaded (it takes a second or so on a slow machine). */
export function layoutEngineReady(): boolean {
  return ready;
}

export function onLayoutEngineReady(f: () => void): void {
  if (ready) f();
  else readyListeners.push(f);
}

/**
 * layout places the view's leaf nodes (centres, absolute). previous, the
 * positions on screen now, keeps the order of the nodes that stay: ELK
 * considers the model order, which follows them.
 */
export async function layout(view: View, size: (id: string) => Size, previous: Positions): Promise<Positions> {
  if (!engine) throw new Error("the layout engine is not started");
  const big = view.nodes.size > 300;
  const rootOptions: LayoutOptions = {
    "elk.algorithm": "layered",
    "elk.direction": "RIGHT",
    "elk.hierarchyHandling": "INCLUDE_CHILDREN",
    "elk.edgeRouting": "POLYLINE",
    // Room for the edge labels between the layers, unless there are too many to show.
    "elk.layered.spacing.nodeNodeBetweenLayers": big ? "110" : "210",
    "elk.spacing.nodeNode": "26",
    "elk.spacing.componentComponent": "50",
    // Model order keeps the order of the nodes that stay; it costs too much on big graphs.
    "elk.layered.considerModelOrder.strategy": big ? "NONE" : "NODES_AND_EDGES",
    "elk.layered.crossingMinimization.forceNodeModelOrder": "false",
    "elk.layered.thoroughness": big ? "1" : "7",
    "elk.layered.nodePlacement.strategy": big ? "SIMPLE" : "BRANDES_KOEPF",
  };
  // Model order: where the nodes are now (top to bottom), new ones last by name.
  const order = (a: string, b: string): number => {
    const pa = previous.get(a);
    const pb = previous.get(b);
    if (pa && pb) return pa.y - pb.y || pa.x - pb.x;
    if (pa) return -1;
    if (pb) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const roots: ElkNode[] = [];
  const groupOf = new Map<string, ElkNode>();
  const ids = [...view.nodes.keys()].sort(order);
  for (const id of ids) {
    const n = view.nodes.get(id)!;
    if (n.kind === "group") {
      const g: ElkNode = { id, children: [], layoutOptions: { "elk.padding": "[top=34,left=14,bottom=14,right=14]" } };
      groupOf.set(id, g);
      roots.push(g);
    }
  }
  for (const id of ids) {
    const n = view.nodes.get(id)!;
    if (n.kind === "group") continue;
    const s = size(id);
    const el: ElkNode = { id, width: s.w, height: s.h };
    const parent = n.parent ? groupOf.get(n.parent) : undefined;
    if (parent) parent.children!.push(el);
    else roots.push(el);
  }
  const edges: ElkExtendedEdge[] = [];
  for (const e of view.edges.values()) {
    if (e.source === e.target) continue; // a self-call changes no layer
    edges.push({ id: e.id, sources: [e.source], targets: [e.target] });
  }
  const graph: ElkNode = { id: "root", layoutOptions: rootOptions, children: roots, edges };
  const out = await engine.layout(graph);
  const pos: Positions = new Map();
  const walk = (n: ElkNode, ox: number, oy: number): void => {
    for (const c of n.children ?? []) {
      const x = ox + (c.x ?? 0);
      const y = oy + (c.y ?? 0);
      if (c.children && c.children.length) walk(c, x, y);
      else pos.set(c.id, { x: x + (c.width ?? 0) / 2, y: y + (c.height ?? 0) / 2 });
    }
  };
  walk(out, 0, 0);
  return pos;
}

const layerGap = (big: boolean): number => (big ? 110 : 210);
const nodeGap = 26;
const groupTop = 34;
const groupPad = 14;

/**
 * quickLayout is a small layered layout on the main thread (longest-path
 * layers, barycentre ordering), for the first paint of a small graph while
 * ELK's worker is still loading; ELK then refines it.
 */
export function quickLayout(view: View, size: (id: string) => Size, previous: Positions): Positions {
  // Units: top-level nodes; a group holds its versions stacked.
  const kids = new Map<string, string[]>();
  const units: string[] = [];
  for (const n of view.nodes.values()) {
    if (n.parent) {
      const k = kids.get(n.parent);
      if (k) k.push(n.id);
      else kids.set(n.parent, [n.id]);
    } else units.push(n.id);
  }
  for (const k of kids.values()) k.sort();
  const dims = new Map<string, Size>();
  for (const u of units) {
    const k = kids.get(u);
    if (view.nodes.get(u)?.kind === "group" && k?.length) {
      const c = size(k[0]);
      dims.set(u, { w: c.w + 2 * groupPad, h: groupTop + k.length * c.h + (k.length - 1) * nodeGap + groupPad });
    } else dims.set(u, size(u));
  }
  const unitOf = (id: string): string => view.nodes.get(id)?.parent ?? id;
  const order = (a: string, b: string): number => {
    const pa = previous.get(a) ?? previous.get(kids.get(a)?.[0] ?? "");
    const pb = previous.get(b) ?? previous.get(kids.get(b)?.[0] ?? "");
    if (pa && pb) return pa.y - pb.y;
    if (pa) return -1;
    if (pb) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  };
  units.sort(order);
  const out = new Map<string, Set<string>>();
  const inn = new Map<string, Set<string>>();
  for (const u of units) {
    out.set(u, new Set());
    inn.set(u, new Set());
  }
  for (const e of view.edges.values()) {
    const a = unitOf(e.source);
    const b = unitOf(e.target);
    if (a === b || !out.has(a) || !out.has(b)) continue;
    out.get(a)!.add(b);
    inn.get(b)!.add(a);
  }
  // Break cycles: drop the edges a depth-first search finds going back.
  const state = new Map<string, 1 | 2>();
  const stack: [string, Iterator<string>][] = [];
  for (const root of units) {
    if (state.has(root)) continue;
    state.set(root, 1);
    stack.push([root, [...out.get(root)!][Symbol.iterator]()]);
    while (stack.length) {
      const [u, it] = stack[stack.length - 1];
      const next = it.next();
      if (next.done) {
        state.set(u, 2);
        stack.pop();
        continue;
      }
      const v = next.value;
      if (state.get(v) === 1) {
        out.get(u)!.delete(v);
        inn.get(v)!.delete(u);
      } else if (!state.has(v)) {
        state.set(v, 1);
        stack.push([v, [...out.get(v)!][Symbol.iterator]()]);
      }
    }
  }
  // Longest-path layers, in topological order.
  const layer = new Map<string, number>();
  const indeg = new Map<string, number>();
  for (const u of units) indeg.set(u, inn.get(u)!.size);
  const queue = units.filter((u) => indeg.get(u) === 0);
  for (const u of queue) layer.set(u, 0);
  for (let i = 0; i < queue.length; i++) {
    const u = queue[i];
    for (const v of out.get(u)!) {
      layer.set(v, Math.max(layer.get(v) ?? 0, layer.get(u)! + 1));
      indeg.set(v, indeg.get(v)! - 1);
      if (indeg.get(v) === 0) queue.push(v);
    }
  }
  const layers: string[][] = [];
  for (const u of units) {
    const l = layer.get(u) ?? 0;
    (layers[l] ??= []).push(u);
  }
  // Barycentre sweeps, down then up.
  const pos = new Map<string, number>();
  const index = (): void => layers.forEach((l) => l.forEach((u, i) => pos.set(u, i)));
  index();
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    for (let k = down ? 1 : layers.length - 2; down ? k < layers.length : k >= 0; k += down ? 1 : -1) {
      const l = layers[k];
      if (!l) continue;
      const bary = new Map<string, number>();
      for (const u of l) {
        const ns = [...(down ? inn.get(u)! : out.get(u)!)].map((v) => pos.get(v)!).filter((x) => x !== undefined);
        bary.set(u, ns.length ? ns.reduce((a, b) => a + b, 0) / ns.length : pos.get(u)!);
      }
      l.sort((a, b) => bary.get(a)! - bary.get(b)! || pos.get(a)! - pos.get(b)!);
      l.forEach((u, i) => pos.set(u, i));
    }
  }
  // Coordinates: layers left to right, each centred vertically.
  const result: Positions = new Map();
  let x = 0;
  for (const l of layers) {
    if (!l) continue;
    const w = Math.max(...l.map((u) => dims.get(u)!.w));
    const total = l.reduce((s, u) => s + dims.get(u)!.h, 0) + (l.length - 1) * nodeGap;
    let y = -total / 2;
    for (const u of l) {
      const d = dims.get(u)!;
      const cx = x + w / 2;
      const k = kids.get(u);
      if (view.nodes.get(u)?.kind === "group" && k?.length) {
        let cy = y + groupTop;
        for (const c of k) {
          const s = size(c);
          result.set(c, { x: cx, y: cy + s.h / 2 });
          cy += s.h + nodeGap;
        }
      } else result.set(u, { x: cx, y: y + d.h / 2 });
      y += d.h + nodeGap;
    }
    x += w + layerGap(view.nodes.size > 300);
  }
  return result;
}
