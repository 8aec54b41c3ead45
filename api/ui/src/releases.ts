// The releases pane: every rollout, its phase, step and weights, the
// analysis over time, the history, and the operator's buttons.

import uPlot from "uplot";
import { api, APIFailure, currentToken } from "./api";
import { ago, clock, h, int, pct, time } from "./format";
import type { Phase, Rollout, RolloutEvent } from "./types";

const terminal: Phase[] = ["Succeeded", "RolledBack", "Aborted", "Failed"];

/** A point of the analysis chart. */
interface Sample {
  t: number; // seconds
  logLambda: number | null;
  threshold: number | null;
  candidateErr: number | null; // percent
  baselineErr: number | null; // percent
}

interface Card {
  el: HTMLElement;
  phase: HTMLElement;
  meta: HTMLElement;
  actions: HTMLElement;
  actionsKey: string;
  facts: HTMLElement;
  reason: HTMLElement;
  history: HTMLDetailsElement;
  historyLen: number;
  chartBox: HTMLElement;
  chart: uPlot | null;
  samples: Sample[];
  /** the chart's time axis labels, as last drawn (for tests) */
  xTicks: string[];
  lastLooks: number;
  message: HTMLElement;
}

export class ReleasesView {
  private cards = new Map<string, Card>();
  private timer = 0;
  private busy = false;
  private archived = false;
  private list: HTMLElement;
  private banner: HTMLElement;
  onCount: ((active: number) => void) | null = null;

  constructor(root: HTMLElement) {
    const archivedBox = h("input", { type: "checkbox", id: "rollouts-archived" });
    archivedBox.addEventListener("change", () => {
      this.archived = archivedBox.checked;
      void this.refresh();
    });
    this.banner = h("div", { class: "banner", hidden: true, id: "releases-banner" });
    this.list = h("div", { class: "cards", id: "rollouts" });
    root.append(
      h("div", { class: "toolbar" },
        h("h2", null, "Releases"),
        h("label", { class: "check" }, archivedBox, " show archived"),
        h("span", { class: "muted" }, "Start one with ", h("code", null, "signalbox rollout start"), " or POST /api/v1/rollouts; the buttons need an operator token.")),
      this.banner,
      this.list,
    );
  }

  /** chartPoints is how many points a rollout's chart has (for tests). */
  chartPoints(id: string): number {
    return this.cards.get(id)?.samples.length ?? 0;
  }

  /** chartTicks are the labels of a rollout's chart's time axis (for tests). */
  chartTicks(id: string): string[] {
    return this.cards.get(id)?.xTicks ?? [];
  }

  /** start polls every interval ms. */
  start(interval: number): void {
    window.clearInterval(this.timer);
    void this.refresh();
    this.timer = window.setInterval(() => void this.refresh(), interval);
  }

