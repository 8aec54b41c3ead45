package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/signalbox/signalbox/rollout"
)

// apiClient talks to a running signalbox's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiError is an error answer of the API.
type apiError struct {
	Status int
	Msg    string
	Hint   string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status)
	if e.Hint != "" {
		s += "\n  hint: " + e.Hint
	}
	return s
}

// do sends a request and decodes the JSON answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("request %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("signalbox at %s: %w (is `signalbox serve` running? set --addr or SIGNALBOX_ADDR)", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Hint string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &apiError{Status: resp.StatusCode, Msg: e.Error, Hint: e.Hint}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode answer of %s: %w", path, err)
		}
	}
	return nil
}

// clientFlags are --addr and --token, shared by the commands that talk to a
// running signalbox.
type clientFlags struct {
	addr, token, tlsCA string
	// http is built from --tls-ca before a subcommand runs.
	http *http.Client
}

func (f *clientFlags) bind(cmd *cobra.Command, getenv func(string) string) {
	addr := getenv("SIGNALBOX_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	cmd.PersistentFlags().StringVar(&f.addr, "addr", addr, "HTTP address of a running signalbox: host:port (http) or an http:// or https:// URL (env SIGNALBOX_ADDR)")
	cmd.PersistentFlags().StringVar(&f.tlsCA, "tls-ca", "", "PEM CA bundle that verifies an https:// --addr (default: the system's roots)")
	cmd.PersistentFlags().StringVar(&f.token, "token", getenv("SIGNALBOX_TOKEN"), "API bearer token (env SIGNALBOX_TOKEN)")
}

func (f *clientFlags) client() *apiClient {
	base := f.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	hc := f.http
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: f.token, http: hc}
}

// prepare builds the HTTP client: a bad --tls-ca is a usage error before
// anything is sent.
func (f *clientFlags) prepare(*cobra.Command, []string) error {
	hc, err := httpClient(f.tlsCA, 30*time.Second)
	if err != nil {
		return usageError{err}
	}
	f.http = hc
	return nil
}

