"""Hysteresis and make-before-break switching: from a decision to the next safe step.

The rubric says what the plan should run now; this module decides what to *do* about it, one
reconcile at a time, from the previous status and what the cluster shows:

    rubric rows ──> carry `since` ──> hysteresis ──> target mode
                                                        │
    observed workloads ─────────────────────────────> step ──> actions + new status

Hysteresis (docs/operations.md):
- promotion to MoE only once every gating row has held Go for `policy.promotionWindow`; rows
  computed from Prometheus history (sustainedLoad, expertBalance) count that history, so a p10
  over 14 days of traffic is 14 days of sustained load;
- demotion once a gating row has been non-Go for longer than `policy.demotionGrace`, or the
  recent traffic has stayed under the sustainedLoad floor for `policy.demotionWindow`;
- at most one switch per `policy.minDwell`, except the fallback from a broken MoE workload.

A switch is make-before-break: the target workload is applied, the Service moves only when it is
ready, and the old workload is deleted after `policy.drainPeriod`. When the pool cannot hold both
workloads, the switch goes in steps (one unit of the old released for each unit of the new that
becomes ready, the Service selecting both meanwhile); with a single replica and no room, a
planned switch waits and says so.

Purely computational: the operator observes the workloads and carries out the actions.

`step` reads as its situations: the plan runs what it should (`_steady`), or a switch is in
flight and the pool has room for both workloads (`_side_by_side`), or has not and there is one
replica (`_blocked`), or several (`_stepwise`). Each returns a `Step`; the switch's progress is a
typed `api.SwitchStatus` whose `step` is an `api.SwitchStep`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from breakeven.core import api, planning, trial
from breakeven.core.rendering import routes as rendered_routes
from breakeven.core.rendering import workloads as rendered_workloads

V = api.Verdict
C = api.Criterion
DENSE = api.ServingMode.DENSE
MOE = api.ServingMode.MOE

# A broken MoE workload is not tried again for max(minDwell, BACKOFF_BASE_S), doubling with each
# failure in a row, at most BACKOFF_CAP_S.
BACKOFF_BASE_S = 300.0
BACKOFF_CAP_S = 86400.0

# Rows computed from Prometheus history: their history counts toward the promotion window.
HISTORY_ROWS = frozenset({C.SUSTAINED_LOAD, C.EXPERT_BALANCE, C.TRAFFIC_REGULARITY})


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Observed(BaseModel):
    """One workload as the cluster shows it."""

    model_config = ConfigDict(frozen=True)

    mode: api.ServingMode
    exists: bool = False
    kind: str = ""
    replicas: int = 0
    ready_replicas: int = 0
    broken: str | None = Field(default=None, description="why the workload is failing, if it is")
    down_since: str | None = Field(
        default=None, description="since when it has had no ready pods after it had served"
    )
    stale: tuple[str, ...] = Field(
        default=(),
        description="objects of this mode the plan no longer renders (`Kind/name`: a Deployment "
        "after the mode became a LeaderWorkerSet, a prefill set after P/D was turned off); not "
        "counted as its workload",
    )


class Action(BaseModel):
    """One thing the operator must do to the cluster, in order."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["apply", "delete", "select", "prune", "route"]
    mode: api.ServingMode | None = None
    replicas: int | None = None
    selector: Literal["mode", "both"] = "mode"
    objects: tuple[str, ...] = ()  # prune: the stale objects (`Kind/name`) to delete
    shadow: bool = False  # apply: a Shadow trial's workload (its metrics under a shadow name)
    mirror: int | None = None  # route: the percentage mirrored to the trial's Service


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class Step(BaseModel):
    """What one reconcile decided: actions to carry out and the status to write."""

    model_config = ConfigDict(frozen=True)

    mode: api.ServingMode | None
    target: api.ServingMode
    phase: api.Phase
    reason: str
    message: str
    rows: tuple[api.CriterionRow, ...]
    actions: tuple[Action, ...]
    events: tuple[Event, ...] = ()
    switch: api.SwitchStatus | None = None
    last_switch_time: str | None = None
    moe_backoff: api.MoEBackoff | None = None
    fallback: bool = False
    switching: bool = False  # a switch is moving: the operator polls the plan fast
    trial: api.TrialStatus | None = None
    route: str | None = None  # spec.gateway: what the HTTPRoute does, or why it is not applied


# ------------------------------------------------------------------------------ hysteresis


def known(row: api.CriterionRow) -> api.Verdict | None:
    """The row's verdict, or for an Unknown row the last verdict it had from real facts."""
    return row.verdict if row.verdict != V.UNKNOWN else row.last_known


