package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/signalbox/signalbox/api"
	"github.com/signalbox/signalbox/topology"
)

// graphConfig is every setting of `signalbox graph`.
type graphConfig struct {
	window time.Duration
	by     string
	dot    bool
	addr   string
	tlsCA  string
}

// graphTimeout bounds one fetch of the graph.
const graphTimeout = 30 * time.Second

func newGraph(getenv func(string) string) *cobra.Command {
	c := &graphConfig{}
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Print the live service graph of a running signalbox",
		Long: `Print the live service graph of a running signalbox: one line per edge
(caller, callee, protocol), the busiest first, with its rate, error rate,
latency percentiles and requests over the window. With --dot, print it in
Graphviz's DOT language instead (signalbox graph --dot | dot -Tsvg > graph.svg).

--addr is the --http-addr of 'signalbox serve'; the environment variable
SIGNALBOX_ADDR sets it when the flag is not given. A signalbox serving TLS is
reached at https://host:port; --tls-ca verifies it with a private CA.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.DurationVar(&c.window, "window", 5*time.Minute, "how far back to count, e.g. 1m, 5m, 15m")
	fs.StringVar(&c.by, "by", "service", "granularity: service or version")
	fs.BoolVar(&c.dot, "dot", false, "print Graphviz DOT instead of a table")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "signalbox's HTTP address, host:port (http) or an http:// or https:// URL (env SIGNALBOX_ADDR)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM CA bundle that verifies an https:// --addr (default: the system's roots)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !fs.Changed("addr") {
			if v := getenv("SIGNALBOX_ADDR"); v != "" {
				c.addr = v
			}
		}
		if c.by != string(topology.ByService) && c.by != string(topology.ByVersion) {
			return usageError{fmt.Errorf("--by %q: want service or version", c.by)}
		}
		if c.window <= 0 {
			return usageError{fmt.Errorf("--window %v: must be positive", c.window)}
		}
		base, err := baseURL(c.addr)
		if err != nil {
			return usageError{err}
		}
		hc, err := httpClient(c.tlsCA, 0)
		if err != nil {
			return usageError{err}
		}
		return runGraph(cmd.Context(), cmd.OutOrStdout(), hc, base, *c)
	}
	return cmd
}

// baseURL turns host:port, or an http(s) URL, into the URL to put paths on.
func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--addr %q: want host:port or an http:// or https:// URL, like 127.0.0.1:8080", addr)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// runGraph fetches the graph and prints it.
func runGraph(ctx context.Context, out io.Writer, hc *http.Client, base string, c graphConfig) error {
	q := url.Values{"window": {c.window.String()}, "by": {c.by}}
	if c.dot {
		q.Set("format", "dot")
	}
	body, err := fetch(ctx, hc, base, "/api/v1/graph?"+q.Encode())
	if err != nil {
		return err
	}
	if c.dot {
		_, err := out.Write(body)
		return err
	}
	var g topology.Graph
	if err := json.Unmarshal(body, &g); err != nil {
		return fmt.Errorf("read the graph from %s: %w", base, err)
	}
	return printEdges(out, g)
}

// fetch GETs base+path and returns the body of a 200. A server's error answer
// becomes an error with its message and hint; a 400 is a usage error, as
// the command line asked for something the server refuses.
func fetch(ctx context.Context, hc *http.Client, base, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, graphTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("graph request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The URL error repeats the whole URL; the cause is what helps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach signalbox at %s: %w (is `signalbox serve` running? set --addr or SIGNALBOX_ADDR to its --http-addr)", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", base, err)
	}
	if resp.StatusCode == http.StatusOK {
		return body, nil
	}
	var e api.Error
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
	}
	err = fmt.Errorf("signalbox answered %s: %s", resp.Status, e.Error)
	if e.Hint != "" {
		err = fmt.Errorf("%w (hint: %s)", err, e.Hint)
	}
	if resp.StatusCode == http.StatusBadRequest {
		return nil, usageError{err}
	}
	return nil, err
}

// printEdges writes g's edges as a table, the most requests first.
func printEdges(out io.Writer, g topology.Graph) error {
	if len(g.Edges) == 0 {
		_, err := fmt.Fprintf(out, "no traffic in the last %s\n", g.Window)
		return err
	}
	edges := slices.Clone(g.Edges)
	slices.SortStableFunc(edges, func(a, b topology.GraphEdge) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests),
			cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target), cmp.Compare(a.Protocol, b.Protocol))
	})
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTARGET\tPROTO\tRPS\tERR%\tP50\tP95\tP99\tREQUESTS")
	for _, e := range edges {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%d\n", e.Source, e.Target, e.Protocol, e.RPS, e.ErrorRate*100,
			ms(e.P50Ms), ms(e.P95Ms), ms(e.P99Ms), e.Requests)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print the graph: %w", err)
	}
	return nil
}

// ms formats a latency in milliseconds, fewer decimals as it grows.
func ms(v float64) string {
	prec := 2
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + "ms"
}
