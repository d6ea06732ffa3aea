"""A real local Kubernetes control plane for Breakeven's integration and e2e tests.

No container engine runs here, so kind and k3d are out. kwokctl's binary runtime
(`kwokctl create cluster --runtime binary`, sigs.k8s.io/kwok pkg/kwokctl/runtime/binary) starts
etcd, kube-apiserver (TLS, client certificates, RBAC, service-account keys),
kube-controller-manager, kube-scheduler and kwok (fake nodes, pods that go Running) as local
processes on 127.0.0.1, from the binaries e2e/controlplane/build.sh builds from pinned Go modules;
it makes the certificates and stops its processes by PID (`kwokctl delete cluster`). This module
adds what kwokctl cannot: the LeaderWorkerSet controller out of cluster with its webhooks (serving
cert signed by kwokctl's CA) and the fake GPU node pools. Its own PIDs are recorded in the work
directory and stopped by PID.

    python -m e2e.cluster up [--workdir DIR]     # last line: export KUBECONFIG=...
    python -m e2e.cluster status|down [--workdir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from e2e import pki
from e2e.nodes import DEFAULT_DESCRIPTION, KWOK_ANNOTATION, apply_nodes, node_objects
from e2e.proc import (
    Managed,
    ProcessGroup,
    StartError,
    free_port,
    log_tail,
    pid_alive,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "e2e" / "controlplane" / "build.sh"
DEFAULT_WORKDIR = Path(os.environ.get("BREAKEVEN_CLUSTER_DIR", "/tmp/breakeven-cluster"))
SERVICE_CIDR = "10.0.0.0/16"  # room for a Service per plan at 1,000+ plans (bench)
LWS_NAMESPACE = "lws-system"

KWOK_STAGES = (
    "node-initialize",
    "node-heartbeat-with-lease",
    "pod-ready",
    "pod-complete",
    "pod-delete",
)
LWS_CRDS = ("leaderworkerset-crd", "disaggregatedset-crd")
# Gateway API's HTTPRoute CRD (standard channel), copied from its Go module by build.sh; installed
# only by the tests that need it (install_gateway_api), so other tests see no HTTPRoute served.
GATEWAY_API_CRDS = ("httproutes-crd",)


def _log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def pinned_versions(build_script: Path = BUILD_SCRIPT) -> dict[str, str]:
    """The component versions pinned in build.sh (the one place they are written)."""
    text = build_script.read_text()
    found = dict(re.findall(r"^(KUBE|ETCD|KWOK|LWS)_VERSION=(v[0-9][^\s]*)$", text, re.M))
    missing = {"KUBE", "ETCD", "KWOK", "LWS"} - found.keys()
    if missing:
        raise RuntimeError(f"{build_script}: no version pinned for {sorted(missing)}")
    return found


def _pinned(name: str, build_script: Path = BUILD_SCRIPT) -> str:
    """One more version pinned in build.sh (`<name>_VERSION=v...`)."""
    found = re.search(rf"^{name}_VERSION=(v[0-9][^\s]*)$", build_script.read_text(), re.M)
    if found is None:
        raise RuntimeError(f"{build_script}: no version pinned for {name}")
    return found.group(1)


def install_gateway_api(api: Any, bins: Binaries | None = None, timeout: float = 60) -> None:
    """Create Gateway API's HTTPRoute CRD (pinned, from its Go module) on a running cluster and
    wait until it is Established; an existing one is left as it is."""
    from kubernetes import client as k8s

    ext = k8s.ApiextensionsV1Api(api)
    for path in (bins or Binaries()).gateway_api_crds:
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.monotonic() + timeout
        while True:
            got = ext.read_custom_resource_definition(crd["metadata"]["name"])
            conditions = (got.status and got.status.conditions) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise StartError(f"{crd['metadata']['name']} not Established within {timeout}s")
            time.sleep(0.2)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "breakeven-e2e"
    return Path(os.environ.get("BREAKEVEN_E2E_CACHE", default))


class Binaries:
    """Paths of the cached control-plane binaries and data files, by pinned version."""

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache or cache_dir()
        v = pinned_versions()
        self.versions = v
        b = self.cache / "bin"
        self.kube_apiserver = b / f"kube-apiserver-{v['KUBE']}"
        self.kube_controller_manager = b / f"kube-controller-manager-{v['KUBE']}"
        self.kube_scheduler = b / f"kube-scheduler-{v['KUBE']}"
        self.kubectl = b / f"kubectl-{v['KUBE']}"
        self.etcd = b / f"etcd-{v['ETCD']}"
        self.kwok = b / f"kwok-{v['KWOK']}"
        self.kwokctl = b / f"kwokctl-{v['KWOK']}"
        self.lws = b / f"lws-controller-{v['LWS']}"
        data = self.cache / "data"
        self.kwok_stages = [data / f"kwok-{v['KWOK']}" / f"{s}.yaml" for s in KWOK_STAGES]
        self.lws_crds = [data / f"lws-{v['LWS']}" / f"{c}.yaml" for c in LWS_CRDS]
        gw = _pinned("GATEWAY_API")
        self.gateway_api_crds = [data / f"gateway-api-{gw}" / f"{c}.yaml" for c in GATEWAY_API_CRDS]

    def missing(self) -> list[Path]:
        paths = [
            self.kube_apiserver, self.kube_controller_manager, self.kube_scheduler, self.kubectl,
            self.etcd, self.kwok, self.kwokctl, self.lws, *self.kwok_stages, *self.lws_crds,
            *self.gateway_api_crds,
        ]  # fmt: skip
        return [p for p in paths if not p.exists()]

    def ensure(self) -> None:
        """Run build.sh (output streamed, with progress) when anything is missing."""
        missing = self.missing()
        if not missing:
            return
        _log(
            f"{len(missing)} control-plane files missing (e.g. {missing[0].name}); "
            f"running {BUILD_SCRIPT}"
        )
        if shutil.which("go") is None:
            raise StartError("the control plane binaries are not built and `go` is not on PATH")
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=sys.stderr, check=False)
        if result.returncode != 0:
            raise StartError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
        still = self.missing()
        if still:
            raise StartError(f"{BUILD_SCRIPT} ran but these are still missing: {still}")


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "breakeven-e2e",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "breakeven-e2e", "context": {"cluster": "breakeven-e2e", "user": user}}
        ],
        "current-context": "breakeven-e2e",
    }


KWOKCTL_CLUSTER = "breakeven"


def kwokctl_config(
    bins: Binaries, ports: Mapping[str, int], node_lease_seconds: int = 40
) -> list[dict[str, Any]]:
    """kwokctl's configuration for our control plane: the cached binaries, loopback only, the
    ports we picked free (kwokctl's own pick scans down from 32767 per process, a race between
    concurrent test sessions), and the flags kwokctl does not set (ComponentPatches.extraArgs).

    kwok renews each node's Lease every `node_lease_seconds` / 4 (jitter 4%), as the kubelet
    does (kwok v0.8.0 pkg/kwok/controllers/controller.go, initNodeLeaseController), and with
    the node-heartbeat-with-lease stage rewrites a node's status only every 600 to 610 s
    (kustomize/stage/node/heartbeat-with-lease; jitterDurationMilliseconds is the upper end of
    the random delay, pkg/apis/v1alpha1/stage_types.go): 40 s, the kubelet's default,
    is 10 Lease updates a second per 100 nodes, which a benchmark with thousands of nodes on a
    shared 2-CPU machine raises (bench/controlplane.py --lease-seconds). The controller-manager
    marks a node whose Lease it has not seen renewed for --node-monitor-grace-period (50 s)
    NotReady, so a longer Lease gets a grace period of the Lease's duration plus 10 s."""
    kcm_grace = (
        {"node_monitor_grace_period": f"{node_lease_seconds + 10}s"}
        if node_lease_seconds > 40
        else {}
    )

    def args(**flags: str) -> list[dict[str, str]]:
        return [{"key": k.replace("_", "-"), "value": v} for k, v in flags.items()]

    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeApiserverBinary": str(bins.kube_apiserver),
        "kubeControllerManagerBinary": str(bins.kube_controller_manager),
        "kubeSchedulerBinary": str(bins.kube_scheduler),
        "etcdBinary": str(bins.etcd),
        "kwokControllerBinary": str(bins.kwok),
        "etcdPort": ports["etcd"],
        "etcdPeerPort": ports["etcd_peer"],
        "kubeApiserverPort": ports["apiserver"],
        "kubeControllerManagerPort": ports["kcm"],
        "kubeSchedulerPort": ports["scheduler"],
        "kwokControllerPort": ports["kwok"],
        "kubeAuthorization": True,
        # kwokctl multiplies node lease and node-monitor periods by 5 unless told 1
        # (pkg/kwokctl/cmd/create/cluster/cluster.go); 1 keeps Kubernetes' own timings.
        "heartbeatFactor": 1,
        "nodeLeaseDurationSeconds": node_lease_seconds,
    }
    patches = [
        {"name": "etcd", "extraArgs": args(unsafe_no_fsync="true", log_level="warn")},
        {"name": "kube-apiserver", "extraArgs": args(
            advertise_address="127.0.0.1", service_cluster_ip_range=SERVICE_CIDR,
            endpoint_reconciler_type="none", profiling="false")},
        {"name": "kube-controller-manager", "extraArgs": args(
            service_cluster_ip_range=SERVICE_CIDR, use_service_account_credentials="true",
            controllers="*,-nodeipam", enable_garbage_collector="true",
            kube_api_qps="200", kube_api_burst="400", **kcm_grace,
            # One instance: with leader election it exits ("leaderelection lost") once the API
            # server is away for longer than its renew deadline, and nothing restarts it.
            leader_elect="false")},
        {"name": "kube-scheduler", "extraArgs": args(leader_elect="false")},
        {"name": "kwok-controller", "extraArgs": args(
            manage_all_nodes="false",
            manage_nodes_with_annotation_selector=f"{KWOK_ANNOTATION}=fake",
            node_ip="127.0.0.1")},
    ]  # fmt: skip
    return [
        {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
            "componentsPatches": patches,
        }
    ]


