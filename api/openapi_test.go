package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	gotoken "go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/rollout/analysis"
	"github.com/signalbox/signalbox/topology"
)

// The tests here keep api/openapi.yaml honest: it must be a well-formed
// OpenAPI 3.1 document, document exactly the routes this package registers
// (read from the source, so a new route without docs fails), and describe
// the JSON the handlers write (read from the Go types by reflection).

// oasDoc is the parsed document, as JSON values.
type oasDoc map[string]any

func oasLoad(t *testing.T) oasDoc {
	t.Helper()
	var doc oasDoc
	// YAMLToJSONStrict refuses duplicate keys, which YAML parsers disagree on.
	if _, err := yaml.YAMLToJSONStrict(openapiYAML); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc
}

// oasMethods are the operation keys of a path item, in OpenAPI's order.
var oasMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oasPathItemKeys are the other keys a path item may have.
var oasPathItemKeys = []string{"$ref", "summary", "description", "servers", "parameters"}

func oasMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func oasList(v any) []any { l, _ := v.([]any); return l }

func oasString(v any) string { s, _ := v.(string); return s }

// pointer resolves a local JSON pointer such as #/components/schemas/Rollout.
func (d oasDoc) pointer(ref string) (any, bool) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = map[string]any(d)
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			if cur, ok = c[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// deref follows $ref (and a schema's lone allOf, used to put a default or
// a description next to a $ref) to the object it names; name is the last
// component name followed, "" for an inline object.
func (d oasDoc) deref(v any) (obj map[string]any, name string) {
	obj = oasMap(v)
	for range 32 {
		if ref := oasString(obj["$ref"]); ref != "" {
			target, ok := d.pointer(ref)
			if !ok {
				return nil, ""
			}
			obj, name = oasMap(target), ref[strings.LastIndexByte(ref, '/')+1:]
			continue
		}
		if all := oasList(obj["allOf"]); len(all) == 1 && obj["properties"] == nil && obj["type"] == nil {
			obj = oasMap(all[0])
			continue
		}
		return obj, name
	}
	return nil, ""
}

// operations returns path → method → operation.
func (d oasDoc) operations() map[string]map[string]map[string]any {
	out := map[string]map[string]map[string]any{}
	for path, item := range oasMap(d["paths"]) {
		out[path] = map[string]map[string]any{}
		for _, m := range oasMethods {
			if op := oasMap(oasMap(item)[m]); op != nil {
				out[path][m] = op
			}
		}
	}
	return out
}

func oasSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	oasTemplateParam = regexp.MustCompile(`\{([^{}]+)\}`)
	oasStatusKey     = regexp.MustCompile(`^[1-5]([0-9]{2}|XX)$`)
	oasRestWildcard  = regexp.MustCompile(`\{([^{}]+)\.\.\.\}`)
)

