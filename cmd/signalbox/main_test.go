package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "signalbox ") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
}

func TestBadInputExitsWithUsageCode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"serve", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"bad duration", []string{"serve", "--debounce-quiet", "soon"}, `invalid argument "soon"`},
		{"bad address", []string{"serve", "--xds-addr", "18000"}, `--xds-addr "18000": want host:port`},
		{"negative duration", []string{"serve", "--removal-grace", "-1s"}, "--removal-grace -1s: must be positive"},
		{"max below quiet", []string{"serve", "--debounce-quiet", "1s", "--debounce-max", "10ms"}, "--debounce-max 10ms is shorter than --debounce-quiet 1s"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, `--log-level "loud"`},
		{"graph bucket too small", []string{"serve", "--graph-bucket", "500ms"}, "--graph-bucket 500ms: want whole seconds from 1s to 1m"},
		{"graph retention not whole buckets", []string{"serve", "--graph-retention", "15m5s"}, "--graph-retention 15m5s: want a whole number of --graph-bucket 10s, from 6 to 1,440 of them (1m0s to 4h0m0s)"},
		{"graph retention too long", []string{"serve", "--graph-bucket", "1s", "--graph-retention", "1h"}, "from 6 to 1,440 of them"},
		{"graph no edges", []string{"serve", "--graph-max-edges", "0"}, "--graph-max-edges 0: want at least 1"},
		{"bad client identity", []string{"serve", "--tls-client-identity", "spiffe"}, `--tls-client-identity "spiffe": want "service" or "any"`},
		{"unknown command", []string{"serv"}, `unknown command "serv"`},
		{"stray argument", []string{"serve", "extra"}, `unexpected argument "extra"`},
		{"missing config file", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, "config file: open"},
		{"config not YAML", []string{"serve", "--config", write("bad.yaml", "xds-addr: [unclosed")}, "not valid YAML"},
		{"config unknown key", []string{"serve", "--config", write("key.yaml", "xds-address: 1.2.3.4:5\n")}, `unknown key "xds-address" (valid keys: `},
		{"config key twice", []string{"serve", "--config", write("twice.yaml", "debounce-max: 200ms\ndebounce-max: 50ms\n")}, `"debounce-max" already set`},
		{"config policy key twice", []string{"serve", "--config", write("twice2.yaml", "traffic:\n  retries: 2\n  retries: 9\n")}, `"retries" already set`},
		{"config bad value", []string{"serve", "--config", write("val.yaml", "consul-wait: forever\n")}, `key "consul-wait": bad value "forever"`},
		{"config nested value", []string{"serve", "--config", write("nest.yaml", "xds-addr:\n  host: a\n")}, `key "xds-addr": want a single value`},
		{"policy value out of range", []string{"serve", "--config", write("pol.yaml", "telemetry:\n  tracing:\n    sampling: 150\n")}, "telemetry.tracing.sampling = 150: out of range"},
		{"policy unknown key", []string{"serve", "--config", write("pol2.yaml", "traffic:\n  retrys: 3\n")}, `traffic: unknown key "retrys"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, nil, tc.args...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, stderr)
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signalbox.yaml")
	if err := os.WriteFile(file, []byte("consul-addr: file:8500\nxds-addr: 127.0.0.1:1\nroute-warning: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, "127.0.0.1:8500"},
		{"environment over default", nil, map[string]string{"CONSUL_HTTP_ADDR": "env:8500"}, "env:8500"},
		{"file over environment", []string{"--config", file}, map[string]string{"CONSUL_HTTP_ADDR": "env:8500"}, "file:8500"},
		{"flag over file", []string{"--config", file, "--consul-addr", "flag:8500"}, map[string]string{"CONSUL_HTTP_ADDR": "env:8500"}, "flag:8500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd, got := serveCommand()
			cmd.RunE = func(cmd *cobra.Command, _ []string) error {
				return got.resolve(cmd.Flags(), func(k string) string { return tc.env[k] })
			}
			cmd.SetArgs(tc.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if got.consulAddr != tc.want {
				t.Fatalf("consul-addr = %q, want %q", got.consulAddr, tc.want)
			}
		})
	}
}

func TestSelfZipkinURL(t *testing.T) {
	cases := []struct{ httpAddr, advertise, want string }{
		{"127.0.0.1:8080", "", "http://127.0.0.1:8080/api/v2/spans"},
		{"0.0.0.0:8080", "", "http://127.0.0.1:8080/api/v2/spans"},
		{"0.0.0.0:8080", "signalbox.internal", "http://signalbox.internal:8080/api/v2/spans"},
		{"[::]:9090", "fd00::7", "http://[fd00::7]:9090/api/v2/spans"},
		{":8080", "", "http://127.0.0.1:8080/api/v2/spans"},
	}
	for _, tc := range cases {
		c := serveConfig{httpAddr: tc.httpAddr, advertiseAddr: tc.advertise}
		if got := c.selfZipkinURL(); got != tc.want {
			t.Errorf("http-addr %q advertise %q: %q, want %q", tc.httpAddr, tc.advertise, got, tc.want)
		}
	}
}
