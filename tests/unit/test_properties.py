"""Monotonicity of the decision, on the real path (facts -> capacity -> rubric).

- Adding RDMA to every node never turns MoE into Dense.
- Less traffic (every tokens/s percentile scaled down) never turns Dense into MoE.
"""

from __future__ import annotations

import copy
from typing import Any

from builders import node, plan
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from breakeven.core import api, facts, planning

MODELS = [
    "deepseek-ai/DeepSeek-V3",
    "moonshotai/Kimi-K2-Instruct",
    "Qwen/Qwen3-235B-A22B",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "openai/gpt-oss-120b",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "Qwen/Qwen3-30B-A3B",
    "meta-llama/Llama-3.1-70B-Instruct",
]
PRODUCTS = [
    "NVIDIA-H200",
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-B200",
    "NVIDIA-GB200",
    "NVIDIA-L40S",
    "NVIDIA-H100-PCIe",
]
FABRIC_SIGNALS: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {}),  # plain Ethernet
    ({"feature.node.kubernetes.io/rdma.available": "true"}, {}),
    ({"feature.node.kubernetes.io/custom-rdma.available": "true"}, {}),
    ({}, {"rdma/rdma_shared_device_a": "1k"}),
    ({}, {"vpc.amazonaws.com/efa": "32"}),
    ({"backend.coreweave.cloud/flavor": "infiniband"}, {"rdma/ib": "1"}),
]


@st.composite
def clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-3 groups of nodes, each with a fabric signal; now and then a node differs (mixed pool)."""
    items = []
    for g in range(draw(st.integers(1, 3))):
        product = draw(st.sampled_from(PRODUCTS + PRODUCTS[:3]))  # NVLink parts more often
        gpus = 4 if product == "NVIDIA-GB200" else draw(st.sampled_from([4, 8]))
        clique = draw(st.sampled_from([None, f"rack.{g}"])) if product == "NVIDIA-GB200" else None
        fabric = draw(st.sampled_from(FABRIC_SIGNALS))
        for i in range(draw(st.integers(1, 4))):
            odd_one = draw(st.sampled_from([False] * 5 + [True]))  # now and then a mixed pool
            labels, allocatable = draw(st.sampled_from(FABRIC_SIGNALS)) if odd_one else fabric
            labels = dict(labels)
            if clique:
                labels["nvidia.com/gpu.clique"] = clique
            items.append(
                node(
                    f"g{g}-{i}", product=product, gpus=gpus, labels=labels, allocatable=allocatable
                )
            )
    return items


def nominal(prompt: int, output: int, expert: float | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tokensPerSecond": {"p10": 1.0, "p50": 1.0, "p95": 1.0},
        "promptTokens": {"p50": prompt, "p90": prompt * 2},
        "outputTokens": {"p50": output},
    }
    if expert is not None:
        data["expertLoadMaxOverMean"] = expert
    return data


def traffic_near_the_floor(
    data: st.DataObject, p: api.ServingPlan, items: list[dict[str, Any]]
) -> facts.Traffic:
    """Traffic whose p10 lies near the sustainedLoad floor of this plan on this cluster, so that
    both modes come up (`pytest --hypothesis-show-statistics` shows the split)."""
    given = nominal(
        data.draw(st.integers(100, 8000)),
        data.draw(st.integers(50, 2000)),
        data.draw(st.sampled_from([None, 1.3, 1.3, 1.3, 2.0, 2.3])),
    )
    probe = planning.evaluate(p, facts.Cluster.from_nodes(items), facts.Traffic(**given))
    moe = probe.decision.moe
    capacity = moe.estimate.total_tokens_per_second if moe else 10_000.0
    p10 = capacity * data.draw(st.floats(min_value=0.2, max_value=2.0))
    p50 = p10 / data.draw(st.floats(min_value=0.5, max_value=1))
    p95 = p50 * data.draw(st.floats(min_value=1, max_value=2.4))
    given["tokensPerSecond"] = {"p10": p10, "p50": p50, "p95": p95}
    return facts.Traffic.model_validate(given)


@st.composite
def plans(draw: st.DrawFn) -> api.ServingPlan:
    return plan(
        draw(st.sampled_from(MODELS + MODELS[:3])),
        operations={"platformTeam": draw(st.sampled_from(["Dedicated"] * 4 + ["Shared"]))},
    )


def with_rdma(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(items)
    for item in out:
        item["status"]["allocatable"]["rdma/ib"] = "1"
    return out


def decide(p: api.ServingPlan, items: list[dict[str, Any]], t: facts.Traffic) -> api.ServingMode:
    return planning.evaluate(p, facts.Cluster.from_nodes(items), t).decision.mode


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(p=plans(), items=clusters(), data=st.data())
def test_adding_rdma_to_every_node_never_turns_moe_into_dense(
    p: api.ServingPlan, items: list[dict[str, Any]], data: st.DataObject
) -> None:
    t = traffic_near_the_floor(data, p, items)
    before = decide(p, items, t)
    event(f"before: {before.value}")
    if before == api.ServingMode.MOE:
        assert decide(p, with_rdma(items), t) == api.ServingMode.MOE


@SETTINGS
@given(
    p=plans(),
    items=clusters(),
    data=st.data(),
    factor=st.floats(min_value=0, max_value=1, allow_nan=False),
)
def test_less_traffic_never_turns_dense_into_moe(
    p: api.ServingPlan, items: list[dict[str, Any]], data: st.DataObject, factor: float
) -> None:
    t = traffic_near_the_floor(data, p, items)
    tps = t.tokens_per_second
    scaled = t.model_copy(
        update={
            "tokens_per_second": facts.Percentiles(
                p10=(tps.p10 or 0) * factor,
                p50=(tps.p50 or 0) * factor,
                p95=(tps.p95 or 0) * factor,
            )
        }
    )
    before = decide(p, items, t)
    event(f"before: {before.value}")
    if before == api.ServingMode.DENSE:
        assert decide(p, items, scaled) == api.ServingMode.DENSE


def test_rdma_on_a_second_pool_does_not_raise_the_sustained_load_floor() -> None:
    """Found by hand while writing the property: one H200 node (EP8 fits) next to four H100
    nodes (EP16 needs two). With Ethernet only the H200 group is judged; with RDMA the H100
    group, which is cheaper per token at short outputs, becomes the one judged, and its larger
    capacity lifts the sustainedLoad floor above a p10 that kept the H200 group busy."""
    items = [
        node("h200-0"),
        *(node(f"h100-{i}", product="NVIDIA-H100-80GB-HBM3") for i in range(4)),
    ]
    p = plan(operations={"platformTeam": "Dedicated"})
    t = facts.Traffic.model_validate(
        {
            "tokensPerSecond": {"p10": 20_000, "p50": 22_000, "p95": 26_000},
            "promptTokens": {"p50": 1000, "p90": 2000},
            "outputTokens": {"p50": 200},
            "expertLoadMaxOverMean": 1.3,
        }
    )
    assert decide(p, items, t) == api.ServingMode.MOE
    assert decide(p, with_rdma(items), t) == api.ServingMode.MOE
