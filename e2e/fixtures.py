"""pytest fixtures shared by tests/integration and tests/e2e.

Import them into a conftest.py:

    from e2e.fixtures import cluster, namespace, prometheus  # noqa: F401

`cluster` starts the local control plane once per session (or, with BREAKEVEN_KUBECONFIG set, uses
that existing cluster); `prometheus` starts a backfilled Prometheus with a live exporter. A fixture
that cannot start its server raises, so the tests that need it fail with the reason; they never
skip.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import LocalCluster
from e2e.inference_sim import LiveVllm
from e2e.nodes import DEFAULT_DESCRIPTION, apply_nodes, node_objects, ready_node_names
from e2e.prom import LocalPrometheus
from e2e.traffic import PROFILES, LiveExporter, TrafficSpec

ENV_KUBECONFIG = "BREAKEVEN_KUBECONFIG"
ENV_FAKE_NODES = "BREAKEVEN_FAKE_NODES"  # "1": apply the fake node pools to an existing cluster

# The history every session's Prometheus holds: one model per profile, in namespace "traffic".
HISTORY_NAMESPACE = "traffic"
DEFAULT_HISTORY: tuple[TrafficSpec, ...] = tuple(
    TrafficSpec(f"breakeven-test/{name}", HISTORY_NAMESPACE, name) for name in PROFILES
)


def wait_for(
    what: str, check: Callable[[], bool], timeout: float = 60, interval: float = 0.5
) -> None:
    """Poll `check` until it returns true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # retried until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last}" if last else "")
    )


@dataclass
class ClusterHandle:
    """A running cluster: `kubeconfig` path and an ApiClient factory."""

    kubeconfig: Path
    local: LocalCluster | None = None  # None when BREAKEVEN_KUBECONFIG points elsewhere
    nodes: list[dict[str, Any]] = field(default_factory=list)  # the fake nodes applied

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient (close it, or use it as a context manager)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]


def start_cluster(workdir: Path) -> Iterator[ClusterHandle]:
    """The body of the `cluster` fixture, usable outside pytest."""
    existing = os.environ.get(ENV_KUBECONFIG)
    if existing:
        handle = ClusterHandle(Path(existing))
        if os.environ.get(ENV_FAKE_NODES) == "1":
            handle.nodes = node_objects(DEFAULT_DESCRIPTION)
            with handle.api_client() as api:
                apply_nodes(api, handle.nodes)
            names = {n["metadata"]["name"] for n in handle.nodes}

            def ready() -> bool:
                with handle.api_client() as api:
                    return names <= set(ready_node_names(api))

            wait_for("the fake nodes to be Ready (is kwok running in that cluster?)", ready, 120)
        yield handle
        return
    local = LocalCluster(workdir, node_pools=DEFAULT_DESCRIPTION)
    local.start()  # raises StartError with the reason and the log tail
    try:
        yield ClusterHandle(local.kubeconfig, local, node_objects(DEFAULT_DESCRIPTION))
    finally:
        local.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """The local control plane with the default fake GPU node pools (see e2e/nodepools)."""
    yield from start_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        def has_default_sa() -> bool:
            accounts = core.list_namespaced_service_account(name).items
            return any(sa.metadata is not None and sa.metadata.name == "default" for sa in accounts)

        wait_for(f"ServiceAccount default in {name}", has_default_sa, 30)
        yield name
        core.delete_namespace(name)


@dataclass
class PrometheusEnv:
    """A running Prometheus holding `history` and scraping `exporter`."""

    prom: LocalPrometheus
    exporter: LiveExporter
    history: tuple[TrafficSpec, ...]
    live: LiveVllm | None = None  # simulated vLLM pods and their load, where a fixture adds them

    @property
    def url(self) -> str:
        return self.prom.url

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        return self.prom.query(promql, at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Any]:
        return self.prom.query_range(promql, start, end, step)

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        return self.prom.scalar(promql, at)


def start_prometheus(
    workdir: Path, history: tuple[TrafficSpec, ...] = DEFAULT_HISTORY
) -> Iterator[PrometheusEnv]:
    """The body of the `prometheus` fixture, usable outside pytest."""
    exporter = LiveExporter().start()
    try:
        prom = LocalPrometheus(workdir, backfill=history, live_targets=[exporter])
        prom.start()
        try:
            yield PrometheusEnv(prom, exporter, history)
        finally:
            prom.stop()
    finally:
        exporter.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusEnv]:
    """Prometheus with 14 days of every traffic profile (DEFAULT_HISTORY) and a live exporter."""
    yield from start_prometheus(tmp_path_factory.mktemp("prometheus"))
