package validate

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestDeepFindsErrorsInsideAny(t *testing.T) {
	// An HTTP connection manager without a stat prefix is invalid, but a
	// listener that packs it passes ValidateAll.
	bad, err := anypb.New(&hcmv3.HttpConnectionManager{})
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "x", ApiListener: &listenerv3.ApiListener{ApiListener: bad}}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("precondition: ValidateAll already fails: %v", err)
	}
	err = Deep(l)
	if err == nil || !strings.Contains(err.Error(), "StatPrefix") || !strings.Contains(err.Error(), "api_listener.api_listener<envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager>") {
		t.Fatalf("Deep = %v, want the connection manager's error with its path", err)
	}
	if err := Deep(&listenerv3.Listener{Name: "x", ApiListener: &listenerv3.ApiListener{ApiListener: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}}); err == nil {
		t.Fatal("an Any of an unknown type passed")
	}
}
