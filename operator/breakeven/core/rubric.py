"""The break-even rubric: facts in, Dense or MoE out, with one row per criterion.

    modelScale         large and sparse enough?                     gating
    sustainedLoad      traffic keeps every EP rank busy, not bursty? gating
    interconnect       NVLink inside, RDMA (or one NVLink domain)?   gating
    opsMaturity        a dedicated team?                             gating
    expertBalance      no EP rank hot enough to stall the group?     gating
    runtimeSupport     does the plan's vLLM release run EPLB for it? always gating
    trafficRegularity  homogeneous prompt lengths?                   advisory
    memoryBandwidthPressure  dense decode bandwidth-bound here?      advisory

MoE only when every gating row is Go; `Unknown` never counts as Go. docs/rubric.md explains each
threshold and where it comes from.

`decide` is purely computational: the CLI and the operator gather the facts and the capacity
estimates (see `planning.evaluate`), and the operator applies hysteresis to the result before
anything changes in the cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from breakeven.core import api, capacity, catalog, facts
from breakeven.core.rendering import errors as render_errors
from breakeven.core.rendering import versions

Row = api.CriterionRow
C = api.Criterion
V = api.Verdict


class Candidate(BaseModel):
    """A sized MoE or dense deployment on one pool."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    pool: facts.Pool
    estimate: capacity.Estimate


class Decision(BaseModel):
    """The rubric's answer: the mode, why, and every row."""

    model_config = ConfigDict(frozen=True)

    mode: api.ServingMode
    rubric_mode: api.ServingMode
    reason: str
    message: str
    rows: tuple[Row, ...]
    moe: Candidate | None = None
    dense: Candidate | None = None
    floor: Candidate | None = None  # the smallest MoE deployment sustainedLoad was judged on

    def row(self, name: api.Criterion) -> Row:
        return next(r for r in self.rows if r.name == name)

    @property
    def prerequisites_met(self) -> bool:
        return self.rubric_mode == api.ServingMode.MOE


# Bound of each of the rubric's own caches: distinct policy strings and (model, vLLM release)
# pairs in a fleet are few; an LRU keeps a pathological fleet from growing them without end.
_CACHE_SIZE = 256


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parameters(text: str) -> float:
    """api.parse_parameters, cached: policy strings repeat across every plan."""
    return api.parse_parameters(text)


def cache_info() -> dict[str, capacity.CacheInfo]:
    """The rubric's caches' figures (hits, misses, maxsize, currsize)."""
    caches = {"parameters": _parameters, "runtimeSupport": _runtime_support}
    return {name: capacity.CacheInfo(*f.cache_info()) for name, f in caches.items()}


def clear_caches() -> None:
    """Empty the rubric's caches; results do not change, only the time they take."""
    _parameters.cache_clear()
    _runtime_support.cache_clear()


def _b(value: float) -> str:
    return f"{value:g}B"


def _rate(value: float) -> str:
    return f"{value:,.0f} tok/s"


# ------------------------------------------------------------------------------- criteria


def model_scale(arch: catalog.Architecture, policy: api.Policy, *, gating: bool = False) -> Row:
    dense_below = _parameters(policy.model_scale.dense_below) / 1e9
    moe_from = _parameters(policy.model_scale.moe_from) / 1e9
    total = arch.total_parameters
    threshold = f">= {_b(moe_from)} total parameters and a sparse (MoE) architecture"
    if arch.is_moe:
        observed = (
            f"{_b(total)} total, {_b(arch.active_parameters)} active "
            f"({arch.sparsity:.1%}), {arch.routed_experts} experts top-{arch.experts_per_token}"
        )
    else:
        observed = f"{_b(total)} dense"
    if not arch.is_moe:
        return Row(
            gating=gating,
            name=C.MODEL_SCALE,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason="a dense architecture has no experts to spread: serve it dense",
        )
    if total < dense_below:
        return Row(
            gating=gating,
            name=C.MODEL_SCALE,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason=f"under {_b(dense_below)} parameters dense serving wins: the model fits "
            "a node without saturating its memory bandwidth",
        )
    if total < moe_from:
        return Row(
            gating=gating,
            name=C.MODEL_SCALE,
            verdict=V.WAIT,
            observed=observed,
            threshold=threshold,
            reason=f"between {_b(dense_below)} and {_b(moe_from)}: too small for expert "
            "parallelism to pay for its overhead yet",
        )
    return Row(
        gating=gating,
        name=C.MODEL_SCALE,
        verdict=V.GO,
        observed=observed,
        threshold=threshold,
        reason="large and sparse: each token reads a small fraction of the weights",
    )


