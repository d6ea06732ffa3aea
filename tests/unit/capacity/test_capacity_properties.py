"""Property tests of the capacity model: the monotonic facts any sane model must keep."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from breakeven.core import api, capacity, catalog, hardware

MODELS = catalog.names()
GPUS = list(hardware.gpus())
DTYPES = [api.Dtype.BF16, api.Dtype.FP8, api.Dtype.FP4]
MOE_MODELS = [n for n in MODELS if (a := catalog.get(n)) is not None and a.is_moe]

workloads = st.builds(
    capacity.Workload,
    isl=st.integers(1, 16_000),
    osl=st.integers(1, 8_000),
    itl_target_ms=st.one_of(st.none(), st.floats(5, 500)),
)


def _arch(name: str) -> catalog.Architecture:
    found = catalog.get(name)
    assert found is not None
    return found


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS),
    dtype=st.sampled_from(DTYPES),
    workload=workloads,
    batch=st.integers(1, 512),
    faster=st.floats(1.0, 8.0),
    moe=st.booleans(),
)
def test_more_memory_bandwidth_never_makes_a_step_slower(
    name, gpu, dtype, workload, batch, faster, moe
):
    model = _arch(name)
    pool = capacity.synthetic_pool(gpu, 64)
    base = hardware.gpus()[gpu]
    quick = base.model_copy(update={"bandwidth_tbs": base.bandwidth_tbs * faster})
    if moe and model.is_moe:
        sized = capacity.size_moe(model, pool, dtype, workload)
        if not sized.feasible:
            return
        slow = capacity.moe_at(model, pool, dtype, workload, ep=sized.ep, batch=batch, gpu=base)
        fast = capacity.moe_at(model, pool, dtype, workload, ep=sized.ep, batch=batch, gpu=quick)
        free_slow = capacity.moe_at(model, pool, dtype, workload, ep=sized.ep, gpu=base)
        free_fast = capacity.moe_at(model, pool, dtype, workload, ep=sized.ep, gpu=quick)
    else:
        sized = capacity.size_dense(model, pool, dtype, workload)
        if not sized.feasible:
            return
        kw = {"tp": sized.tp, "pp": sized.pp}
        slow = capacity.dense_at(model, pool, dtype, workload, batch=batch, gpu=base, **kw)
        fast = capacity.dense_at(model, pool, dtype, workload, batch=batch, gpu=quick, **kw)
        free_slow = capacity.dense_at(model, pool, dtype, workload, gpu=base, **kw)
        free_fast = capacity.dense_at(model, pool, dtype, workload, gpu=quick, **kw)
    assert fast.itl_ms <= slow.itl_ms * (1 + 1e-9)
    assert fast.output_tokens_per_second_per_gpu >= slow.output_tokens_per_second_per_gpu * (
        1 - 1e-9
    )
    # With the batch left to the model (and any ITL target), throughput never drops either.
    assert free_fast.output_tokens_per_second_per_gpu >= (
        free_slow.output_tokens_per_second_per_gpu * (1 - 1e-9)
    )


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS),
    nodes=st.integers(1, 8),
    dtype=st.sampled_from(DTYPES),
    growth=st.floats(1.0, 6.0),
    moe=st.booleans(),
)
def test_a_bigger_model_never_fits_on_fewer_gpus(name, gpu, nodes, dtype, growth, moe):
    small = _arch(name)
    if moe and not small.is_moe:
        return
    # Bigger in every part: shared and expert weights both grow. Growing the total alone would
    # describe an impossible model (its top-k experts would outweigh its active parameters),
    # which split_parameters clamps to no shared weights at all (hypothesis found one).
    big = small.model_copy(
        update={
            "total_parameters": small.total_parameters * growth,
            "active_parameters": small.active_parameters * growth,
        }
    )
    per_node = capacity.NODE_GPUS.get(gpu, 8)
    pool = capacity.synthetic_pool(gpu, per_node * nodes)
    size = capacity.size_moe if moe else capacity.size_dense
    a = size(small, pool, dtype, capacity.Workload())
    b = size(big, pool, dtype, capacity.Workload())
    if not a.feasible:
        assert not b.feasible
    elif b.feasible:
        assert b.gpus >= a.gpus


@settings(max_examples=300, deadline=None)
@given(routed=st.integers(1, 1024), ep=st.integers(2, 512))
def test_redundant_experts_always_divide_evenly(routed, ep):
    redundant = capacity.redundant_experts(routed, ep)
    assert redundant >= 0
    assert (routed + redundant) % ep == 0
    assert (routed + redundant) // ep >= 1
    assert redundant < ep + capacity.REDUNDANT_EXPERTS_CAP  # the floor plus less than one round


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(MOE_MODELS),
    gpu=st.sampled_from(GPUS),
    nodes=st.integers(1, 16),
    dtype=st.sampled_from(DTYPES),
    experts=st.integers(2, 600),
    top_k=st.integers(1, 16),
)
def test_moe_sizing_always_divides_experts_evenly(name, gpu, nodes, dtype, experts, top_k):
    model = _arch(name).model_copy(
        update={"routed_experts": experts, "experts_per_token": min(top_k, experts)}
    )
    pool = capacity.synthetic_pool(gpu, capacity.NODE_GPUS.get(gpu, 8) * nodes)
    est = capacity.size_moe(model, pool, dtype, capacity.Workload())
    if est.feasible:
        assert est.experts_per_rank * est.ep == experts + est.redundant_experts
        assert est.gpus == est.ep == est.dp and est.tp == 1
        assert est.nodes == -(-est.ep // pool.gpus_per_node)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    gpu=st.sampled_from(GPUS),
    low=st.floats(5, 200),
    more=st.floats(0, 300),
)
def test_a_looser_itl_target_never_shrinks_the_batch(name, gpu, low, more):
    model = _arch(name)
    pool = capacity.synthetic_pool(gpu, 32)
    tight = capacity.size_dense(
        model, pool, model.native_dtype, capacity.Workload(itl_target_ms=low)
    )
    loose = capacity.size_dense(
        model, pool, model.native_dtype, capacity.Workload(itl_target_ms=low + more)
    )
    if tight.feasible:
        assert loose.batch >= tight.batch
        if "out of reach" not in tight.note:
            assert tight.itl_ms <= low * (1 + 1e-9)
