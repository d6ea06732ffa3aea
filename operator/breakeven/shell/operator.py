"""The operator: kopf handlers and the reconcile loop, a thin shell over the pure core.

    kopf watches ─┬─ nodes ──────────── index (small projections, no handlers on Nodes)
                  ├─ servingplans ───── create/resume/update(spec) -> trigger; events -> cache
                  └─ our children ───── events -> trigger the owning plan (readiness, drift)

    scheduler (one task) ── every tick: plans that are due or triggered
        ├─ traffic: one batched Prometheus read for the due plans whose facts are stale
        └─ per plan: reconcile = gather facts -> decide -> step -> apply -> write status

The plan is written only on its status subresource (kopf's bookkeeping included, under
`status["breakeven.dev"]`), so GitOps tools see no drift on it. No timers, daemons or finalizers:
those would write finalizers to the plan; the scheduler re-evaluates each plan on a jittered
interval instead, and children are garbage-collected through owner references.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import kopf
import pydantic
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config
from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import (
    api,
    capacity,
    catalog,
    facts,
    planning,
    rendering,
    report,
    rubric,
    switching,
)
from breakeven.core.rendering import telemetry
from breakeven.shell import inputs, kube, metrics, prometheus

logger = logging.getLogger("breakeven")

MANAGED = {"app.kubernetes.io/managed-by": "breakeven"}
BOOKKEEPING = ("status", "breakeven.dev")
POD_MONITOR_RECHECK_S = 300.0  # how long the answer "is the PodMonitor CRD served" is kept
BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
}


@dataclasses.dataclass
class Config:
    """Operator-level settings from `breakeven run`."""

    namespaces: list[str] = dataclasses.field(default_factory=list)
    prometheus_url: str | None = None
    # Prometheus URLs a plan may name besides the default: the operator sends requests to them,
    # so a plan author must not be able to point it anywhere (server-side request forgery).
    allowed_prometheus_urls: list[str] = dataclasses.field(default_factory=list)
    interval: float = 60.0
    switch_poll: float = 3.0
    mapping: facts.LabelMapping = dataclasses.field(default_factory=facts.LabelMapping)
    kubeconfig: str | None = None
    metrics_port: int = 8080
    metrics_address: str = "0.0.0.0"
    eplb_exporter_image: str = telemetry.IMAGE


CONFIG = Config()


# --------------------------------------------------------------------------- kopf wiring


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field=(*BOOKKEEPING, "progress"), touch_field=(*BOOKKEEPING, "dummy")
    )
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field=(*BOOKKEEPING, "last-handled-configuration")
    )
    settings.persistence.finalizer = "breakeven.dev/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.inactivity_timeout = 70  # watches behind load balancers go quiet (kopf#847)
    settings.networking.request_timeout = 60
    if CONFIG.metrics_port:
        metrics.serve(CONFIG.metrics_port, CONFIG.metrics_address)
    runtime = Runtime(CONFIG)
    await runtime.start()
    memo["runtime"] = runtime


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


@kopf.index("nodes")
async def gpu_nodes(body: kopf.Body, **_: Any) -> dict[str, facts.NodeInfo]:
    """Every GPU node as a small projection; nodes without GPUs are not kept."""
    info = facts.node_info(body, CONFIG.mapping)
    has_gpu = info.allocatable.get(CONFIG.mapping.gpu_resource) or info.labels.get(
        CONFIG.mapping.gpu_count_label
    )
    return {"gpu": info} if has_gpu else {}


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, field="spec")
async def plan_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A new, resumed or re-specified plan: reconcile it now (spec changes only)."""
    runtime: Runtime = memo["runtime"]
    runtime.nodes = kwargs["gpu_nodes"]
    runtime.remember(body)
    runtime.trigger(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def plan_event(type: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Keep the latest body of every plan (status included); forget deleted plans."""
    runtime: Runtime = memo["runtime"]
    runtime.nodes = kwargs["gpu_nodes"]
    if type == "DELETED":
        runtime.forget(body["metadata"]["namespace"], body["metadata"]["name"])
    else:
        runtime.remember(body)


async def _child_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A child changed (readiness, or a hand edit or delete): reconcile its plan soon."""
    runtime: Runtime = memo["runtime"]
    plan = (body.get("metadata", {}).get("labels") or {}).get("breakeven.dev/plan")
    if plan and type in ("MODIFIED", "DELETED"):
        runtime.trigger(body["metadata"]["namespace"], plan, soon=True)


kopf.on.event("apps", "v1", "deployments", labels=MANAGED)(_child_event)
kopf.on.event(kube.LWS_GROUP, kube.LWS_VERSION, kube.LWS_PLURAL, labels=MANAGED)(_child_event)


# --------------------------------------------------------------------------- the runtime


@dataclasses.dataclass
class PlanState:
    body: dict[str, Any]
    due: float = 0.0
    pending: bool = False  # triggered while a reconcile of it was running
    traffic: facts.Traffic | None = None
    traffic_at: float = 0.0
    decided: api.ServingMode | None = None


class Runtime:
    """The scheduler: which plans are due, their cached facts, and the clients."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.plans: dict[tuple[str, str], PlanState] = {}
        self.nodes: Mapping[str, Any] | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.api_client: k8s.ApiClient | None = None
        self.writer: kube.Writer | None = None
        self._posting: set[asyncio.Task[None]] = set()
        self._pod_monitors: tuple[float, bool] | None = None  # (checked at, served)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(20.0, connect=5.0), transport=httpx.AsyncHTTPTransport(retries=2)
        )

    async def start(self) -> None:
        configuration = k8s.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not self.config.kubeconfig:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.config.kubeconfig, client_configuration=configuration
            )
        self.api_client = k8s.ApiClient(configuration)
        self.writer = kube.Writer(self.api_client)
        self.task = asyncio.create_task(self.run(), name="breakeven-scheduler")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.http.aclose()
        if self.api_client is not None:
            await self.api_client.close()  # type: ignore[no-untyped-call]

    def remember(self, body: Mapping[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        state = self.plans.get(key)
        raw = dict(body)
        if state is None:
            self.plans[key] = PlanState(body=raw)
            self.wake.set()
        else:
            if state.body.get("metadata", {}).get("generation") != raw.get("metadata", {}).get(
                "generation"
            ):
                state.traffic = None  # the selector or window may have changed
                state.due = 0.0
                state.pending = True
                self.wake.set()
            state.body = raw

    def forget(self, namespace: str, name: str) -> None:
        self.plans.pop((namespace, name), None)
        metrics.forget_plan(f"{namespace}/{name}")

    def trigger(self, namespace: str, name: str, soon: bool = False) -> None:
        state = self.plans.get((namespace, name))
        if state is not None:
            state.due = min(state.due, time.monotonic() + (1.0 if soon else 0.0))
            state.pending = True
            self.wake.set()

    def _next(self, switching_: bool) -> float:
        if switching_:
            return time.monotonic() + self.config.switch_poll
        return time.monotonic() + self.config.interval * random.uniform(0.9, 1.1)

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            due = [(k, s) for k, s in self.plans.items() if s.due <= now]
            if due and self.nodes is not None:
                try:
                    await self._refresh_traffic([s for _, s in due])
                except Exception:  # stale or missing traffic facts turn rows Unknown, no more
                    logger.exception("reading traffic failed")
                for key, state in due:
                    state.pending = False
                    try:
                        switching_ = await self.reconcile(state)
                    except Exception:  # one plan's failure never stops the others
                        logger.exception("reconcile of %s/%s failed", *key)
                        switching_ = False
                    if key in self.plans:
                        # A trigger that arrived during the reconcile is not lost.
                        state.due = time.monotonic() if state.pending else self._next(switching_)
            self.wake.clear()
            soonest = min((s.due for s in self.plans.values()), default=now + 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(0.2, soonest - now))

    async def _refresh_traffic(self, states: list[PlanState]) -> None:
        """One batched read for every due plan whose traffic facts are older than the interval."""
        stale: dict[str, tuple[PlanState, prometheus.TrafficQuery]] = {}
        now = time.monotonic()
        for state in states:
            if state.traffic is not None and now - state.traffic_at < self.config.interval:
                continue
            try:
                plan = api.ServingPlan.model_validate(state.body)
            except pydantic.ValidationError:
                continue
            try:
                query = prometheus.query_for(plan, self.config.prometheus_url)
            except ValueError as exc:
                state.traffic = facts.Traffic(source="invalid query", errors=(str(exc),))
                state.traffic_at = now
                continue
            allowed = {u.rstrip("/") for u in self.config.allowed_prometheus_urls}
            if self.config.prometheus_url:
                allowed.add(self.config.prometheus_url.rstrip("/"))
            if query is not None and query.url not in allowed:
                state.traffic = facts.Traffic(
                    source="not read",
                    errors=(
                        f"spec.traffic.prometheusUrl: {query.url} is not one the operator may "
                        "read (its --prometheus-url or --allowed-prometheus-url)",
                    ),
                )
                state.traffic_at = now
                continue
            if query is None:
                state.traffic = facts.Traffic(
                    source="no Prometheus",
                    errors=("no spec.traffic.prometheusUrl and no --prometheus-url",),
                )
                state.traffic_at = now
                continue
            stale[query.key] = (state, query)
        if not stale:
            return
        started = time.perf_counter()
        results = await prometheus.read_traffic(
            self.http,
            [q for _, q in stale.values()],
            on_error=lambda url, reason: metrics.PROMETHEUS_ERRORS.labels(url=url).inc(),
        )
        metrics.TRAFFIC_READ.observe(time.perf_counter() - started)
        for key, (state, _) in stale.items():
            state.traffic = results.get(key, facts.Traffic(errors=("no result",)))
            state.traffic_at = now

    # ----------------------------------------------------------------------- reconcile

    async def reconcile(self, state: PlanState) -> bool:
        """Gather facts, decide, step, apply, write status. Returns whether a switch is live."""
        started = time.perf_counter()
        body = state.body
        meta = body["metadata"]
        label = f"{meta['namespace']}/{meta['name']}"
        previous = _previous_status(body)
        now = dt.datetime.now(dt.UTC)
        try:
            plan = api.ServingPlan.model_validate(body)
        except pydantic.ValidationError as exc:
            await self._invalid(body, previous, inputs.describe(exc, "spec"))
            return False
        cluster = facts.Cluster.from_nodes(
            list(self.nodes.get("gpu", ())) if self.nodes else [],
            self.config.mapping,
            node_selector=plan.spec.serving.node_selector,
            source="cluster",
        )
        with metrics.EVALUATION.time():
            try:
                evaluation = planning.evaluate(plan, cluster, state.traffic or facts.Traffic())
            except catalog.CatalogError as exc:
                await self._invalid(body, previous, str(exc))
                return False
        try:
            observed = await self._observe(plan, previous)
        except report.RenderFailure as exc:  # a name clash with an object we do not own
            await self._invalid(body, previous, str(exc))
            return False
        step = switching.step(evaluation, previous, observed, now)
        rendered: list[dict[str, Any]] | None = None
        applied_error: str | None = None
        placements = dict(previous.placements or {}) if previous else {}
        if plan.spec.dry_run:
            try:
                rendered = report.render_manifests(evaluation)
            except report.RenderFailure as exc:
                applied_error = str(exc)
        else:
            try:
                placements = await self._carry_out(plan, evaluation, step, previous)
            except report.RenderFailure as exc:
                applied_error = str(exc)
            except ApiException as exc:
                applied_error = f"API server refused: {exc.status} {exc.reason}"
                logger.warning("%s: apply failed: %s", label, exc.body)
        if applied_error and not plan.spec.dry_run:
            # Nothing (or not all) was applied: report the state the cluster is still in.
            step = step.model_copy(
                update={
                    "mode": previous.mode if previous else None,
                    "switch": previous.switch if previous else None,
                    "last_switch_time": previous.last_switch_time if previous else None,
                    "events": (),
                    "phase": api.Phase.DEGRADED,
                    "reason": "ApplyFailed",
                    "message": applied_error,
                }
            )
        status = _status(plan, evaluation, step, observed, previous, now, rendered, applied_error)
        if placements:
            status["placements"] = placements
        await self._write_status(body, previous, status)
        self._emit(body, plan, evaluation, step, previous, applied_error, state)
        metrics.record(label, evaluation, step)
        metrics.RECONCILE.observe(time.perf_counter() - started)
        return step.switching and not plan.spec.dry_run

    async def _observe(
        self, plan: api.ServingPlan, previous: api.ServingPlanStatus | None
    ) -> dict[api.ServingMode, switching.Observed]:
        assert self.writer is not None
        out = {}
        for mode in api.ServingMode:
            found = [
                o
                for name in rendering.workload_names(plan, mode)
                for kind in ("Deployment", "LeaderWorkerSet")
                if (o := await self._get(kind, plan.namespace, name)) is not None
            ]
            foreign = [o for o in found if not _owned_by(o, plan)]
            if foreign:
                meta = foreign[0]["metadata"]
                raise report.RenderFailure(
                    f"metadata.name: {foreign[0]['kind']} {meta['name']} already exists in "
                    f"{plan.namespace} and is not owned by this plan; rename the plan or the object"
                )
            main = rendering.workload_name(plan, mode)
            objs = [o for o in found if o["metadata"]["name"] == main]  # what serves traffic
            if not found:
                out[mode] = switching.Observed(mode=mode)
                continue
            replicas = sum(int((o.get("spec") or {}).get("replicas", 1)) for o in objs)
            ready = sum(int((o.get("status") or {}).get("readyReplicas") or 0) for o in objs)
            pods = await self.writer.pods(plan.namespace, rendering.selector_labels(plan, mode))
            out[mode] = switching.Observed(
                mode=mode,
                exists=True,
                kind=str((objs or found)[0].get("kind", "")),
                replicas=replicas,
                ready_replicas=ready,
                broken=_broken(pods, ready, mode, previous),
            )
        return out

    async def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert self.writer is not None
        try:
            return await self.writer.get(kind, namespace, name)
        except ApiException as exc:
            if exc.status == 404:  # LWS CRD not installed
                return None
            raise

    async def _telemetry(self) -> telemetry.Options:
        """The MoE telemetry's options: a PodMonitor where the cluster serves that CRD (asked
        again every POD_MONITOR_RECHECK_S), the exporter image from `breakeven run`."""
        assert self.writer is not None
        now = time.monotonic()
        if self._pod_monitors is None or now - self._pod_monitors[0] > POD_MONITOR_RECHECK_S:
            try:
                served = await self.writer.serves(
                    kube.PODMONITOR_GROUP, kube.PODMONITOR_VERSION, kube.PODMONITOR_PLURAL
                )
            except ApiException as exc:
                logger.warning("API discovery of %s failed: %s", kube.PODMONITOR_GROUP, exc)
                served = self._pod_monitors[1] if self._pod_monitors else False
            self._pod_monitors = (now, served)
        return telemetry.Options(
            image=self.config.eplb_exporter_image, pod_monitor=self._pod_monitors[1]
        )

    async def _carry_out(
        self,
        plan: api.ServingPlan,
        evaluation: planning.Evaluation,
        step: switching.Step,
        previous: api.ServingPlanStatus | None,
    ) -> dict[str, Any]:
        """Render everything first, then apply: a render failure applies nothing.

        Returns the placements to record: each applied mode's pool and sizing (pinned until the
        spec changes), without the modes deleted.
        """
        assert self.writer is not None
        writes: list[tuple[str, Any]] = []
        placements = dict(previous.placements or {}) if previous else {}
        for action in step.actions:
            if action.kind == "apply" and action.mode is not None:
                candidate = _pinned(placements.get(action.mode.value), plan)
                candidate = candidate or evaluation.candidate(action.mode)
                main = rendering.workload_name(plan, action.mode)
                options = await self._telemetry()
                for obj in report.manifests_for(evaluation, action.mode, candidate, options):
                    # Only the serving workload is scaled; a P/D prefill set keeps its own count.
                    if obj["metadata"]["name"] == main:
                        obj = _with_replicas(obj, action.replicas)
                    writes.append(("apply", obj))
                if candidate is not None:
                    placements[action.mode.value] = _placement(candidate, plan)
            elif action.kind == "select":
                service = rendering.service(plan, action.mode or step.mode or step.target)
                if action.selector == "both":
                    service["spec"]["selector"].pop("breakeven.dev/mode", None)
                writes.append(("apply", service))
            elif action.kind == "delete" and action.mode is not None:
                writes.append(("delete", action.mode))
                placements.pop(action.mode.value, None)
        existing = await self.writer.get("Service", plan.namespace, rendering.service_name(plan))
        if existing is not None and not _owned_by(existing, plan):
            raise report.RenderFailure(
                f"metadata.name: Service {rendering.service_name(plan)} already exists in "
                f"{plan.namespace} and is not owned by this plan; rename the plan or the Service"
            )
        for verb, what in writes:
            if verb == "apply":
                await self.writer.apply(kube.owned(what, plan))
            else:
                await self._delete_mode(plan, what, previous)
        return placements

    async def _delete_mode(
        self,
        plan: api.ServingPlan,
        mode: api.ServingMode,
        previous: api.ServingPlanStatus | None,
    ) -> None:
        assert self.writer is not None
        known = {
            (w.kind, w.name) for w in (previous.workloads if previous else []) if w.mode == mode
        }
        for name in rendering.workload_names(plan, mode):
            known |= {("Deployment", name), ("LeaderWorkerSet", name)}
        if mode == api.ServingMode.MOE:  # the EPLB telemetry's logging config and PodMonitor
            main = rendering.workload_name(plan, mode)
            known.add(("ConfigMap", telemetry.config_map_name(main)))
            if self._pod_monitors and self._pod_monitors[1]:
                known.add(("PodMonitor", telemetry.pod_monitor_name(main)))
        for kind, obj_name in sorted(known):
            with contextlib.suppress(ApiException):
                await self.writer.delete(kind, plan.namespace, obj_name)

    async def _invalid(
        self, body: Mapping[str, Any], previous: api.ServingPlanStatus | None, message: str
    ) -> None:
        now = switching.rfc3339(dt.datetime.now(dt.UTC))
        generation = body["metadata"].get("generation")
        old = {c.type: c for c in (previous.conditions if previous else [])}
        ready = old.get("Ready")
        condition = api.Condition(
            type="Ready",
            status="False",
            reason="InvalidSpec",
            message=message[:1024],
            last_transition_time=ready.last_transition_time
            if ready and ready.status == "False"
            else now,
            observed_generation=generation,
        )
        # Everything else in status (the serving mode, placements, `since` clocks) stays: the
        # workloads keep running untouched while the spec is invalid.
        kept = {k: v for k, v in (body.get("status") or {}).items() if k != "breakeven.dev"}
        others = [c for c in kept.get("conditions") or [] if c.get("type") != "Ready"]
        status = {
            **kept,
            "observedGeneration": generation,
            "phase": api.Phase.INVALID.value,
            "reason": "InvalidSpec",
            "message": message[:1024],
            "conditions": [*others, condition.model_dump(by_alias=True, exclude_none=True)],
        }
        await self._write_status(body, previous, status)
        if not previous or previous.message != message[:1024]:
            self._event(body, type="Warning", reason="InvalidSpec", message=message[:1024])

    def _event(self, body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """Post an Event on the plan in the background; a failed post is logged, never fatal."""
        assert self.writer is not None
        task = asyncio.create_task(self.writer.post_event(body, type, reason, message))
        self._posting.add(task)
        task.add_done_callback(self._posted)

    def _posted(self, task: asyncio.Task[None]) -> None:
        self._posting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not post an event: %s", task.exception())

    async def _write_status(
        self,
        body: Mapping[str, Any],
        previous: api.ServingPlanStatus | None,
        status: dict[str, Any],
    ) -> None:
        assert self.writer is not None
        current = {k: v for k, v in (body.get("status") or {}).items() if k != "breakeven.dev"}
        changes = merge_patch(current, status)
        if not changes:
            return
        meta = body["metadata"]
        try:
            await self.writer.patch_status(meta["namespace"], meta["name"], changes)
        except ApiException as exc:
            if exc.status != 404:  # a plan deleted meanwhile needs no status
                raise

    def _emit(
        self,
        body: Mapping[str, Any],
        plan: api.ServingPlan,
        evaluation: planning.Evaluation,
        step: switching.Step,
        previous: api.ServingPlanStatus | None,
        applied_error: str | None,
        state: PlanState,
    ) -> None:
        obj = dict(body)
        decided = evaluation.decision.rubric_mode
        if (state.decided is not None and state.decided != decided) or (
            previous is not None and previous.decided_mode not in (None, decided)
        ):
            self._event(
                obj,
                type="Normal",
                reason="DecisionChanged",
                message=f"rubric now says {decided.value}: {evaluation.decision.message}",
            )
            metrics.DECISIONS.labels(plan=f"{plan.namespace}/{plan.name}", mode=decided.value).inc()
        state.decided = decided
        for event in step.events:
            if plan.spec.dry_run:
                continue
            self._event(obj, type=event.type, reason=event.reason, message=event.message)
            if event.reason == "Switched":
                metrics.SWITCHES.labels(
                    plan=f"{plan.namespace}/{plan.name}", to=step.target.value, reason=step.reason
                ).inc()
                if step.fallback:
                    metrics.FALLBACKS.labels(
                        plan=f"{plan.namespace}/{plan.name}", reason=step.reason
                    ).inc()
        if (
            plan.spec.mode == api.Mode.MOE
            and not evaluation.decision.prerequisites_met
            and (
                previous is None
                or previous.reason != step.reason
                or previous.decided_mode != decided
            )
        ):
            blocking = [r.name.value for r in step.rows if r.gating and r.verdict.value != "Go"]
            self._event(
                obj,
                type="Warning",
                reason="PinnedMoEPrerequisitesNotMet",
                message=f"spec.mode pins MoE but {', '.join(blocking)} not Go",
            )
        if applied_error and (previous is None or previous.message != applied_error):
            self._event(obj, type="Warning", reason="ApplyFailed", message=applied_error[:1024])


# --------------------------------------------------------------------------- pure helpers


def _previous_status(body: Mapping[str, Any]) -> api.ServingPlanStatus | None:
    raw = {k: v for k, v in (body.get("status") or {}).items() if k != "breakeven.dev"}
    if not raw:
        return None
    try:
        return api.ServingPlanStatus.model_validate(raw)
    except pydantic.ValidationError:
        logger.warning("ignoring an unreadable status on %s", body["metadata"].get("name"))
        return None


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


def _owned_by(obj: Mapping[str, Any], plan: api.ServingPlan) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == plan.metadata.uid for o in owners)


def _placement(candidate: rubric.Candidate, plan: api.ServingPlan) -> dict[str, Any]:
    return {
        "generation": plan.metadata.generation,
        "pool": candidate.pool.model_dump(by_alias=True, mode="json"),
        "estimate": candidate.estimate.model_dump(mode="json"),
    }


def _pinned(record: Any, plan: api.ServingPlan) -> rubric.Candidate | None:
    """The pool and sizing a mode was rendered from, while the spec has not changed since."""
    if not isinstance(record, dict) or record.get("generation") != plan.metadata.generation:
        return None
    try:
        return rubric.Candidate(
            pool=facts.Pool.model_validate(record["pool"]),
            estimate=capacity.Estimate.model_validate(record["estimate"]),
        )
    except (KeyError, pydantic.ValidationError):
        logger.warning("ignoring an unreadable placement on %s", plan.name)
        return None


def _with_replicas(obj: dict[str, Any], replicas: int | None) -> dict[str, Any]:
    if replicas is None or obj.get("kind") not in ("Deployment", "LeaderWorkerSet"):
        return obj
    return {**obj, "spec": {**obj["spec"], "replicas": replicas}}


def _broken(
    pods: list[dict[str, Any]],
    ready: int,
    mode: api.ServingMode,
    previous: api.ServingPlanStatus | None,
) -> str | None:
    """Why a workload is failing: crashing pods, or ready pods gone after it had served."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed":
            return f"pod {pod['metadata']['name']} failed"
        for cs in status.get("containerStatuses") or []:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in BAD_WAITING:
                return f"pod {pod['metadata']['name']}: {reason}"
    was_ready = any(
        w.mode == mode and w.ready_replicas > 0 and w.serving
        for w in (previous.workloads if previous else [])
    )
    if was_ready and ready == 0:
        return "no ready pods left (nodes gone or pods evicted)"
    return None