def runtime_support(
    arch: catalog.Architecture, serving: api.Serving, *, gating: bool = False
) -> Row:
    """Whether the plan's vLLM release can serve this model as an MoE with EPLB.

    vLLM builds EPLB state only for model classes implementing its `MixtureOfExperts` interface;
    for the others the engine asserts on its first step. data/vllm_flags.yaml says which classes
    have it in which release; this row is gating whatever `policy.gating` lists, because the
    renderer refuses an MoE workload the matrix rules out.
    """
    verdict, observed, reason = _runtime_support(
        arch.name, arch.is_moe, arch.hf_architecture, serving.vllm_version, serving.image
    )
    return Row(
        gating=gating,
        name=C.RUNTIME_SUPPORT,
        verdict=verdict,
        observed=observed,
        threshold=_RUNTIME_THRESHOLD,
        reason=reason,
    )


_RUNTIME_THRESHOLD = "the plan's vLLM release builds EPLB state for the model's architecture"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _runtime_support(
    name: str, is_moe: bool, cls: str | None, vllm_version: str | None, image: str
) -> tuple[V, str, str]:
    """runtimeSupport's (verdict, observed, reason): a pure function of these five values, so
    cached (the release and the support table are resolved once per distinct plan shape)."""
    if not is_moe:
        return (
            V.STAY_DENSE,
            f"{name}: dense architecture",
            "a dense architecture has no experts for EPLB to balance",
        )
    try:
        text = versions.resolve_release(vllm_version, image)
    except render_errors.RenderError as err:
        return V.UNKNOWN, str(err), "the vLLM release is unknown or unsupported"
    family = name.rsplit("/", 1)[-1]
    if cls is None:
        return (
            V.UNKNOWN,
            f"{family}: architecture class unknown (not from the catalog)",
            "whether vLLM runs EPLB for this model is unknown; set spec.model.architecture "
            "to a catalog model of the same architecture",
        )
    table = versions.table()
    short = ".".join(text.split(".")[:2]) if text.endswith(".0") else text
    observed = f"{family} ({cls}) on vLLM {text}"
    if table.has_eplb(cls, versions.parse(text)):
        return (
            V.GO,
            observed,
            f"vLLM {short} implements MixtureOfExperts for {cls}: EP with EPLB runs",
        )
    since = table.eplb_since(cls)
    later = f" (from vLLM {since})" if since else ""
    return V.STAY_DENSE, observed, f"{family} has no EPLB in vLLM {short}{later}; MoE not available"


_INTERCONNECT_THRESHOLD = (
    "EP group inside one NVLink node or NVLink domain, or NVLink inside nodes plus "
    "InfiniBand/RoCE/EFA between every node the group spans"
)

# interconnect's cases for a candidate, in the order they are tried, and each one's verdict.
_PARTITIONED, _CLIQUE, _PCIE, _ONE_NODE, _MIXED, _NO_RDMA, _RDMA = range(7)
_CASE_VERDICT = {
    _PARTITIONED: V.STAY_DENSE,
    _CLIQUE: V.GO,
    _PCIE: V.STAY_DENSE,
    _ONE_NODE: V.GO,
    _MIXED: V.STAY_DENSE,
    _NO_RDMA: V.STAY_DENSE,
    _RDMA: V.GO,
}


