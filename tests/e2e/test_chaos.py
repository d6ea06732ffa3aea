"""Chaos on the real control plane: the operator SIGKILLed mid-switch, the API server restarted,
Prometheus down and slow, the LWS controller down, a plan deleted while the operator is down.

Every fault is made by PID (the operator, kube-apiserver, the LWS controller) or by a proxy in
front of Prometheus (e2e/chaos.py). Random kill points come from a seeded generator, so a run is
repeatable: BREAKEVEN_CHAOS_SEED (default 20261129) and BREAKEVEN_CHAOS_KILLS (default 5; `make
chaos` runs 20). Each test prints its figures on a `chaos:` line (pytest -s shows them).
Two operator replicas with one acting is tests/integration/test_peering_failover.py.
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from test_operator import create, custom, get_plan, plan, ready_endpoints, status

from breakeven.core import api
from e2e import chaos

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("BREAKEVEN_CHAOS_SEED", "20261129"))
KILLS = int(os.environ.get("BREAKEVEN_CHAOS_KILLS", "5"))
PLAN_LABEL = "breakeven.dev/plan"
SUFFIX = {"MoE": "moe", "Dense": "dense"}


@dataclass
class Chaos:
    operator: Any
    proxy: chaos.PrometheusProxy


@pytest.fixture(scope="module")
def chaos_env(operator: Any, prometheus: Any) -> Iterator[Chaos]:
    """The session's operator, restarted to read Prometheus through the fault proxy (and put
    back afterwards): one operator acts at any time."""
    proxy = chaos.PrometheusProxy(prometheus.url).start()
    original = operator.process.prometheus_url
    operator.process.stop()
    operator.process.prometheus_url = proxy.url
    operator.process.start()
    try:
        yield Chaos(operator, proxy)
    finally:
        proxy.mode = "up"
        operator.process.stop()
        operator.process.prometheus_url = original
        operator.process.start()
        proxy.stop()


@pytest.fixture(autouse=True)
def prometheus_up(chaos_env: Chaos) -> Iterator[None]:
    """Each test starts and ends with Prometheus answering (a failed test leaves no fault)."""
    chaos_env.proxy.mode = "up"
    yield
    chaos_env.proxy.mode = "up"


class Watch:
    """Samples something in the background every 0.1 s; a failed read (the API server down) is
    counted, not recorded."""

    def __init__(self, sample: Callable[[], Any]) -> None:
        self.sample = sample
        self.seen: list[Any] = []
        self.unreadable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.append(self.sample())
            except Exception:
                self.unreadable += 1
            time.sleep(0.1)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def endpoints(k8s: Any, namespace: str, service: str) -> Watch:
    return Watch(lambda: ready_endpoints(k8s, namespace, service))


def set_mode(k8s: Any, namespace: str, name: str, mode: str) -> None:
    custom(k8s).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"spec": {"mode": mode}}
    )


def plan_objects(k8s: Any, namespace: str, name: str) -> dict[tuple[str, str], list[str]]:
    """Every workload, ConfigMap and Service of the plan (by its label, or owned by it), with
    the uids of their owners."""
    uid = (
        get_plan(k8s, namespace, name)["metadata"]["uid"]
        if plan_exists(k8s, namespace, name)
        else ""
    )
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    sel = f"{PLAN_LABEL}={name}"
    found: list[tuple[str, dict[str, Any]]] = []
    for d in apps.list_namespaced_deployment(namespace, label_selector=sel).items:
        found.append(("Deployment", client.ApiClient().sanitize_for_serialization(d)))
    for g in custom(k8s).list_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", label_selector=sel
    )["items"]:
        found.append(("LeaderWorkerSet", g))
    for c in core.list_namespaced_config_map(namespace, label_selector=sel).items:
        found.append(("ConfigMap", client.ApiClient().sanitize_for_serialization(c)))
    for s in core.list_namespaced_service(namespace).items:
        owners = {o.uid for o in s.metadata.owner_references or []}
        if (uid and uid in owners) or (s.metadata.labels or {}).get(PLAN_LABEL) == name:
            if any(o.kind == "LeaderWorkerSet" for o in s.metadata.owner_references or []):
                continue  # the LWS controller's headless Service, owned by its LWS
            found.append(("Service", client.ApiClient().sanitize_for_serialization(s)))
    return {
        (kind, obj["metadata"]["name"]): [
            o["uid"] for o in obj["metadata"].get("ownerReferences") or []
        ]
        for kind, obj in found
    }


def plan_exists(k8s: Any, namespace: str, name: str) -> bool:
    try:
        get_plan(k8s, namespace, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def expected_children(name: str, mode: str, workload_kind: str) -> set[tuple[str, str]]:
    want = {(workload_kind, f"{name}-{SUFFIX[mode]}"), ("Service", name)}
    if mode == "MoE":
        want.add(("ConfigMap", f"{name}-moe-eplb"))
    return want


def settled(k8s: Any, namespace: str, name: str, mode: str, dense_kind: str) -> bool:
    """The plan serves `mode`, no switch, exactly the expected children, all owned by it, and
    no pods of the other mode left."""
    st = status(k8s, namespace, name)
    if st.get("mode") != mode or st.get("switch") or st.get("phase") != "Serving":
        return False
    kind = "LeaderWorkerSet" if mode == "MoE" else dense_kind
    objects = plan_objects(k8s, namespace, name)
    if set(objects) != expected_children(name, mode, kind):
        return False
    other = "dense" if mode == "MoE" else "moe"
    left = (
        client.CoreV1Api(k8s)
        .list_namespaced_pod(
            namespace, label_selector=f"{PLAN_LABEL}={name},breakeven.dev/mode={other}"
        )
        .items
    )
    return not left


def assert_owned_exactly(k8s: Any, namespace: str, name: str, mode: str, dense_kind: str) -> None:
    uid = get_plan(k8s, namespace, name)["metadata"]["uid"]
    kind = "LeaderWorkerSet" if mode == "MoE" else dense_kind
    objects = plan_objects(k8s, namespace, name)
    assert set(objects) == expected_children(name, mode, kind), objects
    orphans = {k: owners for k, owners in objects.items() if owners != [uid]}
    assert not orphans, f"objects not owned by the plan (alone): {orphans}"


def no_other_plans_pods(k8s: Any, namespace: str) -> bool:
    """The pods of earlier tests (their namespaces are deleted, not waited for) are gone, so
    the four H200 nodes are free for this test's plans."""
    return not [
        p
        for p in client.CoreV1Api(k8s)
        .list_pod_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=breakeven")
        .items
        if p.metadata.namespace != namespace
    ]


