"""CPU per reconcile (time.process_time), in process, against the counting fake of
tests/unit/test_api_calls.py (no HTTP client: its cost per request comes on top).

    .venv/bin/python bench/reconcile_cpu.py [PLANS] [EXTRA_NODES]      # default 200 200

PLANS Dense-pinned Qwen3-30B-A3B plans on the 24 nodes of e2e/nodepools/default.yaml plus
EXTRA_NODES synthetic ones (e2e/nodes.py); each plan reconciled once new, once with its children
ready, then three times settled, the watch delivering the plan after each. To measure another
version of the operator, put its `operator/` first on PYTHONPATH (the line "code:" says which ran).
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def main(argv: list[str]) -> int:
    from test_api_calls import CountingApi

    import breakeven.shell.reconcile as reconcile_module
    from breakeven.core import facts
    from breakeven.shell import kube
    from breakeven.shell.reconcile import Reconciler
    from breakeven.shell.runtime import Config, PlanState
    from e2e.nodes import node_objects, synthetic_cluster

    plans = int(argv[0]) if argv else 200
    extra = int(argv[1]) if len(argv) > 1 else 200
    nodes = node_objects() + synthetic_cluster(extra)
    mapping = facts.LabelMapping()
    infos = [facts.node_info(n, mapping) for n in nodes]
    index = {"gpu": [i for i in infos if i.allocatable.get("nvidia.com/gpu")]}
    print(f"code: {reconcile_module.__file__}; {len(nodes)} nodes, {len(index['gpu'])} with GPUs")

    class MultiApi(CountingApi):  # type: ignore[misc]
        """Many plans; every status write moves the plan's resourceVersion."""

        def __init__(self) -> None:
            super().__init__()
            self.plans: dict[str, dict[str, Any]] = {}
            self.statuses: dict[str, dict[str, Any]] = {}

        async def get_plan(self, namespace: str, name: str) -> dict[str, Any]:
            self.calls.append(("get", "ServingPlan"))
            return self.watch(name)

        def watch(self, name: str) -> dict[str, Any]:
            status = copy.deepcopy(self.statuses.get(name, {}))
            return {**copy.deepcopy(self.plans[name]), "status": status}

        async def patch_status(
            self, namespace: str, name: str, status: Any, resource_version: str | None = None
        ) -> None:
            self.calls.append(("patch", "ServingPlan/status"))
            self.statuses[name] = {**self.statuses.get(name, {}), **status}
            meta = self.plans[name]["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    api = MultiApi()
    r = Reconciler(Config(), lambda: index)
    r.connect(kube.CachedWriter(api, lambda: api.index))
    states = []
    for i in range(plans):
        name = f"p{i}"
        body = {
            "apiVersion": "breakeven.dev/v1alpha1",
            "kind": "ServingPlan",
            "metadata": {"name": name, "namespace": "bench", "uid": f"u{i}", "generation": 1,
                         "resourceVersion": "1"},
            "spec": {"model": {"name": "Qwen/Qwen3-30B-A3B"}, "mode": "Dense",
                     "operations": {"platformTeam": "Dedicated"}},
        }  # fmt: skip
        api.plans[name] = body
        traffic = facts.Traffic(source="not read", errors=("no Prometheus",))
        state = PlanState(body=copy.deepcopy(body), traffic=traffic)
        if hasattr(state, "read_at"):  # just seen on the watch
            state.read_at = time.monotonic()
        states.append(state)

    async def all_once() -> None:
        for state in states:
            await r.reconcile(state)
        await asyncio.gather(*r.publisher._posting)

    def phase(label: str) -> None:
        api.calls.clear()
        started = time.process_time()
        asyncio.run(all_once())
        cpu = (time.process_time() - started) / plans * 1000
        print(f"{label:<32} {cpu:6.2f} ms CPU per reconcile, {len(api.calls) / plans:.2f} requests")
        for state in states:
            state.body = api.watch(state.body["metadata"]["name"])

    phase("new plans (first reconcile)")
    api.settle()
    phase("children ready (second)")
    for k in range(3):
        phase(f"settled, re-evaluated ({k + 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
