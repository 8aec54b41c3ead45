package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signalbox/signalbox/xds/bootstrap"
	"github.com/signalbox/signalbox/xds/nodeauth"
)

// bootstrapConfig is every flag of `signalbox bootstrap`.
type bootstrapConfig struct {
	opts           bootstrap.Options
	connectTimeout time.Duration
	format         string
	output         string
}

func newBootstrap() *cobra.Command {
	c := &bootstrapConfig{}
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Write the Envoy bootstrap of a sidecar",
		Long: `Write the Envoy v3 bootstrap of a sidecar: its node (id, service, version,
zone and the signalbox metadata), the admin API on loopback, ADS over gRPC to
the control plane with keepalive and reconnect backoff, optional TLS to the
control plane, and stats tags for the service and version.

The output is parsed back and checked with Envoy's proto validation before it
is written. With --output it replaces the file atomically.

  signalbox bootstrap --service web --version v2 --xds-addr cp.example:18000 \
    --instance web-v2-host1 --upstreams orders,billing --output /etc/envoy/web.yaml`,
		Args: noArgs,
	}
	o := &c.opts
	fs := cmd.Flags()
	fs.StringVar(&o.Service, "service", "", "Consul service the sidecar fronts (required)")
	fs.StringVar(&o.NodeID, "node-id", "", "Envoy node id, unique per sidecar (default <service>-<hostname>)")
	fs.StringVar(&o.Version, "version", "", "version subset of the instance the sidecar fronts")
	fs.StringVar(&o.Zone, "zone", "", "zone of the host")
	fs.StringVar(&o.Datacenter, "datacenter", "", "datacenter of the host (the node's locality region)")
	fs.StringVar(&o.XDSAddr, "xds-addr", "127.0.0.1:18000", "control plane gRPC address, host:port")
	fs.StringVar(&o.AdminAddr, "admin-addr", bootstrap.DefaultAdminAddr, "Envoy admin API address, ip:port on loopback")
	fs.BoolVar(&o.AdminAllowPublic, "admin-allow-public", false, "allow --admin-addr on a non-loopback address")
	fs.StringVar(&o.Instance, "instance", "", "Consul service ID of the app instance")
	fs.IntVar(&o.AppPort, "app-port", 0, "the app's port, when no --instance is given")
	fs.IntVar(&o.InboundPort, "inbound-port", 0, "inbound listener port (default 15006)")
	fs.IntVar(&o.OutboundPort, "outbound-port", 0, "outbound listener port (default 15001)")
	fs.StringSliceVar(&o.Upstreams, "upstreams", nil, "comma-separated services the sidecar may call (default: all)")
	fs.StringVar(&o.TLS.CAFile, "tls-ca", "", "CA file that verifies the control plane (enables TLS)")
	fs.StringVar(&o.TLS.CertFile, "tls-cert", "", "client certificate file for mutual TLS (with --tls-key)")
	fs.StringVar(&o.TLS.KeyFile, "tls-key", "", "client key file for mutual TLS (with --tls-cert)")
	fs.StringVar(&o.TLS.ServerName, "tls-server-name", "", "name the control plane's certificate must carry (default: the --xds-addr host)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", bootstrap.DefaultConnectTimeout, "connect timeout to the control plane")
	fs.StringToStringVar(&o.StatsTags, "stats-tag", nil, "extra fixed stats tag name=value (repeatable)")
	fs.StringVar(&c.format, "format", bootstrap.FormatYAML, "output format: yaml or json")
	fs.StringVarP(&c.output, "output", "o", "", "file to write (default: standard output)")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		out, err := c.render(os.Hostname)
		if err != nil {
			return err
		}
		if w := certWarning(c.opts.TLS.CertFile, c.opts.Service); w != "" {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
		}
		if c.output == "" || c.output == "-" {
			_, err := cmd.OutOrStdout().Write(out)
			return err
		}
		return writeFileAtomic(c.output, out, 0o644)
	}
	return cmd
}

// render checks the flags, builds the bootstrap and checks its own output.
func (c *bootstrapConfig) render(hostname func() (string, error)) ([]byte, error) {
	o := c.opts
	if c.connectTimeout <= 0 {
		return nil, usageError{fmt.Errorf("--connect-timeout %v: must be positive", c.connectTimeout)}
	}
	o.ConnectTimeout = bootstrap.Duration(c.connectTimeout)
	switch {
	case o.NodeID == "" && o.Service == "":
		// The default needs the service; the --service error says what to
		// fix, so do not also complain about --node-id.
		o.NodeID = "unset"
	case o.NodeID == "":
		h, err := hostname()
		if err != nil || h == "" {
			return nil, usageError{fmt.Errorf("--node-id is empty and the hostname is unknown (%v): set --node-id", err)}
		}
		o.NodeID = o.Service + "-" + h
	}
	var errs []error
	if err := bootstrap.CheckFormat(c.format); err != nil {
		errs = append(errs, err)
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, usageError{flagErrors(errors.Join(errs...))}
	}
	b, err := bootstrap.Build(o)
	if err != nil {
		return nil, err
	}
	out, err := bootstrap.Render(b, c.format)
	if err != nil {
		return nil, err
	}
	if _, err := bootstrap.Parse(out, c.format); err != nil {
		return nil, fmt.Errorf("the generated bootstrap does not validate (a signalbox bug): %w", err)
	}
	return out, nil
}

// certWarning says what is wrong when the client certificate at certFile
// does not name service: signalbox under mutual TLS (--tls-client-identity
// service, its default) would refuse the sidecar. A warning, not an error:
// the certificate may be replaced before Envoy starts, or signalbox may run
// with --tls-client-identity any.
func certWarning(certFile, service string) string {
	if certFile == "" {
		return ""
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Sprintf("--tls-cert not checked: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Sprintf("--tls-cert %s: no PEM certificate in it; Envoy will not start with it", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Sprintf("--tls-cert %s: %v; Envoy will not start with it", certFile, err)
	}
	names := nodeauth.ServicesOf(cert)
	switch {
	case slices.Contains(names, service):
		return ""
	case len(names) == 0:
		return fmt.Sprintf("--tls-cert %s names no service (no SPIFFE URI .../svc/<service>, no common name): signalbox refuses this sidecar under mutual TLS unless it runs with --tls-client-identity any", certFile)
	}
	return fmt.Sprintf("--tls-cert %s is for %s, not --service %q: signalbox refuses this sidecar under mutual TLS unless it runs with --tls-client-identity any; use a certificate for %q",
		certFile, strings.Join(names, ", "), service, service)
}

// flagErrors rewrites the options' field errors as flag errors, one per
// line: `--xds-addr "x": want host:port, like cp.example:18000`.
func flagErrors(err error) error {
	var lines []string
	var collect func(error)
	collect = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				collect(e)
			}
			return
		}
		var fe *bootstrap.FieldError
		if errors.As(err, &fe) {
			lines = append(lines, "--"+fe.Field+" "+fe.Err.Error())
			return
		}
		lines = append(lines, err.Error())
	}
	collect(err)
	if len(lines) == 1 {
		return errors.New(lines[0])
	}
	return errors.New("bad options:\n  " + strings.Join(lines, "\n  "))
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path, so a reader (Envoy, a hot restarter) never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
