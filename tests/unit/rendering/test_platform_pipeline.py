"""From node lists labelled as each platform labels them to rendered manifests, through the whole
pipeline (`breakeven plan --render`: facts, rubric, capacity model, renderer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.cli import main as cli

ROOT = Path(__file__).resolve().parents[3]
PLAN = ROOT / "examples" / "plans" / "kimi-k2-multi-node.yaml"
TRAFFIC = ROOT / "examples" / "traffic" / "sustained.yaml"


def _render(nodes: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    path = ROOT / "examples" / "nodes" / f"{nodes}.yaml"
    argv = ["plan", str(PLAN), "--nodes", str(path), "--traffic", str(TRAFFIC), "--render"]
    assert cli.main(argv) == 0
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (lws,) = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    template: dict[str, Any] = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    return template


def test_gke_a3_ultra_gets_its_rdma_nics_by_annotation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pod = _pod(_render("gke-a3-ultra", capsys))
    nics = json.loads(pod["metadata"]["annotations"]["networking.gke.io/interfaces"])
    assert nics[0] == {"interfaceName": "eth0", "network": "default"}
    assert [n["network"] for n in nics[1:]] == [f"rdma-{i}" for i in range(8)]
    assert pod["metadata"]["annotations"]["networking.gke.io/default-interface"] == "eth0"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BASH_ENV"] == "/usr/local/gib/scripts/set_nccl_env.sh"
    assert container["command"][0] == "/bin/bash"
    # GKE has no RDMA extended resource: only GPUs are limited.
    assert set(container["resources"]["limits"]) == {"nvidia.com/gpu"}
    # requests from the allocatable: 220 CPU, 2800Gi per node, 8 of 8 GPUs, x 0.85
    assert container["resources"]["requests"]["cpu"] == "187"
    assert container["resources"]["requests"]["memory"] == "2380Gi"


def test_eks_p5_requests_its_share_of_the_efa_devices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (container,) = _pod(_render("eks-p5", capsys))["spec"]["containers"]
    assert container["resources"]["limits"]["vpc.amazonaws.com/efa"] == "32"
    assert container["resources"]["requests"]["vpc.amazonaws.com/efa"] == "32"
    args = container["args"]
    assert args[args.index("--all2all-backend") + 1] == "allgather_reducescatter"


def test_gke_a4x_group_in_one_nvlink_domain_claims_an_imex_channel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    objects = _render("gke-a4x", capsys)
    (domain,) = [o for o in objects if o["kind"] == "ComputeDomain"]
    pod = _pod(objects)
    template = domain["spec"]["channel"]["resourceClaimTemplate"]["name"]
    assert pod["spec"]["resourceClaims"] == [
        {"name": "imex-channel", "resourceClaimTemplateName": template}
    ]
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["claims"] == [{"name": "imex-channel"}]
    nics = json.loads(pod["metadata"]["annotations"]["networking.gke.io/interfaces"])
    assert len(nics) == 1 + 4  # A4X: 4 RDMA NICs, one per GPU
