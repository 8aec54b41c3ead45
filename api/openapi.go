package api

import (
	_ "embed"
	"net/http"
	"sync"

	"sigs.k8s.io/yaml"
)

// openapiYAML is the OpenAPI 3.1 document of this package's HTTP API.
// openapi_test.go checks it against the routes registered here and the
// types the handlers answer with, so it cannot drift from them unnoticed.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON is openapiYAML as JSON, converted once.
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	return yaml.YAMLToJSON(openapiYAML)
})

// registerOpenAPI serves the API's OpenAPI document as YAML and JSON.
func registerOpenAPI(mux *http.ServeMux) {
	// Convert now, at start, rather than on the first request.
	doc, err := openapiJSON()
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapiYAML)
	})
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			// Cannot happen with the document as tested; say so if it does.
			writeJSON(w, http.StatusInternalServerError, Error{Error: "openapi.yaml does not convert to JSON: " + err.Error(), Hint: "GET /api/v1/openapi.yaml instead"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
}
