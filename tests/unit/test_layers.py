"""The layering contracts hold, and break when a forbidden import lands in the core.

`lint-imports` runs on a copy of the package, once as it is and once with one probe module added
under `breakeven/core/`, so a contract that could never fail would show here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "operator")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "operator", tmp_path / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_contracts(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("where", "line", "contract"),
    [
        ("core/_probe.py", "import httpx\n", "The pure core does no I/O"),
        ("core/_probe.py", "import prometheus_client\n", "The pure core does no I/O"),
        ("core/_probe.py", "from breakeven.shell import metrics\n", "Layers"),
        ("shell/_probe.py", "from breakeven.cli import main\n", "Layers"),
        ("tools/_probe.py", "from breakeven.shell import kube\n", "Tools never import the shell"),
        ("shell/_probe.py", "from breakeven.tools import schema\n", "never imports the tools"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(
    tree: Path, where: str, line: str, contract: str
) -> None:
    (tree / "operator" / "breakeven" / where).write_text(line)
    result = _lint(tree)
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout
