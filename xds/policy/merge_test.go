package policy

import (
	"github.com/signalbox/signalbox/xds/ir"

	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name      string
		instances []map[string]string
		want      map[string]string
		conflicts []string // Problem.String() of each conflict
	}{
		{name: "no instances", want: map[string]string{}},
		{name: "nil meta", instances: []map[string]string{nil, nil}, want: map[string]string{}},
		{
			name: "agreement, other keys dropped",
			instances: []map[string]string{
				{MetaTraceSampling: "5", "version": "v1"},
				{MetaTraceSampling: "5", "version": "v2"},
			},
			want: map[string]string{MetaTraceSampling: "5"},
		},
		{
			name: "majority",
			instances: []map[string]string{
				{MetaTraceSampling: "5"}, {MetaTraceSampling: "1"}, {MetaTraceSampling: "5"},
			},
			want:      map[string]string{MetaTraceSampling: "5"},
			conflicts: []string{`meta signalbox-trace-sampling="5": instances disagree (2 instances have "5", 1 instance has "1"); using "5", the value most instances set`},
		},
		{
			name: "tie goes to the smallest value",
			instances: []map[string]string{
				{MetaRetries: "3"}, {MetaRetries: "10"}, {MetaRetries: "3"}, {MetaRetries: "10"},
			},
			want:      map[string]string{MetaRetries: "10"},
			conflicts: []string{`meta signalbox-retries="10": instances disagree (2 instances have "10", 2 instances have "3"); using "10", the value most instances set`},
		},
		{
			name: "unset instances do not vote but are reported",
			instances: []map[string]string{
				{MetaALS: "false"}, {}, {MetaALS: " "}, nil,
			},
			want:      map[string]string{MetaALS: "false"},
			conflicts: []string{`meta signalbox-als="false": instances disagree (1 instance has "false", 3 instances have no value); using "false", the value most instances set`},
		},
		{
			name: "several keys, conflicts sorted by key",
			instances: []map[string]string{
				{MetaRetries: "1", MetaALS: "true", "signalbox-typo": "x"},
				{MetaRetries: "2", MetaALS: "false", "signalbox-typo": "x"},
			},
			want: map[string]string{MetaRetries: "1", MetaALS: "false", "signalbox-typo": "x"},
			conflicts: []string{
				`meta signalbox-als="false": instances disagree (1 instance has "false", 1 instance has "true")`,
				`meta signalbox-retries="1": instances disagree (1 instance has "1", 1 instance has "2")`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, conflicts := Merge(tt.instances)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("meta (-want +got):\n%s", diff)
			}
			if len(conflicts) != len(tt.conflicts) {
				t.Fatalf("got %d conflicts, want %d: %q", len(conflicts), len(tt.conflicts), conflicts)
			}
			for i, c := range conflicts {
				if !strings.HasPrefix(c.String(), tt.conflicts[i]) {
					t.Errorf("conflict %d: %q\ndoes not start with %q", i, c, tt.conflicts[i])
				}
			}
		})
	}
}

func TestMergeDoesNotChangeInput(t *testing.T) {
	in := []map[string]string{{MetaRetries: "1", "x": "y"}}
	Merge(in)
	if diff := cmp.Diff([]map[string]string{{MetaRetries: "1", "x": "y"}}, in); diff != "" {
		t.Errorf("input changed (-want +got):\n%s", diff)
	}
}

// docComment is the package doc comment, from doc.go.
func docComment(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoutingKeysAreNeitherMergedNorUnknown(t *testing.T) {
	meta, conflicts := Merge([]map[string]string{{ir.InstanceMetaInboundPort: "15006"}, {ir.InstanceMetaInboundPort: "16006"}, {}})
	if len(conflicts) != 0 || meta[ir.InstanceMetaInboundPort] != "" {
		t.Fatalf("per-instance %s merged: meta %v, conflicts %v", ir.InstanceMetaInboundPort, meta, conflicts)
	}
	sp := ForService(DefaultConfig("http://127.0.0.1:8080/api/v2/spans"), InstanceInfo{Service: "web"}, map[string]string{ir.InstanceMetaInboundPort: "15006"})
	if len(sp.Problems) != 0 {
		t.Fatalf("%s reported as a problem: %v", ir.InstanceMetaInboundPort, sp.Problems)
	}
}
