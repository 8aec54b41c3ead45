package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	stdlog "log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA signs certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "signalbox test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

var serial struct {
	sync.Mutex
	n int64
}

// issue returns a PEM certificate and key for cn, valid for 127.0.0.1.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	n := serial.n
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Set the time: a rewrite within the file system's clock granularity
	// must still look like a change.
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func servedCN(t *testing.T, r *certReloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName
}

func TestValidateServerTLS(t *testing.T) {
	for _, tc := range []struct {
		cert, key, ca, want string
	}{
		{"", "", "", ""},
		{"c.pem", "k.pem", "", ""},
		{"c.pem", "k.pem", "ca.pem", ""},
		{"c.pem", "", "", "--tls-cert needs --tls-key"},
		{"", "k.pem", "", "--tls-key needs --tls-cert"},
		{"", "", "ca.pem", "--tls-client-ca needs --tls-cert and --tls-key"},
	} {
		err := validateServerTLS(tc.cert, tc.key, tc.ca)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validateServerTLS(%q, %q, %q) = %v; want %q", tc.cert, tc.key, tc.ca, err, tc.want)
		}
	}
}

func TestServeTLSFlagsAreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tls.yaml")
	if err := os.WriteFile(cfg, []byte("tls-key: k.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--tls-cert", "c.pem"}, "--tls-cert needs --tls-key"},
		{[]string{"serve", "--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert"},
		{[]string{"serve", "--config", cfg}, "--tls-key needs --tls-cert"},
	} {
		code, _, stderr := runCmd(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestServeBadCertFileIsNamed(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	c1, _ := ca.issue(t, "one", x509.ExtKeyUsageServerAuth)
	_, k2 := ca.issue(t, "two", x509.ExtKeyUsageServerAuth)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, cert, c1, time.Now())
	writeFile(t, key, k2, time.Now())
	// The pair is loaded before the ports are bound or Consul is asked.
	code, _, stderr := runCmd(t, nil, "serve", "--tls-cert", cert, "--tls-key", key)
	if code == 0 || !strings.Contains(stderr, cert) || !strings.Contains(stderr, key) {
		t.Fatalf("serve with a mismatched pair: code %d, stderr %q; want an error naming both files", code, stderr)
	}
}

func TestSelfZipkinURLFollowsTLS(t *testing.T) {
	c := serveConfig{httpAddr: "0.0.0.0:8080"}
	if got := c.selfZipkinURL(); got != "http://127.0.0.1:8080/api/v2/spans" {
		t.Errorf("plaintext: %q", got)
	}
	c.tlsCert, c.tlsKey = "c.pem", "k.pem"
	if got := c.selfZipkinURL(); got != "https://127.0.0.1:8080/api/v2/spans" {
		t.Errorf("TLS: %q", got)
	}
}

func TestCertReloaderErrorsNameFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	c1, _ := ca.issue(t, "one", x509.ExtKeyUsageServerAuth)
	_, k2 := ca.issue(t, "two", x509.ExtKeyUsageServerAuth)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, cert, c1, time.Now())
	writeFile(t, key, k2, time.Now())

	_, err := newCertReloader(cert, key, time.Second, time.Now, nil)
	if err == nil || !strings.Contains(err.Error(), cert) || !strings.Contains(err.Error(), key) {
		t.Errorf("mismatched pair: %v; want an error naming %s and %s", err, cert, key)
	}
	missing := filepath.Join(dir, "nope.pem")
	_, err = newCertReloader(missing, key, time.Second, time.Now, nil)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("missing cert: %v; want an error naming --tls-cert %s", err, missing)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate"), time.Now())
	_, err = newCertReloader(garbage, key, time.Second, time.Now, nil)
	if err == nil || !strings.Contains(err.Error(), garbage) {
		t.Errorf("garbage cert: %v; want an error naming %s", err, garbage)
	}
	_, err = loadServerTLS(cert, key, "", nil)
	if err == nil || !strings.Contains(err.Error(), cert) {
		t.Errorf("loadServerTLS with a mismatched pair: %v", err)
	}
	c3, k3 := ca.issue(t, "three", x509.ExtKeyUsageServerAuth)
	writeFile(t, cert, c3, time.Now())
	writeFile(t, key, k3, time.Now())
	_, err = loadServerTLS(cert, key, garbage, nil)
	if err == nil || !strings.Contains(err.Error(), "--tls-client-ca "+garbage) {
		t.Errorf("bad client CA: %v; want an error naming --tls-client-ca %s", err, garbage)
	}
	if s, err := loadServerTLS("", "", "", nil); s != nil || err != nil {
		t.Errorf("no TLS flags: %v, %v; want nil, nil", s, err)
	}
}

