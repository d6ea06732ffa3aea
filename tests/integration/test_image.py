"""The operator image (Containerfile), built offline by e2e/image.py and run with podman.

It runs as UID 65532 with a read-only root filesystem and no network, `breakeven` is its
entrypoint, and `breakeven plan` decides an example plan inside it exactly as on the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/breakeven:test"


@pytest.fixture(scope="module")
def built() -> str:
    image.build(TAG)  # raises with the engine's output on failure
    return TAG


def run_in_image(tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    return image.run(
        [image.engine(), "run", "--rm", "--read-only", "--network=none",
         "--volume", f"{ROOT / 'examples'}:/examples:ro", tag, *args],
    )  # fmt: skip


def test_image_config(built: str) -> None:
    out = image.run([image.engine(), "image", "inspect", built])
    assert out.returncode == 0, out.stderr
    (config,) = json.loads(out.stdout)
    assert config["Config"]["User"] == "65532:65532"
    assert config["Config"]["Entrypoint"] == ["/opt/breakeven/bin/breakeven"]
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "breakeven"
    assert labels["org.opencontainers.image.version"] == "0.1.0"


def test_help_runs_read_only_as_non_root(built: str) -> None:
    out = run_in_image(built, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: breakeven" in out.stdout
    uid = image.run(
        [image.engine(), "run", "--rm", "--read-only", "--network=none",
         "--entrypoint", "/opt/breakeven/bin/python", built, "-c", "import os; print(os.getuid())"],
    )  # fmt: skip
    assert uid.stdout.strip() == "65532", uid.stderr


def test_plan_in_the_image_matches_the_host(built: str) -> None:
    plan = "examples/plans/deepseek-v3-sustained.yaml"
    nodes = "examples/nodes/h200-infiniband.yaml"
    inside = run_in_image(built, "plan", f"/{plan}", "--nodes", f"/{nodes}", "-o", "json")
    assert inside.returncode == 0, inside.stderr
    host = subprocess.run(
        [str(Path(sys.executable).parent / "breakeven"), "plan", plan, "--nodes", nodes,
         "-o", "json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert host.returncode == 0, host.stderr
    ours, theirs = json.loads(inside.stdout), json.loads(host.stdout)
    assert ours["mode"] in ("Dense", "MoE")
    # Paths differ (/examples/... inside); the decision and its numbers do not.
    for field in ("mode", "rubricMode", "reason", "message", "criteria", "estimates", "traffic"):
        assert ours[field] == theirs[field], field
