"""Hysteresis and make-before-break steps (switching.step), on real evaluations of example plans.

Each test drives step() the way the operator does: the previous status in, what the cluster shows
in, the next status and actions out, with the clock passed explicitly.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

from breakeven.core import api, facts, planning, statuses, switching
from breakeven.shell import inputs

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MOE, DENSE = api.ServingMode.MOE, api.ServingMode.DENSE


def evaluation(
    traffic: str = "sustained", nodes: str = "h200-infiniband", **policy: Any
) -> planning.Evaluation:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-sustained.yaml")[0]
    if policy:
        merged = plan.spec.policy.model_copy(update=policy)
        plan = plan.model_copy(update={"spec": plan.spec.model_copy(update={"policy": merged})})
    cluster = inputs.load_cluster(ROOT / f"examples/nodes/{nodes}.yaml", plan)
    return planning.evaluate(
        plan, cluster, inputs.load_traffic(ROOT / f"examples/traffic/{traffic}.yaml")
    )


def status_of(
    step: switching.Step,
    ev: planning.Evaluation,
    observed: dict[api.ServingMode, switching.Observed] | None = None,
    previous: api.ServingPlanStatus | None = None,
) -> api.ServingPlanStatus:
    """The status the operator writes for this step, as it reads it back next time."""
    outcome = statuses.build(ev, step, observed or {}, previous, T0)
    return api.ServingPlanStatus.model_validate(outcome.status)


def ready(mode: api.ServingMode, n: int = 1) -> switching.Observed:
    return switching.Observed(mode=mode, exists=True, replicas=n, ready_replicas=n)


def absent(mode: api.ServingMode) -> switching.Observed:
    return switching.Observed(mode=mode)


def kinds(step: switching.Step) -> list[tuple[str, str | None]]:
    return [(a.kind, a.mode.value if a.mode else a.selector) for a in step.actions]


def test_a_new_plan_starts_dense_while_the_promotion_window_runs() -> None:
    ev = evaluation()
    assert ev.decision.rubric_mode == MOE
    step = switching.step(ev, None, {}, T0)
    assert step.mode == DENSE and step.target == DENSE
    assert step.reason == "PromotionPending"
    assert ("apply", "Dense") in kinds(step) and ("select", "Dense") in kinds(step)


def test_promotion_waits_for_the_cluster_rows_and_credits_traffic_history() -> None:
    ev = evaluation(promotion_window="1h")
    first = switching.step(ev, None, {}, T0)
    prev = status_of(first, ev)
    # 59 minutes later: modelScale/interconnect/opsMaturity have not held an hour yet.
    early = switching.step(ev, prev, {DENSE: ready(DENSE)}, T0 + dt.timedelta(minutes=59))
    assert early.target == DENSE and "interconnect" in early.message
    assert "sustainedLoad" not in early.message  # 336h of history counts for the traffic rows
    late = switching.step(ev, prev, {DENSE: ready(DENSE)}, T0 + dt.timedelta(minutes=61))
    assert late.target == MOE and late.mode == DENSE  # switching, Service still on dense
    assert ("apply", "MoE") in kinds(late) and ("select", "Dense") in kinds(late)


def test_the_service_moves_only_when_the_target_is_ready_then_the_old_one_drains() -> None:
    ev = evaluation(promotion_window="1m", drain_period="2m")
    prev = status_of(switching.step(ev, None, {}, T0), ev)
    t1 = T0 + dt.timedelta(minutes=2)
    waiting = switching.step(ev, prev, {DENSE: ready(DENSE), MOE: absent(MOE)}, t1)
    assert waiting.mode == DENSE and ("select", "Dense") in kinds(waiting)
    not_ready = switching.Observed(mode=MOE, exists=True, replicas=1, ready_replicas=0)
    still = switching.step(ev, status_of(waiting, ev), {DENSE: ready(DENSE), MOE: not_ready}, t1)
    assert still.mode == DENSE and ("select", "MoE") not in kinds(still)
    moved = switching.step(ev, status_of(still, ev), {DENSE: ready(DENSE), MOE: ready(MOE)}, t1)
    assert moved.mode == MOE and ("select", "MoE") in kinds(moved)
    assert moved.last_switch_time == switching.rfc3339(t1)
    draining = switching.step(
        ev,
        status_of(moved, ev),
        {DENSE: ready(DENSE), MOE: ready(MOE)},
        t1 + dt.timedelta(minutes=1),
    )
    assert ("delete", "Dense") not in kinds(draining) and draining.phase == api.Phase.SWITCHING
    done = switching.step(
        ev,
        status_of(draining, ev),
        {DENSE: ready(DENSE), MOE: ready(MOE)},
        t1 + dt.timedelta(minutes=3),
    )
    assert ("delete", "Dense") in kinds(done) and done.phase == api.Phase.SERVING


def serving_moe(ev: planning.Evaluation, at: dt.datetime) -> api.ServingPlanStatus:
    """A plan that has served MoE since `at`, every row Go since then."""
    rows = [r.model_copy(update={"since": switching.rfc3339(at)}) for r in ev.decision.rows]
    return api.ServingPlanStatus(
        mode=MOE, target_mode=MOE, criteria=rows, last_switch_time=switching.rfc3339(at)
    )


def test_a_lapsed_gating_row_demotes_only_after_the_grace() -> None:
    good = evaluation()
    bad = evaluation(nodes="h200-ethernet")  # EP8 fits one node: interconnect stays Go
    bad = evaluation(traffic="bursty")
    prev = serving_moe(good, T0)
    now = T0 + dt.timedelta(hours=1)
    first = switching.step(bad, prev, {MOE: ready(MOE)}, now)
    assert first.target == MOE and first.reason == "DemotionGrace"
    later = switching.step(
        bad, status_of(first, bad), {MOE: ready(MOE)}, now + dt.timedelta(minutes=6)
    )
    assert later.target == DENSE and later.reason == "SustainedLoadLapsed"


def test_a_row_flapping_within_the_grace_never_demotes() -> None:
    good, bad = evaluation(), evaluation(traffic="bursty")
    prev = serving_moe(good, T0)
    now = T0 + dt.timedelta(hours=1)
    for i in range(6):  # bad for 4 minutes, good for a minute, again and again
        ev = bad if i % 2 == 0 else good
        step = switching.step(ev, prev, {MOE: ready(MOE)}, now)
        assert step.target == MOE, (i, step.reason)
        prev = status_of(step, ev)
        now += dt.timedelta(minutes=4 if i % 2 == 0 else 1)


def test_min_dwell_holds_a_planned_switch_but_not_a_fallback() -> None:
    good, bad = evaluation(), evaluation(traffic="bursty")
    just_switched = serving_moe(good, T0)
    lapsed = [r.model_copy(update={"since": switching.rfc3339(T0)}) for r in bad.decision.rows]
    prev = just_switched.model_copy(update={"criteria": lapsed})
    now = T0 + dt.timedelta(minutes=10)  # grace passed, min dwell (30m) not
    held = switching.step(bad, prev, {MOE: ready(MOE)}, now)
    assert held.target == MOE and held.reason == "MinDwell"
    broken = switching.Observed(
        mode=MOE, exists=True, replicas=1, ready_replicas=0, broken="pod x: CrashLoopBackOff"
    )
    fallback = switching.step(good, just_switched, {MOE: broken, DENSE: absent(DENSE)}, now)
    assert fallback.target == DENSE and fallback.fallback and fallback.reason == "MoEBroken"
    assert ("apply", "Dense") in kinds(fallback)


def test_a_fallback_never_moves_the_service_to_a_dense_workload_with_nothing_ready() -> None:
    good = evaluation()
    prev = serving_moe(good, T0)
    now = T0 + dt.timedelta(minutes=10)
    broken = switching.Observed(
        mode=MOE, exists=True, replicas=1, ready_replicas=0, broken="pod x: CrashLoopBackOff"
    )
    cold = switching.Observed(mode=DENSE, exists=True, replicas=1, ready_replicas=0)
    for dense in (absent(DENSE), cold):
        step = switching.step(good, prev, {MOE: broken, DENSE: dense}, now)
        assert step.target == DENSE and step.fallback
        # Both selected: whichever gets ready pods first serves; nothing is deleted.
        assert step.mode == MOE and ("select", "both") in kinds(step), kinds(step)
        assert ("select", "Dense") not in kinds(step) and ("delete", "MoE") not in kinds(step)
        prev = status_of(step, good)
    warm = switching.step(good, prev, {MOE: broken, DENSE: ready(DENSE)}, now)
    assert warm.mode == DENSE and ("select", "Dense") in kinds(warm)


def test_traffic_below_the_floor_for_the_demotion_window_demotes() -> None:
    ev = evaluation()
    floor = ev.decision.floor
    assert floor is not None
    quiet = ev.traffic.model_copy(
        update={"recent_peak_tokens_per_second": 0.4 * floor.estimate.total_tokens_per_second}
    )
    dropped = ev.model_copy(update={"traffic": quiet})
    step = switching.step(
        dropped, serving_moe(ev, T0), {MOE: ready(MOE)}, T0 + dt.timedelta(hours=2)
    )
    assert step.target == DENSE and step.reason == "TrafficBelowFloor"
    busy = ev.traffic.model_copy(
        update={"recent_peak_tokens_per_second": 0.6 * floor.estimate.total_tokens_per_second}
    )
    stays = switching.step(
        ev.model_copy(update={"traffic": busy}),
        serving_moe(ev, T0),
        {MOE: ready(MOE)},
        T0 + dt.timedelta(hours=2),
    )
    assert stays.target == MOE


def test_without_room_for_both_the_switch_goes_in_steps_and_keeps_endpoints() -> None:
    # Two nodes, both workloads need one each per replica: 2 replicas of each cannot coexist.
    ev = evaluation(promotion_window="1m")
    plan = ev.plan.model_copy(
        update={
            "spec": ev.plan.spec.model_copy(
                update={"serving": ev.plan.spec.serving.model_copy(update={"replicas": 2})}
            )
        }
    )
    small = facts.Cluster.from_nodes(
        [n for n in inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]][:2]
    )
    ev = planning.evaluate(plan, small, ev.traffic)
    assert not switching.room_for_both(ev, 2)
    prev = status_of(switching.step(ev, None, {}, T0), ev)
    t = T0 + dt.timedelta(minutes=5)
    observed = {DENSE: ready(DENSE, 2), MOE: absent(MOE)}
    first = switching.step(ev, prev, observed, t)
    assert first.switch and first.switch.stepwise is True
    assert ("select", "both") in kinds(first)
    replicas = {a.mode: a.replicas for a in first.actions if a.kind == "apply"}
    assert replicas == {DENSE: 1, MOE: 1}  # one dense replica keeps serving
    # The target is applied before the active mode is scaled down: actions run in order and
    # stop at the first failure, so a refused apply never leaves dense a replica short.
    assert [a.mode for a in first.actions if a.kind == "apply"] == [MOE, DENSE]
    half = {
        DENSE: ready(DENSE, 1),
        MOE: switching.Observed(mode=MOE, exists=True, replicas=1, ready_replicas=1),
    }
    second = switching.step(ev, status_of(first, ev), half, t)
    replicas = {a.mode: a.replicas for a in second.actions if a.kind == "apply"}
    assert replicas == {DENSE: 0, MOE: 2}
    done = switching.step(ev, status_of(second, ev), {DENSE: absent(DENSE), MOE: ready(MOE, 2)}, t)
    assert done.mode == MOE and ("select", "MoE") in kinds(done)


def test_one_replica_and_no_room_waits_instead_of_dropping_traffic() -> None:
    ev = evaluation(promotion_window="1m")
    small = facts.Cluster.from_nodes(
        inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0][:1]
    )
    ev = planning.evaluate(ev.plan, small, ev.traffic)
    assert not switching.room_for_both(ev, 1)
    prev = status_of(switching.step(ev, None, {}, T0), ev)
    step = switching.step(ev, prev, {DENSE: ready(DENSE)}, T0 + dt.timedelta(minutes=5))
    assert step.reason == "NoRoomForSwitch" and step.mode == DENSE
    assert ("apply", "MoE") not in kinds(step)


def test_conditions_move_their_transition_time_only_on_change() -> None:
    ev = evaluation()
    step = switching.step(ev, None, {}, T0)
    first = statuses.conditions(step, ev, [], 1, T0)
    again = statuses.conditions(step, ev, first, 1, T0 + dt.timedelta(hours=1))
    assert [c.last_transition_time for c in again] == [c.last_transition_time for c in first]
    types = [c.type for c in first]
    assert types == [
        "RubricEvaluated",
        "MoEPrerequisitesMet",
        "Ready",
        "Switching",
        "FallbackActive",
        "Trial",
        "NodesLeftOut",
    ]


def test_the_status_patch_removes_nested_keys_that_disappear() -> None:
    current = {
        "mode": "MoE",
        "placements": {"Dense": {"generation": 1}, "MoE": {"g": 1}},
        "switch": {"step": "Draining", "drainUntil": "x"},
        "reason": "A",
    }
    desired = {"mode": "MoE", "placements": {"MoE": {"g": 1}}, "reason": "B"}
    assert statuses.merge_patch(current, desired) == {
        "switch": None,
        "placements": {"Dense": None},
        "reason": "B",
    }
    assert statuses.merge_patch(desired, desired) == {}


def test_a_plan_that_lost_its_status_keeps_serving_what_is_ready() -> None:
    # Status wiped (an invalid spec, a dry run) while MoE serves: nothing is switched off blindly.
    ev = evaluation(traffic="bursty")  # the rubric now says Dense
    step = switching.step(ev, None, {MOE: ready(MOE), DENSE: absent(DENSE)}, T0)
    assert step.mode == MOE  # MoE is the active mode, judged by the usual grace
    assert ("delete", "MoE") not in kinds(step) and ("select", "Dense") not in kinds(step)


def test_a_drained_switch_completes_even_if_the_old_workload_is_already_gone() -> None:
    ev = evaluation()
    prev = serving_moe(ev, T0).model_copy(
        update={
            "switch": api.SwitchStatus.model_validate(
                {
                    "from": "Dense",
                    "to": "MoE",
                    "startedAt": switching.rfc3339(T0),
                    "step": "Draining",
                    "drainUntil": switching.rfc3339(T0 + dt.timedelta(minutes=2)),
                }
            )
        }
    )
    step = switching.step(
        ev, prev, {MOE: ready(MOE), DENSE: absent(DENSE)}, T0 + dt.timedelta(minutes=3)
    )
    assert step.switch is None and step.phase == api.Phase.SERVING


def test_the_service_never_moves_to_a_target_with_nothing_ready_while_the_other_serves() -> None:
    ev = evaluation(traffic="bursty")  # target Dense
    prev = api.ServingPlanStatus(mode=DENSE, target_mode=DENSE, criteria=list(ev.decision.rows))
    not_ready = switching.Observed(mode=DENSE, exists=True, replicas=1, ready_replicas=0)
    step = switching.step(ev, prev, {DENSE: not_ready, MOE: ready(MOE)}, T0)
    assert ("select", "both") in kinds(step) and ("delete", "MoE") not in kinds(step)


# ------------------------------------------------------------------ clocks and Unknown (issue 10)


def unreadable(ev: planning.Evaluation) -> planning.Evaluation:
    """The same plan and cluster while Prometheus cannot be read."""
    down = facts.Traffic(errors=("prometheus http://p:9090: timed out after 5s",))
    cluster = inputs.load_cluster(ROOT / "examples/nodes/h200-infiniband.yaml", ev.plan)
    return planning.evaluate(ev.plan, cluster, down)


def row(step: switching.Step, name: str) -> api.CriterionRow:
    return next(r for r in step.rows if r.name.value == name)


def test_a_prometheus_outage_longer_than_the_grace_neither_demotes_nor_restarts_clocks() -> None:
    good = evaluation()
    down = unreadable(good)
    assert row(switching.step(down, None, {}, T0), "sustainedLoad").verdict == api.Verdict.UNKNOWN
    prev = serving_moe(good, T0)
    now = T0 + dt.timedelta(hours=1)
    for _ in range(6):  # an hour of outage, far past the 5m grace
        step = switching.step(down, prev, {MOE: ready(MOE)}, now)
        assert step.target == MOE and step.reason == "FactsUnknown", step.message
        prev = status_of(step, down)
        now += dt.timedelta(minutes=10)
    back = switching.step(good, prev, {MOE: ready(MOE)}, now)
    assert back.target == MOE
    # Every clock still runs from T0: the outage was no news.
    assert {r.since for r in back.rows} == {switching.rfc3339(T0)}


def test_one_failed_read_does_not_restart_the_promotion_clock() -> None:
    ev = evaluation(promotion_window="1h")
    prev = status_of(switching.step(ev, None, {}, T0), ev)
    blip = switching.step(
        unreadable(ev), prev, {DENSE: ready(DENSE)}, T0 + dt.timedelta(minutes=30)
    )
    assert blip.target == DENSE
    prev = status_of(blip, unreadable(ev))
    later = switching.step(ev, prev, {DENSE: ready(DENSE)}, T0 + dt.timedelta(minutes=61))
    assert later.target == MOE, later.message  # an hour of Go, the blip included


def test_a_hot_expert_seen_through_a_flaky_prometheus_still_demotes() -> None:
    good, hot = evaluation(), evaluation(traffic="hot-expert")
    assert row(switching.step(hot, None, {}, T0), "expertBalance").verdict == api.Verdict.STAY_DENSE
    down = unreadable(good)
    prev = serving_moe(good, T0)
    now = T0 + dt.timedelta(hours=1)
    reasons = []
    for i in range(10):  # hot, unreadable, hot, ... one minute each
        ev = hot if i % 2 == 0 else down
        step = switching.step(ev, prev, {MOE: ready(MOE)}, now)
        reasons.append(step.reason)
        prev = status_of(step, ev)
        now += dt.timedelta(minutes=1)
    assert reasons[-1] == "ExpertBalanceLapsed", reasons  # the 5m grace ran through the flips
    assert "ExpertBalanceLapsed" not in reasons[:5]


def test_a_row_flipping_between_stay_dense_and_unknown_keeps_its_since() -> None:
    hot = evaluation(traffic="hot-expert")
    down = unreadable(hot)
    first = switching.step(hot, None, {}, T0)
    prev = status_of(first, hot)
    flip = switching.step(down, prev, {}, T0 + dt.timedelta(minutes=1))
    assert row(flip, "expertBalance").verdict == api.Verdict.UNKNOWN
    assert row(flip, "expertBalance").last_known == api.Verdict.STAY_DENSE
    back = switching.step(hot, status_of(flip, down), {}, T0 + dt.timedelta(minutes=2))
    assert row(back, "expertBalance").since == switching.rfc3339(T0)


# ------------------------------------------------------------------ back-off (issue 10 item 4)

CRASHING = switching.Observed(
    mode=MOE, exists=True, replicas=1, ready_replicas=0, broken="pod m-0: CrashLoopBackOff"
)


def attempts(ev: planning.Evaluation, minutes: int) -> list[dt.datetime]:
    """Drive a plan whose MoE workload always crash-loops, one reconcile a minute; return when
    each MoE attempt started (an apply of MoE after a reconcile without one)."""
    prev = serving_dense(ev, T0)
    moe_exists, started = False, []
    for i in range(minutes):
        now = T0 + dt.timedelta(minutes=i)
        seen = {DENSE: ready(DENSE), MOE: CRASHING if moe_exists else absent(MOE)}
        step = switching.step(ev, prev, seen, now)
        applies_moe = ("apply", "MoE") in kinds(step)
        if applies_moe and not moe_exists:
            started.append(now)
        moe_exists = applies_moe and ("delete", "MoE") not in kinds(step)
        prev = status_of(step, ev, seen, prev)
    return started


def serving_dense(ev: planning.Evaluation, at: dt.datetime) -> api.ServingPlanStatus:
    rows = [r.model_copy(update={"since": switching.rfc3339(at)}) for r in ev.decision.rows]
    return api.ServingPlanStatus(mode=DENSE, target_mode=DENSE, criteria=rows)


def test_a_crash_looping_moe_trial_backs_off_exponentially() -> None:
    ev = evaluation(promotion_window="1m", min_dwell="0s")
    started = attempts(ev, 60)
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(started)]
    # Tried, broken, deleted; then again after 5, 10, 20 minutes (plus the reconciles between).
    assert len(started) == 4, started
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1], gaps
    assert gaps[0] >= 5


def test_min_dwell_sets_the_back_off_of_a_broken_trial() -> None:
    ev = evaluation(promotion_window="1m", min_dwell="30m")
    started = attempts(ev, 60)
    assert len(started) == 2 and (started[1] - started[0]).total_seconds() >= 30 * 60


def test_a_pinned_moe_plan_backs_off_too() -> None:
    ev = evaluation()
    pinned = ev.plan.model_copy(
        update={"spec": ev.plan.spec.model_copy(update={"mode": api.Mode.MOE})}
    )
    cluster = inputs.load_cluster(ROOT / "examples/nodes/h200-infiniband.yaml", pinned)
    ev = planning.evaluate(pinned, cluster, ev.traffic)
    started = attempts(ev, 30)
    assert len(started) <= 3, started  # 0, ~6, ~17 minutes; not every other reconcile
    prev = serving_dense(ev, T0)
    step = switching.step(ev, prev, {DENSE: ready(DENSE), MOE: CRASHING}, T0)
    assert step.moe_backoff is not None and step.moe_backoff.failures == 1
    later = switching.step(
        ev,
        status_of(step, ev),
        {DENSE: ready(DENSE), MOE: absent(MOE)},
        T0 + dt.timedelta(minutes=1),
    )
    assert later.target == DENSE and later.reason == "MoEBackoff"


def test_moe_that_held_clears_its_back_off() -> None:
    ev = evaluation()
    record = api.MoEBackoff(
        failures=3, last_failure=switching.rfc3339(T0), retry_after=switching.rfc3339(T0)
    )
    prev = serving_moe(ev, T0).model_copy(update={"moe_backoff": record})
    soon = switching.step(ev, prev, {MOE: ready(MOE)}, T0 + dt.timedelta(minutes=10))
    # Three failures in a row earned 30m (min dwell) x 4 = 2 hours of holding.
    assert soon.moe_backoff == record
    held = switching.step(ev, prev, {MOE: ready(MOE)}, T0 + dt.timedelta(minutes=121))
    assert held.moe_backoff is None