def _interconnect_case(pool: facts.Pool, est: capacity.Estimate) -> int:
    """Which of interconnect's cases a candidate falls in: the row's verdict without its words
    (`choose` asks it of every feasible candidate)."""
    if pool.partitioned:
        return _PARTITIONED
    if pool.largest_clique_gpus >= est.gpus and est.nodes > 1:
        return _CLIQUE
    if not pool.intra_node_nvlink:
        return _PCIE
    if est.nodes <= 1:
        return _ONE_NODE
    if pool.fabric == "mixed":
        return _MIXED
    if pool.fabric not in facts.RDMA_FABRICS:
        return _NO_RDMA
    return _RDMA


def interconnect(
    candidate: Candidate | None,
    cluster: facts.Cluster,
    is_moe: bool = True,
    *,
    gating: bool = False,
) -> Row:
    threshold = _INTERCONNECT_THRESHOLD
    if not cluster.pools:
        return Row(
            gating=gating,
            name=C.INTERCONNECT,
            verdict=V.UNKNOWN,
            observed="no GPU nodes seen",
            threshold=threshold,
            reason="no GPU nodes to judge",
        )
    if candidate is None:
        pools = ", ".join(f"{p.node_count}x{p.gpus_per_node} {p.gpu}" for p in cluster.pools)
        return Row(
            gating=gating,
            name=C.INTERCONNECT,
            verdict=V.STAY_DENSE,
            observed=pools,
            threshold=threshold,
            reason="no GPU pool is large enough to host one expert-parallel group"
            if is_moe
            else "a dense architecture has no expert-parallel group to place",
        )
    pool, est = candidate.pool, candidate.estimate
    case = _interconnect_case(pool, est)
    if case == _PARTITIONED:
        observed = f"{pool.product}: MIG or time-sliced GPUs"
        reason = "MIG or time-sliced GPUs: an EP rank needs a whole GPU and its NVLink"
    else:
        fabrics = ", ".join(f"{n} {kind}" for kind, n in pool.fabrics.items())
        observed = (
            f"EP{est.ep} group of {est.gpus} {pool.gpu} on {est.nodes} node(s); "
            f"intra-node {'NVLink' if pool.intra_node_nvlink else 'PCIe'}; "
            f"between nodes: {fabrics}"
        )
        if case == _CLIQUE:
            reason = f"the group fits one NVLink domain of {pool.largest_clique_gpus} GPUs"
        elif case == _PCIE:
            reason = (
                f"{pool.gpu} GPUs talk over PCIe only: all-to-all dispatch would eat "
                "the sparsity gain"
            )
        elif case == _ONE_NODE:
            reason = "the whole EP group sits inside one NVLink node"
        elif case == _MIXED:
            reason = (
                f"mixed pool: {pool.rdma_nodes} of {pool.node_count} nodes have RDMA; "
                "pin the plan to RDMA nodes with spec.serving.nodeSelector or stay dense"
            )
        elif case == _NO_RDMA:
            reason = (
                f"the group spans {est.nodes} nodes joined by {pool.fabric} only: "
                "cross-node all-to-all needs InfiniBand, RoCE or EFA"
            )
        else:
            reason = f"NVLink inside nodes and {pool.fabric} between them"
    return Row(
        gating=gating,
        name=C.INTERCONNECT,
        verdict=_CASE_VERDICT[case],
        observed=observed,
        threshold=threshold,
        reason=reason,
    )


