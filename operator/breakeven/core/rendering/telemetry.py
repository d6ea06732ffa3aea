"""EPLB telemetry for every MoE workload: vLLM logs its balancedness, a sidecar serves it.

No vLLM release exports expert load as a metric, so Breakeven provides it (issue 11). What this
module adds to the MoE objects `workloads.render` builds:

    ConfigMap <plan>-moe-eplb           logging.json: breakeven.core.eplb.logging_config, the
                                        dictConfig vLLM loads from VLLM_LOGGING_CONFIG_PATH
    every MoE pod template
      vllm container                    env VLLM_LOGGING_CONFIG_PATH; mounts the ConfigMap and
                                        the `eplb-log` emptyDir (vLLM writes eplb.log there)
      initContainers[eplb-exporter]     restartPolicy: Always (a native sidecar): `breakeven
                                        eplb-exporter` from the operator's image, reading
                                        eplb.log, serving /metrics on port `eplb-metrics`
      annotations                       prometheus.io/scrape, /port, /path
    PodMonitor <plan>-moe-eplb          with `Options(pod_monitor=True)`: for clusters that serve
                                        monitoring.coreos.com/v1 (the Prometheus Operator)

The pod templates are the same with or without the PodMonitor (the annotations stay): the
Prometheus Operator being installed later must not roll a serving MoE workload.

and, in workloads._eplb_args, `log_balancedness` on: `"log_balancedness": true` in
`--eplb-config` from vLLM 0.10.2, the flag `--eplb-log-balancedness` in 0.10.0-0.10.1.x
(vllm/engine/arg_utils.py of each release; the flag was a deprecated alias in 0.10.2-0.11.x and
is gone in 0.12.0).

Pure: builds dicts; no I/O, no clock.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import breakeven
from breakeven.core import api, eplb
from breakeven.core.rendering import errors

# The operator's own image runs the exporter; the release process builds and tags it with the
# package version, so the sidecar always matches the operator that rendered it.
IMAGE = f"ghcr.io/breakeven/breakeven:{breakeven.__version__}"
EXPORTER_PORT = 9481
PORT_NAME = "eplb-metrics"
CONTAINER_NAME = "eplb-exporter"
LOG_VOLUME = "eplb-log"
CONFIG_VOLUME = "eplb-logging"
LOG_DIR = "/var/log/breakeven"
LOG_FILE = f"{LOG_DIR}/eplb.log"
CONFIG_DIR = "/etc/breakeven/vllm-logging"
CONFIG_KEY = "logging.json"
CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"
# One file of 8 MiB and one backup; an EPLB line is ~150 bytes, so the pair holds ~100k steps.
LOG_SIZE_LIMIT = "64Mi"
EXPORTER_UID = 1000
SCRAPE_INTERVAL = "15s"

# What turns the balancedness log on (see the module docstring).
LOG_BALANCEDNESS_FLAG = "--eplb-log-balancedness"
EPLB_CONFIG = {"log_balancedness": True}

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Options:
    """How the telemetry is rendered. `image`: the exporter's image (the operator's own);
    `pod_monitor`: the cluster serves the PodMonitor CRD (the shell finds out), so one is
    rendered beside the workloads."""

    image: str = IMAGE
    pod_monitor: bool = False


DEFAULT = Options()


def config_map_name(workload: str) -> str:
    """`<plan>-moe-eplb`: within names.WORKLOAD_NAME_MAX, like every rendered name."""
    return f"{workload}-eplb"


def pod_monitor_name(workload: str) -> str:
    return f"{workload}-eplb"


def _console_level(plan: api.ServingPlan) -> str:
    """vLLM applies VLLM_LOGGING_LEVEL only to its default config; honour it in ours."""
    for var in plan.spec.serving.env:
        if var.name in (CONFIG_ENV, "VLLM_CONFIGURE_LOGGING"):
            if var.name == "VLLM_CONFIGURE_LOGGING" and var.value not in ("0", "false"):
                continue
            raise errors.RenderError(
                f"spec.serving.env: {var.name} is set by Breakeven on MoE workloads (its EPLB "
                "telemetry needs vLLM's logging config); remove it"
            )
    level = next((v.value for v in plan.spec.serving.env if v.name == "VLLM_LOGGING_LEVEL"), "")
    level = level.upper() or "INFO"
    if level not in _LEVELS:
        raise errors.RenderError(
            f"spec.serving.env: VLLM_LOGGING_LEVEL {level!r} is not one of {', '.join(_LEVELS)}"
        )
    return level


def config_map(plan: api.ServingPlan, workload: str, labels: dict[str, str]) -> dict[str, Any]:
    """The ConfigMap holding vLLM's logging config. Purely computational."""
    document = eplb.logging_config(LOG_FILE, level=_console_level(plan))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(workload),
            "namespace": plan.namespace,
            "labels": labels,
        },
        "data": {CONFIG_KEY: json.dumps(document, indent=2, sort_keys=True) + "\n"},
    }


