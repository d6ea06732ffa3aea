"""Paths of the command-line tools e2e/controlplane/build.sh builds besides the control plane.

    helm        helm.sh/helm/v3 at HELM_VERSION, with the -X flags of helm's own Makefile
    lua-health  runs an Argo CD health.lua on its health_test.yaml with gopher-lua (gitops/)
    kstatus     prints kstatus' verdict on Kubernetes objects (gitops/)
    kubectl     the control plane's kubectl (kustomize built in)

Each is cached in ~/.cache/breakeven-e2e/bin (BREAKEVEN_E2E_CACHE) under a versioned name;
`make controlplane` builds what is missing. A missing tool raises with the command to run.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import BUILD_SCRIPT, cache_dir, pinned_versions

GITOPS_DIR = BUILD_SCRIPT.parent / "gitops"


def _pinned(name: str) -> str:
    found = re.search(rf"^{name}_VERSION=(v[0-9][^\s]*)$", BUILD_SCRIPT.read_text(), re.M)
    if not found:
        raise RuntimeError(f"{BUILD_SCRIPT}: no {name}_VERSION pinned")
    return found.group(1)


def gitops_version() -> str:
    """The same hash build.sh computes over gitops/'s *.go, go.mod and go.sum (sha256sum style)."""
    files = sorted(
        p
        for p in GITOPS_DIR.rglob("*")
        if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum"))
    )
    rel = sorted(("./" + str(p.relative_to(GITOPS_DIR))).encode() for p in files)
    listing = b"".join(
        hashlib.sha256((GITOPS_DIR / r.decode()[2:]).read_bytes()).hexdigest().encode()
        + b"  "
        + r
        + b"\n"
        for r in rel
    )
    return "src-" + hashlib.sha256(listing).hexdigest()[:12]


def tool(name: str) -> Path:
    versions = {
        "helm": _pinned("HELM"),
        "kubectl": pinned_versions()["KUBE"],
        "lua-health": gitops_version(),
        "kstatus": gitops_version(),
    }
    path = cache_dir() / "bin" / f"{name}-{versions[name]}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make controlplane` to build it")
    return path


CHART = BUILD_SCRIPT.parents[2] / "charts" / "breakeven"


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the cached helm (argument list, no shell)."""
    argv = [str(tool("helm")), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


def helm_template(
    *args: str, release: str = "breakeven", namespace: str = "breakeven"
) -> list[Any]:
    """The chart's objects as `helm template` renders them; raises with helm's error."""
    out = helm("template", release, str(CHART), "--namespace", namespace, *args)
    if out.returncode != 0:
        raise RuntimeError(f"helm template failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]
