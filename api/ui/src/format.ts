// Numbers, colours and the health thresholds.

export interface Thresholds {
  /** error rate (0..1) from which an edge or node is amber, then red */
  errWarn: number;
  errCrit: number;
  /** p99 latency in ms from which an edge is amber, then red */
  p99Warn: number;
  p99Crit: number;
}

export const defaultThresholds: Thresholds = { errWarn: 0.01, errCrit: 0.05, p99Warn: 250, p99Crit: 1000 };

const thresholdsKey = "signalbox.thresholds";

export function loadThresholds(): Thresholds {
  try {
    const raw = localStorage.getItem(thresholdsKey);
    if (raw) {
      const t = { ...defaultThresholds, ...(JSON.parse(raw) as Partial<Thresholds>) };
      if ([t.errWarn, t.errCrit, t.p99Warn, t.p99Crit].every((v) => Number.isFinite(v) && v >= 0)) return t;
    }
  } catch {
    // Fall back to the defaults.
  }
  return { ...defaultThresholds };
}

export function saveThresholds(t: Thresholds): void {
  try {
    localStorage.setItem(thresholdsKey, JSON.stringify(t));
  } catch {
    // Kept for this page only.
  }
}

/** 0 healthy, 1 warning, 2 critical. */
export type Severity = 0 | 1 | 2;

export function errSeverity(rate: number, t: Thresholds): Severity {
  return rate >= t.errCrit ? 2 : rate >= t.errWarn ? 1 : 0;
}

export function p99Severity(ms: number, t: Thresholds): Severity {
  return ms >= t.p99Crit ? 2 : ms >= t.p99Warn ? 1 : 0;
}

export const severityColor = ["#2f9e44", "#e8890c", "#e03131"] as const;
export const idleColor = "#adb5bd";

export function rps(v: number): string {
  if (v === 0) return "0";
  if (v < 0.1) return v.toFixed(3);
  if (v < 10) return v.toFixed(2);
  if (v < 1000) return v.toFixed(1);
  return int(v);
}

export function pct(rate: number): string {
  const p = rate * 100;
  if (p === 0) return "0%";
  if (p < 0.01) return "<0.01%";
  if (p < 10) return p.toFixed(2) + "%";
  return p.toFixed(1) + "%";
}

export function ms(v: number): string {
  if (!v) return "–";
  if (v < 1) return v.toFixed(2) + " ms";
  if (v < 100) return v.toFixed(1) + " ms";
  if (v < 10000) return Math.round(v) + " ms";
  return (v / 1000).toFixed(1) + " s";
}

// Numbers and times are formatted by hand: the first toLocaleString or
// toLocaleTimeString of a page loads the locale's data, which costs tens of
// milliseconds just when the first graph is being drawn.

/** int is v rounded, with thousands separated by commas (as toLocaleString("en")). */
export function int(v: number): string {
  const s = String(Math.round(v));
  return Number.isFinite(v) ? s.replace(/\B(?=(\d{3})+(?!\d))/g, ",") : Math.round(v).toLocaleString("en");
}

const two = (n: number): string => (n < 10 ? "0" : "") + n;

/** clock is d's local time of day, HH:MM:SS (as toLocaleTimeString("en-GB")), or HH:MM without seconds. */
export function clock(d: Date, seconds = true): string {
  return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "");
}

export function time(iso: string | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  if (isNaN(d.getTime()) || d.getFullYear() < 2000) return "–";
  return clock(d);
}

export function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const t = new Date(iso).getTime();
  if (isNaN(t) || t <= 0) return "–";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s ago";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m ago";
}

/** h builds an element: h("td", {class: "x"}, "text", child). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> | null = null,
  ...children: (Node | string | number | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === false) continue;
      if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
