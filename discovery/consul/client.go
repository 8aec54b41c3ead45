package consul

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// MaxConnsPerHost is how many idle connections the client from NewClient keeps
// to Consul. The watcher holds one long poll per service, each on its own
// HTTP/1.1 connection, so the pool must be at least as large as the number of
// services or every answer costs a new TCP connection. Consul's own limit,
// limits.http_max_conns_per_client (default 200), must be raised to match.
const MaxConnsPerHost = 4096

// NewClient returns a Consul client for addr ("host:port", "http://host:port"
// or "https://host:port") that sends token with every request.
//
// It reads nothing from the environment: the consul/api package fills an
// empty token, namespace and partition from CONSUL_HTTP_* variables and uses
// HTTP_PROXY, so the transport built here uses no proxy and pins the token
// header to exactly token (none when empty) and drops namespace and partition
// parameters. The caller (cmd) decides which environment variables to honour.
func NewClient(addr, token string) (*api.Client, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, errors.New("consul client: empty address")
	}
	scheme := "http"
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		scheme, addr = "https", rest
	} else if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		addr = rest
	} else if strings.Contains(addr, "://") {
		return nil, fmt.Errorf("consul client: address %q: only http:// and https:// are supported", addr)
	}
	addr = strings.TrimSuffix(addr, "/")
	if strings.Contains(addr, "/") {
		return nil, fmt.Errorf("consul client: address %q: a path prefix is not supported", addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("consul client: address %q: %w", addr, err)
	}
	cfg := &api.Config{
		Address: addr,
		Scheme:  scheme,
		Token:   token,
		HttpClient: &http.Client{Transport: pinned{
			token: token,
			next:  newTransport(),
		}},
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return c, nil
}

// newTransport is a pooled transport sized for one long poll per service.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          MaxConnsPerHost,
		MaxIdleConnsPerHost:   MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// pinned makes every request carry exactly the configured token and no
// namespace or partition, whatever consul/api picked up from the environment.
type pinned struct {
	token string
	next  http.RoundTripper
}

func (p pinned) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	stray := q.Has("ns") || q.Has("partition")
	if req.Header.Get("X-Consul-Token") == p.token && !stray {
		return p.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	if p.token == "" {
		r.Header.Del("X-Consul-Token")
	} else {
		r.Header.Set("X-Consul-Token", p.token)
	}
	if stray {
		q.Del("ns")
		q.Del("partition")
		r.URL.RawQuery = q.Encode()
	}
	return p.next.RoundTrip(r)
}
