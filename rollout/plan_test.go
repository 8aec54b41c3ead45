package rollout

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// blueGreen is a preview: all user traffic on v1, the preview header on v2.
func blueGreen() Plan {
	return Plan{
		Service: "greeter",
		Weights: []SubsetWeight{{Subset: "v1", Weight: 100}, {Subset: "v2", Weight: 0}},
		Matches: []HeaderRoute{{Header: "x-signalbox-preview", Value: "1", Subset: "v2"}},
	}
}

func TestPlanValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(p *Plan)
		// wantErr is a fragment of the error; "" means valid.
		wantErr string
	}{
		{name: "preview with a weight-0 candidate", edit: func(*Plan) {}},
		{name: "match subset not listed in the weights", edit: func(p *Plan) { p.Weights = p.Weights[:1] }},
		{name: "canary with matches on two headers", edit: func(p *Plan) {
			p.Weights = []SubsetWeight{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}}
			p.Matches = append(p.Matches, HeaderRoute{Header: "x-user_group.beta", Value: "Testers 1", Subset: "v2"})
		}},
		{name: "same header, other value", edit: func(p *Plan) {
			p.Matches = append(p.Matches, HeaderRoute{Header: "x-signalbox-preview", Value: "0", Subset: "v1"})
		}},
		{name: "mirror to a weight-0 subset", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2", Percent: 100} }},
		{name: "mirror to an unlisted subset, smallest share", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v3", Percent: MinMirrorPercent} }},

		{name: "no service", edit: func(p *Plan) { p.Service = "" }, wantErr: "service is empty"},
		{name: "weights add up to 0", edit: func(p *Plan) { p.Weights[0].Weight = 0 }, wantErr: "add up to 0"},
		{name: "subset twice", edit: func(p *Plan) { p.Weights[1].Subset = "v1" }, wantErr: `"v1" is listed twice`},
		{name: "upper-case header", edit: func(p *Plan) { p.Matches[0].Header = "X-Signalbox-Preview" }, wantErr: "lower case"},
		{name: "empty header", edit: func(p *Plan) { p.Matches[0].Header = "" }, wantErr: "matches[0]: header name is empty"},
		{name: "pseudo-header", edit: func(p *Plan) { p.Matches[0].Header = ":authority" }, wantErr: "only a-z"},
		{name: "space in header", edit: func(p *Plan) { p.Matches[0].Header = "x preview" }, wantErr: "only a-z"},
		{name: "grpc- header", edit: func(p *Plan) { p.Matches[0].Header = "grpc-timeout" }, wantErr: "reserved by gRPC"},
		{name: "binary header", edit: func(p *Plan) { p.Matches[0].Header = "x-token-bin" }, wantErr: "binary"},
		{name: "empty value", edit: func(p *Plan) { p.Matches[0].Value = "" }, wantErr: "value is empty"},
		{name: "control character in value", edit: func(p *Plan) { p.Matches[0].Value = "1\r\n" }, wantErr: "printable ASCII"},
		{name: "non-ASCII value", edit: func(p *Plan) { p.Matches[0].Value = "ü" }, wantErr: "printable ASCII"},
		{name: "padded value", edit: func(p *Plan) { p.Matches[0].Value = " 1" }, wantErr: "spaces never match"},
		{name: "empty match subset", edit: func(p *Plan) { p.Matches[0].Subset = "" }, wantErr: "subset is empty"},
		{name: "duplicate header and value", edit: func(p *Plan) {
			p.Matches = append(p.Matches, HeaderRoute{Header: "x-signalbox-preview", Value: "1", Subset: "v1"})
		}, wantErr: "matches[1]: x-signalbox-preview: \"1\" is matched twice"},
		{name: "mirror without subset", edit: func(p *Plan) { p.Mirror = &Mirror{Percent: 10} }, wantErr: "mirror: subset is empty"},
		{name: "mirror of 0%", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2"} }, wantErr: "mirror: percent 0"},
		{name: "mirror below a millionth", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2", Percent: 0.00001} }, wantErr: "mirror: percent"},
		{name: "mirror over 100%", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2", Percent: 100.5} }, wantErr: "mirror: percent 100.5"},
		{name: "mirror of NaN", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2", Percent: math.NaN()} }, wantErr: "mirror: percent NaN"},
		{name: "mirror to a subset with weight", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v1", Percent: 5} }, wantErr: `"v1" already has weight 100`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := blueGreen()
			tc.edit(&p)
			err := p.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("want an error about %q, got none", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not say %q", err, tc.wantErr)
			}
		})
	}
}

func TestPlanNormalized(t *testing.T) {
	p := Plan{
		Service: "greeter",
		Weights: []SubsetWeight{{Subset: "v2", Weight: 0}, {Subset: "v1", Weight: 100}},
		Matches: []HeaderRoute{
			{Header: "x-tenant", Value: "b", Subset: "v2"},
			{Header: "X-Signalbox-Preview", Value: "1", Subset: "v2"},
			{Header: "x-tenant", Value: "a", Subset: "v2"},
			{Header: "x-signalbox-preview", Value: "1", Subset: "v2"},
		},
		Mirror: &Mirror{Subset: "v2", Percent: 10},
	}
	got := p.Normalized()
	want := Plan{
		Service: "greeter",
		Weights: []SubsetWeight{{Subset: "v1", Weight: 100}},
		Matches: []HeaderRoute{
			{Header: "x-signalbox-preview", Value: "1", Subset: "v2"},
			{Header: "x-tenant", Value: "a", Subset: "v2"},
			{Header: "x-tenant", Value: "b", Subset: "v2"},
		},
		Mirror: &Mirror{Subset: "v2", Percent: 10},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Normalized (-want +got):\n%s", diff)
	}
	// The result shares nothing with the input.
	got.Mirror.Percent = 50
	got.Matches[0].Value = "2"
	if p.Mirror.Percent != 10 || p.Matches[1].Value != "1" {
		t.Fatal("Normalized shares memory with the plan it came from")
	}
	if m := (Plan{Service: "a", Mirror: &Mirror{Subset: "v2"}}).Normalized().Mirror; m != nil {
		t.Fatalf("a 0%% mirror survives Normalized: %+v", m)
	}
}

func TestPlanEqual(t *testing.T) {
	base := blueGreen()
	base.Matches = append(base.Matches, HeaderRoute{Header: "x-tenant", Value: "beta", Subset: "v2"})
	base.Mirror = &Mirror{Subset: "v2", Percent: 10}
	cases := []struct {
		name  string
		edit  func(p *Plan)
		equal bool
	}{
		{name: "identical", edit: func(*Plan) {}, equal: true},
		{name: "matches in another order", edit: func(p *Plan) { p.Matches[0], p.Matches[1] = p.Matches[1], p.Matches[0] }, equal: true},
		{name: "weights in another order, zero weight dropped", edit: func(p *Plan) {
			p.Weights = []SubsetWeight{{Subset: "v1", Weight: 100}}
		}, equal: true},
		{name: "header in another case", edit: func(p *Plan) { p.Matches[0].Header = "X-Signalbox-Preview" }, equal: true},
		{name: "mirror copied, not shared", edit: func(p *Plan) { m := *p.Mirror; p.Mirror = &m }, equal: true},
		{name: "other match value", edit: func(p *Plan) { p.Matches[0].Value = "2" }},
		{name: "other match subset", edit: func(p *Plan) { p.Matches[0].Subset = "v3" }},
		{name: "a match fewer", edit: func(p *Plan) { p.Matches = p.Matches[:1] }},
		{name: "no matches", edit: func(p *Plan) { p.Matches = nil }},
		{name: "no mirror", edit: func(p *Plan) { p.Mirror = nil }},
		{name: "other mirror share", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v2", Percent: 20} }},
		{name: "other mirror subset", edit: func(p *Plan) { p.Mirror = &Mirror{Subset: "v3", Percent: 10} }},
		{name: "other weights", edit: func(p *Plan) { p.Weights[1].Weight = 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := blueGreen()
			q.Matches = append(q.Matches, HeaderRoute{Header: "x-tenant", Value: "beta", Subset: "v2"})
			q.Mirror = &Mirror{Subset: "v2", Percent: 10}
			tc.edit(&q)
			if got := base.Equal(q); got != tc.equal {
				t.Fatalf("Equal = %v, want %v", got, tc.equal)
			}
			if got := q.Equal(base); got != tc.equal {
				t.Fatalf("Equal is not symmetric: %v", got)
			}
		})
	}
	if !(Plan{Service: "a", Mirror: &Mirror{Subset: "v2"}}).Equal(Plan{Service: "a"}) {
		t.Fatal("a 0% mirror routes like none, but the plans differ")
	}
}

func TestPlanJSON(t *testing.T) {
	in := `{"service":"greeter","weights":[{"subset":"v1","weight":90},{"subset":"v2","weight":10}],` +
		`"matches":[{"header":"x-signalbox-preview","value":"1","subset":"v2"}],"mirror":{"subset":"v3","percent":2.5}}`
	var p Plan
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Service: "greeter",
		Weights: []SubsetWeight{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}},
		Matches: []HeaderRoute{{Header: "x-signalbox-preview", Value: "1", Subset: "v2"}},
		Mirror:  &Mirror{Subset: "v3", Percent: 2.5},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}
	out, err := json.Marshal(Plan{Service: "a", Weights: []SubsetWeight{{Subset: "v1", Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "matches") || strings.Contains(s, "mirror") {
		t.Fatalf("a plan without matches or mirror writes them: %s", s)
	}
}