@pytest.fixture
def free_nodes(k8s: Any, namespace: str, until: Callable[..., None]) -> None:
    until("the pods of earlier tests to be gone", lambda: no_other_plans_pods(k8s, namespace), 180)


def serving(k8s: Any, namespace: str, name: str, mode: str) -> bool:
    st = status(k8s, namespace, name)
    return st.get("mode") == mode and st.get("phase") == "Serving" and not st.get("switch")


# --------------------------------------------------------------------------- (a) SIGKILL


def test_the_operator_killed_at_random_points_of_switches_never_drops_the_service(
    k8s: Any, namespace: str, until: Callable[..., None], chaos_env: Chaos, free_nodes: None
) -> None:
    """KILLS switches, each SIGKILLed at a seeded random point: before the operator acts, or
    after the switch started plus a random delay up to the drain period and a poll or two."""
    rng = random.Random(SEED)
    name = "kill"
    create(k8s, plan(name, namespace, mode="Dense"))
    until("dense serving", lambda: serving(k8s, namespace, name, "Dense"), timeout=120)
    until("ready endpoints", lambda: ready_endpoints(k8s, namespace, name) > 0)
    at_kill: list[str] = []
    target = "MoE"
    with endpoints(k8s, namespace, name) as watch:
        for _ in range(KILLS):
            set_mode(k8s, namespace, name, target)
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 1.5))  # before (or while) the operator sees it
            else:
                until(
                    "the switch to start",
                    lambda t=target: (
                        bool(status(k8s, namespace, name).get("switch"))
                        or status(k8s, namespace, name).get("mode") == t
                    ),
                    timeout=120,
                )
                time.sleep(rng.uniform(0.0, 8.0))  # drainPeriod 3s, switch poll 3s
            st = status(k8s, namespace, name)
            at_kill.append(
                (st.get("switch") or {}).get("step")
                or ("done" if st.get("mode") == target else "not started")
            )
            chaos_env.operator.restart_after_kill()
            until(
                f"{target} settled after the kill",
                lambda t=target: settled(k8s, namespace, name, t, "LeaderWorkerSet"),
                timeout=180,
            )
            assert_owned_exactly(k8s, namespace, name, target, "LeaderWorkerSet")
            target = "Dense" if target == "MoE" else "MoE"
    counts = watch.seen
    print(
        f"\nchaos: kills={KILLS} seed={SEED} at={at_kill} endpoint samples={len(counts)} "
        f"zero-ready samples={sum(1 for c in counts if c == 0)} min ready={min(counts)} "
        f"unreadable={watch.unreadable}; after each kill: the expected children, owned by "
        "the plan alone"
    )
    assert counts and min(counts) > 0, f"zero ready endpoints during a switch: {counts}"


