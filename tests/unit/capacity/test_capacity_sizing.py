"""Unit tests of the capacity model's sizing, roofline and cost (hand-checkable cases)."""

from __future__ import annotations

import math

import pytest
from builders import arch

from breakeven.core import api, capacity, facts

FP8, BF16 = api.Dtype.FP8, api.Dtype.BF16
W = capacity.Workload()


def test_deepseek_v3_fp8_on_one_h200_node_is_ep8(deepseek):
    est = capacity.size_moe(deepseek, capacity.synthetic_pool("H200", 8), FP8, W)
    assert est.feasible, est.note
    assert (est.ep, est.dp, est.tp, est.gpus, est.nodes) == (8, 8, 1, 8, 1)
    assert (256 + est.redundant_experts) % 8 == 0
    assert est.experts_per_rank == (256 + est.redundant_experts) // 8
    assert est.redundant_experts == 8  # floor of one slot per rank; 264 / 8 = 33


def test_deepseek_v3_fp8_needs_two_h100_nodes_for_ep(deepseek):
    est = capacity.size_moe(deepseek, capacity.synthetic_pool("H100", 32), FP8, W)
    assert est.feasible
    assert (est.ep, est.nodes) == (16, 2)


def test_llama_405b_bf16_needs_pipeline_stages_across_h100_nodes():
    model = arch("meta-llama/Llama-3.1-405B-Instruct")
    assert not capacity.size_dense(model, capacity.synthetic_pool("H100", 8), BF16, W).feasible
    est = capacity.size_dense(model, capacity.synthetic_pool("H100", 16), BF16, W)
    assert est.feasible
    assert (est.tp, est.pp, est.gpus, est.nodes) == (8, 2, 16, 2)


def test_l40s_node_cannot_host_deepseek(deepseek):
    node = capacity.synthetic_pool("L40S", 8)
    for est in (
        capacity.size_moe(deepseek, node, FP8, W),
        capacity.size_dense(deepseek, node, FP8, W),
    ):
        assert not est.feasible
        assert "does not fit" in est.note


def test_small_model_fits_one_gpu():
    est = capacity.size_dense(
        arch("meta-llama/Llama-3.1-8B-Instruct"), capacity.synthetic_pool("H100", 8), BF16, W
    )
    assert (est.tp, est.pp, est.gpus, est.pool_replicas) == (1, 1, 1, 8)


def test_unknown_gpu_is_infeasible_with_a_reason(deepseek):
    unknown = capacity.synthetic_pool("H100", 8).model_copy(
        update={"gpu": "Mystery-9000", "known": False}
    )
    for est in (
        capacity.size_dense(deepseek, unknown, FP8, W),
        capacity.size_moe(deepseek, unknown, FP8, W),
    ):
        assert not est.feasible
        assert "Mystery-9000" in est.note


def test_moe_mode_of_a_dense_model_is_infeasible():
    est = capacity.size_moe(
        arch("meta-llama/Llama-3.1-8B-Instruct"), capacity.synthetic_pool("H100", 8), BF16, W
    )
    assert not est.feasible and "dense" in est.note


@pytest.mark.parametrize(
    ("name", "per_token"),
    [
        ("deepseek-ai/DeepSeek-V3", (512 + 64) * 61 * 2),  # MLA
        ("meta-llama/Llama-3.1-70B-Instruct", 2 * 8 * 128 * 80 * 2),  # GQA
    ],
)
def test_kv_bytes_per_token_match_the_fact_sheet(name, per_token):
    s = capacity.shape(arch(name))
    assert capacity.kv_bytes_per_sequence(s, 1000, BF16) == pytest.approx(per_token * 1000)


def test_sliding_window_layers_hold_at_most_the_window():
    s = capacity.shape(arch("openai/gpt-oss-120b"))
    per_layer = 2 * 8 * 64 * 2
    long = capacity.kv_bytes_per_sequence(s, 100_000, BF16)
    assert long == pytest.approx(per_layer * (18 * 100_000 + 18 * 128))


def test_expert_parameters_from_totals_agree_with_layer_shapes(deepseek):
    _, routed = capacity.split_parameters(deepseek)
    from_shapes = 58 * 256 * 3 * 7168 * 2048
    assert routed == pytest.approx(from_shapes, rel=0.01)


