"""The expert-balance trial on the control plane, with real EPLB telemetry.

A Dedicated plan whose traffic is sustained but whose expert balance was never measured serves
dense, then runs a trial: one replica of its MoE workload beside dense, in the Service. kwok pods
run no vLLM, so for the trial's leader pod the test runs a real `breakeven eplb-exporter` process
on 127.0.0.1 (e2e/eplb.py), appends vLLM-format EPLB step lines to its log file, and the test
Prometheus scrapes it under that pod's namespace and name. The operator reads the p95 of the
busiest EP rank over the mean from Prometheus like any other fact. Durations are cut to seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_operator import (
    EndpointWatch,
    create,
    lws,
    plan,
    pods,
    ready_endpoints,
    service_selector,
    status,
)

from e2e.cluster import install_gateway_api
from e2e.eplb import PodExporter
from e2e.fixtures import PrometheusEnv

pytestmark = pytest.mark.e2e

MODEL = "deepseek-ai/DeepSeek-V3"
TRIAL = {"duration": "40s", "readyTimeout": "2m", "telemetryTimeout": "2m", "retryAfter": "1h"}


def trial_plan(name: str, namespace: str) -> dict[str, Any]:
    """Sustained traffic, no balance measured yet: the trial's case."""
    body = plan(name, namespace, profile="no-expert-telemetry", model=MODEL)
    body["spec"]["trial"] = dict(TRIAL)
    return body


def trial_of(k8s: Any, namespace: str, name: str) -> dict[str, Any]:
    return status(k8s, namespace, name).get("trial") or {}


@pytest.fixture
def exporters(
    prometheus: PrometheusEnv, tmp_path: Path
) -> Iterator[Callable[[str, str], PodExporter]]:
    started: list[PodExporter] = []

    def start(namespace: str, pod: str) -> PodExporter:
        exporter = PodExporter(prometheus.prom, tmp_path / pod, namespace, pod, MODEL).start()
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def dense_serving(k8s: Any, namespace: str, name: str, until: Callable[..., None]) -> None:
    """Create the plan and wait until its Service has ready (dense) endpoints."""
    create(k8s, trial_plan(name, namespace))
    until("ready endpoints behind the Service", lambda: ready_endpoints(k8s, namespace, name) > 0)


def run_trial(
    k8s: Any,
    namespace: str,
    name: str,
    until: Callable[..., None],
    exporters: Callable[[str, str], PodExporter],
) -> PodExporter:
    """Wait for the plan's trial to run, and start the leader pod's exporter."""
    until(
        "the trial to start beside dense",
        lambda: (
            trial_of(k8s, namespace, name).get("phase") == "Running"
            and status(k8s, namespace, name).get("mode") == "Dense"
        ),
        timeout=120,
    )
    assert trial_of(k8s, namespace, name)["workload"] == f"{name}-moe"
    # Canary: the Service selects both modes' pods.
    assert "breakeven.dev/mode" not in service_selector(k8s, namespace, name)
    conditions = {c["type"]: c for c in status(k8s, namespace, name)["conditions"]}
    assert (conditions["Trial"]["status"], conditions["Trial"]["reason"]) == (
        "True",
        "TrialRunning",
    )
    until("the trial's pods", lambda: bool(pods(k8s, namespace, "moe")))
    [group] = [g for g in lws(k8s, namespace) if g["metadata"]["name"] == f"{name}-moe"]
    assert group["spec"]["replicas"] == 1  # one EP group
    leader = sorted(p.metadata.name for p in pods(k8s, namespace, "moe"))[0]
    return exporters(namespace, leader)


def test_a_balanced_trial_passes_and_the_plan_moves_to_moe(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    exporters: Callable[[str, str], PodExporter],
) -> None:
    dense_serving(k8s, namespace, "bal", until)
    with EndpointWatch(k8s, namespace, "bal") as watch:
        exporter = run_trial(k8s, namespace, "bal", until, exporters)

        def balanced_then_moe() -> bool:
            exporter.write([1.08] * 19 + [1.3])  # EPLB keeps ranks within 1.1x, mostly
            st = status(k8s, namespace, "bal")
            return st.get("mode") == "MoE" and st.get("phase") == "Serving"

        until("the trial to pass and the plan to serve MoE", balanced_then_moe, timeout=240)
    assert watch.counts and min(watch.counts) > 0, (
        f"the Service had no ready endpoints at some point: {watch.counts}"
    )
    st = status(k8s, namespace, "bal")
    assert st["trial"]["phase"] == "Passed"
    assert st["trial"]["observedBalance"].startswith("busiest EP rank 1.")
    rows = {r["name"]: r["verdict"] for r in st["criteria"]}
    assert rows["expertBalance"] == "Go"
    assert service_selector(k8s, namespace, "bal")["breakeven.dev/mode"] == "moe"
    assert ready_endpoints(k8s, namespace, "bal") > 0


