"""`make demo`: the operator doing its job on a local control plane, in one command.

Starts the control plane (fake H200/InfiniBand, L40S and GB200 NVL72 nodes), a Prometheus holding
14 days of sample traffic for each demo plan, installs the CRD and the operator's RBAC, runs the
operator as its ServiceAccount, applies examples/demo/plans.yaml, waits for every plan to be
decided, and prints `kubectl get sp` and one plan's `breakeven explain`. Everything it started is
stopped by PID at the end (or, with --keep, on Ctrl-C).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from e2e import running
from e2e.cluster import LocalCluster, cache_dir
from e2e.fixtures import start_prometheus
from e2e.nodes import DEFAULT_DESCRIPTION
from e2e.traffic import TrafficSpec

ROOT = Path(__file__).resolve().parents[1]
PLANS = ROOT / "examples" / "demo" / "plans.yaml"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _history(plans: list[dict[str, object]]) -> tuple[TrafficSpec, ...]:
    """One traffic series per demo plan, its profile named by the plan's annotation."""
    specs = []
    for plan in plans:
        meta = plan["metadata"]
        assert isinstance(meta, dict)
        profile = (meta.get("annotations") or {}).get("demo.breakeven.dev/traffic")
        selector = plan["spec"]["traffic"]["selector"]  # type: ignore[index]
        if profile:
            specs.append(
                TrafficSpec(
                    selector["model_name"], selector["namespace"], profile, base_rate=120_000.0
                )
            )
    return tuple(specs)


def _kubectl() -> str:
    built = sorted((cache_dir() / "bin").glob("kubectl-*"))
    return str(built[-1]) if built else (shutil.which("kubectl") or "kubectl")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--workdir", default="/tmp/breakeven-demo")
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    plans = [d for d in yaml.safe_load_all(PLANS.read_text()) if d]

    _say("starting the control plane (a cold machine builds it first)")
    cluster = LocalCluster(workdir / "cluster", node_pools=DEFAULT_DESCRIPTION).start()
    prom_iter = start_prometheus(workdir / "prometheus", _history(plans))
    operator: running.OperatorProcess | None = None
    try:
        prom = next(prom_iter)
        _say(f"Prometheus at {prom.url} with 14 days of sample traffic")
        from kubernetes import client, config

        with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api:
            running.install(api)
            sa_kubeconfig = running.service_account_kubeconfig(
                api, cluster.kubeconfig, workdir / "operator.kubeconfig"
            )
            operator = running.OperatorProcess(
                sa_kubeconfig, prom.url, workdir / "operator.log", interval=5.0
            ).start()
            _say(f"operator running as ServiceAccount breakeven/breakeven (log: {operator.log})")
            core = client.CoreV1Api(api)
            for ns in sorted({p["metadata"]["namespace"] for p in plans}):  # type: ignore[index]
                try:
                    core.create_namespace({"metadata": {"name": ns}})
                except client.ApiException as exc:
                    if exc.status != 409:
                        raise
            subprocess.run(
                [_kubectl(), "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", str(PLANS)],
                check=True,
            )
            custom = client.CustomObjectsApi(api)
            deadline = time.monotonic() + args.timeout
            next_report = time.monotonic() + 5
            expected = {
                p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(  # type: ignore[index]
                    "demo.breakeven.dev/expect"
                )
                for p in plans
            }
            while time.monotonic() < deadline:
                items = custom.list_cluster_custom_object(
                    "breakeven.dev", "v1alpha1", "servingplans"
                )["items"]
                settled = [
                    i
                    for i in items
                    if (i.get("status") or {}).get("phase") in ("Serving", "Planned")
                    and expected.get(i["metadata"]["name"]) in (None, i["status"].get("mode"))
                ]
                if len(settled) == len(plans):
                    break
                if time.monotonic() >= next_report:
                    waiting = sorted(
                        f"{i['metadata']['name']} ({(i.get('status') or {}).get('reason', '-')})"
                        for i in items
                        if i not in settled
                    )
                    _say(f"waiting for: {', '.join(waiting)}")
                    next_report = time.monotonic() + 10
                if not operator.alive():
                    raise SystemExit(f"the operator died:\n{operator.tail()}")
                time.sleep(1)
            else:
                _say("not every plan settled in time; showing where they are")
        print()
        subprocess.run(
            [_kubectl(), "--kubeconfig", str(cluster.kubeconfig), "get", "sp", "-A", "-o", "wide"],
            check=False,
        )
        first = plans[0]["metadata"]
        assert isinstance(first, dict)
        print()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "breakeven",
                "explain",
                str(first["name"]),
                "-n",
                str(first["namespace"]),
                "--kubeconfig",
                str(cluster.kubeconfig),
            ],
            check=False,
        )
        if args.keep:
            print()
            _say(f"export KUBECONFIG={cluster.kubeconfig}   # Ctrl-C stops everything")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if operator is not None:
            operator.stop()
        prom_iter.close()
        cluster.stop()
        _say("stopped every process the demo started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
