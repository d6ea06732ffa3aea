"""The operator image (Containerfile), built offline by e2e/image.py and run with podman.

It runs as UID 65532 with a read-only root filesystem and no network, `breakeven` is its
entrypoint, and `breakeven plan` decides an example plan inside it exactly as on the host.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from e2e import image
from e2e.fixtures import ClusterHandle, wait_for
from e2e.tools import CHART, helm, tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/breakeven:test"


@pytest.fixture(scope="module")
def built() -> str:
    image.build(TAG)  # raises with the engine's output on failure
    return TAG


def run_in_image(tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    return image.run(
        [image.engine(), "run", "--rm", "--read-only", "--network=none",
         "--volume", f"{ROOT / 'examples'}:/examples:ro", tag, *args],
    )  # fmt: skip


def test_image_config(built: str) -> None:
    out = image.run([image.engine(), "image", "inspect", built])
    assert out.returncode == 0, out.stderr
    (config,) = json.loads(out.stdout)
    assert config["Config"]["User"] == "65532:65532"
    assert config["Config"]["Entrypoint"] == ["/opt/breakeven/bin/breakeven"]
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "breakeven"
    assert labels["org.opencontainers.image.version"] == "0.1.0"


def test_help_runs_read_only_as_non_root(built: str) -> None:
    out = run_in_image(built, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: breakeven" in out.stdout
    uid = image.run(
        [image.engine(), "run", "--rm", "--read-only", "--network=none",
         "--entrypoint", "/opt/breakeven/bin/python", built, "-c", "import os; print(os.getuid())"],
    )  # fmt: skip
    assert uid.stdout.strip() == "65532", uid.stderr


def test_plan_in_the_image_matches_the_host(built: str) -> None:
    plan = "examples/plans/deepseek-v3-sustained.yaml"
    nodes = "examples/nodes/h200-infiniband.yaml"
    inside = run_in_image(built, "plan", f"/{plan}", "--nodes", f"/{nodes}", "-o", "json")
    assert inside.returncode == 0, inside.stderr
    host = subprocess.run(
        [str(Path(sys.executable).parent / "breakeven"), "plan", plan, "--nodes", nodes,
         "-o", "json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert host.returncode == 0, host.stderr
    ours, theirs = json.loads(inside.stdout), json.loads(host.stdout)
    assert ours["mode"] in ("Dense", "MoE")
    # Paths differ (/examples/... inside); the decision and its numbers do not.
    for field in ("mode", "rubricMode", "reason", "message", "criteria", "estimates", "traffic"):
        assert ours[field] == theirs[field], field


# ------------------------------------------------- the operator from its image, in the cluster

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _pod_credentials(cluster: ClusterHandle, namespace: str, account: str, into: Path) -> Path:
    """What the kubelet mounts into a pod: a token for the ServiceAccount, ca.crt, namespace."""
    from kubernetes import client

    with cluster.api_client() as api:
        token = (
            client.CoreV1Api(api)
            .create_namespaced_service_account_token(
                account, namespace, {"spec": {"expirationSeconds": 3600}}
            )
            .status.token
        )
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    into.mkdir(parents=True)
    (into / "token").write_text(token)
    (into / "ca.crt").write_bytes(ca)
    (into / "namespace").write_text(namespace)
    for f in into.iterdir():
        f.chmod(0o644)  # readable by UID 65532, as the kubelet's projected volume is
    return into


def test_operator_runs_from_the_image_under_the_chart_service_account(
    built: str, cluster: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    """helm install, then the image runs as a pod would: token, ca.crt and namespace mounted at
    the in-cluster path, KUBERNETES_SERVICE_HOST/PORT set, no kubeconfig; it reconciles a plan."""
    from kubernetes import client

    from breakeven.core import api as plan_api

    release = f"img-{uuid.uuid4().hex[:6]}"
    system = f"{release}-system"
    out = helm(
        "install", release, str(CHART), "--namespace", system, "--create-namespace",
        "--set", f"watchNamespaces={{{namespace}}}", kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    creds = _pod_credentials(cluster, system, release, tmp_path / "sa")
    server = urlsplit(
        yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    )
    started = image.run(
        [image.engine(), "run", "--detach", "--read-only", "--network=host",
         "--volume", f"{creds}:{SA_DIR}:ro",
         "--env", f"KUBERNETES_SERVICE_HOST={server.hostname}",
         "--env", f"KUBERNETES_SERVICE_PORT={server.port}",
         built, "run", "--namespace", namespace, "--peering", release,
         "--prometheus-url", "http://127.0.0.1:9",
         "--interval", "2", "--metrics-port", "0"],
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    plan = {
        "apiVersion": plan_api.API_VERSION,
        "kind": plan_api.KIND,
        "metadata": {"name": "img", "namespace": namespace},
        "spec": {
            "model": {"name": "mistralai/Mixtral-8x7B-Instruct-v0.1"},
            "mode": "Dense",
            "serving": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"}},
        },
    }
    try:
        with cluster.api_client() as k8s:
            custom = client.CustomObjectsApi(k8s)
            created = custom.create_namespaced_custom_object(
                plan_api.GROUP, plan_api.VERSION, namespace, plan_api.PLURAL, plan
            )

            def serving() -> bool:
                obj = custom.get_namespaced_custom_object(
                    plan_api.GROUP, plan_api.VERSION, namespace, plan_api.PLURAL, "img"
                )
                return (obj.get("status") or {}).get("phase") == "Serving"

            try:
                wait_for("the plan to be Serving, reconciled by the image", serving, 120)
            except AssertionError as exc:
                logs = image.run([image.engine(), "logs", "--tail", "60", container_id])
                raise AssertionError(
                    f"{exc}\n--- operator log ---\n{logs.stdout}{logs.stderr}"
                ) from None
            deployment = client.AppsV1Api(k8s).read_namespaced_deployment("img-dense", namespace)
            assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "breakeven"
            # The operator wrote status only: spec, labels, annotations, finalizers as created.
            now = custom.get_namespaced_custom_object(
                plan_api.GROUP, plan_api.VERSION, namespace, plan_api.PLURAL, "img"
            )
            assert now["spec"] == created["spec"]
            for field in ("generation", "labels", "annotations", "finalizers"):
                assert now["metadata"].get(field) == created["metadata"].get(field), field
        waited = subprocess.run(
            [str(tool("kubectl")), "--kubeconfig", str(cluster.kubeconfig), "wait",
             "--for=condition=Ready", "servingplan/img", "-n", namespace, "--timeout=60s"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stdout + waited.stderr
    finally:
        image.run([image.engine(), "stop", "--time", "10", container_id])
        image.run([image.engine(), "rm", "--force", container_id])
        helm("uninstall", release, "--namespace", system, kubeconfig=cluster.kubeconfig)
