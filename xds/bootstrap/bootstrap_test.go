package bootstrap

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/signalbox/signalbox/xds/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/out")

// goldenCases returns the name and options of every testdata/in/*.yaml.
func goldenCases(t testing.TB) map[string]Options {
	t.Helper()
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs found: %v", err)
	}
	cases := map[string]Options{}
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var o Options
		if err := yaml.UnmarshalStrict(raw, &o); err != nil {
			t.Fatalf("parse %s: %v", in, err)
		}
		cases[strings.TrimSuffix(filepath.Base(in), ".yaml")] = o
	}
	return cases
}

// TestGolden builds every testdata/in/*.yaml and compares the YAML with
// testdata/out/<name>.yaml; both renderings must parse back to the same
// bootstrap. Run with -update to regenerate, then review the diff.
func TestGolden(t *testing.T) {
	for name, o := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			b, err := Build(o)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			got, err := Render(b, FormatYAML)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata/out", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("read golden (run with -update to create): %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("output differs from %s (run go test ./xds/bootstrap -update and review the diff):\n%s", path, got)
				}
			}
			for _, format := range []string{FormatYAML, FormatJSON} {
				out, err := Render(b, format)
				if err != nil {
					t.Fatalf("render %s: %v", format, err)
				}
				back, err := Parse(out, format)
				if err != nil {
					t.Fatalf("parse %s: %v\n%s", format, err, out)
				}
				if !proto.Equal(back, b) {
					t.Errorf("%s does not parse back to the bootstrap it was rendered from", format)
				}
				again, _ := Render(b, format)
				if !bytes.Equal(out, again) {
					t.Errorf("%s rendering is not deterministic", format)
				}
			}
		})
	}
}

