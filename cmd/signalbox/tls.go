package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// --tls-client-identity values.
const (
	identityService = "service"
	identityAny     = "any"
)

// certCheckInterval is how often, at most, the served certificate's files are
// looked at for a rotation.
const certCheckInterval = 5 * time.Second

// serverTLS is the TLS of `signalbox serve`: a certificate that follows its
// files, and the CAs that client certificates of the xDS port must chain to
// (nil: the xDS port does not ask for one).
type serverTLS struct {
	certs     *certReloader
	clientCAs *reloader[*x509.CertPool]
}

// loadServerTLS checks the --tls-* settings and loads their files. It returns
// nil when TLS is off (no --tls-cert and no --tls-key).
func loadServerTLS(certFile, keyFile, clientCAFile string, log *slog.Logger) (*serverTLS, error) {
	if err := validateServerTLS(certFile, keyFile, clientCAFile); err != nil {
		return nil, err
	}
	if certFile == "" {
		return nil, nil
	}
	certs, err := newCertReloader(certFile, keyFile, certCheckInterval, time.Now, log)
	if err != nil {
		return nil, err
	}
	s := &serverTLS{certs: certs}
	if clientCAFile != "" {
		if s.clientCAs, err = newCAReloader(clientCAFile, "--tls-client-ca", certCheckInterval, time.Now, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// validateServerTLS checks that the --tls-* flags are given together.
func validateServerTLS(certFile, keyFile, clientCAFile string) error {
	switch {
	case certFile != "" && keyFile == "":
		return errors.New("--tls-cert needs --tls-key")
	case certFile == "" && keyFile != "":
		return errors.New("--tls-key needs --tls-cert")
	case certFile == "" && clientCAFile != "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is served only on a TLS port")
	}
	return nil
}

// mutual reports whether the xDS port requires client certificates.
func (s *serverTLS) mutual() bool { return s != nil && s.clientCAs != nil }

// httpConfig is the TLS of the HTTP port: no client certificates.
func (s *serverTLS) httpConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate}
}

// xdsConfig is the TLS of the xDS port: client certificates required and
// verified when a client CA is set, against the bundle as it is when the
// client connects (it follows its file, like the certificate).
func (s *serverTLS) xdsConfig() *tls.Config {
	c := s.httpConfig()
	if s.clientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = s.clientCAs.get()
		base := c.Clone()
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			per := base.Clone()
			per.ClientCAs = s.clientCAs.get()
			return per, nil
		}
	}
	return c
}

// loadCAPool reads a PEM bundle of CA certificates; flag names the setting
// in errors.
func loadCAPool(path, flag string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", flag, path)
	}
	return pool, nil
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// reloader holds what was loaded from files and loads it again when one of
// them changes, looking at most once per interval (on use: no goroutine). A
// load that fails is logged once and the last good value is kept; it is
// tried again at every check.
type reloader[T any] struct {
	files    []string
	flags    []string // the settings that named files, for errors
	what     string   // for the log: "TLS certificate"
	load     func() (T, error)
	attrs    func(T) []any // logged on a reload
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	cur     T
	loaded  []fileStamp // of the files cur was loaded from
	failed  string      // the last reload error, logged once
	checked time.Time
}

// start loads the first value; an error names the files.
func (r *reloader[T]) start() error {
	stamps, err := r.stamps()
	if err != nil {
		return err
	}
	v, err := r.load()
	if err != nil {
		return err
	}
	r.cur, r.loaded, r.checked = v, stamps, r.now()
	return nil
}

func (r *reloader[T]) stamps() ([]fileStamp, error) {
	out := make([]fileStamp, len(r.files))
	for i, f := range r.files {
		st, err := stampOf(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.flags[i], err)
		}
		out[i] = st
	}
	return out, nil
}

// get is the current value, loaded again first if the files changed.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		r.reloadLocked()
	}
	return r.cur
}

func (r *reloader[T]) reloadLocked() {
	stamps, err := r.stamps()
	if err == nil && slices.Equal(stamps, r.loaded) {
		return
	}
	var v T
	if err == nil {
		v, err = r.load()
	}
	if err != nil {
		// Files being rewritten may fail once; what stays broken is
		// logged once.
		if msg := err.Error(); msg != r.failed {
			r.failed = msg
			if r.log != nil {
				r.log.Error("cannot reload the "+r.what+"; serving the last good one", "err", err)
			}
		}
		return
	}
	r.cur, r.loaded, r.failed = v, stamps, ""
	if r.log != nil {
		r.log.Info(r.what+" reloaded", r.attrs(v)...)
	}
}

// certReloader serves a certificate and key from files, reloaded when either
// file changes.
type certReloader struct{ r *reloader[*tls.Certificate] }

// newCertReloader loads the pair; an error names the files.
func newCertReloader(certFile, keyFile string, interval time.Duration, now func() time.Time, log *slog.Logger) (*certReloader, error) {
	r := &reloader[*tls.Certificate]{
		files: []string{certFile, keyFile}, flags: []string{"--tls-cert", "--tls-key"}, what: "TLS certificate",
		load: func() (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert %s and --tls-key %s: %w", certFile, keyFile, err)
			}
			return &cert, nil
		},
		attrs: func(c *tls.Certificate) []any {
			return []any{"cert", certFile, "key", keyFile, "not_after", c.Leaf.NotAfter}
		},
		interval: interval, now: now, log: log,
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return &certReloader{r}, nil
}

// GetCertificate is for tls.Config: the current pair, reloaded first if the
// files changed.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.r.get(), nil
}

// newCAReloader loads a CA bundle (flag names it in errors), reloaded when
// its file changes.
func newCAReloader(path, flag string, interval time.Duration, now func() time.Time, log *slog.Logger) (*reloader[*x509.CertPool], error) {
	r := &reloader[*x509.CertPool]{
		files: []string{path}, flags: []string{flag}, what: "client CA bundle",
		load:     func() (*x509.CertPool, error) { return loadCAPool(path, flag) },
		attrs:    func(*x509.CertPool) []any { return []any{"file", path} },
		interval: interval, now: now, log: log,
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// httpClient is the client of the CLI commands that talk to a running
// signalbox: system roots, or the CAs of caFile (flag --tls-ca).
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	c := &http.Client{Timeout: timeout}
	if caFile == "" {
		return c, nil
	}
	pool, err := loadCAPool(caFile, "--tls-ca")
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	c.Transport = t
	return c, nil
}
