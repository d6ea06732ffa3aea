"""Small builders for the unit tests: Node objects, ServingPlans and traffic facts.

Tests state only what matters to them (`node("n0", rdma="rdma/ib")`), the rest is a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breakeven.core import api, facts
from breakeven.shell import inputs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


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
    return [node(f"{prefix}-{i}", **kwargs) for i in range(count)]


def plan(model: str = "deepseek-ai/DeepSeek-V3", name: str = "p", **spec: Any) -> api.ServingPlan:
    """A ServingPlan; `spec` takes camelCase keys as a manifest would."""
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
    return inputs.load_nodes(EXAMPLES / "nodes" / f"{name}.yaml")[0]