def _webhook_configurations(base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """LWS's webhook configurations (config/webhook in sigs.k8s.io/lws), pointed at a local URL."""
    ca = base64.b64encode(ca_bundle).decode()
    lws_selector = {
        "matchExpressions": [{"key": "leaderworkerset.sigs.k8s.io/name", "operator": "Exists"}]
    }

    def hook(
        name: str,
        path: str,
        group: str,
        resource: str,
        ops: Sequence[str],
        selector: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": f"{base_url}{path}", "caBundle": ca},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "rules": [
                {
                    "apiGroups": [group],
                    "apiVersions": ["v1"],
                    "operations": list(ops),
                    "resources": [resource],
                }
            ],
        }
        if selector:
            entry["objectSelector"] = selector
        return entry

    lws = "leaderworkerset.x-k8s.io"
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "lws-mutating-webhook-configuration"},
        "webhooks": [
            hook("mleaderworkerset.kb.io", "/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
                 lws, "leaderworkersets", ["CREATE", "UPDATE"]),
            hook("mpod.kb.io", "/mutate--v1-pod", "", "pods", ["CREATE"], lws_selector),
        ],
    }  # fmt: skip
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "lws-validating-webhook-configuration"},
        "webhooks": [
            hook("vleaderworkerset.kb.io", "/validate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
                 lws, "leaderworkersets", ["CREATE", "UPDATE"]),
            hook("vpod.kb.io", "/validate--v1-pod", "", "pods", ["CREATE", "UPDATE"], lws_selector),
            hook("vdisaggregatedset.kb.io",
                 "/validate-disaggregatedset-x-k8s-io-v1-disaggregatedset",
                 "disaggregatedset.x-k8s.io", "disaggregatedsets", ["CREATE", "UPDATE"]),
        ],
    }  # fmt: skip
    return [mutating, validating]


