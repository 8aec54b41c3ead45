// Package e2e holds the end-to-end tests: the signalbox binary, a real Consul
// agent (bin/consul, started by discovery/consul/consultest) and real gRPC
// xDS clients calling demo backends, all on loopback. Run them with
// `make test` (or `make e2e`); they need `make consul` first.
package e2e
