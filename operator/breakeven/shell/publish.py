"""The writer: a reconcile's status onto the plan's status subresource, its Events onto the plan.

Status goes as a JSON merge patch of what changed (statuses.merge_patch), nothing when nothing
did, with the body's resourceVersion as a precondition (a 409 when the plan changed since it was
read); a plan deleted meanwhile needs none. Events are posted in the background: a failed post is
logged, never fatal, and never delays the next plan. The metrics that count Events (decisions,
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


class Publisher:
    def __init__(self, writer: kube.Client) -> None:
        self.writer = writer
        self._posting: set[asyncio.Task[None]] = set()

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
        for event in events:
            task = asyncio.create_task(
                self.writer.post_event(dict(body), event.type, event.reason, event.message)
            )
            self._posting.add(task)
            task.add_done_callback(self._posted)

    def _posted(self, task: asyncio.Task[None]) -> None:
        self._posting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not post an event: %s", task.exception())
