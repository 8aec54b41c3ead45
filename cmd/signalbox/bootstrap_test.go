package main

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/xds/bootstrap"
	"github.com/signalbox/signalbox/xds/ir"
)

func TestBootstrapYAMLToStdout(t *testing.T) {
	code, out, stderr := runCmd(t, nil, "bootstrap", "--service", "web", "--node-id", "web-1", "--version", "v2",
		"--xds-addr", "cp.example:18000", "--upstreams", "orders,billing", "--stats-tag", "team=storefront")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	b, err := bootstrap.Parse([]byte(out), "yaml")
	if err != nil {
		t.Fatalf("output does not validate: %v\n%s", err, out)
	}
	n := b.GetNode()
	if n.GetId() != "web-1" || n.GetCluster() != "web" {
		t.Errorf("node: %v", n)
	}
	md := n.GetMetadata().GetFields()
	if md[ir.NodeMetaVersion].GetStringValue() != "v2" || md[ir.NodeMetaUpstreams].GetStringValue() != "billing,orders" {
		t.Errorf("metadata: %v", md)
	}
	if len(b.GetStatsConfig().GetStatsTags()) != 3 {
		t.Errorf("stats tags: %v", b.GetStatsConfig().GetStatsTags())
	}
}

func TestBootstrapDefaults(t *testing.T) {
	code, out, stderr := runCmd(t, nil, "bootstrap", "--service", "web")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	b, err := bootstrap.Parse([]byte(out), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("the run succeeded, so the hostname is known: %v", err)
	}
	if got := b.GetNode().GetId(); got != "web-"+host {
		t.Errorf("default node id %q, want %q", got, "web-"+host)
	}
	ep := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if ep.GetAddress() != "127.0.0.1" || ep.GetPortValue() != 18000 {
		t.Errorf("default xds address: %v", ep)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 19000 {
		t.Errorf("default admin address: %v", a)
	}
	if d := b.GetStaticResources().GetClusters()[0].GetConnectTimeout().AsDuration(); d != bootstrap.DefaultConnectTimeout {
		t.Errorf("connect timeout %v", d)
	}
}

func TestBootstrapJSON(t *testing.T) {
	code, out, stderr := runCmd(t, nil, "bootstrap", "--service", "web", "--node-id", "web-1", "--format", "json",
		"--xds-addr", "10.0.0.5:18000", "--tls-ca", "/etc/signalbox/ca.pem", "--connect-timeout", "2s")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "{\n") {
		t.Errorf("not indented JSON:\n%s", out)
	}
	b, err := bootstrap.Parse([]byte(out), "json")
	if err != nil {
		t.Fatalf("output does not validate: %v\n%s", err, out)
	}
	c := b.GetStaticResources().GetClusters()[0]
	if c.GetTransportSocket() == nil || c.GetConnectTimeout().AsDuration().String() != "2s" {
		t.Errorf("cluster: %v", c)
	}
}

func TestBootstrapOutputFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, nil, "bootstrap", "--service", "web", "--node-id", "web-1", "--output", path)
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if out != "" {
		t.Errorf("wrote to stdout too: %q", out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.Parse(data, "yaml"); err != nil {
		t.Fatalf("file does not validate: %v\n%s", err, data)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// A directory that does not exist is an error, not a usage error.
	code, _, stderr = runCmd(t, nil, "bootstrap", "--service", "web", "--output", filepath.Join(dir, "no", "such", "dir.yaml"))
	if code != 1 || !strings.Contains(stderr, "write ") {
		t.Errorf("missing directory: code %d, stderr %s", code, stderr)
	}
}

func TestBootstrapBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no service", nil, "--service is empty"},
		{"bad xds addr", []string{"--service", "web", "--xds-addr", "cp.example"}, `--xds-addr "cp.example": want host:port`},
		{"public admin", []string{"--service", "web", "--admin-addr", "0.0.0.0:19000"}, "--admin-addr \"0.0.0.0:19000\" is not a loopback address"},
		{"bad port", []string{"--service", "web", "--inbound-port", "70000"}, "--inbound-port 70000 is out of range"},
		{"same ports", []string{"--service", "web", "--inbound-port", "15001"}, "--inbound-port 15001 is also the outbound port"},
		{"bad upstream", []string{"--service", "web", "--upstreams", "orders,bad_name"}, `--upstreams "bad_name" is not a valid Consul service name`},
		{"bad format", []string{"--service", "web", "--format", "xml"}, `--format "xml": want yaml or json`},
		{"cert without key", []string{"--service", "web", "--tls-ca", "/ca.pem", "--tls-cert", "/c.pem"}, "--tls-key is empty but tls-cert is set"},
		{"bad timeout", []string{"--service", "web", "--connect-timeout", "0s"}, "--connect-timeout 0s: must be positive"},
		{"not a number", []string{"--service", "web", "--app-port", "http"}, `invalid argument "http"`},
		{"stray argument", []string{"--service", "web", "extra"}, `unexpected argument "extra"`},
		{"several problems", []string{"--format", "xml", "--xds-addr", "x"}, "bad options:\n  --format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, nil, append([]string{"bootstrap"}, tc.args...)...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, stderr)
			}
			if out != "" {
				t.Fatalf("wrote output despite the error: %q", out)
			}
		})
	}
}

// TestDefaultNodeID covers the default node id with an injected hostname,
// including a host whose name cannot be read.
func TestDefaultNodeID(t *testing.T) {
	cases := []struct {
		name     string
		hostname func() (string, error)
		want     string // node id, or "" for a usage error
	}{
		{"from the hostname", func() (string, error) { return "host-a", nil }, "web-host-a"},
		{"hostname unknown", func() (string, error) { return "", errors.New("no uts namespace") }, ""},
		{"hostname empty", func() (string, error) { return "", nil }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &bootstrapConfig{
				opts:           bootstrap.Options{Service: "web", XDSAddr: "127.0.0.1:18000", AdminAddr: "127.0.0.1:19000"},
				connectTimeout: 5 * time.Second,
				format:         "yaml",
			}
			out, err := c.render(tc.hostname)
			if tc.want == "" {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), "set --node-id") {
					t.Fatalf("err %v, want a usage error that says to set --node-id", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := bootstrap.Parse(out, "yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := b.GetNode().GetId(); got != tc.want {
				t.Fatalf("node id %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBootstrapWarnsOfACertificateForAnotherService: a client certificate
// that does not name --service still gives a bootstrap, with a warning on
// stderr that says signalbox will refuse the sidecar and what to use.
func TestBootstrapWarnsOfACertificateForAnotherService(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	webPEM, webKey := ca.issue(t, "web", x509.ExtKeyUsageClientAuth)
	apiPEM, _ := ca.issue(t, "api", x509.ExtKeyUsageClientAuth)
	caFile := write("ca.pem", ca.pem)
	key := write("key.pem", webKey)
	cases := []struct {
		name, cert string
		warning    string // "": none
	}{
		{"its own service", write("web.pem", webPEM), ""},
		{"another service", write("api.pem", apiPEM), `is for api, not --service "web": signalbox refuses this sidecar under mutual TLS unless it runs with --tls-client-identity any; use a certificate for "web"`},
		{"not a certificate", write("junk.pem", []byte("junk")), "no PEM certificate in it"},
		{"missing", filepath.Join(dir, "nope.pem"), "--tls-cert not checked: open "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, nil, "bootstrap", "--service", "web", "--node-id", "web-1", "--xds-addr", "cp.example:18000",
				"--tls-ca", caFile, "--tls-cert", c.cert, "--tls-key", key)
			if code != 0 || !strings.Contains(stdout, "node:") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want a bootstrap", code, stdout, stderr)
			}
			if c.warning == "" {
				if stderr != "" {
					t.Errorf("stderr %q; want nothing", stderr)
				}
				return
			}
			if !strings.HasPrefix(stderr, "warning: --tls-cert ") || !strings.Contains(stderr, c.warning) {
				t.Errorf("stderr %q; want a warning with %q", stderr, c.warning)
			}
		})
	}
}
