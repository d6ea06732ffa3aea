# Targets for the local test control plane (docs/testing.md). Included by the top-level Makefile,
# which defines PY, STAMP and VENV.

E2E_CACHE ?= $(HOME)/.cache/breakeven-e2e
BREAKEVEN_CLUSTER_DIR ?= /tmp/breakeven-cluster
export BREAKEVEN_CLUSTER_DIR

controlplane: ## Build (or reuse cached) kube-apiserver, controller-manager, scheduler, etcd, kwok, LWS
	@command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
	bash e2e/controlplane/build.sh

prometheus-install: ## Install Debian's prometheus and promtool when they are missing
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then \
		echo "prometheus: $$(prometheus --version 2>&1 | head -1)"; \
	else \
		echo "installing Debian's prometheus package (apt-get)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; \
	fi

# Progress goes to stderr; the last line on stdout is `export KUBECONFIG=...`.
cluster-up: $(STAMP) controlplane ## Start the local control plane; the last line is `export KUBECONFIG=...`
	@$(PY) -m e2e.cluster up --workdir "$(BREAKEVEN_CLUSTER_DIR)"

cluster-down: $(STAMP) ## Stop every process `make cluster-up` started (by PID)
	$(PY) -m e2e.cluster down --workdir "$(BREAKEVEN_CLUSTER_DIR)"

cluster-status: $(STAMP) ## Show which control-plane processes are running
	$(PY) -m e2e.cluster status --workdir "$(BREAKEVEN_CLUSTER_DIR)"

test-integration: $(STAMP) controlplane prometheus-install image-tools ## Tests against the local control plane and Prometheus
	$(PY) -m pytest -q -m integration tests/integration

# pytest exits 5 when it collects no test; that (and only that) is not a failure while tests/e2e
# has no e2e tests yet.
test-e2e: $(STAMP) controlplane prometheus-install ## End-to-end tests of the operator (tests/e2e)
	@if [ -d tests/e2e ]; then \
		$(PY) -m pytest -q -m e2e tests/e2e; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "test-e2e: no e2e tests collected yet"; exit 0; fi; \
		exit $$rc; \
	else \
		echo "test-e2e: tests/e2e does not exist yet"; \
	fi

.PHONY: controlplane prometheus-install cluster-up cluster-down cluster-status test-integration test-e2e

# The chaos suite (tests/e2e/test_chaos.py) with CHAOS_KILLS operator kills (make test runs 5)
# and a fixed seed; -s prints each test's `chaos:` figures.
CHAOS_KILLS ?= 20
CHAOS_SEED ?= 20261129
chaos: $(STAMP) controlplane prometheus-install ## The chaos suite with CHAOS_KILLS operator kills (make test runs 5)
	BREAKEVEN_CHAOS_KILLS=$(CHAOS_KILLS) BREAKEVEN_CHAOS_SEED=$(CHAOS_SEED) \
		$(PY) -m pytest -q -s -m e2e -p no:cacheprovider tests/e2e/test_chaos.py

.PHONY: chaos

# The operator image (Containerfile; docs/install.md). Offline by default: Debian bases from
# debootstrap and wheels from the host's pip (e2e/image.py). A release build passes the base,
# pinned by digest: make image IMAGE_BASE=docker.io/library/python:3.11-slim-bookworm@sha256:...
IMAGE ?= localhost/breakeven:dev
IMAGE_BASE ?=

image-tools: ## Install Debian's podman, runc and debootstrap when they are missing
	@if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null; then \
		echo "podman: $$(podman --version)"; \
	elif command -v docker >/dev/null && docker info >/dev/null 2>&1 && command -v debootstrap >/dev/null; then \
		echo "docker: $$(docker --version)"; \
	else \
		echo "installing Debian's podman, runc and debootstrap (apt-get)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman runc debootstrap; \
	fi

image: $(STAMP) image-tools ## Build the operator image with podman or docker (IMAGE, IMAGE_BASE)
	$(PY) -m e2e.image build --tag "$(IMAGE)" $(if $(IMAGE_BASE),--base "$(IMAGE_BASE)") --revision "$$(git rev-parse HEAD 2>/dev/null || echo unknown)"

.PHONY: image-tools image