def test_a_hot_rank_fails_the_trial_and_the_plan_stays_dense(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    exporters: Callable[[str, str], PodExporter],
) -> None:
    dense_serving(k8s, namespace, "hot", until)
    with EndpointWatch(k8s, namespace, "hot") as watch:
        exporter = run_trial(k8s, namespace, "hot", until, exporters)

        def hot_then_failed() -> bool:
            exporter.write([2.6] * 20)  # TensorRT-LLM's DeepSeek-R1 EP32 figure without EPLB
            return trial_of(k8s, namespace, "hot").get("phase") == "Failed"

        until("the trial to fail on imbalance", hot_then_failed, timeout=240)
        until(
            "the trial workload to be deleted",
            lambda: not [g for g in lws(k8s, namespace) if g["metadata"]["name"] == "hot-moe"],
        )
    assert watch.counts and min(watch.counts) > 0, (
        f"the Service had no ready endpoints at some point: {watch.counts}"
    )
    st = status(k8s, namespace, "hot")
    assert st["mode"] == "Dense"
    found = re.match(r"imbalance: busiest EP rank (\d+\.\d+)x the mean", st["trial"]["reason"])
    assert found, st["trial"]["reason"]
    # Every step at 2.6: the p95 lies in the exporter's bucket (2.0, 3.0], interpolated in it.
    assert 2.0 < float(found.group(1)) <= 3.0
    assert st["trial"]["retryAfter"]
    assert service_selector(k8s, namespace, "hot")["breakeven.dev/mode"] == "dense"


# ------------------------------------------------------------------------------ Shadow mode