# --------------------------------------------------------------------------- (b) API server


def test_an_api_server_restart_mid_switch_is_survived(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    chaos_env: Chaos,
    cluster: Any,
    free_nodes: None,
) -> None:
    if cluster.local is None:
        pytest.fail("this test restarts kube-apiserver: it needs the local control plane")
    name = "apirestart"
    create(k8s, plan(name, namespace, mode="Dense"))
    until("dense serving", lambda: serving(k8s, namespace, name, "Dense"), timeout=120)
    set_mode(k8s, namespace, name, "MoE")
    until(
        "the switch to start",
        lambda: bool(status(k8s, namespace, name).get("switch")),
        timeout=120,
    )
    stopped = chaos.stop_component(cluster.local, "kube-apiserver")
    stopped.start(chaos.apiserver_ready(cluster.local))
    until(
        "MoE settled after the API server came back",
        lambda: settled(k8s, namespace, name, "MoE", "LeaderWorkerSet"),
        timeout=180,
    )
    assert_owned_exactly(k8s, namespace, name, "MoE", "LeaderWorkerSet")
    # The watches resumed: a spec change after the restart is acted on.
    set_mode(k8s, namespace, name, "Dense")
    until(
        "Dense settled after a spec change made after the restart",
        lambda: settled(k8s, namespace, name, "Dense", "LeaderWorkerSet"),
        timeout=180,
    )
    assert_owned_exactly(k8s, namespace, name, "Dense", "LeaderWorkerSet")


# --------------------------------------------------------------------------- (c) Prometheus


def rows(k8s: Any, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in status(k8s, namespace, name).get("criteria") or []}


def test_prometheus_down_then_slow_keeps_moe_plans_moe_and_other_plans_reconciling(
    k8s: Any, namespace: str, until: Callable[..., None], chaos_env: Chaos, free_nodes: None
) -> None:
    """Scaled down: demotionGrace 3s (FAST in test_operator.py) against an outage of 15 s, five
    grace periods (the issue's 10 minutes against the default 10-minute grace); then 32 s of
    answers delayed 30 s (the reader gives up after 5 s a request, 15 s a read). Meanwhile
    another plan (Qwen3-30B-A3B on the L40S pool) is scaled, and must follow."""
    proxy = chaos_env.proxy
    create(k8s, plan("moe", namespace))
    other = plan("other", namespace, mode="Dense", profile="bursty", model="Qwen/Qwen3-30B-A3B")
    other["spec"]["serving"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    create(k8s, other)
    until("the MoE plan to serve MoE", lambda: serving(k8s, namespace, "moe", "MoE"), timeout=180)
    until("the other plan to serve dense", lambda: serving(k8s, namespace, "other", "Dense"))
    before = {n: r.get("since") for n, r in rows(k8s, namespace, "moe").items() if r["gating"]}

    def sample() -> tuple[str | None, str | None]:
        st = status(k8s, namespace, "moe")
        load = {r["name"]: r["verdict"] for r in st.get("criteria") or []}.get("sustainedLoad")
        return st.get("mode"), load

    def scaled(replicas: int) -> bool:
        objs = [
            *client.AppsV1Api(k8s)
            .list_namespaced_deployment(namespace, label_selector=f"{PLAN_LABEL}=other")
            .items
        ]
        if objs:
            return [(d.spec.replicas, d.status.ready_replicas) for d in objs] == [
                (replicas, replicas)
            ]
        groups = custom(k8s).list_namespaced_custom_object(
            "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets",
            label_selector=f"{PLAN_LABEL}=other",
        )["items"]  # fmt: skip
        return [
            (g["spec"]["replicas"], (g.get("status") or {}).get("readyReplicas")) for g in groups
        ] == [(replicas, replicas)]

    def scale(replicas: int) -> None:
        custom(k8s).patch_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, "other",
            {"spec": {"serving": {"replicas": replicas}}},
        )  # fmt: skip

    with Watch(sample) as seen:
        proxy.mode = "down"
        until(
            "the MoE plan's traffic rows to turn Unknown",
            lambda: rows(k8s, namespace, "moe")["sustainedLoad"]["verdict"] == "Unknown",
        )
        held = time.monotonic()
        scale(2)  # another plan's reconcile during the outage
        until("the other plan to scale to 2", lambda: scaled(2), 180)
        while time.monotonic() - held < 15:
            time.sleep(0.5)
        down_samples = len(seen.seen)
        proxy.mode = "slow"
        held = time.monotonic()
        scale(1)
        until("the other plan to scale back to 1", lambda: scaled(1), 180)
        while time.monotonic() - held < 32:
            time.sleep(0.5)
        assert rows(k8s, namespace, "moe")["sustainedLoad"]["verdict"] == "Unknown"
        proxy.mode = "up"
        until(
            "the facts to return",
            lambda: rows(k8s, namespace, "moe")["sustainedLoad"]["verdict"] == "Go",
            timeout=120,
        )
    modes = {m for m, _ in seen.seen}
    unknown = sum(1 for _, v in seen.seen if v == "Unknown")
    print(
        f"\nchaos: prometheus down 15s then slow 32s (delay {proxy.delay:.0f}s), "
        f"samples={len(seen.seen)} (down {down_samples}), Unknown samples={unknown}, "
        f"modes seen={sorted(m or '-' for m in modes)}, proxied requests={proxy.requests}"
    )
    assert modes == {"MoE"}, f"the MoE plan left MoE while facts were missing: {modes}"
    assert unknown > 0
    after = {n: r.get("since") for n, r in rows(k8s, namespace, "moe").items() if r["gating"]}
    assert after == before, "a gating row's clock restarted across the outage"
    assert status(k8s, namespace, "moe").get("mode") == "MoE"


