package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// policySections are the config file's structured sections, parsed by
// xds/policy rather than mapped to flags.
var policySections = []string{"telemetry", "traffic"}

// applyConfigFile sets every flag named in the YAML file at path that was not
// given on the command line, so the file takes the same keys as the flags.
// Precedence: command line, then config file, then environment, then default.
// It returns the keys it set, and the policy sections as YAML (nil if none).
func applyConfigFile(fs *pflag.FlagSet, path string) (map[string]bool, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("config file: %w", err)}
	}
	var values map[string]any
	// Strict: a key given twice is an error, not "the last one wins".
	if err := yaml.UnmarshalStrict(raw, &values); err != nil {
		return nil, nil, usageError{fmt.Errorf("config file %s: not valid YAML: %w", path, err)}
	}
	var policyYAML []byte
	sections := map[string]any{}
	for _, k := range policySections {
		if v, ok := values[k]; ok {
			sections[k] = v
			delete(values, k)
		}
	}
	if len(sections) > 0 {
		if policyYAML, err = yaml.Marshal(sections); err != nil {
			return nil, nil, usageError{fmt.Errorf("config file %s: %w", path, err)}
		}
	}
	set := map[string]bool{}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return nil, nil, usageError{fmt.Errorf("config file %s: unknown key %q (valid keys: %s, and the sections %s)", path, key, strings.Join(flagNames(fs), ", "), strings.Join(policySections, ", "))}
		}
		if f.Changed {
			continue
		}
		v, err := scalar(values[key])
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("config file %s: key %q: %w", path, key, err)}
		}
		if err := f.Value.Set(v); err != nil {
			return nil, nil, usageError{fmt.Errorf("config file %s: key %q: bad value %q: %w", path, key, v, err)}
		}
		set[key] = true
	}
	return set, policyYAML, nil
}

// applyEnv sets a flag from an environment variable unless the command line
// or the config file already set it.
func applyEnv(fs *pflag.FlagSet, flag, env string, getenv func(string) string, fromFile map[string]bool) error {
	f := fs.Lookup(flag)
	v := getenv(env)
	if f == nil || v == "" || f.Changed || fromFile[flag] {
		return nil
	}
	if err := f.Value.Set(v); err != nil {
		return usageError{fmt.Errorf("environment %s=%q: %w", env, v, err)}
	}
	return nil
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool, float64, int, int64:
		return fmt.Sprint(x), nil
	case nil:
		return "", fmt.Errorf("empty value")
	}
	return "", fmt.Errorf("want a single value, got %T", v)
}

func flagNames(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "config" && f.Name != "help" {
			out = append(out, f.Name)
		}
	})
	return out
}
