"""Run the operator against a cluster the way production does, minus the container.

The operator runs as a local process, but as its own ServiceAccount under the RBAC in
manifests/rbac.yaml (never as an admin): `install` applies the CRD and the RBAC with the admin
kubeconfig, then requests a token for the ServiceAccount and writes a kubeconfig that uses only
that token. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "manifests" / "crd.yaml"
RBAC = ROOT / "manifests" / "rbac.yaml"
NAMESPACE = "breakeven"
SERVICE_ACCOUNT = "breakeven"
# Prompt+generation tokens/s of the e2e and demo traffic: enough to keep an EP16 group of
# DeepSeek-V3 (bf16, two H200 nodes) over half busy at its quietest.
E2E_BASE_RATE = 120_000.0


def _ignore_conflict(call: Any, *args: Any) -> None:
    from kubernetes.client.rest import ApiException

    try:
        call(*args)
    except ApiException as exc:
        if exc.status != 409:
            raise


def install(api_client: Any) -> None:
    """Apply the CRD and the operator's RBAC (admin credentials), and wait for the CRD."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    crd = yaml.safe_load(CRD.read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(crd["metadata"]["name"])
        crd["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = ext.read_custom_resource_definition(crd["metadata"]["name"]).status
        if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            break
        time.sleep(0.3)
    else:
        raise RuntimeError("the ServingPlan CRD never became Established")

    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    _ignore_conflict(core.create_namespace, {"metadata": {"name": NAMESPACE}})
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc is None:
            continue
        kind = doc["kind"]
        if kind == "ServiceAccount":
            _ignore_conflict(core.create_namespaced_service_account, NAMESPACE, doc)
        elif kind == "ClusterRole":
            try:
                rbac.create_cluster_role(doc)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                rbac.replace_cluster_role(doc["metadata"]["name"], doc)
        elif kind == "ClusterRoleBinding":
            _ignore_conflict(rbac.create_cluster_role_binding, doc)


def service_account_kubeconfig(api_client: Any, admin_kubeconfig: Path, path: Path) -> Path:
    """A kubeconfig that authenticates only with a token for the operator's ServiceAccount."""
    from kubernetes import client

    token = (
        client.CoreV1Api(api_client)
        .create_namespaced_service_account_token(
            SERVICE_ACCOUNT, NAMESPACE, {"spec": {"expirationSeconds": 3 * 3600}}
        )
        .status.token
    )
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": SERVICE_ACCOUNT}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class OperatorProcess:
    """`breakeven run` as a child process, stopped (or killed) by PID."""

    def __init__(
        self,
        kubeconfig: Path,
        prometheus_url: str,
        log: Path,
        interval: float = 3.0,
        extra: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.log = log
        self.interval = interval
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "breakeven",
                    "run",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--prometheus-url",
                    self.prometheus_url,
                    "--interval",
                    str(self.interval),
                    "--metrics-port",
                    "0",
                    *self.extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
