"""One evaluation of a plan: resolve the model, size both modes on every pool, run the rubric.

This is the single path from facts to a decision; `breakeven plan` and the operator both call
`evaluate`, so the CLI never becomes a second implementation.

Pure: the caller supplies the cluster and traffic facts.

Fast at fleet scale: what depends only on the model, dtype, pools and request lengths (both
modes' estimates on every pool) is cached, so a thousand plans of a few models on the same
pools size each model once (docs/performance.md). The caches are bounded LRUs with no clock.
"""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict

from breakeven.core import api, capacity, catalog, facts, rubric

SIZING_CACHE_SIZE = 1024
"""Entries kept by `_sized`: both modes' estimates on every pool of a cluster for one model,
dtype, workload, imbalance and price (each entry holds at most two estimates per pool, about
5.5 kB each, mostly shared with the capacity model's own caches). At least the 1,000 plans of
the fleet the operator is sized for: a cyclic sweep over more keys than an LRU holds never hits."""
WORKLOAD_CACHE_SIZE = 1024
"""Workloads kept by `_workload`, so that equal request shapes are one object."""


class Evaluation(BaseModel):
    """Everything one evaluation produced, for status, the CLI and rendering."""

    model_config = ConfigDict(frozen=True)

    plan: api.ServingPlan
    arch: catalog.Architecture
    dense_arch: catalog.Architecture
    cluster: facts.Cluster
    traffic: facts.Traffic
    workload: capacity.Workload
    decision: rubric.Decision

    def estimates(self) -> list[api.ModeEstimate]:
        """Both modes' estimates for status, at the observed demand when there is one."""
        demand = self.traffic.tokens_per_second.p50
        out = []
        for mode, candidate in (
            (api.ServingMode.DENSE, self.decision.dense),
            (api.ServingMode.MOE, self.decision.moe),
        ):
            if candidate is not None:
                out.append(candidate.estimate.to_status(demand))
            else:
                note = (
                    "dense architecture"
                    if mode == api.ServingMode.MOE and not self.arch.is_moe
                    else "no GPU pool can host it"
                )
                out.append(api.ModeEstimate(mode=mode, feasible=False, note=note))
        return out

    def candidate(self, mode: api.ServingMode) -> rubric.Candidate | None:
        return self.decision.moe if mode == api.ServingMode.MOE else self.decision.dense

    def arch_for(self, mode: api.ServingMode) -> catalog.Architecture:
        return self.arch if mode == api.ServingMode.MOE else self.dense_arch


def workload_for(plan: api.ServingPlan, traffic: facts.Traffic) -> capacity.Workload:
    """The request shape to size for: observed medians when known, 1000/1000 otherwise."""
    isl = traffic.prompt_tokens.p50
    osl = traffic.output_tokens.p50
    return _workload(
        max(1, round(isl)) if isl else 1000,
        max(1, round(osl)) if osl else 1000,
        plan.spec.serving.itl_target_ms,
        plan.spec.serving.max_model_len,
    )


@functools.lru_cache(maxsize=WORKLOAD_CACHE_SIZE, typed=True)
def _workload(
    isl: int, osl: int, itl_target_ms: float | None, max_model_len: int | None
) -> capacity.Workload:
    """One (frozen, shared) Workload per request shape: a cache key that compares by identity."""
    return capacity.Workload(
        isl=isl, osl=osl, itl_target_ms=itl_target_ms, max_model_len=max_model_len
    )


def evaluate(plan: api.ServingPlan, cluster: facts.Cluster, traffic: facts.Traffic) -> Evaluation:
    """Size dense and MoE on every pool and decide. Purely computational.

    Raises catalog.CatalogError when the model cannot be resolved (the caller reports it against
    the field it names). `cluster` should already be narrowed to spec.serving.nodeSelector.
    """
    spec = plan.spec
    arch = catalog.resolve(spec.model)
    dense_arch = catalog.resolve(spec.dense) if spec.dense else arch
    workload = workload_for(plan, traffic)
    cost = spec.operations.gpu_hourly_cost
    dtype = spec.model.dtype or arch.native_dtype
    dense_dtype = (spec.dense.dtype if spec.dense and spec.dense.dtype else None) or (
        dense_arch.native_dtype if spec.dense else dtype
    )
    pools = cluster.pools
    dense_estimates, moe_estimates = _sized(
        arch,
        dtype,
        None if dense_arch is arch else dense_arch,
        dense_dtype,
        workload,
        traffic.load_max_over_mean if arch.is_moe else None,
        cost,
        tuple(capacity.PoolShape.of(pool) for pool in pools),
    )
    dense_candidates = [
        rubric.Candidate(pool=p, estimate=e) for p, e in zip(pools, dense_estimates, strict=True)
    ]
    moe_candidates = (
        [rubric.Candidate(pool=p, estimate=e) for p, e in zip(pools, moe_estimates, strict=True)]
        if arch.is_moe
        else []
    )
    decision = rubric.decide(plan, arch, cluster, traffic, moe_candidates, dense_candidates)
    return Evaluation(
        plan=plan,
        arch=arch,
        dense_arch=dense_arch,
        cluster=cluster,
        traffic=traffic,
        workload=workload,
        decision=decision,
    )


@functools.lru_cache(maxsize=SIZING_CACHE_SIZE, typed=True)
def _sized(
    arch: catalog.Architecture,
    dtype: api.Dtype,
    dense_arch: catalog.Architecture | None,
    dense_dtype: api.Dtype,
    workload: capacity.Workload,
    imbalance: float | None,
    cost: float | None,
    pools: tuple[capacity.PoolShape, ...],
) -> tuple[tuple[capacity.Estimate, ...], tuple[capacity.Estimate, ...]]:
    """(dense estimate per pool, MoE estimate per pool or none for a dense model).

    `dense_arch` None means `arch`. Pools come as their PoolShape, so the answer holds for any
    cluster with pools of the same shape (node names and readiness do not enter sizing).
    """
    dense = tuple(
        capacity.size_dense(dense_arch or arch, pool, dense_dtype, workload, cost) for pool in pools
    )
    if not arch.is_moe:
        return dense, ()
    moe = tuple(capacity.size_moe(arch, pool, dtype, workload, imbalance, cost) for pool in pools)
    return dense, moe


def cache_info() -> dict[str, capacity.CacheInfo]:
    """Every decision-path cache's figures: planning's own, then the capacity model's."""
    own = {"sized": _sized, "workload": _workload}
    return {
        **{name: capacity.CacheInfo(*f.cache_info()) for name, f in own.items()},
        **capacity.cache_info(),
    }


def clear_caches() -> None:
    """Empty every decision-path cache; results do not change, only the time they take."""
    _sized.cache_clear()
    _workload.cache_clear()
    capacity.clear_caches()
    rubric.clear_caches()
