"""`breakeven plan`: the decision on stdout; bad input exits 2 naming the field, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builders import EXAMPLES, ROOT

from breakeven.cli import main as cli
from breakeven.shell import inputs

PLAN = str(EXAMPLES / "plans" / "deepseek-v3-sustained.yaml")
NODES = str(EXAMPLES / "nodes" / "h200-infiniband.yaml")
TRAFFIC = str(EXAMPLES / "traffic" / "sustained.yaml")
ENTRY_POINT = Path(sys.executable).parent / "breakeven"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def plan_text(spec: str) -> str:
    return (
        "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\nmetadata: {name: p}\n"
        f"spec:\n{spec}\n"
    )


# ------------------------------------------------------------------------------- outputs


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", PLAN, "--nodes", NODES, "--traffic", TRAFFIC, "-o", "json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["mode"] == "MoE"
    assert data["plan"] == "models/deepseek-v3-sustained"
    assert [r["name"] for r in data["criteria"]][:3] == [
        "modelScale",
        "runtimeSupport",
        "interconnect",
    ]
    for row in data["criteria"]:
        assert set(row) >= {"name", "verdict", "observed", "threshold", "reason", "gating"}
    assert {e["mode"] for e in data["estimates"]} == {"Dense", "MoE"}
    assert data["cluster"]["pools"][0]["gpu"] == "H200"


def test_yaml_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", PLAN, "--nodes", NODES, "--traffic", TRAFFIC, "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["mode"] == "MoE"


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", PLAN, "--nodes", NODES, "--traffic", TRAFFIC)
    assert code == 0
    assert "Decision: MoE (AllGatesGo)" in out
    assert "CRITERION" in out and "sustainedLoad" in out and "$/M OUT" in out


def test_without_nodes_the_output_names_the_reference_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "plan", PLAN, "-o", "json")
    data = json.loads(out)
    assert code == 0
    assert data["cluster"]["source"] == inputs.REFERENCE_CLUSTER
    # without --traffic nothing is observed, so traffic rows are Unknown and the mode is Dense
    verdicts = {r["name"]: r["verdict"] for r in data["criteria"]}
    assert verdicts["sustainedLoad"] == "Unknown"
    assert data["mode"] == "Dense"


def test_a_multi_document_plan_file_prints_a_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = (EXAMPLES / "plans" / "deepseek-v3-sustained.yaml").read_text()
    second = (EXAMPLES / "plans" / "llama-3.1-70b.yaml").read_text()
    path = write(tmp_path, f"{first}---\n{second}")
    code, out, _ = run(capsys, "plan", path, "--nodes", NODES, "--traffic", TRAFFIC, "-o", "json")
    assert code == 0
    assert [d["mode"] for d in json.loads(out)] == ["MoE", "Dense"]


def test_a_kubectl_node_list_and_multi_document_nodes_read_the_same(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    items = yaml.safe_load(Path(NODES).read_text())["items"]
    multi = write(tmp_path, yaml.safe_dump_all(items), "nodes.yaml")
    _, listed, _ = run(capsys, "plan", PLAN, "--nodes", NODES, "--traffic", TRAFFIC, "-o", "json")
    _, documents, _ = run(
        capsys, "plan", PLAN, "--nodes", multi, "--traffic", TRAFFIC, "-o", "json"
    )
    assert json.loads(listed)["criteria"] == json.loads(documents)["criteria"]


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("  model: {name: deepseek-ai/DeepSeek-V3}\n  mdoe: MoE", "spec.mdoe: unknown field"),
        ("  model: {name: deepseek-ai/DeepSeek-V3}\n  mode: Sparse", "spec.mode: "),
        (
            "  model: {name: deepseek-ai/DeepSeek-V3}\n  traffic: {window: 2weeks}",
            "spec.traffic.window: ",
        ),
        (
            "  model: {name: deepseek-ai/DeepSeek-V3}\n  operations: {platformTeam: Tiny}",
            "spec.operations.platformTeam: ",
        ),
        ("  model: {name: acme/unknown-model}", "spec.model.name: 'acme/unknown-model' is not"),
        (
            "  model: {name: acme/ft, architecture: acme/base}",
            "spec.model.architecture: 'acme/base' is not",
        ),
        ("  model: {name: x, totalParameters: huge}", "spec.model.totalParameters: "),
    ],
)
def test_invalid_plans_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str, expected: str
) -> None:
    code, out, err = run(capsys, "plan", write(tmp_path, plan_text(spec)), "--nodes", NODES)
    assert code == 2
    assert out == ""
    assert err.startswith("breakeven plan: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_a_bad_enum_says_what_is_allowed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = "  model: {name: deepseek-ai/DeepSeek-V3}\n  mode: Sparse"
    _, _, err = run(capsys, "plan", write(tmp_path, plan_text(spec)))
    assert "'Auto', 'Dense' or 'MoE'" in err


@pytest.mark.parametrize(
    ("flag", "name", "text", "expected"),
    [
        ("plan", "plan.yaml", "spec: [unclosed", "not valid YAML"),
        ("plan", "plan.yaml", "", "no ServingPlan in the file"),
        (
            "plan",
            "plan.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
            "apiVersion/kind",
        ),
        ("--traffic", "traffic.yaml", "tokensPerSecond: {p10: -5}", "tokensPerSecond.p10"),
        ("--traffic", "traffic.yaml", "tokensPerSec: {p10: 5}", "tokensPerSec: unknown field"),
        ("--traffic", "traffic.yaml", "window: soon", "window"),
        ("--traffic", "traffic.yaml", "- a\n- b", "traffic facts must be one YAML mapping"),
        (
            "--nodes",
            "nodes.yaml",
            "kind: List\nitems: [{kind: Pod}]",
            "items[0]: kind must be Node",
        ),
        ("--nodes", "nodes.yaml", "kind: List\nitems: [{kind: Node}]", "metadata.name"),
        ("--nodes", "nodes.yaml", "{{", "not valid YAML"),
        ("--label-mapping", "map.yaml", "gpuLable: [x]", "gpuLable: unknown field"),
    ],
)
def test_invalid_files_exit_2_naming_the_file_and_field(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    flag: str,
    name: str,
    text: str,
    expected: str,
) -> None:
    path = write(tmp_path, text, name)
    argv = ["plan", path] if flag == "plan" else ["plan", PLAN, flag, path]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert path in err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flag", ["plan", "--nodes", "--traffic"])
def test_a_missing_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    missing = str(tmp_path / "nope.yaml")
    argv = ["plan", missing] if flag == "plan" else ["plan", PLAN, flag, missing]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"{missing}: cannot read" in err


@pytest.mark.parametrize(
    "argv", [["plan"], ["plan", PLAN, "-o", "xml"], ["plan", PLAN, "--nodse", NODES], ["nope"]]
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: breakeven" in capsys.readouterr().err


# ------------------------------------------------------------------------ the entry point


@pytest.mark.skipif(
    not ENTRY_POINT.exists(), reason="the breakeven console script is not installed"
)
def test_the_console_script(tmp_path: Path) -> None:
    ok = subprocess.run(
        [str(ENTRY_POINT), "plan", PLAN, "--nodes", NODES, "--traffic", TRAFFIC, "-o", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["mode"] == "MoE"

    bad = write(tmp_path, plan_text("  model: {name: deepseek-ai/DeepSeek-V3}\n  mdoe: MoE"))
    failed = subprocess.run(
        [str(ENTRY_POINT), "plan", bad], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 2
    assert "spec.mdoe: unknown field" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize("value", ["0", "-3", "257", "many"])
def test_run_refuses_a_worker_count_it_cannot_use_and_names_the_flag(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    from breakeven.cli.main import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", "--workers", value])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_run_takes_a_worker_count() -> None:
    from breakeven.cli.main import build_parser

    assert build_parser().parse_args(["run", "--workers", "16"]).workers == 16
    assert build_parser().parse_args(["run"]).workers == 8
