"""The model catalog: every model the brief names, aliases, explicit numbers, clear errors."""

from __future__ import annotations

import pytest

from breakeven.core import api, catalog

REQUIRED = [
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1",
    "moonshotai/Kimi-K2-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-30B-A3B",
    "openai/gpt-oss-120b",
    "openai/gpt-oss-20b",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
]
DENSE = {
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
}


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_model_is_in_the_catalog(name: str) -> None:
    arch = catalog.get(name)
    assert arch is not None
    assert arch.name == name
    assert name in catalog.names()
    assert arch.is_moe == (name not in DENSE)
    assert 0 < arch.active_parameters <= arch.total_parameters
    if arch.is_moe:
        assert arch.experts_per_token <= arch.routed_experts
        assert arch.sparsity < 1
    else:
        assert arch.sparsity == 1


def test_deepseek_v3_matches_its_published_shape() -> None:
    arch = catalog.get("deepseek-ai/DeepSeek-V3")
    assert arch is not None
    # 671B total / 37B active, 256 routed experts top-8 (the article and the model card)
    assert (arch.total_parameters, arch.active_parameters) == (671, 37)
    assert (arch.routed_experts, arch.experts_per_token) == (256, 8)
    assert arch.sparsity == pytest.approx(0.055, abs=0.001)
    assert arch.native_dtype == api.Dtype.FP8


def test_lookup_is_case_insensitive_and_knows_aliases() -> None:
    canonical = catalog.get("deepseek-ai/DeepSeek-V3")
    assert catalog.get("DEEPSEEK-AI/deepseek-v3") is canonical
    assert catalog.get("deepseek-ai/DeepSeek-V3-0324") is canonical
    assert catalog.get("meta-llama/Meta-Llama-3.1-70B-Instruct") is catalog.get(
        "meta-llama/Llama-3.1-70B-Instruct"
    )
    assert catalog.get("acme/unknown") is None


def test_names_lists_each_model_once() -> None:
    names = catalog.names()
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)


def test_resolve_uses_the_architecture_key_for_a_fine_tune() -> None:
    spec = api.ModelSpec(name="acme/ds-ft", architecture="deepseek-ai/DeepSeek-V3")
    arch = catalog.resolve(spec)
    assert arch.total_parameters == 671
    assert arch.from_catalog


def test_explicit_numbers_override_the_catalog() -> None:
    spec = api.ModelSpec(
        name="deepseek-ai/DeepSeek-V3", active_parameters="40B", dtype=api.Dtype.BF16
    )
    arch = catalog.resolve(spec)
    assert (arch.total_parameters, arch.active_parameters) == (671, 40)
    assert arch.native_dtype == api.Dtype.BF16


def test_a_model_given_only_by_numbers() -> None:
    spec = api.ModelSpec(
        name="acme/moe-100b",
        total_parameters="100B",
        active_parameters="12B",
        experts=64,
        experts_per_token=4,
    )
    arch = catalog.resolve(spec)
    assert (arch.total_parameters, arch.active_parameters) == (100, 12)
    assert arch.is_moe
    assert not arch.from_catalog
    assert not arch.confirmed
    assert not arch.exact


def test_a_dense_model_given_only_by_its_total_is_dense() -> None:
    arch = catalog.resolve(api.ModelSpec(name="acme/dense", total_parameters="8e9"))
    assert arch.total_parameters == 8
    assert arch.active_parameters == 8
    assert not arch.is_moe


def test_an_unknown_model_names_the_field_to_set() -> None:
    with pytest.raises(catalog.CatalogError) as info:
        catalog.resolve(api.ModelSpec(name="acme/mystery"))
    message = str(info.value)
    assert message.startswith("spec.model.name: 'acme/mystery' is not in the model catalog")
    assert "spec.model.architecture" in message
    assert "totalParameters" in message


def test_an_unknown_architecture_key_blames_the_architecture_field() -> None:
    with pytest.raises(catalog.CatalogError, match=r"^spec\.model\.architecture: 'acme/base'"):
        catalog.resolve(api.ModelSpec(name="acme/ft", architecture="acme/base"))


def test_an_unknown_dense_baseline_is_an_error_too() -> None:
    with pytest.raises(catalog.CatalogError):
        catalog.resolve(api.DenseBaseline(name="acme/distilled"))
