"""The test builders, one module for every tier: Nodes, plans, traffic facts, pools, sizings.

Tests state only what matters to them (`node("n0", rdma="rdma/ib")`, `pool(nodes=2)`) and the rest
is a default (keyword overrides, like LWS's test wrappers). Builders build inputs; they never
compute what production code computes (a test that needs a derived value calls the production
function). Case data stays beside its tests (tests/unit/rendering/rendering_cases.py with golden/,
tests/unit/rubric/cases/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breakeven.core import api, capacity, catalog, facts
from breakeven.shell import inputs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

DEEPSEEK = "deepseek-ai/DeepSeek-V3"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
LLAMA_405B = "meta-llama/Llama-3.1-405B-Instruct"


def serving_plan(
    name: str = "chat",
    namespace: str = "serving",
    model: str = DEEPSEEK,
    dense: str | None = None,
    **serving: Any,
) -> api.ServingPlan:
    """A plan whose `spec.serving` takes the keyword arguments (python names); the rendering
    goldens' default name and namespace."""
    spec: dict[str, Any] = {"model": {"name": model}, "serving": serving}
    if dense:
        spec["dense"] = {"name": dense}
    return api.ServingPlan.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def pool(
    gpu: str = "H200",
    product: str = "NVIDIA-H200",
    gpus_per_node: int = 8,
    nodes: int = 4,
    fabric: str = "infiniband",
    rdma_resource: str | None = "rdma/ib",
    cliques: dict[str, int] | None = None,
    rdma_devices: int = 1,
    cpu: float = 0,
    memory_gib: float = 0,
    gke_accelerator: str = "",
    gpu_label: str = "nvidia.com/gpu.product",
) -> facts.Pool:
    """A pool of GPU nodes as facts.Cluster reports it, every field stated."""
    return facts.Pool(
        gpu=gpu,
        product=product,
        known=True,
        gpus_per_node=gpus_per_node,
        gpu_memory_gb=141.0 if gpu == "H200" else 80.0,
        nodes=tuple(f"{gpu.lower()}-{i}" for i in range(nodes)),
        ready_nodes=nodes,
        intra_node_nvlink=gpus_per_node > 1,
        fabrics={fabric: nodes},
        cliques=cliques or {},
        rdma_resource=rdma_resource,
        rdma_devices=rdma_devices if rdma_resource else 0,
        cpu_per_node=cpu,
        memory_per_node=memory_gib * 1024**3,
        gke_accelerator=gke_accelerator,
        gpu_label=gpu_label,
    )


def estimate(
    mode: api.ServingMode,
    gpus: int,
    nodes: int = 1,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    ep: int = 1,
    redundant: int = 0,
    gpu: str = "H200",
) -> capacity.Estimate:
    """A sizing as the capacity model would return it, with the parallelism stated."""
    return capacity.Estimate(
        mode=mode,
        gpu=gpu,
        gpus=gpus,
        nodes=nodes,
        tp=tp,
        pp=pp,
        dp=dp,
        ep=ep,
        redundant_experts=redundant,
    )


def arch(name: str) -> catalog.Architecture:
    """A catalog model by name (it must exist)."""
    found = catalog.get(name)
    assert found is not None, name
    return found


def moe(gpus: int, nodes: int, redundant: int, tp: int = 1, gpu: str = "H200") -> capacity.Estimate:
    return estimate(api.ServingMode.MOE, gpus, nodes, tp=tp, dp=gpus // tp, ep=gpus,
                    redundant=redundant, gpu=gpu)  # fmt: skip


# Nodes, plans read as manifests, traffic facts


def node(
    name: str,
    product: str | None = "NVIDIA-H200",
    gpus: int = 8,
    labels: dict[str, str] | None = None,
    allocatable: dict[str, str] | None = None,
    rdma: str | None = None,
    unschedulable: bool = False,
    ready: bool = True,
) -> dict[str, Any]:
    """A Node as `kubectl get node -o yaml` prints it, with GPU feature discovery labels."""
    all_labels = {"kubernetes.io/hostname": name}
    if product is not None:
        all_labels |= {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus)}
    all_labels |= labels or {}
    resources = {"cpu": "128", "memory": "2Ti"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
    if rdma:
        resources[rdma] = "1"
    resources |= allocatable or {}
    spec = {"unschedulable": True} if unschedulable else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def nodes(count: int, prefix: str = "gpu", **kwargs: Any) -> list[dict[str, Any]]:
    """`count` nodes named <prefix>-0.., each as `node` builds it."""
    return [node(f"{prefix}-{i}", **kwargs) for i in range(count)]


def plan(model: str = DEEPSEEK, name: str = "p", **spec: Any) -> api.ServingPlan:
    """A ServingPlan read as a manifest is (inputs.parse_plan); `spec` takes camelCase keys."""
    return inputs.parse_plan(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": name, "namespace": "models"},
            "spec": {"model": {"name": model}, **spec},
        }
    )


def traffic(
    p10: float | None = 40_000,
    p50: float | None = 48_000,
    p95: float | None = 56_000,
    expert: float | None = 1.3,
    prompt: tuple[float, float] | None = (1000, 2500),
) -> facts.Traffic:
    """Traffic facts as Prometheus would give them; None leaves a figure out."""
    data: dict[str, Any] = {
        "tokensPerSecond": {"p10": p10, "p50": p50, "p95": p95},
        "outputTokens": {"p50": 400, "p90": 900},
    }
    if prompt is not None:
        data["promptTokens"] = {"p50": prompt[0], "p90": prompt[1]}
    if expert is not None:
        data["expertLoadMaxOverMean"] = expert
    return facts.Traffic.model_validate(data)


def example_nodes(name: str) -> list[dict[str, Any]]:
    """The Node objects of examples/nodes/<name>.yaml."""
    return inputs.load_nodes(EXAMPLES / "nodes" / f"{name}.yaml")[0]
