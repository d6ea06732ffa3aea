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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from breakeven.core import api, planning

V = api.Verdict
C = api.Criterion
DENSE = api.ServingMode.DENSE
MOE = api.ServingMode.MOE

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


class Action(BaseModel):
    """One thing the operator must do to the cluster, in order."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["apply", "delete", "select"]
    mode: api.ServingMode | None = None
    replicas: int | None = None
    selector: Literal["mode", "both"] = "mode"


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
    switch: dict[str, str | int | bool] | None = None
    last_switch_time: str | None = None
    fallback: bool = False
    switching: bool = False  # a switch is moving: the operator polls the plan fast


# ------------------------------------------------------------------------------ hysteresis


def carry_since(
    previous: Sequence[api.CriterionRow], rows: Sequence[api.CriterionRow], now: dt.datetime
) -> tuple[api.CriterionRow, ...]:
    """Each row keeps its `since` while its verdict holds; a changed verdict starts now."""
    before = {r.name: r for r in previous}
    out = []
    for row in rows:
        old = before.get(row.name)
        since = old.since if old is not None and old.verdict == row.verdict and old.since else None
        out.append(row.model_copy(update={"since": since or rfc3339(now)}))
    return tuple(out)


def held_for(row: api.CriterionRow, observed_history: float, now: dt.datetime) -> float:
    """Seconds the row has held its verdict, counting Prometheus history for traffic rows."""
    since = parse_time(row.since) or now
    held = (now - since).total_seconds()
    if row.name in HISTORY_ROWS and row.verdict == V.GO:
        held = max(held, observed_history)
    return held


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


def hysteresis(
    evaluation: planning.Evaluation,
    rows: Sequence[api.CriterionRow],
    active: api.ServingMode | None,
    last_switch: dt.datetime | None,
    moe_broken: str | None,
    now: dt.datetime,
) -> tuple[api.ServingMode, str, str, bool]:
    """The mode to aim for: (target, reason, message, fallback). Purely computational."""
    plan = evaluation.plan
    policy = plan.spec.policy
    decision = evaluation.decision
    moe_possible = decision.moe is not None and decision.moe.estimate.feasible

    if plan.spec.mode != api.Mode.AUTO:
        pinned = api.ServingMode(plan.spec.mode.value)
        if pinned == MOE and not moe_possible:
            return (
                DENSE,
                "PinnedMoEInfeasible",
                ("spec.mode pins MoE but no GPU pool can host an EP group; serving dense"),
                True,
            )
        if pinned == MOE and moe_broken:
            return (
                DENSE,
                "MoEBroken",
                f"the MoE workload is broken ({moe_broken}); dense comes up while it is",
                True,
            )
        return pinned, decision.reason, decision.message, False

    if active == MOE and moe_broken:
        return (
            DENSE,
            "MoEBroken",
            f"the MoE workload is broken ({moe_broken}); falling back to dense",
            True,
        )

    history = evaluation.traffic.observed_seconds if evaluation.traffic.has_volume else 0.0
    gating = [r for r in rows if r.gating]
    dwell_ok = last_switch is None or (
        (now - last_switch).total_seconds() >= api.parse_duration(policy.min_dwell)
    )
    if active in (None, DENSE):
        if decision.rubric_mode != MOE or not moe_possible:
            return DENSE, decision.reason, decision.message, False
        if moe_broken:
            return (
                DENSE,
                "MoEBroken",
                f"the MoE workload is failing ({moe_broken}); staying dense "
                "until it is fixed or deleted",
                False,
            )
        window = api.parse_duration(policy.promotion_window)
        waiting = [r for r in gating if held_for(r, history, now) < window]
        if waiting:
            names = ", ".join(r.name.value for r in waiting)
            return (
                DENSE,
                "PromotionPending",
                (
                    f"every gating row is Go, but {names} must hold Go for "
                    f"{policy.promotion_window} before the move to MoE"
                ),
                False,
            )
        if active == DENSE and not dwell_ok:
            return (
                DENSE,
                "MinDwell",
                f"MoE is due, but the last switch was under {policy.min_dwell} ago",
                False,
            )
        return MOE, decision.reason, decision.message, False

    # active == MoE
    grace = api.parse_duration(policy.demotion_grace)
    lapsed = [r for r in gating if r.verdict != V.GO and held_for(r, 0.0, now) > grace]
    if lapsed and not moe_possible:
        return DENSE, "MoEInfeasible", "no GPU pool can host the EP group any more", True
    reason = message = ""
    if lapsed:
        first = lapsed[0]
        reason = first.name[0].upper() + first.name[1:] + "Lapsed"
        message = (
            f"{first.name} has been {first.verdict.value} for over "
            f"{policy.demotion_grace}: {first.reason}"
        )
    elif _recent_below_floor(evaluation):
        reason = "TrafficBelowFloor"
        message = (
            f"traffic over the last {policy.demotion_window} stayed under the sustainedLoad floor"
        )
    if not reason:
        pending = [r for r in gating if r.verdict != V.GO]
        if pending:
            return (
                MOE,
                "DemotionGrace",
                (
                    f"{pending[0].name} is {pending[0].verdict.value}; demotion after "
                    f"{policy.demotion_grace}"
                ),
                False,
            )
        return MOE, decision.reason, decision.message, False
    if not dwell_ok:
        return MOE, "MinDwell", f"{message}; waiting for min dwell {policy.min_dwell}", False
    return DENSE, reason, message, False


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


def step(
    evaluation: planning.Evaluation,
    previous: api.ServingPlanStatus | None,
    observed: Mapping[api.ServingMode, Observed],
    now: dt.datetime,
) -> Step:
    """One reconcile's worth of progress. Purely computational; the operator acts on it."""
    plan = evaluation.plan
    policy = plan.spec.policy
    n = plan.spec.serving.replicas
    prev = previous or api.ServingPlanStatus()
    rows = carry_since(prev.criteria, evaluation.decision.rows, now)
    active = prev.mode
    if active is None:
        # No mode in status (a first placement, or status lost by an invalid spec or a dry run):
        # whatever already serves is active, so nothing ready is ever switched off blindly.
        active = next(
            (m for m in (MOE, DENSE) if (o := observed.get(m)) and o.exists and o.ready_replicas),
            None,
        )
    last_switch = parse_time(prev.last_switch_time)
    moe_obs = observed.get(MOE, Observed(mode=MOE))
    moe_broken = moe_obs.broken if moe_obs.exists else None
    target, reason, message, fallback = hysteresis(
        evaluation, rows, active, last_switch, moe_broken, now
    )
    events: list[Event] = []
    if prev.target_mode is not None and prev.target_mode != target:
        events.append(
            Event(
                type="Warning" if fallback else "Normal",
                reason="TargetChanged",
                message=f"target mode {prev.target_mode.value} -> {target.value}: {message}",
            )
        )
    switch = dict(prev.switch or {})
    obs_t = observed.get(target, Observed(mode=target))

    def ready(o: Observed, want: int) -> bool:
        return o.exists and o.replicas >= want and o.ready_replicas >= want

    # First placement, or steady state: run the target, point the Service at it, clean up.
    if active is None or active == target:
        actions = [
            Action(kind="apply", mode=target, replicas=n),
            Action(kind="select", mode=target),
        ]
        drain_until = parse_time(str(switch.get("drainUntil", ""))) if switch else None
        old = observed.get(_other(target), Observed(mode=_other(target)))
        if old.exists and old.ready_replicas > 0 and obs_t.ready_replicas == 0:
            # The target has nothing ready yet but the other mode does (an aborted stepwise
            # switch, say): keep both selected and delete nothing until the target serves.
            actions = [
                Action(kind="apply", mode=target, replicas=n),
                Action(kind="select", selector="both"),
            ]
        elif drain_until is None or now >= drain_until:
            if old.exists:
                actions.append(Action(kind="delete", mode=_other(target)))
                if switch:
                    events.append(
                        Event(
                            type="Normal",
                            reason="Drained",
                            message=f"deleted the {_other(target).value} workload "
                            "after the drain period",
                        )
                    )
            switch = {}
        phase = api.Phase.SERVING if ready(obs_t, n) else api.Phase.DEPLOYING
        if switch:
            phase = api.Phase.SWITCHING  # the old workload is still draining
        if obs_t.broken:
            phase = api.Phase.DEGRADED
        if active is None:
            events.append(
                Event(
                    type="Normal",
                    reason="Deploying",
                    message=f"deploying {target.value}: {message}",
                )
            )
        return Step(
            mode=target,
            target=target,
            phase=phase,
            reason=reason,
            message=message,
            rows=rows,
            actions=tuple(actions),
            events=tuple(events),
            switch=switch or None,
            last_switch_time=prev.last_switch_time,
            fallback=fallback,
            switching=bool(switch),
        )

    # A switch from `active` to `target`.
    obs_a = observed.get(active, Observed(mode=active))
    started = str(switch.get("startedAt") or rfc3339(now))
    if switch.get("to") != target.value:
        events.append(
            Event(
                type="Warning" if fallback else "Normal",
                reason="SwitchStarted",
                message=f"switching {active.value} -> {target.value}: {message}",
            )
        )
        started = rfc3339(now)
    roomy = room_for_both(evaluation, n)
    base = {"from": active.value, "to": target.value, "startedAt": started}

    if roomy or fallback:
        actions = [Action(kind="apply", mode=target, replicas=n)]
        if ready(obs_t, n) or (fallback and obs_a.ready_replicas == 0):
            drain = rfc3339(now + dt.timedelta(seconds=api.parse_duration(policy.drain_period)))
            actions.append(Action(kind="select", mode=target))
            events.append(
                Event(
                    type="Warning" if fallback else "Normal",
                    reason="Switched",
                    message=f"Service moved to {target.value}; {active.value} drains until {drain}",
                )
            )
            return Step(
                mode=target,
                target=target,
                phase=api.Phase.SWITCHING,
                reason=reason,
                message=message,
                rows=rows,
                actions=tuple(actions),
                events=tuple(events),
                switch={**base, "step": "Draining", "drainUntil": drain},
                last_switch_time=rfc3339(now),
                fallback=fallback,
                switching=True,
            )
        actions.append(Action(kind="select", mode=active))
        return Step(
            mode=active,
            target=target,
            phase=api.Phase.SWITCHING,
            reason=reason,
            message=f"{message} (waiting for {target.value}: {obs_t.ready_replicas}/{n} ready)",
            rows=rows,
            actions=tuple(actions),
            events=tuple(events),
            switch={**base, "step": "WaitingForTarget", "stepwise": False},
            last_switch_time=prev.last_switch_time,
            fallback=fallback,
            switching=True,
        )

    if n < 2:
        return Step(
            mode=active,
            target=target,
            phase=api.Phase.SWITCHING,
            reason="NoRoomForSwitch",
            message=f"{message}; but the pool cannot run both workloads and there is "
            "one replica, so a switch would drop traffic: add GPUs or replicas",
            rows=rows,
            actions=(
                Action(kind="apply", mode=active, replicas=n),
                Action(kind="select", mode=active),
            ),
            events=tuple(events),
            switch={**base, "step": "BlockedNoRoom", "stepwise": True},
            last_switch_time=prev.last_switch_time,
            # Nothing moves until the facts change: re-evaluate on the normal interval, not the
            # fast switch poll.
            switching=False,
        )

    # Stepwise: release one unit of the old per unit of the new that is ready.
    t_ready = min(obs_t.ready_replicas, n) if obs_t.exists else 0
    if t_ready >= n:
        drain = rfc3339(now + dt.timedelta(seconds=api.parse_duration(policy.drain_period)))
        events.append(
            Event(
                type="Normal",
                reason="Switched",
                message=f"stepwise switch done: Service on {target.value}",
            )
        )
        return Step(
            mode=target,
            target=target,
            phase=api.Phase.SWITCHING,
            reason=reason,
            message=message,
            rows=rows,
            actions=(
                Action(kind="apply", mode=target, replicas=n),
                Action(kind="select", mode=target),
            ),
            events=tuple(events),
            switch={**base, "step": "Draining", "drainUntil": drain, "stepwise": True},
            last_switch_time=rfc3339(now),
            switching=True,
        )
    want_t = min(n, t_ready + 1)
    want_a = max(n - 1 - t_ready, 0)
    return Step(
        mode=active,
        target=target,
        phase=api.Phase.SWITCHING,
        reason=reason,
        message=f"{message} (stepwise, no room for both: {target.value} {t_ready}/{n} "
        f"ready, {active.value} kept at {want_a})",
        rows=rows,
        actions=(
            Action(kind="select", selector="both"),
            Action(kind="apply", mode=active, replicas=want_a),
            Action(kind="apply", mode=target, replicas=want_t),
        ),
        events=tuple(events),
        switch={**base, "step": "Stepwise", "stepwise": True, "targetReady": t_ready},
        last_switch_time=prev.last_switch_time,
        switching=True,
    )


