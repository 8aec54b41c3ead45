package bootstrap

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzParse feeds Parse arbitrary bytes in both formats, seeded with every
// golden output. Parse must never panic, and whatever it accepts must
// render and parse back to the same bootstrap.
func FuzzParse(f *testing.F) {
	for _, o := range goldenCases(f) {
		b, err := Build(o)
		if err != nil {
			f.Fatal(err)
		}
		for _, format := range []string{FormatYAML, FormatJSON} {
			out, err := Render(b, format)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(out, format == FormatJSON)
		}
	}
	f.Add([]byte("{}"), true)
	f.Add([]byte("node: {id: a, metadata: {k: [1, {x: null}]}}"), false)
	f.Add([]byte(`{"node": {"metadata": {"<<": {"a": 1}, "b": "yes", "c": "1e3"}}}`), true)

	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		format := FormatYAML
		if asJSON {
			format = FormatJSON
		}
		b, err := Parse(data, format)
		if err != nil {
			return
		}
		for _, f := range []string{FormatYAML, FormatJSON} {
			out, err := Render(b, f)
			if f == FormatYAML && errors.Is(err, ErrNotYAML) {
				continue
			}
			if err != nil {
				t.Fatalf("render %s of an accepted bootstrap: %v", f, err)
			}
			back, err := Parse(out, f)
			if err != nil {
				t.Fatalf("%s rendering does not parse back: %v\n%s", f, err, out)
			}
			if !proto.Equal(back, b) {
				t.Fatalf("%s rendering parses back to a different bootstrap:\n%s", f, out)
			}
		}
	})
}