func TestOpenAPIDocumentIsWellFormed(t *testing.T) {
	doc := oasLoad(t)
	if v := oasString(doc["openapi"]); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi: %q, want 3.1.x", v)
	}
	info := oasMap(doc["info"])
	if oasString(info["title"]) == "" || oasString(info["version"]) == "" {
		t.Errorf("info needs a title and a version (a string): %v", info)
	}
	declaredTags := map[string]bool{}
	for _, tag := range oasList(doc["tags"]) {
		declaredTags[oasString(oasMap(tag)["name"])] = true
	}
	schemes := oasMap(oasMap(doc["components"])["securitySchemes"])

	paths := oasMap(doc["paths"])
	if len(paths) == 0 {
		t.Fatal("no paths")
	}
	opIDs := map[string]string{}
	for _, path := range oasSortedKeys(paths) {
		item := oasMap(paths[path])
		if !strings.HasPrefix(path, "/") {
			t.Errorf("path %q does not start with /", path)
		}
		for k := range item {
			if !slices.Contains(oasMethods, k) && !slices.Contains(oasPathItemKeys, k) && !strings.HasPrefix(k, "x-") {
				t.Errorf("%s: unknown path item key %q", path, k)
			}
		}
		templated := map[string]bool{}
		for _, m := range oasTemplateParam.FindAllStringSubmatch(path, -1) {
			templated[m[1]] = true
		}
		nops := 0
		for _, method := range oasMethods {
			op := oasMap(item[method])
			if op == nil {
				continue
			}
			nops++
			where := strings.ToUpper(method) + " " + path
			id := oasString(op["operationId"])
			if id == "" {
				t.Errorf("%s: no operationId", where)
			} else if prev, dup := opIDs[id]; dup {
				t.Errorf("%s: operationId %q is also %s's", where, id, prev)
			}
			opIDs[id] = where
			for _, tag := range oasList(op["tags"]) {
				if !declaredTags[oasString(tag)] {
					t.Errorf("%s: tag %q is not in the top-level tags", where, tag)
				}
			}

			// Path parameters: exactly the template's, each required.
			inPath := map[string]bool{}
			for _, p := range append(oasList(item["parameters"]), oasList(op["parameters"])...) {
				param, _ := doc.deref(p)
				if param == nil {
					t.Errorf("%s: a parameter does not resolve: %v", where, p)
					continue
				}
				name, in := oasString(param["name"]), oasString(param["in"])
				if name == "" || !slices.Contains([]string{"path", "query", "header", "cookie"}, in) {
					t.Errorf("%s: parameter %v needs a name and in: path, query, header or cookie", where, param)
				}
				if param["schema"] == nil && param["content"] == nil {
					t.Errorf("%s: parameter %q has no schema", where, name)
				}
				if in != "path" {
					continue
				}
				inPath[name] = true
				if param["required"] != true {
					t.Errorf("%s: path parameter %q must be required: true", where, name)
				}
				if !templated[name] {
					t.Errorf("%s: path parameter %q is not in the path", where, name)
				}
			}
			for name := range templated {
				if !inPath[name] {
					t.Errorf("%s: {%s} is not declared as a path parameter", where, name)
				}
			}

			responses := oasMap(op["responses"])
			if len(responses) == 0 {
				t.Errorf("%s: no responses", where)
			}
			for code, r := range responses {
				if code != "default" && !oasStatusKey.MatchString(code) {
					t.Errorf("%s: response key %q is not a status code", where, code)
				}
				resp, _ := doc.deref(r)
				if oasString(resp["description"]) == "" {
					t.Errorf("%s: response %s has no description", where, code)
				}
			}
			if rb := op["requestBody"]; rb != nil {
				if body, _ := doc.deref(rb); len(oasMap(body["content"])) == 0 {
					t.Errorf("%s: requestBody without content", where)
				}
			}

			// Security: known schemes; a secured operation says what a
			// missing token gets, an operator-only one what a viewer gets.
			for _, req := range oasList(op["security"]) {
				for name, roles := range oasMap(req) {
					if schemes[name] == nil {
						t.Errorf("%s: security scheme %q is not in components.securitySchemes", where, name)
					}
					if responses["401"] == nil {
						t.Errorf("%s: secured, but no 401 answer", where)
					}
					if slices.Contains(oasList(roles), any(string(Operator))) && responses["403"] == nil {
						t.Errorf("%s: needs an operator, but no 403 answer", where)
					}
				}
			}
		}
		if nops == 0 {
			t.Errorf("%s: no operations", path)
		}
	}

	// Every $ref resolves, and every component is used.
	used := map[string]bool{}
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, found := doc.pointer(ref); !found {
					t.Errorf("%s: $ref %q does not resolve", at, ref)
				}
				used[ref] = true
			}
			for k, e := range v {
				walk(at+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(at+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("#", map[string]any(doc))
	for _, kind := range []string{"schemas", "parameters", "responses"} {
		for name := range oasMap(oasMap(doc["components"])[kind]) {
			if ref := "#/components/" + kind + "/" + name; !used[ref] {
				t.Errorf("%s is never referenced", ref)
			}
		}
	}
}

func TestOpenAPIIsServedAsYAMLAndJSON(t *testing.T) {
	mux := http.NewServeMux()
	registerOpenAPI(mux)
	fetch := func(path string) (*http.Response, []byte) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Result(), body
	}

	resp, body := fetch("/api/v1/openapi.yaml")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(body, openapiYAML) {
		t.Errorf("openapi.yaml: %d %q, %d bytes, want 200 application/yaml with the embedded document", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}

	resp, body = fetch("/api/v1/openapi.json")
	var fromJSON, fromYAML any
	if err := json.Unmarshal(body, &fromJSON); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %q: %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if err := yaml.Unmarshal(openapiYAML, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Error("openapi.json is not the YAML document")
	}
}

// oasRoute is a pattern registered on the mux, read from the source.
type oasRoute struct {
	pattern string // as registered
	method  string // "" for every method
	path    string // in OpenAPI's form
	at      string // file:line
}

// oasUndocumented are the patterns the document leaves out on purpose.
var oasUndocumented = map[string]string{
	"/": "the catch-all: unknown paths answer a 404 Error (info.description says so)",
}

// oasRegisteredRoutes reads every Handle and HandleFunc pattern in the
// package's non-test files (those the default build compiles). A pattern
// is a string literal, a string constant of the package, or a sum of them;
// any other operand (a variable, as in "GET /debug/"+name) becomes a path
// wildcard named after it ({name}).
func oasRegisteredRoutes(t *testing.T) []oasRoute {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := gotoken.NewFileSet()
	var files []*ast.File
	consts := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if ok, err := build.Default.MatchFile(".", name); err != nil || !ok {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != gotoken.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
							consts[id.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("no source files")
	}

	var eval func(ast.Expr) (string, error)
	eval = func(e ast.Expr) (string, error) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == gotoken.STRING {
				return strconv.Unquote(e.Value)
			}
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.BinaryExpr:
			if e.Op == gotoken.ADD {
				l, err := eval(e.X)
				if err != nil {
					return "", err
				}
				r, err := eval(e.Y)
				return l + r, err
			}
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return v, nil
			}
			return "{" + e.Name + "}", nil
		}
		return "", fmt.Errorf("a %T", e)
	}

	var routes []oasRoute
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			at := fset.Position(call.Pos()).String()
			pattern, err := eval(call.Args[0])
			if err != nil {
				t.Errorf("%s: cannot read the route pattern (%v): write it as a string literal", at, err)
				return true
			}
			r := oasRoute{pattern: pattern, at: at}
			fields := strings.Fields(pattern)
			switch len(fields) {
			case 1:
				r.path = fields[0]
			case 2:
				r.method, r.path = fields[0], fields[1]
			}
			if !strings.HasPrefix(r.path, "/") {
				t.Errorf("%s: pattern %q: want [METHOD ]/path (no host); the test cannot read it", at, pattern)
				return true
			}
			// ServeMux → OpenAPI: /x/{$} is the path /x/; {rest...} is {rest}.
			r.path = strings.TrimSuffix(r.path, "{$}")
			r.path = oasRestWildcard.ReplaceAllString(r.path, "{$1}")
			routes = append(routes, r)
			return true
		})
	}
	return routes
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := oasLoad(t)
	ops := doc.operations()
	routes := oasRegisteredRoutes(t)
	if len(routes) < 10 {
		t.Fatalf("found only %d routes in the source: the scan is broken", len(routes))
	}
	for _, r := range routes {
		if _, ok := oasUndocumented[r.pattern]; ok {
			continue
		}
		documented, ok := ops[r.path]
		switch {
		case !ok:
			t.Errorf("%s: %q is not in openapi.yaml: document the path %s", r.at, r.pattern, r.path)
		case r.method == "" && len(documented) == 0:
			t.Errorf("%s: %q: openapi.yaml has no operation on %s", r.at, r.pattern, r.path)
		case r.method != "" && documented[strings.ToLower(r.method)] == nil:
			t.Errorf("%s: %q: openapi.yaml has no %s operation on %s", r.at, r.pattern, r.method, r.path)
		}
	}
	for _, path := range oasSortedKeys(ops) {
		for _, method := range oasSortedKeys(ops[path]) {
			served := slices.ContainsFunc(routes, func(r oasRoute) bool {
				return r.path == path && (r.method == "" || strings.EqualFold(r.method, method) ||
					method == "head" && r.method == http.MethodGet)
			})
			if !served {
				t.Errorf("openapi.yaml documents %s %s, which no Handle or HandleFunc in package api registers", strings.ToUpper(method), path)
			}
		}
	}
	for pattern := range oasUndocumented {
		if !slices.ContainsFunc(routes, func(r oasRoute) bool { return r.pattern == pattern }) {
			t.Errorf("oasUndocumented lists %q, which is no longer registered", pattern)
		}
	}
}

