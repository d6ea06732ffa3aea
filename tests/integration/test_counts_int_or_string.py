"""Parameter counts are int-or-string in the CRD: the real API server accepts `480000000000` as
Kubernetes users write quantities, and `671B`, and rejects what is neither, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from breakeven.core import api

pytestmark = pytest.mark.integration


def _plan(total: object) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "counts"},
        "spec": {
            "model": {
                "name": "acme/moe",
                "totalParameters": total,
                "activeParameters": 20_000_000_000,
                "experts": 64,
                "expertsPerToken": 4,
            }
        },
    }


@pytest.fixture(scope="module")
def crd(cluster: Any) -> None:
    from e2e import running

    with cluster.api_client() as client_:
        running.install(client_)


@pytest.mark.parametrize("total", [480_000_000_000, "480000000000", "671B", "8e11"])
def test_counts_accept_integers_and_strings(
    cluster: Any, namespace: str, crd: None, total: object
) -> None:
    from kubernetes import client

    with cluster.api_client() as client_:
        created = client.CustomObjectsApi(client_).create_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, _plan(total),
            dry_run="All", field_validation="Strict",
        )  # fmt: skip
    assert created["spec"]["model"]["totalParameters"] == total
    # and the operator's model reads it back as the same count
    model = api.ModelSpec.model_validate(created["spec"]["model"])
    assert api.parse_parameters(model.total_parameters or "") == api.parse_parameters(str(total))


@pytest.mark.parametrize("total", ["lots", 1.5, True])
def test_other_counts_are_rejected_naming_the_field(
    cluster: Any, namespace: str, crd: None, total: object
) -> None:
    from kubernetes import client

    with cluster.api_client() as client_, pytest.raises(client.ApiException) as err:
        client.CustomObjectsApi(client_).create_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, _plan(total),
            dry_run="All", field_validation="Strict",
        )  # fmt: skip
    assert err.value.status == 422
    assert "spec.model.totalParameters" in str(err.value.body)
