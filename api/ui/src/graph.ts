// The graph pane: Cytoscape.js draws the view; ELK lays it out in a worker.
//
// Numbers change every second and only change labels and colours; the
// layout runs when the set of nodes or edges changes (or on request), keeps
// the order of the nodes that stay, and moves them there smoothly.

import cytoscape from "cytoscape";
import type { Core, ElementDefinition, NodeSingular, EdgeSingular, StylesheetJson } from "cytoscape";
import { buildView, serviceNodeId, type View, type VEdge, type VNode } from "./model";
import { layout, layoutEngineReady, onLayoutEngineReady, quickLayout, type Positions, type Size } from "./layout";

import { errSeverity, p99Severity, severityColor, idleColor, rps, pct, ms, int, h, type Thresholds, type Severity } from "./format";
import type { Graph, GraphEdge } from "./types";

/** One drawing of the graph, for the tests and the curious (window.__signalbox.renders). */
export interface RenderStat {
  nodes: number;
  edges: number;
  /** ms in the layout worker (0 when only numbers changed) */
  layoutMs: number;
  /** ms from the data to the painted frame */
  totalMs: number;
  /** performance.now() when painted */
  at: number;
  relayout: boolean;
  /** what placed the nodes: "quick" (main thread, at once), "elk" (the worker), "" (nothing moved) */
  engine: "quick" | "elk" | "";
}

const serviceSize: Size = { w: 168, h: 50 };
const versionSize: Size = { w: 132, h: 44 };
const bigGraph = 400; // elements per kind from which the drawing is simplified
const chunk = 400; // elements added in one frame

export interface Filters {
  search: string;
  onlyMatches: boolean;
  unhealthyOnly: boolean;
  hideIdle: boolean;
}

export class GraphView {
  readonly cy: Core;
  svc: Graph | null = null;
  ver: Graph | null = null;
  readonly expanded = new Set<string>();
  view: View = { nodes: new Map(), edges: new Map() };
  filters: Filters = { search: "", onlyMatches: false, unhealthyOnly: false, hideIdle: false };
  readonly renders: RenderStat[] = [];
  /** performance.now() when the first graph with nodes was painted */
  firstRenderAt = 0;
  private selected: string | null = null;
  private structure = "";
  private layoutSeq = 0;
  private laidOut = false;
  private userMoved = false;
  private big = false;
  private pending = 0; // a requestAnimationFrame for the next update
  private dataAt = 0;
  private renderWaiters: (() => void)[] = [];
  private filtered = false;
  private layouts = 0; // ELK layouts in flight
  private adding = false; // elements are being added a chunk a frame
  /** the user panned, zoomed or selected since the last quick layout */
  private touched = false;
  /** ELK's layout of a big graph, waiting for the user's go (relayout) */
  private pendingLayout: Positions | null = null;
  /** onLayoutState hears of a big graph's layout: "running" in the worker, "ready" to apply, "" done */
  onLayoutState: ((state: "running" | "ready" | "") => void) | null = null;
  private dirty = false; // data came while adding
  /** ms the last ELK layout took in its worker */
  lastLayoutMs = 0;
  onChange: (() => void) | null = null;
  /** onFirstRender is called once the first graph with nodes is on screen */
  onFirstRender: (() => void) | null = null;

  constructor(container: HTMLElement, private details: HTMLElement, private thresholds: Thresholds) {
    this.cy = cytoscape({
      container,
      style: styles(false),
      minZoom: 0.05,
      maxZoom: 3,
      boxSelectionEnabled: false,
      selectionType: "single",
      pixelRatio: "auto",
    });
    this.cy.on("tap", "node, edge", (ev) => this.select(ev.target.id()));
    this.cy.on("tap", (ev) => {
      if (ev.target === this.cy) this.select(null);
    });
    this.cy.on("dbltap", "node", (ev) => {
      const n = this.view.nodes.get(ev.target.id());
      if (n) this.toggle(n.service);
    });
    this.cy.on("dragpan scrollzoom pinchzoom", () => {
      this.userMoved = true;
      this.touched = true;
    });
    this.renderDetails();
  }

  setThresholds(t: Thresholds): void {
    this.thresholds = t;
    this.schedule();
  }

  setServiceGraph(g: Graph): void {
    this.svc = g;
    this.schedule();
  }

