"""Fixtures for the operator's end-to-end tests: control plane, Prometheus, the operator itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import running
from e2e.fixtures import (  # noqa: F401  (pytest fixtures)
    ClusterHandle,
    PrometheusEnv,
    cluster,
    namespace,
    start_prometheus,
    wait_for,
)
from e2e.inference_sim import LiveVllm
from e2e.traffic import TrafficSpec

# Traffic the e2e plans read: 14 days of history per profile, at a rate that fills an EP group of
# the plans' model on the fake H200 pool (see test_operator.py).
HISTORY_NAMESPACE = "traffic"
BASE_RATE = running.E2E_BASE_RATE
LIVE_SERIES = "e2e/live"
E2E_HISTORY = (
    *(
        TrafficSpec(f"e2e/{profile}", HISTORY_NAMESPACE, profile, base_rate=BASE_RATE)
        for profile in ("sustained", "bursty", "no-expert-telemetry")
    ),
    TrafficSpec(LIVE_SERIES, HISTORY_NAMESPACE, "sustained", base_rate=BASE_RATE),
)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusEnv]:
    """The backfilled history; from the end of it on, the live model `e2e/live` is served by two
    llm-d-inference-sim pods (namespace `traffic`) answering a load generator at BASE_RATE
    tokens/s, so its vllm:* series are real vLLM metrics and continue its history. Its
    per-expert counter (a team's own pipeline, spec.traffic.expertLoadMetric) still comes from
    the exporter. By the time a test reads it, its 5-minute rates have minutes behind them."""
    for env in start_prometheus(tmp_path_factory.mktemp("prometheus"), E2E_HISTORY):
        spec = TrafficSpec(LIVE_SERIES, HISTORY_NAMESPACE, "sustained", BASE_RATE)
        env.exporter.add(spec, vllm_series=False)
        workdir = tmp_path_factory.mktemp("live-vllm")
        with LiveVllm(
            env.prom, workdir, HISTORY_NAMESPACE, LIVE_SERIES, tokens_per_s=BASE_RATE
        ) as live:
            env.live = live
            yield env


class Operator:
    """The running operator plus what tests need to poke at it."""

    def __init__(self, cluster: ClusterHandle, prometheus: PrometheusEnv, workdir: Path) -> None:
        self.cluster = cluster
        with cluster.api_client() as api:
            running.install(api)
            self.kubeconfig = running.service_account_kubeconfig(
                api, cluster.kubeconfig, workdir / "operator.kubeconfig"
            )
        self.process = running.OperatorProcess(
            self.kubeconfig, prometheus.url, workdir / "operator.log", interval=2.0
        )

    def start(self) -> None:
        self.process.start()

    def restart_after_kill(self) -> None:
        self.process.kill()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: ClusterHandle, prometheus: PrometheusEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(cluster, prometheus, tmp_path_factory.mktemp("operator"))
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def k8s(cluster: ClusterHandle) -> Iterator[Any]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def until(operator: Operator) -> Callable[..., None]:
    """wait_for that shows the operator's log when it times out (and checks it is alive)."""

    def _until(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        def guarded() -> bool:
            if not operator.process.alive():
                raise AssertionError(f"the operator died:\n{operator.process.tail()}")
            return check()

        try:
            wait_for(what, guarded, timeout, interval=0.5)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- plans ---\n{plans_summary(operator.cluster)}"
                f"\n--- operator log ---\n{operator.process.tail()}"
            ) from None

    return _until


def plans_summary(cluster: ClusterHandle) -> str:
    """Every ServingPlan's status in one line each, for failure messages."""
    from kubernetes import client

    with cluster.api_client() as api:
        items = client.CustomObjectsApi(api).list_cluster_custom_object(
            "breakeven.dev", "v1alpha1", "servingplans"
        )["items"]
        pods = (
            client.CoreV1Api(api)
            .list_pod_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=breakeven")
            .items
        )
    lines = []
    for item in items:
        st = item.get("status") or {}
        lines.append(
            f"{item['metadata']['namespace']}/{item['metadata']['name']}: mode={st.get('mode')} "
            f"target={st.get('targetMode')} phase={st.get('phase')} reason={st.get('reason')} "
            f"message={st.get('message')}"
        )
    for p in pods:
        why = " ".join(c.message or "" for c in (p.status.conditions or []) if c.status != "True")
        lines.append(
            f"pod {p.metadata.namespace}/{p.metadata.name} {p.status.phase} "
            f"node={p.spec.node_name} {why}".rstrip()
        )
    return "\n".join(lines)
