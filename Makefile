# prefect-job-operator — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

CACHE ?= $(or $(PJO_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/prefect-job-operator)
ACTIONLINT_VERSION := v1.7.12
ACTIONLINT := $(CACHE)/actionlint-$(ACTIONLINT_VERSION)/actionlint

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	@rm -f $(VENV)/.installed-*; touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with the operator, test and dev dependencies

.PHONY: testbin
testbin: ## Build (or reuse from cache) the local control plane binaries
	@tools/testbin/build.sh >/dev/null

# actionlint for .github/workflows, built once from its Go module, cached by version.
$(ACTIONLINT):
	rm -rf $(@D).tmp && mkdir -p $(@D).tmp
	GOTOOLCHAIN=local GOBIN=$(@D).tmp go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	rm -rf $(@D) && mv $(@D).tmp $(@D)

.PHONY: nodebin
nodebin: testbin ## Build (or reuse) the real node: kubelet, containerd, pause + busybox images
	@tools/nodebin/build.sh >/dev/null

.PHONY: lint
lint: venv $(ACTIONLINT) ## ruff, mypy --strict, import-linter, hadolint, actionlint
	$(BIN)/ruff check operator tests scripts bench tools
	$(BIN)/ruff format --check operator tests scripts bench tools
	$(BIN)/mypy
	PYTHONPATH=operator $(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile tools/images/flow-run/Dockerfile
	$(BIN)/shellcheck tools/images/build.sh tools/images/flow-run/entrypoint.sh
	PATH=$(abspath $(BIN)):$$PATH $(ACTIONLINT)

.PHONY: generate
generate: venv ## Regenerate crds/, the chart's CRD template and docs/configuration.md from the models
	$(BIN)/python scripts/generate.py

.PHONY: verify-generated
verify-generated: venv ## Fail if crds/, the chart's CRD template, docs/configuration.md or the lock files drifted
	$(BIN)/python scripts/generate.py --check
	$(BIN)/python scripts/lock.py --check

.PHONY: lock
lock: venv ## Re-pin requirements.lock (and the flow-run image's) with hashes from pyproject.toml
	$(BIN)/python scripts/lock.py

.PHONY: image
image: ## Build the operator and flow-run image archives without Docker (prints their paths)
	@tools/images/build.sh operator flow-run

.PHONY: test-unit
test-unit: venv ## Fast unit tests only
	$(BIN)/pytest tests/unit -q

.PHONY: test
test: venv testbin nodebin ## Everything: lint, generated files, unit, integration and end-to-end tests
	$(MAKE) lint verify-generated
	$(BIN)/pytest -q --durations=20 --timeout=900

.PHONY: demo
demo: venv testbin nodebin ## The main job: control plane + Prefect + operator + a WorkPool + a real flow run
	$(BIN)/python scripts/demo.py

.PHONY: bench
bench: venv testbin ## Benchmarks against the upstream kubernetes worker (writes docs/benchmarks.md)
	$(BIN)/python -m bench $(BENCH_ARGS)
