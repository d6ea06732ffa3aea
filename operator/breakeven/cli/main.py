"""The `breakeven` command: a thin shell over the same core the operator runs.

    breakeven plan PLAN.yaml [--nodes NODES.yaml] [--traffic TRAFFIC.yaml] [-o table|json|yaml]
                             [--render [--both]]
    breakeven estimate --model M --gpu G --gpus N --mode dense|moe ...
    breakeven models
    breakeven explain NAME [-n NAMESPACE]
    breakeven run [--namespace NS ...] [--prometheus-url URL] [--peering NAME | --standalone] ...
    breakeven eplb-exporter --log-file FILE --port PORT [--address ADDR] [--model NAME]

Bad input exits 2 with a message naming the field; nothing prints a traceback for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from breakeven.cli import eplb_exporter as cli_eplb_exporter
from breakeven.cli import estimate as cli_estimate
from breakeven.core import catalog, planning, report
from breakeven.core.rendering import telemetry
from breakeven.shell import inputs


class _NoAliasDumper(yaml.SafeDumper):
    """No `&id001`/`*id001` anchors: a repeated object (a label map) is written out again."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors exit 2 as well
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(command: str, message: str) -> int:
    print(f"breakeven {command}: error: {message}", file=sys.stderr)
    return 2


def _cmd_plan(args: argparse.Namespace) -> int:
    try:
        plans = inputs.load_plans(Path(args.plan))
        traffic = inputs.load_traffic(Path(args.traffic) if args.traffic else None)
        mapping = inputs.load_mapping(Path(args.label_mapping) if args.label_mapping else None)
        evaluations = []
        warned: set[str] = set()
        for plan in plans:
            cluster = inputs.load_cluster(Path(args.nodes) if args.nodes else None, plan, mapping)
            for warning in cluster.warnings:
                if warning not in warned:  # a bad node is named once, not once per plan
                    warned.add(warning)
                    print(f"breakeven plan: warning: {cluster.source}: {warning}", file=sys.stderr)
            evaluations.append(planning.evaluate(plan, cluster, traffic))
        rendered = (
            [report.render_manifests(e, both=args.both) for e in evaluations]
            if (args.render or args.both)
            else None
        )
    except (inputs.InputError, catalog.CatalogError) as exc:
        return _fail("plan", str(exc))
    except report.RenderFailure as exc:
        return _fail("plan", str(exc))

    if rendered is not None:
        docs = [doc for group in rendered for doc in group]
        print(yaml.dump_all(docs, Dumper=_NoAliasDumper, sort_keys=False, width=120), end="")
        return 0
    if args.output == "table":
        print("\n\n".join(report.table(e) for e in evaluations))
        return 0
    objects = [report.as_dict(e) for e in evaluations]
    data: Any = objects[0] if len(objects) == 1 else objects
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, width=120), end="")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    rows = [["MODEL", "TOTAL", "ACTIVE", "EXPERTS", "DTYPE"]]
    for name in catalog.names():
        arch = catalog.get(name)
        assert arch is not None
        experts = f"{arch.routed_experts} top-{arch.experts_per_token}" if arch.is_moe else "dense"
        rows.append(
            [
                name,
                f"{arch.total_parameters:g}B",
                f"{arch.active_parameters:g}B",
                experts,
                arch.native_dtype.value,
            ]
        )
    print(report.columns(rows))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from breakeven.cli import explaining  # the Kubernetes client is loaded only when needed

    return explaining.main(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from breakeven.shell import operator  # kopf is loaded only when needed

    return operator.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="breakeven",
        description="Serve each model dense or as an "
        "expert-parallel MoE, whichever its traffic and cluster can carry.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="decide Dense or MoE for a ServingPlan file")
    plan.add_argument("plan", help="ServingPlan manifest (as you would kubectl apply it)")
    plan.add_argument(
        "--nodes",
        help="`kubectl get nodes -o yaml` output or multi-doc Nodes "
        "(default: a built-in reference cluster)",
    )
    plan.add_argument("--traffic", help="traffic facts YAML (default: nothing observed)")
    plan.add_argument("--label-mapping", help="YAML adding or overriding node label keys")
    plan.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    plan.add_argument(
        "--render",
        action="store_true",
        help="print the manifests for the decided mode, like `helm template`",
    )
    plan.add_argument("--both", action="store_true", help="with --render: both modes")
    plan.set_defaults(func=_cmd_plan)

    cli_estimate.add_parser(sub)

    models = sub.add_parser("models", help="list the model catalog")
    models.set_defaults(func=_cmd_models)

    explain = sub.add_parser("explain", help="print a live ServingPlan's decision table")
    explain.add_argument("name", help="ServingPlan name")
    explain.add_argument("-n", "--namespace", default=None, help="namespace (default: current)")
    explain.add_argument("--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG)")
    explain.add_argument("-o", "--output", choices=["table", "json"], default="table")
    explain.set_defaults(func=_cmd_explain)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; default: all)",
    )
    run.add_argument(
        "--prometheus-url", default=None, help="Prometheus for plans that do not name one"
    )
    run.add_argument(
        "--allowed-prometheus-url",
        action="append",
        default=[],
        help="another Prometheus a plan's spec.traffic.prometheusUrl may name (repeatable)",
    )
    run.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds between re-evaluations of each plan (jittered)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=8,
        help="plans reconciled at once (the work queue's worker pool; default 8)",
    )
    run.add_argument("--label-mapping", default=None, help="YAML adding or overriding node keys")
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="port of the operator's /metrics (0 = off)"
    )
    run.add_argument("--metrics-address", default="0.0.0.0", help="address of /metrics")
    run.add_argument(
        "--eplb-exporter-image",
        default=telemetry.IMAGE,
        help="image of the EPLB exporter sidecar of MoE workloads (default: the operator's own)",
    )
    run.add_argument(
        "--kubeconfig", default=None, help="kubeconfig (default: in-cluster or $KUBECONFIG)"
    )
    run.add_argument(
        "--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    election = run.add_mutually_exclusive_group()
    election.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="leader election through this kopf peering object (ClusterKopfPeering, or a "
        "KopfPeering in each watched namespace); it must exist. Default: the peering object "
        "`breakeven` when kopf's peering CRDs are installed, standalone when they are not",
    )
    election.add_argument(
        "--standalone",
        action="store_true",
        help="no leader election: run only one replica (local runs, tests)",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest acts (default: earlier start = higher)",
    )
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(func=_cmd_run)

    cli_eplb_exporter.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `breakeven plan ... | head`
        sys.stderr.close()
        return 0
    return result


def _positive_int(text: str) -> int:
    """--workers: a whole number from 1 to 256."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be between 1 and 256, not {value}")
    return value
