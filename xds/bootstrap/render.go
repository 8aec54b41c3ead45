package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// Output formats.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// CheckFormat says whether format is one Render and Parse know.
func CheckFormat(format string) error {
	if format != FormatYAML && format != FormatJSON {
		return fieldErr("format", "%q: want yaml or json", format)
	}
	return nil
}

// Render writes b as YAML (keys sorted) or as indented JSON (fields in
// proto order), with Envoy's snake_case field names and a final newline.
// The same bootstrap always renders to the same bytes.
func Render(b *bootstrapv3.Bootstrap, format string) ([]byte, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	// protojson's whitespace is deliberately unstable; both paths below
	// re-format it.
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: marshal: %w", err)
	}
	if format == FormatJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, js, "", "  "); err != nil {
			return nil, fmt.Errorf("bootstrap: indent JSON: %w", err)
		}
		buf.WriteByte('\n')
		return buf.Bytes(), nil
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: convert to YAML: %w", err)
	}
	// A few strings change meaning as YAML keys (a metadata key "<<" is a
	// merge key): refuse rather than write a file that reads back different.
	back, err := yaml.YAMLToJSON(out)
	if err != nil || !sameJSON(js, back) {
		return nil, ErrNotYAML
	}
	return out, nil
}

// ErrNotYAML is Render's error for a bootstrap whose YAML form would read
// back as a different bootstrap; JSON can always be written.
var ErrNotYAML = errors.New("bootstrap: this bootstrap cannot be written faithfully as YAML (a key such as \"<<\" changes meaning): use json")

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// Parse reads a bootstrap in format strictly (unknown fields, duplicate
// keys and unknown typed-config types are errors) and validates it with
// Envoy's proto validation, including every typed config inside an Any.
func Parse(data []byte, format string) (*bootstrapv3.Bootstrap, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	js := data
	if format == FormatYAML {
		var err error
		if js, err = yaml.YAMLToJSONStrict(data); err != nil {
			return nil, fmt.Errorf("bootstrap: not valid YAML: %w", err)
		}
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: not an Envoy v3 bootstrap: %w", err)
	}
	if err := validateDeep(b); err != nil {
		return nil, fmt.Errorf("bootstrap: invalid: %w", err)
	}
	return b, nil
}

type validatorAll interface{ ValidateAll() error }

// validateDeep runs ValidateAll on m and on the message inside every Any
// below it, which ValidateAll alone leaves unchecked. It walks fields in
// declaration order, so the error it reports is always the same one.
func validateDeep(m proto.Message) error {
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return walk(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()))
}

func walk(m protoreflect.Message, path string) error {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := path + "." + string(fd.Name())
		v := m.Get(fd)
		switch {
		case fd.IsList():
			if fd.Message() == nil {
				continue
			}
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				if err := visit(l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j)); err != nil {
					return err
				}
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			mp := v.Map()
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
			for _, k := range keys {
				if err := visit(mp.Get(k).Message(), fmt.Sprintf("%s[%q]", p, k.String())); err != nil {
					return err
				}
			}
		case fd.Message() != nil:
			if err := visit(v.Message(), p); err != nil {
				return err
			}
		}
	}
	return nil
}

func visit(m protoreflect.Message, path string) error {
	if m.Descriptor().FullName() != "google.protobuf.Any" {
		return walk(m, path)
	}
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return fmt.Errorf("%s: unexpected Any implementation %T", path, m.Interface())
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %s: %w", path, a.GetTypeUrl(), err)
	}
	if v, ok := inner.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s (%s): %w", path, a.GetTypeUrl(), err)
		}
	}
	return walk(inner.ProtoReflect(), path)
}
