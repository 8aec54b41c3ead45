// The Releases and Proxies panes, loaded after the first graph is on screen
// (or at once when the page opens on one of them): they and uPlot are not
// needed for the first paint.

export { ProxiesView } from "./proxies";
export { ReleasesView } from "./releases";