// oasReleases answers every rollout request with ErrNotFound: enough for
// New to register the release API.
type oasReleases struct{}

func (oasReleases) Create(context.Context, rollout.Spec, string) (rollout.Rollout, error) {
	return rollout.Rollout{}, rollout.ErrNotFound
}

func (oasReleases) List(context.Context, bool) ([]rollout.Rollout, error) { return nil, nil }

func (oasReleases) Get(context.Context, string) (rollout.Rollout, error) {
	return rollout.Rollout{}, rollout.ErrNotFound
}

func (oasReleases) Command(context.Context, string, rollout.Command) (rollout.Rollout, error) {
	return rollout.Rollout{}, rollout.ErrNotFound
}

// TestOpenAPIOperationsReachTheirHandlers routes a request for every
// documented operation through the mux New builds with every part
// configured: none may fall through to the catch-all.
func TestOpenAPIOperationsReachTheirHandlers(t *testing.T) {
	doc := oasLoad(t)
	h := New(Deps{
		Gatherer: prometheus.NewRegistry(),
		Debug:    map[string]func() any{"xds/clients": func() any { return nil }},
		Graph:    topology.New(topology.Options{}),
		Spans:    http.NotFoundHandler(),
		Releases: oasReleases{},
	})
	mux, ok := h.(*http.ServeMux)
	if !ok {
		t.Fatalf("New returns a %T, not the *http.ServeMux this test reads its routes from", h)
	}
	ops := doc.operations()
	for _, path := range oasSortedKeys(ops) {
		for _, method := range oasSortedKeys(ops[path]) {
			op := ops[path][method]
			params := append(oasList(oasMap(oasMap(doc["paths"])[path])["parameters"]), oasList(op["parameters"])...)
			url := oasTemplateParam.ReplaceAllStringFunc(path, func(m string) string {
				return oasSample(doc, params, m[1:len(m)-1])
			})
			req := httptest.NewRequest(strings.ToUpper(method), url, nil)
			if _, pattern := mux.Handler(req); pattern == "/" || pattern == "" {
				t.Errorf("%s %s (as %s) reaches no handler of its own (pattern %q)", strings.ToUpper(method), path, url, pattern)
			}
		}
	}
}

