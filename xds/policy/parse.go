package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// ParseConfig reads the telemetry: and traffic: sections of a YAML config
// file. Keys left out keep DefaultConfig's values (with no Zipkin URL: see
// WithSelfZipkinURL); a key set to null does too. Parsing is strict: an
// unknown or duplicated key, or a value of the wrong type, is an error that
// names the key and where it is. ParseConfig does not check ranges: call
// Validate.
func ParseConfig(data []byte) (Config, error) {
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("config: %d bytes; at most %d are read", len(data), maxConfigBytes)
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return Config{}, fmt.Errorf("config: not valid YAML (or a duplicated key): %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var errs []error
	checkShape(reflect.TypeFor[Config](), doc, "", &errs)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	c := DefaultConfig("")
	dec = json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// checkShape accepts only what decodes; this is a bug if it happens.
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// checkShape compares a decoded JSON value with the Go type it will be
// decoded into and reports, with its path, every unknown key and every value
// of the wrong type. null is accepted anywhere: it keeps the default.
func checkShape(t reflect.Type, v any, path string, errs *[]error) {
	if v == nil {
		return
	}
	bad := func(want string) {
		*errs = append(*errs, fmt.Errorf("%s: got %s, want %s", where(path), describe(v), want))
	}
	if t == reflect.TypeFor[Duration]() {
		s, ok := v.(string)
		if !ok {
			bad("a duration string such as 2s or 250ms")
			return
		}
		if _, err := parseDuration(s); err != nil {
			bad("a duration such as 250ms, 2s or 1m")
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(t.Elem(), v, path, errs)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		fields, names := jsonFields(t)
		if !ok {
			bad("a mapping with the keys " + strings.Join(names, ", "))
			return
		}
		for _, k := range sortedKeys(m) {
			f, ok := fields[k]
			if !ok {
				msg := fmt.Sprintf("%s: unknown key %q", where(path), k)
				if s := suggest(k, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, fmt.Errorf("%s; known keys: %s", msg, strings.Join(names, ", ")))
				continue
			}
			checkShape(f.Type, m[k], join(path, k), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			bad("a mapping of names to strings")
			return
		}
		for _, k := range sortedKeys(m) {
			checkShape(t.Elem(), m[k], fmt.Sprintf("%s[%q]", path, k), errs)
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			bad("a list")
			return
		}
		for i, e := range l {
			if e == nil {
				*errs = append(*errs, fmt.Errorf("%s[%d]: empty list entry", path, i))
				continue
			}
			checkShape(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad("a string (quote it)")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("true or false")
		}
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			bad("a number")
			return
		}
		if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			bad("a number")
		}
	case reflect.Uint32:
		n, ok := v.(json.Number)
		if !ok {
			bad("a whole number")
			return
		}
		if _, err := strconv.ParseUint(string(n), 10, 32); err != nil {
			bad("a whole number from 0 to 4294967295")
		}
	default:
		bad(t.String()) // a Config field of a kind this walker does not know
	}
}

// jsonFields maps the JSON names of a struct's fields to the fields, and
// lists the names in declaration order.
func jsonFields(t reflect.Type) (map[string]reflect.StructField, []string) {
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
		names = append(names, name)
	}
	return fields, names
}

func where(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%v", v)
	}
}

// suggest returns the candidate closest to key when it is close enough to be
// a likely typo: equal but for case, or at most max(2, len/5) edits away.
func suggest(key string, candidates []string) string {
	best, bestDist := "", max(2, len(key)/5)+1
	for _, c := range candidates {
		if strings.EqualFold(c, key) {
			return c
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