  async refresh(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { rollouts } = await api<{ rollouts: Rollout[] }>("GET", "/api/v1/rollouts" + (this.archived ? "?all=true" : ""));
      this.banner.hidden = true;
      this.render(rollouts ?? []);
    } catch (e) {
      this.showError(e);
    } finally {
      this.busy = false;
    }
  }

  private showError(e: unknown): void {
    const f = e instanceof APIFailure ? e : new APIFailure(0, String(e));
    this.banner.hidden = false;
    this.banner.replaceChildren();
    if (f.status === 401) {
      this.banner.append(h("strong", null, "This signalbox needs a token to show releases. "), "Paste a viewer or operator token (from the ", h("code", null, "--api-tokens"), " file) with the Token button above.");
      if (currentToken()) this.banner.append(h("div", { class: "muted" }, "The token given was refused: " + f.message));
    } else if (f.status === 404) {
      this.banner.append("The release API is not enabled on this signalbox.");
    } else {
      this.banner.append(h("strong", null, "Releases: "), f.message);
      if (f.hint) this.banner.append(h("div", { class: "muted" }, f.hint));
    }
  }

  private render(rollouts: Rollout[]): void {
    const seen = new Set<string>();
    let active = 0;
    if (!rollouts.length) {
      if (!this.list.querySelector(".empty")) this.list.replaceChildren(h("p", { class: "empty muted" }, "No rollouts yet."));
    } else {
      this.list.querySelector(".empty")?.remove();
    }
    rollouts.forEach((r, i) => {
      seen.add(r.id);
      if (!terminal.includes(r.phase)) active++;
      let card = this.cards.get(r.id);
      if (!card) {
        card = this.newCard(r.id);
        this.cards.set(r.id, card);
      }
      // Newest first, as the API lists them.
      if (this.list.children[i] !== card.el) this.list.insertBefore(card.el, this.list.children[i] ?? null);
      this.update(card, r);
    });
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) {
        card.chart?.destroy();
        card.el.remove();
        this.cards.delete(id);
      }
    }
    this.onCount?.(active);
  }

  private newCard(id: string): Card {
    const phase = h("span", { class: "phase" });
    const meta = h("span", { class: "muted" });
    const actions = h("div", { class: "actions" });
    const facts = h("div", { class: "facts" });
    const reason = h("p", { class: "reason" });
    const history = h("details", { class: "history" });
    const chartBox = h("div", { class: "chart" });
    const message = h("div", { class: "card-message", role: "status" });
    const el = h("section", { class: "card", "data-rollout-id": id },
      h("header", null, h("h3", null, id), phase, meta, actions),
      facts, reason, message, chartBox, history);
    return { el, phase, meta, actions, actionsKey: "", facts, reason, history, historyLen: -1, chartBox, chart: null, samples: [], xTicks: [], lastLooks: -1, message };
  }

  private update(card: Card, r: Rollout): void {
    card.el.dataset.phase = r.phase;
    this.addSamples(card, r);
    const spec = r.spec;
    card.phase.className = "phase phase-" + r.phase;
    card.phase.dataset.phase = r.phase;
    card.phase.textContent = r.phase + (r.atGate ? " (at a gate)" : "") + (r.mirroring ? " (mirroring)" : "");
    card.meta.textContent = `${spec.strategy} · ${spec.service}: ${spec.baseline} → ${spec.candidate}`;
    // The buttons are rebuilt only when they change, so a click never lands between two of them.
    const tok = currentToken();
    const acts = (["pause", "resume", "promote", "abort", "retry"] as const).filter((a) => allowed(r, a));
    const key = acts.join(",") + (tok ? "+t" : "");
    if (key !== card.actionsKey) {
      card.actionsKey = key;
      card.actions.replaceChildren(...acts.map((action) => {
        const b = h("button", { type: "button", "data-action": action, class: action === "abort" ? "danger" : undefined, disabled: !tok, title: tok ? undefined : "paste an operator token (the Token button) first" }, label(action));
        b.addEventListener("click", () => void this.command(card, r.id, action));
        return b;
      }));
    }
    card.facts.replaceChildren(
      h("div", null, h("div", { class: "k" }, "step"), h("div", { class: "v step" }, stepsOf(r))),
      h("div", null, h("div", { class: "k" }, "weights"), weightBar(spec.baseline, spec.candidate, currentWeight(r))),
      h("div", null, h("div", { class: "k" }, "this step"), h("div", { class: "v" }, `${int(r.stepRequests)} candidate requests since ${time(r.stepStartedAt)} (${ago(r.stepStartedAt)})`)),
      h("div", null, h("div", { class: "k" }, "analysis"), h("div", { class: "v" }, analysisLine(r))),
    );
    card.reason.textContent = r.reason ?? "";
    card.reason.hidden = !r.reason;
    // Counted with the dropped events: a full history keeps its length.
    const total = r.history.length + (r.historyDropped ?? 0);
    if (total !== card.historyLen) {
      card.historyLen = total;
      const hist = [...r.history].reverse();
      const dropped = r.historyDropped ? `, ${r.historyDropped} older dropped` : "";
      card.history.replaceChildren(
        h("summary", null, `History (${r.history.length}${dropped})`),
        h("table", { class: "grid" },
          h("thead", null, h("tr", null, ...["time", "what", "step", "weight", "by", "why"].map((c) => h("th", null, c)))),
          h("tbody", null, ...hist.map((e) => h("tr", { class: "ev-" + e.kind }, h("td", null, time(e.at)), h("td", null, what(e)), h("td", null, String(e.step)), h("td", null, e.candidateWeight + "%"), h("td", null, e.actor ?? ""), h("td", null, e.reason))))),
      );
    }
    this.drawChart(card);
  }

  /** addSamples adds the rollout's analysis to its chart: the decisions in its history, and each poll's state. */
  private addSamples(card: Card, r: Rollout): void {
    const alpha = r.spec.analysis?.alpha || 0.01;
    const threshold = -Math.log(alpha);
    if (card.samples.length === 0) {
      for (const e of r.history) {
        const s = e.stats?.stats;
        if (!s) continue;
        card.samples.push({ t: Date.parse(e.at) / 1000, logLambda: s.logLambda, threshold: s.threshold, candidateErr: s.candidateErrorRate * 100, baselineErr: s.baselineErrorRate * 100 });
      }
    }
    const test = r.analysis?.test;
    if (!test || test.looks === card.lastLooks) return;
    card.lastLooks = test.looks;
    const t = Date.parse(r.updatedAt) / 1000 || Date.now() / 1000;
    const last = card.samples[card.samples.length - 1];
    if (last && t <= last.t) return;
    card.samples.push({
      t,
      logLambda: logLambda(test.prior, test.logLR),
      threshold,
      candidateErr: test.candidate.requests ? (100 * test.candidate.errors) / test.candidate.requests : null,
      baselineErr: test.baseline.requests ? (100 * test.baseline.errors) / test.baseline.requests : null,
    });
    if (card.samples.length > 3600) card.samples.splice(0, card.samples.length - 3600);
  }

  private drawChart(card: Card): void {
    const s = card.samples;
    const data: uPlot.AlignedData = [
      s.map((x) => x.t),
      s.map((x) => x.logLambda),
      s.map((x) => x.threshold),
      s.map((x) => x.candidateErr),
      s.map((x) => x.baselineErr),
    ];
    if (!card.chart) {
      if (s.length === 0) {
        card.chartBox.replaceChildren(h("p", { class: "muted" }, "The analysis chart fills in as the rollout is looked at."));
        return;
      }
      card.chartBox.replaceChildren();
      const width = Math.max(320, Math.min(card.el.clientWidth - 32, 900));
      card.chart = new uPlot({
        width,
        height: 170,
        title: "Analysis: log Λ against the rollback threshold; error rates",
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: {
          // At least ten seconds across, so that a young rollout's few points still get whole-second ticks.
          x: { time: true, range: (_u, min, max) => (min == null || max - min >= 10 ? [min, max] : [Math.floor(min), Math.floor(min) + 10]) },
          // log Λ from 0 (or below) to past the threshold; error rates from 0 to a little over the largest.
          l: { range: (_u, min, max) => [Math.min(0, min), Math.max(max, 1) * 1.1] },
          e: { range: (_u, _min, max) => [0, Math.max(max, 0.5) * 1.2] },
        },
        series: [
          { value: (_u, v) => (v == null ? "–" : tick(v, "second")) },
          { label: "log Λ", scale: "l", stroke: "#7048e8", width: 2, value: (_u, v) => (v == null ? "–" : v.toFixed(2)) },
          { label: "threshold", scale: "l", stroke: "#e03131", dash: [6, 4], width: 1.5, value: (_u, v) => (v == null ? "–" : v.toFixed(2)) },
          { label: "candidate err %", scale: "e", stroke: "#e8890c", width: 1.5, value: (_u, v) => (v == null ? "–" : v.toFixed(2) + "%") },
          { label: "baseline err %", scale: "e", stroke: "#2f9e44", width: 1.5, value: (_u, v) => (v == null ? "–" : v.toFixed(2) + "%") },
        ],
        axes: [
          // Whole seconds at the least (uPlot's own ticks go down to ":03.500"), as HH:MM:SS.
          {
            space: 70,
            incrs: timeTicks,
            values: (_u, ticks, _axis, _space, incr) => (card.xTicks = ticks.map((t) => tick(t, incr >= 86400 ? "day" : incr >= 60 ? "minute" : "second"))),
          },
          { scale: "l", label: "log Λ", size: 50 },
          { scale: "e", side: 1, label: "errors %", size: 50, grid: { show: false } },
        ],
      }, data, card.chartBox);
    } else {
      card.chart.setData(data);
    }
  }

  private async command(card: Card, id: string, action: string): Promise<void> {
    if ((action === "abort" || action === "promote") && !window.confirm(`${label(action)} ${id}?`)) return;
    card.message.className = "card-message";
    card.message.textContent = `${label(action)}…`;
    try {
      const r = await api<Rollout>("POST", `/api/v1/rollouts/${encodeURIComponent(id)}/${action}`, { reason: "from the dashboard" });
      card.message.textContent = `${label(action)}: done, now ${r.phase}`;
      this.update(card, r);
    } catch (e) {
      const f = e instanceof APIFailure ? e : new APIFailure(0, String(e));
      card.message.className = "card-message error";
      card.message.textContent = `${label(action)} refused: ${f.message}${f.hint ? " — " + f.hint : ""}`;
    }
  }
}

