// The proxies pane: every xDS stream (Envoy sidecars and proxyless gRPC
// clients), what each was sent and acknowledged, and the last NACK.

import { api, APIFailure } from "./api";
import { ago, h, time } from "./format";
import type { ClientStatus, SidecarStatus, TypeStatus } from "./types";

const typeOrder = ["lds", "rds", "cds", "eds"];

export class ProxiesView {
  private timer = 0;
  private busy = false;
  private clientsBox: HTMLElement;
  private sidecarsBox: HTMLElement;
  private banner: HTMLElement;
  onCount: ((clients: number, nacking: number) => void) | null = null;

  constructor(root: HTMLElement) {
    this.banner = h("div", { class: "banner", hidden: true });
    this.clientsBox = h("div", { id: "xds-clients" });
    this.sidecarsBox = h("div", { id: "xds-sidecars" });
    root.append(
      h("div", { class: "toolbar" },
        h("h2", null, "Proxies"),
        h("span", { class: "muted" }, "Connected xDS streams (", h("code", null, "/debug/xds/clients"), ") and Envoy sidecars (", h("code", null, "/debug/xds/sidecars"), ").")),
      this.banner,
      h("h3", null, "xDS clients"),
      this.clientsBox,
      h("h3", null, "Envoy sidecars"),
      this.sidecarsBox,
    );
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
      const [clients, sidecars] = await Promise.all([
        api<ClientStatus[] | null>("GET", "/debug/xds/clients"),
        api<SidecarStatus[] | null>("GET", "/debug/xds/sidecars").catch((e: unknown) => {
          if (e instanceof APIFailure && e.status === 404) return null;
          throw e;
        }),
      ]);
      this.banner.hidden = true;
      this.renderClients(clients ?? []);
      this.renderSidecars(sidecars ?? []);
    } catch (e) {
      this.banner.hidden = false;
      const f = e instanceof APIFailure ? e : new APIFailure(0, String(e));
      this.banner.textContent = f.status === 404 ? "This signalbox serves no xDS debug views." : "Proxies: " + f.message;
    } finally {
      this.busy = false;
    }
  }

  private renderClients(clients: ClientStatus[]): void {
    let nacking = 0;
    if (!clients.length) {
      this.clientsBox.replaceChildren(h("p", { class: "muted" }, "No xDS client is connected."));
      this.onCount?.(0, 0);
      return;
    }
    clients.sort((a, b) => a.nodeId.localeCompare(b.nodeId) || a.streamId - b.streamId);
    const now = Date.now();
    const rows = clients.map((c) => {
      const types = Object.keys(c.types ?? {}).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      const pending = types.some((t) => (c.types[t].sentVersion ?? "") !== (c.types[t].ackedVersion ?? ""));
      const nack = latestNack(c);
      if (nack) nacking++;
      return h("tr", { "data-node": c.nodeId, class: nack ? "nacked" : "" },
        h("td", null, h("strong", null, c.nodeId), h("div", { class: "muted" }, c.nodeCluster ?? "")),
        h("td", null, c.protocol),
        h("td", null, time(c.connectedAt), h("div", { class: "muted" }, ago(c.connectedAt, now))),
        h("td", null, h("div", { class: "types" }, ...types.map((t) => typeChip(t, c.types[t])))),
        h("td", null, pending ? h("span", { class: "sev sev1" }, "waiting for an ACK") : h("span", { class: "sev sev0" }, "in sync")),
        h("td", null, `${types.reduce((n, t) => n + (c.types[t].pushes ?? 0), 0)} / `, h("span", { class: types.some((t) => c.types[t].nacks) ? "sev sev2" : "" }, String(types.reduce((n, t) => n + (c.types[t].nacks ?? 0), 0)))),
        h("td", null, nack ? h("div", { class: "nack" }, h("strong", null, `${nack.type} v${nack.version}`), ` ${ago(nack.at, now)}: `, nack.message) : "–"),
      );
    });
    this.clientsBox.replaceChildren(h("table", { class: "grid proxies" },
      h("thead", null, h("tr", null, ...["node", "protocol", "connected", "acknowledged (sent → acked)", "state", "pushes / NACKs", "last NACK"].map((x) => h("th", null, x)))),
      h("tbody", null, ...rows)));
    this.onCount?.(clients.length, nacking);
  }

  private renderSidecars(sidecars: SidecarStatus[]): void {
    if (!sidecars.length) {
      this.sidecarsBox.replaceChildren(h("p", { class: "muted" }, "No Envoy sidecar is connected (proxyless gRPC clients are listed above)."));
      return;
    }
    this.sidecarsBox.replaceChildren(h("table", { class: "grid" },
      h("thead", null, h("tr", null, ...["node", "service", "version", "snapshot", "problems"].map((x) => h("th", null, x)))),
      h("tbody", null, ...sidecars.map((s) => h("tr", null,
        h("td", null, s.node), h("td", null, s.service), h("td", null, s.version ?? ""), h("td", null, h("code", null, s.snapshot ?? "")),
        h("td", null, s.problems?.length ? h("ul", null, ...s.problems.map((p) => h("li", { class: "sev sev1" }, p))) : "–"))))));
  }
}

function rank(t: string): number {
  const i = typeOrder.indexOf(t);
  return i < 0 ? 99 : i;
}

function typeChip(name: string, t: TypeStatus): HTMLElement {
  const synced = (t.sentVersion ?? "") === (t.ackedVersion ?? "");
  const subs = t.subscribed?.length ? ` · ${t.subscribed.length} subscribed` : "";
  return h("span", {
    class: "chip " + (t.nacks ? "chip-nack" : synced ? "chip-ok" : "chip-wait"),
    title: `${name}: sent ${t.sentVersion ?? "–"} at ${time(t.sentAt)}, acked ${t.ackedVersion ?? "–"} at ${time(t.ackedAt)}; ${t.pushes} pushes, ${t.nacks} NACKs${subs}`,
  }, h("strong", null, name.toUpperCase()), " ", synced ? (t.ackedVersion ?? "–") : `${t.sentVersion ?? "–"} → ${t.ackedVersion ?? "–"}`);
}

function latestNack(c: ClientStatus): { type: string; version: string; message: string; at: string } | null {
  let best: { type: string; version: string; message: string; at: string } | null = null;
  for (const [type, t] of Object.entries(c.types ?? {})) {
    const n = t.lastNack;
    if (n && (!best || Date.parse(n.at) > Date.parse(best.at))) best = { type, ...n };
  }
  return best;
}
