"""The decision path's caches change how long an answer takes, never the answer.

`capacity.size_dense`/`size_moe` are cached by (model, pool shape, dtype, workload, imbalance,
price) and `planning.evaluate` caches both modes' estimates on every pool by the same facts.
These tests pin that a cached answer equals a freshly computed one, that a cache hit never
carries one cluster's pools into another's evaluation, and that every cache is bounded.
"""

from __future__ import annotations

from typing import Any

from builders import arch
from hypothesis import given, settings
from hypothesis import strategies as st

from breakeven.core import api, capacity, catalog, facts, hardware, planning

MODELS = catalog.names()


def _plan(model: str, /, **spec: Any) -> api.ServingPlan:
    """A plan of `model`; `spec` (camelCase keys) adds to or replaces the spec's fields."""
    return api.ServingPlan.model_validate(
        {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"model": {"name": model}, **spec}}
    )


def _node(name: str, product: str, gpus: int = 8, rdma: bool = True) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "nvidia.com/gpu.product": product}
    resources = {"cpu": "128", "memory": "2Ti", "nvidia.com/gpu": str(gpus)}
    if rdma:
        labels["feature.node.kubernetes.io/rdma.available"] = "true"
        resources["rdma/rdma_shared_device_a"] = "1"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": dict(resources),
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _cluster(prefix: str) -> facts.Cluster:
    """Two pools (4 x 8 H200 with RDMA, 2 x 8 L40S) whose node names start with `prefix`."""
    nodes = [_node(f"{prefix}-h200-{i}", "NVIDIA-H200") for i in range(4)]
    nodes += [_node(f"{prefix}-l40s-{i}", "NVIDIA-L40S", rdma=False) for i in range(2)]
    return facts.Cluster.from_nodes(nodes, source=prefix)