func TestCertReloaderRotates(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	mod := time.Now().Add(-time.Minute)
	c1, k1 := ca.issue(t, "one", x509.ExtKeyUsageServerAuth)
	writeFile(t, cert, c1, mod)
	writeFile(t, key, k1, mod)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	r, err := newCertReloader(cert, key, 5*time.Second, clock.now, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCN(t, r); got != "one" {
		t.Fatalf("served %q; want one", got)
	}

	// A new pair is picked up at the next check, not before.
	c2, k2 := ca.issue(t, "two", x509.ExtKeyUsageServerAuth)
	writeFile(t, cert, c2, mod.Add(time.Second))
	writeFile(t, key, k2, mod.Add(time.Second))
	clock.add(time.Second)
	if got := servedCN(t, r); got != "one" {
		t.Errorf("1s after the rotation: served %q; want one until the next check", got)
	}
	clock.add(5 * time.Second)
	if got := servedCN(t, r); got != "two" {
		t.Fatalf("after the check interval: served %q; want the new pair two", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload logged: %s", logs.String())
	}

	// A broken new pair (a key that does not match) keeps the old one, and
	// is logged once however often it is tried.
	c3, _ := ca.issue(t, "three", x509.ExtKeyUsageServerAuth)
	writeFile(t, cert, c3, mod.Add(2*time.Second))
	for i := 0; i < 3; i++ {
		clock.add(6 * time.Second)
		if got := servedCN(t, r); got != "two" {
			t.Fatalf("after a broken rotation: served %q; want the last good pair two", got)
		}
	}
	if n := strings.Count(logs.String(), "cannot reload the TLS certificate"); n != 1 {
		t.Errorf("broken pair logged %d times; want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "private key does not match") {
		t.Errorf("the log does not say why: %s", logs.String())
	}

	// A missing file keeps it too.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	clock.add(6 * time.Second)
	if got := servedCN(t, r); got != "two" {
		t.Fatalf("with the key file gone: served %q; want two", got)
	}

	// Once the pair is whole again, it is served.
	c4, k4 := ca.issue(t, "four", x509.ExtKeyUsageServerAuth)
	writeFile(t, cert, c4, mod.Add(3*time.Second))
	writeFile(t, key, k4, mod.Add(3*time.Second))
	clock.add(6 * time.Second)
	if got := servedCN(t, r); got != "four" {
		t.Fatalf("after a good rotation: served %q; want four", got)
	}
}

// TestServerTLSHandshakes: the HTTP side needs no client certificate, the
// xDS side with a client CA requires one; the CLI's client verifies with
// --tls-ca.
func TestServerTLSHandshakes(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	sc, sk := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cc, ck := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	paths := map[string][]byte{"ca.pem": ca.pem, "server.pem": sc, "server-key.pem": sk}
	for name, b := range paths {
		writeFile(t, filepath.Join(dir, name), b, time.Now())
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	s, err := loadServerTLS(p("server.pem"), p("server-key.pem"), p("ca.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.mutual() || xdsTLSMode(s) != "mtls" || xdsTLSMode(nil) != "off" {
		t.Errorf("modes: mutual %v, %q", s.mutual(), xdsTLSMode(s))
	}

	// As serve does: the certificate comes from GetCertificate.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig: s.httpConfig(),
		ErrorLog:  stdlog.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(hl, "", "") }()
	defer srv.Close()
	url := "https://" + hl.Addr().String()

	hc, err := httpClient(p("ca.pem"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET with --tls-ca: %v", err)
	}
	resp.Body.Close()
	plain, _ := httpClient("", 5*time.Second)
	if resp, err := plain.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET without the private CA succeeded; want an unknown authority error")
	}
	if _, err := httpClient(p("server-key.pem"), time.Second); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Errorf("a --tls-ca without certificates: %v", err)
	}

	// The xDS side: a handshake without a client certificate fails, one
	// with a certificate from the CA works.
	dialRead := handshakes(t, s.xdsConfig(), ca)
	if err := dialRead(nil); err == nil {
		t.Errorf("xDS handshake without a client certificate succeeded")
	}
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	if err := dialRead([]tls.Certificate{pair}); err != nil {
		t.Errorf("xDS handshake with a client certificate: %v", err)
	}
}

// TestClientCAFollowsItsFile: the xDS port verifies client certificates
// against the --tls-client-ca bundle as it is when a client connects: a CA
// added to the file is trusted after the next check, a broken file keeps
// the last good bundle.
func TestClientCAFollowsItsFile(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newTestCA(t), newTestCA(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	sc, sk := oldCA.issue(t, "server", x509.ExtKeyUsageServerAuth)
	mod := time.Now().Add(-time.Minute)
	writeFile(t, p("server.pem"), sc, mod)
	writeFile(t, p("server-key.pem"), sk, mod)
	writeFile(t, p("clients.pem"), oldCA.pem, mod)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	certs, err := newCertReloader(p("server.pem"), p("server-key.pem"), 5*time.Second, clock.now, log)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := newCAReloader(p("clients.pem"), "--tls-client-ca", 5*time.Second, clock.now, log)
	if err != nil {
		t.Fatal(err)
	}
	s := &serverTLS{certs: certs, clientCAs: cas}

	dialRead := handshakes(t, s.xdsConfig(), oldCA)
	dialWith := func(ca *testCA) error {
		c, k := ca.issue(t, "web", x509.ExtKeyUsageClientAuth)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return dialRead([]tls.Certificate{pair})
	}

	if err := dialWith(oldCA); err != nil {
		t.Fatalf("a client of the configured CA: %v", err)
	}
	if err := dialWith(newCA); err == nil {
		t.Fatal("a client of a CA not in the bundle was let in")
	}

	// The new CA is added to the bundle: trusted after the next check.
	writeFile(t, p("clients.pem"), append(append([]byte{}, oldCA.pem...), newCA.pem...), mod.Add(time.Second))
	if err := dialWith(newCA); err == nil {
		t.Fatal("the new CA was trusted before the next check")
	}
	clock.add(5 * time.Second)
	if err := dialWith(newCA); err != nil {
		t.Fatalf("after the check: a client of the added CA: %v", err)
	}
	if err := dialWith(oldCA); err != nil {
		t.Fatalf("after the check: a client of the old CA: %v", err)
	}
	if !strings.Contains(logs.String(), "client CA bundle reloaded") {
		t.Errorf("no reload logged: %s", logs.String())
	}

	// A file with no certificate keeps the last good bundle, and says why.
	writeFile(t, p("clients.pem"), []byte("half written"), mod.Add(2*time.Second))
	clock.add(6 * time.Second)
	if err := dialWith(newCA); err != nil {
		t.Fatalf("with a broken bundle file: %v; want the last good bundle", err)
	}
	if !strings.Contains(logs.String(), "cannot reload the client CA bundle") || !strings.Contains(logs.String(), "no PEM certificate") {
		t.Errorf("the broken bundle is not logged with its reason: %s", logs.String())
	}
}

// handshakes serves TLS with cfg on loopback, writing "hi" after each
// handshake, and returns a dial that presents certs, trusts serverCA and
// reads the greeting: nil when the server took the handshake.
func handshakes(t *testing.T, cfg *tls.Config, serverCA *testCA) func(certs []tls.Certificate) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if conn.(*tls.Conn).Handshake() == nil {
					_, _ = conn.Write([]byte("hi"))
				}
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	return func(certs []tls.Certificate) error {
		conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: roots, Certificates: certs})
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(conn, make([]byte, 2))
		return err
	}
}