def sustained_load(
    traffic: facts.Traffic, candidate: Candidate | None, policy: api.Policy, *, gating: bool = False
) -> Row:
    busy = policy.sustained_load.busy_fraction
    max_burst = policy.sustained_load.max_burstiness
    threshold = (
        f"p10 >= {busy:.0%} of the smallest MoE deployment's capacity and p95/p50 <= {max_burst:g}"
    )
    tps = traffic.tokens_per_second
    if tps.p10 is None or tps.p50 is None:
        why = "; ".join(traffic.errors) or "no traffic observed"
        return Row(
            gating=gating,
            name=C.SUSTAINED_LOAD,
            verdict=V.UNKNOWN,
            observed=why,
            threshold=threshold,
            reason="traffic volume unknown: cannot tell whether EP ranks would be busy",
        )
    observed = f"p10 {_rate(tps.p10)}, p50 {_rate(tps.p50)}"
    if tps.p95 is not None:
        observed += f", p95 {_rate(tps.p95)}"
    if tps.p95 is not None and tps.p50 > 0 and tps.p95 / tps.p50 > max_burst:
        return Row(
            gating=gating,
            name=C.SUSTAINED_LOAD,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason=f"bursty: p95 is {tps.p95 / tps.p50:.1f}x p50, so EP ranks would sit "
            "idle between bursts",
        )
    if candidate is None or not candidate.estimate.feasible:
        return Row(
            gating=gating,
            name=C.SUSTAINED_LOAD,
            verdict=V.UNKNOWN,
            observed=observed,
            threshold=threshold,
            reason="no MoE deployment fits this cluster, so there is no capacity to fill",
        )
    capacity_tps = candidate.estimate.total_tokens_per_second
    floor = busy * capacity_tps
    observed += f"; smallest MoE deployment handles {_rate(capacity_tps)}"
    if tps.p10 < floor:
        return Row(
            gating=gating,
            name=C.SUSTAINED_LOAD,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason=f"too little sustained traffic: p10 is {tps.p10 / capacity_tps:.0%} of "
            f"one EP{candidate.estimate.ep} group's capacity (needs {busy:.0%})",
        )
    return Row(
        gating=gating,
        name=C.SUSTAINED_LOAD,
        verdict=V.GO,
        observed=observed,
        threshold=threshold,
        reason=f"even the quiet hours (p10) fill {tps.p10 / capacity_tps:.0%} of an "
        f"EP{candidate.estimate.ep} group",
    )


def ops_maturity(team: api.PlatformTeam, *, gating: bool = False) -> Row:
    """What the team declares: expert-balance telemetry is Breakeven's own job now (its EPLB
    exporter beside every MoE workload, docs/telemetry.md), no longer a precondition."""
    threshold = "platformTeam Dedicated (EPLB and its telemetry are always on)"
    observed = f"platformTeam {team.value}"
    if team != api.PlatformTeam.DEDICATED:
        return Row(
            gating=gating,
            name=C.OPS_MATURITY,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason="a shared platform team: expert placement, EPLB and all-to-all tuning "
            "need a dedicated one",
        )
    return Row(
        gating=gating,
        name=C.OPS_MATURITY,
        verdict=V.GO,
        observed=observed,
        threshold=threshold,
        reason="a dedicated team to run EP groups, EPLB and the all-to-all",
    )


def expert_balance(traffic: facts.Traffic, policy: api.Policy, *, gating: bool = False) -> Row:
    """The busiest EP rank over the mean (p95 of the EPLB steps in the window) from Breakeven's
    EPLB exporter; where it has no data, the hottest expert from spec.traffic.expertLoadMetric."""
    limit = policy.expert_balance.max_load_over_mean
    threshold = (
        f"busiest EP rank <= {limit:g}x the mean rank load in 95% of EPLB steps "
        f"(or hottest expert <= {limit:g}x the mean, spec.traffic.expertLoadMetric)"
    )
    rank = traffic.rank_load_max_over_mean
    expert = traffic.expert_load_max_over_mean
    if rank is None and expert is None:
        return Row(
            gating=gating,
            name=C.EXPERT_BALANCE,
            verdict=V.UNKNOWN,
            observed="no EPLB telemetry",
            threshold=threshold,
            reason="expert balance is only seen by running the MoE deployment: a trial measures it",
        )
    if rank is not None:
        observed = f"busiest EP rank {rank:.2f}x the mean (p95 of EPLB steps)"
        ratio = rank
        hot = "a hot EP rank: it sets the pace of the whole EP group"
    else:
        assert expert is not None
        observed = f"hottest expert {expert:.2f}x the mean"
        ratio = expert
        hot = "a hot expert: the rank holding it sets the pace of the whole EP group"
    if ratio > limit:
        return Row(
            gating=gating,
            name=C.EXPERT_BALANCE,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason=hot,
        )
    return Row(
        gating=gating,
        name=C.EXPERT_BALANCE,
        verdict=V.GO,
        observed=observed,
        threshold=threshold,
        reason="load is even enough across the EP ranks",
    )


