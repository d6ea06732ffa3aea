"""Hostile or broken input (issue 10, items 1 and 12): every numeric and duration field bounded,
and `breakeven plan` exits 2 naming the field for what it cannot use, never a traceback."""

# ruff: noqa: E501  (tables of cases read best one to a line)

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bad_input import BAD_SPECS, plan_object, spec_with
from builders import EXAMPLES, node

from breakeven.cli import main as cli
from breakeven.core import api, facts
from breakeven.shell import inputs

PLAN = str(EXAMPLES / "plans" / "deepseek-v3-sustained.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------- the model's bounds


@pytest.mark.parametrize(
    ("fragment", "field"), [(f, p) for _, f, p in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
def test_the_model_rejects_out_of_bounds_values_naming_the_field(
    fragment: dict[str, Any], field: str
) -> None:
    with pytest.raises(inputs.InputError) as info:
        inputs.parse_plan(plan_object(spec_with(fragment)))
    assert f"\n{field}" in str(info.value)  # describe() puts each field at a line's start


@pytest.mark.parametrize(
    "fragment",
    [
        {"traffic": {"window": "365d"}},
        {"policy": {"drainPeriod": "8760h", "minDwell": "0s", "promotionWindow": "1d12h30m15s"}},
        {"model": {"name": "x", "totalParameters": "1M", "activeParameters": "1e6"}},
        {"model": {"name": "x", "totalParameters": "100T"}},
        {"policy": {"modelScale": {"denseBelow": "0", "moeFrom": "100T"}}},
        {"serving": {"nodeSelector": {"example.com/" + "k" * 63: "v" * 63}}},
    ],
)
def test_values_at_the_bounds_are_accepted(fragment: dict[str, Any]) -> None:
    inputs.parse_plan(plan_object(spec_with(fragment)))


def test_every_duration_and_count_in_the_crd_has_a_cel_maximum() -> None:
    from breakeven.tools import schema

    def walk(node: dict[str, Any], path: str) -> list[str]:
        missing = []
        bounded = "maxLength" in node and node.get("x-kubernetes-validations")
        if node.get("pattern") in (api.DURATION_PATTERN, api.PARAMETERS_PATTERN) and not bounded:
            missing.append(path)
        for name, child in (node.get("properties") or {}).items():
            missing += walk(child, f"{path}.{name}")
        return missing

    spec = schema.openapi_schema()["properties"]["spec"]
    assert walk(spec, "spec") == []


def test_every_string_and_number_of_the_spec_is_bounded() -> None:
    from breakeven.tools import schema

    def walk(node: dict[str, Any], path: str) -> list[str]:
        unbounded = []
        kind = node.get("type")
        if kind == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if kind in ("integer", "number") and ("minimum" not in node or "maximum" not in node):
            unbounded.append(path)
        if kind == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
        for name, child in (node.get("properties") or {}).items():
            unbounded += walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                unbounded += walk(node[key], f"{path}[]")
        return unbounded

    assert walk(schema.openapi_schema()["properties"]["spec"], "spec") == []


def test_durations_have_a_maximum_in_python() -> None:
    assert api.parse_duration("365d") == 365 * 86400
    with pytest.raises(ValueError, match="not a duration"):
        api.parse_duration("9" * 300 + "s")


# -------------------------------------------------------------- `breakeven plan` on bad files


def write(tmp_path: Path, data: bytes | str, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def plan_yaml(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(plan_object(spec))


def nodes_yaml(*items: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(items)})


NESTED = "a: " + "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("flag", "text", "expected"),
    [
        ("plan", plan_yaml(spec_with({"model": {"name": "x", "totalParameters": "0"}})), "spec.model.totalParameters"),
        ("plan", plan_yaml(spec_with({"model": {"name": "x", "totalParameters": "1e999"}})), "spec.model.totalParameters"),
        ("plan", plan_yaml(spec_with({"policy": {"drainPeriod": "99999999999d"}})), "spec.policy.drainPeriod"),
        ("plan", plan_yaml(spec_with({"operations": {"gpuHourlyCost": float("nan")}})), "spec.operations.gpuHourlyCost"),
        ("plan", plan_yaml(spec_with({"policy": {"sustainedLoad": {"busyFraction": float("inf")}}})), "busyFraction"),
        ("plan", "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\nmetadata: {name: p}\nspec: just a string\n", "spec: "),
        ("plan", "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\nmetadata: {name: p}\nspec: {model: {name: x}}\nstatus: a string\n", "status: "),
        ("plan", "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\nmetadata: a string\nspec: {model: {name: x}}\n", "metadata: "),
        ("plan", b"apiVersion: breakeven.dev/v1alpha1\nkind: \xff\xfe\n", "not UTF-8"),
        ("plan", "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\nmetadata: {name: p}\nspec: {model: {name: x, experts: " + "9" * 5000 + "}}\n", "not a value"),
        ("plan", NESTED, "nested too deeply"),
        ("--traffic", "tokensPerSecond: {p10: .inf, p50: .inf}", "tokensPerSecond.p10"),
        ("--traffic", "recentPeakTokensPerSecond: .nan", "recentPeakTokensPerSecond"),
        ("--traffic", "observed: 99999999999d", "observed"),
        ("--traffic", b"\x80\x81", "not UTF-8"),
        ("--nodes", "kind: List\nitems: a string", "items"),
        ("--nodes", "kind: List\nitems: [{kind: Node, metadata: a string}]", "metadata.name"),
        ("--nodes", NESTED, "nested too deeply"),
    ],
)  # fmt: skip
def test_bad_files_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, text: str | bytes, expected: str
) -> None:
    name = "plan.yaml" if flag == "plan" else "other.yaml"
    path = write(tmp_path, text, name)
    argv = ["plan", path] if flag == "plan" else ["plan", PLAN, flag, path]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("breakeven plan: error: ")
    assert expected in err


# ------------------------------------------------------------ untrusted facts from Nodes


BAD_LABELS = [
    ("nvidia.com/gpu.count", "M"),
    ("nvidia.com/gpu.count", "inf"),
    ("nvidia.com/gpu.count", "nan"),
    ("nvidia.com/gpu.count", "1e400"),
    ("nvidia.com/gpu.count", "9" * 5000),
    ("nvidia.com/gpu.count", "2.5"),
    ("nvidia.com/gpu.count", "-8"),
    ("nvidia.com/gpu.memory", "inf"),
    ("nvidia.com/gpu.memory", "nan"),
    ("nvidia.com/gpu.memory", "lots"),
]


@pytest.mark.parametrize(("label", "value"), BAD_LABELS)
def test_a_bad_node_label_leaves_out_that_node_only(label: str, value: str) -> None:
    bad = node("bad", gpus=0, labels={label: value})
    if label == "nvidia.com/gpu.memory":
        bad = node("bad", labels={label: value})
    good = [node("good-0"), node("good-1")]
    cluster = facts.Cluster.from_nodes([*good, bad])
    assert [p.nodes for p in cluster.pools] == [("good-0", "good-1")]
    assert len(cluster.warnings) == 1
    assert cluster.warnings[0].startswith("node bad: label " + label)
    # The operator's index holds projections: the same holds there.
    projected = facts.Cluster.from_nodes([facts.node_info(n) for n in [*good, bad]])
    assert projected == cluster


@pytest.mark.parametrize("value", ["M", "inf", "nan", "1e400", "-1"])
def test_a_bad_gpu_resource_leaves_out_that_node_only(value: str) -> None:
    bad = node("bad", allocatable={"nvidia.com/gpu": value})
    cluster = facts.Cluster.from_nodes([node("good"), bad])
    assert [p.nodes for p in cluster.pools] == [("good",)]
    assert "allocatable nvidia.com/gpu" in cluster.warnings[0]


@pytest.mark.parametrize(
    "broken",
    [
        {"metadata": "a string"},
        {"metadata": {"name": "n", "labels": "a string"}},
        {"metadata": {"name": "n", "labels": {"nvidia.com/gpu.count": {"nested": 1}}}},
        {"metadata": {"name": "n"}, "status": "a string"},
        {"metadata": {"name": "n"}, "spec": "a string"},
        {"metadata": {"name": "n"}, "status": {"allocatable": ["x"], "conditions": "Ready"}},
        {"metadata": {"name": "n"}, "status": {"conditions": ["Ready", 3]}},
    ],
)
def test_malformed_nodes_never_raise(broken: dict[str, Any]) -> None:
    info = facts.node_info(broken)
    cluster = facts.Cluster.from_nodes([node("good"), broken])
    assert [p.nodes for p in cluster.pools] == [("good",)]
    assert isinstance(info, facts.NodeInfo)


def test_the_cli_warns_about_a_bad_node_and_still_decides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    items = [node(f"h200-{i}", rdma="rdma/ib") for i in range(4)]
    items.append(node("broken", gpus=0, labels={"nvidia.com/gpu.count": "M"}))
    path = write(tmp_path, nodes_yaml(*items), "nodes.yaml")
    code, out, err = run(capsys, "plan", PLAN, "--nodes", path, "-o", "json")
    assert code == 0
    assert "warning" in err and "node broken: label nvidia.com/gpu.count 'M'" in err
    assert '"mode"' in out
