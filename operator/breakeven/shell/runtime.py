"""The scheduler: a work queue of plans, its workers, the plans' cached traffic facts, the clients.

    kopf handlers ── remember / forget / trigger ──> Scheduler.plans (one PlanState per plan)
    Scheduler.run: a timer task and `Config.workers` worker tasks around one queue
        ├─ the queue holds plan keys, each at most once (de-duplicated), in two lanes: `urgent`
        │  (new or changed plans, child events) before `periodic`
        │  (re-evaluation on the jittered interval); a key is never handed to two workers at
        │  once, and one triggered while it is being reconciled is queued again afterwards;
        │  periodic work holds at most three quarters of the workers (`periodic_limit`), so a
        │  new plan never waits for a batch of periodic reconciles in flight
        ├─ the timer moves plans whose time has come (periodic re-evaluation, switch polls,
        │  retries) into the queue; a reconcile that raised is retried with exponential
        │  back-off per plan (RETRY_BASE doubling up to RETRY_MAX), as client-go's work queue does
        └─ a worker whose plan has stale traffic facts does not wait for them: the plan joins the
           next batched Prometheus read, which runs in the background (TrafficCache.refresh), and
           is queued again when its facts arrive; a plan never read (new, or its spec changed)
           joins the next read of such plans instead, which runs beside the fleet's and reads
           nothing ahead, so a new plan never waits behind a read of every plan due; a slow or
           silent Prometheus never holds up a plan whose facts are fresh, and one plan's
           failure never stops the others

`Runtime` holds the clients and wires them together; it owns no decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import functools
import heapq
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx
import pydantic
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from breakeven.core import api, facts, traffic
from breakeven.core.rendering import telemetry
from breakeven.shell import kube, metrics, prometheus
from breakeven.shell.informer import Informer, collection_path
from breakeven.shell.reconcile import Reconciler

logger = logging.getLogger("breakeven")

Key = tuple[str, str]
RETRY_BASE = 0.5  # seconds before the first retry of a reconcile that raised
RETRY_MAX = 300.0  # the longest back-off
DEFAULT_WORKERS = 8

PLAN: contextvars.ContextVar[str | None] = contextvars.ContextVar("breakeven_plan", default=None)
"""The plan (namespace/name) the current task works on; PlanFilter puts it on every log line."""


class PlanFilter(logging.Filter):
    """Adds `plan=namespace/name` to every record logged while a plan is being worked on."""

    def filter(self, record: logging.LogRecord) -> bool:
        plan = PLAN.get()
        record.plan = plan or "-"
        if plan and not getattr(record, "_breakeven_plan", False):
            record.msg = f"[{plan}] {record.msg}"
            record._breakeven_plan = True
        return True


logger.addFilter(PlanFilter())


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
    workers: int = DEFAULT_WORKERS  # reconciles running at once
    # The GPU pools are grouped again at most this often while Nodes change (shell/clustercache.py).
    node_facts_min_age: float = 5.0


@dataclasses.dataclass
class PlanState:
    body: dict[str, Any]
    due: float = 0.0
    pending: bool = False  # triggered while a reconcile of it was running
    traffic: facts.Traffic | None = None
    traffic_at: float = 0.0
    reading: bool = False  # its traffic facts are being read
    decided: api.ServingMode | None = None
    gone: bool = False  # the reconcile found it deleted (a watch restart hides deletions)
    urgent: bool = True  # queued in the urgent lane when its time comes
    failures: int = 0  # reconciles in a row that raised (the retry back-off)
    # The body of the watch event that queued it (a new plan, a changed spec), until the next
    # reconcile takes it instead of GETting the plan (Reconciler.read); then it is dropped.
    event_body: dict[str, Any] | None = None
    generation_read: int | None = None  # metadata.generation of the body reconciled last


KEPT_METADATA = ("name", "namespace", "uid", "generation")


def kept(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the scheduler keeps of a plan between reconciles: its identity, its generation
    (a changed spec) and its spec (the traffic read's query). Not its status or managedFields,
    which grow with the cluster (a placement names its pool's nodes) and which nothing reads
    from here: a reconcile reads the plan fresh (Reconciler.read), or takes the body of the
    event that queued it (`PlanState.event_body`, held only until then). At 1,000 plans on
    5,000 nodes the whole bodies were most of the operator's memory (docs/performance.md)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in KEPT_METADATA if k in meta},
        "spec": body.get("spec") or {},
    }


def held(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a watch event's body for the reconcile it queued, without managedFields
    (nothing reads them)."""
    out = copy.deepcopy(dict(body))
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    return out


