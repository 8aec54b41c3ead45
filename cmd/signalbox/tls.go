package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
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
	clientCAs *x509.CertPool
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
		if s.clientCAs, err = loadCAPool(clientCAFile, "--tls-client-ca"); err != nil {
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
// verified when a client CA is set.
func (s *serverTLS) xdsConfig() *tls.Config {
	c := s.httpConfig()
	if s.clientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = s.clientCAs
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

// certReloader serves a certificate and key from files and loads them again
// when either file changes, looking at most once per interval. A pair that
// fails to load is logged and the last good pair is kept.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  [2]fileStamp // of the pair served
	failed  string       // the last reload error, logged once
	checked time.Time
}

// newCertReloader loads the pair; an error names the files.
func newCertReloader(certFile, keyFile string, interval time.Duration, now func() time.Time, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, now: now, log: log}
	stamps, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.loaded, r.checked = cert, stamps, now()
	return r, nil
}

func (r *certReloader) stamps() ([2]fileStamp, error) {
	c, err := stampOf(r.certFile)
	if err != nil {
		return [2]fileStamp{}, fmt.Errorf("--tls-cert: %w", err)
	}
	k, err := stampOf(r.keyFile)
	if err != nil {
		return [2]fileStamp{}, fmt.Errorf("--tls-key: %w", err)
	}
	return [2]fileStamp{c, k}, nil
}

func (r *certReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s and --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil
}

// GetCertificate is for tls.Config: the current pair, reloaded first if the
// files changed.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.interval {
		r.checked = now
		r.reloadLocked()
	}
	return r.cert, nil
}

// reloadLocked loads the pair again if the files are not the ones served.
func (r *certReloader) reloadLocked() {
	stamps, err := r.stamps()
	if err == nil && stamps == r.loaded {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = r.load()
	}
	if err != nil {
		// Files being rewritten may fail once; a pair that stays broken is
		// logged once, and tried again at every check.
		if msg := err.Error(); msg != r.failed {
			r.failed = msg
			if r.log != nil {
				r.log.Error("cannot reload the TLS certificate; serving the last good one", "err", err)
			}
		}
		return
	}
	r.cert, r.loaded, r.failed = cert, stamps, ""
	if r.log != nil {
		r.log.Info("TLS certificate reloaded", "cert", r.certFile, "key", r.keyFile, "not_after", cert.Leaf.NotAfter)
	}
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
