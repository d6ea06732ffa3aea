"""GitOps health of a ServingPlan: Argo CD's Lua health check and Flux's kstatus.

The Lua check (deploy/argocd/resource_customizations/breakeven.dev/ServingPlan, Argo CD's layout)
runs under gopher-lua with Argo CD's library set (e2e/controlplane/gitops/cmd/lua-health); kstatus
(sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what Flux's health checks call) runs on the
same test data (e2e/controlplane/gitops/cmd/kstatus). The test data are plans with the status the
operator writes (core/switching.py `conditions`, shell/operator.py `_invalid`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from e2e.tools import tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "resource_customizations" / "breakeven.dev" / "ServingPlan"


def lua_health(directory: Path) -> tuple[int, list[dict[str, object]], str]:
    out = subprocess.run(
        [str(tool("lua-health")), str(directory)], capture_output=True, text=True, check=False
    )
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()], out.stderr


def kstatus(name: str) -> str:
    out = subprocess.run(
        [str(tool("kstatus")), str(HEALTH / "testdata" / f"{name}.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["status"])


def test_argocd_health_lua_passes_its_tests() -> None:
    rc, results, err = lua_health(HEALTH)
    assert rc == 0, "\n".join(json.dumps(r) for r in results if not r["ok"]) + err
    cases = yaml.safe_load((HEALTH / "health_test.yaml").read_text())["tests"]
    assert len(results) == len(cases) == len(list((HEALTH / "testdata").glob("*.yaml")))
    statuses = {r["inputPath"]: r["got"]["status"] for r in results}  # type: ignore[index]
    assert statuses["testdata/serving.yaml"] == "Healthy"
    assert statuses["testdata/switching.yaml"] == "Progressing"
    assert statuses["testdata/invalid.yaml"] == "Degraded"


def test_argocd_runner_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    copy = tmp_path / "ServingPlan"
    shutil.copytree(HEALTH, copy)
    tests = yaml.safe_load((copy / "health_test.yaml").read_text())
    tests["tests"][1]["healthStatus"]["status"] = "Degraded"  # serving.yaml is Healthy
    (copy / "health_test.yaml").write_text(yaml.safe_dump(tests))
    rc, results, _ = lua_health(copy)
    assert rc == 1
    assert [r["inputPath"] for r in results if not r["ok"]] == ["testdata/serving.yaml"]


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ("serving", "Current"),  # Ready True
        ("fallback", "Current"),  # Ready True: dense serves after a fallback
        ("switching", "InProgress"),  # Ready False while the target comes up
        ("stale-generation", "InProgress"),  # observedGeneration < generation
    ],
)
def test_kstatus_reads_the_plan_status(plan: str, expected: str) -> None:
    assert kstatus(plan) == expected


def test_kstatus_says_an_invalid_plan_failed() -> None:
    assert kstatus("invalid") == "Failed"


def test_kstatus_says_a_dry_run_is_current() -> None:
    assert kstatus("dry-run") == "Current"
