package api

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// uiAssetRef finds the assets index.html names.
var uiAssetRef = regexp.MustCompile(`(?:src|href|content)="(/ui/[^"]+)"`)

// uiFirstScript finds index.html's first script element.
var uiFirstScript = regexp.MustCompile(`<script[^>]*src="([^"]+)"[^>]*>`)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func uiGet(h http.Handler, path string, header ...string) *http.Response {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// uiMux is a mux with the dashboard of dist and the API's catch-all, as New has.
func uiMux(dist fs.FS) *http.ServeMux {
	mux := http.NewServeMux()
	registerUIFrom(mux, dist)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: "no such endpoint"})
	})
	return mux
}

func TestUIServesTheBuiltDashboard(t *testing.T) {
	const js = "console.log('signalbox')"
	dist := fstest.MapFS{
		"README.txt":                   {Data: []byte("placeholder")},
		"index.html":                   {Data: []byte(`<!doctype html><script type="module" src="/ui/app-ABCD1234.js"></script>`)},
		"ui/app-ABCD1234.js":           {Data: []byte(js)},
		"ui/app-ABCD1234.js.gz":        {Data: gzipped(t, js)},
		"ui/app-EFGH5678.css":          {Data: []byte("body{}")},
		"ui/elk-worker-0123abcd.js":    {Data: []byte("self.onmessage=null")},
		"ui/app-ABCD1234.js.LEGAL.txt": {Data: []byte("MIT")},
	}
	mux := uiMux(dist)

	resp := uiGet(mux, "/")
	if got := body(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(got, "/ui/app-ABCD1234.js") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, got)
	}
	for k, want := range map[string]string{
		"Content-Type":  "text/html; charset=utf-8",
		"Cache-Control": "no-cache",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET /: %s %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q keeps scripts to the origin", csp)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Error("GET /: no ETag")
	} else if resp := uiGet(mux, "/", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET / with If-None-Match: %d, want 304", resp.StatusCode)
	}

	// An asset, gzipped when asked and plain when not.
	resp = uiGet(mux, "/ui/app-ABCD1234.js", "Accept-Encoding", "gzip, deflate, br")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET app.js with gzip: %d, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != js {
		t.Errorf("gunzipped app.js: %q", b)
	}
	for k, want := range map[string]string{
		"Content-Type":  "text/javascript; charset=utf-8",
		"Cache-Control": "public, max-age=31536000, immutable",
		"Vary":          "Accept-Encoding",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET app.js: %s %q, want %q", k, got, want)
		}
	}
	resp = uiGet(mux, "/ui/app-ABCD1234.js", "Accept-Encoding", "gzip;q=0, identity")
	if got := body(t, resp); got != js || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("GET app.js without gzip: %q, Content-Encoding %q", got, resp.Header.Get("Content-Encoding"))
	}

	for path, ctype := range map[string]string{
		"/ui/app-EFGH5678.css":          "text/css; charset=utf-8",
		"/ui/elk-worker-0123abcd.js":    "text/javascript; charset=utf-8",
		"/ui/app-ABCD1234.js.LEGAL.txt": "text/plain; charset=utf-8",
	} {
		resp := uiGet(mux, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ctype {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
	}

	// Not assets: directories, the .gz files themselves, escapes, unknown names.
	for _, path := range []string{"/ui/", "/ui/app-ABCD1234.js.gz", "/ui/nope.js", "/ui/x/", "/ui/%2e%2e/index.html"} {
		resp := uiGet(mux, path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	// The mux itself cleans a path with .. (a redirect), never serving above ui/.
	if resp := uiGet(mux, "/ui/../index.html"); resp.StatusCode == http.StatusOK {
		t.Errorf("GET /ui/../index.html: 200, want a redirect or a 404")
	}
	// The page is only at /, and the API's other paths are untouched.
	if resp := uiGet(mux, "/index.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /index.html: %d, want the catch-all's 404", resp.StatusCode)
	}
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK {
		t.Errorf("POST /: %d, want no dashboard", rec.Code)
	}
}

func TestUIWithoutABuildSaysHowToBuildIt(t *testing.T) {
	mux := uiMux(fstest.MapFS{"README.txt": {Data: []byte("placeholder")}})
	resp := uiGet(mux, "/")
	got := body(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(got, "the dashboard was not built: run make ui") {
		t.Errorf("GET / without a build: %d %q, want 503 saying to run make ui", resp.StatusCode, got)
	}
	if resp := uiGet(mux, "/ui/app.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/app.js without a build: %d, want 404", resp.StatusCode)
	}
}

// TestUIEmbedded checks the dashboard this binary embeds: built (make ui)
// or the placeholder of a clean checkout, it answers sensibly.
func TestUIEmbedded(t *testing.T) {
	mux := http.NewServeMux()
	registerUI(mux)
	resp := uiGet(mux, "/")
	got := body(t, resp)
	switch resp.StatusCode {
	case http.StatusOK:
		if !strings.Contains(got, "<title>signalbox</title>") {
			t.Fatalf("GET /: not the dashboard: %.200q", got)
		}
		// Every asset the page names is served.
		for _, m := range uiAssetRef.FindAllStringSubmatch(got, -1) {
			if resp := uiGet(mux, m[1], "Accept-Encoding", "gzip"); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s (named by index.html): %d", m[1], resp.StatusCode)
			}
		}
		// The page's first script is the small classic one that asks for
		// the graph while the app loads (api/ui/src/boot.ts).
		if first := uiFirstScript.FindStringSubmatch(got); first == nil || !strings.HasPrefix(first[1], "/ui/boot-") || strings.Contains(first[0], "module") {
			t.Errorf("index.html's first script: %q, want the classic /ui/boot-*.js", first)
		}
		// Every built asset, with those the app loads later (its chunks),
		// is served and, named by its content, cached for good.
		dist, err := fs.Sub(uiFiles, "ui/dist/ui")
		if err != nil {
			t.Fatal(err)
		}
		names, err := fs.Glob(dist, "*.[jc]s*")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".txt") {
				continue
			}
			resp := uiGet(mux, "/ui/"+name, "Accept-Encoding", "gzip")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || resp.Header.Get("Content-Encoding") != "gzip" {
				t.Errorf("GET /ui/%s: %d, Cache-Control %q, Content-Encoding %q; want 200, cached for good, gzipped", name, resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Encoding"))
			}
		}
	case http.StatusServiceUnavailable:
		t.Logf("the dashboard is not built (run make ui): GET / says %q", got)
		if !strings.Contains(got, "run make ui") {
			t.Errorf("GET / unbuilt: %q does not say to run make ui", got)
		}
	default:
		t.Fatalf("GET /: %d %q", resp.StatusCode, got)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                       false,
		"gzip":                   true,
		"deflate, gzip;q=0.5":    true,
		"GZIP":                   true,
		"gzip;q=0":               false,
		"br, *":                  true,
		"*;q=0":                  false,
		"*, gzip;q=0":            false,
		"identity":               false,
		"x-gzip":                 true,
		"gzip; q=0.001, deflate": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
