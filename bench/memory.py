"""What the operator keeps per plan and per node, measured in-process (tracemalloc), no cluster.

    .venv/bin/python bench/memory.py [--nodes 5000] [--plans 200]

For `--nodes` synthetic nodes (e2e/nodes.py, as JSON from the API server would bring them) and
the benchmark's plan (bench/controlplane.py), it reconciles one plan against the counting fake
writer of tests/unit/test_api_calls.py to get the status the operator writes, then measures,
each as memory still allocated after the objects it came from were dropped:

- the node index: facts.NodeInfo per GPU node (kopf's index holds these);
- per plan, the whole body with that status as a watch delivers it (what the scheduler kept
  before) and what it keeps now (runtime.kept);
- per plan, the per-plan gauges of one reconcile (metrics.record: plan mode and criterion
  verdicts), with prometheus-client's Gauge and with metrics.PlanGauge.

Python object sizes only; the process's RSS is bench/controlplane.py's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def retained(build: Callable[[], Any]) -> tuple[float, Any]:
    """Bytes still allocated after `build()` ran and its garbage was collected; its result."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    result = build()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--plans", type=int, default=200, help="copies measured per figure")
    args = parser.parse_args(argv)

    import prometheus_client as prom
    from test_api_calls import CountingApi  # the counting fake writer of the unit tests

    from bench.controlplane import plan_body
    from breakeven.core import api, facts
    from breakeven.shell import kube, metrics
    from breakeven.shell.reconcile import Reconciler
    from breakeven.shell.runtime import Config, PlanState, kept
    from e2e.nodes import synthetic_cluster

    text = json.dumps(synthetic_cluster(args.nodes))
    mapping = facts.LabelMapping()
    facts.node_info(json.loads(text)[0], mapping)  # pydantic's lazy set-up, not a node's cost
    tracemalloc.start()

    def index() -> list[facts.NodeInfo]:
        nodes = json.loads(text)  # dropped on return, as kopf drops the event bodies
        return [
            facts.node_info(n, mapping)
            for n in nodes
            if n["status"]["capacity"].get(mapping.gpu_resource)
        ]

    size, infos = retained(index)
    print(f"{args.nodes} nodes: node index {size / 1e6:.1f} MB for {len(infos)} GPU nodes "
          f"({size / max(1, len(infos)) / 1e3:.2f} KB each)")  # fmt: skip

    writer = CountingApi()
    nodes = {"gpu": infos}
    reconciler = Reconciler(Config(), lambda: nodes)
    reconciler.connect(kube.CachedWriter(writer, lambda: writer.index))  # type: ignore[arg-type]
    body = plan_body("p")
    body["metadata"].update(uid="u", generation=1)
    writer.plan = copy.deepcopy(body)
    asyncio.run(reconciler.reconcile(PlanState(body=body, traffic=facts.Traffic(source="test"))))
    full = json.dumps({**body, "status": writer.status})
    print(
        f"  the status one reconcile wrote: {len(json.dumps(writer.status)) / 1e3:.1f} KB of JSON"
    )

    size, _ = retained(lambda: [json.loads(full) for _ in range(args.plans)])
    whole = size / args.plans
    size, _ = retained(lambda: [kept(json.loads(full)) for _ in range(args.plans)])
    print(f"  per plan: the whole body {whole / 1e3:.1f} KB, what is kept now "
          f"{size / args.plans / 1e3:.1f} KB")  # fmt: skip

    rows = [r.value for r in api.Criterion]

    def gauges(make: Callable[[str, str, list[str]], Any]) -> float:
        mode = make("x_plan_mode", "h", ["plan", "mode"])
        verdict = make("x_verdict", "h", ["plan", "criterion", "verdict"])

        def fill() -> None:
            for i in range(args.plans):
                plan = f"bench/plan-{i}"
                for m in api.ServingMode:
                    mode.labels(plan=plan, mode=m.value).set(1)
                for row in rows:
                    for v in api.Verdict:
                        verdict.labels(plan=plan, criterion=row, verdict=v.value).set(0)

        return retained(fill)[0] / args.plans

    registry = prom.CollectorRegistry()
    theirs = gauges(lambda n, h, labels: prom.Gauge(n, h, labels, registry=registry))
    registry = prom.CollectorRegistry()
    ours = gauges(lambda n, h, labels: metrics.PlanGauge(n, h, labels, registry=registry))
    print(f"  per plan, {len(rows)} criteria: gauges {theirs / 1e3:.1f} KB with "
          f"prometheus-client's Gauge, {ours / 1e3:.1f} KB with metrics.PlanGauge")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