_PROBE_LWS = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1",
    "kind": "LeaderWorkerSet",
    "metadata": {"name": "webhook-probe", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "leaderWorkerTemplate": {
            "size": 1,
            "workerTemplate": {"spec": {"containers": [{"name": "c", "image": "probe"}]}},
        },
    },
}


class LocalCluster:
    """The local control plane in `workdir`: use as a context manager, or start()/stop().

    `kubeconfig` is an admin (system:masters) kubeconfig; `api_client()` gives a kubernetes client.
    Node pools from `node_pools` (a YAML path, a pool-file name or a mapping; None for no nodes) are
    applied at start and must become Ready.
    """

    def __init__(
        self,
        workdir: str | Path = DEFAULT_WORKDIR,
        node_pools: str | Path | Mapping[str, Any] | None = DEFAULT_DESCRIPTION,
        timeout: float = 120.0,
        node_lease_seconds: int = 40,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.node_lease_seconds = node_lease_seconds
        self.node_pools = node_pools
        self.timeout = timeout
        self.bins = Binaries()
        self.group = ProcessGroup(self.workdir)
        self.kwok_dir = self.workdir / "kwok"  # kwokctl's KWOK_WORKDIR
        self.pki_dir = self.kwok_dir / "clusters" / KWOKCTL_CLUSTER / "pki"  # kwokctl's CA
        self.kubeconfig = self.workdir / "kubeconfig"
        self.ports: dict[str, int] = {}

    # -- public API ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient for the admin kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def kubectl(
        self, *args: str, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this cluster (argument list, no shell)."""
        argv = [str(self.bins.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        return subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False)

    def start(self) -> LocalCluster:
        existing = ProcessGroup.load(self.workdir)
        if any(p.alive() for p in existing.procs):
            raise StartError(
                f"a cluster already runs from {self.workdir}; stop it first "
                f"(python -m e2e.cluster down --workdir {self.workdir})"
            )
        self.bins.ensure()
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        _log(f"control plane ready in {time.monotonic() - started:.1f}s ({self.server})")
        return self

    def stop(self) -> None:
        stopped = self.group.stop_all() + _kwokctl_delete(self.workdir, self.bins)
        if stopped:
            _log(f"stopped {', '.join(stopped)}")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start-up -----------------------------------------------------------------------------

    def _start(self) -> None:
        wd = self.workdir
        wd.mkdir(parents=True, exist_ok=True)
        for stale in ("kwok", "logs", "lws-certs"):
            shutil.rmtree(wd / stale, ignore_errors=True)
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok",
                         "lws_webhook", "lws_health")
        }  # fmt: skip
        (wd / "ports.json").write_text(json.dumps(self.ports, indent=1))
        self._kwokctl_create()
        ca = pki.KeyPair(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        admin = pki.KeyPair(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        self.kubeconfig.write_text(
            yaml.safe_dump(_kubeconfig(self.server, ca.cert, admin.cert, admin.key, "admin"))
        )
        self.kubeconfig.chmod(0o600)
        webhook = pki.issue(
            ca, wd / "lws-certs", "tls", "lws-webhook", dns_names=("localhost",),
            ip_addresses=("127.0.0.1",), server=True,
        )  # fmt: skip
        self._install_lws(ca)
        lws = self._start_lws(webhook, [])
        watch = [lws]
        self._wait_webhook(watch)
        self._wait_scheduler(watch)
        self._apply_node_pools(watch)

    def _kwokctl_create(self) -> None:
        """`kwokctl create cluster`, waiting until it reports the cluster ready."""
        v = self.bins.versions
        _log(f"kwokctl {v['KWOK']}: etcd {v['ETCD']}, kube-apiserver {v['KUBE']} on "
             f"{self.server}, controller-manager, scheduler, kwok")  # fmt: skip
        config = self.workdir / "kwokctl.yaml"
        docs = [*kwokctl_config(self.bins, self.ports, self.node_lease_seconds)]
        # Our stages (pod-ready, pod-complete, ...) replace kwokctl's defaults.
        stages = [d for f in self.bins.kwok_stages for d in yaml.safe_load_all(f.read_text()) if d]
        config.write_text(yaml.safe_dump_all([*docs, *stages]))
        self.group.logdir.mkdir(parents=True, exist_ok=True)
        log = self.group.logdir / "kwokctl.log"
        argv = [
            str(self.bins.kwokctl), "--config", str(config), "create", "cluster",
            "--name", KWOKCTL_CLUSTER, "--kubeconfig", str(self.kwok_dir / "kubeconfig"),
            "--heartbeat-factor=1", "--wait", f"{int(self.timeout)}s",
        ]  # fmt: skip
        with log.open("ab") as out:
            result = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, env=_kwok_env(self.workdir),
                cwd=self.workdir, timeout=self.timeout + 30, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            logs = self.kwok_dir / "clusters" / KWOKCTL_CLUSTER / "logs"
            tails = "".join(
                f"\n--- {p.name}\n{log_tail(p, 15)}" for p in sorted(logs.glob("*.log"))
            )
            raise StartError(
                f"kwokctl create cluster failed (exit {result.returncode}):\n"
                f"{log_tail(log, 20)}{tails}"
            )

    def _wait_scheduler(self, watch: list[Managed]) -> None:
        def healthy() -> bool:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # its serving cert is self-signed, on loopback
            url = f"https://127.0.0.1:{self.ports['scheduler']}/healthz"
            with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
                return bool(r.status == 200)

        wait_until("kube-scheduler /healthz", healthy, self.timeout, watch)

    def _install_lws(self, ca: pki.KeyPair) -> None:
        _log("installing the LeaderWorkerSet CRDs (server-side apply)")
        for crd in self.bins.lws_crds:
            r = self.kubectl("apply", "--server-side", "--force-conflicts",
                             "--field-manager=breakeven-e2e", "-f", str(crd))  # fmt: skip
            if r.returncode != 0:
                raise StartError(f"applying {crd.name} failed: {r.stderr.strip()}")
        # kubectl wait fails at once ("status.conditions accessor error") when it reads a CRD
        # whose status has no conditions yet, right after the apply: try again until the deadline.
        deadline = time.monotonic() + 60
        while True:
            r = self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                             "crd/leaderworkersets.leaderworkerset.x-k8s.io",
                             "crd/disaggregatedsets.disaggregatedset.x-k8s.io")  # fmt: skip
            if r.returncode == 0 or "accessor error" not in r.stderr:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if r.returncode != 0:
            raise StartError(f"LWS CRDs not established: {r.stderr.strip()}")
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LWS_NAMESPACE}}
        url = f"https://127.0.0.1:{self.ports['lws_webhook']}"
        docs = [ns, *_webhook_configurations(url, ca.cert.read_bytes())]
        manifest = self.workdir / "lws-webhooks.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        r = self.kubectl("apply", "--server-side", "--force-conflicts",
                         "--field-manager=breakeven-e2e", "-f", str(manifest))  # fmt: skip
        if r.returncode != 0:
            raise StartError(f"registering the LWS webhooks failed: {r.stderr.strip()}")

    def _start_lws(self, webhook: pki.KeyPair, watch: list[Managed]) -> Managed:
        config = {
            "apiVersion": "config.lws.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {
                "host": "127.0.0.1",
                "port": self.ports["lws_webhook"],
                "certDir": str(webhook.cert.parent),
            },
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.ports['lws_health']}"},
        }
        path = self.workdir / "lws-config.yaml"
        path.write_text(yaml.safe_dump(config))
        _log(f"starting the LWS controller {self.bins.versions['LWS']} "
             f"(webhooks on 127.0.0.1:{self.ports['lws_webhook']})")  # fmt: skip
        return self.group.start("lws-controller", [
            str(self.bins.lws), f"--config={path}", f"--kubeconfig={self.kubeconfig}",
            "--zap-log-level=info",
        ])  # fmt: skip

    def _wait_webhook(self, watch: list[Managed]) -> None:
        probe = self.workdir / "webhook-probe.yaml"
        probe.write_text(yaml.safe_dump(_PROBE_LWS))

        def answers() -> bool:
            r = self.kubectl("create", "--dry-run=server", "-o", "name", "-f", str(probe))
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip())
            return True

        wait_until("the LWS webhooks to answer (server dry-run of a LeaderWorkerSet)", answers,
                   self.timeout, watch, interval=0.5)  # fmt: skip

    def _apply_node_pools(self, watch: list[Managed]) -> None:
        if self.node_pools is None:
            return
        nodes = node_objects(self.node_pools)
        _log(f"creating {len(nodes)} fake nodes")
        with self.api_client() as client:
            apply_nodes(client, nodes)
        names = [n["metadata"]["name"] for n in nodes]

        def all_ready() -> bool:
            from e2e.nodes import ready_node_names

            with self.api_client() as client:
                return set(names) <= set(ready_node_names(client))

        wait_until(f"{len(names)} fake nodes to be Ready (kwok)", all_ready, self.timeout, watch,
                   interval=0.5)  # fmt: skip


def _kwok_env(workdir: Path) -> dict[str, str]:
    """kwokctl keeps everything under KWOK_WORKDIR: here, inside our work directory."""
    return {**os.environ, "KWOK_WORKDIR": str(workdir / "kwok")}


def _kwokctl_pids(workdir: Path) -> list[tuple[str, int]]:
    """(component, pid) of the processes kwokctl recorded (clusters/<name>/pids/<component>.pid)."""
    found = []
    for path in sorted((workdir / "kwok" / "clusters" / KWOKCTL_CLUSTER / "pids").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            found.append((path.stem, int(path.read_text().strip())))
    return found


def _kwokctl_delete(workdir: Path, bins: Binaries | None = None) -> list[str]:
    """`kwokctl delete cluster` (it stops its processes by PID); the names that were running."""
    if not (workdir / "kwok" / "clusters" / KWOKCTL_CLUSTER).exists():
        return []
    running = [name for name, pid in _kwokctl_pids(workdir) if pid_alive(pid)]
    kwokctl = (bins or Binaries()).kwokctl
    argv = [str(kwokctl), "delete", "cluster", "--name", KWOKCTL_CLUSTER,
            "--kubeconfig", str(workdir / "kwok" / "kubeconfig")]  # fmt: skip
    result = subprocess.run(
        argv, env=_kwok_env(workdir), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise StartError(f"kwokctl delete cluster failed: {result.stdout}{result.stderr}")
    return running


def status(workdir: Path) -> list[tuple[str, int, bool]]:
    """(name, pid, running) of every process started for `workdir` (kwokctl's and ours)."""
    ours = [(p.name, p.pid, pid_alive(p.pid, p.exe)) for p in ProcessGroup.load(workdir).procs]
    kwok = [(name, pid, pid_alive(pid)) for name, pid in _kwokctl_pids(workdir)]
    return kwok + ours


def down(workdir: Path) -> list[str]:
    """Stop, by PID, every process recorded in `workdir`, then kwokctl's cluster."""
    return ProcessGroup.load(workdir).stop_all() + _kwokctl_delete(workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--nodes",
        default=str(DEFAULT_DESCRIPTION),
        help="node-pool YAML (path or name in e2e/nodepools), 'none' for no nodes",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.command == "down":
        stopped = down(workdir)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    if args.command == "status":
        rows = status(workdir)
        if not rows:
            print(f"no cluster recorded in {workdir}")
            return 1
        for name, pid, running in rows:
            print(f"{name:<24} pid {pid:<8} {'running' if running else 'NOT running'}")
        return 0 if all(r for _, _, r in rows) else 1
    nodes = None if args.nodes == "none" else args.nodes
    cluster = LocalCluster(workdir, node_pools=nodes, timeout=args.timeout)
    try:
        cluster.start()
    except Exception as exc:
        print(f"cluster failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"logs: {workdir / 'logs'}; stop with: python -m e2e.cluster down --workdir {workdir}",
          file=sys.stderr)  # fmt: skip
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