// oasSample is a value for a path parameter: its example, or its schema's
// first enum value.
func oasSample(doc oasDoc, params []any, name string) string {
	for _, p := range params {
		param, _ := doc.deref(p)
		if oasString(param["name"]) != name || oasString(param["in"]) != "path" {
			continue
		}
		if ex := oasString(param["example"]); ex != "" {
			return ex
		}
		schema, _ := doc.deref(param["schema"])
		if ex := oasString(schema["example"]); ex != "" {
			return ex
		}
		if enum := oasList(schema["enum"]); len(enum) > 0 {
			return fmt.Sprint(enum[0])
		}
	}
	return "x"
}

// oasField is a struct field as encoding/json writes it.
type oasField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

// oasJSONFields lists typ's fields by their JSON names, flattening
// embedded structs as encoding/json does (without its tie-breaking rules).
func oasJSONFields(typ reflect.Type) []oasField {
	var out []oasField
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, oasJSONFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, oasField{name: name, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty"), typ: f.Type})
	}
	return out
}

// oasJSONType is the JSON type encoding/json writes for typ, "" when the
// test does not know (a custom MarshalJSON it has no case for).
func oasJSONType(typ reflect.Type) string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ {
	case reflect.TypeFor[time.Time](), reflect.TypeFor[rollout.Duration]():
		return "string"
	}
	marshaler := reflect.TypeFor[json.Marshaler]()
	if typ.Implements(marshaler) || reflect.PointerTo(typ).Implements(marshaler) {
		return ""
	}
	switch typ.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return ""
}

