package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
)

// promtool finds Prometheus's promtool; its absence fails the test, since
// the rules would go unchecked.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: apt-get install prometheus (Debian), or put Prometheus's promtool on PATH")
	}
	return p
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// TestPrometheusFiles: the scrape config and the rules load, and the rules'
// unit tests pass (each alert fires when it should and is quiet otherwise).
func TestPrometheusFiles(t *testing.T) {
	p := promtool(t)
	run(t, "prometheus", p, "check", "config", "prometheus.yml")
	run(t, "prometheus", p, "test", "rules", "alerts_test.yml")
}

// TestAlertsUseMetricsSignalboxHas: every signalbox_* metric an alert reads
// is one signalbox defines, so that a renamed metric cannot leave an alert
// silently quiet.
func TestAlertsUseMetricsSignalboxHas(t *testing.T) {
	raw, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	defined := definedMetrics(t, "..")
	labels := regexp.MustCompile(`\{[^}]*\}|\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	names := regexp.MustCompile(`\bsignalbox_[a-z0-9_]+\b`)
	checked := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range names.FindAllString(labels.ReplaceAllString(r.Expr, ""), -1) {
				checked++
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if !defined[base] {
						base = strings.TrimSuffix(base, suffix)
					}
				}
				if !defined[base] {
					t.Errorf("alert %s reads %s, which no signalbox source defines", r.Alert, m)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d signalbox metrics found in the alerts' expressions: the parsing is broken", checked)
	}
}

// definedMetrics is every "signalbox_…" string literal in the module's
// non-test Go sources.
func definedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"(signalbox_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || d.Name() == "tools" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		keys := make([]string, 0, len(out))
		for k := range out {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("only %d metric names found in the sources (%v): the walk is broken", len(out), keys)
	}
	return out
}

// TestConsulServiceDefinition: the example service definition, with its
// sidecar registration, is one the pinned Consul accepts.
func TestConsulServiceDefinition(t *testing.T) {
	bin, err := consultest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := os.ReadFile("consul/web.hcl")
	if err != nil {
		t.Fatal(err)
	}
	agent := "data_dir = \"" + filepath.Join(dir, "data") + "\"\n"
	for name, content := range map[string][]byte{"web.hcl": b, "agent.hcl": []byte(agent)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run(t, ".", bin, "validate", dir)
}
