// Package golden holds the golden-file helpers the xds tests share: Envoy
// resources rendered as YAML with proto field names, compared with (or
// written to, with -update) a file under testdata.
package golden

import (
	"bytes"
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// YAML renders resources as {resources: [...]} in proto field names.
func YAML(t testing.TB, msgs []proto.Message) []byte {
	t.Helper()
	items := []any{}
	for _, m := range msgs {
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(js, &v); err != nil {
			t.Fatal(err)
		}
		items = append(items, v)
	}
	if len(items) == 0 {
		items = nil
	}
	return Marshal(t, map[string]any{"resources": items})
}

// Marshal renders any value as YAML.
func Marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Check compares got with the file at path, or rewrites the file when update
// is set.
func Check(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run the test with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (rerun with -update and review the diff):\n%s", path, got)
	}
}
