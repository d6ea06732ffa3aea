"""One evaluation of a plan: resolve the model, size both modes on every pool, run the rubric.

This is the single path from facts to a decision; `breakeven plan` and the operator both call
`evaluate`, so the CLI never becomes a second implementation.

Pure: the caller supplies the cluster and traffic facts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from breakeven.core import api, capacity, catalog, facts, rubric


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
    return capacity.Workload(
        isl=max(1, round(isl)) if isl else 1000,
        osl=max(1, round(osl)) if osl else 1000,
        itl_target_ms=plan.spec.serving.itl_target_ms,
        max_model_len=plan.spec.serving.max_model_len,
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
    dense_candidates = [
        rubric.Candidate(
            pool=pool,
            estimate=capacity.size_dense(dense_arch, pool, dense_dtype, workload, cost),
        )
        for pool in cluster.pools
    ]
    moe_candidates = (
        [
            rubric.Candidate(
                pool=pool,
                estimate=capacity.size_moe(
                    arch, pool, dtype, workload, traffic.load_max_over_mean, cost
                ),
            )
            for pool in cluster.pools
        ]
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
