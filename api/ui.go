package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// uiFiles is the dashboard as `make ui` builds it (api/ui, npm and
// esbuild): ui/dist/index.html and its assets under ui/dist/ui/. The built
// files are not committed; a clean checkout has only ui/dist/README.txt,
// and then GET / says how to build the dashboard.
//
//go:embed all:ui/dist
var uiFiles embed.FS

// uiNotBuilt is the answer to GET / when only the placeholder is embedded.
const uiNotBuilt = "the dashboard was not built: run make ui (then rebuild signalbox); the API is served as usual, see /api/v1/openapi.yaml\n"

// uiCSP keeps the page to its own origin: no inline or remote script, no
// remote data. Styles may be inline (the chart and the weight bars set them).
const uiCSP = "default-src 'self'; script-src 'self'; worker-src 'self'; connect-src 'self'; " +
	"style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'none'"

// uiHashed matches an asset name with esbuild's or the build's content
// hash (app-4UMXSKCG.js, elk-worker-dca3a19d.js): such a file never
// changes under its name, so browsers may keep it for good.
var uiHashed = regexp.MustCompile(`-[A-Za-z0-9]{8}\.[a-z.]+$`)

// registerUI serves the dashboard embedded in the binary: the page at /
// and its assets under /ui/.
func registerUI(mux *http.ServeMux) {
	dist, err := fs.Sub(uiFiles, "ui/dist")
	if err != nil {
		panic("api: the embedded dashboard: " + err.Error()) // cannot happen: the directory is embedded
	}
	registerUIFrom(mux, dist)
}

// registerUIFrom serves the dashboard in dist: index.html at GET /, and
// dist/ui/* at GET /ui/*.
func registerUIFrom(mux *http.ServeMux, dist fs.FS) {
	index, err := fs.ReadFile(dist, "index.html")
	built := err == nil
	sum := sha256.Sum256(index)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if !built {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Cache-Control", "no-store")
			h.Set("Retry-After", "60")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, uiNotBuilt)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		// Always revalidated: it names the current assets.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(index))
	})
	mux.HandleFunc("GET /ui/{path...}", func(w http.ResponseWriter, r *http.Request) {
		serveUIAsset(w, r, dist, r.PathValue("path"))
	})
}

// serveUIAsset answers one asset, gzipped when the build made a .gz of it
// and the client takes gzip.
func serveUIAsset(w http.ResponseWriter, r *http.Request, dist fs.FS, name string) {
	if name == "" || strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".gz") || !fs.ValidPath(name) {
		writeJSON(w, http.StatusNotFound, Error{Error: "no such dashboard asset: /ui/" + name, Hint: "the dashboard is at /"})
		return
	}
	file := path.Join("ui", name)
	f, err := dist.Open(file)
	if err != nil {
		writeJSON(w, http.StatusNotFound, Error{Error: "no such dashboard asset: /ui/" + name, Hint: "the dashboard is at /; reload it if signalbox was upgraded"})
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		writeJSON(w, http.StatusNotFound, Error{Error: "no such dashboard asset: /ui/" + name, Hint: "the dashboard is at /"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", uiContentType(name))
	h.Set("X-Content-Type-Options", "nosniff")
	if uiHashed.MatchString(name) {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	var body fs.File = f
	if gz, err := dist.Open(file + ".gz"); err == nil {
		defer gz.Close()
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body = gz
		}
	}
	rs, ok := body.(io.ReadSeeker)
	if !ok { // embed.FS files seek; another fs.FS's may not
		data, err := io.ReadAll(body)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, Error{Error: "read /ui/" + name + ": " + err.Error()})
			return
		}
		rs = bytes.NewReader(data)
	}
	http.ServeContent(w, r, name, time.Time{}, rs)
}

// uiContentType is the Content-Type of an asset by its extension, the
// same on every system (mime's table reads the system's, too).
func uiContentType(name string) string {
	switch path.Ext(name) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".woff2":
		return "font/woff2"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// acceptsGzip reports whether an Accept-Encoding header takes gzip (by
// name or by *) with a q above 0.
func acceptsGzip(header string) bool {
	star := false
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}
