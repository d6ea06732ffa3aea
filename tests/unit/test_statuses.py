"""Status, conditions and Events (statuses.build, statuses.invalid), and what a step writes
(statuses.writes), on real evaluations of the example plans; no cluster, no clock."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from breakeven.core import api, facts, planning, statuses, switching
from breakeven.shell import inputs

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MOE, DENSE = api.ServingMode.MOE, api.ServingMode.DENSE


def evaluation(traffic: str = "sustained", **spec: Any) -> planning.Evaluation:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-sustained.yaml")[0]
    plan = plan.model_copy(
        update={
            "spec": plan.spec.model_copy(update=spec),
            "metadata": plan.metadata.model_copy(update={"generation": 3, "uid": "u"}),
        }
    )
    cluster = inputs.load_cluster(ROOT / "examples/nodes/h200-infiniband.yaml", plan)
    return planning.evaluate(
        plan, cluster, inputs.load_traffic(ROOT / f"examples/traffic/{traffic}.yaml")
    )


def ready(mode: api.ServingMode, n: int = 1) -> switching.Observed:
    return switching.Observed(
        mode=mode, exists=True, kind="Deployment", replicas=n, ready_replicas=n
    )


def reasons(outcome: statuses.Outcome) -> list[str]:
    return [e.reason for e in outcome.events]


def test_a_first_reconcile_writes_the_mode_rows_conditions_and_a_deploying_event() -> None:
    ev = evaluation()
    step = switching.step(ev, None, {DENSE: ready(DENSE)}, T0)
    out = statuses.build(ev, step, {DENSE: ready(DENSE)}, None, T0)
    s = out.status
    assert (s["mode"], s["targetMode"], s["decidedMode"]) == ("Dense", "Dense", "MoE")
    assert s["phase"] == "Serving" and s["ready"] == "1/1" and s["observedGeneration"] == 3
    assert s["workloads"] == [
        {
            "kind": "Deployment",
            "name": "deepseek-v3-sustained-dense",
            "mode": "Dense",
            "replicas": 1,
            "readyReplicas": 1,
            "serving": True,
        }
    ]
    assert [c["type"] for c in s["conditions"]] == [
        "RubricEvaluated",
        "MoEPrerequisitesMet",
        "Ready",
        "Switching",
        "FallbackActive",
        "Trial",
        "NodesLeftOut",
    ]
    assert reasons(out) == []  # dense already served: nothing to announce
    nothing_yet = statuses.build(ev, switching.step(ev, None, {}, T0), {}, None, T0)
    assert reasons(nothing_yet) == ["Deploying"]
    assert nothing_yet.status["phase"] == "Deploying" and "ready" not in nothing_yet.status
    assert api.ServingPlanStatus.model_validate(s).mode == DENSE  # what the next reconcile reads


def test_a_changed_decision_is_announced_once() -> None:
    ev = evaluation(traffic="bursty")  # the rubric now says Dense
    prev = api.ServingPlanStatus(mode=DENSE, target_mode=DENSE, decided_mode=MOE)
    step = switching.step(ev, prev, {DENSE: ready(DENSE)}, T0)
    first = statuses.build(ev, step, {DENSE: ready(DENSE)}, prev, T0)
    assert "DecisionChanged" in reasons(first)
    again_prev = api.ServingPlanStatus.model_validate(first.status)
    again = statuses.build(ev, step, {DENSE: ready(DENSE)}, again_prev, T0, decided_before=DENSE)
    assert "DecisionChanged" not in reasons(again)
    # A change seen within the process (before status caught up) counts too.
    seen = statuses.build(ev, step, {DENSE: ready(DENSE)}, again_prev, T0, decided_before=MOE)
    assert "DecisionChanged" in reasons(seen)


def test_a_failed_apply_reports_what_the_cluster_still_runs_and_warns_once() -> None:
    ev = evaluation(
        policy=evaluation().plan.spec.policy.model_copy(update={"promotion_window": "1m"})
    )
    prev = api.ServingPlanStatus.model_validate(
        statuses.build(ev, switching.step(ev, None, {}, T0), {}, None, T0).status
    )
    later = T0 + dt.timedelta(minutes=5)
    step = switching.step(ev, prev, {DENSE: ready(DENSE)}, later)
    assert step.target == MOE and step.events  # a switch would start
    out = statuses.build(
        ev, step, {DENSE: ready(DENSE)}, prev, later, applied_error="API server refused: 403"
    )
    s = out.status
    assert (s["phase"], s["reason"], s["mode"]) == ("Degraded", "ApplyFailed", "Dense")
    assert "switch" not in s  # nothing started
    assert reasons(out) == ["ApplyFailed"]  # the step's own events are not posted
    again = statuses.build(
        ev,
        step,
        {DENSE: ready(DENSE)},
        api.ServingPlanStatus.model_validate(s),
        later,
        applied_error="API server refused: 403",
    )
    assert "ApplyFailed" not in reasons(again)


def test_a_dry_run_reports_the_manifests_and_posts_no_step_events() -> None:
    ev = evaluation(dry_run=True)
    step = switching.step(ev, None, {}, T0)
    out = statuses.build(ev, step, {}, None, T0, rendered=[{"kind": "Deployment"}])
    assert out.status["phase"] == "Planned" and out.status["rendered"] == [{"kind": "Deployment"}]
    assert "mode" not in out.status and "switch" not in out.status
    assert reasons(out) == []
    # Done once planned: Ready=True/Planned, so kstatus and `kubectl wait` see it reconciled.
    ready = next(c for c in out.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Planned")
    assert "Stalled" not in {c["type"] for c in out.status["conditions"]}


def test_a_pinned_moe_whose_prerequisites_fail_warns_once() -> None:
    ev = evaluation(traffic="bursty", mode=api.Mode.MOE)
    assert not ev.decision.prerequisites_met
    step = switching.step(ev, None, {}, T0)
    first = statuses.build(ev, step, {}, None, T0)
    assert "PinnedMoEPrerequisitesNotMet" in reasons(first)
    prev = api.ServingPlanStatus.model_validate(first.status)
    again = statuses.build(ev, switching.step(ev, prev, {}, T0), {}, prev, T0)
    assert "PinnedMoEPrerequisitesNotMet" not in reasons(again)


def test_placements_are_written_as_recorded() -> None:
    ev = evaluation()
    step = switching.step(ev, None, {}, T0)
    plan = ev.plan
    writes = statuses.writes(plan, ev, step, None)
    assert set(writes.placements) == {"Dense"}
    out = statuses.build(ev, step, {}, None, T0, placements=writes.placements)
    back = api.ServingPlanStatus.model_validate(out.status)
    assert back.placements is not None
    record = back.placements["Dense"]
    assert record.generation == 3
    assert statuses.pinned(record, plan) == ev.candidate(DENSE)
    newer = plan.model_copy(update={"metadata": plan.metadata.model_copy(update={"generation": 4})})
    assert statuses.pinned(record, newer) is None  # a changed spec re-places


def test_writes_scale_only_the_serving_workload_and_select_both_modes_when_asked() -> None:
    ev = evaluation()
    step = switching.Step(
        mode=DENSE,
        target=MOE,
        phase=api.Phase.SWITCHING,
        reason="r",
        message="m",
        rows=(),
        actions=(
            switching.Action(kind="select", selector="both"),
            switching.Action(kind="apply", mode=DENSE, replicas=0),
            switching.Action(kind="delete", mode=MOE),
        ),
    )
    writes = statuses.writes(ev.plan, ev, step, None)
    verbs = [(verb, what["kind"] if verb == "apply" else what) for verb, what in writes.writes]
    assert verbs == [("apply", "Service"), ("apply", "Deployment"), ("delete", MOE)]
    service, deployment = writes.writes[0][1], writes.writes[1][1]
    assert "breakeven.dev/mode" not in service["spec"]["selector"]
    assert deployment["spec"]["replicas"] == 0
    assert "MoE" not in writes.placements


def test_an_invalid_spec_keeps_everything_but_ready_and_warns_once() -> None:
    body = {
        "metadata": {"name": "p", "namespace": "n", "generation": 7},
        "status": {
            "mode": "MoE",
            "placements": {"MoE": {"generation": 6, "pool": {}, "estimate": {}}},
            "conditions": [
                {"type": "Switching", "status": "False", "reason": "Idle",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "Serving",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "breakeven.dev": {"progress": {}},
        },
    }  # fmt: skip
    prev = statuses.previous(body)
    out = statuses.invalid(body, prev, "spec.model.name: unknown", T0)
    s = out.status
    assert s["mode"] == "MoE" and s["placements"] == body["status"]["placements"]  # type: ignore[index]
    assert (s["phase"], s["reason"], s["observedGeneration"]) == ("Invalid", "InvalidSpec", 7)
    assert "breakeven.dev" not in s
    ready = [c for c in s["conditions"] if c["type"] == "Ready"]
    assert (
        ready[0]["status"] == "False" and ready[0]["lastTransitionTime"] == "2026-11-01T00:00:00Z"
    )
    assert [c["type"] for c in s["conditions"]] == ["Switching", "Ready", "Stalled"]
    stalled = s["conditions"][-1]
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")  # kstatus: Failed
    assert reasons(out) == ["InvalidSpec"]
    again = statuses.invalid(
        {**body, "status": s},
        api.ServingPlanStatus.model_validate(s),
        "spec.model.name: unknown",
        T0,
    )
    assert reasons(again) == []
    # The Stalled clock holds while the spec stays invalid.
    assert again.status["conditions"][-1]["lastTransitionTime"] == stalled["lastTransitionTime"]


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


# A status as the operator wrote it before switch and placements were typed (v0 of this shape):
# it must still read, or every clock restarts on upgrade.
OLD_STATUS = {
    "observedGeneration": 2,
    "mode": "Dense",
    "targetMode": "MoE",
    "decidedMode": "MoE",
    "phase": "Switching",
    "reason": "AllGatesGo",
    "criteria": [{"name": "sustainedLoad", "verdict": "Go", "since": "2026-11-01T00:00:00Z"}],
    "switch": {
        "from": "Dense",
        "to": "MoE",
        "startedAt": "2026-11-01T00:00:00Z",
        "step": "Stepwise",
        "stepwise": True,
        "targetReady": 1,
    },
    "lastSwitchTime": "2026-10-01T00:00:00Z",
    "placements": {
        "Dense": {
            "generation": 2,
            "pool": {"gpu": "H200", "gpusPerNode": 8, "nodes": ["a"]},
            "estimate": {"mode": "Dense", "gpus": 8},
        }
    },
    "someFieldFromANewerOperator": {"x": 1},
}


def test_a_status_written_before_the_typed_switch_still_reads() -> None:
    status = api.ServingPlanStatus.model_validate(OLD_STATUS)
    assert status.switch is not None
    assert status.switch.step == api.SwitchStep.STEPWISE and status.switch.target_ready == 1
    assert status.switch.from_ == DENSE and status.switch.to == MOE
    assert status.placements is not None and status.placements["Dense"].generation == 2
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["switch"] == OLD_STATUS["switch"]
    assert dumped["placements"] == OLD_STATUS["placements"]


@pytest.mark.parametrize(
    "switch",
    [
        {
            "from": "Dense",
            "to": "MoE",
            "startedAt": "t",
            "step": "WaitingForTarget",
            "stepwise": False,
        },
        {"from": "Dense", "to": "MoE", "startedAt": "t", "step": "BlockedNoRoom", "stepwise": True},
        {"from": "MoE", "to": "Dense", "startedAt": "t", "step": "Draining", "drainUntil": "u"},
        {"from": "MoE", "to": "Dense", "startedAt": "t", "step": "Draining", "later": {"x": 1}},
    ],
)
def test_every_switch_shape_the_operator_wrote_reads(switch: dict[str, Any]) -> None:
    status = statuses.previous({"metadata": {"name": "p"}, "status": {"switch": switch}})
    assert status is not None and status.switch is not None
    assert status.switch.model_dump(by_alias=True, mode="json", exclude_none=True) == switch


def test_an_unreadable_status_reads_as_none() -> None:
    assert statuses.previous({"metadata": {"name": "p"}, "status": {"mode": "Sideways"}}) is None
    assert statuses.previous({"metadata": {"name": "p"}, "status": {"breakeven.dev": {}}}) is None


def test_a_workload_is_broken_by_crashing_pods_or_by_no_ready_pods_past_the_grace() -> None:
    crash = {
        "metadata": {"name": "x"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
    }
    assert statuses.broken([crash], None, 300, T0) == "pod x: CrashLoopBackOff"
    lws = api.WorkloadStatus(
        kind="LeaderWorkerSet", name="m", mode=MOE, ready_replicas=1, serving=True
    )
    served = api.ServingPlanStatus(workloads=[lws])
    # Every ready pod gone (a single-group LWS restarting a pod): the clock starts, no failure.
    down = statuses.down_since(0, MOE, served, T0)
    assert down == statuses.rfc3339(T0)
    assert statuses.broken([], down, 300, T0 + dt.timedelta(minutes=4)) is None
    assert statuses.broken([], down, 300, T0 + dt.timedelta(minutes=6)) is not None
    # The clock is carried in status while the workload stays down, and ends when it is back.
    still = lws.model_copy(update={"ready_replicas": 0, "down_since": down})
    later = served.model_copy(update={"workloads": [still]})
    assert statuses.down_since(0, MOE, later, T0 + dt.timedelta(minutes=6)) == down
    assert statuses.down_since(1, MOE, later, T0 + dt.timedelta(minutes=6)) is None
    assert statuses.down_since(0, MOE, None, T0) is None  # never served: still coming up


def test_nodes_left_out_as_bad_input_are_reported_stably_and_announced_once() -> None:
    """facts.Cluster.warnings: the NodesLeftOut condition names them sorted and at most
    NODES_SHOWN (the rest counted), and a Warning Event says so once per change."""
    ev = evaluation()
    nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]
    bad = []
    for i in range(7):  # seven bad H200 nodes, given in reverse order
        node = copy.deepcopy(nodes[0])
        node["metadata"]["name"] = f"bad-{i}"
        node["status"]["allocatable"]["nvidia.com/gpu"] = "eight"
        bad.insert(0, node)
    cluster = facts.Cluster.from_nodes(
        [*nodes, *bad], node_selector=ev.plan.spec.serving.node_selector
    )
    assert len(cluster.warnings) == 7
    ev = ev.model_copy(update={"cluster": cluster})
    step = switching.step(ev, None, {}, T0)
    first = statuses.build(ev, step, {}, None, T0)
    [cond] = [c for c in first.status["conditions"] if c["type"] == "NodesLeftOut"]
    assert (cond["status"], cond["reason"]) == ("True", "BadNodeFacts")
    assert cond["message"] == (
        "7 GPU nodes left out as bad input: "
        + "; ".join(
            f"node bad-{i}: allocatable nvidia.com/gpu 'eight' is not a quantity; left out"
            for i in range(5)
        )
        + "; and 2 more"
    )
    assert "NodesLeftOut" in reasons(first)
    prev = api.ServingPlanStatus.model_validate(first.status)
    again = statuses.build(ev, switching.step(ev, prev, {}, T0), {}, prev, T0)
    assert again.status["conditions"] == first.status["conditions"]
    assert "NodesLeftOut" not in reasons(again)  # unchanged: said once
    healthy = evaluation()
    fixed = statuses.build(healthy, switching.step(healthy, prev, {}, T0), {}, prev, T0)
    [cond] = [c for c in fixed.status["conditions"] if c["type"] == "NodesLeftOut"]
    assert (cond["status"], cond["reason"]) == ("False", "AllNodesRead")
    assert "NodesLeftOut" not in reasons(fixed)
