"""Every MoE workload Breakeven renders carries EPLB telemetry; dense workloads carry none.

MoE: a ConfigMap with vLLM's logging config (VLLM_LOGGING_CONFIG_PATH), the `eplb-log` emptyDir,
the exporter as a native sidecar (an init container with restartPolicy Always) and log_balancedness
turned on the way the rendered vLLM version understands it: the flag `--eplb-log-balancedness`
in 0.10.0-0.10.1.x, `"log_balancedness": true` in `--eplb-config` from 0.10.2 (each release's
vllm/engine/arg_utils.py; the flag is gone in 0.12.0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "rendering"))
import builders
import rendering_cases as cases

from breakeven.cli import main as cli
from breakeven.core import api, eplb, rendering
from breakeven.core.rendering import telemetry, versions

MOE_CASES = sorted(n for n in cases.CASES if n.startswith("moe"))
DENSE_CASES = sorted(n for n in cases.CASES if n.startswith("dense"))
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet")


def render(name: str, **options: Any) -> list[dict[str, Any]]:
    case = cases.CASES[name]()
    return rendering.render(case.plan, case.mode, case.estimate, case.pool, case.arch,
                            telemetry.Options(**options))  # fmt: skip


def templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for o in objects for t in cases.pod_templates(o)]


def vllm(template: dict[str, Any]) -> dict[str, Any]:
    [container] = [c for c in template["spec"]["containers"] if c["name"] == "vllm"]
    return container


def moe_plan(version: str, **serving: Any) -> cases.Case:
    return cases.Case(
        builders.serving_plan(image=f"vllm/vllm-openai:{version}", **serving),
        api.ServingMode.MOE, builders.moe(8, 1, redundant=8), builders.pool(),
        builders.arch(builders.DEEPSEEK),
    )  # fmt: skip


@pytest.mark.parametrize("name", MOE_CASES)
def test_moe_workloads_carry_the_telemetry(name: str) -> None:
    objects = render(name)
    config_map = objects[0]
    assert config_map["kind"] == "ConfigMap"  # first: the pods mount it
    assert config_map["metadata"]["name"] == "chat-moe-eplb"
    document = json.loads(config_map["data"][telemetry.CONFIG_KEY])
    assert document == eplb.logging_config(telemetry.LOG_FILE)
    # After it the workloads (and a GB200 group's ComputeDomain, docs/rendering.md).
    assert objects[1:] and all(o["kind"] in {*WORKLOAD_KINDS, "ComputeDomain"} for o in objects[1:])
    served = cases.CASES[name]().plan.spec.model.name
    pods = templates(objects)
    assert pods
    for template in pods:
        spec = template["spec"]
        # P/D decode pods also run llm-d's routing proxy; the exporter is the last sidecar.
        sidecar = spec["initContainers"][-1]
        assert sidecar["name"] == "eplb-exporter"
        assert [c["name"] for c in spec["initContainers"][:-1]] in ([], ["routing-proxy"])
        assert sidecar["restartPolicy"] == "Always"
        assert sidecar["image"] == f"ghcr.io/breakeven/breakeven:{telemetry.breakeven.__version__}"
        assert sidecar["command"] == ["breakeven", "eplb-exporter"]
        assert f"--model={served}" in sidecar["args"]
        assert {"name": "eplb-log", "mountPath": "/var/log/breakeven", "readOnly": True} in (
            sidecar["volumeMounts"]
        )
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["eplb-log"] == {"name": "eplb-log", "emptyDir": {"sizeLimit": "64Mi"}}
        assert volumes["eplb-logging"]["configMap"] == {"name": "chat-moe-eplb"}
        container = vllm(template)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VLLM_LOGGING_CONFIG_PATH"] == "/etc/breakeven/vllm-logging/logging.json"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["eplb-log"] == "/var/log/breakeven"  # the directory of LOG_FILE
        assert mounts["eplb-logging"] == "/etc/breakeven/vllm-logging"
        assert template["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9481",
            "prometheus.io/path": "/metrics",
        }
        assert sidecar["ports"] == [
            {"name": "eplb-metrics", "containerPort": 9481, "protocol": "TCP"}
        ]


def test_the_sidecar_arguments_are_what_the_command_line_accepts() -> None:
    [template, *_] = templates(render("moe-single-node"))
    [sidecar] = template["spec"]["initContainers"]
    args = cli.build_parser().parse_args([*sidecar["command"][1:], *sidecar["args"]])
    assert args.func.__module__ == "breakeven.cli.eplb_exporter"
    assert (args.log_file, args.port, args.address, args.model) == (
        telemetry.LOG_FILE,
        telemetry.EXPORTER_PORT,
        "0.0.0.0",
        builders.DEEPSEEK,
    )
    mounts = {m["name"]: m["mountPath"] for m in vllm(template)["volumeMounts"]}
    assert args.log_file == mounts["eplb-log"] + "/eplb.log"  # where vLLM's handler writes


@pytest.mark.parametrize("version", versions.table().verified)
def test_log_balancedness_is_turned_on_the_way_each_version_reads_it(version: str) -> None:
    case = moe_plan(f"v{version}")
    objects = rendering.render(case.plan, case.mode, case.estimate, case.pool, case.arch)
    args = vllm(templates(objects)[0])["args"]
    if versions.parse(version) < (0, 10, 2):
        assert "--eplb-log-balancedness" in args
        assert "--eplb-config" not in args
    else:
        config = json.loads(args[args.index("--eplb-config") + 1])
        assert config["log_balancedness"] is True
        assert "--eplb-log-balancedness" not in args


@pytest.mark.parametrize("name", DENSE_CASES)
def test_dense_workloads_carry_none_of_it(name: str) -> None:
    objects = render(name)
    assert all(o["kind"] in WORKLOAD_KINDS for o in objects)
    text = json.dumps(objects)
    for marker in ("eplb", "VLLM_LOGGING_CONFIG_PATH", "prometheus.io", "initContainers"):
        assert marker not in text, marker


def test_pod_monitor_selects_every_moe_pod_and_leaves_the_pods_unchanged() -> None:
    objects = render("moe-pd", pod_monitor=True)
    monitor = objects[-1]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["name"] == "chat-moe-eplb"
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "eplb-metrics", "path": "/metrics", "interval": "15s"}
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    pods = templates(objects)
    assert len(pods) == 2  # prefill and decode groups, LWS worker templates
    for template in pods:
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items()
    # the Prometheus Operator appearing later must not roll the serving pods
    assert objects[:-1] == render("moe-pd")
    # and selects no dense pod
    [dense] = templates(render("dense-tp8"))
    assert not selector.items() <= dense["metadata"]["labels"].items()


def test_the_image_option_names_the_sidecar_image() -> None:
    objects = render("moe-single-node", image="registry.example.com/breakeven:dev")
    [sidecar] = templates(objects)[0]["spec"]["initContainers"]
    assert sidecar["image"] == "registry.example.com/breakeven:dev"


def test_a_model_name_with_a_dollar_is_escaped_for_the_kubelet() -> None:
    assert telemetry.sidecar("a$(B)", telemetry.IMAGE)["args"][-1] == "--model=a$$(B)"


def test_vllm_logging_level_from_the_plan_env_reaches_the_console_handler() -> None:
    case = moe_plan("v0.12.0", env=[{"name": "VLLM_LOGGING_LEVEL", "value": "warning"}])
    objects = rendering.render(case.plan, case.mode, case.estimate, case.pool, case.arch)
    document = json.loads(objects[0]["data"]["logging.json"])
    assert document["handlers"]["console"]["level"] == "WARNING"
    assert document["handlers"]["eplb_file"]["level"] == "INFO"  # the telemetry stays on


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"name": "VLLM_LOGGING_CONFIG_PATH", "value": "/x"}, "VLLM_LOGGING_CONFIG_PATH is set"),
        ({"name": "VLLM_CONFIGURE_LOGGING", "value": "0"}, "VLLM_CONFIGURE_LOGGING is set"),
        ({"name": "VLLM_LOGGING_LEVEL", "value": "loud"}, "VLLM_LOGGING_LEVEL 'LOUD' is not"),
    ],
)
def test_plan_env_that_would_break_the_telemetry_is_an_error_naming_the_field(
    env: dict[str, str], message: str
) -> None:
    case = moe_plan("v0.12.0", env=[env])
    with pytest.raises(rendering.RenderError, match=f"^spec.serving.env: {message}"):
        rendering.render(case.plan, case.mode, case.estimate, case.pool, case.arch)
    dense = cases.CASES["dense-1gpu"]()
    plan = dense.plan.model_copy(
        update={"spec": dense.plan.spec.model_copy(
            update={"serving": dense.plan.spec.serving.model_copy(
                update={"env": [api.EnvVar(**env)]})})})  # fmt: skip
    rendering.render(plan, dense.mode, dense.estimate, dense.pool, dense.arch)  # dense: no matter


def test_the_operator_takes_the_exporter_image() -> None:
    assert cli.build_parser().parse_args(["run"]).eplb_exporter_image == telemetry.IMAGE
    args = cli.build_parser().parse_args(["run", "--eplb-exporter-image", "mirror/breakeven:1"])
    assert args.eplb_exporter_image == "mirror/breakeven:1"
