"""Golden files: every case of the matrix renders exactly what golden/<case>.yaml holds.

Regenerate after an intended change with `BREAKEVEN_UPDATE_GOLDEN=1 pytest tests/unit/rendering`,
and read the diff: it is the change a cluster would see.
"""

from __future__ import annotations

import os

import pytest
import rendering_cases as cases


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_render_matches_golden(name: str) -> None:
    case = cases.CASES[name]()
    rendered = cases.dump(case.render(), case.note)
    path = cases.golden_path(name)
    if os.environ.get(cases.UPDATE_ENV) == "1":
        path.write_text(rendered)
    assert path.exists(), f"{path} missing; run with {cases.UPDATE_ENV}=1 to create it"
    assert rendered == path.read_text(), f"render differs from {path.name}"


def test_no_stray_golden_files() -> None:
    stems = {p.stem for p in cases.GOLDEN.glob("*.yaml")}
    assert stems == set(cases.CASES)


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_render_is_deterministic(name: str) -> None:
    assert cases.CASES[name]().render() == cases.CASES[name]().render()


def test_goldens_have_no_yaml_anchors() -> None:
    for path in cases.GOLDEN.glob("*.yaml"):
        text = path.read_text()
        assert "&id0" not in text and "*id0" not in text, path.name


@pytest.mark.parametrize("name", ["gke-a3-ultra", "gke-a4x", "eks-p5", "gb200-multi-node"])
def test_platform_goldens_name_their_upstream_guide(name: str) -> None:
    assert cases.golden_path(name).read_text().startswith("# Reviewed against ")


def test_the_render_pasted_in_docs_rendering_is_current(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/rendering.md pastes a real `breakeven plan --render`; regenerate it when this fails."""
    import shlex

    from breakeven.cli import main as cli

    root = cases.GOLDEN.parents[3]
    doc = (root / "docs" / "rendering.md").read_text()
    section = doc.split("## A multi-node MoE plan, rendered", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    command, _, printed = block.partition("--render\n")
    argv = shlex.split(command.removeprefix("$ breakeven ").replace("\\\n", " ") + " --render")
    monkeypatch.chdir(root)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == printed