def carry_since(
    previous: Sequence[api.CriterionRow], rows: Sequence[api.CriterionRow], now: dt.datetime
) -> tuple[api.CriterionRow, ...]:
    """Carry each row's two clocks from the previous status (docs/reliability.md).

    `since` dates the row's known verdict: it holds while the verdict holds, and an Unknown (a
    failed read, facts missing) neither ends nor starts a run, so one failed Prometheus read does
    not restart a 14-day promotion clock. `not_go_since` dates the current run of non-Go verdicts
    of any kind, so a row flipping StayDense <-> Unknown keeps its demotion clock running.
    """
    before = {r.name: r for r in previous}
    out = []
    for row in rows:
        old = before.get(row.name)
        last = known(old) if old is not None else None
        last_known = last if row.verdict == V.UNKNOWN else None
        now_known = row.verdict if row.verdict != V.UNKNOWN else last
        same_run = old is not None and old.since and (last == now_known)
        since = old.since if same_run and old is not None else None
        not_go = None
        if row.verdict != V.GO:
            if old is not None and old.verdict != V.GO:
                not_go = old.not_go_since or old.since
            not_go = not_go or rfc3339(now)
        out.append(
            row.model_copy(
                update={
                    "since": since or rfc3339(now),
                    "last_known": last_known,
                    "not_go_since": not_go,
                }
            )
        )
    return tuple(out)


def held_for(row: api.CriterionRow, observed_history: float, now: dt.datetime) -> float:
    """Seconds the row has held its verdict, counting Prometheus history for traffic rows."""
    since = parse_time(row.since) or now
    held = (now - since).total_seconds()
    if row.name in HISTORY_ROWS and row.verdict == V.GO:
        held = max(held, observed_history)
    return held


def not_go_for(row: api.CriterionRow, now: dt.datetime) -> float:
    """Seconds the row has not been Go (0 for a Go row)."""
    if row.verdict == V.GO:
        return 0.0
    since = parse_time(row.not_go_since or row.since) or now
    return (now - since).total_seconds()


def counts_toward_demotion(row: api.CriterionRow) -> bool:
    """A gating row that is not Go, and whose last real facts were not Go either: an Unknown
    after Go (Prometheus down, facts missing) is no news and never demotes by itself."""
    verdict = known(row)
    return row.gating and row.verdict != V.GO and verdict is not None and verdict != V.GO


def _recent_below_floor(evaluation: planning.Evaluation) -> bool:
    """Whether traffic over the demotion window stayed under the sustainedLoad floor."""
    peak = evaluation.traffic.recent_peak_tokens_per_second
    moe = evaluation.decision.floor
    if peak is None or moe is None:
        return False
    floor = (
        evaluation.plan.spec.policy.sustained_load.busy_fraction
        * moe.estimate.total_tokens_per_second
    )
    return peak < floor


class Target(NamedTuple):
    """What hysteresis aims for, and why."""

    mode: api.ServingMode
    reason: str
    message: str
    fallback: bool = False


def _moe_possible(evaluation: planning.Evaluation) -> bool:
    moe = evaluation.decision.moe
    return moe is not None and moe.estimate.feasible


def _dwell_ok(
    evaluation: planning.Evaluation, last_switch: dt.datetime | None, now: dt.datetime
) -> bool:
    min_dwell = api.parse_duration(evaluation.plan.spec.policy.min_dwell)
    return last_switch is None or (now - last_switch).total_seconds() >= min_dwell


def _as_decided(evaluation: planning.Evaluation, mode: api.ServingMode) -> Target:
    decision = evaluation.decision
    return Target(mode, decision.reason, decision.message)


def backoff_delay(evaluation: planning.Evaluation, failures: int) -> float:
    """Seconds before MoE is tried again after `failures` broken attempts in a row."""
    base = max(api.parse_duration(evaluation.plan.spec.policy.min_dwell), BACKOFF_BASE_S)
    return float(min(BACKOFF_CAP_S, base * 2 ** min(max(failures - 1, 0), 32)))


def backoff(
    evaluation: planning.Evaluation,
    previous: api.MoEBackoff | None,
    moe_broken: str | None,
    now: dt.datetime,
) -> api.MoEBackoff | None:
    """Record a broken MoE attempt: one failure per attempt (a broken workload seen again while
    it backs off is the same failure), and when MoE may be tried again."""
    if not moe_broken:
        return previous
    retry_after = parse_time(previous.retry_after) if previous else None
    if previous is not None and retry_after is not None and now < retry_after:
        return previous
    failures = (previous.failures if previous else 0) + 1
    delay = backoff_delay(evaluation, failures)
    return api.MoEBackoff(
        failures=failures,
        last_failure=rfc3339(now),
        retry_after=rfc3339(now + dt.timedelta(seconds=delay)),
        reason=moe_broken,
    )