// oasSchemaChecker compares component schemas with Go types.
type oasSchemaChecker struct {
	t   *testing.T
	doc oasDoc
	// requestSchemas are the components a request body reaches: a field
	// left out of a request is fine, so they need not list every field in
	// required.
	requestSchemas map[string]bool
	checked        map[string]reflect.Type
}

func newOASSchemaChecker(t *testing.T, doc oasDoc) *oasSchemaChecker {
	c := &oasSchemaChecker{t: t, doc: doc, requestSchemas: map[string]bool{}, checked: map[string]reflect.Type{}}
	var reach func(v any)
	reach = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				name := ref[strings.LastIndexByte(ref, '/')+1:]
				if c.requestSchemas[name] {
					return
				}
				c.requestSchemas[name] = true
				target, _ := doc.pointer(ref)
				reach(target)
			}
			for _, e := range v {
				reach(e)
			}
		case []any:
			for _, e := range v {
				reach(e)
			}
		}
	}
	for _, item := range oasMap(doc["paths"]) {
		for _, m := range oasMethods {
			reach(oasMap(oasMap(item)[m])["requestBody"])
		}
	}
	return c
}

// component checks the component schema name against typ.
func (c *oasSchemaChecker) component(name string, typ reflect.Type) {
	c.t.Helper()
	ref := "#/components/schemas/" + name
	if _, ok := c.doc.pointer(ref); !ok {
		c.t.Errorf("no components.schemas.%s (for %v)", name, typ)
		return
	}
	c.value(name, map[string]any{"$ref": ref}, typ)
}

// value checks schema s, at a path shown in errors, against typ.
func (c *oasSchemaChecker) value(at string, s any, typ reflect.Type) {
	c.t.Helper()
	schema, name := c.doc.deref(s)
	if schema == nil {
		c.t.Errorf("%s: no schema (for %v)", at, typ)
		return
	}
	want := oasJSONType(typ)
	if want == "" {
		c.t.Errorf("%s: the test does not know how %v is written in JSON: add a case to oasJSONType", at, typ)
		return
	}
	var types []string
	switch v := schema["type"].(type) {
	case string:
		types = []string{v}
	case []any:
		for _, e := range v {
			types = append(types, oasString(e))
		}
	}
	if !slices.Contains(types, want) {
		c.t.Errorf("%s: schema type %v, but %v is written as a JSON %s", at, types, typ, want)
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case want == "array":
		c.value(at+"[]", schema["items"], typ.Elem())
	case typ.Kind() == reflect.Map:
		c.value(at+"{}", schema["additionalProperties"], typ.Elem())
	case typ.Kind() == reflect.Struct && want == "object":
		if name != "" {
			if prev, ok := c.checked[name]; ok {
				if prev != typ {
					c.t.Errorf("%s: components.schemas.%s stands for both %v and %v", at, name, prev, typ)
				}
				return
			}
			c.checked[name] = typ
			at = name
		}
		c.object(at, schema, typ, c.requestSchemas[name])
	}
}

// object checks an object schema's properties and required list against
// the struct typ's JSON fields.
func (c *oasSchemaChecker) object(at string, schema map[string]any, typ reflect.Type, request bool) {
	c.t.Helper()
	props := oasMap(schema["properties"])
	fields := map[string]oasField{}
	for _, f := range oasJSONFields(typ) {
		fields[f.name] = f
		p, ok := props[f.name]
		if !ok {
			c.t.Errorf("%s: %v has the JSON field %q, missing from the schema's properties", at, typ, f.name)
			continue
		}
		c.value(at+"."+f.name, p, f.typ)
	}
	for _, name := range oasSortedKeys(props) {
		if _, ok := fields[name]; !ok {
			c.t.Errorf("%s: property %q is not a JSON field of %v", at, name, typ)
		}
	}
	required := map[string]bool{}
	for _, r := range oasList(schema["required"]) {
		required[oasString(r)] = true
	}
	for name := range required {
		if f, ok := fields[name]; ok && f.omitempty {
			c.t.Errorf("%s: %q is required, but %v omits it when empty", at, name, typ)
		}
	}
	if request {
		return
	}
	for _, name := range oasSortedKeys(fields) {
		if !fields[name].omitempty && !required[name] {
			c.t.Errorf("%s: %v always writes %q: list it in required", at, typ, name)
		}
	}
}

