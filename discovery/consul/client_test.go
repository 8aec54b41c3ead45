package consul

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestNewClientIgnoresEnvironment checks that the token, namespace and proxy
// come only from the arguments.
func TestNewClientIgnoresEnvironment(t *testing.T) {
	type seen struct{ token, query string }
	var (
		mu  sync.Mutex
		got []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Get("X-Consul-Token"), r.URL.RawQuery})
		mu.Unlock()
		w.Header().Set("X-Consul-Index", "1")
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Header().Set("X-Consul-LastContact", "0")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()

	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	t.Setenv("CONSUL_NAMESPACE", "env-ns")
	t.Setenv("CONSUL_PARTITION", "env-part")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")

	for _, token := range []string{"", "secret"} {
		c, err := NewClient(srv.URL, token)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Catalog().Services(nil); err != nil {
			t.Fatalf("token %q: %v", token, err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last.token != token {
			t.Errorf("token %q: server saw token %q", token, last.token)
		}
		if strings.Contains(last.query, "ns=") || strings.Contains(last.query, "partition=") {
			t.Errorf("token %q: environment namespace leaked into query %q", token, last.query)
		}
	}
}

func TestNewClientAddresses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8500", "http://127.0.0.1:8500", "https://consul.example:8501", "http://[::1]:8500/"} {
		if _, err := NewClient(addr, ""); err != nil {
			t.Errorf("NewClient(%q): %v", addr, err)
		}
	}
	for _, addr := range []string{"", "unix:///tmp/x", "127.0.0.1", "http://h:1/prefix"} {
		if _, err := NewClient(addr, ""); err == nil {
			t.Errorf("NewClient(%q): no error", addr)
		}
	}
}
