"""GPU and fabric figures, and how GPUs are named on Kubernetes nodes.

The figures are data (`data/hardware.yaml`, with sources); this module loads them and identifies a
GPU from the names clusters give it (GPU feature discovery product, GKE accelerator, CoreWeave
class, cloud instance types).

Pure: reads only the package's own data file.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from breakeven.core import api


class _Fact(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class GPU(_Fact):
    """One GPU type. Bandwidths in GB/s (memory in TB/s), compute in dense TFLOPS."""

    key: str
    match: tuple[str, ...]
    memory_gb: float = Field(gt=0)
    bandwidth_tbs: float = Field(gt=0)
    tflops: dict[str, float]
    nvlink_gbs: float = Field(ge=0, description="NVLink per GPU, one direction; 0 = none")
    pcie_gbs: float = Field(gt=0)
    hourly_cost: float = Field(gt=0)
    confirmed: bool = True

    @property
    def nvlink(self) -> bool:
        return self.nvlink_gbs > 0

    def peak_tflops(self, dtype: api.Dtype) -> float:
        """Dense peak for a dtype, falling back to the nearest wider format the GPU has."""
        order = ["fp4", "fp8", "bf16"]
        wanted = "bf16" if dtype in (api.Dtype.BF16, api.Dtype.FP16) else dtype.value
        for name in order[order.index(wanted) :]:
            if name in self.tflops:
                return self.tflops[name]
        return self.tflops["bf16"]


class Fabric(_Fact):
    key: str
    bandwidth_gbs: float = Field(gt=0)
    rdma: bool
    note: str = ""


class _HardwareFile(BaseModel):
    gpus: dict[str, dict[str, object]]
    fabrics: dict[str, dict[str, object]]


@functools.cache
def _load() -> tuple[dict[str, GPU], dict[str, Fabric]]:
    text = resources.files("breakeven.core").joinpath("data/hardware.yaml").read_text()
    raw = _HardwareFile.model_validate(yaml.safe_load(text))
    gpus = {k: GPU.model_validate({"key": k, **v}) for k, v in raw.gpus.items()}
    fabrics = {k: Fabric.model_validate({"key": k, **v}) for k, v in raw.fabrics.items()}
    return gpus, fabrics


def gpus() -> dict[str, GPU]:
    return _load()[0]


def fabrics() -> dict[str, Fabric]:
    return _load()[1]


def gpu(key: str) -> GPU:
    """A GPU by its table key or any name it goes by; KeyError lists the known ones."""
    found = gpus().get(key) or identify(key)
    if found is None:
        raise KeyError(f"unknown GPU {key!r}; known: {', '.join(gpus())}")
    return found


def fabric(key: str) -> Fabric:
    try:
        return fabrics()[key]
    except KeyError:
        raise KeyError(f"unknown fabric {key!r}; known: {', '.join(fabrics())}") from None


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[-_\s]+", text.lower()) if t]


@functools.cache
def identify(name: str) -> GPU | None:
    """The GPU a node label value names, e.g. `NVIDIA-H100-80GB-HBM3` -> H100.

    Patterns match whole `-`-separated tokens, and the longest matching pattern wins, so
    `NVIDIA-H100-PCIe` is an H100-PCIe, `NVIDIA-GB200` is not a B200 and `NVIDIA-L40S` is not an L4.
    """
    tokens = _tokens(name)
    best: tuple[int, GPU] | None = None
    for candidate in gpus().values():
        for pattern in candidate.match:
            wanted = _tokens(pattern)
            n = len(wanted)
            if any(tokens[i : i + n] == wanted for i in range(len(tokens) - n + 1)) and (
                best is None or n > best[0]
            ):
                best = (n, candidate)
    return best[1] if best else None
