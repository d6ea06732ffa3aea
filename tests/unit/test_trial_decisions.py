"""The expert-balance trial (core/trial.py through switching.step), on real evaluations of the
example plan: when it starts, what it runs, how it passes, fails, aborts or waits, and what
status, conditions and Events say. The clock is passed explicitly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from breakeven.core import api, planning, statuses, switching, trial
from breakeven.shell import inputs

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MOE, DENSE = api.ServingMode.MOE, api.ServingMode.DENSE
P = api.TrialPhase
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def evaluation(
    traffic: str = "no-expert-telemetry",
    generation: int = 1,
    replicas: int = 1,
    mode: str = "Auto",
    **trial_spec: Any,
) -> planning.Evaluation:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-sustained.yaml")[0]
    body = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["generation"] = generation
    body["spec"]["mode"] = mode
    body["spec"]["policy"]["promotionWindow"] = "1h"
    body["spec"]["serving"]["replicas"] = replicas
    body["spec"]["trial"] = {"duration": "2h", "retryAfter": "6h", **trial_spec}
    plan = api.ServingPlan.model_validate(body)
    cluster = inputs.load_cluster(ROOT / "examples/nodes/h200-infiniband.yaml", plan)
    return planning.evaluate(
        plan, cluster, inputs.load_traffic(ROOT / f"examples/traffic/{traffic}.yaml")
    )


def status_of(
    step: switching.Step,
    ev: planning.Evaluation,
    observed: dict[api.ServingMode, switching.Observed] | None = None,
) -> api.ServingPlanStatus:
    outcome = statuses.build(ev, step, observed or {}, None, T0)
    return api.ServingPlanStatus.model_validate(outcome.status)


def ready(mode: api.ServingMode, n: int = 1) -> switching.Observed:
    return switching.Observed(mode=mode, exists=True, replicas=n, ready_replicas=n)


def starting(mode: api.ServingMode) -> switching.Observed:
    return switching.Observed(mode=mode, exists=True, replicas=1, ready_replicas=0)


def actions(step: switching.Step) -> list[tuple[str, str | None, int | None]]:
    return [(a.kind, a.mode.value if a.mode else a.selector, a.replicas) for a in step.actions]


def events(step: switching.Step) -> list[str]:
    return [e.reason for e in step.events]


class Run:
    """Reconciles of one plan: each call feeds back the status the operator would write."""

    def __init__(self) -> None:
        self.status: api.ServingPlanStatus | None = None

    def __call__(
        self,
        ev: planning.Evaluation,
        at: dt.datetime,
        observed: dict[api.ServingMode, switching.Observed],
    ) -> switching.Step:
        step = switching.step(ev, self.status, observed, at)
        self.status = status_of(step, ev, observed)
        return step


def running_trial(run: Run, ev: planning.Evaluation | None = None) -> switching.Step:
    """Dense placed at T0, the trial started once the other rows held Go for the 1h window."""
    ev = ev or evaluation()
    first = run(ev, T0, {})
    assert first.trial is None and first.mode == DENSE
    early = run(ev, T0 + 30 * M, {DENSE: ready(DENSE)})
    assert early.trial is None  # interconnect, opsMaturity... have not held Go for 1h yet
    assert ("apply", "MoE", 1) not in actions(early)
    return run(ev, T0 + 61 * M, {DENSE: ready(DENSE)})


def test_a_trial_starts_beside_dense_once_every_other_gate_held_go() -> None:
    run = Run()
    step = running_trial(run)
    assert step.trial is not None and step.trial.phase == P.RUNNING
    assert step.mode == DENSE and step.target == DENSE and step.reason == "TrialRunning"
    # Dense first, then one MoE replica, then the Service over both (a canary).
    assert actions(step) == [
        ("apply", "Dense", 1),
        ("apply", "MoE", 1),
        ("select", "both", None),
    ]
    assert events(step) == ["TrialStarted"]
    assert step.trial.workload == "deepseek-v3-sustained-moe"
    assert step.trial.share == "0/1 ready endpoints"
    assert run.status is not None and run.status.trial == step.trial
    trial_condition = next(c for c in run.status.conditions if c.type == "Trial")
    assert (trial_condition.status, trial_condition.reason) == ("True", "TrialRunning")


def test_a_balanced_trial_passes_after_its_duration_and_promotion_reuses_its_workload() -> None:
    run = Run()
    running_trial(run)
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    balanced = evaluation("sustained")  # the trial's EPLB steps: busiest rank 1.3x the mean
    mid = run(balanced, T0 + 2 * H, both)
    # Balance looks Go already, but promotion waits for the trial's whole duration.
    assert mid.trial is not None and mid.trial.phase == P.RUNNING
    assert mid.target == DENSE and mid.mode == DENSE
    assert mid.trial.share == "1/2 ready endpoints"
    assert mid.trial.observed_balance == "busiest EP rank 1.30x the mean (p95 of EPLB steps)"
    passed = run(balanced, T0 + 61 * M + 2 * H, both)
    assert passed.trial is not None and passed.trial.phase == P.PASSED
    assert "TrialPassed" in events(passed)
    assert ("delete", "MoE", None) not in actions(passed)
    switch = run(balanced, T0 + 62 * M + 2 * H, both)
    # The make-before-break switch scales the trial's workload (already ready) and moves.
    assert switch.target == MOE and switch.mode == MOE
    assert ("apply", "MoE", 1) in actions(switch) and ("select", "MoE", None) in actions(switch)
    assert switch.trial is not None and switch.trial.phase == P.PASSED
    assert switch.trial.started_at == switching.rfc3339(T0 + 61 * M)
    assert switch.trial.generation == 1
    serving = run(balanced, T0 + 63 * M + 2 * H, both)
    assert serving.mode == MOE and serving.trial is not None
    assert serving.trial.phase == P.PASSED
    assert serving.trial.workload is None and "promoted" in serving.trial.reason
    # Back on dense later (traffic dropped, say): the finished trial runs no replica again.
    run.status = run.status.model_copy(update={"mode": DENSE, "target_mode": DENSE})  # type: ignore[union-attr]
    later = run(balanced, T0 + 10 * H, {DENSE: ready(DENSE), MOE: ready(MOE)})
    assert ("apply", "MoE", 1) not in actions(later) or later.target == MOE
    assert later.trial is not None and later.trial.phase == P.PASSED


def test_a_hot_rank_fails_the_trial_removes_it_and_waits_retry_after() -> None:
    run = Run()
    running_trial(run)
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    hot = evaluation("hot-expert")  # busiest rank 2.6x the mean in the p95 of EPLB steps
    still = run(hot, T0 + 2 * H, both)
    assert still.trial is not None and still.trial.phase == P.RUNNING  # judged at the end
    end = T0 + 61 * M + 2 * H
    failed = run(hot, end, both)
    assert failed.trial is not None and failed.trial.phase == P.FAILED
    assert failed.trial.reason.startswith("imbalance: busiest EP rank 2.60x the mean")
    assert failed.trial.retry_after == switching.rfc3339(end + 6 * H)
    assert ("delete", "MoE", None) in actions(failed)
    assert ("select", "Dense", None) in actions(failed)
    assert failed.mode == DENSE and failed.target == DENSE
    assert [e.type for e in failed.events if e.reason == "TrialFailed"] == ["Warning"]
    # Before retryAfter no new trial, even with no balance data; after it, a new one.
    dense = {DENSE: ready(DENSE)}
    waiting = run(evaluation(), end + 5 * H, dense)
    assert waiting.trial is not None and waiting.trial.phase == P.FAILED
    assert ("apply", "MoE", 1) not in actions(waiting)
    again = run(evaluation(), end + 6 * H + M, dense)
    assert again.trial is not None and again.trial.phase == P.RUNNING
    assert ("apply", "MoE", 1) in actions(again)


def test_a_ready_trial_without_telemetry_fails_with_the_scrape_question() -> None:
    run = Run()
    running_trial(run)
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    ready_at = T0 + 62 * M
    seen = run(evaluation(), ready_at, both)
    assert seen.trial is not None and seen.trial.ready_since == switching.rfc3339(ready_at)
    within = run(evaluation(), ready_at + 15 * M, both)
    assert within.trial is not None and within.trial.phase == P.RUNNING
    failed = run(evaluation(), ready_at + 16 * M, both)
    assert failed.trial is not None and failed.trial.phase == P.FAILED
    assert failed.trial.reason.startswith("no EPLB telemetry from the trial: is it being scraped?")
    assert ("delete", "MoE", None) in actions(failed)
    balance = next(r for r in failed.rows if r.name == api.Criterion.EXPERT_BALANCE)
    assert balance.verdict == api.Verdict.UNKNOWN


def test_a_trial_that_never_becomes_ready_fails() -> None:
    run = Run()
    running_trial(run)
    pending = {DENSE: ready(DENSE), MOE: starting(MOE)}
    within = run(evaluation(), T0 + 61 * M + 30 * M, pending)
    assert within.trial is not None and within.trial.phase == P.RUNNING
    failed = run(evaluation(), T0 + 61 * M + 31 * M, pending)
    assert failed.trial is not None and failed.trial.phase == P.FAILED
    assert failed.trial.reason == "the trial never became ready within 30m"


def test_crashing_trial_pods_fail_the_trial() -> None:
    run = Run()
    running_trial(run)
    broken = switching.Observed(
        mode=MOE, exists=True, replicas=1, ready_replicas=0, broken="CrashLoopBackOff"
    )
    failed = run(evaluation(), T0 + 70 * M, {DENSE: ready(DENSE), MOE: broken})
    assert failed.trial is not None and failed.trial.phase == P.FAILED
    assert failed.trial.reason == "the trial's pods are failing: CrashLoopBackOff"
    assert ("delete", "MoE", None) in actions(failed) and failed.mode == DENSE


def test_editing_the_plan_mid_trial_aborts_and_cleans_up() -> None:
    run = Run()
    running_trial(run)
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    edited = evaluation(generation=2)
    aborted = run(edited, T0 + 70 * M, both)
    assert aborted.trial is not None and aborted.trial.phase == P.ABORTED
    assert "generation 1 -> 2" in aborted.trial.reason
    assert ("delete", "MoE", None) in actions(aborted)
    assert "TrialAborted" in events(aborted)
    # The next reconcile starts a trial on the new spec.
    restarted = run(edited, T0 + 71 * M, {DENSE: ready(DENSE)})
    assert restarted.trial is not None and restarted.trial.phase == P.RUNNING
    assert restarted.trial.generation == 2


def test_turning_the_trial_off_or_pinning_a_mode_aborts_it() -> None:
    for ev in (evaluation(enabled=False), evaluation(mode="Dense")):
        run = Run()
        running_trial(run)
        step = run(ev, T0 + 70 * M, {DENSE: ready(DENSE), MOE: ready(MOE)})
        assert step.trial is not None and step.trial.phase == P.ABORTED
        assert ("delete", "MoE", None) in actions(step)


def test_a_lapsed_gate_aborts_a_running_trial() -> None:
    run = Run()
    running_trial(run)
    bursty = evaluation("bursty")
    step = run(bursty, T0 + 70 * M, {DENSE: ready(DENSE), MOE: ready(MOE)})
    assert step.trial is not None and step.trial.phase == P.ABORTED
    assert step.trial.reason.startswith("sustainedLoad is StayDense")


def test_without_room_beside_dense_the_trial_waits_and_says_why() -> None:
    ev = evaluation(replicas=4)  # 4 dense replicas of 8 H200 fill the 32 GPUs
    run = Run()
    run(ev, T0, {})
    step = run(ev, T0 + 61 * M, {DENSE: ready(DENSE, 4)})
    assert step.trial is not None and step.trial.phase == P.PENDING
    assert step.trial.reason == (
        "no room for the trial: the pool has 32 H200 GPUs, dense uses 32 and one MoE replica "
        "needs 8"
    )
    assert step.reason == "TrialPending"
    assert ("apply", "MoE", 1) not in actions(step)
    assert events(step) == ["TrialPending"]
    again = run(ev, T0 + 62 * M, {DENSE: ready(DENSE, 4)})
    assert again.trial == step.trial and events(again) == []  # said once, since unchanged


def test_no_trial_when_balance_is_already_measured_or_mode_is_pinned() -> None:
    for ev in (evaluation("sustained"), evaluation(mode="Dense"), evaluation(enabled=False)):
        run = Run()
        run(ev, T0, {})
        step = run(ev, T0 + 61 * M, {DENSE: ready(DENSE)})
        assert step.trial is None
        assert ("apply", "MoE", 1) not in actions(step) or step.target == MOE


def test_a_moe_plan_whose_balance_degrades_is_demoted_like_any_lapsed_gate() -> None:
    good = evaluation("sustained")
    rows = [r.model_copy(update={"since": switching.rfc3339(T0)}) for r in good.decision.rows]
    prev = api.ServingPlanStatus(
        mode=MOE, target_mode=MOE, criteria=rows, last_switch_time=switching.rfc3339(T0)
    )
    hot = evaluation("hot-expert")
    seen = {MOE: ready(MOE)}
    first = switching.step(hot, prev, seen, T0 + 2 * H)
    assert first.target == MOE and first.reason == "DemotionGrace"  # policy.demotionGrace 5m
    later = switching.step(hot, status_of(first, hot, seen), seen, T0 + 2 * H + 6 * M)
    assert later.target == DENSE and later.reason == "ExpertBalanceLapsed"
    assert later.trial is None  # a serving MoE plan reads the telemetry; no trial


def test_a_plan_demoted_for_a_hot_rank_runs_no_trial_before_retry_after() -> None:
    """The EPLB telemetry that demoted it is a measurement: no trial (which would keep the
    draining MoE workload as its own, hot ranks and all) before spec.trial.retryAfter (6h)."""
    good = evaluation("sustained")
    rows = [r.model_copy(update={"since": switching.rfc3339(T0)}) for r in good.decision.rows]
    run = Run()
    run.status = api.ServingPlanStatus(
        mode=MOE, target_mode=MOE, criteria=rows, last_switch_time=switching.rfc3339(T0)
    )
    hot = evaluation("hot-expert")
    both = {DENSE: ready(DENSE), MOE: ready(MOE)}
    hot_since = T0 + 2 * H
    run(hot, hot_since, {MOE: ready(MOE)})
    assert run(hot, hot_since + 6 * M, both).reason == "ExpertBalanceLapsed"
    drained = run(hot, hot_since + 10 * M, both)  # the Service is on dense, MoE drains
    assert drained.mode == DENSE, drained.reason
    for at in (hot_since + 11 * M, hot_since + 5 * H):
        step = run(hot, at, {DENSE: ready(DENSE)})
        assert step.trial is None and ("apply", "MoE", 1) not in actions(step), at
        assert ("delete", "MoE", None) in actions(step) or not any(
            a.mode == MOE for a in step.actions
        )
    again = run(hot, hot_since + 6 * H + M, {DENSE: ready(DENSE)})
    assert again.trial is not None and again.trial.phase == P.RUNNING  # measured afresh


def test_decide_never_deletes_a_serving_moe_workload() -> None:
    ev = evaluation()
    prev = api.TrialStatus(phase=P.RUNNING, since="2026-11-01T00:00:00Z", generation=1)
    d = trial.decide(
        ev,
        prev,
        MOE,
        trial.MoESeen(exists=True, ready=1),
        0,
        trial.Gates(start=None, run="sustainedLoad is StayDense"),
        "w",
        T0,
    )
    assert not d.remove and not d.run
    assert d.status is not None and d.status.phase == P.ABORTED


def test_explain_shows_the_trial() -> None:
    from breakeven.cli import explaining

    run = Run()
    running_trial(run)
    failed = run(
        evaluation("hot-expert"), T0 + 61 * M + 2 * H, {DENSE: ready(DENSE), MOE: ready(MOE)}
    )
    text = explaining.trial_text(failed.trial)
    lines = text.splitlines()
    assert lines[0] == "Trial (expert balance):"
    assert "  phase:            Failed since 2026-11-01T03:01:00Z" in lines
    assert "  workload:         deepseek-v3-sustained-moe" in lines
    assert any(
        line.startswith("  reason:           imbalance: busiest EP rank 2.60x") for line in lines
    )
    assert "  next trial after: 2026-11-01T09:01:00Z" in lines
    assert explaining.trial_text(None) == ""


def test_trial_metrics_follow_the_step() -> None:
    from breakeven.shell import metrics

    run = Run()
    ev = evaluation()
    step = running_trial(run, ev)
    metrics.record("t/metrics", ev, step)
    sample = metrics.REGISTRY.get_sample_value
    assert sample("breakeven_trial_phase", {"plan": "t/metrics", "phase": "Running"}) == 1
    assert sample("breakeven_trial_phase", {"plan": "t/metrics", "phase": "Failed"}) == 0
    # No EPLB figure yet: no balance series rather than a made-up one.
    assert sample("breakeven_trial_rank_load_max_over_mean", {"plan": "t/metrics"}) is None
    balanced = evaluation("sustained")
    mid = run(balanced, T0 + 2 * H, {DENSE: ready(DENSE), MOE: ready(MOE)})
    metrics.record("t/metrics", balanced, mid)
    assert sample("breakeven_trial_rank_load_max_over_mean", {"plan": "t/metrics"}) == 1.3
    metrics.forget_plan("t/metrics")
    assert sample("breakeven_trial_phase", {"plan": "t/metrics", "phase": "Running"}) is None
