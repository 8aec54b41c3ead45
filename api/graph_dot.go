package api

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/signalbox/signalbox/topology"
)

// writeDOT writes g as a Graphviz digraph: one node per service (or
// service@version), labelled with its ID, and one edge per (source, target,
// protocol), labelled with its protocol, rate, error rate and p99. Every ID
// is a quoted string, so names with dashes, dots or @ are safe.
func writeDOT(b *strings.Builder, g topology.Graph, by topology.By) {
	b.WriteString("digraph signalbox {\n")
	fmt.Fprintf(b, "  graph [label=%s, labelloc=t, rankdir=LR];\n",
		dotQuote(fmt.Sprintf("signalbox: by %s, window %s, at %s", by, g.Window, g.GeneratedAt.Format("2006-01-02T15:04:05Z07:00"))))
	b.WriteString("  node [shape=box, style=rounded];\n")
	for _, n := range g.Nodes {
		fmt.Fprintf(b, "  %s [label=%s];\n", dotQuote(n.ID), dotQuote(n.ID))
	}
	for _, e := range g.Edges {
		label := fmt.Sprintf("%s\n%s rps\n%s err\np99 %s", e.Protocol, formatRPS(e.RPS), formatPercent(e.ErrorRate), formatMs(e.P99Ms))
		attrs := ""
		if e.Errors > 0 {
			// Failing edges stand out in the picture.
			attrs = ", color=red, fontcolor=red"
		}
		fmt.Fprintf(b, "  %s -> %s [label=%s%s];\n", dotQuote(e.Source), dotQuote(e.Target), dotQuote(label), attrs)
	}
	b.WriteString("}\n")
}

// dotQuote makes s a DOT double-quoted string. Inside one, DOT gives
// meaning to \" and to the label escapes \n, \l, \r, \N, \G…: backslashes
// are doubled so a name is shown as it is, and a newline becomes \n.
func dotQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatRPS is a rate with two decimals below 100/s, none above.
func formatRPS(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// formatPercent is a ratio as a percentage with two decimals.
func formatPercent(v float64) string {
	return strconv.FormatFloat(v*100, 'f', 2, 64) + "%"
}

// formatMs is a latency in milliseconds, with fewer decimals as it grows.
func formatMs(v float64) string {
	prec := 2
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " ms"
}