def traffic_regularity(traffic: facts.Traffic, policy: api.Policy, *, gating: bool = False) -> Row:
    limit = policy.traffic_regularity.max_prompt_spread
    threshold = f"prompt length p90/p50 <= {limit:g}"
    p50, p90 = traffic.prompt_tokens.p50, traffic.prompt_tokens.p90
    if not p50 or p90 is None:
        return Row(
            gating=gating,
            name=C.TRAFFIC_REGULARITY,
            verdict=V.UNKNOWN,
            observed="prompt lengths unknown",
            threshold=threshold,
            reason="no prompt-length histogram observed",
        )
    spread = p90 / p50
    observed = f"prompt p50 {p50:,.0f}, p90 {p90:,.0f} tokens (p90/p50 {spread:.1f})"
    if spread > limit:
        return Row(
            gating=gating,
            name=C.TRAFFIC_REGULARITY,
            verdict=V.STAY_DENSE,
            observed=observed,
            threshold=threshold,
            reason="irregular prompts: routing skew is likely and hard to balance",
        )
    return Row(
        gating=gating,
        name=C.TRAFFIC_REGULARITY,
        verdict=V.GO,
        observed=observed,
        threshold=threshold,
        reason="homogeneous prompt lengths route predictably",
    )


def memory_bandwidth_pressure(dense: Candidate | None, *, gating: bool = False) -> Row:
    threshold = "dense decode bound by memory bandwidth at the chosen batch"
    if dense is None or not dense.estimate.feasible:
        return Row(
            gating=gating,
            name=C.MEMORY_BANDWIDTH_PRESSURE,
            verdict=V.UNKNOWN,
            observed="no dense deployment fits",
            threshold=threshold,
            reason="cannot size a dense deployment to judge",
        )
    est = dense.estimate
    observed = (
        f"dense TP{est.tp}xPP{est.pp} on {est.gpu} at batch {est.batch}: decode is "
        f"{est.decode_bound_by or 'unknown'}-bound"
    )
    if est.decode_bound_by == "memory":
        return Row(
            gating=gating,
            name=C.MEMORY_BANDWIDTH_PRESSURE,
            verdict=V.GO,
            observed=observed,
            threshold=threshold,
            reason="dense decode waits on weight reads; sparsity would relieve it",
        )
    return Row(
        gating=gating,
        name=C.MEMORY_BANDWIDTH_PRESSURE,
        verdict=V.STAY_DENSE,
        observed=observed,
        threshold=threshold,
        reason="dense decode is not bandwidth-bound here, so sparsity buys little",
    )


# ------------------------------------------------------------------------------- decision

_PREFERENCE = [
    C.MODEL_SCALE,
    C.RUNTIME_SUPPORT,
    C.INTERCONNECT,
    C.OPS_MATURITY,
    C.SUSTAINED_LOAD,
    C.EXPERT_BALANCE,
    C.TRAFFIC_REGULARITY,
    C.MEMORY_BANDWIDTH_PRESSURE,
]


def _cost(candidate: Candidate) -> float:
    est = candidate.estimate
    return est.dollars_per_million_tokens if est.dollars_per_million_tokens else float("inf")


def choose(
    candidates: Sequence[Candidate], cluster: facts.Cluster
) -> tuple[Candidate | None, Candidate | None]:
    """(deploy, floor) among the MoE candidates whose interconnect is Go, else all feasible ones:
    the cheapest is the one to deploy; the smallest is what sustainedLoad is judged on, so more
    RDMA (a bigger, cheaper group becoming Go) never raises that floor."""
    feasible = [c for c in candidates if c.estimate.feasible]
    # interconnect(c, cluster).verdict == Go, without building the row's words for every one.
    go = bool(cluster.pools)
    pick = [
        c for c in feasible if go and _CASE_VERDICT[_interconnect_case(c.pool, c.estimate)] == V.GO
    ] or feasible
    if not pick:
        return None, None
    deploy = min(pick, key=lambda c: (_cost(c), c.estimate.gpus))
    floor = min(pick, key=lambda c: c.estimate.total_tokens_per_second)
    return deploy, floor