def _backing_off(backoff_: api.MoEBackoff | None, now: dt.datetime) -> str | None:
    """Why MoE is not tried now, while a broken attempt's back-off runs."""
    if backoff_ is None:
        return None
    retry_after = parse_time(backoff_.retry_after)
    if retry_after is None or now >= retry_after:
        return None
    return (
        f"the MoE workload broke ({backoff_.reason}; {backoff_.failures} in a row): next try "
        f"after {backoff_.retry_after}"
    )


def _pinned(evaluation: planning.Evaluation, moe_broken: str | None, waiting: str | None) -> Target:
    """`spec.mode` pins a mode: it runs, unless MoE cannot be hosted, is broken or backs off."""
    pinned = api.ServingMode(evaluation.plan.spec.mode.value)
    if pinned == MOE and not _moe_possible(evaluation):
        return Target(
            DENSE,
            "PinnedMoEInfeasible",
            "spec.mode pins MoE but no GPU pool can host an EP group; serving dense",
            True,
        )
    if pinned == MOE and moe_broken:
        return Target(
            DENSE,
            "MoEBroken",
            f"the MoE workload is broken ({moe_broken}); dense comes up while it is",
            True,
        )
    if pinned == MOE and waiting:
        return Target(DENSE, "MoEBackoff", f"spec.mode pins MoE but {waiting}; serving dense", True)
    return _as_decided(evaluation, pinned)


def _promotion(
    evaluation: planning.Evaluation,
    rows: Sequence[api.CriterionRow],
    active: api.ServingMode | None,
    dwell_ok: bool,
    moe_broken: str | None,
    waiting: str | None,
    now: dt.datetime,
) -> Target:
    """Dense (or nothing yet) runs: MoE once every gating row has held Go for the window, and
    no broken MoE attempt's back-off runs."""
    policy = evaluation.plan.spec.policy
    decision = evaluation.decision
    if decision.rubric_mode != MOE or not _moe_possible(evaluation):
        return _as_decided(evaluation, DENSE)
    if moe_broken:
        return Target(
            DENSE,
            "MoEBroken",
            f"the MoE workload is failing ({moe_broken}); staying dense until it is fixed or "
            "deleted",
        )
    if waiting:
        return Target(DENSE, "MoEBackoff", f"MoE is due, but {waiting}")
    traffic = evaluation.traffic
    history = traffic.observed_seconds if traffic.has_volume else 0.0
    window = api.parse_duration(policy.promotion_window)
    young = [r for r in rows if r.gating and held_for(r, history, now) < window]
    if young:
        names = ", ".join(r.name.value for r in young)
        return Target(
            DENSE,
            "PromotionPending",
            f"every gating row is Go, but {names} must hold Go for {policy.promotion_window} "
            "before the move to MoE",
        )
    if active == DENSE and not dwell_ok:
        return Target(
            DENSE, "MinDwell", f"MoE is due, but the last switch was under {policy.min_dwell} ago"
        )
    return _as_decided(evaluation, MOE)


def _demotion_cause(
    evaluation: planning.Evaluation, rows: Sequence[api.CriterionRow], now: dt.datetime
) -> Target | None:
    """Why MoE should end, if it should: a gating row non-Go past the grace, or quiet traffic."""
    policy = evaluation.plan.spec.policy
    grace = api.parse_duration(policy.demotion_grace)
    past_grace = [r for r in rows if r.gating and not_go_for(r, now) > grace]
    if past_grace and not _moe_possible(evaluation):
        return Target(DENSE, "MoEInfeasible", "no GPU pool can host the EP group any more", True)
    lapsed = [r for r in past_grace if counts_toward_demotion(r)]
    if lapsed:
        first = lapsed[0]
        shown = first.verdict.value
        if first.verdict == V.UNKNOWN and first.last_known is not None:
            shown = f"{first.last_known.value} (Unknown now)"
        return Target(
            DENSE,
            first.name[0].upper() + first.name[1:] + "Lapsed",
            f"{first.name} has not been Go for over {policy.demotion_grace}, last seen "
            f"{shown}: {first.reason}",
        )
    if _recent_below_floor(evaluation):
        return Target(
            DENSE,
            "TrafficBelowFloor",
            f"traffic over the last {policy.demotion_window} stayed under the sustainedLoad floor",
        )
    return None


