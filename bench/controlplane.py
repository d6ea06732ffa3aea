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
- with `--burst-reference N`, before the operator starts: N Deployments created at once until
  each is seen on a watch, and N LeaderWorkerSets until each one's StatefulSet is: the rates
  the API server and the LWS controller reach for a burst on this machine;
- the operator's RSS and CPU seconds over one quiet interval (one sweep: every plan
  re-evaluated once), and the API requests it made in that sweep by verb and resource (the API
  server's apiserver_request_total, deltas; the operator is the only client that GETs or LISTs
  these resources by name or selector) per reconcile (the operator's own reconcile count).

`--variant kopf` runs bench/kopf_operator.py instead of `breakeven run`: the same reconcile,
queued by kopf's per-object handlers and timers instead of shell/runtime.py's Scheduler.

Plain figures on stdout; everything it started is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
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
BURST_LABEL = "bench-burst"
VARIANTS = ("queue", "kopf")
RESOURCES = ("servingplans", "deployments", "leaderworkersets", "pods", "services", "events")


def plan_body(name: str, traffic: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL},
            "mode": "Dense",
            "operations": {"platformTeam": "Dedicated"},
        },
    }
    if traffic:  # its own series (served_model), as each plan's vLLM pods would export
        body["spec"]["traffic"] = {"selector": {"model_name": served_model(name)}}
    return body


def served_model(plan: str) -> str:
    """The model_name label of a plan's traffic series in the benchmark's Prometheus."""
    return f"bench/{plan}"


