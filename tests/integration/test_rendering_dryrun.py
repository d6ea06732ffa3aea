"""Every golden manifest passes server-side dry-run on the real API server.

The API server (with the LeaderWorkerSet CRD and its webhooks, as e2e/ starts them) is the final
judge of what tests/rendering checks offline: its validation of names, labels, probes, ports and
pod templates, the LWS admission webhooks, and, with fieldValidation=Strict, unknown fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

GOLDEN = Path(__file__).resolve().parents[1] / "rendering" / "golden"
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"

pytestmark = pytest.mark.integration


def _golden() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.stem}:{doc['kind']}", doc)
        for path in sorted(GOLDEN.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


GOLDEN_OBJECTS = _golden()


def test_golden_files_exist() -> None:
    assert len(GOLDEN_OBJECTS) >= 7


@pytest.mark.parametrize("obj", [o for _, o in GOLDEN_OBJECTS], ids=[i for i, _ in GOLDEN_OBJECTS])
def test_server_side_dry_run(cluster: Any, namespace: str, obj: dict[str, Any]) -> None:
    from kubernetes import client

    body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    options = {"dry_run": "All", "field_validation": "Strict"}
    with cluster.api_client() as api:
        if obj["kind"] == "Deployment":
            client.AppsV1Api(api).create_namespaced_deployment(namespace, body, **options)
        elif obj["kind"] == "Service":
            client.CoreV1Api(api).create_namespaced_service(namespace, body, **options)
        elif obj["kind"] == "ConfigMap":
            client.CoreV1Api(api).create_namespaced_config_map(namespace, body, **options)
        elif obj["kind"] == "LeaderWorkerSet":
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, body, **options
            )
        else:
            pytest.fail(f"no dry-run for kind {obj['kind']}")