/** The analysis chart's time ticks, in seconds: from one second to a week. */
const timeTicks = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** tick is a chart's time (seconds since the epoch) as HH:MM:SS, HH:MM or "12 Nov", in local time. */
function tick(t: number, unit: "second" | "minute" | "day"): string {
  const d = new Date(t * 1000);
  return unit === "day" ? `${d.getDate()} ${months[d.getMonth()]}` : clock(d, unit === "second");
}

function label(action: string): string {
  return action[0].toUpperCase() + action.slice(1);
}

function allowed(r: Rollout, action: string): boolean {
  switch (action) {
    case "pause":
      return r.phase === "Progressing";
    case "resume":
      return r.phase === "Paused" && !r.atGate;
    case "promote":
      return r.phase === "Progressing" || r.phase === "Paused" || (r.phase === "Promoting" && r.spec.strategy === "bluegreen");
    case "abort":
      return !terminal.includes(r.phase);
    case "retry":
      return r.phase === "RolledBack" || r.phase === "Aborted" || r.phase === "Failed";
  }
  return false;
}

/** currentWeight is the candidate's share of the traffic now, or null without a plan (Failed). */
function currentWeight(r: Rollout): number | null {
  if (r.phase === "Failed") return null;
  const last = r.history[r.history.length - 1];
  if (last) return last.candidateWeight;
  return 0;
}