def _demotion(
    evaluation: planning.Evaluation,
    rows: Sequence[api.CriterionRow],
    dwell_ok: bool,
    now: dt.datetime,
) -> Target:
    """MoE runs: dense once a demotion cause holds (after min dwell, unless a fallback)."""
    policy = evaluation.plan.spec.policy
    cause = _demotion_cause(evaluation, rows, now)
    if cause is None:
        pending = [r for r in rows if counts_toward_demotion(r)]
        unknown = [r for r in rows if r.gating and r.verdict != V.GO and r not in pending]
        if not pending and unknown:
            names = ", ".join(r.name.value for r in unknown)
            return Target(
                MOE,
                "FactsUnknown",
                f"{names} Unknown ({unknown[0].reason}); missing facts never demote, MoE holds "
                "until they return",
            )
        if pending:
            return Target(
                MOE,
                "DemotionGrace",
                f"{pending[0].name} is {pending[0].verdict.value}; demotion after "
                f"{policy.demotion_grace}",
            )
        return _as_decided(evaluation, MOE)
    if cause.fallback or dwell_ok:
        return cause
    return Target(MOE, "MinDwell", f"{cause.message}; waiting for min dwell {policy.min_dwell}")


def hysteresis(
    evaluation: planning.Evaluation,
    rows: Sequence[api.CriterionRow],
    active: api.ServingMode | None,
    last_switch: dt.datetime | None,
    moe_broken: str | None,
    now: dt.datetime,
    backoff_: api.MoEBackoff | None = None,
) -> Target:
    """The mode to aim for. Purely computational."""
    waiting = _backing_off(backoff_, now)
    if evaluation.plan.spec.mode != api.Mode.AUTO:
        return _pinned(evaluation, moe_broken, waiting)
    if active == MOE and moe_broken:
        return Target(
            DENSE,
            "MoEBroken",
            f"the MoE workload is broken ({moe_broken}); falling back to dense",
            True,
        )
    dwell_ok = _dwell_ok(evaluation, last_switch, now)
    if active in (None, DENSE):
        return _promotion(evaluation, rows, active, dwell_ok, moe_broken, waiting, now)
    return _demotion(evaluation, rows, dwell_ok, now)


# ------------------------------------------------------------------------------ switching


def room_for_both(evaluation: planning.Evaluation, replicas: int) -> bool:
    """Whether the pools can hold both modes' workloads at once (from pool sizes)."""
    dense, moe = evaluation.decision.dense, evaluation.decision.moe
    if dense is None or moe is None:
        return True
    if dense.pool.gpu != moe.pool.gpu or dense.pool.gpus_per_node != moe.pool.gpus_per_node:
        return True
    need = replicas * (dense.estimate.gpus + moe.estimate.gpus)
    return need <= dense.pool.total_gpus


def _other(mode: api.ServingMode) -> api.ServingMode:
    return DENSE if mode == MOE else MOE


def _ready(o: Observed, want: int) -> bool:
    return o.exists and o.replicas >= want and o.ready_replicas >= want


class Situation(NamedTuple):
    """What every situation of `step` reads: the inputs, and what hysteresis made of them."""

    evaluation: planning.Evaluation
    prev: api.ServingPlanStatus
    observed: Mapping[api.ServingMode, Observed]
    now: dt.datetime
    rows: tuple[api.CriterionRow, ...]
    active: api.ServingMode | None
    target: Target
    events: tuple[Event, ...]  # those already due (a changed target)
    backoff: api.MoEBackoff | None
    trial: trial.Decision | None = None
    routes: str | None = None  # why this cluster cannot take the plan's HTTPRoute; None: it can

    @property
    def replicas(self) -> int:
        return self.evaluation.plan.spec.serving.replicas

    def seen(self, mode: api.ServingMode) -> Observed:
        return self.observed.get(mode, Observed(mode=mode))

    def step(self, mode: api.ServingMode | None, phase: api.Phase, **fields: object) -> Step:
        """A Step with this situation's defaults; `fields` override them."""
        base: dict[str, object] = {
            "mode": mode,
            "target": self.target.mode,
            "phase": phase,
            "reason": self.target.reason,
            "message": self.target.message,
            "rows": self.rows,
            "actions": (),
            "events": self.events,
            "last_switch_time": self.prev.last_switch_time,
            "moe_backoff": self.backoff,
            "fallback": self.target.fallback,
            "trial": self.trial.status if self.trial else self.prev.trial,
            "route": self.prev.route,
        }
        return Step.model_validate({**base, **fields})

    def drain_until(self) -> str:
        drain = api.parse_duration(self.evaluation.plan.spec.policy.drain_period)
        return rfc3339(self.now + dt.timedelta(seconds=drain))