  setVersionGraph(g: Graph | null): void {
    this.ver = g;
    this.schedule();
  }

  /** show draws one graph in place of the streams (fixtures, tests); it resolves when painted. */
  show(g: Graph): Promise<RenderStat> {
    this.svc = g;
    this.ver = null;
    this.expanded.clear();
    return new Promise((resolve) => {
      this.renderWaiters.push(() => resolve(this.renders[this.renders.length - 1]));
      this.schedule();
    });
  }

  /** nextPaint resolves once the next drawing (of whatever comes next) is on screen. */
  nextPaint(): Promise<void> {
    return new Promise((resolve) => this.renderWaiters.push(resolve));
  }

  toggle(service: string): void {
    if (this.expanded.has(service)) this.expanded.delete(service);
    else this.expanded.add(service);
    const id = serviceNodeId(service);
    this.schedule();
    // Keep the service selected through the change.
    if (this.selected && (this.selected === id || this.selected.startsWith("v:" + service + "@"))) this.selected = id;
  }

  setFilters(f: Partial<Filters>): void {
    this.filters = { ...this.filters, ...f };
    this.applyFilters();
  }

  relayout(): void {
    this.userMoved = false;
    if (this.pendingLayout) {
      this.applyPositions(this.pendingLayout);
      return;
    }
    this.structure = "";
    this.schedule();
  }

  fit(): void {
    this.userMoved = false;
    this.fitView();
  }

