"""vLLM versions: the flag table, resolving the version, and flags per version in the output."""

from __future__ import annotations

import json
import re
from typing import Any

import builders
import pytest
import rendering_cases as cases

from breakeven.core import api, rendering
from breakeven.core.rendering import versions

FLAG = re.compile(r"^--[a-z0-9][a-z0-9-]*$")


def rendered_flags(obj: dict[str, Any]) -> set[str]:
    flags: set[str] = set()
    for container in cases.containers(obj):
        flags |= {a for a in container["args"] if FLAG.match(a)}
        flags |= {a for a in container["command"] if FLAG.match(a)}
        for part in container["command"]:  # the start-rank script appends one flag itself
            flags |= set(re.findall(r"(?<![-\w])--[a-z0-9][a-z0-9-]*", part))
    return flags


def rendered_env(obj: dict[str, Any]) -> set[str]:
    return {e["name"] for c in cases.containers(obj) for e in c.get("env", [])}


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_every_rendered_flag_exists_in_the_declared_version(name: str) -> None:
    case = cases.CASES[name]()
    version = versions.parse(rendering.resolve_vllm_version(case.plan))
    table = versions.table()
    for obj in cases.load_golden(name):
        missing = {f for f in rendered_flags(obj) if not table.has_flag(f, version)}
        assert not missing, f"{name}: {sorted(missing)} not in vLLM {version}"
        vllm_env = {e for e in rendered_env(obj) if e.startswith("VLLM_")}
        assert all(table.has_env(e, version) for e in vllm_env), vllm_env


def _arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _moe_container(version: str) -> dict[str, Any]:
    return cases.containers(cases.load_workloads(f"moe-two-node-lws-{version}")[0])[0]


@pytest.mark.parametrize("version", ["v0.10.0", "v0.10.1.1"])
def test_flat_eplb_flags_before_0_10_2(version: str) -> None:
    args = _moe_container(version)["args"]
    assert _arg_after(args, "--num-redundant-experts") == "32"
    assert _arg_after(args, "--eplb-window-size") == "1000"
    assert "--eplb-log-balancedness" in args  # EPLB telemetry
    assert "--eplb-config" not in args


@pytest.mark.parametrize("version", ["v0.10.2", "v0.11.0", "v0.11.2", "v0.13.0"])
def test_eplb_config_json_from_0_10_2(version: str) -> None:
    args = _moe_container(version)["args"]
    config = json.loads(_arg_after(args, "--eplb-config"))
    assert config == {
        "window_size": 1000,
        "step_interval": 3000,
        "num_redundant_experts": 32,
        "log_balancedness": True,  # EPLB telemetry
    }
    assert "--num-redundant-experts" not in args


@pytest.mark.parametrize("version", ["v0.10.0", "v0.10.2", "v0.11.0"])
def test_all2all_backend_as_env_before_0_11_1(version: str) -> None:
    container = _moe_container(version)
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The stock image ships no DeepEP: NCCL's backend of that release across nodes.
    assert env["VLLM_ALL2ALL_BACKEND"] == (
        "naive"
        if version == "v0.10.0"
        else ("allgather_reducescatter" if version == "v0.11.0" else "naive")
    )
    assert "--all2all-backend" not in container["args"]


@pytest.mark.parametrize("version", ["v0.11.1", "v0.11.2", "v0.13.0"])
def test_all2all_backend_as_flag_from_0_11_1(version: str) -> None:
    container = _moe_container(version)
    assert _arg_after(container["args"], "--all2all-backend") == "allgather_reducescatter"
    assert "VLLM_ALL2ALL_BACKEND" not in {e["name"] for e in container["env"]}


def test_deepep_only_with_an_image_that_ships_it() -> None:
    gke = cases.containers(cases.load_workloads("gke-a3-ultra")[0])[0]
    assert _arg_after(gke["args"], "--all2all-backend") == "deepep_low_latency"
    stock = cases.containers(cases.load_workloads("moe-two-node-lws")[0])[0]
    assert _arg_after(stock["args"], "--all2all-backend") == "allgather_reducescatter"


