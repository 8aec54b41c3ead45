package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/signalbox/signalbox/xds/ir"
)

// DefaultAdminAddr is where the admin API listens unless told otherwise.
const DefaultAdminAddr = "127.0.0.1:19000"

// DefaultConnectTimeout is the connect timeout to the control plane.
const DefaultConnectTimeout = 5 * time.Second

// Options describe one sidecar. Only Service, NodeID and XDSAddr are
// required. The JSON names are what the golden inputs in testdata/in use.
type Options struct {
	// Service is the Consul service the sidecar fronts: the node's cluster.
	Service string `json:"service"`
	// NodeID is unique per sidecar.
	NodeID string `json:"nodeId"`
	// Version is the version subset of the instance the sidecar fronts.
	Version string `json:"version,omitempty"`
	// Zone and Datacenter are the node's locality (zone and region).
	Zone       string `json:"zone,omitempty"`
	Datacenter string `json:"datacenter,omitempty"`
	// XDSAddr is the control plane's gRPC address, host:port. A host that
	// is an IP address gives a STATIC cluster, a name a STRICT_DNS one.
	XDSAddr string `json:"xdsAddr"`
	// AdminAddr is the admin API's ip:port (default DefaultAdminAddr). It
	// must be a loopback address unless AdminAllowPublic is set.
	AdminAddr        string `json:"adminAddr,omitempty"`
	AdminAllowPublic bool   `json:"adminAllowPublic,omitempty"`
	// Instance is the Consul service ID of the app instance; AppPort is the
	// app's port when no instance is named. At most one of them is set.
	Instance string `json:"instance,omitempty"`
	AppPort  int    `json:"appPort,omitempty"`
	// InboundPort and OutboundPort override the sidecar's listener ports
	// (0: ir.DefaultInboundPort and ir.DefaultOutboundPort).
	InboundPort  int `json:"inboundPort,omitempty"`
	OutboundPort int `json:"outboundPort,omitempty"`
	// Upstreams narrows the services the sidecar can call (Consul names).
	Upstreams []string `json:"upstreams,omitempty"`
	// TLS to the control plane; the zero value is plaintext.
	TLS TLS `json:"tls,omitzero"`
	// ConnectTimeout to the control plane (0: DefaultConnectTimeout).
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// StatsTags are extra fixed tags on every stat, besides
	// signalbox_service and signalbox_version.
	StatsTags map[string]string `json:"statsTags,omitempty"`
}

// TLS is the client side of TLS to the control plane. Files are read by
// Envoy, so they are absolute paths on the host that runs Envoy.
type TLS struct {
	// CAFile holds the CA certificates that sign the control plane's.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are the sidecar's client certificate (mutual
	// TLS); both or neither.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName is the SNI sent and the subject alt name required of the
	// control plane's certificate (default: the host of XDSAddr).
	ServerName string `json:"serverName,omitempty"`
}

// Enabled reports whether any TLS setting is given.
func (t TLS) Enabled() bool { return t != TLS{} }

// Duration is a time.Duration written as a string ("5s") in JSON and YAML.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a string such as "5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// FieldError is an invalid option. Field is the option's name as the
// `signalbox bootstrap` flag spells it, without the dashes.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + " " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// consulName is a Consul service name that is also a DNS label, as Consul
// requires for names it serves over DNS.
var consulName = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// tagName is a stats tag name that survives every sink (Prometheus labels).
var tagName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Stats tag names that signalbox sets itself.
const (
	TagService = "signalbox_service"
	TagVersion = "signalbox_version"
)

// Validate checks the options and returns every problem, each a
// *FieldError that says what to fix, joined with errors.Join.
func (o Options) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case o.Service == "":
		add(fieldErr("service", "is empty: name the Consul service this sidecar fronts"))
	case !consulName.MatchString(o.Service):
		add(fieldErr("service", "%q is not a valid Consul service name: use letters, digits and '-' (at most 63, not starting or ending with '-')", o.Service))
	}
	add(checkToken("node-id", o.NodeID, true, "give an ID unique to this sidecar, such as web-host1"))
	add(checkToken("version", o.Version, false, ""))
	add(checkToken("zone", o.Zone, false, ""))
	add(checkToken("datacenter", o.Datacenter, false, ""))
	add(checkToken("instance", o.Instance, false, ""))

	if _, _, err := splitXDS(o.XDSAddr); err != nil {
		add(err)
	}
	adminPort := 0
	if ip, port, err := splitAdmin(o.adminAddr()); err != nil {
		add(err)
	} else {
		adminPort = port
		if !ip.IsLoopback() && !o.AdminAllowPublic {
			add(fieldErr("admin-addr", "%q is not a loopback address: the admin API can stop Envoy and dump its secrets, so use 127.0.0.1 or [::1], or set admin-allow-public", o.adminAddr()))
		}
	}

	ports := []struct {
		name string
		v    int
	}{{"app-port", o.AppPort}, {"inbound-port", o.InboundPort}, {"outbound-port", o.OutboundPort}}
	portsOK := true
	for _, p := range ports {
		if p.v != 0 && (p.v < 1 || p.v > 65535) {
			add(fieldErr(p.name, "%d is out of range: want 1–65535", p.v))
			portsOK = false
		}
	}
	if portsOK {
		in, out := o.inboundPort(), o.outboundPort()
		if in == out {
			add(fieldErr("inbound-port", "%d is also the outbound port: the inbound and outbound listeners need different ports", in))
		}
		used := map[int]string{in: "inbound-port", out: "outbound-port"}
		if o.AppPort != 0 {
			if other, ok := used[o.AppPort]; ok {
				add(fieldErr("app-port", "%d is also the %s: the app and the sidecar's listeners need different ports", o.AppPort, strings.ReplaceAll(other, "-", " ")))
			}
			used[o.AppPort] = "app-port"
		}
		if other, ok := used[adminPort]; ok && adminPort != 0 {
			add(fieldErr("admin-addr", "port %d is also the %s: pick another admin port", adminPort, strings.ReplaceAll(other, "-", " ")))
		}
	}
	if o.Instance != "" && o.AppPort != 0 {
		add(fieldErr("app-port", "is set together with instance: the instance's Consul registration gives the app port, so set only one"))
	}

	seen := map[string]bool{}
	for _, u := range o.Upstreams {
		switch {
		case !consulName.MatchString(u):
			add(fieldErr("upstreams", "%q is not a valid Consul service name: use letters, digits and '-' (at most 63, not starting or ending with '-'), comma-separated", u))
		case seen[u]:
			add(fieldErr("upstreams", "%q is listed twice", u))
		}
		seen[u] = true
	}

	add(o.TLS.validate())
	if o.ConnectTimeout < 0 {
		add(fieldErr("connect-timeout", "%v is negative: want a positive duration such as 5s", time.Duration(o.ConnectTimeout)))
	}
	for _, k := range slices.Sorted(maps.Keys(o.StatsTags)) {
		v := o.StatsTags[k]
		switch {
		case k == TagService || k == TagVersion:
			add(fieldErr("stats-tag", "%q is set by signalbox itself: pick another tag name", k))
		case !tagName.MatchString(k):
			add(fieldErr("stats-tag", "name %q: use letters, digits and '_', not starting with a digit", k))
		case v == "":
			add(fieldErr("stats-tag", "%q has an empty value: write name=value", k))
		case len(v) > 1024:
			add(fieldErr("stats-tag", "%q: value is %d bytes, at most 1024", k, len(v)))
		}
	}
	return errors.Join(errs...)
}

