package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// signalboxProc is the signalbox serve process under test.
type signalboxProc struct {
	*child
	xdsAddr  string
	httpAddr string
	http     *http.Client
}

func startSignalbox(ctx context.Context, bin, consulAddr, logDir string, extra []string) (*signalboxProc, error) {
	ports, err := freePorts(2, 0)
	if err != nil {
		return nil, fmt.Errorf("signalbox: pick ports: %w", err)
	}
	s := &signalboxProc{
		xdsAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		http:     &http.Client{Timeout: 10 * time.Second},
	}
	args := append([]string{"serve",
		"--consul-addr", consulAddr,
		"--xds-addr", s.xdsAddr,
		"--http-addr", s.httpAddr,
		"--log-level", "warn",
	}, extra...)
	s.child, err = startChild("signalbox", filepath.Join(logDir, "signalbox.log"), bin, args...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls /readyz until it answers 200.
func (s *signalboxProc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if err := s.alive(); err != nil {
			return err
		}
		code, body, err := s.get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("signalbox /readyz: %w (last: %s)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type sbStatus struct {
	Services  int            `json:"services"`
	Resources map[string]int `json:"resources"`
}

func (s *signalboxProc) status(ctx context.Context) (sbStatus, error) {
	var st sbStatus
	code, body, err := s.get(ctx, "/debug/xds/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/debug/xds/status: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("/debug/xds/status: %w", err)
	}
	return st, nil
}

// waitServices polls /debug/xds/status until it serves at least want services.
func (s *signalboxProc) waitServices(ctx context.Context, want int, timeout time.Duration, progress func(sbStatus)) (sbStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st sbStatus
	var err error
	for {
		if aerr := s.alive(); aerr != nil {
			return st, aerr
		}
		st, err = s.status(ctx)
		if err == nil && st.Services >= want {
			return st, nil
		}
		if err == nil {
			progress(st)
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("signalbox serves %d of %d services: %w (last error: %v)", st.Services, want, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *signalboxProc) metrics(ctx context.Context) ([]byte, error) {
	code, body, err := s.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", code)
	}
	return body, nil
}

// fetchPprof saves /debug/pprof/<which>?seconds=N (which: profile, trace).
func (s *signalboxProc) fetchPprof(ctx context.Context, which string, seconds int, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", s.httpAddr, which, seconds), nil)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", which, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch %s: %d %s (does signalbox serve /debug/pprof/?)", which, resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch %s: %w", which, err)
	}
	return f.Close()
}

func (s *signalboxProc) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.httpAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
