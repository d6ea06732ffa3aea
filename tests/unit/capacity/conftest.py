"""Fixtures for the capacity tests."""

from __future__ import annotations

import pytest
from builders import arch

from breakeven.core import catalog


@pytest.fixture
def deepseek() -> catalog.Architecture:
    return arch("deepseek-ai/DeepSeek-V3")