def http_route(k8s: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client

    try:
        found: dict[str, Any] = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def mirrors(route: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The RequestMirror filters of a route's rules."""
    return [
        f["requestMirror"]
        for rule in (route or {}).get("spec", {}).get("rules", [])
        for f in rule.get("filters", [])
        if f.get("type") == "RequestMirror"
    ]


class EndpointPods(EndpointWatch):
    """Records the names of the pods behind a Service's endpoints, every poll."""

    def __init__(self, k8s: Any, namespace: str, service: str) -> None:
        super().__init__(k8s, namespace, service)
        self.seen: set[str] = set()

    def _run(self) -> None:
        from kubernetes import client

        discovery = client.DiscoveryV1Api(self.k8s)
        while not self._stop.is_set():
            for s in discovery.list_namespaced_endpoint_slice(
                self.namespace, label_selector=f"kubernetes.io/service-name={self.service}"
            ).items:
                for e in s.endpoints or []:
                    if e.target_ref is not None:
                        self.seen.add(e.target_ref.name)
            self.counts.append(ready_endpoints(self.k8s, self.namespace, self.service))
            time.sleep(0.2)


def test_a_shadow_trial_is_mirrored_by_the_route_and_never_joins_the_service(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    exporters: Callable[[str, str], PodExporter],
) -> None:
    install_gateway_api(k8s)  # Gateway API v1.6.3's HTTPRoute CRD, before the plan exists
    body = trial_plan("shd", namespace)
    body["spec"]["trial"] |= {"mode": "Shadow", "mirrorPercent": 50}
    body["spec"]["gateway"] = {"parentRefs": [{"name": "inference", "namespace": "gateways"}]}
    create(k8s, body)
    until("ready endpoints behind the Service", lambda: ready_endpoints(k8s, namespace, "shd") > 0)
    until("the plan's plain HTTPRoute", lambda: http_route(k8s, namespace, "shd") is not None)
    with EndpointPods(k8s, namespace, "shd") as watch:
        until(
            "the Shadow trial to run and the route to mirror to it",
            lambda: (
                trial_of(k8s, namespace, "shd").get("phase") == "Running"
                and bool(mirrors(http_route(k8s, namespace, "shd")))
            ),
            timeout=120,
        )
        [mirror] = mirrors(http_route(k8s, namespace, "shd"))
        assert mirror == {
            "backendRef": {"group": "", "kind": "Service", "name": "shd-trial", "port": 80},
            "percent": 50,
        }
        st = status(k8s, namespace, "shd")
        assert st["mode"] == "Dense"
        assert st["trial"]["share"] == "mirror 50% of the HTTPRoute's requests"
        assert "mirroring 50% of requests to Service/shd-trial" in st["route"]
        assert service_selector(k8s, namespace, "shd")["breakeven.dev/mode"] == "dense"
        assert service_selector(k8s, namespace, "shd-trial")["breakeven.dev/mode"] == "moe"
        until("the trial's pods", lambda: bool(pods(k8s, namespace, "moe")))
        leader = sorted(p.metadata.name for p in pods(k8s, namespace, "moe"))[0]
        until(
            "the trial's pods behind the trial's Service",
            lambda: ready_endpoints(k8s, namespace, "shd-trial") > 0,
        )
        exporter = exporters(namespace, leader)

        def hot_then_failed() -> bool:
            exporter.write([2.6] * 20)
            return trial_of(k8s, namespace, "shd").get("phase") == "Failed"

        until("the Shadow trial to fail on imbalance", hot_then_failed, timeout=240)
        until(
            "the route to be plain again and the trial's Service gone",
            lambda: (
                not mirrors(http_route(k8s, namespace, "shd"))
                and not service_exists(k8s, namespace, "shd-trial")
            ),
        )
    assert watch.seen and all(name.startswith("shd-dense-") for name in watch.seen), watch.seen
    assert watch.counts and min(watch.counts) > 0, watch.counts
    st = status(k8s, namespace, "shd")
    assert st["mode"] == "Dense" and st["trial"]["reason"].startswith("imbalance: ")
    assert service_selector(k8s, namespace, "shd")["breakeven.dev/mode"] == "dense"


def service_exists(k8s: Any, namespace: str, name: str) -> bool:
    from kubernetes import client

    try:
        client.CoreV1Api(k8s).read_namespaced_service(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_a_moe_plan_whose_rank_balance_degrades_is_demoted(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    exporters: Callable[[str, str], PodExporter],
) -> None:
    # The fastest way to MoE: the team's own per-expert counter (the harness writes it for the
    # "sustained" profile) shows balance, so no trial runs. Once the MoE pods' EPLB exporter has
    # series, they take precedence (core/rubric.py expert_balance), as on a real cluster.
    create(k8s, plan("deg", namespace))
    until(
        "the plan to serve MoE",
        lambda: (
            status(k8s, namespace, "deg").get("mode") == "MoE"
            and status(k8s, namespace, "deg").get("phase") == "Serving"
        ),
        timeout=120,
    )
    assert "trial" not in status(k8s, namespace, "deg")
    until("the MoE pods", lambda: bool(pods(k8s, namespace, "moe")))
    leader = sorted(p.metadata.name for p in pods(k8s, namespace, "moe"))[0]
    exporter = exporters(namespace, leader)
    until("ready endpoints behind the Service", lambda: ready_endpoints(k8s, namespace, "deg") > 0)

    def rows() -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in status(k8s, namespace, "deg")["criteria"]}

    def balanced_on_eplb() -> bool:
        exporter.write([1.08] * 20)
        row = rows()["expertBalance"]
        return row["verdict"] == "Go" and row["observed"].startswith("busiest EP rank 1.")

    until("the EPLB telemetry to read balanced", balanced_on_eplb, timeout=120)
    assert status(k8s, namespace, "deg")["mode"] == "MoE"

    with EndpointWatch(k8s, namespace, "deg") as watch:

        def hot_then_dense() -> bool:
            exporter.write([2.6] * 100)  # TensorRT-LLM's DeepSeek-R1 EP32 figure without EPLB
            return status(k8s, namespace, "deg").get("mode") == "Dense"

        until("the demotion to dense", hot_then_dense, timeout=180)
        assert service_selector(k8s, namespace, "deg")["breakeven.dev/mode"] == "dense"
        until(
            "the MoE workload to be deleted after the drain period",
            lambda: not [g for g in lws(k8s, namespace) if g["metadata"]["name"] == "deg-moe"],
        )
    assert watch.counts and min(watch.counts) > 0, (
        f"the Service had no ready endpoints during the demotion: {watch.counts}"
    )
    st = status(k8s, namespace, "deg")
    row = {r["name"]: r for r in st["criteria"]}["expertBalance"]
    assert row["verdict"] == "StayDense"
    found = re.match(r"busiest EP rank (\d+\.\d+)x the mean", row["observed"])
    assert found and 2.0 < float(found.group(1)) <= 3.0, row["observed"]
    assert row["reason"] == "a hot EP rank: it sets the pace of the whole EP group"
    assert "trial" not in st  # a serving MoE plan reads the telemetry; no trial
    # The make-before-break switch said why, once, when it started (policy.demotionGrace 3s).
    started = [
        e.message
        for e in client.CoreV1Api(k8s)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=deg")
        .items
        if e.reason == "SwitchStarted" and e.message.startswith("switching MoE -> Dense")
    ]
    assert started == [
        "switching MoE -> Dense: expertBalance has not been Go for over 3s, last seen StayDense: "
        "a hot EP rank: it sets the pace of the whole EP group"
    ], started
