"""The sizing searches' shortcuts give what the plain scans they replace would give.

`size_moe` skips the EP sizes that cannot hold the weights before sizing the rest in order;
`moe_group_sizes` builds its list in order instead of sorting a set. These tests pin both to the
plain definitions.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from breakeven.core import api, capacity, catalog, facts, hardware

MOE_MODELS = [n for n in catalog.names() if (a := catalog.get(n)) is not None and a.is_moe]


def _pool(gpus_per_node: int, nodes: int, gpu: str = "H100") -> facts.Pool:
    hw = hardware.gpu(gpu)
    return facts.Pool(
        gpu=hw.key,
        product=hw.key,
        known=True,
        gpus_per_node=gpus_per_node,
        gpu_memory_gb=hw.memory_gb,
        nodes=tuple(f"n{i}" for i in range(nodes)),
        ready_nodes=nodes,
        intra_node_nvlink=gpus_per_node > 1,
        fabrics={"infiniband": nodes} if nodes else {},
    )


def _sizes_by_definition(pool: facts.Pool) -> list[int]:
    """Powers of two inside a node and whole nodes, 2..total, sorted without duplicates."""
    per_node = pool.gpus_per_node
    inside = [2**k for k in range(per_node.bit_length()) if 2**k <= per_node]
    whole = [per_node * k for k in range(1, pool.node_count + 1)]
    return sorted({n for n in inside + whole if 2 <= n <= pool.total_gpus})


def test_group_sizes_match_their_definition() -> None:
    for per_node in range(0, 17):
        for nodes in range(0, 12):
            pool = _pool(per_node, nodes)
            assert capacity.moe_group_sizes(pool) == _sizes_by_definition(pool), (per_node, nodes)


@given(routed=st.integers(1, 512))
def test_experts_per_rank_never_rise_with_the_group(routed: int) -> None:
    per_rank = [
        (routed + capacity.redundant_experts(routed, ep)) // ep for ep in range(1, 2 * routed + 40)
    ]
    assert all(a >= b for a, b in itertools.pairwise(per_rank))


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(MOE_MODELS),
    gpu=st.sampled_from(list(hardware.gpus())),
    nodes=st.integers(1, 64),
    dtype=st.sampled_from([api.Dtype.BF16, api.Dtype.FP8, api.Dtype.FP4]),
    isl=st.integers(1, 64_000),
    osl=st.integers(1, 16_000),
)
def test_chosen_group_is_the_first_that_fits(
    name: str, gpu: str, nodes: int, dtype: api.Dtype, isl: int, osl: int
) -> None:
    arch = catalog.get(name)
    assert arch is not None
    pool = capacity.synthetic_pool(gpu, capacity.NODE_GPUS.get(gpu, 8) * nodes)
    hw = pool.hardware
    assert hw is not None
    workload = capacity.Workload(isl=isl, osl=osl)
    need_gb = capacity._min_kv_bytes(capacity.shape(arch), workload) / 1e9
    first = next(
        (
            n
            for n in capacity.moe_group_sizes(pool)
            if capacity.moe_memory(arch, hw, pool, dtype, n)[0] >= need_gb
        ),
        None,
    )
    sized = capacity.size_moe(arch, pool, dtype, workload)
    if first is None:
        assert not sized.feasible
    else:
        assert sized.ep == first
        assert sized == capacity.moe_at(arch, pool, dtype, workload, ep=first)
