package zipkin

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

var _ http.Handler = (*Collector)(nil)

// ServeHTTP takes POST /api/v2/spans: a Zipkin v2 JSON array of spans
// (Content-Type application/json, or none, as in Zipkin) or a zipkin.proto3
// ListOfSpans (application/x-protobuf), optionally gzipped. It answers 202
// Accepted like Zipkin, or a 4xx with a JSON body {"error", "hint"} that
// says what to fix: 400 malformed, 405 not a POST, 413 too large, 415 a
// content type or encoding it does not take.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.Requests.Add(1)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		c.reject(w, http.StatusMethodNotAllowed, RejectMethod,
			fmt.Sprintf("method %s is not allowed", r.Method), "POST spans to this endpoint")
		return
	}
	mediaType := r.Header.Get("Content-Type")
	if mediaType != "" {
		mt, _, err := mime.ParseMediaType(mediaType)
		if err != nil {
			c.reject(w, http.StatusUnsupportedMediaType, RejectMediaType,
				fmt.Sprintf("Content-Type %q does not parse: %v", clip(mediaType), err), hintMediaType)
			return
		}
		mediaType = mt
	}
	decode := decoderFor(mediaType)
	if decode == nil {
		c.reject(w, http.StatusUnsupportedMediaType, RejectMediaType,
			fmt.Sprintf("Content-Type %q is not accepted", clip(mediaType)), hintMediaType)
		return
	}
	var gz bool
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		c.reject(w, http.StatusUnsupportedMediaType, RejectMediaType,
			fmt.Sprintf("Content-Encoding %q is not accepted", clip(enc)), "send the body uncompressed or with Content-Encoding: gzip")
		return
	}

	buf := c.bufs.Get().(*bytes.Buffer)
	defer c.putBuf(buf)
	if err := c.readBody(w, r, gz, buf); err != nil {
		c.rejectErr(w, err)
		return
	}
	spans, err := decode(buf.Bytes(), c.opts.MaxRequestSpans)
	if err != nil {
		c.rejectErr(w, err)
		return
	}
	c.Add(c.now(), spans)
	w.WriteHeader(http.StatusAccepted)
}

const hintMediaType = "send Content-Type application/json (a JSON array of Zipkin v2 spans) or application/x-protobuf (a zipkin.proto3 ListOfSpans)"

// readBody reads the body into buf, within the limits as sent and as
// decompressed.
func (c *Collector) readBody(w http.ResponseWriter, r *http.Request, gz bool, buf *bytes.Buffer) error {
	sent, decoded := c.opts.MaxBodyBytes, c.opts.MaxDecodedBytes
	tooLarge := func(what string, limit int64) error {
		hint := "send fewer spans per request (lower the sender's batch size)"
		if !gz {
			hint += ", or gzip the body"
		}
		return &DecodeError{Reason: RejectTooLarge, Msg: fmt.Sprintf("the body %s is over %d bytes", what, limit), Hint: hint}
	}
	if r.ContentLength > sent {
		return tooLarge("as sent", sent)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, sent)
	limit := min(sent, decoded)
	if gz {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return readErr(err, tooLarge("as sent", sent))
		}
		defer zr.Close()
		src, limit = zr, decoded
	}
	if _, err := buf.ReadFrom(io.LimitReader(src, limit+1)); err != nil {
		return readErr(err, tooLarge("as sent", sent))
	}
	if int64(buf.Len()) > limit {
		if gz {
			return tooLarge("decompressed", limit)
		}
		return tooLarge("as sent", limit)
	}
	return nil
}

// readErr tells a body over the limit from one that is not gzip.
func readErr(err, tooLarge error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return tooLarge
	}
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return malformed("compress the body with gzip, or drop the Content-Encoding header", "the body is not valid gzip: %v", err)
	}
	return malformed("send the whole body", "reading the body: %v", err)
}

func (c *Collector) putBuf(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return // let a rare large buffer go rather than hold it
	}
	b.Reset()
	c.bufs.Put(b)
}

func (c *Collector) rejectErr(w http.ResponseWriter, err error) {
	var de *DecodeError
	if !errors.As(err, &de) {
		c.reject(w, http.StatusBadRequest, RejectMalformed, err.Error(), hintJSON)
		return
	}
	status := http.StatusBadRequest
	if de.Reason == RejectTooLarge {
		status = http.StatusRequestEntityTooLarge
	}
	c.reject(w, status, de.Reason, err.Error(), de.Hint)
}

// errorBody is what a refused request gets back.
type errorBody struct {
	Error string `json:"error"`
	Hint  string `json:"hint"`
}

func (c *Collector) reject(w http.ResponseWriter, status int, reason, msg, hint string) {
	c.Rejected.Add(1)
	for i, r := range RejectReasons() {
		if r == reason {
			c.rejected[i].Add(1)
		}
	}
	c.opts.Logger.Debug("zipkin spans refused", "status", status, "reason", reason, "err", msg)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg, Hint: hint})
}