def deployment_body(name: str, burst: bool = False) -> dict[str, Any]:
    labels = {"bench": name}
    meta_labels = {"bench-floor": "1", **({BURST_LABEL: "1"} if burst else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": meta_labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def lws_body(name: str, burst: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            **({"labels": {BURST_LABEL: "1"}} if burst else {}),
        },
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


def burst_rate(
    started: float, seen: dict[str, float], names: list[str]
) -> tuple[int, float, float]:
    """A burst from `started` (monotonic): how many of `names` were seen (`seen`: name -> first
    seen), the seconds until the last of them was, and their rate over that span (NaN when
    none was seen after `started`)."""
    times = [seen[n] for n in names if n in seen]
    last = max(times, default=started)
    span = last - started
    rate = len(times) / span if span > 0 else float("nan")
    return len(times), span, rate


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


def prometheus_requests(url: str) -> dict[str, float]:
    """Prometheus's own count of HTTP API requests by handler (prometheus_http_requests_total),
    for the query handlers the operator calls."""
    import urllib.request

    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    pattern = re.compile(r"^prometheus_http_requests_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            handler = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))).get("handler", "")
            if handler.startswith("/api/v1/query"):
                out[handler] = out.get(handler, 0.0) + float(m.group(2))
    return out


def peak_rss(pid: int) -> float:
    """The process's peak RSS so far (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load() -> str:
    """The machine's load averages (1, 5, 15 min): other work shares its CPUs."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_nodes_ready(k8s: Any, names: set[str], timeout: float) -> int:
    """Wait until every Node in `names` is Ready (kwok's node-initialize stage); the count Ready.
    Lists Nodes raw (json), which is much cheaper than the client's models at 5,000 nodes."""
    import json

    from kubernetes import client

    core = client.CoreV1Api(k8s)
    deadline = time.monotonic() + timeout
    ready = 0
    while True:
        resp = core.list_node(_preload_content=False)
        items = json.loads(resp.data)["items"]
        ready = sum(
            1
            for n in items
            if n["metadata"]["name"] in names
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        )
        if ready >= len(names) or time.monotonic() > deadline:
            return ready
        time.sleep(5)


def measure_sweep(
    cluster: Any, port: int, pid: int, interval: float, plans: int, prom_url: str | None
) -> dict[str, float]:
    """One quiet interval (every plan re-evaluated once): reconciles, the operator's CPU seconds
    and RSS, the API requests by verb and resource (the API server's count), the Prometheus
    query requests (Prometheus's own count, and the operator's reads); printed and returned."""
    before_counts, (_, cpu0) = api_counts(cluster), proc_usage(pid)
    rec0 = operator_metric(port, "breakeven_reconcile_duration_seconds_count")
    own0 = operator_metric(port, "breakeven_api_requests_total")
    reads0 = operator_metric(port, "breakeven_traffic_read_duration_seconds_count")
    prom0 = prometheus_requests(prom_url) if prom_url else {}
    time.sleep(interval)
    after_counts, (rss1, cpu1) = api_counts(cluster), proc_usage(pid)
    rec1 = operator_metric(port, "breakeven_reconcile_duration_seconds_count")
    own1 = operator_metric(port, "breakeven_api_requests_total")
    reads1 = operator_metric(port, "breakeven_traffic_read_duration_seconds_count")
    prom1 = prometheus_requests(prom_url) if prom_url else {}
    reconciles = rec1 - rec0
    per = max(reconciles, 1)
    print(
        f"  one sweep ({interval:.0f}s) over {plans} plans: {reconciles:.0f} "
        f"reconciles, {cpu1 - cpu0:.1f} CPU s, RSS {rss1:.0f} MB (peak so far "
        f"{peak_rss(pid):.0f} MB)"
    )
    total = lists = 0.0
    for key in sorted(after_counts):
        delta = after_counts[key] - before_counts.get(key, 0.0)
        if delta:
            total += delta
            lists += delta if key[0] == "LIST" else 0.0
            print(f"    {key[0]:<7} {key[1]:<28} {delta:7.0f}  ({delta / per:.2f} each)")
    print(f"    API server, these resources: {total:.0f} ({total / per:.2f} per reconcile)")
    print(
        f"    the operator's own count (breakeven_api_requests_total): {own1 - own0:.0f} "
        f"({(own1 - own0) / per:.2f} per reconcile; 0 where the metric does not exist)"
    )
    queries = 0.0
    if prom_url:
        for handler in sorted(prom1):
            delta = prom1[handler] - prom0.get(handler, 0.0)
            queries += delta
            print(f"    Prometheus {handler:<22} {delta:7.0f}")
        print(
            f"    Prometheus query requests in the sweep: {queries:.0f}, in {reads1 - reads0:.0f} "
            "batched reads (breakeven_traffic_read_duration_seconds_count)"
        )
    sys.stdout.flush()
    return {
        "plans": plans, "reconciles": reconciles, "cpu_s": cpu1 - cpu0, "rss_mb": rss1,
        "api_requests": total, "lists": lists, "prometheus_queries": queries,
        "reads": reads1 - reads0,
    }  # fmt: skip


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path,
    log: Path,
    interval: float,
    port: int,
    extra: list[str],
    heap_report: Path | None = None,
    tracemalloc_frames: int = 0,
    variant: str = "queue",
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    # bench/heapdump.py: the same `breakeven run`, with a memory report on SIGUSR1
    runner = ["-m", "breakeven"]
    if variant == "kopf":  # bench/kopf_operator.py: queued by kopf's per-object handlers
        runner = [str(ROOT / "bench" / "kopf_operator.py")]
    if heap_report is not None:
        runner = [str(ROOT / "bench" / "heapdump.py")]
        env["BREAKEVEN_HEAP_REPORT"] = str(heap_report)
        if tracemalloc_frames:
            env["PYTHONTRACEMALLOC"] = str(tracemalloc_frames)
    argv = [
        sys.executable, *runner, "run", "--kubeconfig", str(kubeconfig),
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


def grant_plan_patch(k8s: Any) -> None:
    """bench/kopf_operator.py writes kopf's finalizer and diff-base annotation to each plan:
    `patch` on servingplans, which the shipped RBAC (manifests/rbac.yaml) does not grant."""
    from kubernetes import client

    from e2e import running

    rbac = client.RbacAuthorizationV1Api(k8s)
    name = "breakeven-bench-kopf-variant"
    role = {
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["breakeven.dev"], "resources": ["servingplans"],
                   "verbs": ["patch"]}],
    }  # fmt: skip
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": running.SERVICE_ACCOUNT,
                      "namespace": running.NAMESPACE}],
    }  # fmt: skip
    with contextlib.suppress(client.ApiException):
        rbac.create_cluster_role(role)
    with contextlib.suppress(client.ApiException):
        rbac.create_cluster_role_binding(binding)