def decide(
    plan: api.ServingPlan,
    arch: catalog.Architecture,
    cluster: facts.Cluster,
    traffic: facts.Traffic,
    moe_candidates: Sequence[Candidate],
    dense_candidates: Sequence[Candidate],
) -> Decision:
    """Evaluate every criterion and pick the mode. Purely computational.

    The caller (planning.evaluate, for the CLI and the operator) gathers the facts and sizes the
    candidates; the operator applies hysteresis before acting on `mode`.
    """
    spec = plan.spec
    policy = spec.policy
    moe, smallest = choose(moe_candidates, cluster) if arch.is_moe else (None, None)
    feasible_dense = [c for c in dense_candidates if c.estimate.feasible]
    dense = min(feasible_dense, key=lambda c: (_cost(c), c.estimate.gpus), default=None)
    # runtimeSupport gates every MoE architecture whatever policy.gating says: the renderer
    # refuses a workload the support matrix rules out. Each row is built with its gating flag.
    gating = {*policy.gating, *([C.RUNTIME_SUPPORT] if arch.is_moe else [])}
    runtime = runtime_support(arch, spec.serving, gating=C.RUNTIME_SUPPORT in gating)
    ordered = (  # in _PREFERENCE order
        model_scale(arch, policy, gating=C.MODEL_SCALE in gating),
        runtime,
        interconnect(moe, cluster, arch.is_moe, gating=C.INTERCONNECT in gating),
        ops_maturity(spec.operations.platform_team, gating=C.OPS_MATURITY in gating),
        sustained_load(traffic, smallest, policy, gating=C.SUSTAINED_LOAD in gating),
        expert_balance(traffic, policy, gating=C.EXPERT_BALANCE in gating),
        traffic_regularity(traffic, policy, gating=C.TRAFFIC_REGULARITY in gating),
        memory_bandwidth_pressure(dense, gating=C.MEMORY_BANDWIDTH_PRESSURE in gating),
    )
    blocking = [r for r in ordered if r.gating and r.verdict != V.GO]
    rubric_mode = api.ServingMode.DENSE if blocking or moe is None else api.ServingMode.MOE

    if spec.mode == api.Mode.AUTO:
        mode = rubric_mode
        if blocking:
            first = blocking[0]
            reason = first.name[0].upper() + first.name[1:]
            message = f"Dense: {first.name} is {first.verdict.value}: {first.reason}"
        elif moe is None:
            reason = "NoMoEDeployment"
            message = (
                "Dense: no GPU pool can host an expert-parallel group"
                if arch.is_moe
                else "Dense: the architecture is dense"
            )
        else:
            reason = "AllGatesGo"
            message = "MoE: every gating criterion is Go"
    else:
        mode = api.ServingMode(spec.mode.value)
        reason = f"Pinned{mode.value}"
        message = f"{mode.value} pinned by spec.mode; the rubric says {rubric_mode.value}"
        if mode == api.ServingMode.MOE and arch.is_moe and runtime.verdict != V.GO:
            # A pin cannot buy a workload vLLM would crash on: the renderer refuses it.
            mode = api.ServingMode.DENSE
            reason = "RuntimeSupport"
            message = f"Dense: MoE pinned by spec.mode, but {runtime.reason}"
        elif mode == api.ServingMode.MOE and blocking:
            message += f" ({', '.join(r.name for r in blocking)} not Go)"
    return Decision(
        mode=mode,
        rubric_mode=rubric_mode,
        reason=reason,
        message=message,
        rows=ordered,
        moe=moe,
        dense=dense,
        floor=smallest,
    )