def test_gpt_oss_keeps_attention_in_bf16_at_fp4():
    model = arch("openai/gpt-oss-120b")
    shared, routed = capacity.weight_bytes(model, api.Dtype.FP4)
    shared_params, routed_params = capacity.split_parameters(model)
    assert shared == pytest.approx(shared_params * 2)
    assert routed == pytest.approx(routed_params * 0.5625)


@pytest.mark.parametrize(
    ("routed", "ep", "redundant"),
    [
        (256, 8, 8),
        (256, 32, 32),
        (256, 64, 64),
        (8, 16, 8),
        (384, 24, 24),
        (128, 2, 2),
        (16, 12, 20),
    ],
)
def test_redundant_experts(routed, ep, redundant):
    assert capacity.redundant_experts(routed, ep) == redundant


def test_touched_experts_grow_with_the_batch(deepseek):
    one = capacity.touched_fraction(deepseek, 1)
    assert one == pytest.approx(8 / 256)
    assert capacity.touched_fraction(deepseek, 64) < capacity.touched_fraction(deepseek, 512)


def test_dense_70b_decode_on_h200_is_memory_bound():
    est = capacity.size_dense(
        arch("meta-llama/Llama-3.3-70B-Instruct"), capacity.synthetic_pool("H200", 8), FP8, W
    )
    assert est.decode_bound_by == "memory"
    assert est.inputs["decode_memory_ms"] > est.inputs["decode_compute_ms"]


def test_imbalance_slows_the_moe_step(deepseek):
    node = capacity.synthetic_pool("H200", 8)
    even = capacity.moe_at(deepseek, node, FP8, W, ep=8, imbalance=1.0, batch=64)
    skewed = capacity.moe_at(deepseek, node, FP8, W, ep=8, imbalance=2.5, batch=64)
    assert skewed.itl_ms > even.itl_ms
    assert skewed.inputs["imbalance_source"] == "observed"


def test_cross_node_ep_pays_for_the_fabric(deepseek):
    infiniband = capacity.moe_at(
        deepseek, capacity.synthetic_pool("H100", 16), FP8, W, ep=16, batch=32
    )
    ethernet = capacity.moe_at(
        deepseek, capacity.synthetic_pool("H100", 16, "ethernet"), FP8, W, ep=16, batch=32
    )
    one_domain = capacity.moe_at(
        deepseek, capacity.synthetic_pool("H100", 16, "nvlink"), FP8, W, ep=16, batch=32
    )
    assert one_domain.inputs["decode_comm_ms"] < infiniband.inputs["decode_comm_ms"]
    assert infiniband.inputs["decode_comm_ms"] < ethernet.inputs["decode_comm_ms"]


def test_itl_target_bounds_the_step():
    model, node = arch("meta-llama/Llama-3.3-70B-Instruct"), capacity.synthetic_pool("H100", 8)
    free = capacity.size_dense(model, node, FP8, W)
    bounded = capacity.size_dense(model, node, FP8, W.model_copy(update={"itl_target_ms": 25}))
    assert bounded.itl_ms <= 25 < free.itl_ms
    assert bounded.batch < free.batch
    impossible = capacity.size_dense(model, node, FP8, W.model_copy(update={"itl_target_ms": 1}))
    assert impossible.batch == 1 and "out of reach" in impossible.note


def test_cost_at_full_load_and_at_observed_demand():
    est = capacity.size_dense(
        arch("meta-llama/Llama-3.1-8B-Instruct"),
        capacity.synthetic_pool("H100", 8),
        BF16,
        W,
        hourly_cost=2.0,
    )
    per_gpu = est.output_tokens_per_second_per_gpu
    assert est.dollars_per_million_tokens == pytest.approx(2.0 / (per_gpu * 3600) * 1e6)
    demand = est.total_tokens_per_second * 2.5  # needs 3 replicas
    output = demand * 1000 / 2000
    assert est.dollars_per_million_at(demand) == pytest.approx(
        3 * est.gpus * 2.0 / (output * 3600) * 1e6
    )
    status = est.to_status(demand)
    assert isinstance(status, api.ModeEstimate)
    assert status.dollars_per_million_tokens_observed == pytest.approx(
        est.dollars_per_million_at(demand), rel=1e-3
    )
    assert status.dollars_per_million_tokens_observed >= status.dollars_per_million_tokens
    assert est.to_status(None).dollars_per_million_tokens_observed is None
    assert est.to_status(0.0).dollars_per_million_tokens_observed is None