func TestBuildContents(t *testing.T) {
	cases := goldenCases(t)

	minimal, err := Build(cases["minimal"])
	if err != nil {
		t.Fatal(err)
	}
	if n := minimal.GetNode(); n.GetId() != "web-host1" || n.GetCluster() != "web" || n.GetLocality() != nil {
		t.Errorf("node: %v", n)
	}
	if md := minimal.GetNode().GetMetadata().GetFields(); len(md) != 1 || !md[ir.NodeMetaSidecar].GetBoolValue() {
		t.Errorf("minimal metadata should be only %s=true: %v", ir.NodeMetaSidecar, md)
	}
	cp := minimal.GetStaticResources().GetClusters()[0]
	if cp.GetName() != ir.ControlPlaneCluster || cp.GetType() != clusterv3.Cluster_STRICT_DNS || cp.GetTransportSocket() != nil {
		t.Errorf("control plane cluster by name: %v", cp)
	}
	if got := cp.GetConnectTimeout().AsDuration(); got != DefaultConnectTimeout {
		t.Errorf("connect timeout %v, want %v", got, DefaultConnectTimeout)
	}
	var hpo httpv3.HttpProtocolOptions
	if err := cp.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(&hpo); err != nil {
		t.Fatal(err)
	}
	ka := hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
	if ka.GetInterval().AsDuration() != KeepaliveInterval || ka.GetTimeout().AsDuration() != KeepaliveTimeout {
		t.Errorf("keepalive: %v", ka)
	}
	ads := minimal.GetDynamicResources().GetAdsConfig()
	eg := ads.GetGrpcServices()[0].GetEnvoyGrpc()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || !ads.GetSetNodeOnFirstMessageOnly() || eg.GetClusterName() != ir.ControlPlaneCluster {
		t.Errorf("ads config: %v", ads)
	}
	if bo := eg.GetRetryPolicy().GetRetryBackOff(); bo.GetBaseInterval().AsDuration() != ReconnectBaseInterval || bo.GetMaxInterval().AsDuration() != ReconnectMaxInterval {
		t.Errorf("reconnect backoff: %v", bo)
	}
	if a := minimal.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 19000 {
		t.Errorf("default admin address: %v", a)
	}

	full, err := Build(cases["full"])
	if err != nil {
		t.Fatal(err)
	}
	md := full.GetNode().GetMetadata().GetFields()
	for k, want := range map[string]string{ir.NodeMetaVersion: "v2", ir.NodeMetaZone: "rack-a", ir.NodeMetaInstance: "web-v2-host1", ir.NodeMetaUpstreams: "auth,billing,orders"} {
		if got := md[k].GetStringValue(); got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
	if md[ir.NodeMetaInboundPort].GetNumberValue() != 16006 || md[ir.NodeMetaOutboundPort].GetNumberValue() != 16001 {
		t.Errorf("port metadata: %v", md)
	}
	if _, ok := md[ir.NodeMetaAppPort]; ok {
		t.Errorf("app port metadata set though no app port was given")
	}
	if l := full.GetNode().GetLocality(); l.GetZone() != "rack-a" || l.GetRegion() != "dc1" {
		t.Errorf("locality: %v", l)
	}
	if c := full.GetStaticResources().GetClusters()[0]; c.GetType() != clusterv3.Cluster_STATIC {
		t.Errorf("control plane by IP: type %v, want STATIC", c.GetType())
	}
	tags := map[string]string{}
	for _, ts := range full.GetStatsConfig().GetStatsTags() {
		tags[ts.GetTagName()] = ts.GetFixedValue()
	}
	if tags[TagService] != "web" || tags[TagVersion] != "v2" || tags["team"] != "storefront" || len(tags) != 4 {
		t.Errorf("stats tags: %v", tags)
	}
	if !full.GetStatsConfig().GetUseAllDefaultTags().GetValue() {
		t.Error("use_all_default_tags is not set")
	}

	for name, wantSNI := range map[string]string{"tls": "signalbox.service.consul", "tls-ip": ""} {
		b, err := Build(cases[name])
		if err != nil {
			t.Fatal(err)
		}
		var tc tlsv3.UpstreamTlsContext
		if err := b.GetStaticResources().GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tc.GetSni() != wantSNI {
			t.Errorf("%s: sni %q, want %q", name, tc.GetSni(), wantSNI)
		}
		vc := tc.GetCommonTlsContext().GetValidationContext()
		if vc.GetTrustedCa().GetFilename() != "/etc/signalbox/ca.pem" || len(vc.GetMatchTypedSubjectAltNames()) != 1 {
			t.Errorf("%s: validation context: %v", name, vc)
		}
		if certs := tc.GetCommonTlsContext().GetTlsCertificates(); (name == "tls") != (len(certs) == 1) {
			t.Errorf("%s: client certificates: %v", name, certs)
		}
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	ok := Options{Service: "web", NodeID: "web-1", XDSAddr: "cp.example:18000"}
	with := func(f func(*Options)) Options {
		o := ok
		f(&o)
		return o
	}
	cases := []struct {
		name  string
		o     Options
		field string
		want  string
	}{
		{"empty service", with(func(o *Options) { o.Service = "" }), "service", "is empty"},
		{"bad service", with(func(o *Options) { o.Service = "web_api" }), "service", "not a valid Consul service name"},
		{"empty node id", with(func(o *Options) { o.NodeID = "" }), "node-id", "is empty"},
		{"node id with space", with(func(o *Options) { o.NodeID = "web 1" }), "node-id", "contains a space"},
		{"xds without port", with(func(o *Options) { o.XDSAddr = "cp.example" }), "xds-addr", "want host:port"},
		{"xds empty host", with(func(o *Options) { o.XDSAddr = ":18000" }), "xds-addr", "the host is empty"},
		{"xds bad port", with(func(o *Options) { o.XDSAddr = "cp.example:0" }), "xds-addr", "want a number in 1–65535"},
		{"xds big port", with(func(o *Options) { o.XDSAddr = "cp.example:70000" }), "xds-addr", "want a number in 1–65535"},
		{"xds bad host", with(func(o *Options) { o.XDSAddr = "cp_example!:18000" }), "xds-addr", "neither an IP address nor a DNS name"},
		{"admin public", with(func(o *Options) { o.AdminAddr = "0.0.0.0:19000" }), "admin-addr", "not a loopback address"},
		{"admin by name", with(func(o *Options) { o.AdminAddr = "localhost:19000" }), "admin-addr", "must be an IP address"},
		{"admin no port", with(func(o *Options) { o.AdminAddr = "127.0.0.1" }), "admin-addr", "want host:port"},
		{"negative app port", with(func(o *Options) { o.AppPort = -1 }), "app-port", "want 1–65535"},
		{"big inbound port", with(func(o *Options) { o.InboundPort = 65536 }), "inbound-port", "want 1–65535"},
		{"inbound is outbound", with(func(o *Options) { o.InboundPort, o.OutboundPort = 15000, 15000 }), "inbound-port", "also the outbound port"},
		{"inbound is default outbound", with(func(o *Options) { o.InboundPort = ir.DefaultOutboundPort }), "inbound-port", "also the outbound port"},
		{"app is inbound", with(func(o *Options) { o.AppPort = ir.DefaultInboundPort }), "app-port", "also the inbound port"},
		{"admin is outbound", with(func(o *Options) { o.AdminAddr = "127.0.0.1:15001" }), "admin-addr", "also the outbound port"},
		{"instance and app port", with(func(o *Options) { o.Instance, o.AppPort = "web-1", 8080 }), "app-port", "set only one"},
		{"bad upstream", with(func(o *Options) { o.Upstreams = []string{"orders", "-billing"} }), "upstreams", `"-billing" is not a valid Consul service name`},
		{"empty upstream", with(func(o *Options) { o.Upstreams = []string{""} }), "upstreams", `"" is not a valid Consul service name`},
		{"upstream twice", with(func(o *Options) { o.Upstreams = []string{"orders", "orders"} }), "upstreams", "listed twice"},
		{"cert without key", with(func(o *Options) { o.TLS = TLS{CAFile: "/ca.pem", CertFile: "/c.pem"} }), "tls-key", "give both"},
		{"key without cert", with(func(o *Options) { o.TLS = TLS{CAFile: "/ca.pem", KeyFile: "/k.pem"} }), "tls-cert", "give both"},
		{"tls without ca", with(func(o *Options) { o.TLS = TLS{ServerName: "cp.example"} }), "tls-ca", "is empty"},
		{"relative ca", with(func(o *Options) { o.TLS = TLS{CAFile: "ca.pem"} }), "tls-ca", "not an absolute path"},
		{"bad server name", with(func(o *Options) { o.TLS = TLS{CAFile: "/ca.pem", ServerName: "a b"} }), "tls-server-name", "not a DNS name"},
		{"negative timeout", with(func(o *Options) { o.ConnectTimeout = Duration(-time.Second) }), "connect-timeout", "negative"},
		{"reserved tag", with(func(o *Options) { o.StatsTags = map[string]string{TagService: "x"} }), "stats-tag", "set by signalbox itself"},
		{"bad tag name", with(func(o *Options) { o.StatsTags = map[string]string{"team-name": "x"} }), "stats-tag", "use letters, digits and '_'"},
		{"empty tag value", with(func(o *Options) { o.StatsTags = map[string]string{"team": ""} }), "stats-tag", "empty value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.o)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not say %q: %v", tc.want, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("want a *FieldError for %s, got %#v", tc.field, err)
			}
		})
	}

	// Every problem is reported at once.
	err := Options{XDSAddr: "nope"}.Validate()
	for _, want := range []string{"service is empty", "node-id is empty", "xds-addr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("joined error does not say %q: %v", want, err)
		}
	}
}