func TestOpenAPISchemasMatchTheGoTypes(t *testing.T) {
	doc := oasLoad(t)
	c := newOASSchemaChecker(t, doc)
	// Rollout reaches the spec, its analysis options, the history, the
	// decisions' stats and the analysis state.
	c.component("Rollout", reflect.TypeFor[rollout.Rollout]())
	c.component("RolloutSpec", reflect.TypeFor[rollout.Spec]())
	c.component("Graph", reflect.TypeFor[topology.Graph]())
	c.component("NodeGraph", reflect.TypeFor[nodeGraph]())
	c.component("DependencyLink", reflect.TypeFor[dependencyLink]())
	c.component("Error", reflect.TypeFor[Error]())
	for _, name := range []string{"AnalysisSpec", "HeaderRoute", "RolloutEvent", "Decision", "AnalysisStats", "Counts", "AnalysisState", "SequentialTestState", "PriorPoint", "AnalysisFailure"} {
		if c.checked[name] == nil {
			t.Errorf("components.schemas.%s was not reached from Rollout", name)
		}
	}
	if !c.requestSchemas["RolloutSpec"] || c.requestSchemas["Rollout"] {
		t.Errorf("request schemas %v: want RolloutSpec, not Rollout", oasSortedKeys(c.requestSchemas))
	}
}

// oasEnum is a schema's enum, sorted.
func oasEnum(t *testing.T, doc oasDoc, ref string) []string {
	t.Helper()
	v, ok := doc.pointer(ref)
	if !ok {
		t.Errorf("%s: missing", ref)
		return nil
	}
	schema, _ := doc.deref(v)
	var out []string
	for _, e := range oasList(schema["enum"]) {
		out = append(out, oasString(e))
	}
	sort.Strings(out)
	return out
}

func oasSorted[S ~string](vs ...S) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func TestOpenAPIEnumsMatchTheGoValues(t *testing.T) {
	doc := oasLoad(t)
	var phases []rollout.Phase
	for _, tr := range rollout.Transitions() {
		phases = append(phases, tr.From, tr.To)
	}
	for _, c := range []struct {
		ref  string
		want []string
	}{
		{"#/components/schemas/Phase", oasSorted(phases...)},
		{"#/components/schemas/Strategy", oasSorted(rollout.Canary, rollout.BlueGreen)},
		{"#/components/schemas/CommandKind", oasSorted(rollout.CmdPause, rollout.CmdResume, rollout.CmdPromote, rollout.CmdAbort, rollout.CmdRetry)},
		{"#/components/schemas/Decision/properties/verdict", oasSorted(analysis.Continue, analysis.Fail, analysis.InsufficientData)},
		{"#/components/schemas/Check", oasSorted(analysis.CheckSequential, analysis.CheckErrorRate, analysis.CheckLatency)},
		{"#/components/schemas/GraphEdge/properties/protocol", oasSorted(topology.HTTP, topology.GRPC, topology.TCP)},
		{"#/components/parameters/By/schema", oasSorted(topology.ByService, topology.ByVersion)},
		{"#/paths/~1api~1v1~1graph/get/parameters/2/schema", oasSorted(formatJSON, formatDOT, formatNodeGraph)},
	} {
		if got := oasEnum(t, doc, c.ref); !slices.Equal(got, c.want) {
			t.Errorf("%s: enum %v, want %v", c.ref, got, c.want)
		}
	}
	// The roles operations name are the roles tokens have.
	for path, methods := range doc.operations() {
		for method, op := range methods {
			for _, req := range oasList(op["security"]) {
				for _, role := range oasList(oasMap(req)["bearerAuth"]) {
					if r := Role(oasString(role)); r != Viewer && r != Operator {
						t.Errorf("%s %s: role %q: want %s or %s", method, path, role, Viewer, Operator)
					}
				}
			}
		}
	}
}