def test_default_price_comes_from_the_hardware_table(deepseek):
    est = capacity.size_moe(deepseek, capacity.synthetic_pool("H200", 8), FP8, W)
    assert est.hourly_cost_per_gpu == 3.5


def test_every_estimate_carries_its_inputs(deepseek):
    est = capacity.size_moe(deepseek, capacity.synthetic_pool("H200", 8), FP8, W)
    for key in (
        "weights_gb_per_gpu",
        "kv_bytes_per_token",
        "decode_step_ms",
        "hbm_tbs",
        "imbalance",
        "batch_per_engine",
        "prefill_ms_per_request",
    ):
        assert key in est.inputs
    # Redo the decode step by hand from the inputs.
    step = max(est.inputs["decode_memory_ms"], est.inputs["decode_compute_ms"])
    assert est.inputs["decode_step_ms"] == pytest.approx(
        step + est.inputs["decode_comm_ms"], abs=0.01
    )
    tokens_per_s = est.batch * est.ep / (est.itl_ms / 1000) / est.gpus
    assert est.decode_tokens_per_second_per_gpu == pytest.approx(tokens_per_s)


def test_output_rate_combines_prefill_and_decode():
    est = capacity.size_dense(
        arch("meta-llama/Llama-3.1-8B-Instruct"), capacity.synthetic_pool("H100", 1), BF16, W
    )
    request_ms = est.inputs["prefill_ms_per_request"] + est.inputs["decode_ms_per_request"]
    assert est.output_tokens_per_second_per_gpu == pytest.approx(
        1000 / (request_ms / 1000), rel=1e-3
    )
    assert est.total_tokens_per_second == pytest.approx(2 * est.output_tokens_per_second_per_gpu)


def test_synthetic_pool_shapes():
    gb200 = capacity.synthetic_pool("GB200", 16)
    assert (gb200.gpus_per_node, gb200.node_count) == (4, 4)
    rack = capacity.synthetic_pool("H100", 16, "nvlink")
    assert rack.largest_clique_gpus == 16
    pcie = capacity.synthetic_pool("H100", 8, "pcie")
    assert not pcie.intra_node_nvlink
    assert capacity.synthetic_pool("H100", 4).gpus_per_node == 4


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"model": "no/such-model"}, "--model"),
        ({"gpu": "TPU-v5"}, "--gpu"),
        ({"gpus": 12}, "--gpus"),
        ({"gpus": 0}, "--gpus"),
        ({"mode": "sideways"}, "--mode"),
        ({"dtype": "int3"}, "--dtype"),
        ({"fabric": "carrier-pigeon"}, "--fabric"),
    ],
)
def test_estimate_names_the_bad_flag(kwargs, flag):
    args = {"model": "deepseek-ai/DeepSeek-V3", "gpu": "H200", "gpus": 8, "mode": "moe", **kwargs}
    with pytest.raises(capacity.EstimateError) as err:
        capacity.estimate(**args)
    assert err.value.field == flag.removeprefix("--")


def test_estimate_by_names(deepseek):
    est = capacity.estimate("deepseek-ai/DeepSeek-V3", "H200", 8, "moe")
    assert est == capacity.size_moe(deepseek, capacity.synthetic_pool("H200", 8), FP8, W)
    assert capacity.estimate("deepseek-ai/DeepSeek-V3", "h200", 8, api.ServingMode.DENSE).tp == 8


def test_model_given_only_by_numbers_is_approximated():
    spec = api.ModelSpec(
        name="acme/secret-moe",
        totalParameters="300B",
        activeParameters="20B",
        experts=64,
        expertsPerToken=4,
    )
    from breakeven.core import catalog

    model = catalog.resolve(spec)
    est = capacity.size_moe(model, capacity.synthetic_pool("H200", 16), BF16, W)
    assert est.feasible
    assert "approximate" in est.note
    assert math.isfinite(est.output_tokens_per_second_per_gpu)


def test_the_pools_reported_gpu_memory_wins_over_the_table(deepseek):
    # Nodes labelled with less memory than the datasheet (a MIG slice, a smaller SKU).
    small: facts.Pool = capacity.synthetic_pool("H200", 8).model_copy(
        update={"gpu_memory_gb": 80.0}
    )
    assert capacity.size_moe(deepseek, capacity.synthetic_pool("H200", 8), FP8, W).feasible
    assert not capacity.size_moe(deepseek, small, FP8, W).feasible