def step(
    evaluation: planning.Evaluation,
    previous: api.ServingPlanStatus | None,
    observed: Mapping[api.ServingMode, Observed],
    now: dt.datetime,
    routes: str | None = None,
) -> Step:
    """One reconcile's worth of progress. Purely computational; the operator acts on it.

    `routes`: why the cluster cannot take the plan's HTTPRoute (Gateway API's CRD is not served);
    None when it can or the plan names no gateway."""
    s = _situation(evaluation, previous or api.ServingPlanStatus(), observed, now, routes)
    return _routed(s, _with_trial(s, _pruned(s, _step(s))))


def _step(s: Situation) -> Step:
    if s.active is None or s.active == s.target.mode:
        return _steady(s)
    s = _switch_started(s)
    if room_for_both(s.evaluation, s.replicas) or s.target.fallback:
        return _side_by_side(s)
    if s.replicas < 2:
        return _blocked(s)
    return _stepwise(s)


def _pruned(s: Situation, step_: Step) -> Step:
    """Delete a mode's stale objects (its workload kind changed, or P/D was turned off) once
    the workload that replaces them is ready; until then they keep serving."""
    deleted = {a.mode for a in step_.actions if a.kind == "delete"}
    prunes = tuple(
        Action(kind="prune", mode=mode, objects=obs.stale)
        for mode, obs in sorted(s.observed.items())
        if obs.stale and mode not in deleted and _ready(obs, max(obs.replicas, 1))
    )
    if not prunes:
        return step_
    return step_.model_copy(update={"actions": (*step_.actions, *prunes)})


def _situation(
    evaluation: planning.Evaluation,
    prev: api.ServingPlanStatus,
    observed: Mapping[api.ServingMode, Observed],
    now: dt.datetime,
    routes: str | None = None,
) -> Situation:
    rows = carry_since(prev.criteria, evaluation.decision.rows, now)
    active = prev.mode
    if active is None:
        # No mode in status (a first placement, or status lost by an invalid spec or a dry run):
        # whatever already serves is active, so nothing ready is ever switched off blindly.
        active = next(
            (m for m in (MOE, DENSE) if (o := observed.get(m)) and o.exists and o.ready_replicas),
            None,
        )
    moe = observed.get(MOE, Observed(mode=MOE))
    moe_broken = moe.broken if moe.exists else None
    backoff_ = backoff(evaluation, prev.moe_backoff, moe_broken, now)
    target = hysteresis(
        evaluation, rows, active, parse_time(prev.last_switch_time), moe_broken, now, backoff_
    )
    trial_ = _trial(evaluation, prev, observed, rows, active, backoff_, now, routes)
    if trial_.hold and active == DENSE and target.mode == MOE:
        target = Target(DENSE, "TrialPending", f"MoE waits for the trial: {trial_.hold}")
    events: tuple[Event, ...] = ()
    if prev.target_mode is not None and prev.target_mode != target.mode:
        events = (
            Event(
                type="Warning" if target.fallback else "Normal",
                reason="TargetChanged",
                message=f"target mode {prev.target_mode.value} -> {target.mode.value}: "
                f"{target.message}",
            ),
        )
    return Situation(
        evaluation, prev, observed, now, rows, active, target, events, backoff_, trial_, routes
    )


# ------------------------------------------------------------------------------ the trial


def trial_gates(
    evaluation: planning.Evaluation,
    rows: Sequence[api.CriterionRow],
    backoff_: api.MoEBackoff | None,
    now: dt.datetime,
    routes: str | None = None,
) -> trial.Gates:
    """What the rows other than expertBalance, the pool, the back-off and (Shadow) the cluster's
    Gateway API say about a trial."""
    policy = evaluation.plan.spec.policy
    others = [r for r in rows if r.gating and r.name != C.EXPERT_BALANCE]
    infeasible = None if _moe_possible(evaluation) else "no GPU pool can host an EP group"
    start = infeasible
    not_go = [r for r in others if r.verdict != V.GO]
    if start is None and not_go:
        start = f"{not_go[0].name.value} is {not_go[0].verdict.value}"
    if start is None:
        traffic = evaluation.traffic
        history = traffic.observed_seconds if traffic.has_volume else 0.0
        window = api.parse_duration(policy.promotion_window)
        young = [r.name.value for r in others if held_for(r, history, now) < window]
        if young:
            start = f"{', '.join(young)} must hold Go for {policy.promotion_window}"
    if start is None:
        start = _measured_hot(evaluation, rows, now)
    lapsed = [(r, v) for r in others if (v := known(r)) is not None and v != V.GO]
    run = infeasible
    if run is None and lapsed:
        row, verdict = lapsed[0]
        run = f"{row.name.value} is {verdict.value}: {row.reason}"
    shadow = evaluation.plan.spec.trial.mode == api.TrialMode.SHADOW
    return trial.Gates(
        start=start,
        run=run,
        room=trial_room(evaluation),
        waiting=_backing_off(backoff_, now),
        route=f"spec.trial.mode Shadow: {routes}" if shadow and routes else None,
    )


