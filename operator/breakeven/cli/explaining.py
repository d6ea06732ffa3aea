"""`breakeven explain NAME`: print a live plan's decision table from its status.

The table is the one `breakeven plan` prints (report.status_table), read back from what the
operator wrote, so a person sees the same thing wherever the decision was made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import pydantic
from kubernetes import config as sync_config
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from breakeven.core import api, report
from breakeven.shell import kube


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    try:
        _, context = sync_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
        return str(context.get("context", {}).get("namespace") or "default")
    except (sync_config.ConfigException, OSError):
        return "default"


async def _read(args: argparse.Namespace, namespace: str) -> dict[str, Any] | None:
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, client_configuration=configuration
    )
    async with k8s.ApiClient(configuration) as api_client:
        return await kube.Writer(api_client).get_plan(namespace, args.name)


def trial_text(trial: api.TrialStatus | None) -> str:
    """The plan's latest expert-balance trial, for a person; empty when none ran."""
    if trial is None:
        return ""
    fields = [
        ("phase", f"{trial.phase.value} since {trial.since}"),
        ("workload", trial.workload),
        ("started", trial.started_at),
        ("ready since", trial.ready_since),
        ("share", trial.share),
        ("observed balance", trial.observed_balance),
        ("reason", trial.reason),
        ("next trial after", trial.retry_after),
    ]
    lines = ["Trial (expert balance):"]
    lines += [f"  {name + ':':<18}{value}" for name, value in fields if value]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    try:
        body = asyncio.run(_read(args, namespace))
    except (sync_config.ConfigException, OSError) as exc:
        print(f"breakeven explain: error: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    except k8s.ApiException as exc:
        print(
            f"breakeven explain: error: API server answered {exc.status} {exc.reason}",
            file=sys.stderr,
        )
        return 2
    if body is None:
        print(
            f"breakeven explain: error: servingplan {namespace}/{args.name} not found",
            file=sys.stderr,
        )
        return 2
    raw = {k: v for k, v in (body.get("status") or {}).items() if k != "breakeven.dev"}
    if args.output == "json":
        print(json.dumps(raw, indent=2))
        return 0
    try:
        status = api.ServingPlanStatus.model_validate(raw)
    except pydantic.ValidationError as exc:
        print(f"breakeven explain: error: unreadable status: {exc}", file=sys.stderr)
        return 2
    model = ((body.get("spec") or {}).get("model") or {}).get("name", "?")
    print(report.status_table(status, f"ServingPlan {namespace}/{args.name}: {model}"))
    if status.trial is not None:
        print()
        print(trial_text(status.trial))
    if status.route is not None:
        print()
        print(f"route: {status.route}")
    return 0
