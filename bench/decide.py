"""Benchmark: deciding 1,000 ServingPlans against a 1,000-node cluster.

The operator re-evaluates every plan on a timer, and `breakeven plan` runs the same path, so the
whole fleet's decisions must take well under a second. This measures the two steps separately:

    nodes   Node objects -> facts.Cluster (projection, fabric and GPU identification, pools)
    decide  planning.evaluate per plan: catalog, capacity for every pool and mode, rubric

    .venv/bin/python bench/decide.py

Prints the best and median of a few repeats (time.perf_counter); tests never assert on time.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any
from unittest import mock

from breakeven.core import api, catalog, facts, planning, rubric

PLANS = 1000
REPEAT = 5
SEED = 0

# (nodes, product, GPUs per node, extra labels, extra allocatable): 1,000 nodes in all.
NodeGroup = tuple[int, str | None, int, dict[str, str], dict[str, str]]
CLUSTER: list[NodeGroup] = [
    (
        400,
        "NVIDIA-H200",
        8,
        {"feature.node.kubernetes.io/rdma.available": "true"},
        {"rdma/rdma_shared_device_a": "1k"},
    ),
    (
        200,
        "NVIDIA-H100-80GB-HBM3",
        8,
        {"backend.coreweave.cloud/flavor": "infiniband"},
        {"rdma/ib": "1"},
    ),
    (72, "NVIDIA-GB200", 4, {}, {}),  # four NVL72 racks, one clique each (below)
    (200, "NVIDIA-L40S", 8, {}, {}),
    (64, "NVIDIA-B200", 8, {}, {}),  # half of them with EFA: a mixed pool
    (64, None, 0, {}, {}),  # CPU nodes
]


def node(
    name: str, product: str | None, gpus: int, labels: dict[str, str], allocatable: dict[str, str]
) -> dict[str, Any]:
    all_labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "z1", **labels}
    resources = {"cpu": "128", "memory": "2Ti", "pods": "110", **allocatable}
    if product:
        all_labels |= {
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.present": "true",
        }
        resources["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": {
            "capacity": dict(resources),
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def cluster_nodes() -> list[dict[str, Any]]:
    out = []
    for g, (count, product, gpus, labels, allocatable) in enumerate(CLUSTER):
        for i in range(count):
            extra = dict(labels)
            extra_alloc = dict(allocatable)
            if product == "NVIDIA-GB200":
                extra["nvidia.com/gpu.clique"] = f"c0ffee.{i // 18}"
            if product == "NVIDIA-B200" and i % 2:
                extra_alloc["vpc.amazonaws.com/efa"] = "8"
            out.append(node(f"n{g}-{i}", product, gpus, extra, extra_alloc))
    return out


def plans_and_traffic(rng: random.Random) -> list[tuple[api.ServingPlan, facts.Traffic]]:
    models = catalog.names()
    out = []
    for i in range(PLANS):
        spec: dict[str, Any] = {
            "model": {"name": models[i % len(models)]},
            "mode": rng.choice(["Auto"] * 8 + ["Dense", "MoE"]),
            "operations": {"platformTeam": rng.choice(["Dedicated", "Shared"])},
        }
        plan = api.ServingPlan.model_validate(
            {"metadata": {"name": f"plan-{i}", "namespace": f"team-{i % 20}"}, "spec": spec}
        )
        p50 = rng.choice([500, 2_000, 10_000, 40_000, 80_000])
        traffic = facts.Traffic.model_validate(
            {
                "tokensPerSecond": {
                    "p10": p50 * 0.7,
                    "p50": p50,
                    "p95": p50 * rng.choice([1.3, 3]),
                },
                "promptTokens": {"p50": rng.choice([250, 500, 1000, 2000, 4000]), "p90": 6000},
                "outputTokens": {"p50": rng.choice([200, 400, 1000])},
                "expertLoadMaxOverMean": rng.choice([None, 1.2, 1.5, 2.5]),
            }
        )
        out.append((plan, traffic))
    return out


def both(
    raw: list[dict[str, Any]], work: list[tuple[api.ServingPlan, facts.Traffic]]
) -> list[planning.Evaluation]:
    cluster = facts.Cluster.from_nodes(raw)
    return [planning.evaluate(p, cluster, t) for p, t in work]


Timing = tuple[float, float, float, float]


def timed(run: Callable[[], object], before: Callable[[], object] | None = None) -> Timing:
    """Best and median wall time, then best and median CPU time (time.process_time), of REPEAT
    runs in seconds, after one warm-up run. `before` runs untimed ahead of each run."""
    run()
    walls, cpus = [], []
    for _ in range(REPEAT):
        if before is not None:
            before()
        start, cpu = time.perf_counter(), time.process_time()
        run()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - start)
    return min(walls), statistics.median(walls), min(cpus), statistics.median(cpus)


def rubric_inputs(
    work: list[tuple[api.ServingPlan, facts.Traffic]], cluster: facts.Cluster
) -> list[tuple[Any, ...]]:
    """The arguments planning.evaluate passes to rubric.decide for each plan (recorded)."""
    with mock.patch.object(rubric, "decide", wraps=rubric.decide) as spy:
        for plan, traffic in work:
            planning.evaluate(plan, cluster, traffic)
    return [tuple(call.args) for call in spy.call_args_list]


def cache_memory(run: Callable[[], object]) -> float:
    """Bytes the decision caches hold after `run` from empty caches (tracemalloc)."""
    planning.clear_caches()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        run()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return float(sum(d.size_diff for d in after.compare_to(before, "filename")))


def main() -> None:
    raw = cluster_nodes()
    work = plans_and_traffic(random.Random(SEED))
    cluster = facts.Cluster.from_nodes(raw, source="bench")
    infos = [facts.node_info(n) for n in raw]

    def decide_all() -> None:
        for p, t in work:
            planning.evaluate(p, cluster, t)

    modes = Counter(planning.evaluate(p, cluster, t).decision.mode.value for p, t in work)
    pools = ", ".join(
        f"{p.node_count}x{p.gpus_per_node} {p.gpu} ({p.fabric})" for p in cluster.pools
    )
    recorded = rubric_inputs(work, cluster)
    print(f"cluster: {len(raw)} nodes -> {pools}")
    print(f"plans:   {len(work)} over {len(catalog.names())} catalog models -> {dict(modes)}")
    print(f"{'step':<56}{'wall best':>10}{'median':>9}{'CPU best':>10}{'median':>9}")
    rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        (
            "nodes: Cluster.from_nodes(1,000 Node dicts)",
            lambda: facts.Cluster.from_nodes(raw),
            None,
        ),
        (
            "nodes: node_info x 1,000 (the operator's index)",
            lambda: [facts.node_info(n) for n in raw],
            None,
        ),
        (
            "nodes: Cluster.from_nodes(1,000 NodeInfo)",
            lambda: facts.Cluster.from_nodes(infos),
            None,
        ),
        ("decide: planning.evaluate x 1,000 plans", decide_all, None),
        ("  the same, caches emptied before each run", decide_all, planning.clear_caches),
        (
            "  of it, rubric.decide x 1,000 (same inputs)",
            lambda: [rubric.decide(*a) for a in recorded],
            None,
        ),
        ("both: from_nodes once + evaluate x 1,000", lambda: both(raw, work), None),
    ]
    figures: dict[str, Timing] = {}
    for label, run, before in rows:
        figures[label] = timed(run, before)
        wall, wall_med, cpu, cpu_med = (x * 1000 for x in figures[label])
        print(f"{label:<56}{wall:>8.1f}ms{wall_med:>7.1f}ms{cpu:>8.1f}ms{cpu_med:>7.1f}ms")
    wall, _, cpu, _ = figures["decide: planning.evaluate x 1,000 plans"]
    print(
        f"per plan: {wall / len(work) * 1e6:.0f} us wall, {cpu / len(work) * 1e6:.0f} us CPU "
        f"({len(cluster.pools)} pools, both modes): {len(work) / wall:,.0f} decisions/s "
        f"({len(work) / cpu:,.0f} per CPU second)"
    )
    held = cache_memory(decide_all)
    info = planning.cache_info()
    print(f"caches after one sweep from empty: {held / 1e6:.1f} MB held (tracemalloc)")
    print("  " + ", ".join(f"{k} {v.currsize}/{v.maxsize}" for k, v in info.items()))


if __name__ == "__main__":
    main()