def _measured_hot(
    evaluation: planning.Evaluation, rows: Sequence[api.CriterionRow], now: dt.datetime
) -> str | None:
    """Why no trial starts yet when Breakeven's EPLB telemetry already shows a hot EP rank (a
    plan demoted from MoE for it, or a failed trial whose series are still in the window): a
    measurement, so like a failed trial no new one before spec.trial.retryAfter after the
    row turned StayDense. A hot expert from spec.traffic.expertLoadMetric does not hold a trial
    back: EPLB may balance it across the ranks, which only a trial shows."""
    if evaluation.traffic.rank_load_max_over_mean is None:
        return None
    row = next((r for r in rows if r.name == C.EXPERT_BALANCE), None)
    if row is None or row.verdict != V.STAY_DENSE:
        return None
    since = parse_time(row.since) or now
    retry = evaluation.plan.spec.trial.retry_after
    if (now - since).total_seconds() >= api.parse_duration(retry):
        return None
    return (
        f"expertBalance is StayDense since {row.since} ({row.observed}); no new trial before "
        f"spec.trial.retryAfter ({retry}) has passed"
    )


def trial_room(evaluation: planning.Evaluation) -> str | None:
    """Why the pool cannot run dense and one MoE replica at once (from pool sizes), or None."""
    dense, moe = evaluation.decision.dense, evaluation.decision.moe
    if dense is None or moe is None:
        return None
    if dense.pool.gpu != moe.pool.gpu or dense.pool.gpus_per_node != moe.pool.gpus_per_node:
        return None
    replicas = evaluation.plan.spec.serving.replicas
    used = replicas * dense.estimate.gpus
    if used + moe.estimate.gpus <= dense.pool.total_gpus:
        return None
    return (
        f"the pool has {dense.pool.total_gpus} {dense.pool.gpu} GPUs, dense uses {used} and one "
        f"MoE replica needs {moe.estimate.gpus}"
    )


def _trial(
    evaluation: planning.Evaluation,
    prev: api.ServingPlanStatus,
    observed: Mapping[api.ServingMode, Observed],
    rows: Sequence[api.CriterionRow],
    active: api.ServingMode | None,
    backoff_: api.MoEBackoff | None,
    now: dt.datetime,
    routes: str | None = None,
) -> trial.Decision:
    if active is None:
        return trial.Decision(prev.trial)  # nothing serves yet: no trial before dense does
    moe = observed.get(MOE, Observed(mode=MOE))
    dense = observed.get(DENSE, Observed(mode=DENSE))
    return trial.decide(
        evaluation,
        prev.trial,
        active,
        trial.MoESeen(moe.exists, moe.ready_replicas, moe.broken if moe.exists else None),
        dense.ready_replicas if dense.exists else 0,
        trial_gates(evaluation, rows, backoff_, now, routes),
        rendered_workloads.workload_name(evaluation.plan, MOE),
        now,
    )


def _with_trial(s: Situation, step_: Step) -> Step:
    """Carry out the trial's decision on a step in which dense stays: one MoE replica beside
    dense with the Service selecting both, or the trial workload deleted."""
    d = s.trial
    if d is None:
        return step_
    actions = list(step_.actions)
    update: dict[str, object] = {"trial": d.status}
    dense_stays = s.active == DENSE and step_.target == DENSE
    if d.run and dense_stays:
        actions = [a for a in actions if not (a.kind == "delete" and a.mode == MOE)]
        at = next((i for i, a in enumerate(actions) if a.kind == "select"), len(actions))
        spec = s.evaluation.plan.spec.trial
        if spec.mode == api.TrialMode.SHADOW:
            # Shadow: the Service keeps selecting dense alone; the HTTPRoute mirrors (_routed).
            actions.insert(at, Action(kind="apply", mode=MOE, replicas=1, shadow=True))
        else:
            actions = [
                *actions[:at],
                Action(kind="apply", mode=MOE, replicas=1),
                *(
                    Action(kind="select", selector="both") if a.kind == "select" else a
                    for a in actions[at:]
                ),
            ]
        if d.status is not None and d.status.phase == api.TrialPhase.RUNNING:
            update |= {"reason": "TrialRunning", "message": f"trial: {d.status.reason}"}
    elif (
        d.remove and dense_stays and not any(a.kind == "delete" and a.mode == MOE for a in actions)
    ):
        actions.append(Action(kind="delete", mode=MOE))
    if d.status is not None and d.status.phase == api.TrialPhase.PENDING and dense_stays:
        update |= {"reason": "TrialPending", "message": f"trial pending: {d.status.reason}"}
    events = tuple(Event(type=t, reason=r, message=m) for t, r, m in d.events)
    update |= {"actions": tuple(actions), "events": (*step_.events, *events)}
    return step_.model_copy(update=update)


