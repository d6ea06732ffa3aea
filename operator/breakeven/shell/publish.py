"""The writer: a reconcile's status onto the plan's status subresource, its Events onto the plan.

Status goes as a JSON merge patch of what changed (statuses.merge_patch), nothing when nothing
did, with the body's resourceVersion as a precondition (a 409 when the plan changed since it was
read); a plan deleted meanwhile needs none. Events are posted in the background, off the
reconcile's path: at most POSTING at once (a burst of new plans' Events never crowds out the
reconciles' own requests), each holding only the plan's identity; a failed post is logged, never
fatal, and never delays the next plan; beyond WAITING_MAX waiting, an Event is dropped with a
warning that names it. The metrics that count Events (decisions,
switches, fallbacks) are counted here, once per Event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import api, statuses, switching
from breakeven.shell import kube, metrics

logger = logging.getLogger("breakeven")
IDENTITY = ("name", "namespace", "uid", "resourceVersion")  # of the plan, in its Events


POSTING = 4  # Event posts in flight at once
WAITING_MAX = 10_000  # Events waiting for a post; more are dropped, each with a warning


class Publisher:
    def __init__(self, writer: kube.Client) -> None:
        self.writer = writer
        self._posting: set[asyncio.Task[None]] = set()  # posted or waiting to be
        self._slots: asyncio.Semaphore | None = None  # made in the running loop

    async def write(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Patch the plan's status to `status` (kopf's bookkeeping under it left alone)."""
        changes = statuses.merge_patch(statuses.current(body), status)
        if not changes:
            return
        meta = body["metadata"]
        try:
            await self.writer.patch_status(
                meta["namespace"], meta["name"], changes, meta.get("resourceVersion")
            )
        except ApiException as exc:
            if exc.status != 404:  # a plan deleted meanwhile needs no status
                raise

    def emit(
        self,
        body: Mapping[str, Any],
        plan: api.ServingPlan,
        outcome: statuses.Outcome,
        decided: api.ServingMode,
    ) -> None:
        """Post a reconcile's Events and count the ones metrics count."""
        label = f"{plan.namespace}/{plan.name}"
        step = outcome.step
        for event in outcome.events:
            if event.reason in metrics.TRIAL_EVENTS:
                metrics.TRIALS.labels(plan=label, outcome=metrics.TRIAL_EVENTS[event.reason]).inc()
            if event.reason == "DecisionChanged":
                metrics.DECISIONS.labels(plan=label, mode=decided.value).inc()
            if event.reason == "Switched" and step is not None:
                metrics.SWITCHES.labels(plan=label, to=step.target.value, reason=step.reason).inc()
                if step.fallback:
                    metrics.FALLBACKS.labels(plan=label, reason=step.reason).inc()
        self.post(body, outcome.events)

    def post(self, body: Mapping[str, Any], events: Iterable[switching.Event]) -> None:
        meta = body.get("metadata") or {}
        plan = {"metadata": {k: meta.get(k) for k in IDENTITY}}  # what an Event names
        for event in events:
            if len(self._posting) >= WAITING_MAX:
                logger.warning(
                    "dropped the %s Event %s of %s/%s: %d Events wait to be posted",
                    event.type,
                    event.reason,
                    meta.get("namespace"),
                    meta.get("name"),
                    len(self._posting),
                )
                continue
            task = asyncio.create_task(self._post(plan, event))
            self._posting.add(task)
            task.add_done_callback(self._posted)

    async def _post(self, plan: Mapping[str, Any], event: switching.Event) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(POSTING)
        async with self._slots:
            await self.writer.post_event(plan, event.type, event.reason, event.message)

    def _posted(self, task: asyncio.Task[None]) -> None:
        self._posting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not post an event: %s", task.exception())