Reconcile = Callable[[PlanState], Awaitable[bool]]
"""Reconcile one plan; returns whether a switch is moving (then the plan is polled fast)."""


class TrafficSource(Protocol):
    def stale(self, state: PlanState) -> bool:
        """Whether the plan's traffic facts must be read again before it is reconciled."""

    async def refresh(self, states: list[PlanState]) -> None:
        """Read the facts of `states`; afterwards none of them is stale."""


def retry_delay(failures: int) -> float:
    """Exponential back-off of a plan whose reconcile raised `failures` times in a row."""
    return float(min(RETRY_MAX, RETRY_BASE * 2 ** max(0, failures - 1)))


def periodic_limit(workers: int) -> int:
    """How many workers periodic re-evaluation may hold at once: all but a quarter (at least
    one) kept for urgent work; with a single worker, that worker."""
    workers = max(1, workers)
    return max(1, workers - max(1, workers // 4)) if workers > 1 else 1


class Scheduler:
    """Which plans are due, the queue they wait in, and the workers that reconcile them."""

    def __init__(
        self,
        config: Config,
        reconcile: Reconcile,
        traffic: TrafficSource,
        ready: Callable[[], bool],
    ) -> None:
        self.config = config
        self.reconcile = reconcile
        self.traffic = traffic
        self.ready = ready  # whether reconciling can start (the indexes are filled)
        self.plans: dict[Key, PlanState] = {}
        self.wake = asyncio.Event()  # the clock: a plan's time may have changed
        self.reading: asyncio.Task[None] | None = None
        self.to_read: dict[Key, PlanState] = {}  # waiting for the next batched read
        # Plans never read (new, or their spec changed) have reads of their own beside the
        # fleet's, so a new plan never waits behind a read of every plan due (READ_AHEAD).
        self.first_reading: asyncio.Task[None] | None = None
        self.to_read_first: dict[Key, PlanState] = {}
        self.timers: list[tuple[float, int, Key]] = []  # (due, sequence, key); stale ones skipped
        self.sequence = 0
        self.lanes: tuple[deque[Key], deque[Key]] = (deque(), deque())  # urgent, periodic
        self.queued: dict[Key, int] = {}  # key -> its lane (0 urgent, 1 periodic)
        self.active: set[Key] = set()  # being reconciled now
        self.has_items = asyncio.Event()  # the queue may hold keys
        # Periodic re-evaluation never takes every worker: the rest stay free for new and
        # changed plans and child events, which would otherwise wait for a whole batch of
        # periodic reconciles in flight (the create -> child latency at 1,000 plans).
        self.periodic_limit = periodic_limit(config.workers)
        self.periodic_busy = 0  # periodic reconciles in flight

    # ------------------------------------------------------------------------- what kopf says

    def remember(self, body: Mapping[str, Any]) -> None:
        """A plan's watch event. A new plan or a changed spec is queued, with the event's body
        held for its next reconcile (`held`): a new plan's only when it has no status yet (a
        plan just created, small; not the listing of every plan at start)."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        state = self.plans.get(key)
        raw = kept(body)
        if state is None:
            new = PlanState(body=raw, event_body=None if body.get("status") else held(body))
            self.plans[key] = new
            self._at(key, 0.0, urgent=True)
            return
        changed = state.body.get("metadata", {}).get("generation") != raw.get("metadata", {}).get(
            "generation"
        )
        state.body = raw
        if changed or state.event_body is not None:  # a later event's body is the newer one
            state.event_body = held(body)
        if changed:
            state.traffic = None  # the selector or window may have changed
            self._at(key, 0.0, urgent=True)

    def forget(self, namespace: str, name: str) -> None:
        self.plans.pop((namespace, name), None)
        metrics.forget_plan(f"{namespace}/{name}")

    def trigger(self, namespace: str, name: str, soon: bool = False) -> None:
        """Reconcile the plan now (or within a second, which coalesces a burst of child events),
        ahead of periodic re-evaluation."""
        self._at((namespace, name), 1.0 if soon else 0.0, urgent=True)

    # ------------------------------------------------------------------------- the queue

    def _at(self, key: Key, delay: float, urgent: bool) -> None:
        """Queue `key` once `delay` seconds have passed (never later than it was already due)."""
        state = self.plans.get(key)
        if state is None:
            return
        if key in self.active:
            state.pending = True  # queued again when its reconcile ends
            state.urgent = state.urgent or urgent
            return
        if delay <= 0:
            self._enqueue(key, urgent)
            return
        if key in self.queued:
            return  # it is reconciled soon anyway
        now = time.monotonic()
        if now < state.due <= now + delay:
            state.urgent = state.urgent or urgent  # its timer fires sooner than this one would
            return
        self._later(state, key, delay, urgent)

    def _later(self, state: PlanState, key: Key, delay: float, urgent: bool) -> None:
        """(Re)set the plan's timer; an earlier timer of it is skipped when it fires."""
        state.due = time.monotonic() + delay
        state.urgent = urgent
        self.sequence += 1
        heapq.heappush(self.timers, (state.due, self.sequence, key))
        self.wake.set()

    def _enqueue(self, key: Key, urgent: bool) -> None:
        lane = 0 if urgent else 1
        if key in self.queued and lane >= self.queued[key]:
            return  # de-duplicated: already waiting in a lane at least as good
        self.queued[key] = lane  # a promoted key's periodic entry is skipped when reached
        self.lanes[lane].append(key)
        metrics.QUEUE_DEPTH.set(len(self.queued))
        self.has_items.set()

    async def _take(self) -> tuple[Key, int]:
        """The next key and its lane: urgent first; periodic only below `periodic_limit`."""
        while True:
            for lane in (0, 1):
                queue = self.lanes[lane]
                while queue:
                    key = queue[0]
                    if self.queued.get(key) != lane:
                        queue.popleft()
                        continue  # promoted to the urgent lane
                    if lane == 1 and self.periodic_busy >= self.periodic_limit:
                        break  # it waits for a periodic reconcile to end
                    queue.popleft()
                    del self.queued[key]
                    metrics.QUEUE_DEPTH.set(len(self.queued))
                    if key in self.plans:
                        return key, lane
            self.has_items.clear()
            await self.has_items.wait()

    def depth(self) -> int:
        """Plans waiting in the queue (not counting those being reconciled)."""
        return len(self.queued)

    # ------------------------------------------------------------------------- the tasks

    async def run(self) -> None:
        workers = [
            asyncio.create_task(self._worker(), name=f"breakeven-worker-{i}")
            for i in range(max(1, self.config.workers))
        ]
        try:
            await self._clock()
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _clock(self) -> None:
        """Moves plans whose time has come into the queue."""
        while True:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                due, _, key = heapq.heappop(self.timers)
                state = self.plans.get(key)
                if state is not None and state.due == due and key not in self.active:
                    self._enqueue(key, state.urgent)
            self.wake.clear()
            soonest = self.timers[0][0] if self.timers else now + 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(0.05, soonest - now))

    async def _worker(self) -> None:
        while True:
            key, lane = await self._take()
            state = self.plans.get(key)
            if state is None:
                continue
            self.active.add(key)
            self.periodic_busy += lane
            token = PLAN.set(f"{key[0]}/{key[1]}")
            try:
                await self._work(key, state)
            finally:
                PLAN.reset(token)
                self.active.discard(key)
                if lane:
                    self.periodic_busy -= 1
                    self.has_items.set()  # a periodic key may have waited for this worker
                if state.pending and self.plans.get(key) is state:
                    state.pending = False  # a trigger during the reconcile is not lost
                    self._enqueue(key, state.urgent)

    async def _work(self, key: Key, state: PlanState) -> None:
        state.pending = False
        if not self.ready():
            self._later(state, key, 0.5, state.urgent)
            return
        if self.traffic.stale(state):
            # Reconciled when its facts arrive (`_read` queues it); no worker waits for them.
            first = state.traffic is None
            (self.to_read_first if first else self.to_read)[key] = state
            state.reading = True
            self._start_read(first)
            return
        urgent, state.urgent = state.urgent, False
        try:
            switching = await self.reconcile(state)
        except Exception:  # one plan's failure never stops the others
            state.failures += 1
            delay = retry_delay(state.failures)
            logger.exception(
                "reconcile failed (%d in a row); retry in %.1fs", state.failures, delay
            )
            metrics.RECONCILES.labels(result="error").inc()
            if self.plans.get(key) is state:
                self._later(state, key, delay, urgent)
            return
        metrics.RECONCILES.labels(result="ok").inc()
        state.failures = 0
        if state.gone:  # deleted, though a watch restart never said so: nothing more to do
            self.forget(*key)
            return
        if self.plans.get(key) is state:
            self._later(state, key, self._next(switching), urgent=False)

    def _next(self, switching: bool) -> float:
        """Seconds until the plan is re-evaluated: a moving switch is polled fast."""
        if switching:
            return self.config.switch_poll
        return self.config.interval * random.uniform(0.9, 1.1)

    def _start_read(self, first: bool = False) -> None:
        """Start the next batched read of the fleet's due plans, or (`first`) of the plans never
        read, unless one of that kind is in flight (its end starts the next)."""
        waiting = self.to_read_first if first else self.to_read
        running = self.first_reading if first else self.reading
        if waiting and (running is None or running.done()):
            batch = list(waiting.items())
            waiting.clear()
            task = asyncio.create_task(
                self._read(batch, first), name="breakeven-traffic" + ("-first" if first else "")
            )
            if first:
                self.first_reading = task
            else:
                self.reading = task

    async def _read(self, batch: list[tuple[Key, PlanState]], first: bool = False) -> None:
        states = [state for _, state in batch]
        try:
            await self.traffic.refresh(states)
        except Exception:  # stale or missing traffic facts turn rows Unknown, no more
            logger.exception("reading traffic failed")
            for state in states:
                state.traffic = facts.Traffic(source="not read", errors=("reading traffic failed",))
                state.traffic_at = time.monotonic()
        finally:
            for key, state in batch:
                state.reading = False
                if self.plans.get(key) is state:  # in the lane it had: a periodic one stays so
                    self._at(key, 0.0, urgent=state.urgent)
            # Plans that went stale while this read ran are read next.
            asyncio.get_running_loop().call_soon(self._start_read, first)


READ_AHEAD = 0.5
"""A batched read also reads the facts of other plans that would go stale within this share of
the interval: plans read together stay together, so a sweep reads in about one batch (five
requests) whatever the number of plans, instead of one batch per plan whose interval came up
out of phase with the others (docs/performance.md)."""


class TrafficCache:
    """Each plan's traffic facts, read again once they are older than the interval."""

    def __init__(self, config: Config, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.allowed = traffic.allowed_urls(config.prometheus_url, config.allowed_prometheus_urls)
        # Every plan's state (Runtime wires the scheduler's in), for the reads ahead.
        self.others: Callable[[], Iterable[PlanState]] = tuple

    def stale(self, state: PlanState) -> bool:
        return state.traffic is None or time.monotonic() - state.traffic_at >= self.config.interval

    def _ahead(self, states: list[PlanState], now: float) -> list[PlanState]:
        """Plans not in `states` whose facts go stale within READ_AHEAD of the interval."""
        asked = {id(s) for s in states}
        soon = self.config.interval * (1 - READ_AHEAD)
        return [
            s
            for s in self.others()
            if id(s) not in asked
            and not s.reading
            and s.traffic is not None
            and now - s.traffic_at >= soon
        ]

    async def refresh(self, states: list[PlanState]) -> None:
        """One batched read for every plan whose facts are stale, and for the plans whose facts
        go stale within READ_AHEAD of the interval; the others are left alone."""
        now = time.monotonic()
        stale: dict[str, tuple[PlanState, traffic.TrafficQuery]] = {}
        # Only a read of plans read before reads ahead: plans never read (Scheduler's first
        # reads) are read alone, so that a new plan's facts come in one small read.
        due = any(s.traffic is not None and self.stale(s) for s in states)
        ahead = self._ahead(states, now) if due else []
        early = {id(s) for s in ahead}
        for state in [*states, *ahead]:
            if not self.stale(state) and id(state) not in early:
                continue
            try:
                plan = api.ServingPlan.model_validate(state.body)
            except pydantic.ValidationError:  # the reconcile reports the invalid spec
                state.traffic = facts.Traffic(source="not read", errors=("invalid spec",))
                state.traffic_at = now
                continue
            query = traffic.plan_query(plan, self.config.prometheus_url, self.allowed)
            if isinstance(query, facts.Traffic):  # nothing may be read: the facts say why
                state.traffic, state.traffic_at = query, now
            else:
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
        # The facts' age counts from their arrival: counted from the read's start, a read that
        # takes longer than the interval (a slow Prometheus, a short --interval) delivered facts
        # already stale, and no plan was ever reconciled.
        now = time.monotonic()
        for key, (state, _) in stale.items():
            state.traffic = results.get(key, facts.Traffic(errors=("no result",)))
            state.traffic_at = now


def _project_child(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return kube.projection(body, kind)


def gpu_node(body: Mapping[str, Any], mapping: facts.LabelMapping) -> facts.NodeInfo | None:
    """A GPU node's small projection; None for a node without GPUs (not kept)."""
    info = facts.node_info(body, mapping)
    has_gpu = info.allocatable.get(mapping.gpu_resource) or info.labels.get(mapping.gpu_count_label)
    return info if has_gpu else None


CHILD_KINDS: dict[str, tuple[str, str, str]] = {
    "Deployment": ("apps", "v1", "deployments"),
    "LeaderWorkerSet": (kube.LWS_GROUP, kube.LWS_VERSION, kube.LWS_PLURAL),
    "Service": ("", "v1", "services"),
}
"""The children the operator watches (labelled managed-by breakeven), as kube.projection keeps
them: the reconcile reads them from the informers' stores instead of GETs."""
TRIGGERING_KINDS = ("Deployment", "LeaderWorkerSet")  # whose changes reconcile their plan
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=breakeven"


class Runtime:
    """The clients, the scheduler, the traffic cache, the informers and the reconcile, wired
    together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # The GPU nodes as the reconcile reads them ({"gpu": NodeInfo objects}), from the Node
        # informer (shell/informer.py) once its first list is in.
        self.nodes: Mapping[str, Any] | None = None
        # Every informer (nodes, and each child kind cluster-wide or per --namespace) and its task
        self.informers: list[Informer[Any]] = []
        self.informer_tasks: list[asyncio.Task[None]] = []
        # Our children by kind: the informers' stores, (namespace, name) -> kube.projection
        self.children: dict[str, list[Mapping[Any, Any]]] = {}
        # The pods of our workloads (kube.pod_projection), indexed by plan; their informers are
        # not in `informers`: reconciling does not wait for them (a pod read is a LIST until
        # their first lists are in), and their events trigger nothing.
        self.pod_informers: list[Informer[Any]] = []
        self.pods = kube.PodIndex(config.namespaces)
        self.http = prometheus.client()
        self.traffic = TrafficCache(config, self.http)
        self.reconciler = Reconciler(config, lambda: self.nodes)
        self.scheduler = Scheduler(config, self.reconciler.reconcile, self.traffic, self.synced)
        self.traffic.others = lambda: list(self.scheduler.plans.values())
        self.task: asyncio.Task[None] | None = None
        self.api_client: k8s.ApiClient | None = None

    def synced(self) -> bool:
        """Whether every informer's first list is in (reconciling waits for it)."""
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    def lookup(self) -> kube.Lookup | None:
        """Reads of children from the informers' stores, once every first list is in."""
        if not self.synced():
            return None
        children = self.children

        def find(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
            for store in children.get(kind, ()):
                found = store.get((namespace, name))
                if found is not None:
                    return dict(found)
            return None

        return find

    def pod_lookup(self) -> kube.PodLookup | None:
        """Reads of our workloads' pods from the pod informers' stores, once their first lists
        are in."""
        if not self.pod_informers or not all(i.synced.is_set() for i in self.pod_informers):
            return None
        return self.pods.find

    def _informer(self, informer: Informer[Any], gates: bool = True) -> None:
        """Run `informer`; `gates`: reconciling waits for its first list (`synced`)."""
        (self.informers if gates else self.pod_informers).append(informer)
        self.informer_tasks.append(asyncio.create_task(informer.run(), name=informer.name))

    async def start(self) -> None:
        configuration = k8s.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not self.config.kubeconfig:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.config.kubeconfig, client_configuration=configuration
            )
        self.api_client = k8s.ApiClient(configuration)
        mapping = self.config.mapping
        nodes: Informer[facts.NodeInfo] = Informer(
            self.api_client,
            collection_path("", "v1", "nodes"),
            lambda body: gpu_node(body, mapping),
            name="nodes",
        )
        self.nodes = {"gpu": nodes.store.values()}
        self._informer(nodes)
        namespaces: list[str | None] = [*self.config.namespaces] or [None]
        for kind, (group, version, plural) in CHILD_KINDS.items():
            for namespace in namespaces:
                child: Informer[dict[str, Any]] = Informer(
                    self.api_client,
                    collection_path(group, version, plural, namespace),
                    functools.partial(_project_child, kind=kind),
                    label_selector=MANAGED_SELECTOR,
                    on_change=self._child_event if kind in TRIGGERING_KINDS else None,
                    name=f"{plural}" + (f" in {namespace}" if namespace else ""),
                )
                self.children.setdefault(kind, []).append(child.store)
                self._informer(child)
        # The pods of our workloads: every rendered pod template carries the managed-by label
        # (rendering.workloads._common_labels). Only a workload that is not settled has its pods
        # read (kube.settled), and its own status changes already trigger its plan; so a pod's
        # events only keep the store current (no on_change trigger).
        for namespace in namespaces:
            pods: Informer[dict[str, Any]] = Informer(
                self.api_client,
                collection_path("", "v1", "pods", namespace),
                kube.pod_projection,
                label_selector=MANAGED_SELECTOR,
                on_change=self.pods.change,
                name="pods" + (f" in {namespace}" if namespace else ""),
            )
            self._informer(pods, gates=False)
        self.reconciler.connect(
            kube.CachedWriter(kube.Writer(self.api_client), self.lookup, self.pod_lookup)
        )
        self.task = asyncio.create_task(self.scheduler.run(), name="breakeven-scheduler")

    async def stop(self) -> None:
        for task in (
            self.task,
            self.scheduler.reading,
            self.scheduler.first_reading,
            *self.informer_tasks,
        ):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.http.aclose()
        if self.api_client is not None:
            await self.api_client.close()  # type: ignore[no-untyped-call]

    def _child_event(self, type: str, key: Any, old: Any, new: Any) -> None:
        """A child's change from its informer: reconcile its plan soon if it is one a
        reconcile must see (child_changed)."""
        body = new if new is not None else old
        plan = ((body.get("metadata") or {}).get("labels") or {}).get("breakeven.dev/plan")
        if plan and self.child_changed(type, old, new):
            self.trigger(key[0], plan, soon=True)

    @staticmethod
    def child_changed(
        type: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> bool:
        """Whether a child's change is one its plan must be reconciled for: a deletion, or a
        change of what a reconcile reads of it (kube.read_part: readiness, replicas,
        generation, a hand edit). A child seen for the first time (created by its plan's
        reconcile, or listed when the informer starts) is not one: the reconcile that created
        it, or the one every plan gets at start, has read it. Other changes (conditions,
        timestamps, observedGeneration) trigger nothing."""
        if type == "DELETED":
            return True
        if type != "MODIFIED" or new is None:
            return False
        if old is None:
            return True
        kind = str(new.get("kind", ""))
        return kube.read_part(old, kind) != kube.read_part(new, kind)

    def remember(self, body: Mapping[str, Any]) -> None:
        self.scheduler.remember(body)

    def forget(self, namespace: str, name: str) -> None:
        self.scheduler.forget(namespace, name)

    def trigger(self, namespace: str, name: str, soon: bool = False) -> None:
        self.scheduler.trigger(namespace, name, soon)
