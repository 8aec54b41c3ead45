package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/signalbox/signalbox/rollout"
)

// Releases is the rollout controller as the API sees it.
type Releases interface {
	Create(ctx context.Context, spec rollout.Spec, actor string) (rollout.Rollout, error)
	List(ctx context.Context, archived bool) ([]rollout.Rollout, error)
	Get(ctx context.Context, id string) (rollout.Rollout, error)
	Command(ctx context.Context, id string, cmd rollout.Command) (rollout.Rollout, error)
}

// maxSpecBytes bounds a rollout request's body.
const maxSpecBytes = 1 << 20

func registerRollouts(mux *http.ServeMux, rel Releases, tokens *Tokens) {
	mux.HandleFunc("POST /api/v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		who, ok := tokens.authorize(w, r, Operator)
		if !ok {
			return
		}
		var spec rollout.Spec
		if err := decodeStrict(w, r, &spec); err != nil {
			writeJSON(w, http.StatusBadRequest, Error{Error: "rollout spec: " + err.Error(), Hint: `e.g. {"service":"greeter","strategy":"canary","baseline":"v1","candidate":"v2","steps":[5,25,50],"stepInterval":"1m"}`})
			return
		}
		ro, err := rel.Create(r.Context(), spec, who)
		if err != nil {
			writeReleaseError(w, err)
			return
		}
		w.Header().Set("Location", "/api/v1/rollouts/"+ro.ID)
		writeJSON(w, http.StatusCreated, ro)
	})
	mux.HandleFunc("GET /api/v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := tokens.authorize(w, r, Viewer); !ok {
			return
		}
		archived := false
		if v := r.URL.Query().Get("all"); v != "" {
			var err error
			if archived, err = strconv.ParseBool(v); err != nil {
				writeJSON(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("all=%q: want true or false", v)})
				return
			}
		}
		all, err := rel.List(r.Context(), archived)
		if err != nil {
			writeReleaseError(w, err)
			return
		}
		if all == nil {
			all = []rollout.Rollout{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"rollouts": all})
	})
	mux.HandleFunc("GET /api/v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := tokens.authorize(w, r, Viewer); !ok {
			return
		}
		ro, err := rel.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			writeReleaseError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ro)
	})
	mux.HandleFunc("POST /api/v1/rollouts/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		action := r.PathValue("action")
		switch action {
		case rollout.CmdPause, rollout.CmdResume, rollout.CmdPromote, rollout.CmdAbort, rollout.CmdRetry:
		default:
			writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no action %q", action), Hint: "POST /api/v1/rollouts/{id}/pause, resume, promote, abort or retry"})
			return
		}
		who, ok := tokens.authorize(w, r, Operator)
		if !ok {
			return
		}
		var body struct {
			Reason string `json:"reason"`
		}
		// The body is optional: an empty one (even chunked) is no reason.
		if err := decodeStrict(w, r, &body); err != nil && !errors.Is(err, errEmptyBody) {
			writeJSON(w, http.StatusBadRequest, Error{Error: action + ": " + err.Error(), Hint: `the body is optional: {"reason": "why"}`})
			return
		}
		ro, err := rel.Command(r.Context(), r.PathValue("id"), rollout.Command{Kind: action, Actor: who, Reason: body.Reason})
		if err != nil {
			writeReleaseError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ro)
	})
}

var errEmptyBody = errors.New("empty body: send a JSON object")

// decodeStrict reads one JSON value, refusing unknown fields (a typo in a
// field name must not silently fall back to a default).
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: send application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSpecBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("the body is over %d bytes", maxSpecBytes)
		}
		if errors.Is(err, io.EOF) {
			return errEmptyBody
		}
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value in the body")
	}
	return nil
}

func writeReleaseError(w http.ResponseWriter, err error) {
	// The sentinel picks the status; the words after it say what to fix.
	msg := func(sentinel error) string { return strings.TrimPrefix(err.Error(), sentinel.Error()+": ") }
	switch {
	case errors.Is(err, rollout.ErrInvalid):
		writeJSON(w, http.StatusBadRequest, Error{Error: msg(rollout.ErrInvalid)})
	case errors.Is(err, rollout.ErrNotFound):
		writeJSON(w, http.StatusNotFound, Error{Error: msg(rollout.ErrNotFound)})
	case errors.Is(err, rollout.ErrConflict):
		writeJSON(w, http.StatusConflict, Error{Error: msg(rollout.ErrConflict)})
	case errors.Is(err, rollout.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: msg(rollout.ErrUnavailable)})
	default:
		// Everything else failed on the way to Consul KV.
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: err.Error(), Hint: "rollouts live in Consul KV: is Consul reachable? see /debug/consul"})
	}
}
