"""Leader election through kopf peering on the real API server: two `breakeven run --peering
breakeven` replicas under the operator's own ServiceAccount (manifests/rbac.yaml), one acts and one
waits; when the acting one stops, the standby takes over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.tools import schema
from e2e import running
from e2e.fixtures import ClusterHandle, wait_for

pytestmark = pytest.mark.integration

RESUMED = "Resuming operations after the pause"


@pytest.fixture
def peering(cluster: ClusterHandle) -> Iterator[ClusterHandle]:
    """The operator's CRD and RBAC, kopf's peering CRDs and the ClusterKopfPeering `breakeven`,
    as the generated manifests define them; the peering CRDs are removed afterwards."""
    from kubernetes import client

    crds = list(yaml.safe_load_all(schema.PEERING_PATH.read_text()))
    peering_object = next(
        d for d in yaml.safe_load_all(schema.OPERATOR_PATH.read_text())
        if d and d["kind"] == "ClusterKopfPeering"
    )  # fmt: skip
    with cluster.api_client() as api:
        running.install(api)
        ext = client.ApiextensionsV1Api(api)
        created = []  # another test (a chart install) may have installed them already
        for crd in crds:
            try:
                ext.create_custom_resource_definition(crd)
                created.append(crd)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

        def established() -> bool:
            return all(
                any(
                    c.type == "Established" and c.status == "True"
                    for c in ext.read_custom_resource_definition(
                        crd["metadata"]["name"]
                    ).status.conditions
                    or []
                )
                for crd in crds
            )

        wait_for("the kopf peering CRDs", established, 60)

        def peering_created() -> bool:
            try:
                client.CustomObjectsApi(api).create_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", peering_object
                )
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            return True

        wait_for("the ClusterKopfPeering to be created", peering_created, 30)
    try:
        yield cluster
    finally:
        with cluster.api_client() as api:
            for crd in created:
                client.ApiextensionsV1Api(api).delete_custom_resource_definition(
                    crd["metadata"]["name"]
                )


def _peers(cluster: ClusterHandle) -> dict[str, Any]:
    from kubernetes import client

    with cluster.api_client() as api:
        obj: Any = client.CustomObjectsApi(api).get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "breakeven"
        )
    return {k: v for k, v in (obj.get("status") or {}).items() if v}


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_one_replica_acts_and_the_standby_takes_over(
    peering: ClusterHandle, tmp_path: Path
) -> None:
    with peering.api_client() as api:
        kubeconfig = running.service_account_kubeconfig(
            api, peering.kubeconfig, tmp_path / "operator.kubeconfig"
        )
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first, second = (
        running.OperatorProcess(
            kubeconfig, "http://127.0.0.1:9", log, extra=["--peering", "breakeven"]
        )
        for log in logs
    )
    try:
        first.start()
        wait_for("the first replica to act", lambda: RESUMED in _log(logs[0]), 90)
        second.start()
        wait_for("both replicas in the peering object", lambda: len(_peers(peering)) == 2, 90)
        priorities = sorted(p["priority"] for p in _peers(peering).values())
        assert priorities[0] != priorities[1]  # equal priorities would pause both
        assert first.alive() and second.alive()
        assert RESUMED not in _log(logs[1]), second.tail()  # the standby waits
        first.stop()  # SIGTERM: kopf withdraws its keep-alive on the way out
        wait_for("the standby to take over", lambda: RESUMED in _log(logs[1]), 90)
        assert len(_peers(peering)) == 1
    finally:
        first.stop()
        second.stop()
