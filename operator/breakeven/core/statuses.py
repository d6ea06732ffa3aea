"""Everything a plan's status, conditions and Events are built from. Pure: no I/O, no clock.

The reconcile (breakeven.shell.reconcile) gathers facts and observes the cluster; this module
turns what it found into what it writes:

    body.status ──previous──> ServingPlanStatus ──┐
    pods ──broken──> Observed.broken              │
                                                  ├─ switching.step ──> Step
    Step ──writes──> objects to apply, modes to delete, placements
    Step + apply outcome ──build──> Outcome(status, events, step)   ──merge_patch──> the patch
    invalid spec ──invalid──> Outcome (status kept, Ready=False InvalidSpec)

`build` is the one place status is made: what the cluster runs now, the rubric's rows, the
conditions, and which Events to post (a changed decision, the step's own events, a pinned MoE
whose prerequisites are not met, a failed apply), each posted once, not on every reconcile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from breakeven.core import api, capacity, facts, planning, rendering, report, rubric, switching
from breakeven.core.rendering import routes, telemetry

MESSAGE_LIMIT = 1024
NODES_SHOWN = 5  # nodes the NodesLeftOut condition names; the rest are counted
# Container waiting reasons that mean the workload will not come up by itself.
BAD_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
    }
)
KEPT_BY_KOPF = "breakeven.dev"  # kopf's bookkeeping under status; never ours to write


@dataclass(frozen=True)
class Outcome:
    """What one reconcile writes: the status, the Events to post, and the step it reports."""

    status: dict[str, Any]
    events: tuple[switching.Event, ...]
    step: switching.Step | None = None


# ------------------------------------------------------------------------------ reading back


def current(body: Mapping[str, Any]) -> dict[str, Any]:
    """The status as written, without kopf's bookkeeping."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != KEPT_BY_KOPF}


def previous(body: Mapping[str, Any]) -> api.ServingPlanStatus | None:
    """The status the operator wrote last, or None when there is none or it cannot be read
    (then the caller says so: every clock restarts).

    A status written by a newer operator (read after a rollback, the newer CRD still in place)
    may carry fields or values this version does not know. Those parts are dropped, not the
    whole status: an unknown field goes, an unreadable list item (a row of an unknown
    criterion) or top-level field (an unknown phase) goes, and everything else, the clocks
    above all, is kept. A status none of which can be read is None."""
    raw = current(body)
    if not raw:
        return None
    data: Any = raw
    for _ in range(_READ_ATTEMPTS):
        if not data:  # nothing of it could be read
            return None
        try:
            return api.ServingPlanStatus.model_validate(data)
        except pydantic.ValidationError as exc:
            data = _without(data, [_unreadable(e) for e in exc.errors()])
    return None


_READ_ATTEMPTS = 8
_DROPPED = object()


def _unreadable(error: Any) -> tuple[str | int, ...]:
    """The part of a status a validation error condemns: an unknown field itself; else the
    list item it is in (the outermost), or the top-level field."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return loc
    for i, part in enumerate(loc):
        if isinstance(part, int):
            return loc[: i + 1]
    return loc[:1]


def _without(data: Any, paths: Sequence[tuple[str | int, ...]]) -> Any:
    """A deep copy of `data` without the parts at `paths`."""

    def copy(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [copy(v) for v in value]
        return value

    def sweep(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: sweep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sweep(v) for v in value if v is not _DROPPED]
        return value

    out = copy(data)
    for path in paths:
        if not path:  # an error about the status as a whole: nothing to single out
            continue
        parent = out
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
            parent[path[-1]] = _DROPPED
    return sweep(out)


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `current` into `desired`.

    A merge patch merges nested objects, so a key that disappears (a placement dropped, a
    switch step's field no longer there) must be sent as null, at every depth.
    """
    patch: dict[str, Any] = {k: None for k in current if k not in desired}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif old != value:
            patch[key] = value
    return patch


# ------------------------------------------------------------------------------ observing


def down_since(
    ready: int, mode: api.ServingMode, previous: api.ServingPlanStatus | None, now: dt.datetime
) -> str | None:
    """Since when a workload that had served has had no ready pods; None while it has some, or
    while it never served (it is still coming up)."""
    if ready > 0:
        return None
    before = [w for w in (previous.workloads if previous else []) if w.mode == mode]
    for w in before:
        if w.down_since:
            return w.down_since
    if any(w.ready_replicas > 0 and w.serving for w in before):
        return rfc3339(now)
    return None