def _traffic(isl: float, osl: float, imbalance: float | None = None) -> facts.Traffic:
    return facts.Traffic.model_validate(
        {
            "tokensPerSecond": {"p10": 7000, "p50": 10000, "p95": 13000},
            "promptTokens": {"p50": isl, "p90": isl * 2},
            "outputTokens": {"p50": osl},
            "expertLoadMaxOverMean": imbalance,
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    gpu=st.sampled_from(list(hardware.gpus())),
    nodes=st.integers(1, 16),
    dtype=st.sampled_from(list(api.Dtype)),
    isl=st.integers(1, 32_000),
    osl=st.integers(1, 8_000),
    imbalance=st.none() | st.floats(1, 4),
    cost=st.none() | st.integers(1, 20) | st.floats(0.5, 20),
    itl=st.none() | st.floats(5, 200),
)
def test_a_cached_estimate_equals_a_fresh_one(
    name: str,
    gpu: str,
    nodes: int,
    dtype: api.Dtype,
    isl: int,
    osl: int,
    imbalance: float | None,
    cost: float | None,
    itl: float | None,
) -> None:
    model = arch(name)
    pool = capacity.synthetic_pool(gpu, capacity.NODE_GPUS.get(gpu, 8) * nodes)
    work = capacity.Workload(isl=isl, osl=osl, itl_target_ms=itl)
    first = (
        capacity.size_dense(model, pool, dtype, work, cost),
        capacity.size_moe(model, pool, dtype, work, imbalance, cost),
    )
    again = (
        capacity.size_dense(model, pool, dtype, work, cost),
        capacity.size_moe(model, pool, dtype, work, imbalance, cost),
    )
    capacity.clear_caches()
    fresh = (
        capacity.size_dense(model, pool, dtype, work, cost),
        capacity.size_moe(model, pool, dtype, work, imbalance, cost),
    )
    assert first == again == fresh
    assert [e.model_dump_json() for e in again] == [e.model_dump_json() for e in fresh]


def test_an_integer_price_and_a_float_price_are_cached_apart() -> None:
    model = arch("meta-llama/Llama-3.1-8B-Instruct")
    pool = capacity.synthetic_pool("H100", 8)
    work = capacity.Workload()
    as_int = capacity.size_dense(model, pool, api.Dtype.BF16, work, 3)
    as_float = capacity.size_dense(model, pool, api.Dtype.BF16, work, 3.0)
    capacity.clear_caches()
    assert as_int == capacity.size_dense(model, pool, api.Dtype.BF16, work, 3)
    assert as_float == capacity.size_dense(model, pool, api.Dtype.BF16, work, 3.0)


def test_pools_of_one_shape_share_estimates_but_keep_their_own_nodes() -> None:
    """Two clusters with the same pool shapes and different node names: the second evaluation
    reuses the first's estimates, and each decision still names its own cluster's pools."""
    planning.clear_caches()
    plan = _plan("deepseek-ai/DeepSeek-V3", mode="Auto")
    traffic = _traffic(900, 300, 1.4)
    left, right = _cluster("left"), _cluster("right")
    a = planning.evaluate(plan, left, traffic)
    b = planning.evaluate(plan, right, traffic)
    for mine, theirs, cluster in ((a, b, left), (b, a, right)):
        for mode in api.ServingMode:
            candidate = mine.candidate(mode)
            assert candidate is not None
            assert candidate.pool in cluster.pools
            other = theirs.candidate(mode)
            assert other is not None
            assert candidate.pool.nodes != other.pool.nodes
            assert candidate.estimate is other.estimate  # one computation, shared
    assert planning.cache_info()["sized"].hits >= 1


# Variants that differ in one fact each: a cache key missing any of them would hand one
# variant another's answer in the warm pass below.
VARIANTS: list[tuple[str, dict[str, Any], facts.Traffic]] = [
    ("deepseek-ai/DeepSeek-V3", {"mode": "Auto"}, _traffic(900, 300, 1.4)),
    ("deepseek-ai/DeepSeek-V3", {"mode": "Auto"}, _traffic(900, 300, 2.5)),
    ("deepseek-ai/DeepSeek-V3", {"mode": "Auto"}, _traffic(900, 300)),
    ("deepseek-ai/DeepSeek-V3", {"mode": "Auto"}, _traffic(901, 300, 1.4)),
    ("deepseek-ai/DeepSeek-V3", {"mode": "Auto"}, _traffic(900, 301, 1.4)),
    ("deepseek-ai/DeepSeek-V3", {"mode": "MoE"}, _traffic(4000, 1000)),
    (
        "deepseek-ai/DeepSeek-V3",
        {"model": {"name": "deepseek-ai/DeepSeek-V3", "dtype": "fp4"}},
        _traffic(4000, 1000),
    ),
    (
        "deepseek-ai/DeepSeek-V3",
        {"dense": {"name": "meta-llama/Llama-3.3-70B-Instruct", "dtype": "fp8"}},
        _traffic(1000, 1000, 2.0),
    ),
    (
        "deepseek-ai/DeepSeek-V3",
        {"dense": {"name": "meta-llama/Llama-3.3-70B-Instruct"}},
        _traffic(1000, 1000, 2.0),
    ),
    ("Qwen/Qwen3-235B-A22B", {"serving": {"itlTargetMs": 30}}, _traffic(500, 200)),
    ("Qwen/Qwen3-235B-A22B", {"serving": {"itlTargetMs": 60}}, _traffic(500, 200)),
    ("Qwen/Qwen3-235B-A22B", {"serving": {"maxModelLen": 65536}}, _traffic(500, 200)),
    ("meta-llama/Llama-3.1-8B-Instruct", {"operations": {"gpuHourlyCost": 2.5}}, facts.Traffic()),
    ("meta-llama/Llama-3.1-8B-Instruct", {"operations": {"gpuHourlyCost": 4}}, facts.Traffic()),
    ("meta-llama/Llama-3.1-8B-Instruct", {}, facts.Traffic()),
]


def test_evaluate_is_the_same_with_and_without_caches() -> None:
    cluster = _cluster("c")
    plans = [(_plan(model, **spec), traffic) for model, spec, traffic in VARIANTS]
    planning.clear_caches()
    warm = [planning.evaluate(plan, cluster, traffic) for plan, traffic in plans * 2]
    assert planning.cache_info()["sized"].hits >= len(plans)
    for i, (plan, traffic) in enumerate(plans):
        planning.clear_caches()
        fresh = planning.evaluate(plan, cluster, traffic)
        for cached in (warm[i], warm[i + len(plans)]):
            assert cached == fresh, VARIANTS[i]
            assert cached.model_dump_json() == fresh.model_dump_json(), VARIANTS[i]


def test_every_cache_on_the_decision_path_is_bounded() -> None:
    info = planning.cache_info()
    assert {"sized", "workload", "size_dense", "size_moe"} <= set(info)
    for name, figures in info.items():
        assert figures.maxsize is not None, name
        assert figures.currsize <= figures.maxsize, name
