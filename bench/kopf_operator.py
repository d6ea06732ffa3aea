"""A benchmark-only `breakeven run` queued by kopf's own per-object machinery (issue 13).

    python bench/kopf_operator.py run ...      # the same arguments as `breakeven run`
    bench/controlplane.py --variant kopf ...   # runs it on the control plane

Not part of the package and never shipped: it answers "kopf already runs one worker per object,
with retries, back-off and timers: is our own queue worth having?" (docs/performance.md, "kopf's
per-object handlers against our own queue"). Everything but the queueing is the operator's own:
shell/runtime.py's Runtime (its clients, the traffic cache, the Reconciler, the kube writer, its
informers of Nodes and of our children) and shell/operator.py's settings and `main`; the
Scheduler is not started. Instead:

- `@kopf.on.resume` + `@kopf.on.create` + `@kopf.on.update(field="spec")` on ServingPlans
  reconcile inline, in kopf's worker for that plan (kopf/_core/reactor/queueing.py: one worker
  per object, its events handled one at a time);
- `@kopf.timer(interval=--interval)` re-evaluates each plan periodically, in a task of its own
  per plan (kopf/_core/engines/daemons.py, _timer), with a jittered first delay;
- a reconcile that raises becomes `kopf.TemporaryError(delay=runtime.retry_delay(retry + 1))`:
  kopf retries the handler with our back-off; a moving switch is polled the same way
  (TemporaryError with the switch-poll delay);
- child events reconcile the owning plan in a task of their own. (The runs in
  docs/performance.md were made before the operator's informers replaced kopf's child indexes,
  with kopf `on.event` handlers on our Deployments and LeaderWorkerSets that reconciled inline
  in the child's worker; the informers' triggers now take their place.)

kopf serialises a plan's own events, but not its timer (a separate task) nor its children's
events (other objects' workers) against them: `Gate` serialises the reconciles of a plan across
the three, and a trigger that finds one reconcile already waiting for the plan is folded into it.

What kopf writes to each plan here, where `breakeven run` writes nothing but the status:
its finalizer `breakeven.dev/finalizer` (timers need one, kopf/on.py `timer`:
requires_finalizer=True; one PATCH of the plan before its first handler runs, and one more to
remove it on deletion), the diff base of the update handler as the annotation
`breakeven.dev/last-handled-configuration` (kopf/_cogs/configs/diffbase.py; one PATCH after each
create or spec change), and, while a create or update handler is being retried, its progress
under `status["breakeven.dev"]["progress"]` (kopf/_cogs/configs/progress.py). So the
ServiceAccount needs `patch` on servingplans, which the shipped RBAC does not grant
(bench/controlplane.py grants it for this variant).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf

from breakeven.core import api
from breakeven.shell import metrics
from breakeven.shell import operator as op
from breakeven.shell.runtime import PlanState, Runtime, kept, retry_delay

logger = logging.getLogger("breakeven")

Key = tuple[str, str]

# shell/operator.py registered its handlers in kopf's default registry on import; this variant
# registers its own in a registry of the same kind (with kopf's login handlers), which `main`
# makes the default for `kopf.operator` in op.main.
REGISTRY = type(kopf.get_default_registry())()


class Gate:
    """One reconcile of a plan at a time across kopf's entry points (the plan's worker, its timer
    task, its children's workers), and at most one waiting: a trigger that finds one waiting
    is folded into it (that reconcile reads the plan fresh when its turn comes)."""

    def __init__(self) -> None:
        self.locks: dict[Key, asyncio.Lock] = {}
        self.waiting: set[Key] = set()
        self.busy = 0  # reconciles running or waiting for their turn

    @contextlib.asynccontextmanager
    async def turn(self, key: Key) -> AsyncIterator[bool]:
        """Yields True once it is this caller's turn to reconcile `key`, or False at once when
        another caller is already waiting for it (nothing to do then)."""
        if key in self.waiting:
            yield False
            return
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.waiting.add(key)
        self.busy += 1
        try:
            async with lock:
                self.waiting.discard(key)
                yield True
        finally:
            self.waiting.discard(key)
            self.busy -= 1

    def forget(self, key: Key) -> None:
        lock = self.locks.get(key)
        if lock is not None and not lock.locked() and key not in self.waiting:
            del self.locks[key]


class Plans:
    """The plans' states (what the Scheduler would keep) and their reconcile, inline."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.states: dict[Key, PlanState] = {}
        self.gate = Gate()
        self.tasks: set[asyncio.Task[None]] = set()
        # The traffic cache reads ahead for the other plans, as with the Scheduler.
        runtime.traffic.others = lambda: list(self.states.values())

    def remember(self, body: Mapping[str, Any]) -> PlanState:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        raw = kept(body)
        state = self.states.get(key)
        if state is None or state.body["metadata"].get("uid") != meta.get("uid"):
            state = self.states[key] = PlanState(body=raw)
        elif state.body["metadata"].get("generation") != meta.get("generation"):
            state.body = raw
            state.traffic = None  # the selector or window may have changed
        return state

    def trigger(self, namespace: str, name: str, soon: bool = False) -> None:
        """A child changed in what a reconcile reads of it (Runtime's informers): its plan is
        reconciled in a task of its own (a failure is logged; the plan's timer comes later)."""
        state = self.states.get((namespace, name))
        if state is not None:
            task = asyncio.create_task(self._triggered(state))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _triggered(self, state: PlanState) -> None:
        try:
            await self.reconcile(state)
        except Exception:
            logger.exception("reconcile after a child event failed")

    def forget(self, key: Key) -> None:
        self.states.pop(key, None)
        self.gate.forget(key)
        metrics.forget_plan(f"{key[0]}/{key[1]}")

    async def reconcile(self, state: PlanState) -> bool:
        """Reconcile the plan once it is its turn; whether a switch is moving. Raises what the
        reconcile raised (the handler turns it into kopf's retry)."""
        meta = state.body["metadata"]
        key = (meta["namespace"], meta["name"])
        switching = False
        async with self.gate.turn(key) as go:
            metrics.QUEUE_DEPTH.set(self.gate.busy)
            if not go:
                return False
            if self.runtime.traffic.stale(state):  # read inline: no batch but the read-ahead
                state.reading = True
                try:
                    await self.runtime.traffic.refresh([state])
                finally:
                    state.reading = False
            while True:
                state.pending = False
                try:
                    switching = await self.runtime.reconciler.reconcile(state)
                except Exception:
                    metrics.RECONCILES.labels(result="error").inc()
                    raise
                metrics.RECONCILES.labels(result="ok").inc()
                if state.gone:
                    self.forget(key)
                    break
                # The status write met a newer plan (409: here most often kopf's own PATCH of
                # the diff base or the finalizer): again at once, as the Scheduler does.
                if not state.pending:
                    break
                metrics.QUEUE_DEPTH.set(self.gate.busy)
        metrics.QUEUE_DEPTH.set(self.gate.busy)
        return switching


