# swarm-mqtt-operator
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# A count, not a duration: a duration -fuzztime can fail with a bare
# "context deadline exceeded" (a race in Go 1.26's fuzz coordinator,
# golang/go#75804, fixed in 1.27).
FUZZTIME ?= 100000x
# make up MANAGERS=3: a three-manager docker-in-docker Swarm.
MANAGERS ?= 1
# make up MONITORING=1: also Prometheus (alert rules) and node-exporter.
MONITORING ?=
# REGISTRY=host:port[/prefix]: push the images there and deploy from it (make up)
REGISTRY ?=
# make soak SEED=... MINUTES=...: the chaos soak's seed and length.
SEED ?= 1
MINUTES ?= 10

.PHONY: all build test unit lint generate bench fuzz soak up down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/mqtt-operator ./cmd/mqtt-operator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/mqttctl ./cmd/mqttctl

## generate: regenerate the CRD in crds/ from the Go types (controller-gen)
generate:
	$(GO) tool controller-gen crd paths=./api/... output:crd:dir=./crds

## lint: go vet, a gofmt check and the import rules (hack/import-rules.sh)
lint:
	$(GO) vet ./...
	hack/import-rules.sh
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: every test (unit, API, CLI, store, CRD staleness, e2e)
test: lint build
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=40000x
	hack/e2e.sh
	hack/e2e-ha.sh

## unit: the Go tests only (no Docker)
unit:
	$(GO) test -count=1 ./...

## bench: the figures the issues name (control plane, then the data plane
## against the operator and a sample cluster on the local Swarm)
bench: build
	hack/up.sh >/dev/null
	CGO_ENABLED=0 $(GO) build -o $(BIN)/bench ./test/bench
	$(BIN)/bench -gitsync
	set -a && . .local/quickstart.env && set +a && $(BIN)/bench -operator $(BIN)/mqtt-operator -cluster -self $(BIN)/bench
	MANAGERS=3 hack/up.sh >/dev/null
	set -a && . .local/quickstart.env && set +a && $(BIN)/bench -ha
	set -a && . .local/quickstart.env && set +a && $(BIN)/bench -sync
	set -a && . .local/quickstart.env && set +a && $(BIN)/bench -fleet
	hack/dind.sh down

## fuzz: a short run of the parse+default+validate fuzz target
fuzz:
	$(GO) test ./api -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./api -run '^$$' -fuzz '^FuzzUser$$' -fuzztime $(FUZZTIME)

## soak: the chaos soak on three docker-in-docker managers, a seeded
## schedule of faults under a numbered workload, and its loss report
## (SEED=1 MINUTES=10; FAULTS=kind,kind narrows it; KEEP=1 keeps the nodes)
soak:
	SEED=$(SEED) MINUTES=$(MINUTES) FAULTS=$(FAULTS) hack/soak.sh

## up: Docker, a local Swarm, the operator stack and the quickstart cluster
## (MANAGERS=3: on three docker-in-docker managers; MONITORING=1: Prometheus too;
## REGISTRY=host:port: the images pushed there and pulled from it by every node)
up:
	MANAGERS=$(MANAGERS) MONITORING=$(MONITORING) REGISTRY=$(REGISTRY) hack/up.sh

## down: remove the quickstart cluster and the operator (PURGE=1: volumes and secrets too)
down:
	PURGE=$(PURGE) hack/down.sh

clean:
	rm -rf $(BIN)
