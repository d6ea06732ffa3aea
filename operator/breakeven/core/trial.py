"""The expert-balance trial, as pure decisions (docs/operations.md, "The trial").

A plan served dense has no expert-parallel ranks to measure, so `expertBalance` stays Unknown
and the plan could never be promoted. When every other gating row holds Go (for the promotion
window) and no balance has been measured, the operator runs a trial: one replica of the MoE
workload the plan would run (one EP group, with Breakeven's EPLB telemetry), beside dense, in the
plan's Service (Canary: it takes the share of requests its endpoints have) or behind the plan's
HTTPRoute's RequestMirror filter (Shadow: a copy of mirrorPercent of the requests, its answers
discarded; rendering/routes.py). It never takes GPUs from dense: without room for dense and the
trial at once, the trial waits (Pending), as a Shadow trial does where no HTTPRoute is served.

    no trial ──eligible, room──> Running ──duration, balance Go──> Passed ──> promotion (the
        │  no room: Pending        │                                         switch reuses the
        │                          ├─ pods broken / never ready / no EPLB    trial workload)
        │                          │  telemetry / balance StayDense ──> Failed (removed; no new
        │                          │                                     trial before retryAfter)
        │                          └─ spec changed, a gate lapsed, trial turned off ──> Aborted
        └── (expertBalance Go already, pinned mode, trial off: nothing)

`decide` is pure; `switching.step` asks it each reconcile and turns the answer into actions (keep
one MoE replica and select both modes, or delete the trial workload) and status.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple

from breakeven.core import api, planning

P = api.TrialPhase
V = api.Verdict
C = api.Criterion

# A trial's events: (type, reason, message); switching.Event carries them.
TrialEvent = tuple[Literal["Normal", "Warning"], str, str]
LIVE = frozenset({P.PENDING, P.RUNNING, P.PASSED})  # phases with (or waiting for) a workload
NO_TELEMETRY = "no EPLB telemetry from the trial: is it being scraped?"


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class MoESeen(NamedTuple):
    """The plan's MoE workload as the cluster shows it (the trial's, while one runs)."""

    exists: bool = False
    ready: int = 0
    broken: str | None = None


class Gates(NamedTuple):
    """What the other gating rows say, computed by switching (which owns the clocks).

    start: why a trial may not start now (a gating row other than expertBalance not Go, or not
    Go for the promotion window yet); None when it may. run: why a running trial must stop (a
    gating row other than expertBalance whose last known verdict is not Go); None when it may
    go on. room: why the pool cannot hold dense and the trial at once; None when it can.
    waiting: why no MoE workload may be applied now (a broken MoE attempt's back-off).
    route: Shadow only: why the cluster cannot take the HTTPRoute that mirrors to the trial (a
    trial waits Pending for it, a running one is aborted).
    """

    start: str | None
    run: str | None
    room: str | None = None
    waiting: str | None = None
    route: str | None = None  # Shadow: why the plan's HTTPRoute cannot mirror (no CRD served)


class Decision(NamedTuple):
    """What the trial wants this reconcile."""

    status: api.TrialStatus | None
    run: bool = False  # keep one MoE replica beside dense, both selected by the Service
    remove: bool = False  # delete the trial's workload
    hold: str | None = None  # promotion waits for the trial: why
    events: tuple[TrialEvent, ...] = ()


def _status(
    prev: api.TrialStatus | None,
    phase: api.TrialPhase,
    now: dt.datetime,
    **fields: object,
) -> api.TrialStatus:
    """The next status, keeping the trial's fields: `since` moves only when the phase changes."""
    base: dict[str, object] = prev.model_dump(by_alias=False) if prev is not None else {}
    if prev is None or prev.phase != phase:
        base["since"] = _rfc3339(now)
    return api.TrialStatus.model_validate({**base, "phase": phase, **fields})


def _seconds(text: str) -> float:
    return api.parse_duration(text)


def decide(
    evaluation: planning.Evaluation,
    prev: api.TrialStatus | None,
    active: api.ServingMode | None,
    moe: MoESeen,
    dense_ready: int,
    gates: Gates,
    workload: str,
    now: dt.datetime,
) -> Decision:
    """The trial's next step. Purely computational."""
    plan = evaluation.plan
    spec = plan.spec.trial
    generation = plan.metadata.generation
    # A Passed trial is live until the promotion took its workload over (workload cleared).
    live = prev is not None and prev.phase in LIVE and (prev.phase != P.PASSED or prev.workload)
    if active == api.ServingMode.MOE:
        # MoE serves (the trial passed and the switch happened, or it never needed one): the
        # MoE workload is the serving one now, never the trial's to delete.
        if prev is not None and prev.phase in (P.PENDING, P.RUNNING):
            return Decision(_status(prev, P.ABORTED, now, reason="the plan serves MoE"))
        if prev is not None and prev.phase == P.PASSED and prev.workload:
            promoted = f"{prev.reason}; promoted: {prev.workload} serves as the MoE workload"
            return Decision(
                prev.model_copy(update={"workload": None, "share": None, "reason": promoted})
            )
        return Decision(prev)

    def abort(reason: str) -> Decision:
        return Decision(
            _status(prev, P.ABORTED, now, reason=reason),
            remove=moe.exists,
            events=(("Normal", "TrialAborted", f"trial aborted: {reason}"),),
        )

    off = None
    if plan.spec.mode != api.Mode.AUTO:
        off = f"spec.mode pins {plan.spec.mode.value}"
    elif not spec.enabled:
        off = "spec.trial.enabled is false"
    elif C.EXPERT_BALANCE not in plan.spec.policy.gating:
        off = "expertBalance does not gate"
    if live and prev is not None:
        if off:
            return abort(off)
        if prev.generation is not None and prev.generation != generation:
            return abort(
                f"the plan's spec changed (generation {prev.generation} -> {generation}) "
                "mid-trial; a new trial starts on the new spec"
            )
        if gates.run:
            return abort(gates.run)
        if gates.route and prev.phase != P.PENDING:
            return abort(gates.route)
        if prev.phase == P.PENDING:
            return _pending_or_start(evaluation, prev, moe, dense_ready, gates, workload, now)
        if prev.phase == P.RUNNING:
            return _running(evaluation, prev, moe, dense_ready, workload, now)
        return _passed(evaluation, prev, moe, dense_ready, now)
    if off:
        return Decision(prev)
    balance = evaluation.decision.row(C.EXPERT_BALANCE)
    if balance.verdict == V.GO:
        return Decision(prev)  # measured and balanced: the rubric promotes without a trial
    if prev is not None and prev.phase == P.FAILED:
        retry = _parse(prev.retry_after)
        if retry is not None and now < retry:
            return Decision(prev)
    if gates.start or gates.waiting:
        return Decision(prev)
    return _pending_or_start(evaluation, prev, moe, dense_ready, gates, workload, now)


def _share(plan: api.ServingPlan, moe_ready: int, dense_ready: int) -> str:
    """What part of the requests the trial sees: Canary, its share of the Service's ready
    endpoints; Shadow, the mirrored percentage (its answers are discarded)."""
    if plan.spec.trial.mode == api.TrialMode.SHADOW:
        return f"mirror {plan.spec.trial.mirror_percent}% of the HTTPRoute's requests"
    return f"{moe_ready}/{moe_ready + dense_ready} ready endpoints"


def _where(plan: api.ServingPlan) -> str:
    if plan.spec.trial.mode == api.TrialMode.SHADOW:
        return f"mirrored {plan.spec.trial.mirror_percent}% of the requests by the HTTPRoute"
    return "in the Service"


def _pending_or_start(
    evaluation: planning.Evaluation,
    prev: api.TrialStatus | None,
    moe: MoESeen,
    dense_ready: int,
    gates: Gates,
    workload: str,
    now: dt.datetime,
) -> Decision:
    generation = evaluation.plan.metadata.generation
    hold = "the expert-balance trial has not run yet"
    if gates.room or gates.waiting or gates.route:
        why = (
            f"no room for the trial: {gates.room}"
            if gates.room
            else str(gates.route or gates.waiting)
        )
        was = prev is not None and prev.phase == P.PENDING and prev.reason == why
        status = _status(
            prev if was else None, P.PENDING, now, reason=why, generation=generation,
            workload=None, retry_after=None,
        )  # fmt: skip
        events: tuple[TrialEvent, ...] = () if was else (("Normal", "TrialPending", why),)
        return Decision(status, hold=hold, events=events)
    status = api.TrialStatus(
        phase=P.RUNNING,
        since=_rfc3339(now),
        started_at=_rfc3339(now),
        workload=workload,
        share=_share(evaluation.plan, moe.ready, dense_ready),
        reason=f"one MoE replica beside dense, {_where(evaluation.plan)}, for "
        f"{evaluation.plan.spec.trial.duration}",
        generation=generation,
    )
    return Decision(
        status,
        run=True,
        hold="the expert-balance trial is running",
        events=(
            (
                "Normal",
                "TrialStarted",
                f"trial started: one replica of {workload} beside dense for "
                f"{evaluation.plan.spec.trial.duration}, measuring expert balance",
            ),
        ),
    )


def _failed(
    evaluation: planning.Evaluation, prev: api.TrialStatus, reason: str, now: dt.datetime
) -> Decision:
    retry = now + dt.timedelta(seconds=_seconds(evaluation.plan.spec.trial.retry_after))
    status = api.TrialStatus(
        phase=P.FAILED,
        since=_rfc3339(now),
        started_at=prev.started_at,
        ready_since=prev.ready_since,
        workload=prev.workload,
        observed_balance=prev.observed_balance,
        reason=reason,
        retry_after=_rfc3339(retry),
        generation=prev.generation,
    )
    return Decision(
        status,
        remove=True,
        events=(
            (
                "Warning",
                "TrialFailed",
                f"trial failed: {reason}; staying dense, next trial after {_rfc3339(retry)}",
            ),
        ),
    )


def _running(
    evaluation: planning.Evaluation,
    prev: api.TrialStatus,
    moe: MoESeen,
    dense_ready: int,
    workload: str,
    now: dt.datetime,
) -> Decision:
    spec = evaluation.plan.spec.trial
    started = _parse(prev.started_at) or now
    ran = (now - started).total_seconds()
    balance = evaluation.decision.row(C.EXPERT_BALANCE)
    if moe.broken:
        return _failed(evaluation, prev, f"the trial's pods are failing: {moe.broken}", now)
    ready_since = _parse(prev.ready_since)
    if ready_since is None and moe.exists and moe.ready > 0:
        ready_since = now
    if ready_since is None:
        if ran > _seconds(spec.ready_timeout):
            return _failed(
                evaluation, prev, f"the trial never became ready within {spec.ready_timeout}", now
            )
    elif balance.verdict == V.UNKNOWN and (now - ready_since).total_seconds() > _seconds(
        spec.telemetry_timeout
    ):
        return _failed(
            evaluation, prev, f"{NO_TELEMETRY} (none {spec.telemetry_timeout} after ready)", now
        )
    observed = balance.observed if balance.verdict != V.UNKNOWN else prev.observed_balance
    if ran >= _seconds(spec.duration) and ready_since is not None:
        if balance.verdict == V.GO and spec.mode == api.TrialMode.SHADOW:
            # The Shadow trial's vLLM labels its metrics with a shadow name (rendering/routes.py):
            # rolling its pods back to the model's name under the Service would leave an EP group
            # down (LeaderWorkerSet replaces a group in place), so the trial workload goes and
            # the promotion is an ordinary make-before-break switch to a fresh MoE workload.
            status = _status(
                prev, P.PASSED, now, workload=None, share=None,
                reason=f"balance held for {spec.duration}: {observed}; the Shadow trial's "
                "workload is removed and the promotion starts a fresh MoE workload",
                observed_balance=observed, ready_since=_rfc3339(ready_since),
            )  # fmt: skip
            return Decision(
                status,
                remove=True,
                hold="the Shadow trial's workload is being removed",
                events=(("Normal", "TrialPassed", f"trial passed: {observed}; promotion next"),),
            )
        if balance.verdict == V.GO:
            status = _status(
                prev, P.PASSED, now, reason=f"balance held for {spec.duration}: {observed}",
                observed_balance=observed, ready_since=_rfc3339(ready_since),
            )  # fmt: skip
            return Decision(
                status,
                run=True,
                events=(("Normal", "TrialPassed", f"trial passed: {observed}; promotion next"),),
            )
        if balance.verdict in (V.STAY_DENSE, V.WAIT):
            return _failed(
                evaluation,
                prev.model_copy(update={"observed_balance": observed}),
                f"imbalance: {observed} ({balance.threshold})",
                now,
            )
        return _failed(evaluation, prev, NO_TELEMETRY, now)
    ends = _rfc3339(started + dt.timedelta(seconds=_seconds(spec.duration)))
    status = _status(
        prev, P.RUNNING, now, workload=workload,
        share=_share(evaluation.plan, moe.ready, dense_ready),
        observed_balance=observed,
        ready_since=_rfc3339(ready_since) if ready_since else None,
        reason=f"measuring expert balance until {ends}"
        if ready_since
        else f"waiting for the trial's pods to be ready (at most {spec.ready_timeout})",
    )  # fmt: skip
    return Decision(status, run=True, hold="the expert-balance trial is running")


def _passed(
    evaluation: planning.Evaluation,
    prev: api.TrialStatus,
    moe: MoESeen,
    dense_ready: int,
    now: dt.datetime,
) -> Decision:
    """Passed, dense still serving: the trial workload stays until promotion scales it up."""
    if moe.broken:
        return _failed(evaluation, prev, f"the trial's pods are failing: {moe.broken}", now)
    share = _share(evaluation.plan, moe.ready, dense_ready)
    return Decision(_status(prev, P.PASSED, now, share=share), run=True)
