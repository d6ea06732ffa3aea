"""Builders for the capacity tests: pools by GPU type and count, catalog models by name."""

from __future__ import annotations

from breakeven.core import capacity, catalog, facts


def pool(gpu: str, gpus: int, fabric: str | None = None) -> facts.Pool:
    return capacity.synthetic_pool(gpu, gpus, fabric)


def arch(name: str) -> catalog.Architecture:
    found = catalog.get(name)
    assert found is not None, name
    return found