def _status(
    plan: api.ServingPlan,
    evaluation: planning.Evaluation,
    step: switching.Step,
    observed: Mapping[api.ServingMode, switching.Observed],
    previous: api.ServingPlanStatus | None,
    now: dt.datetime,
    rendered: list[dict[str, Any]] | None,
    applied_error: str | None,
) -> dict[str, Any]:
    generation = plan.metadata.generation
    dry = plan.spec.dry_run
    workloads = []
    for mode, obs in observed.items():
        if obs.exists:
            workloads.append(
                api.WorkloadStatus(
                    kind=obs.kind or "Deployment",
                    name=rendering.workload_name(plan, mode),
                    mode=mode,
                    replicas=obs.replicas,
                    ready_replicas=obs.ready_replicas,
                    serving=(mode == step.mode),
                )
            )
    serving = observed.get(step.mode) if step.mode else None
    phase = api.Phase.PLANNED if dry else step.phase
    message = applied_error or step.message
    conditions = switching.conditions(
        step, evaluation, previous.conditions if previous else [], generation, now
    )
    status = api.ServingPlanStatus(
        observed_generation=generation,
        mode=(previous.mode if previous else None) if dry else step.mode,
        target_mode=step.target,
        decided_mode=evaluation.decision.rubric_mode,
        phase=api.Phase.DEGRADED if applied_error and not dry else phase,
        reason="ApplyFailed" if applied_error else step.reason,
        message=message[:1024],
        ready=f"{serving.ready_replicas}/{serving.replicas}" if serving and not dry else None,
        criteria=list(step.rows),
        estimates=evaluation.estimates(),
        workloads=workloads,
        switch=None if dry else step.switch,
        last_switch_time=step.last_switch_time,
        rendered=rendered,
        conditions=conditions,
    )
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)


# --------------------------------------------------------------------------- entry point


def main(args: argparse.Namespace) -> int:
    """`breakeven run`: configure and run kopf until interrupted."""
    try:
        mapping = inputs.load_mapping(Path(args.label_mapping) if args.label_mapping else None)
    except inputs.InputError as exc:
        print(f"breakeven run: error: {exc}", file=sys.stderr)
        return 2
    if args.prometheus_url and not args.prometheus_url.startswith(("http://", "https://")):
        print(
            "breakeven run: error: --prometheus-url must start with http:// or https://",
            file=sys.stderr,
        )
        return 2
    CONFIG.namespaces = list(args.namespace)
    CONFIG.prometheus_url = args.prometheus_url
    CONFIG.allowed_prometheus_urls = list(args.allowed_prometheus_url)
    CONFIG.interval = args.interval
    CONFIG.mapping = mapping
    CONFIG.kubeconfig = args.kubeconfig
    CONFIG.metrics_port = args.metrics_port
    CONFIG.metrics_address = args.metrics_address
    CONFIG.eplb_exporter_image = args.eplb_exporter_image
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prometheus request
    asyncio.run(
        kopf.operator(
            standalone=True,  # one replica (Recreate); kopf peering is not used
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    )
    return 0
