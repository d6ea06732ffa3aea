"""Rubric cases as data: each YAML document in cases/ is a plan, a cluster, traffic facts,
optional hand-made capacity estimates, and the rows and mode `rubric.decide` must produce.

    name: p10-exactly-at-the-floor          # test id (with the file name)
    plan: {policy: {...}, mode: MoE, ...}   # spec keys, deep-merged over BASE_SPEC
    cluster:
      nodesFile: h200-infiniband            # examples/nodes/<name>.yaml, and/or
      groups: [{count: 2, product: NVIDIA-H200, gpus: 8, rdma: rdma/ib, labels: {..}}]
    trafficFile: sustained                  # examples/traffic/<name>.yaml (optional), and
    traffic: {tokensPerSecond: {p10: ..}}   # keys deep-merged over it; neither = nothing observed
    moe: [{pool: 0, gpus: 8, nodes: 1, ep: 8, total_tokens_per_second: 20000}]  # capacity.Estimate
    dense: [{pool: 0, tp: 8, decode_bound_by: memory}]
    expect:
      mode: MoE                  # required
      rubricMode: MoE            # optional
      reason: AllGatesGo         # optional
      rows: {sustainedLoad: Go}  # verdicts of the rows named
      gating: [modelScale, ...]  # optional: exactly the rows marked gating
      reasons: {interconnect: "NVLink domain"}   # optional: substrings of row reasons
      observed: {sustainedLoad: "p10 9,000"}      # optional: substrings of row observations
      message: "the rubric says MoE"              # optional: substring of the decision message
    xfail: "bug: ..."            # optional: a known bug in the operator code

With `moe` or `dense` the case calls rubric.decide with those candidates (no capacity model);
without either it runs the real path, planning.evaluate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.core import api, capacity, catalog, facts, planning, rubric
from breakeven.shell import inputs

HERE = Path(__file__).parent
EXAMPLES = HERE.parents[2] / "examples"
BASE_SPEC: dict[str, Any] = {
    "model": {"name": "deepseek-ai/DeepSeek-V3"},
    "operations": {"platformTeam": "Dedicated"},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_cases() -> list[Any]:
    params = []
    for path in sorted((HERE / "cases").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=doc["xfail"])] if "xfail" in doc else []
            params.append(pytest.param(doc, id=f"{path.stem}:{doc['name']}", marks=marks))
    return params


CASES = load_cases()


def group_nodes(group: dict[str, Any], index: int) -> list[dict[str, Any]]:
    count = group.get("count", 1)
    gpus = group.get("gpus", 8)
    labels = {"nvidia.com/gpu.count": str(gpus), **group.get("labels", {})}
    if group.get("product"):
        labels["nvidia.com/gpu.product"] = group["product"]
    allocatable = {"nvidia.com/gpu": str(gpus), **group.get("allocatable", {})}
    if group.get("rdma"):
        allocatable[group["rdma"]] = "1"
    return [
        {
            "kind": "Node",
            "metadata": {"name": f"{group.get('prefix', f'g{index}')}-{i}", "labels": labels},
            "status": {"allocatable": allocatable},
        }
        for i in range(count)
    ]


def cluster_for(case: dict[str, Any], plan: api.ServingPlan) -> facts.Cluster:
    spec = case.get("cluster") or {}
    items: list[dict[str, Any]] = []
    if "nodesFile" in spec:
        items += inputs.load_nodes(EXAMPLES / "nodes" / f"{spec['nodesFile']}.yaml")[0]
    for i, group in enumerate(spec.get("groups") or []):
        items += group_nodes(group, i)
    return facts.Cluster.from_nodes(
        items, node_selector=plan.spec.serving.node_selector, source=case["name"]
    )


def traffic_for(case: dict[str, Any]) -> facts.Traffic:
    data: dict[str, Any] = {}
    if "trafficFile" in case:
        data = yaml.safe_load((EXAMPLES / "traffic" / f"{case['trafficFile']}.yaml").read_text())
    if case.get("traffic"):
        data = merge(data, case["traffic"])
    return facts.Traffic.model_validate(data) if data else facts.NOTHING_OBSERVED


def candidates(
    case: dict[str, Any], key: str, mode: api.ServingMode, cluster: facts.Cluster
) -> list[rubric.Candidate]:
    out = []
    for given in case.get(key) or []:
        fields = dict(given)
        pool = cluster.pools[fields.pop("pool", 0)]
        fields.setdefault("gpu", pool.gpu)
        estimate = capacity.Estimate.model_validate({"mode": mode, **fields})
        out.append(rubric.Candidate(pool=pool, estimate=estimate))
    return out


def decide(case: dict[str, Any]) -> rubric.Decision:
    document = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "case"},
        "spec": merge(BASE_SPEC, case.get("plan") or {}),
    }
    plan = inputs.parse_plan(document)
    cluster = cluster_for(case, plan)
    traffic = traffic_for(case)
    if "moe" not in case and "dense" not in case:
        return planning.evaluate(plan, cluster, traffic).decision
    arch = catalog.resolve(plan.spec.model)
    moe = candidates(case, "moe", api.ServingMode.MOE, cluster)
    dense = candidates(case, "dense", api.ServingMode.DENSE, cluster)
    return rubric.decide(plan, arch, cluster, traffic, moe, dense)


@pytest.mark.parametrize("case", CASES)
def test_case(case: dict[str, Any]) -> None:
    decision = decide(case)
    expect = case["expect"]
    verdicts = {row.name.value: row.verdict.value for row in decision.rows}
    assert {name: verdicts[name] for name in expect.get("rows", {})} == expect.get("rows", {})
    assert decision.mode.value == expect["mode"], decision.message
    if "rubricMode" in expect:
        assert decision.rubric_mode.value == expect["rubricMode"]
    if "reason" in expect:
        assert decision.reason == expect["reason"], decision.message
    if "gating" in expect:
        assert sorted(r.name.value for r in decision.rows if r.gating) == sorted(expect["gating"])
    for name, text in (expect.get("reasons") or {}).items():
        assert text in decision.row(api.Criterion(name)).reason
    for name, text in (expect.get("observed") or {}).items():
        assert text in decision.row(api.Criterion(name)).observed
    if "message" in expect:
        assert expect["message"] in decision.message


def test_there_are_cases_for_every_criterion() -> None:
    named = {name for param in CASES for name in param.values[0]["expect"].get("rows", {})}
    assert named == {c.value for c in api.Criterion}


def test_rows_come_in_a_fixed_order_with_every_criterion_once() -> None:
    decision = decide({"name": "order", "cluster": {"nodesFile": "h200-infiniband"}})
    assert [r.name for r in decision.rows] == [
        api.Criterion.MODEL_SCALE,
        api.Criterion.RUNTIME_SUPPORT,
        api.Criterion.INTERCONNECT,
        api.Criterion.OPS_MATURITY,
        api.Criterion.SUSTAINED_LOAD,
        api.Criterion.EXPERT_BALANCE,
        api.Criterion.TRAFFIC_REGULARITY,
        api.Criterion.MEMORY_BANDWIDTH_PRESSURE,
    ]
    for row in decision.rows:
        assert row.threshold and row.reason and row.observed