def _routed(s: Situation, step_: Step) -> Step:
    """The plan's HTTPRoute (spec.gateway): applied plain, or mirroring to the trial's Service
    while a Shadow trial's workload runs; removed with the trial's Service when spec.gateway is
    gone. Where the cluster serves no HTTPRoute, nothing is applied and status says why."""
    plan = s.evaluation.plan
    gateway = plan.spec.gateway
    route = rendered_routes.route_name(plan)
    trial_svc = f"Service/{rendered_routes.trial_service_name(plan)}"
    if gateway is None:
        if s.prev.route is None:
            return step_
        prune = Action(kind="prune", objects=(f"HTTPRoute/{route}", trial_svc))
        return step_.model_copy(update={"actions": (*step_.actions, prune), "route": None})
    if s.routes:  # (a trial Service left from before the CRD went away goes too)
        prune = Action(kind="prune", objects=(trial_svc,))
        return step_.model_copy(
            update={
                "actions": (*step_.actions, prune),
                "route": f"HTTPRoute {route} not applied: {s.routes}",
            }
        )
    shadow = any(a.kind == "apply" and a.shadow for a in step_.actions)
    percent = plan.spec.trial.mirror_percent
    actions = list(step_.actions)
    if shadow:
        actions.append(Action(kind="route", mirror=percent))
        text = (
            f"HTTPRoute {route} to Service {rendered_workloads.service_name(plan)}, mirroring "
            f"{percent}% of requests to {trial_svc} (the Shadow trial)"
        )
    else:
        actions += [Action(kind="route"), Action(kind="prune", objects=(trial_svc,))]
        text = f"HTTPRoute {route} to Service {rendered_workloads.service_name(plan)}"
    return step_.model_copy(update={"actions": tuple(actions), "route": text})


def _steady(s: Situation) -> Step:
    """First placement, or the target runs: apply it, point the Service at it, clean up."""
    target, n = s.target.mode, s.replicas
    switch = s.prev.switch
    events = list(s.events)
    actions = [Action(kind="apply", mode=target, replicas=n), Action(kind="select", mode=target)]
    old, new = s.seen(_other(target)), s.seen(target)
    drain_until = parse_time(switch.drain_until) if switch else None
    if old.exists and old.ready_replicas > 0 and new.ready_replicas == 0:
        # The target has nothing ready yet but the other mode does (an aborted stepwise
        # switch, say): keep both selected and delete nothing until the target serves.
        actions = [
            Action(kind="apply", mode=target, replicas=n),
            Action(kind="select", selector="both"),
        ]
    elif drain_until is None or s.now >= drain_until:
        if old.exists:
            actions.append(Action(kind="delete", mode=_other(target)))
            if switch:
                events.append(
                    Event(
                        type="Normal",
                        reason="Drained",
                        message=f"deleted the {_other(target).value} workload after the drain "
                        "period",
                    )
                )
        switch = None
    phase = api.Phase.SERVING if _ready(new, n) else api.Phase.DEPLOYING
    if switch:
        phase = api.Phase.SWITCHING  # the old workload is still draining
    if new.broken:
        phase = api.Phase.DEGRADED
    backoff_ = s.backoff
    if backoff_ is not None and target == MOE and phase == api.Phase.SERVING and not switch:
        last = parse_time(s.prev.last_switch_time) or parse_time(backoff_.last_failure) or s.now
        if (s.now - last).total_seconds() >= backoff_delay(s.evaluation, backoff_.failures):
            backoff_ = None  # MoE has held as long as its back-off: the slate is clean
    if s.active is None:
        events.append(
            Event(
                type="Normal",
                reason="Deploying",
                message=f"deploying {target.value}: {s.target.message}",
            )
        )
    return s.step(
        target,
        phase,
        actions=tuple(actions),
        events=tuple(events),
        switch=switch,
        moe_backoff=backoff_,
        switching=switch is not None,
    )


def _switch_started(s: Situation) -> Situation:
    """A switch from the active mode to the target: announced once, when it starts."""
    assert s.active is not None
    switch = s.prev.switch
    if switch is not None and switch.to == s.target.mode:
        return s
    started = Event(
        type="Warning" if s.target.fallback else "Normal",
        reason="SwitchStarted",
        message=f"switching {s.active.value} -> {s.target.mode.value}: {s.target.message}",
    )
    return s._replace(events=(*s.events, started))


