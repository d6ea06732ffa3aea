"""The operator on a real control plane: latencies beside the API server's and the LWS controller's.

    .venv/bin/python bench/controlplane.py [--levels 0,100,1000] [--samples 50] [--nodes 0]
    make bench-controlplane

Starts the local control plane (e2e/cluster.py: etcd, kube-apiserver, controller-manager,
scheduler, kwok, the LWS controller), installs the CRD and RBAC, and runs `breakeven run` as a
process under its ServiceAccount, without Prometheus, at `--interval`. Then, in one run on the
same API server:

- the API server's own floor: a Deployment create until a watch sees it;
- the LWS controller: a LeaderWorkerSet create until its StatefulSet is seen on a watch;
- for each level of plans present (Dense-pinned Qwen3-30B-A3B plans): one more plan created,
  timed until its child workload is seen on a watch and until its status is; the plans that fill
  a level are created as a burst, reported as plans/s until each has its child;
- the operator's RSS and CPU seconds over one quiet interval (one sweep: every plan
  re-evaluated once), and the API requests it made in that sweep by verb and resource (the API
  server's apiserver_request_total, deltas; the operator is the only client that GETs or LISTs
  these resources by name or selector) per reconcile (the operator's own reconcile count).

Plain figures on stdout; everything it started is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAMESPACE = "bench"
LABEL = "breakeven.dev/plan"
MODEL = "Qwen/Qwen3-30B-A3B"
RESOURCES = ("servingplans", "deployments", "leaderworkersets", "pods", "services", "events")


def plan_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL},
            "mode": "Dense",
            "operations": {"platformTeam": "Dedicated"},
        },
    }


def deployment_body(name: str) -> dict[str, Any]:
    labels = {"bench": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench-floor": "1"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def lws_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": 1,
                "workerTemplate": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        },
    }


class Seen:
    """First time a watch saw each name (optionally only once `ready(obj)` holds)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()

    def mark(self, name: str) -> None:
        with self.cond:
            if name not in self.at:
                self.at[name] = time.monotonic()
                self.cond.notify_all()

    def wait(self, name: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while name not in self.at:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.at[name]

    def count(self, names: set[str]) -> int:
        with self.cond:
            return len(names & self.at.keys())


def watch_forever(
    list_call: Callable[..., Any],
    seen: Seen,
    key: Callable[[dict[str, Any]], str | None],
    stop: threading.Event,
    **kwargs: Any,
) -> None:
    from kubernetes import watch

    while not stop.is_set():
        w = watch.Watch()
        try:
            for event in w.stream(list_call, timeout_seconds=30, **kwargs):
                if stop.is_set():
                    break
                obj = event["object"]
                if not isinstance(obj, dict):
                    obj = obj.to_dict()
                    obj.setdefault("metadata", {})
                name = key(obj)
                if name:
                    seen.mark(name)
        except Exception:
            time.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def summary(label: str, values: list[float], timeouts: int = 0) -> tuple[float, float]:
    p50, p99 = pct(values, 0.5) * 1000, pct(values, 0.99) * 1000
    extra = f", {timeouts} timed out" if timeouts else ""
    print(f"  {label:<58} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   (n={len(values)}{extra})")
    sys.stdout.flush()
    return p50, p99


def api_counts(cluster: Any) -> dict[tuple[str, str], float]:
    """apiserver_request_total summed by (verb, resource) for the resources the operator touches."""
    result = cluster.kubectl("get", "--raw", "/metrics")
    if result.returncode != 0:
        raise RuntimeError(f"kubectl get --raw /metrics: {result.stderr.strip()}")
    out: dict[tuple[str, str], float] = {}
    pattern = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in result.stdout.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        resource = labels.get("resource", "")
        if resource not in RESOURCES:
            continue
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = (labels.get("verb", ""), resource)
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def operator_metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def queue_depth(port: int) -> float:
    """The operator's work-queue depth (0 for an operator without the metric)."""
    try:
        return operator_metric(port, "breakeven_queue_depth")
    except OSError:
        return 0.0


def proc_usage(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds user+system) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, log: Path, interval: float, port: int, extra: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    argv = [
        sys.executable, "-m", "breakeven", "run", "--kubeconfig", str(kubeconfig),
        "--interval", str(interval), "--metrics-port", str(port), "--metrics-address",
        "127.0.0.1", "--standalone", *extra,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0,100,1000", help="plans present, comma-separated")
    parser.add_argument("--samples", type=int, default=50, help="creates timed per figure")
    parser.add_argument("--interval", type=float, default=60.0, help="the operator's --interval")
    parser.add_argument("--nodes", type=int, default=0, help="extra synthetic kwok nodes")
    parser.add_argument("--timeout", type=float, default=120.0, help="per create, seconds")
    parser.add_argument(
        "--operator-arg", action="append", default=[], help="passed to breakeven run"
    )
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    from kubernetes import client

    from e2e import running
    from e2e.cluster import LocalCluster
    from e2e.nodes import apply_nodes, synthetic_cluster
    from e2e.proc import free_port

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="breakeven-bench-"))
    print(
        f"control-plane benchmark: levels {levels}, {args.samples} samples, "
        f"interval {args.interval}s, {os.cpu_count()} CPUs, workdir {workdir}"
    )
    sys.stdout.flush()
    stop = threading.Event()
    with LocalCluster(workdir / "cluster") as cluster, cluster.api_client() as k8s:
        if args.nodes:
            started = time.monotonic()
            apply_nodes(k8s, synthetic_cluster(args.nodes), parallelism=8)
            print(f"  {args.nodes} synthetic nodes applied in {time.monotonic() - started:.0f}s")
        running.install(k8s)
        kubeconfig = running.service_account_kubeconfig(
            k8s, cluster.kubeconfig, workdir / "operator.kubeconfig"
        )
        core, apps, custom = (
            client.CoreV1Api(k8s),
            client.AppsV1Api(k8s),
            client.CustomObjectsApi(k8s),
        )
        with contextlib.suppress(client.ApiException):
            core.create_namespace({"metadata": {"name": NAMESPACE}})

        # Watches, each on its own client (a client is not thread-safe for concurrent streams).
        floor, lws_sts, child, status = Seen(), Seen(), Seen(), Seen()

        def labelled(label: str) -> Callable[[dict[str, Any]], str | None]:
            return lambda o: ((o.get("metadata") or {}).get("labels") or {}).get(label)

        def has_status(o: dict[str, Any]) -> str | None:
            st = o.get("status") or {}
            return o["metadata"]["name"] if st.get("phase") or st.get("conditions") else None

        def start_watch(
            make: Callable[[Any], Callable[..., Any]],
            seen: Seen,
            key: Callable[[dict[str, Any]], str | None],
            **kw: Any,
        ) -> None:
            c = cluster.api_client()
            threading.Thread(
                target=watch_forever, args=(make(c), seen, key, stop), kwargs=kw, daemon=True
            ).start()

        def name_of(o: dict[str, Any]) -> str | None:
            return str(o["metadata"]["name"])

        def plans(c: Any) -> Callable[..., Any]:
            def call(**kw: Any) -> Any:
                return client.CustomObjectsApi(c).list_namespaced_custom_object(
                    "breakeven.dev", "v1alpha1", NAMESPACE, "servingplans", **kw
                )

            return call

        start_watch(lambda c: client.AppsV1Api(c).list_namespaced_deployment, floor,
                    name_of, namespace=NAMESPACE, label_selector="bench-floor=1")  # fmt: skip
        start_watch(lambda c: client.AppsV1Api(c).list_namespaced_stateful_set, lws_sts,
                    labelled("leaderworkerset.sigs.k8s.io/name"), namespace=NAMESPACE)  # fmt: skip
        start_watch(lambda c: client.AppsV1Api(c).list_namespaced_deployment, child,
                    labelled(LABEL), namespace=NAMESPACE, label_selector=LABEL)  # fmt: skip
        start_watch(plans, status, has_status)
        time.sleep(2)

        # The API server's floor and the LWS controller, before the operator starts.
        lat = []
        for i in range(args.samples):
            name = f"floor-{i}"
            t0 = time.monotonic()
            apps.create_namespaced_deployment(NAMESPACE, deployment_body(name))
            t1 = floor.wait(name, args.timeout)
            if t1 is not None:
                lat.append(t1 - t0)
        floor_p = summary("API server: Deployment create -> seen on a watch", lat)
        lat, missed = [], 0
        for i in range(args.samples):
            name = f"lws-{i}"
            t0 = time.monotonic()
            custom.create_namespaced_custom_object(
                "leaderworkerset.x-k8s.io", "v1", NAMESPACE, "leaderworkersets", lws_body(name)
            )
            t1 = lws_sts.wait(name, args.timeout)
            if t1 is None:
                missed += 1
            else:
                lat.append(t1 - t0)
        lws_p = summary("LWS controller: LeaderWorkerSet create -> StatefulSet", lat, missed)

        port = free_port()
        with operator_process(
            kubeconfig, workdir / "operator.log", args.interval, port, args.operator_arg
        ) as op:
            # Ready when the first plan gets its status.
            t0 = time.monotonic()
            create_plan = lambda name: custom.create_namespaced_custom_object(  # noqa: E731
                "breakeven.dev", "v1alpha1", NAMESPACE, "servingplans", plan_body(name)
            )
            create_plan("warmup")
            if status.wait("warmup", 180) is None:
                print(
                    "  the operator never wrote a status; its log:",
                    (workdir / "operator.log").read_text()[-3000:],
                )
                return 1
            print(f"  operator up: first status {time.monotonic() - t0:.1f}s after start")
            present = 1
            results = []
            for level in levels:
                if level > present:
                    names = [f"fill-{i}" for i in range(present, level)]
                    t0 = time.monotonic()
                    with ThreadPoolExecutor(16) as pool:
                        list(pool.map(create_plan, names))
                    created = time.monotonic() - t0
                    wanted = set(names)
                    deadline = time.monotonic() + max(args.timeout, len(names) * 0.5)
                    while child.count(wanted) < len(wanted) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    last = max((child.at.get(n, 0.0) for n in names), default=0.0)
                    done = child.count(wanted)
                    rate = done / (last - t0) if last > t0 else float("nan")
                    print(
                        f"  burst of {len(names)} plans: created at {len(names) / created:.0f}/s; "
                        f"{done} got their child in {last - t0:.1f}s: {rate:.1f} plans/s"
                    )
                    present = level
                    # let the status writes of the burst settle before timing single creates
                    deadline = time.monotonic() + max(args.timeout, len(names) * 0.5)
                    while status.count(wanted) < len(wanted) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    # ... and the operator's queue drain (where it has one), so that the single
                    # creates below are timed behind no backlog of the burst
                    # (every 2 s: a scrape of /metrics costs the operator CPU, more with more plans)
                    while time.monotonic() < deadline and queue_depth(port) > 0:
                        time.sleep(2.0)
                    waited = time.monotonic() - t0
                    print(
                        f"    {status.count(wanted)} had a status, queue "
                        f"{queue_depth(port):.0f}, {waited:.0f}s after the first create"
                    )
                c_lat, s_lat, missed = [], [], 0
                for i in range(args.samples):
                    name = f"probe-{level}-{i}"
                    t0 = time.monotonic()
                    create_plan(name)
                    t1 = child.wait(name, args.timeout)
                    t2 = status.wait(name, args.timeout)
                    if t1 is None or t2 is None:
                        missed += 1
                        continue
                    c_lat.append(t1 - t0)
                    s_lat.append(t2 - t0)
                present += args.samples
                cp = summary(f"{level} plans present: plan create -> child workload", c_lat, missed)
                sp = summary(f"{level} plans present: plan create -> status", s_lat, missed)
                results.append((level, cp, sp))
            # One quiet sweep: every plan re-evaluated once.
            time.sleep(min(args.interval, 10))
            before_counts, (_, cpu0) = api_counts(cluster), proc_usage(op.pid)
            rec0 = operator_metric(port, "breakeven_reconcile_duration_seconds_count")
            own0 = operator_metric(port, "breakeven_api_requests_total")
            time.sleep(args.interval)
            after_counts, (rss1, cpu1) = api_counts(cluster), proc_usage(op.pid)
            rec1 = operator_metric(port, "breakeven_reconcile_duration_seconds_count")
            own1 = operator_metric(port, "breakeven_api_requests_total")
            reconciles = rec1 - rec0
            per = max(reconciles, 1)
            print(
                f"  one sweep ({args.interval:.0f}s) over {present} plans: {reconciles:.0f} "
                f"reconciles, {cpu1 - cpu0:.1f} CPU s, RSS {rss1:.0f} MB"
            )
            total = 0.0
            for key in sorted(after_counts):
                delta = after_counts[key] - before_counts.get(key, 0.0)
                if delta:
                    total += delta
                    print(f"    {key[0]:<7} {key[1]:<28} {delta:7.0f}  ({delta / per:.2f} each)")
            print(f"    API server, these resources: {total:.0f} ({total / per:.2f} per reconcile)")
            print(
                f"    the operator's own count (breakeven_api_requests_total): {own1 - own0:.0f} "
                f"({(own1 - own0) / per:.2f} per reconcile; 0 where the metric does not exist)"
            )
            for level, cp, _ in results:
                print(
                    f"  ratio at {level} plans: create->child p99 / LWS p99 = "
                    f"{cp[1] / lws_p[1]:.1f}, / API floor p99 = {cp[1] / floor_p[1]:.1f}"
                )
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
