"""The scheduler: which plans are due, their cached traffic facts, and the clients.

    kopf handlers ── remember / forget / trigger ──> Scheduler.plans (one PlanState per plan)
    Scheduler.run, every tick: the due plans
        ├─ those whose traffic facts are stale: one batched Prometheus read in the background
        │  (TrafficCache.refresh); each is reconciled when its facts arrive
        └─ the others, now: Reconciler.reconcile (breakeven.shell.reconcile); a slow or silent
           Prometheus never holds up a plan whose facts are fresh, switch polls included; one
           plan's failure never stops the others, and a trigger during its reconcile is not lost

`Runtime` holds the clients and wires the three together; it owns no decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx
import pydantic
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from breakeven.core import api, facts, traffic
from breakeven.core.rendering import telemetry
from breakeven.shell import kube, metrics, prometheus
from breakeven.shell.reconcile import Reconciler

logger = logging.getLogger("breakeven")


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


Reconcile = Callable[[PlanState], Awaitable[bool]]
"""Reconcile one plan; returns whether a switch is moving (then the plan is polled fast)."""


class TrafficSource(Protocol):
    def stale(self, state: PlanState) -> bool:
        """Whether the plan's traffic facts must be read again before it is reconciled."""

    async def refresh(self, states: list[PlanState]) -> None:
        """Read the facts of `states`; afterwards none of them is stale."""


class Scheduler:
    """Which plans are due, and when each is next."""

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
        self.ready = ready  # whether reconciling can start (the node index is filled)
        self.plans: dict[tuple[str, str], PlanState] = {}
        self.wake = asyncio.Event()
        self.reading: asyncio.Task[None] | None = None

    def remember(self, body: Mapping[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        state = self.plans.get(key)
        raw = dict(body)
        if state is None:
            self.plans[key] = PlanState(body=raw)
            self.wake.set()
            return
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

    def _next(self, switching: bool) -> float:
        if switching:
            return time.monotonic() + self.config.switch_poll
        return time.monotonic() + self.config.interval * random.uniform(0.9, 1.1)

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            due = [(k, s) for k, s in self.plans.items() if s.due <= now]
            if due and self.ready():
                await self._tick(due)
            self.wake.clear()
            soonest = min((s.due for s in self.plans.values()), default=now + 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(0.2, soonest - now))

    async def _tick(self, due: list[tuple[tuple[str, str], PlanState]]) -> None:
        stale = [s for _, s in due if self.traffic.stale(s)]
        if stale and (self.reading is None or self.reading.done()):
            for state in stale:
                state.reading = True
            self.reading = asyncio.create_task(self._read(stale), name="breakeven-traffic")
        for key, state in due:
            if self.traffic.stale(state):
                # Reconciled when its facts arrive (`_read` triggers it); if another read is in
                # flight, its own read starts when that one ends.
                state.due = time.monotonic() + (self.config.interval if state.reading else 1.0)
                continue
            state.pending = False
            try:
                switching = await self.reconcile(state)
            except Exception:  # one plan's failure never stops the others
                logger.exception("reconcile of %s/%s failed", *key)
                switching = False
            if state.gone:
                self.forget(*key)
            if key in self.plans:
                # A trigger that arrived during the reconcile is not lost.
                state.due = time.monotonic() if state.pending else self._next(switching)

    async def _read(self, states: list[PlanState]) -> None:
        try:
            await self.traffic.refresh(states)
        except Exception:  # stale or missing traffic facts turn rows Unknown, no more
            logger.exception("reading traffic failed")
            for state in states:
                state.traffic = facts.Traffic(source="not read", errors=("reading traffic failed",))
                state.traffic_at = time.monotonic()
        finally:
            for state in states:
                state.reading = False
                key = (state.body["metadata"]["namespace"], state.body["metadata"]["name"])
                if self.plans.get(key) is state:
                    state.due = time.monotonic()
                    state.pending = True
            self.wake.set()


class TrafficCache:
    """Each plan's traffic facts, read again once they are older than the interval."""

    def __init__(self, config: Config, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http
        self.allowed = traffic.allowed_urls(config.prometheus_url, config.allowed_prometheus_urls)

    def stale(self, state: PlanState) -> bool:
        return state.traffic is None or time.monotonic() - state.traffic_at >= self.config.interval

    async def refresh(self, states: list[PlanState]) -> None:
        """One batched read for every plan whose facts are stale; the others are left alone."""
        now = time.monotonic()
        stale: dict[str, tuple[PlanState, traffic.TrafficQuery]] = {}
        for state in states:
            if not self.stale(state):
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


class Runtime:
    """The clients, the scheduler, the traffic cache and the reconcile, wired together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.nodes: Mapping[str, Any] | None = None
        self.http = prometheus.client()
        self.traffic = TrafficCache(config, self.http)
        self.reconciler = Reconciler(config, lambda: self.nodes)
        self.scheduler = Scheduler(
            config, self.reconciler.reconcile, self.traffic, lambda: self.nodes is not None
        )
        self.task: asyncio.Task[None] | None = None
        self.api_client: k8s.ApiClient | None = None

    async def start(self) -> None:
        configuration = k8s.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not self.config.kubeconfig:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.config.kubeconfig, client_configuration=configuration
            )
        self.api_client = k8s.ApiClient(configuration)
        self.reconciler.connect(kube.Writer(self.api_client))
        self.task = asyncio.create_task(self.scheduler.run(), name="breakeven-scheduler")

    async def stop(self) -> None:
        for task in (self.task, self.scheduler.reading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.http.aclose()
        if self.api_client is not None:
            await self.api_client.close()  # type: ignore[no-untyped-call]

    def remember(self, body: Mapping[str, Any]) -> None:
        self.scheduler.remember(body)

    def forget(self, namespace: str, name: str) -> None:
        self.scheduler.forget(namespace, name)

    def trigger(self, namespace: str, name: str, soon: bool = False) -> None:
        self.scheduler.trigger(namespace, name, soon)
