package build_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/internal/golden"
	"github.com/signalbox/signalbox/xds/policy"
	"github.com/signalbox/signalbox/xds/translate"
	"github.com/signalbox/signalbox/xds/validate"
)

var update = flag.Bool("update", false, "rewrite testdata/pipeline/out")

// pipelineInput is a Consul-shaped catalog, plans, the config file's policy
// sections and one sidecar's node, as signalbox would see them.
type pipelineInput struct {
	Services map[string][]discovery.Instance `json:"services"`
	Plans    map[string]rollout.Plan         `json:"plans,omitempty"`
	Policy   map[string]any                  `json:"policy,omitempty"`
	Node     struct {
		ID       string            `json:"id"`
		Cluster  string            `json:"cluster"`
		Metadata map[string]string `json:"metadata,omitempty"`
	} `json:"node"`
}

// TestSidecarPipelineGolden runs catalog → build (with xds/policy) →
// translate for testdata/pipeline/in/*.yaml and compares the listeners,
// routes, clusters and the reported problems with testdata/pipeline/out.
func TestSidecarPipelineGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/pipeline/in/*.yaml")
	if len(inputs) == 0 {
		t.Fatal("no pipeline inputs")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var input pipelineInput
			if err := yaml.UnmarshalStrict(raw, &input); err != nil {
				t.Fatalf("parse: %v", err)
			}
			cfg := policy.DefaultConfig("http://10.0.0.100:8080/api/v2/spans")
			if input.Policy != nil {
				b, _ := yaml.Marshal(input.Policy)
				if cfg, err = policy.ParseConfig(b); err != nil {
					t.Fatalf("policy: %v", err)
				}
				cfg = cfg.WithSelfZipkinURL("http://10.0.0.100:8080/api/v2/spans")
			}
			var svcs []*discovery.Service
			for n, inst := range input.Services {
				for i := range inst {
					inst[i].Version = discovery.VersionOf(inst[i].Tags, inst[i].Meta)
				}
				svcs = append(svcs, discovery.NewService(n, inst))
			}
			cat := discovery.NewCatalog(time.Time{}, svcs...)
			node, problems := build.ParseNode(input.Node.ID, input.Node.Cluster, input.Node.Metadata)
			sc := build.Sidecar(cat, input.Plans, build.Policy{Services: cfg.ForCatalog}, build.IndexProxies(cat), node)
			sc.Problems = append(problems, sc.Problems...)
			res, err := translate.Sidecar(sc)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string][]proto.Message{}
			for _, m := range res.Listeners {
				out["listeners"] = append(out["listeners"], m)
			}
			for _, m := range res.Routes {
				out["routes"] = append(out["routes"], m)
			}
			for _, m := range res.Clusters {
				out["clusters"] = append(out["clusters"], m)
			}
			for kind, msgs := range out {
				for _, m := range msgs {
					if err := validate.Deep(m); err != nil {
						t.Errorf("%s: %v", kind, err)
					}
				}
			}
			files := map[string][]byte{"problems": golden.Marshal(t, map[string]any{"problems": sc.Problems})}
			for _, kind := range []string{"listeners", "routes", "clusters"} {
				files[kind] = golden.YAML(t, out[kind])
			}
			for kind, got := range files {
				golden.Check(t, filepath.Join("testdata/pipeline/out", name+"."+kind+".yaml"), got, *update)
			}
		})
	}
}
