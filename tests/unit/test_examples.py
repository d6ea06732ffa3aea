"""Examples are tests: every `breakeven plan` command in examples/README.md prints the decision
its row promises, and every example file is used and valid."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from builders import EXAMPLES, ROOT

from breakeven.cli import main as cli
from breakeven.shell import inputs

ROW = re.compile(r"^\| `(breakeven plan [^`]+)` \| (MoE|Dense) \| (\w+) \|$")
README = (EXAMPLES / "README.md").read_text()
COMMANDS = [m.groups() for line in README.splitlines() if (m := ROW.match(line))]


def test_the_readme_lists_commands() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize(("command", "mode", "reason"), COMMANDS, ids=[c[0][15:] for c in COMMANDS])
def test_readme_command_prints_the_promised_decision(
    command: str,
    mode: str,
    reason: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    argv = shlex.split(command)[1:]
    assert cli.main([*argv, "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["mode"], out["reason"]) == (mode, reason), out["message"]


def test_every_example_file_is_used_in_the_readme() -> None:
    for path in [*EXAMPLES.glob("plans/*.yaml"), *EXAMPLES.glob("traffic/*.yaml")]:
        assert f"examples/{path.parent.name}/{path.name}" in README or path.name in README, path


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("plans/*.yaml")), ids=lambda p: p.name)
def test_example_plans_are_valid(path: object) -> None:
    plans = inputs.load_plans(path)  # type: ignore[arg-type]
    assert len(plans) == 1
    assert plans[0].name == path.stem  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("traffic/*.yaml")), ids=lambda p: p.name)
def test_example_traffic_is_valid(path: object) -> None:
    traffic = inputs.load_traffic(path)  # type: ignore[arg-type]
    assert traffic.has_volume
    assert traffic.window == "336h"


def test_the_output_in_docs_rubric_is_current(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/rubric.md pastes a real `breakeven plan` table; regenerate it when this fails."""
    doc = (ROOT / "docs" / "rubric.md").read_text()
    block = doc.split("```console\n", 1)[1].split("```", 1)[0]
    command, _, printed = block.partition("\n    ")
    rest, _, printed = printed.partition("\n")
    argv = shlex.split(command.removeprefix("$ .venv/bin/breakeven ").rstrip("\\") + " " + rest)
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == printed