def sidecar(served_name: str, image: str) -> dict[str, Any]:
    """The exporter as a native sidecar (an init container that keeps running)."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["breakeven", "eplb-exporter"],
        # `--model=` in one argument: a served name may start with `-`; `$$`: kubelet expansion
        "args": [
            f"--log-file={LOG_FILE}",
            f"--port={EXPORTER_PORT}",
            "--address=0.0.0.0",
            f"--model={served_name.replace('$', '$$')}",
        ],
        "ports": [{"name": PORT_NAME, "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": LOG_VOLUME, "mountPath": LOG_DIR, "readOnly": True}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"memory": "128Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": PORT_NAME},
            "periodSeconds": 30,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": EXPORTER_UID,
            "runAsGroup": EXPORTER_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]]
    if obj["kind"] == "LeaderWorkerSet":
        template = obj["spec"]["leaderWorkerTemplate"]
        return [template[k] for k in ("leaderTemplate", "workerTemplate") if k in template]
    return []


def _instrument_pod(
    template: dict[str, Any], cm_name: str, served_name: str, options: Options
) -> None:
    pod = template["spec"]
    [vllm] = [c for c in pod["containers"] if c["name"] == "vllm"]
    if any(e["name"] == CONFIG_ENV for e in vllm.get("env", [])):  # pragma: no cover - guarded
        raise errors.RenderError(f"spec.serving.env: {CONFIG_ENV} is set by Breakeven")
    vllm.setdefault("env", []).append({"name": CONFIG_ENV, "value": f"{CONFIG_DIR}/{CONFIG_KEY}"})
    vllm.setdefault("volumeMounts", []).extend(
        [
            {"name": LOG_VOLUME, "mountPath": LOG_DIR},
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        ]
    )
    pod.setdefault("volumes", []).extend(
        [
            {"name": LOG_VOLUME, "emptyDir": {"sizeLimit": LOG_SIZE_LIMIT}},
            {"name": CONFIG_VOLUME, "configMap": {"name": cm_name}},
        ]
    )
    pod.setdefault("initContainers", []).append(sidecar(served_name, options.image))
    # read by the `kubernetes-pods` job of the prometheus-community `prometheus` chart
    template.setdefault("metadata", {}).setdefault("annotations", {}).update(
        {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(EXPORTER_PORT),
            "prometheus.io/path": "/metrics",
        }
    )


def pod_monitor(
    plan: api.ServingPlan, workload: str, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    """A monitoring.coreos.com/v1 PodMonitor scraping every MoE pod's exporter (fields of
    prometheus-operator's pkg/apis/monitoring/v1/podmonitor_types.go: selector,
    podMetricsEndpoints[].port/path/interval)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": pod_monitor_name(workload), "namespace": plan.namespace,
                     "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "podMetricsEndpoints": [
                {"port": PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL}
            ],
        },
    }  # fmt: skip


def instrument(
    objects: list[dict[str, Any]],
    plan: api.ServingPlan,
    workload: str,
    served_name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    options: Options = DEFAULT,
) -> list[dict[str, Any]]:
    """The MoE `objects` with EPLB telemetry: the ConfigMap first (pods mount it), every pod
    template instrumented, then the PodMonitor when asked for. `workload` names the ConfigMap
    and PodMonitor; `selector` picks the MoE pods. Purely computational: returns new dicts."""
    cm = config_map(plan, workload, labels)
    out = [cm]
    for obj in objects:
        obj = copy.deepcopy(obj)
        for template in _pod_templates(obj):
            _instrument_pod(template, cm["metadata"]["name"], served_name, options)
        out.append(obj)
    if options.pod_monitor:
        out.append(pod_monitor(plan, workload, labels, selector))
    return out