# How long a switch's target may take to get its first ready pod before the attempt counts as
# broken (and backs off): the pods' startup probe allows an hour to download and load weights
# (rendering: 360 x 10 s), and image pulls and scheduling get as long again. Pods Pending for a
# PVC or PriorityClass that does not exist, or never created (Pod Security Admission), never
# become ready; without this deadline such a switch waited for ever.
TARGET_READY_DEADLINE_S = 2 * 3600.0


def broken(
    pods: Sequence[Mapping[str, Any]],
    down: str | None,
    grace: float,
    now: dt.datetime,
    coming_up_since: str | None = None,
) -> str | None:
    """Why a workload is failing: crashing pods at once, no ready pods for longer than `grace`
    seconds after it had served, or, for a switch's target that never served
    (`coming_up_since`: when the switch to it started), no ready pod within
    TARGET_READY_DEADLINE_S. A rollout or a pod restart that takes every ready pod away for a
    moment (a single-group LeaderWorkerSet, say) is not a failure."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed":
            return f"pod {pod['metadata']['name']} failed"
        for cs in status.get("containerStatuses") or []:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in BAD_WAITING:
                return f"pod {pod['metadata']['name']}: {reason}"
    since = switching.parse_time(down)
    if since is not None and (now - since).total_seconds() > grace:
        return f"no ready pods since {down} (nodes gone or pods evicted)"
    started = switching.parse_time(coming_up_since)
    if started is not None and (now - started).total_seconds() > TARGET_READY_DEADLINE_S:
        why = _not_scheduled(pods) or (
            f"{len(pods)} pods, none ready" if pods else "no pods created (admission refused?)"
        )
        return (
            f"no ready pod {TARGET_READY_DEADLINE_S / 3600:g}h after the switch began at "
            f"{coming_up_since}: {why}"
        )
    return None


def _not_scheduled(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The first pod's reason for not being scheduled, as the scheduler wrote it."""
    for pod in pods:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                name = (pod.get("metadata") or {}).get("name", "?")
                return f"pod {name} not scheduled: {str(c.get('message') or c.get('reason'))[:200]}"
    return None


# ------------------------------------------------------------------------------ what to write


WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet")


@dataclass(frozen=True)
class Writes:
    """A step's actions as objects, in order: objects to apply, modes to delete, and stale
    objects (`Kind/name`) to delete."""

    writes: tuple[tuple[Literal["apply", "delete", "prune"], Any], ...]
    placements: dict[str, api.Placement]


