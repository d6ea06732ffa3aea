"""The real API server, with the generated CRD, rejects each out-of-bounds value the operator
could not handle, naming the field (issue 10, item 1); the Python model rejects the same."""

from __future__ import annotations

from typing import Any

import pytest
from bad_input import BAD_SPECS, VALID_SPEC, plan_object, spec_with

from e2e import running
from e2e.fixtures import ClusterHandle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crd_installed(cluster: ClusterHandle) -> ClusterHandle:
    with cluster.api_client() as api:
        running.install(api)
    return cluster


def dry_run_create(cluster: ClusterHandle, namespace: str, obj: dict[str, Any]) -> str | None:
    """None when the API server accepts `obj` (server-side dry run), else its error message."""
    from kubernetes import client

    with cluster.api_client() as api:
        try:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "breakeven.dev", "v1alpha1", namespace, "servingplans", obj,
                dry_run="All", field_validation="Strict",
            )  # fmt: skip
        except client.ApiException as exc:
            assert exc.status == 422, exc.body
            return str(exc.body)
    return None


def test_a_valid_plan_is_accepted(crd_installed: ClusterHandle, namespace: str) -> None:
    assert dry_run_create(crd_installed, namespace, plan_object(VALID_SPEC)) is None


@pytest.mark.parametrize(
    ("fragment", "field"), [(f, p) for _, f, p in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
def test_the_api_server_rejects_out_of_bounds_values_naming_the_field(
    crd_installed: ClusterHandle, namespace: str, fragment: dict[str, Any], field: str
) -> None:
    message = dry_run_create(crd_installed, namespace, plan_object(spec_with(fragment)))
    assert message is not None, f"the API server accepted {fragment}"
    assert field in message


@pytest.mark.parametrize(
    "fragment",
    [
        {"traffic": {"window": "365d"}},
        {"policy": {"drainPeriod": "8760h", "minDwell": "0s", "promotionWindow": "1d12h30m15s"}},
        {"policy": {"demotionGrace": "1.5h", "demotionWindow": "250ms"}},
        {"model": {"name": "x", "totalParameters": "1M", "activeParameters": "1e6"}},
        {"model": {"name": "x", "totalParameters": "100T"}},
        {"policy": {"modelScale": {"denseBelow": "0", "moeFrom": "1.5T"}}},
    ],
)
def test_values_at_the_bounds_are_accepted(
    crd_installed: ClusterHandle, namespace: str, fragment: dict[str, Any]
) -> None:
    assert dry_run_create(crd_installed, namespace, plan_object(spec_with(fragment))) is None