def _progress(s: Situation, stage: api.SwitchStep, **fields: object) -> api.SwitchStatus:
    assert s.active is not None
    switch = s.prev.switch
    if switch is not None and switch.to == s.target.mode:
        started = switch.started_at
    else:
        started = rfc3339(s.now)
    return api.SwitchStatus.model_validate(
        {"from": s.active, "to": s.target.mode, "startedAt": started, "step": stage, **fields}
    )


def _side_by_side(s: Situation) -> Step:
    """Room for both (or a fallback): the target comes up; the Service moves once it is ready."""
    assert s.active is not None
    target, n = s.target.mode, s.replicas
    new, old = s.seen(target), s.seen(s.active)
    apply = Action(kind="apply", mode=target, replicas=n)
    if _ready(new, n) or (s.target.fallback and old.ready_replicas == 0 and new.ready_replicas):
        drain = s.drain_until()
        moved = Event(
            type="Warning" if s.target.fallback else "Normal",
            reason="Switched",
            message=f"Service moved to {target.value}; {s.active.value} drains until {drain}",
        )
        return s.step(
            target,
            api.Phase.SWITCHING,
            actions=(apply, Action(kind="select", mode=target)),
            events=(*s.events, moved),
            switch=_progress(s, api.SwitchStep.DRAINING, drainUntil=drain),
            last_switch_time=rfc3339(s.now),
            switching=True,
        )
    # A fallback waits with both modes selected: whichever has ready pods serves (the broken
    # one may recover), and the Service never moves to a workload with nothing ready.
    select = Action(kind="select", selector="both") if s.target.fallback else None
    return s.step(
        s.active,
        api.Phase.SWITCHING,
        message=f"{s.target.message} (waiting for {target.value}: {new.ready_replicas}/{n} ready)",
        actions=(apply, select or Action(kind="select", mode=s.active)),
        switch=_progress(s, api.SwitchStep.WAITING_FOR_TARGET, stepwise=False),
        switching=True,
    )


def _blocked(s: Situation) -> Step:
    """No room for both and one replica: a switch would drop traffic, so it waits."""
    assert s.active is not None
    return s.step(
        s.active,
        api.Phase.SWITCHING,
        reason="NoRoomForSwitch",
        message=f"{s.target.message}; but the pool cannot run both workloads and there is "
        "one replica, so a switch would drop traffic: add GPUs or replicas",
        actions=(
            Action(kind="apply", mode=s.active, replicas=s.replicas),
            Action(kind="select", mode=s.active),
        ),
        switch=_progress(s, api.SwitchStep.BLOCKED_NO_ROOM, stepwise=True),
        # Nothing moves until the facts change: re-evaluate on the normal interval, not the
        # fast switch poll.
        fallback=False,
        switching=False,
    )


def _stepwise(s: Situation) -> Step:
    """No room for both: release one unit of the old per unit of the new that is ready."""
    assert s.active is not None
    target, n = s.target.mode, s.replicas
    new = s.seen(target)
    t_ready = min(new.ready_replicas, n) if new.exists else 0
    if t_ready >= n:
        done = Event(
            type="Normal",
            reason="Switched",
            message=f"stepwise switch done: Service on {target.value}",
        )
        return s.step(
            target,
            api.Phase.SWITCHING,
            actions=(
                Action(kind="apply", mode=target, replicas=n),
                Action(kind="select", mode=target),
            ),
            events=(*s.events, done),
            switch=_progress(s, api.SwitchStep.DRAINING, drainUntil=s.drain_until(), stepwise=True),
            last_switch_time=rfc3339(s.now),
            fallback=False,
            switching=True,
        )
    want_t = min(n, t_ready + 1)
    want_a = max(n - 1 - t_ready, 0)
    return s.step(
        s.active,
        api.Phase.SWITCHING,
        message=f"{s.target.message} (stepwise, no room for both: {target.value} {t_ready}/{n} "
        f"ready, {s.active.value} kept at {want_a})",
        # The target first: the actions are carried out in order and stop at the first that
        # fails, so a refused apply of the target never leaves the active mode scaled down.
        actions=(
            Action(kind="select", selector="both"),
            Action(kind="apply", mode=target, replicas=want_t),
            Action(kind="apply", mode=s.active, replicas=want_a),
        ),
        switch=_progress(s, api.SwitchStep.STEPWISE, stepwise=True, targetReady=t_ready),
        fallback=False,
        switching=True,
    )