  private schedule(): void {
    if (!this.dataAt) this.dataAt = performance.now();
    if (this.adding) {
      this.dirty = true;
      return;
    }
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.update();
    });
  }

  /**
   * flush draws what is scheduled now rather than at the next frame: the
   * first graph's elements are then styled and placed before that frame,
   * which draws them, rather than in it, which would leave them to the one
   * after.
   */
  flush(): void {
    if (!this.pending) return;
    cancelAnimationFrame(this.pending);
    this.pending = 0;
    this.update();
  }

  private size = (id: string): Size => (this.view.nodes.get(id)?.kind === "version" ? versionSize : serviceSize);

  private update(): void {
    const started = this.dataAt || performance.now();
    this.dataAt = 0;
    const view = buildView(this.svc, this.ver, this.expanded);
    this.view = view;
    const big = view.nodes.size > bigGraph || view.edges.size > 2 * bigGraph;
    const cy = this.cy;
    if (big !== this.big) {
      this.big = big;
      cy.style(styles(big));
    }
    const structure = structureKey(view);
    const relayout = structure !== this.structure && view.nodes.size > 0;
    this.structure = structure;
    // A big graph, or any while ELK's worker loads, is placed at once by the
    // quick layout (ELK refines it in the background); otherwise new
    // elements wait, unseen, for ELK's layout (a few ms).
    let placed: Positions | null = null;
    if (relayout && (big || !layoutEngineReady())) placed = quickLayout(view, this.size, this.currentPositions());
    const seq = relayout ? ++this.layoutSeq : this.layoutSeq;
    const animate = this.laidOut && !big;
    const moves: [NodeSingular, { x: number; y: number }][] = [];
    const add: ElementDefinition[] = [];
    cy.batch(() => {
      cy.elements().forEach((el) => {
        if (!view.nodes.has(el.id()) && !view.edges.has(el.id())) el.remove();
      });
      // Parents before children.
      const ordered = [...view.nodes.values()].sort((a, b) => (a.parent ? 1 : 0) - (b.parent ? 1 : 0));
      for (const n of ordered) {
        const data = this.nodeData(n);
        const el = cy.getElementById(n.id);
        if (el.nonempty()) {
          const node = el as NodeSingular;
          if ((node.data("parent") ?? undefined) !== n.parent) node.move({ parent: n.parent ?? null });
          setChanged(node, data);
          const p = placed?.get(n.id);
          if (p && !node.isParent()) {
            if (animate) moves.push([node, p]);
            else node.position(p);
          }
        } else {
          const p = placed?.get(n.id);
          const near = n.parent ? cy.getElementById(n.parent) : null;
          add.push({
            group: "nodes", data,
            classes: p || data.kind === "group" ? undefined : "fresh",
            position: p ?? (near && near.nonempty() ? { ...near.position() } : { x: 0, y: 0 }),
          });
        }
      }
      for (const e of view.edges.values()) {
        const el = cy.getElementById(e.id);
        const data = this.edgeData(e, el.nonempty() && (el.hasClass("labelled") || el.selected()));
        if (el.nonempty()) setChanged(el, data);
        else add.push({ group: "edges", data, classes: placed ? undefined : "fresh" });
      }
      // Many new elements go in a chunk a frame, so that the page never
      // stops for long: styling an element is most of drawing it.
      cy.add(add.splice(0, chunk));
    });
    for (const [n, p] of moves) n.animate({ position: p }, { duration: 350, easing: "ease-in-out-cubic" });
    if (placed) {
      const first = !this.laidOut;
      this.laidOut = true;
      // Fit from the layout's own numbers: cy.fit would style every element now, in this task.
      if (first || !this.userMoved) this.fitPositions(placed);
    }
    const finish = (): void => {
      this.applyFilters();
      this.renderDetails();
      this.onChange?.();
      if (placed) this.painted(started, 0, "quick");
      if (relayout) {
        if (placed) this.touched = false;
        if (placed && big) this.onLayoutState?.("running");
        void this.runLayout(started, seq, placed !== null);
      } else if (!placed) {
        this.painted(started, 0, "");
      }
    };
    if (!add.length) {
      finish();
      return;
    }
    this.adding = true;
    const next = (): void => {
      cy.add(add.splice(0, chunk));
      if (add.length) {
        requestAnimationFrame(next);
        return;
      }
      this.adding = false;
      finish();
      if (this.dirty) {
        this.dirty = false;
        this.schedule();
      }
    };
    requestAnimationFrame(next);
  }

  /** currentPositions are the laid out leaf nodes' positions now. */
  private currentPositions(): Positions {
    const previous: Positions = new Map();
    if (this.laidOut) {
      this.cy.nodes().forEach((n) => {
        if (!n.hasClass("fresh") && !n.isParent()) previous.set(n.id(), { ...n.position() });
      });
    }
    return previous;
  }

  /**
   * runLayout runs ELK and moves the nodes where it says, unless a newer
   * layout started meanwhile. refine is true when the quick layout already
   * placed them (then ELK's result is a refinement, applied when it comes).
   */
  private async runLayout(started: number, seq: number, refine: boolean): Promise<void> {
    this.layouts++;
    try {
      await this.runLayoutNow(started, seq, refine);
    } finally {
      this.layouts--;
    }
  }

  private async runLayoutNow(started: number, seq: number, refine: boolean): Promise<void> {
    const cy = this.cy;
    const t0 = performance.now();
    let pos: Positions;
    try {
      await new Promise<void>((resolve) => onLayoutEngineReady(resolve));
      if (seq !== this.layoutSeq) return;
      pos = await layout(this.view, this.size, this.currentPositions());
    } catch (err) {
      console.error("signalbox: ELK's layout failed; keeping the quick layout", err);
      if (!refine) {
        const q = quickLayout(this.view, this.size, this.currentPositions());
        cy.batch(() => cy.nodes().forEach((n) => {
          const p = q.get(n.id());
          if (p) n.position(p);
        }));
        cy.elements(".fresh").removeClass("fresh");
        this.laidOut = true;
        this.fitView();
        this.painted(started, performance.now() - t0, "quick");
      }
      return;
    }
    const layoutMs = performance.now() - t0;
    if (seq !== this.layoutSeq) return; // a newer layout is on its way
    this.lastLayoutMs = Math.round(layoutMs);
    if (refine && this.big && this.touched) {
      // The user is looking at the quick layout: moving a thousand nodes
      // under their eyes would lose their place. The button applies it.
      this.pendingLayout = pos;
      this.onLayoutState?.("ready");
      this.painted(t0, layoutMs, "elk");
      return;
    }
    this.applyPositions(pos);
    this.painted(refine ? t0 : started, layoutMs, "elk");
  }

  /** applyPositions moves the nodes to laid out positions (smoothly when few). */
  private applyPositions(pos: Positions): void {
    const cy = this.cy;
    this.pendingLayout = null;
    this.onLayoutState?.("");
    const animate = this.laidOut && cy.nodes().length <= 300;
    const moves: [NodeSingular, { x: number; y: number }][] = [];
    cy.batch(() => {
      cy.nodes().forEach((n) => {
        const p = pos.get(n.id());
        if (!p) return;
        if (animate && !n.hasClass("fresh")) moves.push([n, p]);
        else n.position(p);
      });
      cy.elements(".fresh").removeClass("fresh");
    });
    for (const [n, p] of moves) n.animate({ position: p }, { duration: 350, easing: "ease-in-out-cubic" });
    const first = !this.laidOut;
    this.laidOut = true;
    if (first || !this.userMoved) {
      this.fitPositions(pos, animate && !first);
    }
  }

  /**
   * fitPositions fits the view to laid out positions (smoothly when
   * animate), from the layout's numbers rather than Cytoscape's bounding
   * boxes, which would style every element at once and cannot see where
   * moving nodes will end.
   */
  private fitPositions(pos: Positions, animate = false): void {
    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    for (const [id, p] of pos) {
      const s = this.size(id);
      // A version's group has its name above it.
      const top = this.view.nodes.get(id)?.parent ? 60 : 0;
      x1 = Math.min(x1, p.x - s.w / 2 - (top ? 20 : 0));
      y1 = Math.min(y1, p.y - s.h / 2 - top);
      x2 = Math.max(x2, p.x + s.w / 2 + (top ? 20 : 0));
      y2 = Math.max(y2, p.y + s.h / 2 + (top ? 20 : 0));
    }
    if (!Number.isFinite(x1)) return;
    const pad = 40;
    const w = this.cy.width();
    const h = this.cy.height();
    const zoom = Math.max(this.cy.minZoom(), Math.min(1.3, (w - 2 * pad) / Math.max(1, x2 - x1), (h - 2 * pad) / Math.max(1, y2 - y1)));
    const pan = { x: w / 2 - (zoom * (x1 + x2)) / 2, y: h / 2 - (zoom * (y1 + y2)) / 2 };
    if (animate) this.cy.animate({ zoom, pan }, { duration: 350, easing: "ease-in-out-cubic" });
    else this.cy.viewport({ zoom, pan });
  }

  /** shown are the elements no filter hides (cheaper than :visible, which styles every element). */
  private shown(): cytoscape.CollectionReturnValue {
    const all = this.cy.elements();
    return this.filtered ? all.not(".hidden") : all;
  }

  private fitView(): void {
    const cy = this.cy;
    cy.fit(this.shown(), 40);
    // A small graph need not be drawn huge.
    if (cy.zoom() > 1.3) {
      cy.zoom(1.3);
      cy.center(this.shown());
    }
  }

  /** painted records a render once the frame with it is on screen. */
  private painted(started: number, layoutMs: number, engine: RenderStat["engine"]): void {
    const nodes = this.view.nodes.size;
    const edges = this.view.edges.size;
    requestAnimationFrame(() => {
      // Cytoscape draws in its own animation frame; the next one has it on screen.
      requestAnimationFrame(() => {
        const at = performance.now();
        const stat: RenderStat = { nodes, edges, layoutMs: Math.round(layoutMs), totalMs: Math.round(at - started), at: Math.round(at), relayout: engine !== "", engine };
        this.renders.push(stat);
        if (this.renders.length > 200) this.renders.splice(0, this.renders.length - 200);
        if (!this.firstRenderAt && nodes > 0) {
          this.firstRenderAt = Math.round(at);
          this.onFirstRender?.();
        }
        const waiters = this.renderWaiters.splice(0);
        for (const w of waiters) w();
      });
    });
  }

  private nodeData(n: VNode): Record<string, unknown> {
    const sev = errSeverity(n.errorRate, this.thresholds);
    const idle = n.rps === 0;
    const name = n.kind === "version" ? n.version || "(no version)" : n.service;
    const stats = idle ? "no requests in" : `${rps(n.rps)} rps · ${pct(n.errorRate)} err`;
    const more = n.kind === "service" && n.versions.length > 1 ? `  ⊕${n.versions.length}` : "";
    return {
      id: n.id,
      parent: n.parent,
      kind: n.kind,
      service: n.service,
      // A big graph's nodes show their names only: their numbers are in the details.
      label: this.big ? name : `${name}${more}\n${stats}`,
      color: idle ? idleColor : severityColor[sev],
    };
  }

  private edgeSeverity(e: VEdge | undefined): Severity {
    if (!e || e.rps === 0) return 0;
    return Math.max(errSeverity(e.errorRate, this.thresholds), e.requests > 0 ? p99Severity(e.p99Ms, this.thresholds) : 0) as Severity;
  }

  edgeLabel(e: VEdge): string {
    return e.rps === 0 ? `${e.protocol} idle` : `${rps(e.rps)} rps · ${pct(e.errorRate)} · p99 ${e.approx ? "≤" : ""}${ms(e.p99Ms)}`;
  }

  /**
   * edgeData is what the drawing needs. A big graph's edges carry their
   * label only while shown (selected, or next to the selected node): a label
   * that changes every second restyles its edge, and two thousand of them
   * would take the page's main thread each second.
   */
  private edgeData(e: VEdge, labelled: boolean): Record<string, unknown> {
    const idle = e.rps === 0;
    const data: Record<string, unknown> = {
      id: e.id,
      source: e.source,
      target: e.target,
      color: idle ? idleColor : severityColor[this.edgeSeverity(e)],
      // In half pixels, so that small changes of the rate restyle nothing.
      w: idle ? 1 : Math.round(2 * Math.min(8, 1.5 + Math.log10(1 + e.rps) * 2)) / 2,
    };
    if (!this.big || labelled) data.label = this.edgeLabel(e);
    return data;
  }

  private applyFilters(): void {
    const cy = this.cy;
    const f = this.filters;
    const q = f.search.trim().toLowerCase();
    const active = f.hideIdle || f.unhealthyOnly || q !== "";
    if (!active && !this.filtered) return;
    this.filtered = active;
    cy.batch(() => {
      cy.elements(".dim, .hidden, .match").removeClass("dim hidden match");
      let visible = cy.elements();
      if (f.hideIdle) {
        const idle = cy.edges().filter((e) => (this.view.edges.get(e.id())?.rps ?? 0) === 0);
        idle.addClass("hidden");
        visible = visible.not(idle);
      }
      if (f.unhealthyOnly) {
        const bad = visible.edges().filter((e) => this.edgeSeverity(this.view.edges.get(e.id())) > 0);
        const badNodes = visible.nodes().filter((n) => {
          const v = this.view.nodes.get(n.id());
          return !!v && v.rps > 0 && errSeverity(v.errorRate, this.thresholds) > 0;
        });
        const keep = bad.union(bad.connectedNodes()).union(badNodes);
        const keepAll = keep.union(keep.parents()).union(keep.nodes().children());
        const drop = visible.not(keepAll);
        drop.addClass("hidden");
        visible = visible.not(drop);
      }
      if (q) {
        const matches = visible.nodes().filter((n) => String(n.data("service")).toLowerCase().includes(q) || String(n.data("label")).toLowerCase().includes(q));
        matches.addClass("match");
        const around = matches.union(matches.connectedEdges()).union(matches.neighborhood()).union(matches.parents()).union(matches.children());
        const rest = visible.not(around);
        rest.addClass(f.onlyMatches ? "hidden" : "dim");
      }
    });
  }

  private select(id: string | null): void {
    this.selected = id;
    if (id) this.touched = true;
    const cy = this.cy;
    cy.batch(() => {
      cy.elements(":selected").unselect();
      cy.edges(".labelled").removeClass("labelled");
      if (id) {
        const el = cy.getElementById(id);
        el.select();
        // A big graph labels only the calls of what is selected.
        if (el.isNode()) el.connectedEdges().union(el.children().connectedEdges()).addClass("labelled");
        if (this.big) {
          el.union(el.connectedEdges()).union(el.children().connectedEdges()).edges().forEach((e) => {
            const v = this.view.edges.get(e.id());
            if (v) e.data("label", this.edgeLabel(v));
          });
        }
      }
    });
    this.renderDetails();
  }

  /** renderDetails fills the side panel with the selected node or edge. */
  private renderDetails(): void {
    const d = this.details;
    const id = this.selected;
    const n = id ? this.view.nodes.get(id) : undefined;
    const e = id ? this.view.edges.get(id) : undefined;
    const next = h("div");
    if (n) next.append(...this.nodeDetails(n));
    else if (e) next.append(...this.edgeDetails(e));
    else {
      next.append(
        h("h2", null, "Details"),
        h("p", { class: "muted" }, "Click a service or a call for its numbers; double-click a service to show its versions."),
        legend(this.thresholds),
      );
    }
    // Unchanged, the panel stays as it is: a click on its button never lands between two of them.
    if (next.innerHTML === this.detailsHTML) return;
    this.detailsHTML = next.innerHTML;
    d.replaceChildren(...next.childNodes);
  }

  private detailsHTML = "";

  /** busy reports whether data or a layout is still on its way to the screen (for tests). */
  get busy(): boolean {
    return this.pending !== 0 || this.adding || this.layouts > 0 || this.cy.nodes(":animated").length > 0;
  }

  private nodeDetails(n: VNode): Node[] {
    const out: Node[] = [];
    const title = n.kind === "version" ? `${n.service} ${n.version || "(no version)"}` : n.service;
    out.push(h("h2", { "data-detail": n.id }, title));
    out.push(kv([
      ["received", `${rps(n.rps)} rps`],
      ["errors", pct(n.errorRate)],
      ["kind", n.kind === "version" ? "version" : "service"],
    ]));
    const versions = n.kind === "version" ? [] : n.versions;
    if (versions.length) {
      const total = versions.reduce((s, v) => s + v.rps, 0);
      out.push(h("h3", null, "Versions"));
      out.push(table(["version", "rps", "share", "errors"], versions.map((v) => [
        v.version || "(none)", rps(v.rps), total > 0 ? pct(v.rps / total) : "–", cell(pct(v.errorRate), errSeverity(v.errorRate, this.thresholds)),
      ])));
      const expanded = this.expanded.has(n.service);
      const btn = h("button", { type: "button", id: "toggle-versions" }, expanded ? "Collapse versions" : "Expand to versions");
      btn.addEventListener("click", () => this.toggle(n.service));
      out.push(btn);
    } else if (n.kind !== "version") {
      out.push(h("p", { class: "muted" }, "No version is known: its instances have no version meta, or the version stream has not answered yet."));
    }
    const ins = [...this.view.edges.values()].filter((e) => e.target === n.id || this.view.nodes.get(e.target)?.parent === n.id);
    const outs = [...this.view.edges.values()].filter((e) => e.source === n.id || this.view.nodes.get(e.source)?.parent === n.id);
    const label = (id: string): string => {
      const x = this.view.nodes.get(id);
      return x ? (x.kind === "version" ? `${x.service}@${x.version}` : x.service) : id;
    };
    const rows = (list: VEdge[], end: (e: VEdge) => string): (string | Node)[][] =>
      list.sort((a, b) => b.rps - a.rps).slice(0, 50).map((e) => [end(e), e.protocol, rps(e.rps), cell(pct(e.errorRate), errSeverity(e.errorRate, this.thresholds)), cell((e.approx ? "≤" : "") + ms(e.p99Ms), p99Severity(e.p99Ms, this.thresholds))]);
    if (outs.length) {
      out.push(h("h3", null, "Calls to"));
      out.push(table(["to", "proto", "rps", "errors", "p99"], rows(outs, (e) => (this.view.nodes.get(e.source)?.kind === "version" ? `${this.view.nodes.get(e.source)?.version} → ` : "") + label(e.target))));
    }
    // Calls to a group's versions say which version.
    const version = (id: string): string => {
      const x = this.view.nodes.get(id);
      return x?.kind === "version" ? ` → ${x.version}` : "";
    };
    if (ins.length) {
      out.push(h("h3", null, "Called by"));
      out.push(table(["from", "proto", "rps", "errors", "p99"], rows(ins, (e) => label(e.source) + version(e.target))));
    }
    return out;
  }

  private edgeDetails(e: VEdge): Node[] {
    const name = (id: string): string => {
      const x = this.view.nodes.get(id);
      return x ? (x.kind === "version" ? `${x.service} ${x.version}` : x.service) : id;
    };
    const out: Node[] = [h("h2", { "data-detail": e.id }, `${name(e.source)} → ${name(e.target)}`)];
    out.push(kv([
      ["protocol", e.protocol],
      ["rate", `${rps(e.rps)} rps`],
      ["requests", int(e.requests)],
      ["errors", `${int(e.errors)} (${pct(e.errorRate)})`],
      ["bytes", e.bytes ? int(e.bytes) : "–"],
    ]));
    out.push(h("h3", null, "Latency" + (e.approx ? " (upper bound: the largest of the versions')" : "")));
    out.push(table(["p50", "p95", "p99"], [[ms(e.p50Ms), ms(e.p95Ms), cell(ms(e.p99Ms), p99Severity(e.p99Ms, this.thresholds))]]));
    out.push(h("h3", null, "Status codes"));
    const classes = ["2xx", "3xx", "4xx", "5xx", "connFailure"];
    out.push(table(["class", "requests", "share"], classes.map((c) => {
      const v = e.byClass?.[c] ?? 0;
      return [c === "connFailure" ? "conn. failure" : c, int(v), e.requests ? pct(v / e.requests) : "–"];
    })));
    if (e.parts.length) {
      const total = e.parts.reduce((s, p) => s + p.rps, 0);
      out.push(h("h3", null, "By version"));
      out.push(table(["from", "to", "rps", "share", "errors", "p99"], [...e.parts].sort((a, b) => b.rps - a.rps).map((p: GraphEdge) => [
        versionOf(p.source), versionOf(p.target), rps(p.rps), total > 0 ? pct(p.rps / total) : "–",
        cell(pct(p.errorRate), errSeverity(p.errorRate, this.thresholds)), cell(ms(p.p99Ms), p99Severity(p.p99Ms, this.thresholds)),
      ])));
    }
    return out;
  }

  /** snapshot is what is drawn, as text: for tests. */
  snapshot(): { nodes: { id: string; label: string; parent?: string }[]; edges: { id: string; source: string; target: string; label: string }[] } {
    return {
      nodes: this.cy.nodes().map((n) => ({ id: n.id(), label: String(n.data("label")), parent: n.data("parent") as string | undefined })),
      edges: this.cy.edges().map((e: EdgeSingular) => ({ id: e.id(), source: e.source().id(), target: e.target().id(), label: String(e.data("label") ?? "") })),
    };
  }
}