# ------------------------------------------------------------------------------ conditions


def conditions(
    step_: Step,
    evaluation: planning.Evaluation,
    previous: Sequence[api.Condition],
    generation: int | None,
    now: dt.datetime,
) -> list[api.Condition]:
    """Conditions per the Kubernetes API conventions; transition time moves only on change."""
    before = {c.type: c for c in previous}
    decision = evaluation.decision
    blocking = [r for r in step_.rows if r.gating and r.verdict != V.GO]
    wanted = [
        (
            "RubricEvaluated",
            "True",
            "Evaluated",
            f"{len(step_.rows)} criteria evaluated; rubric says {decision.rubric_mode.value}",
        ),
        (
            "MoEPrerequisitesMet",
            "True" if not blocking else "False",
            "AllGatesGo" if not blocking else blocking[0].name[0].upper() + blocking[0].name[1:],
            "every gating criterion is Go"
            if not blocking
            else "; ".join(f"{r.name}: {r.reason}" for r in blocking),
        ),
        (
            "Ready",
            "True" if step_.phase == api.Phase.SERVING else "False",
            step_.phase.value,
            step_.message,
        ),
        (
            "Switching",
            "True" if step_.switch else "False",
            str(step_.switch.get("step")) if step_.switch else "Idle",
            step_.message if step_.switch else "no switch in progress",
        ),
        (
            "FallbackActive",
            "True" if step_.fallback else "False",
            step_.reason if step_.fallback else "NoFallback",
            step_.message if step_.fallback else "not falling back",
        ),
    ]
    out = []
    for type_, status, reason, message in wanted:
        old = before.get(type_)
        changed = old is None or old.status != status
        out.append(
            api.Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message[:1024],
                last_transition_time=rfc3339(now)
                if changed or old is None
                else old.last_transition_time,
                observed_generation=generation,
            )
        )
    return out
