"""Run the operator against a cluster the way production does, minus the container (or with it).

The operator runs as a local process, but as its own ServiceAccount under the RBAC in
manifests/rbac.yaml (never as an admin): `install` applies the CRD and the RBAC with the admin
kubeconfig, then requests a token for the ServiceAccount and writes a kubeconfig that uses only
that token. Every process started here is stopped by its PID.

With BREAKEVEN_OPERATOR_FROM_IMAGE=1 in the environment, `OperatorProcess` runs the operator from
its image instead: BREAKEVEN_OPERATOR_IMAGE when set (used as it is), else localhost/breakeven:e2e
built from this working tree by e2e/image.py once per session (layers cached). The container gets
exactly what a pod gets: the ServiceAccount token, `ca.crt` and `namespace` mounted at
/var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST/PORT, no kubeconfig, so
kopf's in-cluster login is what runs. kwok nodes run no containers, so it runs on the host
network, read-only, under the image's UID 65532; it is stopped and removed by its name.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "manifests" / "crd.yaml"
RBAC = ROOT / "manifests" / "rbac.yaml"
PEERING = ROOT / "manifests" / "peering.yaml"
NAMESPACE = "breakeven"
SERVICE_ACCOUNT = "breakeven"
FROM_IMAGE = "BREAKEVEN_OPERATOR_FROM_IMAGE"
IMAGE = "BREAKEVEN_OPERATOR_IMAGE"
DEFAULT_IMAGE = "localhost/breakeven:e2e"
_BUILT: set[str] = set()  # images built from this tree in this session
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
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


def from_image() -> bool:
    """Whether the harness runs the operator from its image (BREAKEVEN_OPERATOR_FROM_IMAGE)."""
    return os.environ.get(FROM_IMAGE, "").lower() in ("1", "true", "yes")


def pod_credentials(kubeconfig: Path, into: Path) -> tuple[Path, str, int]:
    """What the kubelet mounts into a pod, from a ServiceAccount kubeconfig (token, ca.crt,
    namespace), and the API server's host and port for KUBERNETES_SERVICE_HOST/PORT."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    into.mkdir(parents=True, exist_ok=True)
    (into / "token").write_text(token)
    (into / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (into / "namespace").write_text(NAMESPACE)
    into.chmod(0o755)
    for f in into.iterdir():
        f.chmod(0o644)  # readable by UID 65532, as the kubelet's projected volume is
    server = urlsplit(cluster["server"])
    if server.hostname is None or server.port is None:
        raise ValueError(f"{kubeconfig}: server {cluster['server']!r} has no host and port")
    return into, server.hostname, server.port


class OperatorProcess:
    """`breakeven run` as a child process, stopped (or killed) by PID; from the image when
    BREAKEVEN_OPERATOR_FROM_IMAGE is set (the engine's `run` in the foreground is the child, the
    container is stopped or killed by name)."""

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
        self.container: str | None = None

    def _args(self) -> list[str]:
        return [
            "run",
            "--prometheus-url",
            self.prometheus_url,
            "--interval",
            str(self.interval),
            "--metrics-port",
            "0",
            *self.extra,
        ]

    def start(self) -> OperatorProcess:
        if from_image():
            return self._start_container()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "breakeven",
                    *self._args(),
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def _start_container(self) -> OperatorProcess:
        from e2e import image

        tag = os.environ.get(IMAGE, "")
        if not tag:
            tag = DEFAULT_IMAGE
            if tag not in _BUILT:
                image.build(tag)  # raises with the engine's output on failure
                _BUILT.add(tag)
        tool = image.engine()
        creds, host, port = pod_credentials(
            self.kubeconfig, self.log.parent / f"{self.log.stem}.serviceaccount"
        )
        self.container = f"breakeven-e2e-{uuid.uuid4().hex[:8]}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [tool, "run", "--rm", "--name", self.container, "--read-only", "--network=host",
                 "--volume", f"{creds}:{SA_DIR}:ro",
                 "--env", f"KUBERNETES_SERVICE_HOST={host}",
                 "--env", f"KUBERNETES_SERVICE_PORT={port}",
                 "--env", "PYTHONUNBUFFERED=1",
                 "--env", f"POD_ID={self.container}",  # kopf's peer identity, as in a pod
                 tag, *self._args()],
                stdout=out, stderr=subprocess.STDOUT, env=image.engine_env(),
                start_new_session=True,
            )  # fmt: skip
        return self

    def _signal_container(self, how: str) -> None:
        """`kill` (SIGKILL) or `stop` (SIGTERM, then SIGKILL after 20 s) the container by name."""
        from e2e import image

        if self.container is None:
            return
        argv = [image.engine(), how]
        argv += ["--signal", "KILL"] if how == "kill" else ["--time", "20"]
        image.run([*argv, self.container])
        if self.proc is not None:
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        image.run([image.engine(), "rm", "--force", "--ignore", self.container])
        self.container = None
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (a crash)."""
        if self.container is not None:
            self._signal_container("kill")
            return
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.container is not None:
            self._signal_container("stop")
            return
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


def install_peering(api_client: Any, namespace: str | None, name: str = "breakeven") -> None:
    """kopf's peering CRDs (manifests/peering.yaml; created when missing, left in place) and the
    peering object `breakeven run --peering NAME` needs: the ClusterKopfPeering `name` for a
    cluster-wide operator (`namespace` None), else the KopfPeering `name` in `namespace`."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    for crd in yaml.safe_load_all(PEERING.read_text()):
        if crd:
            _ignore_conflict(ext.create_custom_resource_definition, crd)
    custom = client.CustomObjectsApi(api_client)
    kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
    body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
    deadline = time.monotonic() + 60
    while True:
        try:
            if namespace is None:
                custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
            else:
                custom.create_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", body
                )
            return
        except client.ApiException as exc:
            if exc.status == 409:
                return
            if exc.status != 404 or time.monotonic() > deadline:  # 404: the CRD not served yet
                raise
        time.sleep(0.3)


def remove_cluster_peering(api_client: Any, name: str) -> None:
    from kubernetes import client

    try:
        client.CustomObjectsApi(api_client).delete_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", name
        )
    except client.ApiException as exc:
        if exc.status != 404:
            raise