/** setChanged sets only the data that changed, so unchanged elements are not restyled. */
function setChanged(el: cytoscape.SingularElementArgument, data: Record<string, unknown>): void {
  const diff: Record<string, unknown> = {};
  let any = false;
  for (const [k, v] of Object.entries(data)) {
    if (k === "id" || k === "parent" || k === "source" || k === "target") continue;
    if (el.data(k) !== v) {
      diff[k] = v;
      any = true;
    }
  }
  if (any) el.data(diff);
}

function versionOf(id: string): string {
  const at = id.indexOf("@");
  return at < 0 ? id : id.slice(0, at) + " " + id.slice(at + 1);
}

function structureKey(v: View): string {
  const parts: string[] = [];
  for (const n of v.nodes.values()) parts.push(n.id + "<" + (n.parent ?? ""));
  parts.sort();
  const edges: string[] = [];
  for (const e of v.edges.values()) edges.push(e.id);
  edges.sort();
  return parts.join("|") + "#" + edges.join("|");
}

function kv(rows: [string, string][]): HTMLElement {
  const dl = h("dl", { class: "kv" });
  for (const [k, v] of rows) dl.append(h("dt", null, k), h("dd", null, v));
  return dl;
}

function cell(text: string, sev: Severity): HTMLElement {
  return h("span", { class: "sev sev" + sev }, text);
}

