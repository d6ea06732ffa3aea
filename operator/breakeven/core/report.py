"""How an evaluation reads to a person (the decision table) and to a program (JSON/YAML).

`breakeven plan` prints these; `breakeven explain` prints the same table from a live plan's
status, so what a person sees does not depend on where the decision was made.

Pure: formats data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from breakeven.core import api, facts, planning, rendering, rubric
from breakeven.core.errors import RenderFailure as RenderFailure
from breakeven.core.rendering import routes, telemetry


def columns(rows: Sequence[Sequence[str]], gap: str = "  ") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        gap.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def criteria_table(rows: Sequence[api.CriterionRow]) -> str:
    table = [["CRITERION", "GATING", "VERDICT", "OBSERVED", "THRESHOLD", "REASON"]]
    for r in rows:
        table.append(
            [
                r.name.value,
                "yes" if r.gating else "-",
                r.verdict.value,
                r.observed,
                r.threshold,
                r.reason,
            ]
        )
    return columns(table)


def estimates_table(estimates: Sequence[api.ModeEstimate]) -> str:
    table = [
        [
            "MODE",
            "GPU",
            "GPUS",
            "NODES",
            "TP",
            "PP",
            "DP",
            "EP",
            "OUT TOK/S/GPU",
            "TOK/S (ALL)",
            "BOUND",
            "$/M OUT (FULL)",
            "$/M OUT (OBSERVED)",
        ]
    ]
    for e in estimates:
        if not e.feasible:
            table.append(
                [
                    e.mode.value,
                    e.gpu or "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"infeasible: {e.note}",
                    "-",
                    "-",
                ]
            )
            continue
        table.append(
            [
                e.mode.value,
                e.gpu,
                str(e.gpus),
                str(e.nodes),
                str(e.tp),
                str(e.pp),
                str(e.dp),
                str(e.ep),
                f"{e.output_tokens_per_second_per_gpu:,.0f}",
                f"{e.total_tokens_per_second:,.0f}",
                e.bound_by,
                _money(e.dollars_per_million_tokens),
                _money(e.dollars_per_million_tokens_observed),
            ]
        )
    return columns(table)


def memory_gb(p: facts.Pool) -> float:
    """The product's memory as sold (hardware table), else what the node labels say. (The
    capacity model uses the label's figure, `Pool.gpu_memory_gb`, when nodes carry one.)"""
    return p.hardware.memory_gb if p.hardware else p.gpu_memory_gb


def table(evaluation: planning.Evaluation) -> str:
    plan = evaluation.plan
    d = evaluation.decision
    pools = (
        ", ".join(
            f"{p.node_count}x{p.gpus_per_node} {p.gpu} {memory_gb(p):g} GB "
            f"({'NVLink' if p.intra_node_nvlink else 'no NVLink'}, {p.fabric})"
            for p in evaluation.cluster.pools
        )
        or "no GPU nodes"
    )
    head = [
        f"ServingPlan {plan.namespace}/{plan.name}: {plan.spec.model.name} "
        f"(mode {plan.spec.mode.value})",
        f"Cluster:  {evaluation.cluster.source}: {pools}",
        f"Traffic:  {evaluation.traffic.source or 'observed'}",
        f"Decision: {d.mode.value} ({d.reason}): {d.message}",
    ]
    return "\n".join(
        [*head, "", criteria_table(d.rows), "", estimates_table(evaluation.estimates())]
    )


def status_table(status: api.ServingPlanStatus, title: str) -> str:
    """The same table from a live plan's status (for `breakeven explain`)."""
    head = [
        title,
        f"Mode: {status.mode.value if status.mode else '-'}  Target: "
        f"{status.target_mode.value if status.target_mode else '-'}  Phase: "
        f"{status.phase.value if status.phase else '-'}  Ready: {status.ready or '-'}",
        f"Decision: {status.reason or '-'}: {status.message or ''}",
    ]
    return "\n".join(
        [*head, "", criteria_table(status.criteria), "", estimates_table(status.estimates)]
    )


def as_dict(evaluation: planning.Evaluation) -> dict[str, Any]:
    d = evaluation.decision
    return {
        "plan": f"{evaluation.plan.namespace}/{evaluation.plan.name}",
        "model": evaluation.plan.spec.model.name,
        "mode": d.mode.value,
        "rubricMode": d.rubric_mode.value,
        "reason": d.reason,
        "message": d.message,
        "criteria": [r.model_dump(by_alias=True, mode="json", exclude_none=True) for r in d.rows],
        "estimates": [
            e.model_dump(by_alias=True, mode="json", exclude_none=True)
            for e in evaluation.estimates()
        ],
        "cluster": {
            "source": evaluation.cluster.source,
            "pools": [
                {
                    "gpu": p.gpu,
                    "nodes": p.node_count,
                    "gpusPerNode": p.gpus_per_node,
                    "nvlink": p.intra_node_nvlink,
                    "gpuMemoryGb": memory_gb(p),
                    "fabric": p.fabric,
                    "fabrics": p.fabrics,
                }
                for p in evaluation.cluster.pools
            ],
        },
        "traffic": evaluation.traffic.model_dump(by_alias=True, mode="json", exclude_none=True),
    }


def manifests_for(
    evaluation: planning.Evaluation,
    mode: api.ServingMode,
    candidate: rubric.Candidate | None = None,
    telemetry_options: telemetry.Options = telemetry.DEFAULT,
) -> list[dict[str, Any]]:
    """The workload objects for one mode, sized as `candidate` (default: as evaluated), with
    the MoE telemetry as `telemetry_options` says. Raises RenderFailure."""
    candidate = candidate or evaluation.candidate(mode)
    if candidate is None or not candidate.estimate.feasible:
        raise RenderFailure(
            f"spec.mode: no GPU pool in {evaluation.cluster.source or 'the cluster'} can host "
            f"{evaluation.arch_for(mode).name} as {mode.value}"
        )
    try:
        workloads = rendering.render(
            evaluation.plan, mode, candidate.estimate, candidate.pool, evaluation.arch_for(mode),
            telemetry_options,
        )  # fmt: skip
    except rendering.RenderError as exc:
        raise RenderFailure(str(exc)) from None
    return workloads


def render_manifests(evaluation: planning.Evaluation, both: bool = False) -> list[dict[str, Any]]:
    """The manifests the operator would apply for the decided mode (or both modes)."""
    decided = evaluation.decision.mode
    modes = [decided] + ([m for m in api.ServingMode if m != decided] if both else [])
    docs: list[dict[str, Any]] = []
    for mode in modes:
        if both and evaluation.candidate(mode) is None:
            continue
        docs.extend(manifests_for(evaluation, mode))
    docs.append(rendering.service(evaluation.plan, decided))
    if evaluation.plan.spec.gateway is not None:
        docs.append(routes.http_route(evaluation.plan))
    return docs
