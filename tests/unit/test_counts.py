"""Parameter counts are integers or strings: in the API model, the CRD schema and the CLI."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from breakeven.cli import main as cli
from breakeven.core import api

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("given", "parsed"),
    [(480_000_000_000, 480e9), ("480000000000", 480e9), ("480B", 480e9), ("4.8e11", 480e9)],
)
def test_counts_accept_integers_and_strings(given: object, parsed: float) -> None:
    model = api.ModelSpec.model_validate({"name": "m", "totalParameters": given})
    assert api.parse_parameters(model.total_parameters or "") == parsed


@pytest.mark.parametrize("given", ["lots", 1.5, True, "huge-int"])
def test_other_counts_are_rejected_naming_the_field(given: object) -> None:
    if given == "huge-int":
        given = 10**5000  # over Python's 4,300-digit int-to-str limit
    with pytest.raises(pydantic.ValidationError, match="totalParameters"):
        api.ModelSpec.model_validate({"name": "m", "totalParameters": given})


def test_breakeven_plan_reads_integer_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "apiVersion: breakeven.dev/v1alpha1\nkind: ServingPlan\n"
        "metadata: {name: counts, namespace: models}\n"
        "spec:\n  model: {name: acme/moe-480b, architecture: Qwen/Qwen3-235B-A22B,\n"
        "    totalParameters: 480000000000, activeParameters: 35000000000,\n"
        "    experts: 160, expertsPerToken: 8}\n"
    )
    nodes = str(ROOT / "examples" / "nodes" / "h200-infiniband.yaml")
    assert cli.main(["plan", str(plan), "--nodes", nodes]) == 0
    assert "480B total, 35B active" in capsys.readouterr().out


def test_yaml_output_has_no_anchors(capsys: pytest.CaptureFixture[str]) -> None:
    plan = str(ROOT / "examples" / "plans" / "kimi-k2-multi-node.yaml")
    nodes = str(ROOT / "examples" / "nodes" / "h200-infiniband.yaml")
    assert cli.main(["plan", plan, "--nodes", nodes, "--render"]) == 0
    out = capsys.readouterr().out
    assert "&id0" not in out and "*id0" not in out
    assert out.count("app.kubernetes.io/managed-by: breakeven") >= 3  # repeated, not aliased