def expected(
    evaluation: planning.Evaluation,
    mode: api.ServingMode,
    previous: api.ServingPlanStatus | None,
) -> frozenset[tuple[str, str]] | None:
    """The workload objects (kind, name) the plan renders for `mode` now, from its recorded
    placement while the spec is unchanged; None when the mode cannot be rendered."""
    placements = (previous.placements or {}) if previous else {}
    candidate = pinned(placements.get(mode.value), evaluation.plan)
    try:
        objs = report.manifests_for(evaluation, mode, candidate)
    except report.RenderFailure:
        return None
    return frozenset(
        (o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in WORKLOAD_KINDS
    )


def placement(candidate: rubric.Candidate, plan: api.ServingPlan) -> api.Placement:
    return api.Placement(
        generation=plan.metadata.generation,
        pool=candidate.pool.model_dump(by_alias=True, mode="json"),
        estimate=candidate.estimate.model_dump(mode="json"),
    )


def pinned(record: api.Placement | None, plan: api.ServingPlan) -> rubric.Candidate | None:
    """The pool and sizing a mode was rendered from, while the spec has not changed since.
    None when there is no record, the spec changed, or the record cannot be read."""
    if record is None or record.generation != plan.metadata.generation:
        return None
    try:
        return rubric.Candidate(
            pool=facts.Pool.model_validate(record.pool),
            estimate=capacity.Estimate.model_validate(record.estimate),
        )
    except pydantic.ValidationError:
        return None


def with_replicas(obj: dict[str, Any], replicas: int | None) -> dict[str, Any]:
    """A workload scaled to `replicas` (None: as rendered); other kinds untouched."""
    if replicas is None or obj.get("kind") not in ("Deployment", "LeaderWorkerSet"):
        return obj
    return {**obj, "spec": {**obj["spec"], "replicas": replicas}}


def service(plan: api.ServingPlan, mode: api.ServingMode, both: bool) -> dict[str, Any]:
    """The plan's Service selecting `mode`, or both modes' pods while a switch goes in steps."""
    svc = rendering.service(plan, mode)
    if both:
        svc["spec"]["selector"].pop("breakeven.dev/mode", None)
    return svc


def writes(
    plan: api.ServingPlan,
    evaluation: planning.Evaluation,
    step: switching.Step,
    previous: api.ServingPlanStatus | None,
    telemetry_options: telemetry.Options = telemetry.DEFAULT,
) -> Writes:
    """Render everything a step asks for (raising report.RenderFailure before anything is
    written), and the placements to record: each applied mode's pool and sizing, pinned until the
    spec changes, without the modes deleted. MoE workloads carry their EPLB telemetry as
    `telemetry_options` says."""
    out: list[tuple[Literal["apply", "delete", "prune"], Any]] = []
    placements = dict(previous.placements or {}) if previous else {}
    for action in step.actions:
        if action.kind == "apply" and action.mode is not None:
            candidate = pinned(placements.get(action.mode.value), plan)
            candidate = candidate or evaluation.candidate(action.mode)
            main = rendering.workload_name(plan, action.mode)
            objs = report.manifests_for(evaluation, action.mode, candidate, telemetry_options)
            if action.shadow:
                objs = routes.shadowed(objs, plan.spec.model.name)
            for obj in objs:
                # Only the serving workload is scaled; a P/D prefill set keeps its own count.
                if obj["metadata"]["name"] == main:
                    obj = with_replicas(obj, action.replicas)
                out.append(("apply", obj))
            if candidate is not None:
                placements[action.mode.value] = placement(candidate, plan)
        elif action.kind == "select":
            mode = action.mode or step.mode or step.target
            out.append(("apply", service(plan, mode, action.selector == "both")))
        elif action.kind == "delete" and action.mode is not None:
            out.append(("delete", action.mode))
            placements.pop(action.mode.value, None)
        elif action.kind == "prune":
            out.extend(("prune", obj) for obj in action.objects)
        elif action.kind == "route":
            if action.mirror is not None:  # the mirror's Service first, then the route to it
                out.append(("apply", routes.trial_service(plan)))
            out.append(("apply", routes.http_route(plan, action.mirror)))
    return Writes(tuple(out), placements)


# ------------------------------------------------------------------------------ conditions


def _upper(name: str) -> str:
    return name[0].upper() + name[1:]


def conditions(
    step: switching.Step,
    evaluation: planning.Evaluation,
    previous: Sequence[api.Condition],
    generation: int | None,
    now: dt.datetime,
) -> list[api.Condition]:
    """Conditions per the Kubernetes API conventions; transition time moves only on change.

    A dry run has nothing to wait for: once its decision and manifests are in status it is done,
    so Ready is True with reason Planned (GitOps tools and `kubectl wait` see it as reconciled;
    kstatus would otherwise read Ready=False as in progress for good)."""
    blocking = [r for r in step.rows if r.gating and r.verdict != api.Verdict.GO]
    dry = evaluation.plan.spec.dry_run
    rubric_mode = evaluation.decision.rubric_mode.value
    wanted: list[tuple[str, Literal["True", "False"], str, str]] = [
        (
            "RubricEvaluated",
            "True",
            "Evaluated",
            f"{len(step.rows)} criteria evaluated; rubric says {rubric_mode}",
        ),
        (
            "MoEPrerequisitesMet",
            "True" if not blocking else "False",
            "AllGatesGo" if not blocking else _upper(blocking[0].name),
            "every gating criterion is Go"
            if not blocking
            else "; ".join(f"{r.name}: {r.reason}" for r in blocking),
        ),
        (
            "Ready",
            "True" if dry or step.phase == api.Phase.SERVING else "False",
            api.Phase.PLANNED.value if dry else step.phase.value,
            f"dry run, nothing applied: {step.message}" if dry else step.message,
        ),
        (
            "Switching",
            "True" if step.switch else "False",
            step.switch.step.value if step.switch else "Idle",
            step.message if step.switch else "no switch in progress",
        ),
        (
            "FallbackActive",
            "True" if step.fallback else "False",
            step.reason if step.fallback else "NoFallback",
            step.message if step.fallback else "not falling back",
        ),
        _trial_condition(step.trial),
        nodes_left_out(evaluation.cluster),
    ]
    return [
        _condition(previous, type_, status, reason, message, generation, now)
        for type_, status, reason, message in wanted
    ]


def _trial_condition(
    trial: api.TrialStatus | None,
) -> tuple[str, Literal["True", "False"], str, str]:
    """`Trial`: True while a trial runs or waits; its reason is the trial's phase."""
    if trial is None:
        return ("Trial", "False", "NoTrial", "no expert-balance trial has run")
    live = trial.phase in (api.TrialPhase.PENDING, api.TrialPhase.RUNNING)
    return (
        "Trial",
        "True" if live else "False",
        "Trial" + trial.phase.value,
        trial.reason or trial.phase.value,
    )


def nodes_left_out(cluster: facts.Cluster) -> tuple[str, Literal["True", "False"], str, str]:
    """`NodesLeftOut`: True while GPU nodes that match the plan are left out of its pools as
    bad input (facts.Cluster.warnings: a GPU count, memory or RDMA quantity that makes no
    sense). The message names them sorted, at most NODES_SHOWN, so it is the same on every
    reconcile while the nodes are, and bounded however many there are."""
    warnings = sorted(set(cluster.warnings))
    if not warnings:
        return ("NodesLeftOut", "False", "AllNodesRead", "no GPU node was left out as bad input")
    shown = "; ".join(warnings[:NODES_SHOWN])
    more = len(warnings) - NODES_SHOWN
    count = f"{len(warnings)} GPU node{'s' if len(warnings) > 1 else ''} left out as bad input"
    message = f"{count}: {shown}" + (f"; and {more} more" if more > 0 else "")
    return ("NodesLeftOut", "True", "BadNodeFacts", message)


def _condition(
    previous: Sequence[api.Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> api.Condition:
    old = next((c for c in previous if c.type == type_), None)
    unchanged = old is not None and old.status == status
    return api.Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        last_transition_time=old.last_transition_time if old and unchanged else rfc3339(now),
        observed_generation=generation,
    )


def rfc3339(moment: dt.datetime) -> str:
    return switching.rfc3339(moment)


# ------------------------------------------------------------------------------ the status


def _apply_failed(
    step: switching.Step, previous: api.ServingPlanStatus | None, message: str
) -> switching.Step:
    """Nothing (or not all) was applied: report the state the cluster is still in."""
    return step.model_copy(
        update={
            "mode": previous.mode if previous else None,
            "switch": previous.switch if previous else None,
            "last_switch_time": previous.last_switch_time if previous else None,
            "trial": previous.trial if previous else None,
            "route": previous.route if previous else None,
            "events": (),
            "phase": api.Phase.DEGRADED,
            "reason": "ApplyFailed",
            "message": message,
        }
    )


def _workloads(
    plan: api.ServingPlan,
    step: switching.Step,
    observed: Mapping[api.ServingMode, switching.Observed],
) -> list[api.WorkloadStatus]:
    return [
        api.WorkloadStatus(
            kind=obs.kind or "Deployment",
            name=rendering.workload_name(plan, mode),
            mode=mode,
            replicas=obs.replicas,
            ready_replicas=obs.ready_replicas,
            serving=(mode == step.mode),
            down_since=obs.down_since,
        )
        for mode, obs in observed.items()
        if obs.exists
    ]


def build(
    evaluation: planning.Evaluation,
    step: switching.Step,
    observed: Mapping[api.ServingMode, switching.Observed],
    previous: api.ServingPlanStatus | None,
    now: dt.datetime,
    *,
    rendered: list[dict[str, Any]] | None = None,
    applied_error: str | None = None,
    placements: Mapping[str, api.Placement] | None = None,
    decided_before: api.ServingMode | None = None,
) -> Outcome:
    """The status to write after a reconcile and the Events to post.

    `applied_error`: why carrying out the step failed (then status reports what the cluster still
    runs); `placements`: what the carried-out step recorded; `decided_before`: the rubric's mode
    at this plan's previous reconcile in this process, so a change is announced once.
    """
    plan = evaluation.plan
    dry = plan.spec.dry_run
    if applied_error and not dry:
        step = _apply_failed(step, previous, applied_error)
    generation = plan.metadata.generation
    serving = observed.get(step.mode) if step.mode else None
    status = api.ServingPlanStatus(
        observed_generation=generation,
        mode=(previous.mode if previous else None) if dry else step.mode,
        target_mode=step.target,
        decided_mode=evaluation.decision.rubric_mode,
        phase=api.Phase.PLANNED if dry else step.phase,
        reason="ApplyFailed" if applied_error else step.reason,
        message=(applied_error or step.message)[:MESSAGE_LIMIT],
        ready=f"{serving.ready_replicas}/{serving.replicas}" if serving and not dry else None,
        criteria=list(step.rows),
        estimates=evaluation.estimates(),
        workloads=_workloads(plan, step, observed),
        switch=None if dry else step.switch,
        last_switch_time=step.last_switch_time,
        moe_backoff=None if dry else step.moe_backoff,
        trial=None if dry else step.trial,
        route=None if dry else step.route,
        rendered=rendered,
        conditions=conditions(
            step, evaluation, previous.conditions if previous else [], generation, now
        ),
    )
    out = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    if placements:
        out["placements"] = {
            mode: p.model_dump(by_alias=True, mode="json") for mode, p in placements.items()
        }
    events = _events(evaluation, step, previous, applied_error, decided_before)
    return Outcome(out, events, step)


def _events(
    evaluation: planning.Evaluation,
    step: switching.Step,
    previous: api.ServingPlanStatus | None,
    applied_error: str | None,
    decided_before: api.ServingMode | None,
) -> tuple[switching.Event, ...]:
    """The Events a reconcile posts; each says something new, never the same thing twice."""
    plan, decision = evaluation.plan, evaluation.decision
    decided = decision.rubric_mode
    out = []
    if (decided_before is not None and decided_before != decided) or (
        previous is not None and previous.decided_mode not in (None, decided)
    ):
        out.append(
            switching.Event(
                type="Normal",
                reason="DecisionChanged",
                message=f"rubric now says {decided.value}: {decision.message}",
            )
        )
    if not plan.spec.dry_run:
        out.extend(step.events)
    if (
        plan.spec.mode == api.Mode.MOE
        and not decision.prerequisites_met
        and (previous is None or previous.reason != step.reason or previous.decided_mode != decided)
    ):
        blocking = [r.name.value for r in step.rows if r.gating and r.verdict != api.Verdict.GO]
        out.append(
            switching.Event(
                type="Warning",
                reason="PinnedMoEPrerequisitesNotMet",
                message=f"spec.mode pins MoE but {', '.join(blocking)} not Go",
            )
        )
    if (
        not plan.spec.dry_run
        and step.route is not None
        and " not applied: " in step.route
        and (previous is None or previous.route != step.route)
    ):  # spec.gateway on a cluster that serves no HTTPRoute: said once, dense serves on
        out.append(switching.Event(type="Warning", reason="RouteNotApplied", message=step.route))
    _, left_out, _, nodes_message = nodes_left_out(evaluation.cluster)
    old = previous.conditions if previous else []
    before = next((c for c in old if c.type == "NodesLeftOut"), None)
    if left_out == "True" and (before is None or before.message != nodes_message[:MESSAGE_LIMIT]):
        out.append(
            switching.Event(type="Warning", reason="NodesLeftOut", message=nodes_message[:1024])
        )
    if applied_error and (previous is None or previous.message != applied_error):
        out.append(
            switching.Event(type="Warning", reason="ApplyFailed", message=applied_error[:1024])
        )
    return tuple(out)


def invalid(
    body: Mapping[str, Any],
    previous: api.ServingPlanStatus | None,
    message: str,
    now: dt.datetime,
) -> Outcome:
    """The status of a plan whose spec cannot be acted on: Ready=False InvalidSpec and
    Stalled=True (kstatus, which Flux's health checks use, reports Failed only on Stalled), and
    everything else (the serving mode, placements, `since` clocks) kept: the workloads keep
    running untouched while the spec is invalid. The next valid status drops Stalled."""
    message = message[:MESSAGE_LIMIT]
    generation = body["metadata"].get("generation")
    old = previous.conditions if previous else []
    condition = _condition(old, "Ready", "False", "InvalidSpec", message, generation, now)
    stalled_condition = _condition(old, "Stalled", "True", "InvalidSpec", message, generation, now)
    kept = current(body)
    others = [c for c in kept.get("conditions") or [] if c.get("type") not in ("Ready", "Stalled")]
    status = {
        **kept,
        "observedGeneration": generation,
        "phase": api.Phase.INVALID.value,
        "reason": "InvalidSpec",
        "message": message,
        "conditions": [
            *others,
            condition.model_dump(by_alias=True, exclude_none=True),
            stalled_condition.model_dump(by_alias=True, exclude_none=True),
        ],
    }
    events: tuple[switching.Event, ...] = ()
    if not previous or previous.message != message:
        events = (switching.Event(type="Warning", reason="InvalidSpec", message=message),)
    return Outcome(status, events)
