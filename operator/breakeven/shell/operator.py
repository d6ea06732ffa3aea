"""The operator's kopf wiring and `breakeven run`: handlers that feed the runtime, nothing more.

    kopf watches ─── servingplans ───── events -> cache; new plans and spec changes
                                        (generation) -> trigger; and kopf's peering

    informers (shell/informer.py; Runtime starts them): paged list + watch, small projections
        ├─ nodes ────────────────────── the GPU nodes (runtime.nodes, facts.NodeInfo)
        ├─ our children ─────────────── Deployments, LeaderWorkerSets, Services labelled
        │                               managed-by breakeven (cluster-wide, or per
        │                               --namespace): kube.projection, which the reconcile
        │                               reads instead of GETs; changes of a Deployment or
        │                               LeaderWorkerSet in what a reconcile reads -> trigger
        │                               the owning plan
        └─ our pods ─────────────────── Pods labelled managed-by breakeven (every rendered
                                        pod template carries it; cluster-wide or per
                                        --namespace): kube.pod_projection indexed by plan
                                        (kube.PodIndex), read by the reconcile of a workload
                                        that is not settled instead of a LIST; their events
                                        trigger nothing (the workload's status does), and
                                        reconciling does not wait for their first list
        (not kopf's indexes: kopf held every listed body at start and spent ~10 ms an event)

    scheduler (shell/runtime.py): a de-duplicated work queue (new, changed and triggered plans
    ahead of periodic re-evaluation) and `--workers` workers; per plan, one at a time:
        ├─ traffic: one batched Prometheus read in the background for plans whose facts are stale
        └─ reconcile (shell/reconcile.py) = gather facts -> evaluate -> observe ->
           step -> carry out -> build status and events -> write -> emit (shell/publish.py)

The plan is written only on its status subresource, so GitOps tools see no drift on it. Only
kopf's event handlers are used, so kopf keeps no bookkeeping on the plan (its
storage stays configured under `status["breakeven.dev"]`, where older versions wrote it).
No timers, daemons or finalizers: those would write finalizers to the plan; the scheduler
re-evaluates each plan on a jittered interval instead, and children are garbage-collected
through owner references.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import kopf

from breakeven.core import api
from breakeven.shell import inputs, metrics
from breakeven.shell.runtime import Config, Runtime

logger = logging.getLogger("breakeven")

BOOKKEEPING = ("status", "breakeven.dev")


CONFIG = Config()


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base, for an operator without change-detecting handlers (on.create, on.update,
    on.field, timers, daemons): none. kopf builds the diff base of every event it processes
    (kopf/_core/reactor/processing.py, _detect_causes), a deep copy of the whole body, and uses
    it only for those handlers; this one builds nothing, stores nothing and finds nothing. Add
    such a handler and this must go back to a real storage."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


# --------------------------------------------------------------------------- kopf wiring


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field=(*BOOKKEEPING, "progress"), touch_field=(*BOOKKEEPING, "dummy")
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = "breakeven.dev/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.inactivity_timeout = 70  # watches behind load balancers go quiet (kopf#847)
    settings.networking.request_timeout = 60
    # Not paged LISTs (settings.watching.chunk_size): kopf does not restart a list whose
    # continue token expired (410) while a slow operator worked through the pages, and the
    # operator stopped (docs/performance.md); client-go's pager falls back to a full list then
    # (tools/pager/pager.go, FullListIfExpired), as the Node informer (shell/informer.py) does.
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


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def plan_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every event of a plan. A plan seen for the first time (created, or listed when the
    operator starts or resumes: kopf's listing events have no type) or whose spec changed
    (metadata.generation moved) is reconciled now; any other change (our own status writes)
    only refreshes the cached body; a deleted plan is forgotten.

    An event handler and not kopf's create/resume/update handlers: those keep kopf's
    bookkeeping on the plan (a status PATCH of each new plan, whose MODIFIED event is handled
    again, and which made the plan's first status write fail its resourceVersion precondition
    and run twice); this handler makes kopf write nothing (docs/performance.md)."""
    runtime: Runtime = memo["runtime"]
    if type == "DELETED":
        runtime.forget(body["metadata"]["namespace"], body["metadata"]["name"])
    else:
        runtime.remember(body)


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
    CONFIG.workers = args.workers
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prometheus request
    # Leader election is kopf peering (docs/reliability.md): `--peering NAME` makes it mandatory
    # (the replica waits, paused, until the peering object exists); `--standalone` turns it off;
    # neither uses the peering object `breakeven` when kopf's peering CRDs are installed and runs
    # standalone (with kopf's warning) when they are not. The highest priority acts, the others
    # wait; by default a replica's priority is its start time, earlier higher, so a restarted
    # replica never pre-empts the one acting.
    settings = kopf.OperatorSettings()
    settings.peering.standalone = bool(args.standalone)
    settings.peering.name = args.peering or "breakeven"
    settings.peering.mandatory = bool(args.peering)
    settings.peering.priority = (
        args.priority if args.priority is not None else 10**13 - int(time.time() * 1000)
    )
    asyncio.run(
        kopf.operator(
            settings=settings,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    )
    return 0
