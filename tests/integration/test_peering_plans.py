"""Two operator replicas with kopf peering on the real control plane: only one reconciles plans,
and when it is killed (SIGKILL, no clean exit) the standby takes over and reconciles a new plan.

Both replicas are cluster-wide `breakeven run --peering NAME` processes (e2e/running.py), as the
generated Deployment runs them, under the operator's generated ServiceAccount and RBAC, with a
ClusterKopfPeering of their own (removed afterwards); they are stopped by PID. Which replica acted
on a plan is read from each replica's own /metrics (`breakeven_plan_mode{plan=...}` is set by the
replica that evaluated the plan) and from its log (kopf's `Handler ... succeeded` lines; a paused
replica runs no handler). A killed replica's keep-alive lapses after kopf's peering lifetime
(60 s); then the standby resumes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from breakeven.core import api as plan_api
from e2e import running
from e2e.fixtures import ClusterHandle, wait_for

pytestmark = pytest.mark.integration

RESUMED = "Resuming operations after the pause"


def _plan(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": plan_api.API_VERSION,
        "kind": plan_api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "mistralai/Mixtral-8x7B-Instruct-v0.1"},
            "mode": "Dense",
            "serving": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"}},
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _planned(port: int, plan: str) -> bool:
    """Whether the replica serving /metrics on `port` has evaluated `plan`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return any(
        line.startswith("breakeven_plan_mode{") and f'{plan}"' in line for line in text.splitlines()
    )


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _peers(custom: Any, name: str) -> dict[str, Any]:
    obj = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    return {k: v for k, v in (obj.get("status") or {}).items() if v}


def test_one_replica_reconciles_and_the_standby_takes_over_when_it_is_killed(
    cluster: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    peering = f"peer-{namespace}"
    with cluster.api_client() as k8s:
        running.install(k8s)
        running.install_peering(k8s, None, peering)
        kubeconfig = running.service_account_kubeconfig(
            k8s, cluster.kubeconfig, tmp_path / "operator.kubeconfig"
        )
    logs = {"first": tmp_path / "first.log", "second": tmp_path / "second.log"}
    ports = {"first": _free_port(), "second": _free_port()}
    first, second = (
        running.OperatorProcess(
            kubeconfig, "http://127.0.0.1:9", logs[which], interval=2,
            extra=["--peering", peering, "--metrics-address", "127.0.0.1",
                   "--metrics-port", str(ports[which])],
        )
        for which in ("first", "second")
    )  # fmt: skip
    with cluster.api_client() as k8s:
        custom = client.CustomObjectsApi(k8s)
        args = (plan_api.GROUP, plan_api.VERSION, namespace, plan_api.PLURAL)

        def serving(name: str) -> bool:
            obj = custom.get_namespaced_custom_object(*args, name)
            return (obj.get("status") or {}).get("phase") == "Serving"

        def tails() -> str:
            return f"--- first ---\n{first.tail()}\n--- second ---\n{second.tail()}"

        def until(what: str, check: Callable[[], bool], timeout: float) -> None:
            try:
                wait_for(what, check, timeout)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{tails()}") from None

        try:
            first.start()
            until("the first replica to act", lambda: RESUMED in _text(logs["first"]), 90)
            second.start()
            until("both replicas in the peering", lambda: len(_peers(custom, peering)) == 2, 90)
            # A replica with mandatory peering starts paused and logs only when it resumes.
            priorities = sorted(p["priority"] for p in _peers(custom, peering).values())
            assert priorities[0] < priorities[1], priorities  # equal priorities pause both

            custom.create_namespaced_custom_object(*args, _plan(namespace, "before"))
            until("plan `before` to be Serving", lambda: serving("before"), 120)
            until("the first replica's metrics to show `before`",
                  lambda: _planned(ports["first"], "before"), 30)  # fmt: skip
            assert not _planned(ports["second"], "before"), tails()  # the standby did not act
            assert "Handler '" not in _text(logs["second"]), tails()
            assert RESUMED not in _text(logs["second"]), tails()
            assert second.alive(), tails()

            first.kill()  # SIGKILL: its keep-alive stays in the peering object until it lapses
            until("the standby to take over", lambda: RESUMED in _text(logs["second"]), 150)
            custom.create_namespaced_custom_object(*args, _plan(namespace, "after"))
            until("plan `after` to be Serving", lambda: serving("after"), 120)
            until("the second replica's metrics to show `after`",
                  lambda: _planned(ports["second"], "after"), 30)  # fmt: skip
            assert "Handler 'plan_event' succeeded" in _text(logs["second"]), tails()
            assert serving("before")
            assert second.alive(), tails()
        finally:
            first.stop()
            second.stop()
            running.remove_cluster_peering(k8s, peering)
