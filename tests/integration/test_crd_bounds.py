"""The real API server, with the generated CRD, rejects each out-of-bounds value the operator
could not handle, naming the field (issue 10, item 1); the Python model rejects the same."""

from __future__ import annotations

from typing import Any

import pytest
from bad_input import BAD_SPECS, VALID_SPEC, plan_object, spec_with
from crd_checks import dry_run_create

from e2e.fixtures import ClusterHandle

pytestmark = pytest.mark.integration


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