function table(head: string[], rows: (string | Node)[][]): HTMLElement {
  return h("table", { class: "grid" },
    h("thead", null, h("tr", null, ...head.map((c) => h("th", null, c)))),
    h("tbody", null, ...rows.map((r) => h("tr", null, ...r.map((c) => h("td", null, c))))));
}

function legend(t: Thresholds): HTMLElement {
  return h("div", { class: "legend" },
    h("h3", null, "Colours"),
    h("p", null, h("span", { class: "swatch", style: `background:${severityColor[0]}` }), ` errors < ${pct(t.errWarn)} and p99 < ${ms(t.p99Warn)}`),
    h("p", null, h("span", { class: "swatch", style: `background:${severityColor[1]}` }), ` errors ≥ ${pct(t.errWarn)} or p99 ≥ ${ms(t.p99Warn)}`),
    h("p", null, h("span", { class: "swatch", style: `background:${severityColor[2]}` }), ` errors ≥ ${pct(t.errCrit)} or p99 ≥ ${ms(t.p99Crit)}`),
    h("p", null, h("span", { class: "swatch", style: `background:${idleColor}` }), " no requests in the window"),
    h("p", { class: "muted" }, "Nodes are coloured by the errors of the requests they receive; calls by their errors and p99. Edge labels: requests/s · error % · p99."),
  );
}