func newRollout(getenv func(string) string) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Start, follow and steer canary and blue-green releases",
		Long: `Start, follow and steer canary and blue-green releases on a running signalbox.

Changing a release needs an operator token (--token or SIGNALBOX_TOKEN).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.bind(cmd, getenv)
	cmd.PersistentPreRunE = f.prepare
	cmd.AddCommand(rolloutStart(f), rolloutList(f), rolloutStatus(f), rolloutWatch(f))
	for _, a := range []struct{ name, short string }{
		{rollout.CmdPause, "Pause a release: the weights stay, the steps stop"},
		{rollout.CmdResume, "Resume a paused release: the step's hold starts again"},
		{rollout.CmdPromote, "Pass a manual gate, or promote the candidate to 100% now"},
		{rollout.CmdAbort, "Abort a release: all traffic back to the baseline"},
		{rollout.CmdRetry, "Start a rolled back, aborted or failed release again"},
	} {
		cmd.AddCommand(rolloutAction(f, a.name, a.short))
	}
	return cmd
}

func rolloutStart(f *clientFlags) *cobra.Command {
	var (
		spec                 rollout.Spec
		steps                []uint
		stepInterval, noData time.Duration
		postPromotion        time.Duration
		matches              []string
		file, strategy       string
		watch                bool
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a release of a service's candidate version",
		Example: `  signalbox rollout start --service greeter --baseline v1 --candidate v2 --steps 5,25,50 --step-interval 1m
  signalbox rollout start --service greeter --baseline v1 --candidate v2 --strategy bluegreen
  signalbox rollout start -f release.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return usageError{fmt.Errorf("read %s: %w", file, err)}
				}
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&spec); err != nil {
					return usageError{fmt.Errorf("%s: %w", file, err)}
				}
			}
			fl := cmd.Flags()
			if fl.Changed("strategy") || spec.Strategy == "" {
				spec.Strategy = rollout.Strategy(strategy)
			}
			if fl.Changed("steps") {
				spec.Steps = nil
				for _, s := range steps {
					spec.Steps = append(spec.Steps, uint32(s))
				}
			}
			if fl.Changed("step-interval") {
				spec.StepInterval = rollout.Duration(stepInterval)
			}
			if fl.Changed("no-data-timeout") {
				spec.Analysis.NoDataTimeout = rollout.Duration(noData)
			}
			if fl.Changed("post-promotion-window") {
				spec.PostPromotionWindow = rollout.Duration(postPromotion)
			}
			for _, m := range matches {
				h, v, ok := strings.Cut(m, "=")
				if !ok {
					return usageError{fmt.Errorf("--match %q: want header=value", m)}
				}
				spec.Matches = append(spec.Matches, rollout.HeaderRoute{Header: strings.ToLower(h), Value: v})
			}
			if err := spec.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			var r rollout.Rollout
			if err := f.client().do(cmd.Context(), http.MethodPost, "/api/v1/rollouts", spec, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s started: %s\n", r.ID, r.Reason)
			if watch {
				return watchRollout(cmd.Context(), f.client(), r.ID, cmd.OutOrStdout(), time.Second)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&file, "file", "f", "", "JSON file with the release spec (flags given too win)")
	fs.StringVar(&spec.Service, "service", "", "Consul service to release")
	fs.StringVar(&spec.Baseline, "baseline", "", "version serving now")
	fs.StringVar(&spec.Candidate, "candidate", "", "version to release")
	fs.StringVar(&strategy, "strategy", string(rollout.Canary), "canary or bluegreen")
	fs.UintSliceVar(&steps, "steps", nil, "canary: the candidate's weights, increasing (default 5,10,25,50)")
	fs.DurationVar(&stepInterval, "step-interval", time.Minute, "hold of each step (blue-green: of the preview)")
	fs.IntSliceVar(&spec.Gates, "gate", nil, "steps that wait for a manual promote before they start (1-based)")
	fs.StringArrayVar(&matches, "match", nil, "canary: header=value that always reaches the candidate (repeatable)")
	fs.StringVar(&spec.PreviewHeader, "preview-header", "", `blue-green: "name: value" that reaches the candidate (default "x-signalbox-preview: 1")`)
	fs.DurationVar(&postPromotion, "post-promotion-window", 5*time.Minute, "blue-green: how long after the switch an anomaly switches back")
	fs.Float64Var(&spec.MirrorPercent, "mirror-percent", 0, "sidecars: mirror this % of traffic to the candidate before step 1")
	fs.Float64Var(&spec.Analysis.Alpha, "alpha", 0.01, "false-rollback rate of the analysis")
	fs.Uint64Var(&spec.Analysis.MinRequests, "min-requests", 100, "candidate requests a step needs to pass")
	fs.Float64Var(&spec.Analysis.MaxErrorRate, "max-error-rate", 0, "roll back past this candidate error rate (0..1; 0 off)")
	fs.Float64Var(&spec.Analysis.MaxLatencyRatio, "max-latency-ratio", 0, "roll back past this p99 ratio to the baseline (0 off)")
	fs.DurationVar(&noData, "no-data-timeout", 10*time.Minute, "pause after this long without enough traffic to judge")
	fs.BoolVar(&watch, "watch", false, "follow the release until it ends")
	return cmd
}

func rolloutList(f *clientFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every service's current release (--all: the older ones too)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct{ Rollouts []rollout.Rollout }
			path := "/api/v1/rollouts"
			if all {
				path += "?all=true"
			}
			if err := f.client().do(cmd.Context(), http.MethodGet, path, nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSERVICE\tSTRATEGY\tBASELINE\tCANDIDATE\tPHASE\tSTEP\tWEIGHT\tUPDATED")
			for _, r := range out.Rollouts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d%%\t%s\n", r.ID, r.Spec.Service, r.Spec.Strategy, r.Spec.Baseline, r.Spec.Candidate,
					r.Phase, stepText(r), r.CandidateWeight(), r.UpdatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include releases that newer ones replaced")
	return cmd
}

func rolloutStatus(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show a release: phase, weights, steps and its history with the analysis' figures",
		Args:  exactlyOne("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r rollout.Rollout
			if err := f.client().do(cmd.Context(), http.MethodGet, "/api/v1/rollouts/"+args[0], nil, &r); err != nil {
				return err
			}
			printRollout(cmd.OutOrStdout(), r, 0)
			return nil
		},
	}
}

