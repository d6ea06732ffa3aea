"""One plan's reconcile, as a short script of named steps, each with one job:

    gather facts ─> evaluate ─> observe children ─> step ─> carry out ─> build status and events
                                                                          ─> write ─> emit

The decisions are the pure core's (planning.evaluate, switching.step, statuses.build); this module
reads the cluster and writes to it. A step that cannot go on returns `Rejected` (an invalid spec,
a model the catalog cannot resolve, a name held by an object this plan does not own); carrying
out a step returns `Carried`, its error included: no exception leaves a step for a reason the
plan author can fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic
from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import api, facts, planning, rendering, report, statuses, switching
from breakeven.core.errors import CatalogError, RenderFailure
from breakeven.core.rendering import telemetry
from breakeven.shell import inputs, kube, metrics
from breakeven.shell.clustercache import ClusterCache
from breakeven.shell.publish import Publisher

if TYPE_CHECKING:
    from breakeven.shell.runtime import Config, PlanState

logger = logging.getLogger("breakeven")

WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet")
POD_MONITOR_RECHECK_S = 300.0  # how long the answer "is the PodMonitor CRD served" is kept


@dataclasses.dataclass(frozen=True)
class Rejected:
    """Why the plan cannot be acted on; reported as Ready=False InvalidSpec, nothing touched."""

    message: str


@dataclasses.dataclass(frozen=True)
class Carried:
    """What carrying out a step did: the placements recorded, a dry run's manifests, or why
    it failed (then status reports what the cluster still runs)."""

    placements: dict[str, api.Placement]
    rendered: list[dict[str, Any]] | None = None
    error: str | None = None


class Reconciler:
    """Reconciles one plan at a time (the scheduler calls it)."""

    def __init__(self, config: Config, nodes: Callable[[], Mapping[str, Any] | None]) -> None:
        self.config = config
        self.nodes = nodes
        self._writer: kube.Client | None = None
        self._publisher: Publisher | None = None
        self._served: dict[str, tuple[float, bool]] = {}  # group -> (checked at, served)
        # The GPU pools per node-index state and node selector, grouped again at most every
        # node_facts_min_age seconds while Nodes change.
        self.clusters = ClusterCache(min_age=config.node_facts_min_age)

    def connect(self, writer: kube.Client) -> None:
        self._writer = writer
        self._publisher = Publisher(writer)

    @property
    def writer(self) -> kube.Client:
        assert self._writer is not None, "connect() first"
        return self._writer

    @property
    def publisher(self) -> Publisher:
        assert self._publisher is not None, "connect() first"
        return self._publisher

    async def reconcile(self, state: PlanState) -> bool:
        """Reconcile one plan. Returns whether a switch is moving (the plan is polled fast)."""
        started = time.perf_counter()
        body, now = await self.read(state), dt.datetime.now(dt.UTC)
        if body is None:  # deleted: nothing is applied, and the scheduler forgets it
            state.gone = True
            return False
        previous = self.previous(body)
        plan = self.gather(body)
        if isinstance(plan, Rejected):
            return await self.reject(state, body, previous, plan, now)
        evaluation = self.evaluate(plan, state.traffic)
        if isinstance(evaluation, Rejected):
            return await self.reject(state, body, previous, evaluation, now)
        observed = await self.observe(plan, evaluation, previous, now)
        if isinstance(observed, Rejected):
            return await self.reject(state, body, previous, observed, now)
        step = switching.step(evaluation, previous, observed, now, await self._routes(plan))
        carried = await self.carry_out(plan, evaluation, step, previous)
        outcome = statuses.build(
            evaluation,
            step,
            observed,
            previous,
            now,
            rendered=carried.rendered,
            applied_error=carried.error,
            placements=carried.placements,
            decided_before=state.decided,
        )
        state.decided = evaluation.decision.rubric_mode
        if not await self.write_status(state, body, outcome.status):
            return False
        self.publisher.emit(body, plan, outcome, evaluation.decision.rubric_mode)
        assert outcome.step is not None
        metrics.record(f"{plan.namespace}/{plan.name}", evaluation, outcome.step)
        metrics.RECONCILE.observe(time.perf_counter() - started)
        return outcome.step.switching and not plan.spec.dry_run

    # ------------------------------------------------------------------------- the steps

    async def read(self, state: PlanState) -> dict[str, Any] | None:
        """The plan as the API server has it now, or None when it is gone (or replaced by a
        plan of the same name: a new uid). The watch's cached body can be behind: after our own
        status write (the previous status), or across a watch restart, whose re-list reports no
        deletion (kopf/_cogs/clients/watching.py, continuous_watch), so a plan deleted then
        stays in the cache.

        One body is used without a GET: that of the watch event which queued this reconcile (a
        plan just created, a changed spec: `PlanState.event_body`), when its generation is newer
        than any this plan was reconciled from. Such a body cannot predate our last status
        write: that write's resourceVersion precondition would have failed had the spec changed
        after the body it was computed from. Should the body still be behind (a later event
        not yet seen), the status write fails its precondition (409) and the plan is reconciled
        again from a GET (`write_status`); retries and periodic re-evaluation always GET."""
        meta = state.body["metadata"]
        event, state.event_body = state.event_body, None
        if event is not None and _newer(event, meta.get("uid"), state.generation_read):
            metrics.API_SAVED.labels(verb="get", kind="ServingPlan").inc()
            fresh: dict[str, Any] | None = event
        else:
            fresh = await self.writer.get_plan(meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"].get("uid") != meta.get("uid"):
            return None
        state.generation_read = fresh["metadata"].get("generation")
        return fresh

    @staticmethod
    def previous(body: Mapping[str, Any]) -> api.ServingPlanStatus | None:
        """The status written last; an unreadable one is said in the log and read as none."""
        previous = statuses.previous(body)
        if previous is None and statuses.current(body):
            logger.warning("ignoring an unreadable status on %s", body["metadata"].get("name"))
        return previous

    @staticmethod
    def gather(body: Mapping[str, Any]) -> api.ServingPlan | Rejected:
        """The plan as the API defines it."""
        try:
            return api.ServingPlan.model_validate(body)
        except pydantic.ValidationError as exc:
            return Rejected(inputs.describe(exc, "spec"))

    def evaluate(
        self, plan: api.ServingPlan, traffic: facts.Traffic | None
    ) -> planning.Evaluation | Rejected:
        """The rubric on this cluster's GPU nodes (pools grouped at most every
        node_facts_min_age seconds while Nodes change) and the plan's traffic facts."""
        nodes = self.nodes()
        cluster = self.clusters.get(
            list(nodes.get("gpu", ())) if nodes else [],
            self.config.mapping,
            plan.spec.serving.node_selector,
        )
        with metrics.EVALUATION.time():
            try:
                return planning.evaluate(plan, cluster, traffic or facts.Traffic())
            except CatalogError as exc:  # a model the catalog cannot resolve
                return Rejected(str(exc))

    async def observe(
        self,
        plan: api.ServingPlan,
        evaluation: planning.Evaluation,
        previous: api.ServingPlanStatus | None,
        now: dt.datetime,
    ) -> dict[api.ServingMode, switching.Observed] | Rejected:
        """Each mode's workload as the cluster shows it: only the objects the plan renders for
        the mode count; others of its names (another kind, a prefill set no longer rendered)
        are stale."""
        grace = api.parse_duration(plan.spec.policy.demotion_grace)
        out = {}
        for mode in api.ServingMode:
            found = [
                o
                for name in rendering.workload_names(plan, mode)
                for kind in WORKLOAD_KINDS
                if (o := await self._get(kind, plan.namespace, name)) is not None
            ]
            foreign = [o for o in found if not _owned_by(o, plan)]
            if foreign:
                meta = foreign[0]["metadata"]
                return Rejected(
                    f"metadata.name: {foreign[0]['kind']} {meta['name']} already exists in "
                    f"{plan.namespace} and is not owned by this plan; rename the plan or the object"
                )
            wanted = statuses.expected(evaluation, mode, previous) if found else None
            stale = [o for o in found if wanted is not None and _key(o) not in wanted]
            found = [o for o in found if o not in stale]
            names = tuple(f"{kind}/{name}" for kind, name in map(_key, stale))
            if not found:
                out[mode] = switching.Observed(mode=mode, stale=names)
                continue
            main = rendering.workload_name(plan, mode)
            objs = [o for o in found if o["metadata"]["name"] == main]  # what serves traffic
            replicas = sum(int((o.get("spec") or {}).get("replicas", 1)) for o in objs)
            ready = sum(int((o.get("status") or {}).get("readyReplicas") or 0) for o in objs)
            pods = (
                []  # every pod ready: none can be crashing (no LIST; docs/performance.md)
                if all(kube.settled(o) for o in objs) and objs
                else await self.writer.pods(plan.namespace, rendering.selector_labels(plan, mode))
            )
            down = statuses.down_since(ready, mode, previous, now)
            switch = previous.switch if previous else None
            coming_up = switch.started_at if switch and switch.to == mode and not ready else None
            out[mode] = switching.Observed(
                mode=mode,
                exists=True,
                kind=str((objs or found)[0].get("kind", "")),
                replicas=replicas,
                ready_replicas=ready,
                broken=statuses.broken(pods, down, grace, now, coming_up_since=coming_up),
                down_since=down,
                stale=names,
            )
        return out

    async def carry_out(
        self,
        plan: api.ServingPlan,
        evaluation: planning.Evaluation,
        step: switching.Step,
        previous: api.ServingPlanStatus | None,
    ) -> Carried:
        """Render everything first, then apply in order: a render failure applies nothing.
        A dry run renders the decided mode's manifests into status instead."""
        kept = dict(previous.placements or {}) if previous else {}
        if plan.spec.dry_run:
            try:
                return Carried(kept, rendered=report.render_manifests(evaluation))
            except RenderFailure as exc:
                return Carried(kept, error=str(exc))
        try:
            options = await self._telemetry()
            writes = statuses.writes(plan, evaluation, step, previous, options)
        except RenderFailure as exc:
            return Carried(kept, error=str(exc))
        try:
            clash = await self._service_clash(plan) or await self._route_clash(plan, writes)
            if clash:
                return Carried(kept, error=clash)
            ordered = [
                (verb, kube.owned(what, plan) if verb == "apply" else what)
                for verb, what in writes.writes
            ]
            # Every name checked at once, before anything is written: a name held by someone
            # else's object fails the step with nothing applied.
            await self.writer.claim([what for verb, what in ordered if verb == "apply"])
            for batch in batches(ordered):
                verb, what = batch[0]
                if verb == "apply":
                    await self._apply(obj for _, obj in batch)
                elif verb == "delete":
                    await self._delete_mode(plan, what, previous)
                else:
                    kind, name = str(what).split("/", 1)
                    with contextlib.suppress(ApiException):
                        await self.writer.delete(kind, plan.namespace, name)
        except ApiException as exc:
            logger.warning("%s/%s: apply failed: %s", plan.namespace, plan.name, exc.body)
            return Carried(kept, error=f"API server refused: {exc.status} {exc.reason}")
        return Carried(writes.placements)

    async def _apply(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Apply a batch (`batches`) at once, in its order (the workload's request first); the
        first failure, in that order, is raised once all have answered."""
        done = await asyncio.gather(
            *(self.writer.apply(obj, claimed=True) for obj in objs), return_exceptions=True
        )
        for result in done:
            if isinstance(result, BaseException):
                raise result

    async def write_status(
        self, state: PlanState, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> bool:
        """Write the plan's status; False when the plan changed after it was read (409 on the
        resourceVersion precondition, another writer): it is then reconciled again at once, from
        a fresh read, and the status computed from the older body is not written."""
        try:
            await self.publisher.write(body, status)
        except ApiException as exc:
            if exc.status != 409:
                raise
            meta = body["metadata"]
            logger.info("%s/%s changed while reconciled; again", meta["namespace"], meta["name"])
            state.pending = True
            return False
        return True

    async def reject(
        self,
        state: PlanState,
        body: Mapping[str, Any],
        previous: api.ServingPlanStatus | None,
        rejected: Rejected,
        now: dt.datetime,
    ) -> bool:
        """Report a plan that cannot be acted on; its workloads keep running untouched."""
        outcome = statuses.invalid(body, previous, rejected.message, now)
        if await self.write_status(state, body, outcome.status):
            self.publisher.post(body, outcome.events)
        return False

    # ------------------------------------------------------------------------- reading, deleting

    async def _serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the cluster serves `plural` (API discovery, asked again every
        POD_MONITOR_RECHECK_S; a failed discovery keeps the last answer, or says no)."""
        now = time.monotonic()
        known = self._served.get(group)
        if known is None or now - known[0] > POD_MONITOR_RECHECK_S:
            try:
                served = await self.writer.serves(group, version, plural)
            except ApiException as exc:
                logger.warning("API discovery of %s failed: %s", group, exc)
                served = known[1] if known else False
            known = self._served[group] = (now, served)
        return known[1]

    async def _telemetry(self) -> telemetry.Options:
        """The MoE telemetry's options: a PodMonitor where the cluster serves that CRD, the
        exporter image from `breakeven run`."""
        served = await self._serves(
            kube.PODMONITOR_GROUP, kube.PODMONITOR_VERSION, kube.PODMONITOR_PLURAL
        )
        return telemetry.Options(image=self.config.eplb_exporter_image, pod_monitor=served)

    async def _routes(self, plan: api.ServingPlan) -> str | None:
        """Why the plan's HTTPRoute cannot be applied (Gateway API's HTTPRoute is not served);
        None when it can, or the plan names no gateway (then nothing is asked)."""
        if plan.spec.gateway is None:
            return None
        if await self._serves(kube.GATEWAY_GROUP, kube.GATEWAY_VERSION, kube.HTTPROUTE_PLURAL):
            return None
        return (
            f"the cluster does not serve {kube.HTTPROUTE_PLURAL}.{kube.GATEWAY_GROUP}/"
            f"{kube.GATEWAY_VERSION} (install Gateway API's CRDs)"
        )

    async def _route_clash(self, plan: api.ServingPlan, writes: statuses.Writes) -> str | None:
        """An HTTPRoute of the plan's route name that this plan does not own is never taken
        over (HTTPRoutes are not in the watch indexes: one GET when the step applies one)."""
        wanted = [o for v, o in writes.writes if v == "apply" and o.get("kind") == "HTTPRoute"]
        if not wanted:
            return None
        name = wanted[0]["metadata"]["name"]
        existing = await self.writer.get("HTTPRoute", plan.namespace, name)
        if existing is not None and not _owned_by(existing, plan):
            return (
                f"spec.gateway: HTTPRoute {name} already exists in {plan.namespace} and is not "
                "owned by this plan; rename the plan or the HTTPRoute"
            )
        return None

    async def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.writer.get(kind, namespace, name)
        except ApiException as exc:
            if exc.status == 404:  # LWS CRD not installed
                return None
            raise

    async def _service_clash(self, plan: api.ServingPlan) -> str | None:
        name = rendering.service_name(plan)
        existing = await self.writer.get("Service", plan.namespace, name)
        if existing is not None and not _owned_by(existing, plan):
            return (
                f"metadata.name: Service {name} already exists in {plan.namespace} and is not "
                "owned by this plan; rename the plan or the Service"
            )
        return None

    async def _delete_mode(
        self,
        plan: api.ServingPlan,
        mode: api.ServingMode,
        previous: api.ServingPlanStatus | None,
    ) -> None:
        known = {
            (w.kind, w.name) for w in (previous.workloads if previous else []) if w.mode == mode
        }
        for name in rendering.workload_names(plan, mode):
            known |= {(kind, name) for kind in WORKLOAD_KINDS}
        if mode == api.ServingMode.MOE:  # the EPLB telemetry's logging config and PodMonitor
            main = rendering.workload_name(plan, mode)
            known.add(("ConfigMap", telemetry.config_map_name(main)))
            if self._served.get(kube.PODMONITOR_GROUP, (0.0, False))[1]:
                known.add(("PodMonitor", telemetry.pod_monitor_name(main)))
        for kind, obj_name in sorted(known):
            with contextlib.suppress(ApiException):
                await self.writer.delete(kind, plan.namespace, obj_name)


_WAITS_FOR = {"ConfigMap", "ComputeDomain", *WORKLOAD_KINDS}
REFERS = {
    "HTTPRoute": {"Service"},  # its backends (a Shadow trial's mirror Service)
    # A workload's pods mount the ConfigMap and claim the ComputeDomain; and a workload waits
    # for the one before it: a stepwise switch shrinks the active mode only once the target's
    # apply was accepted (switching.step), so a refused target leaves the active mode whole.
    "Deployment": _WAITS_FOR,
    "LeaderWorkerSet": _WAITS_FOR,
}
"""Which kinds an applied object waits for when the step applied one of them just before it."""


def batches(writes: Sequence[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """The step's writes, in their order, as batches that may go at once: consecutive applies
    share a batch unless one refers to a kind already in it (REFERS: then it waits for them);
    a delete or prune is a batch of its own, after what precedes it."""
    out: list[list[tuple[str, Any]]] = []
    for verb, what in writes:
        last = out[-1] if out else None
        if (
            verb == "apply"
            and last is not None
            and last[0][0] == "apply"
            and not REFERS.get(str(what.get("kind")), set()) & {o["kind"] for _, o in last}
        ):
            last.append((verb, what))
        else:
            out.append([(verb, what)])
    return out


def _newer(body: Mapping[str, Any], uid: str | None, generation_read: int | None) -> bool:
    """Whether an event's body may stand for a GET: the same plan, and a spec generation newer
    than the last one reconciled (none yet: a new plan)."""
    meta = body.get("metadata") or {}
    if meta.get("uid") != uid:
        return False
    generation = meta.get("generation")
    return generation_read is None or (isinstance(generation, int) and generation > generation_read)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return (str(obj.get("kind", "")), str(obj["metadata"]["name"]))


def _owned_by(obj: Mapping[str, Any], plan: api.ServingPlan) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == plan.metadata.uid for o in owners)
