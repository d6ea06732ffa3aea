"""`make demo`: the operator doing its job on a local control plane, in one command.

Starts the control plane (fake H200/InfiniBand, L40S and GB200 NVL72 nodes), a Prometheus holding
14 days of sample traffic for each demo plan, installs the CRD and the operator's RBAC, runs the
operator as its ServiceAccount, applies examples/demo/plans.yaml, waits for every plan to be
decided, and prints `kubectl get sp` and one plan's `breakeven explain`. Everything it started is
stopped by PID at the end (or, with --keep, on Ctrl-C).

Plans annotated `demo.breakeven.dev/eplb` run an expert-balance trial. kwok pods run no vLLM, so
for each trial's leader pod the demo runs the real `breakeven eplb-exporter` on 127.0.0.1 and
appends vLLM-format EPLB step lines to its log (e2e/eplb.py, as the e2e tests do): `balanced`
(the busiest rank about 1.1x the mean) or `hot` (2.6x). The demo prints each trial plan's mode
and trial phase as they change.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from e2e import running
from e2e.cluster import LocalCluster, cache_dir
from e2e.eplb import PodExporter
from e2e.fixtures import start_prometheus
from e2e.nodes import DEFAULT_DESCRIPTION
from e2e.prom import LocalPrometheus
from e2e.traffic import TrafficSpec

ROOT = Path(__file__).resolve().parents[1]
PLANS = ROOT / "examples" / "demo" / "plans.yaml"
EPLB_ANNOTATION = "demo.breakeven.dev/eplb"
TRIAL_ANNOTATION = "demo.breakeven.dev/expect-trial"
WORKLOAD_LABEL = "breakeven.dev/workload"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _history(plans: list[dict[str, object]]) -> tuple[TrafficSpec, ...]:
    """One traffic series per demo plan, its profile named by the plan's annotation."""
    specs = []
    for plan in plans:
        meta = plan["metadata"]
        assert isinstance(meta, dict)
        profile = (meta.get("annotations") or {}).get("demo.breakeven.dev/traffic")
        selector = plan["spec"]["traffic"]["selector"]
        if profile:
            specs.append(
                TrafficSpec(
                    selector["model_name"], selector["namespace"], profile, base_rate=120_000.0
                )
            )
    return tuple(specs)


# EPLB steps per demo loop: the busiest rank over the mean, as the e2e trial tests write them.
EPLB_STEPS = {"balanced": [1.08] * 19 + [1.3], "hot": [2.6] * 20}


class Trials:
    """The demo's trial plans: an EPLB exporter per trial leader pod, and their phases."""

    def __init__(self, plans: list[dict[str, Any]], prom: LocalPrometheus, workdir: Path) -> None:
        self.prom, self.workdir = prom, workdir
        self.balance = {
            (p["metadata"]["namespace"], p["metadata"]["name"]): kind
            for p in plans
            if (kind := (p["metadata"].get("annotations") or {}).get(EPLB_ANNOTATION))
        }
        self.exporters: dict[tuple[str, str], PodExporter] = {}
        self.seen: dict[tuple[str, str], str] = {}

    def step(self, core: Any, items: list[dict[str, Any]]) -> None:
        """Start exporters for running trials, write each one's EPLB steps, say what changed."""
        for item in items:
            key = (item["metadata"]["namespace"], item["metadata"]["name"])
            if key not in self.balance:
                continue
            status = item.get("status") or {}
            trial = status.get("trial") or {}
            said = f"{status.get('mode') or '-'}, trial {trial.get('phase') or 'not started'}"
            if trial.get("reason"):
                said += f" ({trial['reason']})"
            if self.seen.get(key) != said:
                _say(f"{key[1]}: serving {said}")
                self.seen[key] = said
            if key not in self.exporters and trial.get("phase") == "Running" and trial["workload"]:
                pods = core.list_namespaced_pod(
                    key[0], label_selector=f"{WORKLOAD_LABEL}={trial['workload']}"
                ).items
                if pods:
                    leader = sorted(p.metadata.name for p in pods)[0]
                    model = item["spec"]["model"]["name"]
                    self.exporters[key] = PodExporter(
                        self.prom, self.workdir / leader, key[0], leader, model
                    ).start()
            if key in self.exporters:
                self.exporters[key].write(EPLB_STEPS[self.balance[key]])

    def stop(self) -> None:
        for exporter in self.exporters.values():
            exporter.stop()


def _kubectl() -> str:
    built = sorted((cache_dir() / "bin").glob("kubectl-*"))
    return str(built[-1]) if built else (shutil.which("kubectl") or "kubectl")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--workdir", default="/tmp/breakeven-demo")
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=420)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    plans: list[dict[str, Any]] = [d for d in yaml.safe_load_all(PLANS.read_text()) if d]

    _say("starting the control plane (a cold machine builds it first)")
    cluster = LocalCluster(workdir / "cluster", node_pools=DEFAULT_DESCRIPTION).start()
    prom_iter = start_prometheus(workdir / "prometheus", _history(plans))
    operator: running.OperatorProcess | None = None
    trials: Trials | None = None
    try:
        prom = next(prom_iter)
        trials = Trials(plans, prom.prom, workdir / "eplb")
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
            for ns in sorted({p["metadata"]["namespace"] for p in plans}):
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
                p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                    "demo.breakeven.dev/expect"
                )
                for p in plans
            }
            expected_trial = {
                p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                    TRIAL_ANNOTATION
                )
                for p in plans
            }
            while time.monotonic() < deadline:
                items = custom.list_cluster_custom_object(
                    "breakeven.dev", "v1alpha1", "servingplans"
                )["items"]
                trials.step(core, items)
                settled = [
                    i
                    for i in items
                    if (i.get("status") or {}).get("phase") in ("Serving", "Planned")
                    and expected.get(i["metadata"]["name"]) in (None, i["status"].get("mode"))
                    and expected_trial.get(i["metadata"]["name"])
                    in (None, (i["status"].get("trial") or {}).get("phase"))
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
        if trials is not None:
            trials.stop()
        if operator is not None:
            operator.stop()
        prom_iter.close()
        cluster.stop()
        _say("stopped every process the demo started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
