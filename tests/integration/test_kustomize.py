"""manifests/ as a kustomize base, rendered by the control plane's `kubectl kustomize`.

The base and the overlay example (deploy/kustomize-example) render; the base agrees with the Helm
chart's default render (release `breakeven` in namespace `breakeven`, CRDs included) on every
object both produce: every field the base sets has the same value in the chart's object, except
that the chart's labels and selectors are a superset of the base's and the container's arguments
are compared by what the operator's own argument parser makes of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.cli.main import build_parser
from e2e.tools import helm_template as render
from e2e.tools import tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LABEL_PATHS = {
    ("metadata", "labels"),
    ("spec", "selector", "matchLabels"),
    ("spec", "template", "metadata", "labels"),
}


def kustomize(directory: Path) -> list[Any]:
    out = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def disagreements(base: Any, chart: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Where the chart's object does not carry what the base sets."""
    if path in LABEL_PATHS:
        missing = {k: v for k, v in base.items() if chart.get(k) != v}
        return [f"{'.'.join(path)}: chart lacks {missing}"] if missing else []
    if path and path[-1] == "args":
        ours, theirs = build_parser().parse_args(base), build_parser().parse_args(chart)
        return [] if vars(ours) == vars(theirs) else [f"args: {vars(ours)} != {vars(theirs)}"]
    if isinstance(base, dict):
        if not isinstance(chart, dict):
            return [f"{'.'.join(path)}: {chart!r} is not a map"]
        out = []
        for k, v in base.items():
            if k not in chart:
                out.append(f"{'.'.join((*path, k))}: missing in the chart")
            else:
                out += disagreements(v, chart[k], (*path, k))
        return out
    if isinstance(base, list):
        if not isinstance(chart, list) or len(base) != len(chart):
            return [f"{'.'.join(path)}: {base!r} != {chart!r}"]
        return [e for i, (b, c) in enumerate(zip(base, chart, strict=True))
                for e in disagreements(b, c, (*path, str(i)))]  # fmt: skip
    return [] if base == chart else [f"{'.'.join(path)}: {base!r} != {chart!r}"]


def test_base_lists_every_generated_manifest() -> None:
    listed = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in (ROOT / "manifests").glob("*.yaml"))
    assert sorted(listed) == [p for p in present if p != "kustomization.yaml"]


def test_base_renders_the_generated_objects() -> None:
    docs = {key(d): d for d in kustomize(ROOT / "manifests")}
    assert set(docs) == {
        ("Namespace", "", "breakeven"),
        ("CustomResourceDefinition", "", "servingplans.breakeven.dev"),
        ("ServiceAccount", "breakeven", "breakeven"),
        ("ClusterRole", "", "breakeven"),
        ("ClusterRoleBinding", "", "breakeven"),
        ("Deployment", "breakeven", "breakeven"),
        ("ClusterKopfPeering", "", "breakeven"),
        ("CustomResourceDefinition", "", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "", "kopfpeerings.kopf.dev"),
    }


def test_overlay_example_renders_its_changes() -> None:
    docs = {key(d): d for d in kustomize(ROOT / "deploy" / "kustomize-example")}
    (c,) = docs[("Deployment", "breakeven", "breakeven")]["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("registry.example.internal/mirror/breakeven@sha256:")
    args = build_parser().parse_args(c["args"])
    assert args.prometheus_url == "http://kube-prometheus-stack-prometheus.monitoring:9090"
    assert args.allowed_prometheus_url == ["http://prometheus-team-a.monitoring:9090"]


def test_base_agrees_with_the_chart_default_render() -> None:
    base = {key(d): d for d in kustomize(ROOT / "manifests")}
    chart = {key(d): d for d in render("--include-crds")}
    both = set(base) & set(chart)
    assert both == set(base) - {("Namespace", "", "breakeven")}, "objects only the base has"
    problems = {k: disagreements(base[k], chart[k]) for k in sorted(both)}
    assert not {k: v for k, v in problems.items() if v}


def test_the_comparison_catches_a_difference() -> None:
    base = {key(d): d for d in kustomize(ROOT / "manifests")}
    chart = {key(d): d for d in render("--set", "interval=30", "--set", "resources.limits=null")}
    k = ("Deployment", "breakeven", "breakeven")
    found = disagreements(base[k], chart[k])
    assert any(p.startswith("args:") for p in found), found
    assert any("resources.limits" in p for p in found), found