# --------------------------------------------------------------------------- (d) LWS controller


def test_the_lws_controller_down_holds_only_lws_plans(
    k8s: Any,
    namespace: str,
    until: Callable[..., None],
    chaos_env: Chaos,
    cluster: Any,
    free_nodes: None,
) -> None:
    if cluster.local is None:
        pytest.fail("this test stops the LWS controller: it needs the local control plane")
    local = cluster.local
    stopped = chaos.stop_component(local, "lws-controller")
    try:
        create(k8s, plan("dep", namespace, mode="Dense", dtype="fp8"))  # fits a node: Deployment
        create(k8s, plan("grp", namespace, mode="Dense"))  # bf16 spans two nodes: LWS
        until("the Deployment plan to serve", lambda: serving(k8s, namespace, "dep", "Dense"), 120)
        until("its endpoints", lambda: ready_endpoints(k8s, namespace, "dep") > 0)
        assert_owned_exactly(k8s, namespace, "dep", "Dense", "Deployment")
        until(
            "the LWS plan to have been reconciled",
            lambda: status(k8s, namespace, "grp").get("phase") is not None,
        )
        held = status(k8s, namespace, "grp")
        assert held.get("phase") != "Serving", held
        assert ready_endpoints(k8s, namespace, "grp") == 0
    finally:
        port = local.ports["lws_health"]

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return bool(r.status == 200)

        stopped.start(healthy)
    until(
        "the LWS plan to recover",
        lambda: settled(k8s, namespace, "grp", "Dense", "LeaderWorkerSet"),
        timeout=180,
    )
    until("its endpoints", lambda: ready_endpoints(k8s, namespace, "grp") > 0)
    assert_owned_exactly(k8s, namespace, "grp", "Dense", "LeaderWorkerSet")
    print(
        f"\nchaos: LWS controller down; the LWS plan waited with {held.get('phase')}: "
        f"{held.get('reason')}: {held.get('message')}"
    )


# --------------------------------------------------------------------------- (f) deleted while down


def test_a_plan_deleted_while_the_operator_is_down_leaves_nothing(
    k8s: Any, namespace: str, until: Callable[..., None], chaos_env: Chaos, free_nodes: None
) -> None:
    op = chaos_env.operator
    create(k8s, plan("doomed", namespace, mode="Dense", dtype="fp8"))
    until("it serves", lambda: serving(k8s, namespace, "doomed", "Dense"), timeout=120)
    op.process.kill()
    try:
        custom(k8s).delete_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, "doomed"
        )
        until_gone = lambda: not plan_objects(k8s, namespace, "doomed")  # noqa: E731
        from e2e.fixtures import wait_for

        wait_for("garbage collection of its children", until_gone, 120)
    finally:
        op.process.start()
    with Watch(lambda: sorted(plan_objects(k8s, namespace, "doomed"))) as seen:
        # A sentinel plan created after the restart: once it serves, the restarted operator has
        # listed every plan and reconciled at least once.
        create(k8s, plan("sentinel", namespace, mode="Dense", dtype="fp8"))
        until("the sentinel to serve", lambda: serving(k8s, namespace, "sentinel", "Dense"), 120)
        until(
            "the sentinel to be reconciled again",
            lambda: bool(ready_endpoints(k8s, namespace, "sentinel")),
        )
    reapplied = [s for s in seen.seen if s]
    print(
        f"\nchaos: deleted while down: samples={len(seen.seen)} with its objects={len(reapplied)}"
    )
    assert seen.seen and not reapplied, f"objects of the deleted plan came back: {reapplied[:3]}"
