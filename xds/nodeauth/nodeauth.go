// Package nodeauth binds the node an xDS or access-log client claims to the
// client certificate it connected with, so that under mutual TLS a sidecar
// can neither read another service's configuration nor send access logs in
// another service's name (forged errors could roll a release back; forged
// successes could promote a bad one).
//
// A node claims a service by its cluster (the Consul service a sidecar
// fronts). A certificate names the services it may act for by SPIFFE URI
// SANs ending in /svc/<service> — the form of Consul's Connect CA
// (spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>) — or, when it has
// no such URI, by its subject common name. A node with no cluster claims no
// service and is let through: it gets no service's sidecar configuration,
// and the access-log server refuses it on its own.
//
// The decisions (ServicesOf, Check) are pure; Checker applies them to the
// peer of a gRPC stream, for xds/server (Options.NodeCheck) and
// topology/als (WithNodeCheck).
package nodeauth

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServicesOf is the services a client certificate may act for: the last
// segment of each SPIFFE URI SAN whose path ends in /svc/<service>, or else
// the subject common name. Nil when it names none.
func ServicesOf(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	var out []string
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		segs := strings.Split(strings.Trim(u.Path, "/"), "/")
		if n := len(segs); n >= 2 && segs[n-2] == "svc" && segs[n-1] != "" && !slices.Contains(out, segs[n-1]) {
			out = append(out, segs[n-1])
		}
	}
	if len(out) == 0 && cert.Subject.CommonName != "" {
		out = []string{cert.Subject.CommonName}
	}
	return out
}

// Check decides whether a client whose certificate names services may
// speak as node. It says what to fix when not.
func Check(services []string, node *corev3.Node) error {
	claimed := node.GetCluster()
	if claimed == "" || slices.Contains(services, claimed) {
		return nil
	}
	if len(services) == 0 {
		return fmt.Errorf("node %q claims service %q, but its client certificate names no service: issue it a certificate with the URI SAN spiffe://<trust-domain>/ns/default/dc/<dc>/svc/%s (Consul's Connect CA does) or the common name %q",
			node.GetId(), claimed, claimed, claimed)
	}
	return fmt.Errorf("node %q claims service %q, but its client certificate is for %s: set the node's cluster to the service its certificate names, or issue it a certificate for %q",
		node.GetId(), claimed, quoteList(services), claimed)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// Checker checks the nodes of a gRPC server's streams against the peers'
// verified client certificates. Serve it only on a port that requires them:
// a peer without one names no service, so every node claiming a service is
// refused.
type Checker struct {
	log     *slog.Logger
	refused *prometheus.CounterVec
}

// Options configure a Checker.
type Options struct {
	Logger *slog.Logger
	// Registerer gets signalbox_node_identity_refused_total (nil: none).
	Registerer prometheus.Registerer
}

// New makes a Checker.
func New(o Options) *Checker {
	c := &Checker{log: o.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signalbox_node_identity_refused_total",
		Help: "Streams refused because the node they claim is not a service their client certificate names, by stream (xds, als).",
	}, []string{"stream"})
	for _, s := range []string{"xds", "als"} {
		c.refused.WithLabelValues(s)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(c.refused)
	}
	return c
}

// Node checks a node claimed on stream kind ("xds" or "als") against the
// certificate of ctx's peer, and counts a refusal; the caller says it (the
// access-log server logs its refusals itself). The error is a gRPC
// PermissionDenied status.
func (c *Checker) Node(ctx context.Context, kind string, node *corev3.Node) error {
	if err := Check(peerServices(ctx), node); err != nil {
		c.refused.WithLabelValues(kind).Inc()
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// XDS is Node for an xDS stream, logged (serve it as xds/server's
// Options.NodeCheck, whose error reaches the client as the stream's
// status).
func (c *Checker) XDS(ctx context.Context, node *corev3.Node) error {
	err := c.Node(ctx, "xds", node)
	if err != nil {
		from := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			from = p.Addr.String()
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "xds stream refused: the client certificate does not match the node",
			slog.String("peer", from), slog.String("node", node.GetId()), slog.String("error", status.Convert(err).Message()))
	}
	return err
}

// peerServices is what the verified certificate of ctx's peer names.
func peerServices(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ServicesOf(ti.State.VerifiedChains[0][0])
}
