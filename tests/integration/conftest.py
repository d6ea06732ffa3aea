"""Fixtures for the integration tier: the local control plane and Prometheus from e2e/.

The fixtures live in e2e/fixtures.py so that tests/e2e can import the same ones.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # `pytest` run without `python -m` does not put the repo root on sys.path
    sys.path.insert(0, _ROOT)

from e2e.fixtures import cluster, namespace, prometheus  # noqa: E402

__all__ = ["cluster", "namespace", "prometheus"]