def burst_reference(
    n: int, apps: Any, custom: Any, floor: Seen, lws_sts: Seen, timeout: float
) -> dict[str, float]:
    """The machine's ceiling for a burst, before the operator starts: `n` Deployments created at
    once (16 threads, as the plans' bursts) until each is seen on a watch (the API server's own
    rate), then `n` LeaderWorkerSets until each one's StatefulSet is (the LWS controller's);
    both deleted afterwards. Printed and returned (plans/s-comparable rates)."""
    from kubernetes import client

    out: dict[str, float] = {}
    cases = (
        ("deployments", "API server: Deployments created -> each seen on a watch", floor,
         lambda name: apps.create_namespaced_deployment(NAMESPACE, deployment_body(name, True))),
        ("leaderworkersets", "LWS controller: LeaderWorkerSets created -> each StatefulSet",
         lws_sts,
         lambda name: custom.create_namespaced_custom_object(
             "leaderworkerset.x-k8s.io", "v1", NAMESPACE, "leaderworkersets",
             lws_body(name, True))),
    )  # fmt: skip
    for kind, label, seen, create in cases:
        names = [f"burst-{kind[:3]}-{i}" for i in range(n)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, names))
        created = time.monotonic() - t0
        deadline = time.monotonic() + max(timeout, n * 0.5)
        while seen.count(set(names)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        done, span, rate = burst_rate(t0, seen.at, names)
        print(
            f"  burst reference, {label}: {n} created at {n / created:.0f}/s; {done} in "
            f"{span:.1f}s: {rate:.1f}/s  (load {load()})"
        )
        sys.stdout.flush()
        out[kind] = rate
        out[kind + "_created"] = n / created
    selector = f"{BURST_LABEL}=1"
    with contextlib.suppress(client.ApiException):
        apps.delete_collection_namespaced_deployment(NAMESPACE, label_selector=selector)
    with contextlib.suppress(client.ApiException):
        custom.delete_collection_namespaced_custom_object(
            "leaderworkerset.x-k8s.io", "v1", NAMESPACE, "leaderworkersets",
            label_selector=selector,
        )  # fmt: skip
    return out


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
    parser.add_argument(
        "--prometheus", action="store_true",
        help="a local Prometheus scraping live traffic series for every plan; the operator "
        "reads it (--prometheus-url) and the sweeps count its query requests",
    )  # fmt: skip
    parser.add_argument(
        "--sweeps", action="store_true", help="a quiet sweep after every level, not only the last"
    )
    parser.add_argument(
        "--lease-seconds", type=int, default=40,
        help="kwok's node Lease duration (renewed every quarter of it; 40 is the kubelet's)",
    )  # fmt: skip
    parser.add_argument(
        "--heap-dump", action="store_true",
        help="run the operator under bench/heapdump.py and print where its memory goes at the end",
    )  # fmt: skip
    parser.add_argument(
        "--tracemalloc", type=int, default=0,
        help="with --heap-dump: trace allocations (frames kept; slows the operator down)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", choices=VARIANTS, default="queue",
        help="queue: `breakeven run` (shell/runtime.py's Scheduler); kopf: bench/kopf_operator.py "
        "(the same reconcile queued by kopf's per-object handlers and timers)",
    )  # fmt: skip
    parser.add_argument(
        "--burst-reference", type=int, default=0, metavar="N",
        help="before the operator starts: N Deployments created at once until each is seen on a "
        "watch, and N LeaderWorkerSets until each StatefulSet is (the machine's burst rates); "
        "their deletion and garbage collection then overlap the operator's first figures",
    )  # fmt: skip
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    if args.variant == "kopf" and args.heap_dump:
        parser.error("--heap-dump runs `breakeven run`; not with --variant kopf")
    if args.burst_reference < 0:
        parser.error("--burst-reference must be >= 0")

    from kubernetes import client

    from e2e import running
    from e2e.cluster import LocalCluster
    from e2e.nodes import apply_nodes, synthetic_cluster
    from e2e.proc import free_port
    from e2e.prom import LocalPrometheus
    from e2e.traffic import LiveExporter, TrafficSpec

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="breakeven-bench-"))
    print(
        f"control-plane benchmark ({args.variant}): levels {levels}, {args.samples} samples, "
        f"interval {args.interval}s, {os.cpu_count()} CPUs, workdir {workdir}"
    )
    print(f"  load average at start: {load()}")
    sys.stdout.flush()
    stop = threading.Event()
    cluster_dir = workdir / "cluster"
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster(cluster_dir, node_lease_seconds=args.lease_seconds)
        )
        k8s = stack.enter_context(cluster.api_client())
        exporter: LiveExporter | None = None
        prom_url: str | None = None
        if args.prometheus:
            # One stream per plan (added as each plan is created), a low rate: the figure here
            # is how many requests the operator sends, not what it reads.
            exporter = stack.enter_context(LiveExporter(tick=5.0))
            prom = stack.enter_context(
                LocalPrometheus(workdir / "prometheus", live_targets=[exporter],
                                scrape_interval="15s")
            )  # fmt: skip
            prom_url = prom.url
            args.operator_arg += ["--prometheus-url", prom_url]
            print(f"  Prometheus on {prom_url}, scraping {exporter.target} every 15s")
        if args.nodes:
            started = time.monotonic()
            nodes = synthetic_cluster(args.nodes)
            apply_nodes(k8s, nodes, parallelism=16)
            applied = time.monotonic() - started
            ready = wait_nodes_ready(k8s, {n["metadata"]["name"] for n in nodes}, 120)
            print(
                f"  {args.nodes} synthetic nodes applied in {applied:.0f}s, {ready} Ready "
                f"{time.monotonic() - started:.0f}s after the first (kwok Lease "
                f"{args.lease_seconds}s)"
            )
        running.install(k8s)
        if args.variant == "kopf":
            grant_plan_patch(k8s)
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
        if args.burst_reference:
            burst_reference(args.burst_reference, apps, custom, floor, lws_sts, args.timeout)

        port = free_port()
        heap_report = workdir / "heap-report.txt" if args.heap_dump else None
        with operator_process(
            kubeconfig, workdir / "operator.log", args.interval, port, args.operator_arg,
            heap_report, args.tracemalloc, args.variant,
        ) as op:  # fmt: skip
            # Ready when the first plan gets its status.
            t0 = time.monotonic()

            def create_plan(name: str) -> Any:
                if exporter is not None:
                    spec = TrafficSpec(
                        served_model(name),
                        NAMESPACE,
                        profile="no-expert-telemetry",
                        base_rate=200.0,
                        gpus=1,
                    )
                    exporter.add(spec)  # fmt: skip
                return custom.create_namespaced_custom_object(
                    "breakeven.dev", "v1alpha1", NAMESPACE, "servingplans",
                    plan_body(name, traffic=exporter is not None),
                )  # fmt: skip

            create_plan("warmup")
            # every Node is listed (the informers) before any reconcile: longer with many nodes
            if status.wait("warmup", 180 + 0.1 * args.nodes) is None:
                print(
                    "  the operator never wrote a status; its log:",
                    (workdir / "operator.log").read_text()[-3000:],
                )
                return 1
            print(
                f"  operator up: first status {time.monotonic() - t0:.1f}s after start; "
                f"RSS {proc_usage(op.pid)[0]:.0f} MB, peak {peak_rss(op.pid):.0f} MB"
            )
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
                    done, span, rate = burst_rate(t0, child.at, names)
                    print(
                        f"  burst of {len(names)} plans: created at {len(names) / created:.0f}/s; "
                        f"{done} got their child in {span:.1f}s: {rate:.1f} plans/s"
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
                if args.sweeps and level != levels[-1]:
                    time.sleep(min(args.interval, 10))
                    measure_sweep(cluster, port, op.pid, args.interval, present, prom_url)
            # One quiet sweep: every plan re-evaluated once.
            time.sleep(min(args.interval, 10))
            print(f"  load average before the sweep: {load()}")
            measure_sweep(cluster, port, op.pid, args.interval, present, prom_url)
            print(f"  load average after the sweep: {load()}")
            if heap_report is not None:
                os.kill(op.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 120
                while not heap_report.exists() and time.monotonic() < deadline:
                    time.sleep(1)
                print("  where the operator's memory goes (bench/heapdump.py):")
                print(heap_report.read_text() if heap_report.exists() else "    (no report)")
            for level, cp, _ in results:
                print(
                    f"  ratio at {level} plans: create->child p99 / LWS p99 = "
                    f"{cp[1] / lws_p[1]:.1f}, / API floor p99 = {cp[1] / floor_p[1]:.1f}"
                )
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
