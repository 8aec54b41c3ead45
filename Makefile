# signalbox — see README.md. `make demo` and `make test` are the two commands
# that matter; the rest are their parts.

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
CONSUL_VERSION := 1.20.6
# Cap the e2e tests well under CI's 90 minutes.
TEST_TIMEOUT ?= 30m

.PHONY: all build ui consul staticcheck test unit e2e bench demo lint fmt clean

all: build

## ui: the dashboard (api/ui: npm ci, then esbuild into api/ui/dist, which the build embeds); skipped when up to date
UI_SRC := $(shell find api/ui/src -type f 2>/dev/null) api/ui/package.json api/ui/build.mjs api/ui/tsconfig.json
ui: api/ui/dist/index.html
api/ui/node_modules/.package-lock.json: api/ui/package.json api/ui/package-lock.json
	cd api/ui && npm ci --no-audit --no-fund
api/ui/dist/index.html: api/ui/node_modules/.package-lock.json $(UI_SRC)
	cd api/ui && npm run build

## build: bin/signalbox
build: ui
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/signalbox ./cmd/signalbox

## consul: bin/consul, the pinned Consul built from its Go module (tools/); skipped when already that version
consul:
	@if [ -x bin/consul ] && bin/consul version 2>/dev/null | head -1 | grep -qx 'Consul v$(CONSUL_VERSION)'; then \
		echo "bin/consul is Consul v$(CONSUL_VERSION): not rebuilding"; \
	else \
		echo "building Consul v$(CONSUL_VERSION) into bin/consul (5-10 minutes the first time)..."; \
		$(GO) -C tools build -o ../bin/consul github.com/hashicorp/consul; \
	fi

## staticcheck: bin/staticcheck, pinned in tools/lint
staticcheck:
	@[ -x bin/staticcheck ] || $(GO) -C tools/lint build -o ../../bin/staticcheck honnef.co/go/tools/cmd/staticcheck

## test: every test, unit and end-to-end, with the race detector, against a real Consul
test: consul ui build
	SIGNALBOX_BIN=$(CURDIR)/bin/signalbox $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## unit: the tests that need no Consul
unit:
	$(GO) test -race -count=1 ./xds/... ./rollout/... ./topology/... ./api/... ./cmd/...

## e2e: only the end-to-end tests
e2e: consul build
	SIGNALBOX_BIN=$(CURDIR)/bin/signalbox $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v ./e2e/...

## bench: Go benchmarks, then the convergence benchmark at the goal scale (about 2 minutes; see docs/benchmarks.md)
bench: consul build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) build -o bin/xdsbench ./cmd/xdsbench
	bin/xdsbench --changes 200 --idle 20s

## demo: Consul, signalbox, two versions of a demo service and steady traffic; Ctrl-C stops it all
demo: consul ui build
	$(GO) build -o bin/signalbox-demo ./cmd/signalbox-demo
	bin/signalbox-demo --signalbox bin/signalbox --consul bin/consul

## lint: gofmt, go vet, staticcheck
lint: staticcheck ui
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	bin/staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin/signalbox bin/signalbox-demo bin/xdsbench
