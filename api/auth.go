package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Role is what a bearer token may do.
type Role string

const (
	// Viewer reads (GET).
	Viewer Role = "viewer"
	// Operator reads and changes (starts, pauses, promotes, aborts releases).
	Operator Role = "operator"
)

// Tokens are the API's bearer tokens and their roles.
type Tokens struct {
	byToken map[string]token
}

type token struct {
	role Role
	who  string
}

// ParseTokens reads a tokens file: one "role:token" a line, role viewer or
// operator; blank lines and lines starting with # are skipped.
func ParseTokens(r io.Reader, name string) (*Tokens, error) {
	t := &Tokens{byToken: map[string]token{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		role, tok, ok := strings.Cut(line, ":")
		role, tok = strings.TrimSpace(role), strings.TrimSpace(tok)
		if !ok || tok == "" {
			return nil, fmt.Errorf("%s:%d: want \"role:token\", e.g. \"operator:7f3a…\"", name, n)
		}
		if Role(role) != Viewer && Role(role) != Operator {
			return nil, fmt.Errorf("%s:%d: role %q: want viewer or operator", name, n, role)
		}
		if len(tok) < 16 {
			return nil, fmt.Errorf("%s:%d: the token is %d characters: use at least 16 (e.g. openssl rand -hex 16)", name, n, len(tok))
		}
		if _, dup := t.byToken[tok]; dup {
			return nil, fmt.Errorf("%s:%d: the same token is listed twice", name, n)
		}
		// Audit entries name a token by a hash prefix, never the token.
		sum := sha256.Sum256([]byte(tok))
		t.byToken[tok] = token{role: Role(role), who: role + ":" + hex.EncodeToString(sum[:4])}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(t.byToken) == 0 {
		return nil, fmt.Errorf("%s: no tokens: add \"operator:<token>\" lines, or leave --api-tokens out for a read-only API", name)
	}
	return t, nil
}

// authorize checks the request's bearer token for the role needed and
// returns who it is, or writes the 401/403 answer and returns false.
// Without tokens the API is read-only and open to reads.
func (t *Tokens) authorize(w http.ResponseWriter, r *http.Request, need Role) (string, bool) {
	if t == nil {
		if need == Viewer {
			return "anonymous", true
		}
		writeJSON(w, http.StatusForbidden, Error{Error: "the API is read-only", Hint: "start signalbox with --api-tokens <file> holding \"operator:<token>\" lines"})
		return "", false
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="signalbox"`)
		writeJSON(w, http.StatusUnauthorized, Error{Error: "no bearer token", Hint: "send \"Authorization: Bearer <token>\" with a token from the --api-tokens file"})
		return "", false
	}
	var found *token
	for k, v := range t.byToken {
		// Constant time, so the answer's timing says nothing of the tokens.
		if subtle.ConstantTimeCompare([]byte(k), []byte(tok)) == 1 {
			v := v
			found = &v
		}
	}
	if found == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="signalbox", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, Error{Error: "unknown bearer token", Hint: "use a token listed in the --api-tokens file"})
		return "", false
	}
	if need == Operator && found.role != Operator {
		writeJSON(w, http.StatusForbidden, Error{Error: "this token's role is " + string(found.role) + "; changing a release needs an operator token"})
		return "", false
	}
	return found.who, true
}
