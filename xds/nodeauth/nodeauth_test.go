package nodeauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func cert(cn string, uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, p)
	}
	return c
}

func TestServicesOf(t *testing.T) {
	cases := []struct {
		name string
		cert *x509.Certificate
		want []string
	}{
		{"Consul Connect leaf", cert("web", "spiffe://1111-2222.consul/ns/default/dc/dc1/svc/web"), []string{"web"}},
		// The URI wins over the common name when it names a service.
		{"URI over CN", cert("something-else", "spiffe://td/ns/default/dc/dc1/svc/api"), []string{"api"}},
		{"several services", cert("", "spiffe://td/svc/a", "spiffe://td/svc/b", "spiffe://td/svc/a"), []string{"a", "b"}},
		{"trailing slash", cert("", "spiffe://td/ns/default/dc/dc1/svc/web/"), []string{"web"}},
		{"common name only", cert("greeter-client"), []string{"greeter-client"}},
		// An Istio-style identity names a service account, not a
		// service: the common name is used.
		{"SPIFFE without svc", cert("web", "spiffe://cluster.local/ns/default/sa/web"), []string{"web"}},
		{"not SPIFFE", cert("web", "https://example.com/svc/api"), []string{"web"}},
		{"empty svc", cert("", "spiffe://td/ns/default/svc/"), nil},
		{"nothing", cert(""), nil},
		{"no certificate", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ServicesOf(c.cert); !slices.Equal(got, c.want) {
				t.Errorf("ServicesOf = %q, want %q", got, c.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	web := &corev3.Node{Id: "web-1", Cluster: "web"}
	cases := []struct {
		name     string
		services []string
		node     *corev3.Node
		errHas   []string // empty: allowed
	}{
		{"its own service", []string{"web"}, web, nil},
		{"one of its services", []string{"api", "web"}, web, nil},
		{"another service", []string{"api"}, web, []string{`node "web-1" claims service "web"`, `certificate is for "api"`, `certificate for "web"`}},
		{"no service in the certificate", nil, web, []string{`names no service`, `svc/web`, `common name "web"`}},
		// A node that claims no service gets no service's configuration
		// and the access-log server refuses it anyway.
		{"no cluster", []string{"api"}, &corev3.Node{Id: "client-1"}, nil},
		{"no node", nil, nil, nil},
		{"case matters", []string{"Web"}, web, []string{`certificate is for "Web"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.services, c.node)
			if len(c.errHas) == 0 {
				if err != nil {
					t.Fatalf("Check refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check allowed it")
			}
			for _, s := range c.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}
