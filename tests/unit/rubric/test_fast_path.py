"""The rubric's fast paths give what the plain ones gave: `choose` reads interconnect's verdict
without building its row, rows carry their gating flag from construction, and the caches of
parsed policy values and runtimeSupport answers are keyed on every value they depend on."""

from __future__ import annotations

import itertools

import builders
import pytest

from breakeven.core import api, capacity, facts, planning, rubric

MOE = api.ServingMode.MOE


def grid() -> list[rubric.Candidate]:
    """MoE candidates over pools of every fabric, clique and partitioning, one node and many."""
    pools = [
        builders.pool(fabric="infiniband"),
        builders.pool(fabric="ethernet", rdma_resource=None),
        builders.pool(fabric="efa", gpu="H100", product="NVIDIA-H100-80GB-HBM3"),
        builders.pool(gpus_per_node=1, gpu="L40S", product="NVIDIA-L40S", rdma_resource=None),
        builders.pool(gpu="GB200", product="NVIDIA-GB200", gpus_per_node=4, cliques={"c": 72}),
        builders.pool(nodes=2).model_copy(update={"fabrics": {"infiniband": 1, "ethernet": 1}}),
        builders.pool().model_copy(update={"partitioned": True}),
    ]
    sizes = [(8, 1), (16, 2), (32, 4), (4, 1), (64, 16)]
    out = []
    for p, (gpus, nodes) in itertools.product(pools, sizes):
        est = builders.moe(gpus, nodes, 0).model_copy(
            update={
                "total_tokens_per_second": 1000.0 * gpus,
                "dollars_per_million_tokens": 1 / gpus,
            }
        )
        out.append(rubric.Candidate(pool=p, estimate=est))
    return out


def reference_choose(
    candidates: list[rubric.Candidate], cluster: facts.Cluster
) -> tuple[rubric.Candidate | None, rubric.Candidate | None]:
    """`choose` as it was: every feasible candidate's full interconnect row."""
    feasible = [c for c in candidates if c.estimate.feasible]
    pick = [c for c in feasible if rubric.interconnect(c, cluster).verdict == api.Verdict.GO]
    pick = pick or feasible
    if not pick:
        return None, None
    deploy = min(pick, key=lambda c: (rubric._cost(c), c.estimate.gpus))
    floor = min(pick, key=lambda c: c.estimate.total_tokens_per_second)
    return deploy, floor


def test_the_grid_has_go_and_not_go_candidates() -> None:
    cluster = facts.Cluster(pools=tuple({c.pool.gpu: c.pool for c in grid()}.values()))
    verdicts = {rubric.interconnect(c, cluster).verdict for c in grid()}
    assert verdicts == {api.Verdict.GO, api.Verdict.STAY_DENSE}


@pytest.mark.parametrize("with_pools", [True, False])
def test_choose_picks_what_the_full_rows_pick(with_pools: bool) -> None:
    candidates = grid()
    cluster = facts.Cluster(pools=(candidates[0].pool,) if with_pools else ())
    # every pair and every single candidate: Go ones beat cheaper non-Go ones
    for group in [*([c] for c in candidates), *itertools.combinations(candidates, 2)]:
        assert rubric.choose(list(group), cluster) == reference_choose(list(group), cluster)
    assert rubric.choose(candidates, cluster) == reference_choose(candidates, cluster)


def test_rows_carry_their_gating_flag() -> None:
    plan = builders.plan(policy={"gating": ["interconnect", "trafficRegularity"]})
    d = decide(plan)
    assert [r.name for r in d.rows] == rubric._PREFERENCE
    gating = {r.name for r in d.rows if r.gating}
    assert gating == {"interconnect", "trafficRegularity", "runtimeSupport"}
    assert all("gating" in r.model_fields_set for r in d.rows)
    dense = decide(builders.plan(builders.LLAMA_70B, policy={"gating": ["modelScale"]}))
    assert {r.name for r in dense.rows if r.gating} == {"modelScale"}


def decide(plan: api.ServingPlan) -> rubric.Decision:
    cluster = facts.Cluster(pools=(builders.pool(),))
    arch = builders.arch(plan.spec.model.name)
    est = builders.moe(8, 1, 0).model_copy(update={"total_tokens_per_second": 20_000.0})
    moe = [rubric.Candidate(pool=cluster.pools[0], estimate=est)]
    return rubric.decide(plan, arch, cluster, builders.traffic(), moe, [])


def test_cached_policy_values_follow_the_policy() -> None:
    small = decide(builders.plan(policy={"modelScale": {"moeFrom": "100B"}}))
    large = decide(builders.plan(policy={"modelScale": {"moeFrom": "1000B", "denseBelow": "10B"}}))
    assert small.row(api.Criterion.MODEL_SCALE).verdict == api.Verdict.GO
    assert large.row(api.Criterion.MODEL_SCALE).verdict == api.Verdict.WAIT
    assert "1000B" in large.row(api.Criterion.MODEL_SCALE).threshold


def test_runtime_support_is_cached_per_release_and_model() -> None:
    rubric.clear_caches()
    old = builders.plan(serving={"vllmVersion": "0.10.1"})
    new = builders.plan(serving={"vllmVersion": "0.12.0"})
    first = [decide(p).row(api.Criterion.RUNTIME_SUPPORT) for p in (old, new)]
    again = [decide(p).row(api.Criterion.RUNTIME_SUPPORT) for p in (old, new)]
    assert first == again
    assert "0.10.1" in first[0].observed and "0.12.0" in first[1].observed
    info = rubric.cache_info()["runtimeSupport"]
    assert (info.misses, info.hits) == (2, 2)
    rubric.clear_caches()
    assert rubric.cache_info()["runtimeSupport"].currsize == 0
    assert decide(old).row(api.Criterion.RUNTIME_SUPPORT) == first[0]


def test_an_unsupported_release_stays_unknown_with_its_field() -> None:
    for _ in range(2):  # the second answer comes from the cache
        row = decide(builders.plan(serving={"vllmVersion": "0.1.0"})).row(
            api.Criterion.RUNTIME_SUPPORT
        )
        assert row.verdict == api.Verdict.UNKNOWN
        assert "spec.serving.vllmVersion" in row.observed


def test_cache_info_is_bounded() -> None:
    assert all(isinstance(i, capacity.CacheInfo) for i in rubric.cache_info().values())
    assert all(i.maxsize for i in rubric.cache_info().values())


def test_planning_clear_caches_empties_the_rubric_caches_too() -> None:
    decide(builders.plan(serving={"vllmVersion": "0.12.0"}))
    assert rubric.cache_info()["runtimeSupport"].currsize > 0
    planning.clear_caches()
    assert {name: info.currsize for name, info in rubric.cache_info().items()} == dict.fromkeys(
        rubric.cache_info(), 0
    )
