# surveyhooks — the map. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES := proto pkg deploy services/ingest services/fanout services/delivery services/sink services/api services/surveyhooks services/loadgen
GO_TEST_FLAGS ?= -count=1 -timeout 20m -p 2

# A current ClickHouse in-process for the attempt-log conformance suite: libchdb from npm, pinned and
# checked, loaded by chdb-go (purego: no cgo) only in tests built with -tags chdb.
CHDB_VERSION := 26.5.3
CHDB_SHA1 := 3e52ecb7d894d9ebb1a6a50ac03f64208cc65501
CHDB_DIR := $(CURDIR)/.deps/chdb
CHDB_LIB := $(CHDB_DIR)/$(CHDB_VERSION)/libchdb.so

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: run
run: ## run every service in one process: embedded Kafka, local ClickHouse (see README)
	@deploy/install-deps.sh clickhouse
	go run ./services/surveyhooks/cmd/surveyhooks

.PHONY: test
test: deps chdb proto-check tidy-check vet ## install what is needed, then run every test (unit, component, end-to-end, browser)
	@set -e; eval "$$(deploy/clickhouse/local.sh start)"; trap 'deploy/clickhouse/local.sh stop' EXIT; \
	  echo "ClickHouse for tests: $$CLICKHOUSE_ADDR"; \
	  CHDB_LIB_PATH=$(CHDB_LIB) go test -tags chdb $(GO_TEST_FLAGS) $(addprefix ./,$(addsuffix /...,$(MODULES)))

.PHONY: chdb
chdb: $(CHDB_LIB) ## install libchdb (ClickHouse 26.x in-process, npm @chdb/lib-linux-x64-gnu, pinned in CHDB_VERSION) into .deps/chdb

$(CHDB_LIB):
	@set -e; command -v npm >/dev/null || deploy/install-deps.sh npm; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent @chdb/lib-linux-x64-gnu@$(CHDB_VERSION) >/dev/null); \
	  echo "$(CHDB_SHA1)  $$tmp/chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz" | sha1sum -c --quiet; \
	  mkdir -p $(dir $@); tar -xzf "$$tmp"/chdb-lib-linux-x64-gnu-$(CHDB_VERSION).tgz -C "$$tmp"; \
	  mv "$$tmp"/package/libchdb.so $@.part && mv $@.part $@; echo "libchdb $(CHDB_VERSION): $@"

.PHONY: bench
bench: deps ## measure the pipeline against this machine's own HTTP limit; writes bench/results.json
	@set -e; eval "$$(deploy/clickhouse/local.sh start)"; trap 'deploy/clickhouse/local.sh stop' EXIT; \
	  go run ./services/loadgen/cmd/bench -out bench/results.json

.PHONY: proto
proto: ## regenerate the Go code from proto/*.proto (protoc from Debian, protoc-gen-go pinned in proto/go.mod)
	@command -v protoc >/dev/null || deploy/install-deps.sh protoc
	cd proto && protoc --plugin=protoc-gen-go="$$(go tool -n protoc-gen-go)" \
	  --go_out=. --go_opt=module=github.com/surveyhooks/surveyhooks/proto surveyhooks/v1/*.proto

.PHONY: proto-check
proto-check: proto ## fail when the committed generated code is stale
	@git diff --exit-code -- proto/ >/dev/null || { echo "generated code in proto/ is stale: run 'make proto' and commit"; git diff --stat -- proto/; exit 1; }

.PHONY: tidy-check
tidy-check: ## fail when `go mod tidy` would change any module
	@set -e; for m in $(MODULES); do (cd $$m && GOFLAGS= go mod tidy); done; \
	  git diff --exit-code -- '*go.mod' '*go.sum' >/dev/null || { echo "go.mod/go.sum not tidy: run 'make tidy' and commit"; git diff --stat; exit 1; }

.PHONY: tidy
tidy: ## go mod tidy in every module
	@for m in $(MODULES); do (cd $$m && GOFLAGS= go mod tidy); done

.PHONY: vet
vet: ## go vet every module
	go vet -tags chdb $(addprefix ./,$(addsuffix /...,$(MODULES)))

.PHONY: lint
lint: vet ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

.PHONY: deps
deps: ## install system packages the tests need (clickhouse-server, protoc, chromium, nodejs) when missing
	@deploy/install-deps.sh

.PHONY: up
up: ## start the full stack with docker compose (Kafka KRaft, ClickHouse, OTel collector, services)
	docker compose up --build -d

.PHONY: clean
clean: ## remove local data folders
	rm -rf .data
