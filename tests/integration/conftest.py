"""Fixtures for the integration tier: the local control plane and Prometheus from e2e/.

The fixtures live in e2e/fixtures.py so that tests/e2e can import the same ones.
"""

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `pytest` run without `python -m` does not put the repo root on sys.path
    sys.path.insert(0, _ROOT)

from e2e import running  # noqa: E402
from e2e.fixtures import ClusterHandle, cluster, namespace, prometheus  # noqa: E402

__all__ = ["cluster", "namespace", "prometheus"]


@pytest.fixture(scope="module")
def crd_installed(cluster: ClusterHandle) -> ClusterHandle:
    """The test control plane with the ServingPlan CRD and the operator's RBAC installed."""
    with cluster.api_client() as api:
        running.install(api)
    return cluster
