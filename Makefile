# Breakeven: every target does its own set-up on a fresh clone (virtual environment, install).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create the virtual environment and install the package with its dev tools

lint: $(STAMP) ## ruff, mypy (strict on the package) and the import-linter layering contract
	$(VENV)/bin/ruff check operator tests bench e2e
	$(VENV)/bin/ruff format --check operator tests bench e2e
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

generate: $(STAMP) ## Regenerate the CRD, chart CRDs and API docs from the pydantic models
	$(PY) -m breakeven.tools.schema

test-unit: $(STAMP) ## Unit tests of the pure core (no cluster)
	$(PY) -m pytest -q -m "not integration and not e2e"

test: lint test-unit test-integration test-e2e ## Every tier: lint, unit, integration, e2e

FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP) controlplane ## The fuzz suite with FUZZ_EXAMPLES examples per test (make test runs 40); counts in fuzz-summary.json
	BREAKEVEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) BREAKEVEN_FUZZ_SUMMARY=fuzz-summary.json \
		$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_fuzz_inputs.py tests/unit/test_fuzz_prometheus.py tests/integration/test_fuzz_crd.py

bench: bench-core bench-controlplane ## Every benchmark but bench-scale; figures go to docs/performance.md

bench-core: $(STAMP) ## The decision core and the capacity model alone (bench/run.py: seconds)
	$(PY) bench/run.py

BENCH_LEVELS ?= 0,100,1000
BENCH_ARGS ?=
bench-controlplane: $(STAMP) controlplane ## The operator on the local control plane beside the API server and LWS (BENCH_LEVELS plans present; more options in BENCH_ARGS)
	$(PY) bench/controlplane.py --levels $(BENCH_LEVELS) $(BENCH_ARGS)

bench-scale: $(STAMP) controlplane prometheus-install ## The operator at 5,000 kwok GPU nodes and 1,000 plans with Prometheus: RSS, CPU, API and Prometheus requests per sweep, where memory goes
	$(PY) bench/controlplane.py --nodes 5000 --levels 0,1000 --samples 10 --prometheus --sweeps --heap-dump --lease-seconds 400 $(BENCH_ARGS)
	$(PY) bench/memory.py --nodes 5000

include e2e/e2e.mk

.PHONY: help venv lint generate test-unit test fuzz bench bench-core bench-controlplane bench-scale

demo: $(STAMP) controlplane prometheus-install ## The operator on a local control plane with sample plans and traffic
	$(PY) -m e2e.demo

demo-keep: $(STAMP) controlplane prometheus-install ## Like demo, but keeps everything running until Ctrl-C
	$(PY) -m e2e.demo --keep

.PHONY: demo demo-keep
