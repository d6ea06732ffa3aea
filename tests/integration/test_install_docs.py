"""docs/install.md: every `helm` and `kubectl` command in its sh blocks runs, in order, against the
test control plane with the cached helm and kubectl. Commands that need a registry or an index
are listed in NOT_RUN with the reason; a command that is neither run nor listed fails the test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from e2e.fixtures import ClusterHandle
from e2e.tools import tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install.md"

NOT_RUN = {
    "make image": "tests/integration/test_image.py builds the image through the same e2e/image.py",
    "make image IMAGE=": "a release build pulls its base from a registry, which CI cannot reach",
    "podman ": "mirroring images needs registries",
}
# Placeholders a user fills in; the schema rejects them as written, so the test fills them too.
PLACEHOLDERS = {"sha256:DIGEST": "sha256:" + "0" * 64}


def commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def skipped(command: str) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if command == prefix or (prefix.endswith((" ", "=")) and command.startswith(prefix)):
            return reason
    return None


def crd_exists(kubectl: str, kubeconfig: Path) -> bool:
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "crd", "servingplans.breakeven.dev"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode == 0


def _fresh(kubectl: str, kubeconfig: Path) -> None:
    """What other tests of the session installed with kubectl (`e2e.running.install`: the
    operator's namespace, ServiceAccount and RBAC) is not Helm's, and `helm install` refuses to
    adopt it: remove it first, as a user's cluster would not have it."""
    for manifest in ("manifests/operator.yaml", "manifests/rbac.yaml"):
        subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "delete", "-f", manifest,
             "--ignore-not-found", "--wait=true", "--timeout=120s"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    # `delete -f` stops waiting when a kind is not served (no peering CRDs): wait for the
    # namespace itself, which Helm cannot install into while it terminates.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        gone = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "namespace", "breakeven"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if gone.returncode != 0 and "NotFound" in gone.stderr:
            return
        time.sleep(1)
    raise AssertionError("namespace breakeven is still terminating after 180 s")


def test_every_command_in_install_md_runs(cluster: ClusterHandle) -> None:
    binaries = {"helm": str(tool("helm")), "kubectl": str(tool("kubectl"))}
    _fresh(binaries["kubectl"], cluster.kubeconfig)
    ran = []
    try:
        for command in commands():
            if skipped(command):
                continue
            filled = command
            for placeholder, value in PLACEHOLDERS.items():
                filled = filled.replace(placeholder, value)
            argv = shlex.split(filled)
            assert argv[0] in binaries, f"install.md: {command!r} is neither run nor in NOT_RUN"
            argv = [binaries[argv[0]], *argv[1:], "--kubeconfig", str(cluster.kubeconfig)]
            out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
            assert out.returncode == 0, f"{command}\n{out.stdout}{out.stderr}"
            ran.append(command)
            if command.startswith("helm uninstall"):
                assert crd_exists(binaries["kubectl"], cluster.kubeconfig), "uninstall took the CRD"
            if command.startswith("kubectl delete customresourcedefinition"):
                assert not crd_exists(binaries["kubectl"], cluster.kubeconfig)
        assert any(c.startswith("helm install") for c in ran)
        assert any(c.startswith("kubectl apply --server-side -k") for c in ran)
    finally:
        for cleanup in (
            [binaries["helm"], "uninstall", "breakeven", "--namespace", "breakeven"],
            [binaries["kubectl"], "delete", "namespace", "models", "--ignore-not-found"],
        ):
            subprocess.run(
                [*cleanup, "--kubeconfig", str(cluster.kubeconfig)],
                capture_output=True, check=False,
            )  # fmt: skip


def test_commands_not_run_are_few_and_named() -> None:
    all_commands = commands()
    not_run = [c for c in all_commands if skipped(c)]
    assert all(c.startswith(("podman ", "make image")) for c in not_run)
    assert len(all_commands) - len(not_run) >= 10