func rolloutWatch(f *clientFlags) *cobra.Command {
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a release live until it ends (Ctrl-C stops watching, not the release)",
		Args:  exactlyOne("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return watchRollout(cmd.Context(), f.client(), args[0], cmd.OutOrStdout(), every)
		},
	}
	cmd.Flags().DurationVar(&every, "every", time.Second, "refresh interval")
	return cmd
}

func rolloutAction(f *clientFlags, action, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  exactlyOne("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r rollout.Rollout
			body := map[string]string{"reason": reason}
			if err := f.client().do(cmd.Context(), http.MethodPost, "/api/v1/rollouts/"+args[0]+"/"+action, body, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s: %s — %s\n", r.ID, r.Phase, r.Reason)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history")
	return cmd
}

func exactlyOne(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Errorf("want one %s, got %d arguments", what, len(args))}
		}
		return nil
	}
}

// watchRollout follows the release every interval until it ends. On a
// terminal it redraws a live display in place; into a pipe or a file it
// writes each new event once, and the state line when it changes.
func watchRollout(ctx context.Context, c *apiClient, id string, w io.Writer, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	live := isTerminal(w)
	shown, last := 0, ""
	for {
		var r rollout.Rollout
		if err := c.do(ctx, http.MethodGet, "/api/v1/rollouts/"+id, nil, &r); err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return err
		}
		if live {
			// Home, draw, clear what the previous frame left below.
			fmt.Fprint(w, "\x1b[H\x1b[2J"+renderWatch(r, time.Now(), 12))
		} else {
			shown, last = printRolloutChanges(w, r, shown, last)
		}
		if r.Phase.Terminal() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printRolloutChanges is printRollout that writes the state line only when
// it changed since last; it returns the events shown and the state line.
func printRolloutChanges(w io.Writer, r rollout.Rollout, shown int, last string) (int, string) {
	var b strings.Builder
	n := printRollout(&b, r, shown)
	lines := strings.SplitAfter(b.String(), "\n")
	state := ""
	if k := len(lines) - 2; k >= 0 && strings.HasPrefix(lines[k], "now: ") {
		state = lines[k]
		lines = lines[:k]
	}
	fmt.Fprint(w, strings.Join(lines, ""))
	if state != last {
		fmt.Fprint(w, state)
	}
	return n, state
}

// renderWatch is the live display of a release: what it is, its steps with
// the current one marked, the weights, the analysis so far, and the last
// events (at most maxEvents).
func renderWatch(r rollout.Rollout, now time.Time, maxEvents int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s %s → %s (%s)   %s\n", r.ID, r.Spec.Service, r.Spec.Baseline, r.Spec.Candidate, r.Spec.Strategy, now.Local().Format(time.TimeOnly))
	fmt.Fprintf(&b, "phase    %s — %s\n", r.Phase, r.Reason)
	fmt.Fprintf(&b, "steps    %s\n", stepsText(r))
	if !r.Phase.Terminal() && r.Phase != rollout.Pending {
		fmt.Fprintf(&b, "         step %s for %v of %v, %d candidate requests of %d needed\n", stepText(r),
			now.Sub(r.StepStartedAt).Round(time.Second), r.Spec.StepInterval.D(), r.StepRequests, r.Spec.Analysis.MinRequests)
	}
	cw := r.CandidateWeight()
	const width = 40
	bar := strings.Repeat("█", int(cw)*width/100)
	fmt.Fprintf(&b, "weights  %s %3d%% %s%s %3d%% %s\n", r.Spec.Baseline, 100-cw, strings.Repeat("░", width-len([]rune(bar))), bar, cw, r.Spec.Candidate)
	d := r.Analysis.Summary(r.Spec.Analysis)
	st := d.Stats
	fmt.Fprintf(&b, "analysis %d looks; baseline %d/%d errors (%.2f%%), candidate %d/%d errors (%.2f%%)\n", st.Looks,
		st.Baseline.Errors, st.Baseline.Requests, 100*st.BaselineErrorRate, st.Candidate.Errors, st.Candidate.Requests, 100*st.CandidateErrorRate)
	if st.Threshold > 0 {
		fill := int(math.Max(0, math.Min(1, st.LogLambda/st.Threshold)) * 20)
		fmt.Fprintf(&b, "         evidence against the candidate: log Λ %.2f of %.2f [%s%s] (α %g)\n", st.LogLambda, st.Threshold,
			strings.Repeat("#", fill), strings.Repeat(".", 20-fill), st.Alpha)
	}
	if ref := st.Reference; ref != nil {
		fmt.Fprintf(&b, "         since the switch: %d/%d errors against at most %.3g%%; log Λ %.2f of %.2f\n",
			ref.Candidate.Errors, ref.Candidate.Requests, 100*ref.Rate, ref.LogLambda, ref.Threshold)
	}
	b.WriteString("history\n")
	events := r.History
	if len(events) > maxEvents || r.HistoryDropped > 0 {
		n := max(len(events)-maxEvents, 0)
		fmt.Fprintf(&b, "  … %d earlier events (signalbox rollout status %s)\n", n+r.HistoryDropped, r.ID)
		events = events[n:]
	}
	for _, e := range events {
		line := fmt.Sprintf("  %s  %-8s step %d  %3d%%  %s", e.At.Local().Format(time.TimeOnly), e.Kind, e.Step, e.Weight, e.Reason)
		if e.Actor != "" {
			line += "  [" + e.Actor + "]"
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// printRollout writes the header line and the events after the first shown
// ones (counted with those dropped from the history, which keeps its
// length once full); it returns how many events are shown now.
func printRollout(w io.Writer, r rollout.Rollout, shown int) int {
	total := len(r.History) + r.HistoryDropped
	events := r.History
	if shown == 0 {
		fmt.Fprintf(w, "rollout %s: %s %s → %s (%s)\n", r.ID, r.Spec.Service, r.Spec.Baseline, r.Spec.Candidate, r.Spec.Strategy)
		fmt.Fprintf(w, "steps: %s\n", stepsText(r))
	} else {
		events = r.History[max(len(r.History)-max(total-shown, 0), 0):]
	}
	for i, e := range events {
		if shown == 0 && i == 2 && r.HistoryDropped > 0 {
			fmt.Fprintf(w, "… %d events dropped from the history\n", r.HistoryDropped)
		}
		line := fmt.Sprintf("%s  %-8s step %d  candidate %3d%%  %s", e.At.Local().Format(time.TimeOnly), e.Kind, e.Step, e.Weight, e.Reason)
		if e.Actor != "" {
			line += "  [" + e.Actor + "]"
		}
		fmt.Fprintln(w, line)
		if d := e.Stats; d != nil {
			st := d.Stats
			fmt.Fprintf(w, "          baseline %d/%d errors, candidate %d/%d errors, log Λ %.2f of %.2f\n",
				st.Baseline.Errors, st.Baseline.Requests, st.Candidate.Errors, st.Candidate.Requests, st.LogLambda, st.Threshold)
		}
	}
	fmt.Fprintf(w, "now: %s, step %s, candidate %d%% — %s\n", r.Phase, stepText(r), r.CandidateWeight(), r.Reason)
	return total
}

func stepsText(r rollout.Rollout) string {
	if r.Spec.Strategy == rollout.BlueGreen {
		return "1 preview (" + r.Spec.PreviewHeader + "), 2 switch"
	}
	var parts []string
	for i, s := range r.Spec.Steps {
		p := fmt.Sprintf("%d:%d%%", i+1, s)
		if i+1 == r.Step {
			p = "[" + p + "]"
		}
		parts = append(parts, p)
	}
	last := fmt.Sprintf("%d:100%%", len(r.Spec.Steps)+1)
	if r.Step == len(r.Spec.Steps)+1 {
		last = "[" + last + "]"
	}
	return strings.Join(append(parts, last), " → ")
}

func stepText(r rollout.Rollout) string {
	n := len(r.Spec.Steps) + 1
	if r.Spec.Strategy == rollout.BlueGreen {
		n = 2
	}
	return fmt.Sprintf("%d/%d", r.Step, n)
}