func (t TLS) validate() error {
	if !t.Enabled() {
		return nil
	}
	var errs []error
	if t.CAFile == "" {
		errs = append(errs, fieldErr("tls-ca", "is empty but other TLS options are set: name the CA file that signs the control plane's certificate, or Envoy could not verify it"))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			errs = append(errs, fieldErr("tls-cert", "is empty but tls-key is set: give both the client certificate and its key, or neither"))
		} else {
			errs = append(errs, fieldErr("tls-key", "is empty but tls-cert is set: give both the client certificate and its key, or neither"))
		}
	}
	for _, f := range []struct{ name, path string }{{"tls-ca", t.CAFile}, {"tls-cert", t.CertFile}, {"tls-key", t.KeyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			errs = append(errs, fieldErr(f.name, "%q is not an absolute path: Envoy reads it relative to its own working directory, so give the full path", f.path))
		}
	}
	if t.ServerName != "" && !isHostname(t.ServerName) {
		errs = append(errs, fieldErr("tls-server-name", "%q is not a DNS name", t.ServerName))
	}
	return errors.Join(errs...)
}

// checkToken checks a free-form identifier: no spaces or control characters.
func checkToken(field, v string, required bool, hint string) error {
	if v == "" {
		if required {
			return fieldErr(field, "is empty: %s", hint)
		}
		return nil
	}
	if len(v) > 256 {
		return fieldErr(field, "is %d bytes long: at most 256", len(v))
	}
	for _, r := range v {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fieldErr(field, "%q contains a space or control character", v)
		}
	}
	return nil
}

// splitXDS parses the control plane's host:port.
func splitXDS(addr string) (host string, port int, err error) {
	host, port, err = splitHostPort("xds-addr", addr, "cp.example:18000")
	if err != nil {
		return "", 0, err
	}
	if ip, perr := netip.ParseAddr(host); perr == nil {
		if ip.Zone() != "" {
			return "", 0, fieldErr("xds-addr", "%q: IPv6 zones are not supported", addr)
		}
		return host, port, nil
	}
	if !isHostname(host) {
		return "", 0, fieldErr("xds-addr", "%q: host %q is neither an IP address nor a DNS name", addr, host)
	}
	return host, port, nil
}

// splitAdmin parses the admin ip:port.
func splitAdmin(addr string) (netip.Addr, int, error) {
	host, port, err := splitHostPort("admin-addr", addr, DefaultAdminAddr)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, 0, fieldErr("admin-addr", "%q: host must be an IP address such as 127.0.0.1", addr)
	}
	return ip, port, nil
}

func splitHostPort(field, addr, example string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fieldErr(field, "%q: want host:port, like %s", addr, example)
	}
	if host == "" {
		return "", 0, fieldErr(field, "%q: the host is empty: want host:port, like %s", addr, example)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fieldErr(field, "%q: port %q: want a number in 1–65535", addr, ps)
	}
	return host, port, nil
}

// isHostname reports whether s is an RFC 1123 host name.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !consulName.MatchString(label) {
			return false
		}
	}
	return true
}

func (o Options) adminAddr() string {
	if o.AdminAddr == "" {
		return DefaultAdminAddr
	}
	return o.AdminAddr
}

func (o Options) inboundPort() int {
	if o.InboundPort == 0 {
		return ir.DefaultInboundPort
	}
	return o.InboundPort
}

func (o Options) outboundPort() int {
	if o.OutboundPort == 0 {
		return ir.DefaultOutboundPort
	}
	return o.OutboundPort
}

func (o Options) connectTimeout() time.Duration {
	if o.ConnectTimeout == 0 {
		return DefaultConnectTimeout
	}
	return time.Duration(o.ConnectTimeout)
}
