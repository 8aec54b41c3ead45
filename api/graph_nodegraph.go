package api

import (
	"github.com/signalbox/signalbox/topology"
)

// nodeGraph is the graph in the shape of Grafana's node graph panel: two
// data frames, nodes and edges, written as rows whose keys are the panel's
// field names (Grafana's NodeGraphDataFrameFieldNames; it matches them
// without regard to case):
//
//	nodes: id, title, subtitle, mainstat, secondarystat, arc__*, detail__*
//	edges: id, source, target, mainstat, secondarystat, detail__*
//
// With the Infinity data source (yesoreyeram-infinity-datasource), make two
// queries of type JSON on /api/v1/graph?format=nodegraph: one with format
// "Nodes - Node Graph" and rows/root selector "nodes", one with format
// "Edges - Node Graph" and selector "edges". Set the panel's units: a
// node's mainstat is requests/s received and its secondarystat the error
// rate in percent; an edge's mainstat is requests/s and its secondarystat
// the p99 latency in ms. A node's arcs are the share of failed and passed
// requests it received (both 0 when it received none); their colours are in
// arc__failed_color and arc__passed_color, which Infinity reads.
type nodeGraph struct {
	Nodes []nodeGraphNode `json:"nodes"`
	Edges []nodeGraphEdge `json:"edges"`
}

type nodeGraphNode struct {
	ID            string  `json:"id"`
	Title         string  `json:"title"`
	Subtitle      string  `json:"subtitle"`
	MainStat      float64 `json:"mainstat"`
	SecondaryStat float64 `json:"secondarystat"`
	ArcFailed     float64 `json:"arc__failed"`
	ArcPassed     float64 `json:"arc__passed"`
	ArcFailedCol  string  `json:"arc__failed_color"`
	ArcPassedCol  string  `json:"arc__passed_color"`
	Service       string  `json:"detail__service"`
	Version       string  `json:"detail__version"`
}

type nodeGraphEdge struct {
	ID            string  `json:"id"`
	Source        string  `json:"source"`
	Target        string  `json:"target"`
	MainStat      float64 `json:"mainstat"`
	SecondaryStat float64 `json:"secondarystat"`
	Protocol      string  `json:"detail__protocol"`
	Requests      uint64  `json:"detail__requests"`
	Errors        uint64  `json:"detail__errors"`
	ErrorPercent  float64 `json:"detail__error_percent"`
	P50Ms         float64 `json:"detail__p50_ms"`
	P95Ms         float64 `json:"detail__p95_ms"`
}

// toNodeGraph converts g. Edge IDs are source->target/protocol: the panel
// needs them unique, and two nodes may talk over more than one protocol.
func toNodeGraph(g topology.Graph) nodeGraph {
	ng := nodeGraph{Nodes: make([]nodeGraphNode, 0, len(g.Nodes)), Edges: make([]nodeGraphEdge, 0, len(g.Edges))}
	for _, n := range g.Nodes {
		gn := nodeGraphNode{
			ID: n.ID, Title: n.Service, Subtitle: n.Version,
			MainStat: n.RPS, SecondaryStat: n.ErrorRate * 100,
			ArcFailedCol: "red", ArcPassedCol: "green",
			Service: n.Service, Version: n.Version,
		}
		if n.RPS > 0 {
			gn.ArcFailed, gn.ArcPassed = n.ErrorRate, 1-n.ErrorRate
		}
		ng.Nodes = append(ng.Nodes, gn)
	}
	for _, e := range g.Edges {
		ng.Edges = append(ng.Edges, nodeGraphEdge{
			ID: e.Source + "->" + e.Target + "/" + string(e.Protocol), Source: e.Source, Target: e.Target,
			MainStat: e.RPS, SecondaryStat: e.P99Ms,
			Protocol: string(e.Protocol), Requests: e.Requests, Errors: e.Errors,
			ErrorPercent: e.ErrorRate * 100, P50Ms: e.P50Ms, P95Ms: e.P95Ms,
		})
	}
	return ng
}
