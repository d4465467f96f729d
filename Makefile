# gmail-relay. `make dev` runs everything locally; `make test` runs every test.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PORT ?= 8080
PUBSUB_PORT ?= 8085
DEV_STATE_DIR ?= .dev
export PORT PUBSUB_PORT DEV_STATE_DIR

# Some machines point TF_CLI_CONFIG_FILE at a file that does not exist, and
# terraform then warns on every call; an absent file means defaults anyway.
ifneq ($(TF_CLI_CONFIG_FILE),)
ifeq ($(wildcard $(TF_CLI_CONFIG_FILE)),)
unexport TF_CLI_CONFIG_FILE
endif
endif

FUZZTIME ?= 10m

.PHONY: help dev send test test-unit test-infra lint fuzz bench package deploy destroy smoke clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(PORT)/$(PORT)/g' | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

dev: ## Run every function, the sandbox Google and embedded Pub/Sub on localhost:$(PORT).
	go run ./scripts/dev

send: ## Send a sample message through `make dev`: make send ACCOUNT=you@example.com TO=bob@example.org
	scripts/send.sh

test: ## Unit tests, then emulators and integration, end-to-end and browser tests.
	scripts/test.sh

test-unit: ## Fast unit tests only (no emulators).
	go test -race -shuffle=on -short ./...

fuzz: ## Fuzz the relay's own logic: request decoding and composition, raw checks, push decoding and OAuth state, FUZZTIME each (default 10m).
	@for target in FuzzDecode FuzzCompose FuzzCheckRaw; do \
	  echo "== $$target ($(FUZZTIME))"; go test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) ./internal/message || exit 1; done
	@echo "== FuzzDecodeWire ($(FUZZTIME))"; go test -run='^$$' -fuzz='^FuzzDecodeWire$$' -fuzztime=$(FUZZTIME) ./internal/push
	@echo "== FuzzVerifyState ($(FUZZTIME))"; go test -run='^$$' -fuzz='^FuzzVerifyState$$' -fuzztime=$(FUZZTIME) ./internal/oauth

bench: ## Benchmarks, load harness and reliability suite; prints one table of figures.
	scripts/bench.sh

lint: ## gofmt, go vet and terraform fmt.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	@if command -v terraform >/dev/null; then terraform fmt -check -recursive infra; else echo "terraform not installed: skipping terraform fmt"; fi

package: ## Build dist/function-source.zip, the source Cloud Run functions build from.
	scripts/package.sh

deploy: ## Package and terraform apply, one confirmation: make deploy PROJECT=my-project [VARS=prod.tfvars] [ARGS='-var ...'] [AUTO_APPROVE=1]
	@test -n "$(PROJECT)" || { echo "usage: make deploy PROJECT=<project id> [VARS=<file.tfvars>] [ARGS='<terraform arguments>']"; exit 2; }
	VARS="$(VARS)" scripts/deploy.sh "$(PROJECT)" $(ARGS)

destroy: ## Tear down everything Terraform created: make destroy PROJECT=my-project [VARS=prod.tfvars] [ARGS=...]
	@test -n "$(PROJECT)" || { echo "usage: make destroy PROJECT=<project id>"; exit 2; }
	VARS="$(VARS)" scripts/destroy.sh "$(PROJECT)" $(ARGS)

smoke: ## Send one test message through the deployed relay and wait for its result: make smoke PROJECT=my-project ACCOUNT=you@example.com [APP=billing]
	@test -n "$(PROJECT)" || { echo "usage: make smoke PROJECT=<project id> ACCOUNT=<connected mailbox> [TO=...] [APP=...]"; exit 2; }
	scripts/smoke.sh "$(PROJECT)"

test-infra: ## Terraform validate and terraform test (infra/tests) offline, with the real provider's schema.
	scripts/test-infra.sh

clean: ## Remove local state and build output.
	rm -rf $(DEV_STATE_DIR) dist
