"""The golden-case matrix for the rendering tests (its builders are tests/builders.py).

Each case is the input of one `rendering.render` call (plan, mode, sizing, pool, architecture);
its expected output lives in golden/<case>.yaml as the workload objects followed by the Service.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from builders import (
    DEEPSEEK,
    LLAMA_8B,
    LLAMA_70B,
    LLAMA_405B,
    arch,
    estimate,
    moe,
    pool,
    serving_plan,
)

from breakeven.core import api, capacity, catalog, facts, rendering

GOLDEN = Path(__file__).resolve().parent / "golden"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
UPDATE_ENV = "BREAKEVEN_UPDATE_GOLDEN"


@dataclass(frozen=True)
class Case:
    plan: api.ServingPlan
    mode: api.ServingMode
    estimate: capacity.Estimate
    pool: facts.Pool
    arch: catalog.Architecture
    note: str = ""  # the upstream guide and file the golden was reviewed against

    def render(self) -> list[dict[str, Any]]:
        objects = rendering.render(self.plan, self.mode, self.estimate, self.pool, self.arch)
        return [*objects, rendering.service(self.plan, self.mode)]


DENSE = api.ServingMode.DENSE
MOE = api.ServingMode.MOE


def _dense_1gpu() -> Case:
    return Case(
        serving_plan(name="llama-8b", model=LLAMA_8B, image="vllm/vllm-openai:v0.12.0",
             hf_token_secret={"name": "hf-token"}),
        DENSE, estimate(DENSE, 1, gpu="H100"),
        pool("H100", "NVIDIA-H100-80GB-HBM3", fabric="ethernet", rdma_resource=None),
        arch(LLAMA_8B),
    )  # fmt: skip


def _dense_tp8() -> Case:
    return Case(
        serving_plan(name="llama-70b", model=LLAMA_70B, image="vllm/vllm-openai:v0.12.0",
             model_cache_pvc="hf-cache", max_model_len=32768, replicas=2,
             hf_token_secret={"name": "hf-token", "key": "HF_TOKEN"}),
        DENSE, estimate(DENSE, 8, tp=8, gpu="H100"),
        pool("H100", "NVIDIA-H100-80GB-HBM3", fabric="ethernet", rdma_resource=None),
        arch(LLAMA_70B),
    )  # fmt: skip


def _dense_tp8_pp2() -> Case:
    return Case(
        serving_plan(name="llama-405b", model=LLAMA_405B, image="vllm/vllm-openai:v0.12.0",
             model_cache_pvc="hf-cache-rwx"),
        DENSE, estimate(DENSE, 16, nodes=2, tp=8, pp=2, gpu="H100"),
        pool("H100", "NVIDIA-H100-80GB-HBM3"),
        arch(LLAMA_405B),
    )  # fmt: skip


def _moe_single_node(version: str = "v0.12.0") -> Case:
    return Case(
        serving_plan(image=f"vllm/vllm-openai:{version}", model_cache_pvc="hf-cache"),
        MOE, moe(8, 1, redundant=8), pool(), arch(DEEPSEEK),
    )  # fmt: skip


def _moe_two_node(version: str = "v0.12.0") -> Case:
    return Case(
        serving_plan(image=f"vllm/vllm-openai:{version}", model_cache_pvc="hf-cache-rwx",
             hf_token_secret={"name": "hf-token"}, priority_class_name="inference-high",
             tolerations=[{"key": "dedicated", "operator": "Equal", "value": "inference",
                           "effect": "NoSchedule"}],
             node_selector={"example.com/reserved-for": "inference"}),
        MOE, moe(16, 2, redundant=32), pool(), arch(DEEPSEEK),
    )  # fmt: skip


def _moe_pd() -> Case:
    return Case(
        serving_plan(image=LLMD_IMAGE, vllm_version="0.12.0", model_cache_pvc="hf-cache-rwx",
             disaggregation={"enabled": True, "prefill_replicas": 2}, replicas=1),
        MOE, moe(16, 2, redundant=32), pool(), arch(DEEPSEEK),
    )  # fmt: skip


def _moe_gb200_clique() -> Case:
    cliques = {"cluster-a.0": 72, "cluster-a.1": 72}
    return Case(
        serving_plan(image="vllm/vllm-openai:v0.13.0", model_cache_pvc="hf-cache-rwx"),
        MOE, moe(32, 8, redundant=32),
        pool("GB200", "NVIDIA-GB200", gpus_per_node=4, nodes=36, fabric="roce",
             rdma_resource="rdma/rdma_shared_device_a", cliques=cliques),
        arch(DEEPSEEK),
    )  # fmt: skip


LLMD_IMAGE = "ghcr.io/llm-d/llm-d-cuda:v0.4.0"  # ships DeepEP (vllm_flags.yaml deepep_images)


def _gke_a3_ultra() -> Case:
    # a3-ultragpu-8g: 8 H200, 8 RDMA NICs (RoCE); allocatable as a node of that type reports.
    return Case(
        serving_plan(image=LLMD_IMAGE, vllm_version="0.13.0", model_cache_pvc="hf-cache-rwx"),
        MOE, moe(16, 2, redundant=32),
        pool("H200", "nvidia-h200-141gb", fabric="roce", rdma_resource=None, cpu=220,
             memory_gib=2800, gke_accelerator="nvidia-h200-141gb",
             gpu_label="cloud.google.com/gke-accelerator"),
        arch(DEEPSEEK),
        note="Reviewed against llm-d/llm-d guides/wide-ep-lws/manifests/modelserver/gke/"
        "kustomization.yaml (multi-network annotations for eth2-eth9 on rdma-0..7, gIB hostPath "
        "and BASH_ENV, NVSHMEM_DISABLED_GDRCOPY, privileged) and base/decode.yaml (DeepEP env).",
    )  # fmt: skip


def _gke_a4x() -> Case:
    # a4x-highgpu-4g: 4 GB200 per node, 4 RDMA NICs, NVL72 cliques.
    cliques = {"block-a.0": 72}
    return Case(
        serving_plan(image="vllm/vllm-openai:v0.33.0", model_cache_pvc="hf-cache-rwx"),
        MOE, moe(32, 8, redundant=32),
        pool("GB200", "nvidia-gb200", gpus_per_node=4, nodes=18, fabric="roce",
             rdma_resource=None, cliques=cliques, cpu=136, memory_gib=850,
             gke_accelerator="nvidia-gb200", gpu_label="cloud.google.com/gke-accelerator"),
        arch(DEEPSEEK),
        note="Reviewed against llm-d/llm-d guides/wide-ep-lws/manifests/modelserver/gke-a4x/"
        "decode.yaml (annotations for eth2-eth5 on rdma-0..3, gIB) and NVIDIA/k8s-dra-driver-gpu "
        "deployments/helm/nvidia-dra-driver-gpu/crds/resource.nvidia.com_computedomains.yaml "
        "(ComputeDomain and its channel claim). The group fits one NVLink domain: NCCL "
        "all-gather/reduce-scatter over MNNVL, no DeepEP.",
    )  # fmt: skip


def _eks_p5() -> Case:
    # p5.48xlarge: 8 H100, 32 EFA devices, 192 vCPU, 2 TiB.
    return Case(
        serving_plan(image="vllm/vllm-openai:v0.33.0", model_cache_pvc="hf-cache-rwx"),
        MOE, moe(16, 2, redundant=32, gpu="H100"),
        pool("H100", "p5.48xlarge", gpu_label="node.kubernetes.io/instance-type", fabric="efa",
             rdma_resource="vpc.amazonaws.com/efa", rdma_devices=32, cpu=188, memory_gib=1900),
        arch(DEEPSEEK),
        note="Reviewed against llm-d/llm-d guides/pd-disaggregation/modelserver/gpu/vllm/aws/"
        "kustomization.yaml (vpc.amazonaws.com/efa requested per pod: 8 for a TP4 decode pod on "
        "a p5en.48xlarge, its share of the node's devices) and guides/wide-ep-lws/manifests/"
        "modelserver/base/decode.yaml; EFA has no IBGDA, so no DeepEP.",
    )  # fmt: skip


def _gb200_multi_node() -> Case:
    cliques = {"cluster-a.0": 72}
    return Case(
        serving_plan(image="vllm/vllm-openai:v0.33.0", model_cache_pvc="hf-cache-rwx"),
        MOE, moe(16, 4, redundant=32),
        pool("GB200", "NVIDIA-GB200", gpus_per_node=4, nodes=18, fabric="infiniband",
             rdma_resource="rdma/ib", cliques=cliques, cpu=140, memory_gib=850),
        arch(DEEPSEEK),
        note="Reviewed against NVIDIA/k8s-dra-driver-gpu deployments/helm/nvidia-dra-driver-gpu/"
        "crds/resource.nvidia.com_computedomains.yaml (ComputeDomain v1beta1, driver >= 25.3.0) "
        "and llm-d/llm-d guides/wide-ep-lws/manifests/modelserver/base/decode.yaml.",
    )  # fmt: skip


PLATFORM_CASES = ("gke-a3-ultra", "gke-a4x", "eks-p5", "gb200-multi-node")
CASES: dict[str, Callable[[], Case]] = {
    "gke-a3-ultra": _gke_a3_ultra,
    "gke-a4x": _gke_a4x,
    "eks-p5": _eks_p5,
    "gb200-multi-node": _gb200_multi_node,
    "dense-1gpu": _dense_1gpu,
    "dense-tp8": _dense_tp8,
    "dense-tp8-pp2": _dense_tp8_pp2,
    "moe-single-node": _moe_single_node,
    "moe-two-node-lws": _moe_two_node,
    "moe-pd": _moe_pd,
    "moe-gb200-clique": _moe_gb200_clique,
}
for _v in (
    "v0.10.0",
    "v0.10.1",
    "v0.10.1.1",
    "v0.10.2",
    "v0.11.0",
    "v0.11.1",
    "v0.11.2",
    "v0.13.0",
    "v0.16.0",
    "v0.19.0",
    "v0.33.0",
):
    CASES[f"moe-two-node-lws-{_v}"] = functools.partial(_moe_two_node, _v)
CASES["moe-single-node-v0.10.0"] = functools.partial(_moe_single_node, "v0.10.0")


def golden_path(name: str) -> Path:
    return GOLDEN / f"{name}.yaml"


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: list[dict[str, Any]], note: str = "") -> str:
    header = "".join(f"# {line}\n" for line in textwrap.wrap(note, 98)) if note else ""
    return header + yaml.dump_all(objects, Dumper=_NoAliasDumper, sort_keys=False, width=100)


def load_golden(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(golden_path(name).read_text()) if d is not None]


def load_workloads(name: str) -> list[dict[str, Any]]:
    """The Deployments and LeaderWorkerSets of a golden file, in order (no ConfigMap, Service)."""
    return [d for d in load_golden(name) if d["kind"] in ("Deployment", "LeaderWorkerSet")]


def all_golden() -> list[tuple[str, dict[str, Any]]]:
    """(file stem, object) for every object of every golden file."""
    return [
        (path.stem, doc)
        for path in sorted(GOLDEN.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]]
    if obj["kind"] == "LeaderWorkerSet":
        lwt = obj["spec"]["leaderWorkerTemplate"]
        return [t for t in (lwt.get("leaderTemplate"), lwt["workerTemplate"]) if t]
    return []


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for t in pod_templates(obj) for c in t["spec"]["containers"]]


def vllm_args(container: dict[str, Any]) -> list[str]:
    """What `vllm serve` receives: exec args, or the "$@" of the start-rank script."""
    return list(container["args"])