function stepsOf(r: Rollout): HTMLElement {
  const box = h("span", { class: "steps" });
  const names = r.spec.strategy === "bluegreen" ? ["preview", "switch"] : [...(r.spec.steps ?? []).map((s) => s + "%"), "100%"];
  names.forEach((n, i) => {
    const step = i + 1;
    const cls = step < r.step ? "done" : step === r.step ? "current" : "";
    if (i) box.append(" → ");
    box.append(h("span", { class: "stepname " + cls }, n));
  });
  box.append(h("span", { class: "muted" }, `  (step ${r.step} of ${names.length}${r.mirroring ? ", mirroring first" : ""})`));
  return box;
}

function weightBar(baseline: string, candidate: string, w: number | null): HTMLElement {
  if (w === null) return h("div", { class: "v" }, "no plan: traffic spreads over every instance");
  return h("div", { class: "weights", "data-candidate-weight": w },
    h("div", { class: "wb", style: `width:${100 - w}%` }, w < 100 ? `${baseline} ${100 - w}%` : ""),
    h("div", { class: "wc", style: `width:${w}%` }, w > 0 ? `${candidate} ${w}%` : ""));
}

function analysisLine(r: Rollout): string {
  const t = r.analysis?.test;
  if (!t || !t.looks) return "no look yet";
  const l = logLambda(t.prior, t.logLR);
  const thr = -Math.log(r.spec.analysis?.alpha || 0.01);
  const be = t.baseline.requests ? t.baseline.errors / t.baseline.requests : 0;
  const ce = t.candidate.requests ? t.candidate.errors / t.candidate.requests : 0;
  return `${int(t.looks)} looks · candidate ${int(t.candidate.requests)} req, ${pct(ce)} err · baseline ${int(t.baseline.requests)} req, ${pct(be)} err · log Λ ${l === null ? "–" : l.toFixed(2)} of ${thr.toFixed(2)}`;
}

/** logLambda is the test's log Λ: log Σ w·exp(logLR), as the analysis computes it. */
function logLambda(prior?: { weight: number }[], logLR?: number[]): number | null {
  if (!prior || !logLR || prior.length !== logLR.length || !prior.length) return null;
  const terms = prior.map((p, i) => Math.log(p.weight) + logLR[i]);
  const m = Math.max(...terms);
  if (!Number.isFinite(m)) return m;
  return m + Math.log(terms.reduce((s, x) => s + Math.exp(x - m), 0));
}

function what(e: RolloutEvent): string {
  switch (e.kind) {
    case "phase":
      return `${e.from ?? ""} → ${e.to ?? ""}`;
    case "decision":
      return "decision" + (e.stats?.verdict ? ": " + e.stats.verdict : "");
    default:
      return e.kind;
  }
}