const shared = (big: boolean): StylesheetJson => [
  { selector: "node:selected", style: { "border-width": 4.5, "border-color": "#1c7ed6", "overlay-opacity": 0 } },
  { selector: "edge.labelled[label]", style: { label: "data(label)", "z-index": 5, "curve-style": "straight", "target-arrow-shape": "triangle", "target-arrow-color": "data(color)", "font-size": 10.5, "text-background-color": "#ffffff", "text-background-opacity": 0.9, "text-rotation": "autorotate" } },
  { selector: "edge:selected", style: { "line-color": "#1c7ed6", "target-arrow-color": "#1c7ed6", width: 4, "z-index": 10, "curve-style": big ? "straight" : "bezier", "target-arrow-shape": "triangle" } },
  { selector: "edge:selected[label]", style: { label: "data(label)" } },
  { selector: ".match", style: { "border-width": 4.5, "border-color": "#7048e8" } },
  { selector: ".dim", style: { opacity: 0.15 } },
  { selector: ".hidden", style: { display: "none" } },
  { selector: ".fresh", style: { opacity: 0, events: "no" } },
];

/** bigStyles draw a big graph with as few properties as will do: styling each element is most of the cost. */
function bigStyles(): StylesheetJson {
  return [
    {
      selector: "node",
      style: {
        shape: "rectangle",
        width: serviceSize.w,
        height: serviceSize.h,
        "background-color": "#ffffff",
        "border-width": 3,
        "border-color": "data(color)",
        label: "data(label)",
        "text-valign": "center",
        "text-halign": "center",
        "font-size": 13,
        "min-zoomed-font-size": 8,
      },
    },
    { selector: "node:parent", style: { "background-color": "#eef2f7", "border-style": "dashed", "text-valign": "top" } },
    { selector: "edge", style: { width: "data(w)", "line-color": "data(color)", "curve-style": "haystack", "haystack-radius": 0, opacity: 0.75 } },
    ...shared(true),
  ];
}

