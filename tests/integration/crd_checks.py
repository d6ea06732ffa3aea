"""Server-side dry runs of ServingPlans, shared by the CRD bounds and CRD fuzz tests."""

from __future__ import annotations

from typing import Any

from e2e.fixtures import ClusterHandle


def dry_run_create(cluster: ClusterHandle, namespace: str, obj: dict[str, Any]) -> str | None:
    """None when the API server accepts `obj` (server-side dry run, strict field validation),
    else its error message; anything but a 422 (invalid) fails the test."""
    from kubernetes import client

    with cluster.api_client() as api:
        try:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "breakeven.dev", "v1alpha1", namespace, "servingplans", obj,
                dry_run="All", field_validation="Strict",
            )  # fmt: skip
        except client.ApiException as exc:
            assert exc.status == 422, exc.body  # invalid, never a server error
            return str(exc.body)
    return None