func TestFormat(t *testing.T) {
	b, err := Build(Options{Service: "web", NodeID: "web-1", XDSAddr: "cp.example:18000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(b, "xml"); err == nil || !strings.Contains(err.Error(), `format "xml": want yaml or json`) {
		t.Errorf("render xml: %v", err)
	}
	if _, err := Parse([]byte("{}"), "toml"); err == nil || !strings.Contains(err.Error(), "want yaml or json") {
		t.Errorf("parse toml: %v", err)
	}
	js, err := Render(b, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(js, []byte("{\n  \"node\": {")) {
		t.Errorf("JSON is not indented with node first:\n%s", js)
	}
}

// A metadata key "<<" would read back from YAML as a merge key: Render
// refuses YAML for it instead of writing a different bootstrap.
func TestRenderRefusesUnfaithfulYAML(t *testing.T) {
	b, err := Parse([]byte(`{"node": {"id": "a", "metadata": {"<<": {"x": 1}, "y": "yes"}}}`), FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(b, FormatYAML); !errors.Is(err, ErrNotYAML) {
		t.Fatalf("want ErrNotYAML, got %v", err)
	}
	if _, err := Render(b, FormatJSON); err != nil {
		t.Fatalf("JSON: %v", err)
	}
}

func TestParseIsStrict(t *testing.T) {
	cases := map[string]struct {
		format, in, want string
	}{
		"unknown field":      {FormatYAML, "node: {id: a}\nnot_a_field: 1\n", "not_a_field"},
		"duplicate key yaml": {FormatYAML, "node: {id: a}\nnode: {id: b}\n", `key "node" already set`},
		"duplicate key json": {FormatJSON, `{"node": {"id": "a"}, "node": {"id": "b"}}`, "duplicate"},
		"not yaml":           {FormatYAML, "node: [unclosed", "not valid YAML"},
		"unknown any type": {FormatJSON, `{"static_resources": {"clusters": [{"name": "a", "typed_extension_protocol_options": {"x": {"@type": "type.googleapis.com/no.such.Type"}}}]}}`,
			"no.such.Type"},
		// ValidateAll: the cluster needs a name.
		"invalid proto": {FormatYAML, "static_resources:\n  clusters:\n  - connect_timeout: 1s\n", "Name"},
		// The keepalive interval inside the Any must be at least 1ms, which
		// the bootstrap's own ValidateAll does not look at.
		"invalid typed config": {FormatYAML, `static_resources:
  clusters:
  - name: a
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options:
            connection_keepalive: {interval: 0.0001s, timeout: 1s}
`, "HttpProtocolOptions"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), tc.format)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	var o Options
	if err := yaml.UnmarshalStrict([]byte("connectTimeout: 1m30s\n"), &o); err != nil || time.Duration(o.ConnectTimeout) != 90*time.Second {
		t.Fatalf("got %v, %v", time.Duration(o.ConnectTimeout), err)
	}
	if err := yaml.UnmarshalStrict([]byte("connectTimeout: 5\n"), &o); err == nil {
		t.Fatal("a bare number should be rejected: it has no unit")
	}
	out, err := yaml.Marshal(Options{ConnectTimeout: Duration(2 * time.Second)})
	if err != nil || !strings.Contains(string(out), "connectTimeout: 2s") {
		t.Fatalf("marshal: %s, %v", out, err)
	}
}
