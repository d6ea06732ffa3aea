"""The model catalog: architecture facts for the models Breakeven knows by name.

The facts are data (`data/models.yaml`, with sources); this module loads them and merges a plan's
explicit numbers over them. A model outside the catalog with no explicit numbers is an error that
says what to add, never a guess.

Pure: reads only the package's own data file.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from breakeven.core import api
from breakeven.core.errors import CatalogError as CatalogError


class _Fact(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class Attention(_Fact):
    kind: Literal["mla", "gqa"]
    heads: int = Field(gt=0)
    kv_heads: int | None = None
    head_dim: int | None = None
    kv_lora_rank: int | None = None
    rope_dim: int | None = None
    sliding_window_layers: int = 0
    sliding_window: int | None = None


class Architecture(_Fact):
    """What the capacity model and the rubric need to know about a model.

    Parameter counts are in billions. Fields other than the counts may be `None` for a model
    given only by explicit numbers; the capacity model then uses documented approximations.
    """

    name: str
    aliases: tuple[str, ...] = ()
    total_parameters: float = Field(gt=0)
    active_parameters: float = Field(gt=0)
    layers: int | None = None
    moe_layers: int = 0
    hidden_size: int | None = None
    routed_experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    expert_intermediate: int | None = None
    dense_intermediate: int | None = None
    attention: Attention | None = None
    native_dtype: api.Dtype = api.Dtype.BF16
    hf_architecture: str | None = Field(
        default=None, description="config.json `architectures` entry (vLLM's registry key)"
    )
    serve_flags: tuple[str, ...] = Field(
        default=(), description="vllm serve flags the model needs to start"
    )
    min_vllm: str | None = Field(
        default=None, description="first vLLM release whose model registry has the architecture"
    )
    confirmed: bool = True
    from_catalog: bool = True

    @property
    def is_moe(self) -> bool:
        return self.routed_experts > 0 and self.experts_per_token > 0

    @property
    def sparsity(self) -> float:
        """Fraction of parameters active per token (1.0 for a dense model)."""
        return self.active_parameters / self.total_parameters

    @property
    def exact(self) -> bool:
        """Whether per-layer shapes are known (else the capacity model approximates)."""
        return self.layers is not None and self.hidden_size is not None


class _CatalogFile(BaseModel):
    models: dict[str, dict[str, object]]


@functools.cache
def _entries() -> dict[str, Architecture]:
    text = resources.files("breakeven.core").joinpath("data/models.yaml").read_text()
    raw = _CatalogFile.model_validate(yaml.safe_load(text))
    out: dict[str, Architecture] = {}
    for name, fields in raw.models.items():
        arch = Architecture.model_validate({"name": name, **fields})
        for key in (name, *arch.aliases):
            out[key.lower()] = arch
    return out


def names() -> list[str]:
    """Canonical names of every catalog model, in file order."""
    seen: dict[str, None] = {}
    for arch in _entries().values():
        seen.setdefault(arch.name)
    return list(seen)


def get(name: str) -> Architecture | None:
    """The catalog entry for a model id or alias (case-insensitive), if any."""
    return _entries().get(name.lower())


def resolve(model: api.ModelSpec | api.DenseBaseline) -> Architecture:
    """Architecture facts for a plan's model: the catalog entry with explicit numbers on top.

    Purely computational; raises CatalogError naming the fields to set when the model is unknown.
    """
    key = model.architecture or model.name
    entry = get(key)
    explicit: dict[str, object] = {}
    if isinstance(model, api.ModelSpec):
        if model.total_parameters:
            explicit["total_parameters"] = api.parse_parameters(model.total_parameters) / 1e9
        if model.active_parameters:
            explicit["active_parameters"] = api.parse_parameters(model.active_parameters) / 1e9
        if model.experts is not None:
            explicit["routed_experts"] = model.experts
        if model.experts_per_token is not None:
            explicit["experts_per_token"] = model.experts_per_token
    if model.dtype is not None:
        explicit["native_dtype"] = model.dtype

    if entry is not None:
        return entry.model_copy(update=explicit)
    if "total_parameters" not in explicit:
        field = "spec.model.architecture" if model.architecture else "spec.model.name"
        raise CatalogError(
            f"{field}: {key!r} is not in the model catalog; set spec.model.architecture to a "
            "catalog model (`breakeven models` lists them) or give spec.model.totalParameters "
            "(and, for an MoE model, activeParameters, experts and expertsPerToken)"
        )
    explicit.setdefault("active_parameters", explicit["total_parameters"])
    return Architecture.model_validate(
        {"name": model.name, "from_catalog": False, "confirmed": False, **explicit}
    )