function styles(big: boolean): StylesheetJson {
  if (big) return bigStyles();
  return [
    {
      selector: "node",
      style: {
        shape: "round-rectangle",
        width: serviceSize.w,
        height: serviceSize.h,
        "background-color": "#ffffff",
        "border-width": 2.5,
        "border-color": "data(color)",
        label: "data(label)",
        "text-wrap": "wrap",
        "text-valign": "center",
        "text-halign": "center",
        "font-family": "sans-serif",
        "font-size": 12,
        color: "#1f2933",
        "min-zoomed-font-size": 4,
      },
    },
    { selector: 'node[kind = "version"]', style: { width: versionSize.w, height: versionSize.h, "font-size": 11, "background-color": "#f8f9fa" } },
    {
      selector: "node:parent",
      style: {
        shape: "round-rectangle",
        "background-color": "#eef2f7",
        "background-opacity": 0.9,
        "border-width": 1.5,
        "border-style": "dashed",
        "text-valign": "top",
        "text-halign": "center",
        "text-margin-y": -4,
        "font-weight": "bold",
        padding: "12px",
      },
    },
    {
      selector: "edge",
      style: {
        width: "data(w)",
        "line-color": "data(color)",
        "target-arrow-color": "data(color)",
        "target-arrow-shape": "triangle",
        "arrow-scale": 0.9,
        "curve-style": "bezier",
        label: "data(label)",
        "font-size": 10.5,
        "font-family": "sans-serif",
        color: "#364152",
        "text-background-color": "#ffffff",
        "text-background-opacity": 0.9,
        "text-background-padding": "2px",
        "text-rotation": "autorotate",
        "min-zoomed-font-size": 7,
        opacity: 0.9,
      },
    },
    ...shared(false),
  ];
}