def _plans(memo: kopf.Memo, kwargs: dict[str, Any]) -> Plans:
    plans: Plans = memo["plans"]
    return plans


async def _reconcile_or_retry(plans: Plans, state: PlanState, retry: int) -> None:
    """kopf's retries: an error comes back after our back-off, a moving switch after the
    switch-poll interval."""
    try:
        switching = await plans.reconcile(state)
    except Exception as exc:
        raise kopf.TemporaryError(f"reconcile failed: {exc}", delay=retry_delay(retry + 1)) from exc
    if switching:
        raise kopf.TemporaryError("a switch is moving", delay=op.CONFIG.switch_poll)


# --------------------------------------------------------------------------- kopf wiring


@kopf.on.startup(registry=REGISTRY)
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field=(*op.BOOKKEEPING, "progress"), touch_field=(*op.BOOKKEEPING, "dummy")
    )
    # The update handler needs a diff base (shell/operator.py's NoDiffBase would find none).
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="breakeven.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "breakeven.dev/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.inactivity_timeout = 70
    settings.networking.request_timeout = 60
    if op.CONFIG.metrics_port:
        metrics.serve(op.CONFIG.metrics_port, op.CONFIG.metrics_address)
    runtime = Runtime(op.CONFIG)
    await runtime.start()
    if runtime.task is not None:  # kopf queues here: the Scheduler stays idle
        runtime.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.task
        runtime.task = None
    memo["runtime"] = runtime
    plans = memo["plans"] = Plans(runtime)
    runtime.trigger = plans.trigger  # type: ignore[method-assign]  # the informers' child events


kopf.on.cleanup(registry=REGISTRY)(op._cleanup)


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL, registry=REGISTRY)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL, registry=REGISTRY)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, field="spec", registry=REGISTRY)
async def plan_changed(body: kopf.Body, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    """A plan seen for the first time (created, or found at start) or whose spec changed."""
    plans = _plans(memo, kwargs)
    await _reconcile_or_retry(plans, plans.remember(body), retry)


async def periodic(body: kopf.Body, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    """kopf's timer: the plan re-evaluated every --interval (registered in `main`, which knows
    the interval)."""
    plans = _plans(memo, kwargs)
    await _reconcile_or_retry(plans, plans.remember(body), retry)


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL, optional=True, registry=REGISTRY)
async def plan_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    plans: Plans = memo["plans"]
    plans.forget((body["metadata"]["namespace"], body["metadata"]["name"]))


def main(argv: list[str]) -> int:
    from breakeven.cli.main import build_parser

    args = build_parser().parse_args(argv)
    if args.command != "run":
        print("bench/kopf_operator.py: only `run`", file=sys.stderr)
        return 2
    interval = float(args.interval)
    kopf.timer(
        api.GROUP, api.VERSION, api.PLURAL, interval=interval,
        initial_delay=lambda **_: interval * random.uniform(0.9, 1.1), registry=REGISTRY,
    )(periodic)  # fmt: skip
    kopf.set_default_registry(REGISTRY)
    return op.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