def test_single_node_backend_is_naive_before_allgather_reducescatter_existed() -> None:
    container = cases.containers(cases.load_workloads("moe-single-node-v0.10.0")[0])[0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VLLM_ALL2ALL_BACKEND"] == "naive"
    single = cases.containers(cases.load_workloads("moe-single-node")[0])[0]
    assert _arg_after(single["args"], "--all2all-backend") == "allgather_reducescatter"


def test_prefill_uses_high_throughput_and_decode_low_latency() -> None:
    prefill, decode = cases.load_workloads("moe-pd")  # on llm-d's image, which ships DeepEP
    assert prefill["metadata"]["name"] == "chat-moe-prefill"
    assert _arg_after(cases.containers(prefill)[0]["args"], "--all2all-backend") == (
        "deepep_high_throughput"
    )
    assert _arg_after(cases.containers(decode)[0]["args"], "--all2all-backend") == (
        "deepep_low_latency"
    )


# ------------------------------------------------------------------------------ resolving


@pytest.mark.parametrize(
    ("image", "declared", "expected"),
    [
        ("vllm/vllm-openai:v0.12.0", None, "0.12.0"),
        ("vllm/vllm-openai:v0.10.1.1", None, "0.10.1.1"),
        ("registry.example.com:5000/vllm/vllm-openai:v0.11.2-cu129", None, "0.11.2"),
        ("vllm/vllm-openai:0.13.0", None, "0.13.0"),
        ("vllm/vllm-openai@sha256:" + "a" * 64, "v0.12.0", "0.12.0"),
        ("my/custom:latest", "0.11", "0.11.0"),
        ("vllm/vllm-openai:v0.13.0", "0.12.0", "0.12.0"),  # declared beats the tag
    ],
)
def test_resolve_vllm_version(image: str, declared: str | None, expected: str) -> None:
    plan = builders.serving_plan(image=image, vllm_version=declared)
    assert rendering.resolve_vllm_version(plan) == expected


@pytest.mark.parametrize(
    ("image", "declared", "field"),
    [
        ("vllm/vllm-openai:latest", None, "spec.serving.vllmVersion"),
        ("vllm/vllm-openai@sha256:" + "a" * 64, None, "spec.serving.vllmVersion"),
        ("vllm/vllm-openai:v0.9.2", None, "spec.serving.image"),
        ("vllm/vllm-openai:v0.12.0", "0.34.0", "spec.serving.vllmVersion"),
        ("vllm/vllm-openai:v0.12.0", "v1.0", "spec.serving.vllmVersion"),
    ],
)
def test_unsupported_or_unknown_version_names_the_field(
    image: str, declared: str | None, field: str
) -> None:
    plan = builders.serving_plan(image=image, vllm_version=declared)
    with pytest.raises(rendering.RenderError, match=f"^{re.escape(field)}: "):
        rendering.resolve_vllm_version(plan)
    case = cases.CASES["moe-two-node-lws"]()
    with pytest.raises(rendering.RenderError, match=f"^{re.escape(field)}: "):
        rendering.render(plan, api.ServingMode.MOE, case.estimate, case.pool, case.arch)


def test_flag_table_is_consistent() -> None:
    table = versions.table()
    lowest = versions.parse(table.supported.min)
    for section in (table.flags, table.env, table.all2all_backends):
        for name, entry in section.items():
            assert entry.source, name
            assert versions.parse(entry.since) >= lowest, name
            if entry.until:
                assert versions.parse(entry.until) > versions.parse(entry.since), name
    assert all(FLAG.match(f) for f in table.flags)
    assert all(table.is_supported(versions.parse(v)) for v in table.verified)


def test_every_version_where_the_matrix_changes_has_a_golden_case() -> None:
    """Each release where a rendered flag, env var, backend or EPLB class appears or goes has
    a golden case (the table-driven test covers every verified release)."""
    table = versions.table()
    entries = [*table.flags.values(), *table.env.values(), *table.all2all_backends.values()]
    bounds = {e.since for e in entries} | {e.until for e in entries if e.until}
    bounds |= {s.since for s in table.eplb_architectures.values() if s.since}
    covered = {rendering.resolve_vllm_version(cases.CASES[name]().plan) for name in cases.CASES}
    assert {versions.format_version(versions.parse(v)) for v in bounds} <= covered
