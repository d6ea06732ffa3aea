"""Regenerate the trimmed OpenAPI schemas the rendering tests validate against.

    python tests/unit/rendering/schemas/trim.py [--kubernetes DIR] [--lws-crd FILE]

Inputs are the published schemas of the versions the e2e control plane pins: Kubernetes' own
OpenAPI v3 documents (api/openapi-spec/v3 in the kubernetes source tree, here from the Go module
cache that e2e/controlplane/build.sh fills) and the LeaderWorkerSet CRD. Only the definitions
reachable from Deployment, Service, ConfigMap and LeaderWorkerSet are kept, without descriptions,
so the committed files stay small; the content of each kept definition is unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
KUBE_VERSION = "v1.36.3"
LWS_VERSION = "v0.9.0"
GO_MOD = Path.home() / "go" / "pkg" / "mod"
DEFAULT_KUBE = GO_MOD / f"k8s.io/kubernetes@{KUBE_VERSION}/api/openapi-spec/v3"
DEFAULT_LWS = (
    GO_MOD / f"sigs.k8s.io/lws@{LWS_VERSION}/config/crd/bases/"
    "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
)
ROOTS = (
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ConfigMap",
)


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def kubernetes(spec_dir: Path) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name in ("api__v1_openapi.json", "apis__apps__v1_openapi.json"):
        schemas.update(json.loads((spec_dir / name).read_text())["components"]["schemas"])
    keep: dict[str, Any] = {}
    todo = [*list(ROOTS), "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = strip(schemas[name])
        todo.extend(refs(keep[name]))
    return {
        "source": f"kubernetes {KUBE_VERSION} api/openapi-spec/v3 (trimmed by trim.py)",
        "components": {"schemas": dict(sorted(keep.items()))},
    }


def lws(crd_file: Path) -> dict[str, Any]:
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return {
        "source": f"kubernetes-sigs/lws {LWS_VERSION} LeaderWorkerSet CRD, v1 (trimmed by trim.py)",
        "schema": strip(version["schema"]["openAPIV3Schema"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes", type=Path, default=DEFAULT_KUBE)
    parser.add_argument("--lws-crd", type=Path, default=DEFAULT_LWS)
    args = parser.parse_args()
    out = {
        f"kubernetes-{KUBE_VERSION}.json": kubernetes(args.kubernetes),
        f"lws-{LWS_VERSION}.json": lws(args.lws_crd),
    }
    for name, document in out.items():
        (HERE / name).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
