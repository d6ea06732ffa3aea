"""Capacity and cost model: sizes dense and EP/DP MoE deployments and estimates throughput and cost.

The rubric needs numbers (will traffic keep every EP rank busy? is dense decode bandwidth-bound?
what does a million tokens cost each way?), and a person must be able to check them by hand. So
this is a small roofline model, not a simulator; docs/capacity-model.md derives each step and
compares it with every published figure in the reference benchmarks.

    architecture + GPU pool + dtype + workload
        -> memory fit        weights + runtime overhead + KV room  -> tp/pp, or the EP group
        -> decode step       max(bytes / HBM, FLOPs / peak) + TP all-reduce / EP all-to-all / PP
        -> batch             the most sequences the KV cache holds (or the ITL target allows)
        -> per request       prefill time + osl decode steps shared by the batch
        -> tokens/s per GPU  -> $ per million output tokens

Every `Estimate` carries the numbers it used in `inputs` and which bound limited it.

Purely computational: no I/O, no clock, no kopf/kubernetes/httpx. The planner (`planning`) and
`breakeven estimate` call it; the operator writes the result to status.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from breakeven.core import api, catalog, facts, hardware
from breakeven.core.errors import EstimateError as EstimateError

Bound = Literal["memory", "compute", "communication"]

# ----------------------------------------------------------------------------- model constants
# Each is a documented figure (docs/capacity-model.md, "Constants"); none is fitted per row.

GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's default --gpu-memory-utilization: the share of HBM the engine may use."""

BYTES_PER_PARAM: dict[api.Dtype, float] = {
    api.Dtype.BF16: 2.0,
    api.Dtype.FP16: 2.0,
    api.Dtype.FP8: 1.0,  # block scales (one fp32 per 128x128) add under 0.1%
    api.Dtype.FP4: 0.5625,  # NVFP4: 4-bit values + one fp8 scale per 16 (MXFP4: 0.53)
}

RUNTIME_OVERHEAD_GB = 2.0
"""Per GPU, outside weights and KV: CUDA context, CUDA graphs, NCCL buffers, sampler."""
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 24.0
"""Peak activations of one prefill chunk: this many bytes x hidden size x chunk tokens."""
EP_BUFFER_GB = 2.0
"""Per GPU in an EP group: all-to-all (DeepEP/pplx) send and receive buffers."""

PREFILL_CHUNK_TOKENS = 8192
"""vLLM's --max-num-batched-tokens on large GPUs: prompt tokens per engine step."""
MAX_NUM_SEQS = 1024
"""vLLM V1's --max-num-seqs on H100-class GPUs: the cap on concurrent sequences per engine."""
MIN_KV_SEQUENCES = 32
"""A layout 'fits' only with KV room for this many full-length (isl+osl) sequences."""

HBM_EFFICIENCY = 0.75
"""Share of datasheet HBM bandwidth that decode kernels reach (one global factor)."""
COMPUTE_EFFICIENCY = 0.45
"""Share of datasheet dense peak that serving GEMMs and attention reach (one global factor)."""
EXPERT_GEMM_EFFICIENCY = 0.50
"""Routed-expert FLOPs run at this share of COMPUTE_EFFICIENCY: grouped GEMMs split the batch
into one small GEMM per expert and add routing, permute and un-permute kernels. Calibrated once
on MLPerf's same-system Mixtral/Llama-2-70B ratio (docs/capacity-model.md), not per row."""

ALLREDUCE_EFFICIENCY = 0.70
"""Bus bandwidth of a TP all-reduce as a share of the link's one-direction figure."""
ALLREDUCE_LATENCY_S = {"nvlink": 8e-6, "pcie": 25e-6}
"""Fixed cost of one small all-reduce (custom all-reduce on NVLink; NCCL over PCIe)."""
A2A_NVLINK_EFFICIENCY = 0.34
"""EP all-to-all over NVLink: DeepEP measures ~155 GB/s on 450 GB/s links (H800, EP8)."""
A2A_FABRIC_EFFICIENCY = 1.0
"""EP all-to-all over RDMA: DeepEP measures 43-58 GB/s on 50 GB/s NDR, so the nominal figure."""
A2A_LATENCY_S = 25e-6
"""Fixed cost of one dispatch or one combine; with the bandwidths above this reproduces DeepEP's
published 77 us / 114 us (EP8) and 194 us / 369 us (EP256) at 128 tokens per rank."""
P2P_LATENCY_S = 20e-6
"""Fixed cost of sending activations from one pipeline stage to the next."""

DEFAULT_IMBALANCE = 1.3
"""Hottest EP rank's load over the mean with EPLB on, when nothing was observed. TensorRT-LLM
measured 1.11 with offline EPLB and 2.56 without (DeepSeek-R1, EP32); online EPLB lags hot
experts that shift over tens to hundreds of iterations, so between the two, nearer the first."""
REDUNDANT_EXPERTS_CAP = 32
"""EPLB's redundant-expert floor is one slot per rank, capped at vLLM's large-scale guidance."""

NODE_GPUS = {"GB200": 4}
"""GPUs per node for synthetic pools (`breakeven estimate`); 8 otherwise."""

FABRICS = ("nvlink", "infiniband", "roce", "efa", "ethernet", "pcie")


# ------------------------------------------------------------------------------------- models


class Workload(BaseModel):
    """The request shape an estimate is for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    isl: int = Field(default=1000, ge=1, description="prompt tokens per request")
    osl: int = Field(default=1000, ge=1, description="output tokens per request")
    itl_target_ms: float | None = Field(default=None, gt=0)
    max_model_len: int | None = Field(default=None, ge=1)
    kv_dtype: api.Dtype | None = Field(
        default=None, description="KV-cache precision; None = bf16 (vLLM's `auto`)"
    )
    max_num_seqs: int = Field(default=MAX_NUM_SEQS, ge=1, description="cap per engine")

    @property
    def output_share(self) -> float:
        """Output tokens as a share of prompt plus output tokens."""
        return self.osl / (self.isl + self.osl)


class Estimate(BaseModel):
    """One sized deployment (a dense replica or one MoE EP group) and what it can do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: api.ServingMode
    feasible: bool = True
    note: str = ""
    gpu: str = ""
    gpus: int = 0
    nodes: int = 0
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    experts_per_rank: int = 0
    redundant_experts: int = 0
    batch: int = 0
    output_tokens_per_second_per_gpu: float = 0.0
    total_tokens_per_second: float = 0.0
    decode_bound_by: Bound | None = None
    bound_by: Bound | None = None
    hourly_cost_per_gpu: float = 0.0
    dollars_per_million_tokens: float | None = None
    inputs: dict[str, float | int | str] = Field(default_factory=dict)
    # Added by the capacity model (beyond the lead's skeleton):
    itl_ms: float = Field(default=0.0, description="decode step time per token at `batch`")
    decode_tokens_per_second_per_gpu: float = Field(
        default=0.0, description="output tokens/s per GPU with prefill elsewhere (P/D decode)"
    )
    pool_replicas: int = Field(default=0, description="replicas or groups the pool can hold")
    workload: Workload = Field(default_factory=Workload)

    def dollars_per_million_at(self, total_tokens_per_second: float) -> float | None:
        """$ per million output tokens when serving this demand (prompt+output tokens/s).

        Replicas needed = ceil(demand / capacity); they cost their GPU-hours whether busy or
        not, and serve only the demand's output share. None when infeasible or no demand.
        """
        if not self.feasible or self.total_tokens_per_second <= 0 or total_tokens_per_second <= 0:
            return None
        replicas = math.ceil(total_tokens_per_second / self.total_tokens_per_second)
        dollars_per_hour = replicas * self.gpus * self.hourly_cost_per_gpu
        output_per_second = total_tokens_per_second * self.workload.output_share
        return dollars_per_hour / (output_per_second * 3600) * 1e6

    def to_status(self, observed_total_tokens_per_second: float | None) -> api.ModeEstimate:
        """The status form of this estimate, with the cost at the observed demand if known."""
        observed = (
            self.dollars_per_million_at(observed_total_tokens_per_second)
            if observed_total_tokens_per_second is not None
            else None
        )
        return api.ModeEstimate(
            mode=self.mode,
            feasible=self.feasible,
            gpu=self.gpu,
            gpus=self.gpus,
            nodes=self.nodes,
            tp=self.tp,
            pp=self.pp,
            dp=self.dp,
            ep=self.ep,
            output_tokens_per_second_per_gpu=round(self.output_tokens_per_second_per_gpu, 1),
            total_tokens_per_second=round(self.total_tokens_per_second, 1),
            bound_by=self.bound_by or "",
            dollars_per_million_tokens=_round(self.dollars_per_million_tokens),
            dollars_per_million_tokens_observed=_round(observed),
            note=self.note,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# ------------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class Shape:
    """The per-layer numbers the model needs, exact from the catalog or approximated.

    Approximations (a model given only by parameter counts): hidden = (active x 128 / 12)^(1/3)
    and layers = hidden / 128 (dense transformers have ~12 hidden^2 parameters per layer and
    ~128 hidden units per layer of depth); GQA with 8 KV heads of 128; all layers MoE.
    """

    layers: int
    moe_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mla: bool
    kv_latent: int  # MLA: kv_lora_rank + rope_dim cached per layer
    mla_value: int  # MLA: kv_lora_rank (the part attention reads twice)
    window_layers: int
    window: int
    exact: bool


@functools.lru_cache(maxsize=256)
def shape(arch: catalog.Architecture) -> Shape:
    """Per-layer shape of a model; purely computational."""
    hidden = arch.hidden_size
    layers = arch.layers
    if hidden is None or layers is None:
        guess = (arch.active_parameters * 1e9 * 128 / 12) ** (1 / 3)
        hidden = hidden or int(round(guess / 128) * 128)
        layers = layers or max(1, round(hidden / 128))
    att = arch.attention
    heads = att.heads if att else max(1, hidden // 128)
    head_dim = (att.head_dim if att and att.head_dim else None) or max(1, hidden // heads)
    kv_heads = (att.kv_heads if att and att.kv_heads else None) or min(8, heads)
    mla = att is not None and att.kind == "mla"
    kv_lora = (att.kv_lora_rank or 512) if att and mla else 0
    rope = (att.rope_dim or 64) if att and mla else 0
    moe_layers = arch.moe_layers or (layers if arch.is_moe else 0)
    return Shape(
        layers=layers,
        moe_layers=min(moe_layers, layers),
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        mla=mla,
        kv_latent=kv_lora + rope,
        mla_value=kv_lora,
        window_layers=att.sliding_window_layers if att and att.sliding_window else 0,
        window=(att.sliding_window or 0) if att else 0,
        exact=arch.exact and att is not None,
    )


def split_parameters(arch: catalog.Architecture) -> tuple[float, float]:
    """(shared, routed-expert) parameter counts, in parameters (not billions).

    From the published totals alone: with n routed experts and top-k, total = S + E and
    active = S + E k/n, so E = (total - active) / (1 - k/n). This matches the per-layer shapes
    within 1% for the catalog's MoE models and needs nothing a model given by numbers lacks.
    """
    total = arch.total_parameters * 1e9
    if not arch.is_moe or arch.experts_per_token >= arch.routed_experts:
        return total, 0.0
    routed = (arch.total_parameters - arch.active_parameters) * 1e9
    routed /= 1 - arch.experts_per_token / arch.routed_experts
    routed = min(max(routed, 0.0), total)
    return total - routed, routed


def weight_bytes(arch: catalog.Architecture, dtype: api.Dtype) -> tuple[float, float]:
    """(shared, routed-expert) weight bytes at a serving dtype.

    At fp4, MoE checkpoints keep the non-expert weights wider: bf16 for models that ship fp4
    experts natively (gpt-oss), fp8 otherwise (the NVFP4 DeepSeek/Llama-4 recipes).
    """
    shared, routed = split_parameters(arch)
    per = BYTES_PER_PARAM[dtype]
    shared_per = per
    if dtype == api.Dtype.FP4 and routed > 0:
        native_fp4 = arch.native_dtype == api.Dtype.FP4
        shared_per = BYTES_PER_PARAM[api.Dtype.BF16 if native_fp4 else api.Dtype.FP8]
    return shared * shared_per, routed * per


@dataclass(frozen=True)
class _Sizing:
    """One architecture at one dtype: the shape and weight figures every sizing step reads.

    Worked out once per `size_*` or `*_at` call and passed down, instead of again for every
    layout or EP size tried.
    """

    s: Shape
    shared: float  # bytes outside the routed experts (weight_bytes)
    routed: float  # bytes of all routed experts (weight_bytes)
    routed_params: float  # routed-expert parameters (split_parameters)


@functools.lru_cache(maxsize=256)
def _sizing(arch: catalog.Architecture, dtype: api.Dtype) -> _Sizing:
    """Shape, weight bytes and routed parameters of `arch` at `dtype`; purely computational."""
    shared, routed = weight_bytes(arch, dtype)
    return _Sizing(shape(arch), shared, routed, split_parameters(arch)[1])


def kv_bytes_per_sequence(s: Shape, context: float, kv_dtype: api.Dtype) -> float:
    """KV-cache bytes one sequence of `context` tokens holds (all layers, whole model).

    MLA caches (kv_lora + rope) per layer; GQA 2 x kv_heads x head_dim per layer. Sliding-window
    layers hold at most `window` tokens.
    """
    per_layer = s.kv_latent if s.mla else 2 * s.kv_heads * s.head_dim
    per_layer_bytes = per_layer * BYTES_PER_PARAM[kv_dtype]
    full = s.layers - s.window_layers
    windowed = s.window_layers * min(context, s.window)
    return per_layer_bytes * (full * context + windowed)


def touched_fraction(arch: catalog.Architecture, tokens: float) -> float:
    """Expected share of routed experts that at least one of `tokens` top-k tokens picks."""
    if not arch.is_moe:
        return 1.0
    miss = 1 - arch.experts_per_token / arch.routed_experts
    return 1.0 - float(miss ** max(tokens, 0.0))


def redundant_experts(routed: int, ep: int) -> int:
    """EPLB's redundant experts for `routed` experts on `ep` ranks.

    The smallest count >= the floor that makes (routed + redundant) divide evenly by ep. The
    floor is one slot per rank (TensorRT-LLM's 288 slots on EP32) capped at 32 (vLLM's
    large-scale guidance); with more ranks than experts it is 0 (each rank hosts replicas).
    """
    floor = min(ep, REDUNDANT_EXPERTS_CAP) if ep <= routed else 0
    return floor + (-(routed + floor)) % ep


# ------------------------------------------------------------------------------------ pools


class PoolShape(NamedTuple):
    """The facts of a GPU pool that the capacity model reads, and no others.

    Sizing works on this rather than on `facts.Pool`, so an estimate depends only on these
    fields, and can be cached by them: pools of two clusters (or of two sweeps) with the same
    GPU, node size, node count, memory and links get the same answer. Node names, readiness,
    labels and RDMA resource names do not enter the model.
    """

    gpu: str  # hardware table key, or the raw product name when unknown
    gpus_per_node: int
    node_count: int
    gpu_memory_gb: float  # from the node labels; 0 = use the hardware table's
    intra_node_nvlink: bool
    largest_clique_gpus: int  # GPUs of the pool in its largest NVLink domain
    fabric: str  # facts.Pool.fabric: the one fabric between nodes, "rdma" or "mixed"
    fabrics: tuple[str, ...]  # every fabric between nodes, in the pool's order

    @classmethod
    def of(cls, pool: facts.Pool) -> PoolShape:
        return cls(
            pool.gpu,
            pool.gpus_per_node,
            pool.node_count,
            pool.gpu_memory_gb,
            pool.intra_node_nvlink,
            pool.largest_clique_gpus,
            pool.fabric,
            tuple(pool.fabrics),
        )

    @property
    def total_gpus(self) -> int:
        return self.node_count * self.gpus_per_node


# ------------------------------------------------------------------------------- roofline


@dataclass(frozen=True)
class StepTime:
    """How long one decode step (or one request's prefill) takes, split by what it waits on.

    Seconds. (Not to be confused with `switching.Step`, a stage of a mode switch.)
    """

    memory_s: float
    compute_s: float
    comm_s: float

    @property
    def seconds(self) -> float:
        return max(self.memory_s, self.compute_s) + self.comm_s

    @property
    def bound(self) -> Bound:
        if self.comm_s > max(self.memory_s, self.compute_s):
            return "communication"
        return "memory" if self.memory_s >= self.compute_s else "compute"


def roofline(
    bytes_moved: float,
    flops: float,
    bandwidth_tbs: float,
    peak_tflops: float,
    comm_s: float = 0.0,
    expert_flops: float = 0.0,
) -> StepTime:
    """Time for one GPU to move `bytes_moved` and do `flops` (of which `expert_flops` are
    routed-expert GEMMs), plus exposed communication."""
    dense_flops = flops - expert_flops
    return StepTime(
        memory_s=bytes_moved / (bandwidth_tbs * 1e12 * HBM_EFFICIENCY),
        compute_s=(dense_flops + expert_flops / EXPERT_GEMM_EFFICIENCY)
        / (peak_tflops * 1e12 * COMPUTE_EFFICIENCY),
        comm_s=comm_s,
    )


def attention_flops_per_token(s: Shape, context: float) -> float:
    """FLOPs one new token spends attending to `context` earlier tokens (whole model)."""
    # Absorbed MLA scores over kv_lora + rope and reads values over kv_lora; GQA does QK and PV.
    mla = 2 * s.heads * (s.kv_latent + s.mla_value)
    per_layer = mla if s.mla else 4 * s.heads * s.head_dim
    full = s.layers - s.window_layers
    return per_layer * (full * context + s.window_layers * min(context, s.window))


def allreduce_s(payload_bytes: float, tp: int, link_gbs: float, latency_s: float) -> float:
    """One ring all-reduce of `payload_bytes` over `tp` GPUs."""
    if tp <= 1:
        return 0.0
    return latency_s + 2 * (tp - 1) / tp * payload_bytes / (link_gbs * 1e9 * ALLREDUCE_EFFICIENCY)


@dataclass(frozen=True)
class Links:
    """Where a replica's collectives run: bandwidths in GB/s (effective) and the domain size."""

    tp_gbs: float
    tp_latency_s: float
    nvlink_domain: int  # GPUs of the group that share one NVLink domain
    intra_a2a_gbs: float
    fabric_gbs: float
    fabric: str


def links(gpu: hardware.GPU, pool: facts.Pool, group: int) -> Links:
    """The links a group of `group` GPUs on this pool uses."""
    return _links(gpu, PoolShape.of(pool), group)


def _links(gpu: hardware.GPU, pool: PoolShape, group: int) -> Links:
    nvlink = pool.intra_node_nvlink and gpu.nvlink
    domain = max(pool.largest_clique_gpus, pool.gpus_per_node if nvlink else 1)
    fabric_name = (
        pool.fabric if pool.fabric != "mixed" else min(pool.fabrics, key=lambda f: _fabric_gbs(f))
    )
    return Links(
        tp_gbs=gpu.nvlink_gbs if nvlink else gpu.pcie_gbs,
        tp_latency_s=ALLREDUCE_LATENCY_S["nvlink" if nvlink else "pcie"],
        nvlink_domain=min(group, domain) if nvlink or pool.largest_clique_gpus else 1,
        intra_a2a_gbs=(gpu.nvlink_gbs * A2A_NVLINK_EFFICIENCY) if nvlink else gpu.pcie_gbs,
        fabric_gbs=_fabric_gbs(fabric_name) * A2A_FABRIC_EFFICIENCY,
        fabric=fabric_name,
    )


def _fabric_gbs(name: str) -> float:
    table = hardware.fabrics()
    return (table.get(name) or table["ethernet"]).bandwidth_gbs


def all_to_all_s(payload_bytes: float, ep: int, lk: Links) -> float:
    """One dispatch or combine: each rank sends `payload_bytes`, spread evenly over ep ranks.

    Traffic to ranks in the same NVLink domain and to the others over the fabric move at once;
    the slower share sets the time.
    """
    if ep <= 1:
        return 0.0
    local = min(lk.nvlink_domain, ep)
    intra = payload_bytes * max(local - 1, 0) / ep / (lk.intra_a2a_gbs * 1e9)
    inter = payload_bytes * (ep - local) / ep / (lk.fabric_gbs * 1e9)
    return A2A_LATENCY_S + max(intra, inter)


# ---------------------------------------------------------------------------------- memory


def overhead_gb(s: Shape, ep: bool) -> float:
    """Per-GPU memory outside weights and KV (see the constants)."""
    activations = PREFILL_CHUNK_TOKENS * s.hidden * ACTIVATION_BYTES_PER_TOKEN_HIDDEN / 1e9
    return RUNTIME_OVERHEAD_GB + activations + (EP_BUFFER_GB if ep else 0.0)


def _kv_dtype(workload: Workload) -> api.Dtype:
    return workload.kv_dtype or api.Dtype.BF16


def _min_kv_bytes(s: Shape, workload: Workload) -> float:
    """KV room (whole model) a layout needs to count as fitting."""
    kv = _kv_dtype(workload)
    need = MIN_KV_SEQUENCES * kv_bytes_per_sequence(s, workload.isl + workload.osl, kv)
    if workload.max_model_len:
        need = max(need, kv_bytes_per_sequence(s, workload.max_model_len, kv))
    return need


def _gpu_memory_gb(pool: PoolShape, gpu: hardware.GPU) -> float:
    return pool.gpu_memory_gb if pool.gpu_memory_gb > 0 else gpu.memory_gb


def _usable_gb(pool: PoolShape, gpu: hardware.GPU) -> float:
    """Per-GPU memory the engine may use."""
    return _gpu_memory_gb(pool, gpu) * GPU_MEMORY_UTILIZATION


def _kv_split(s: Shape, tp: int) -> int:
    """How many ways TP divides each token's KV (MLA's latent is replicated on every rank)."""
    return 1 if s.mla else min(tp, s.kv_heads)


def _heads_divide(s: Shape, tp: int) -> bool:
    kv_ok = s.kv_heads % tp == 0 or tp % s.kv_heads == 0
    return s.heads % tp == 0 and kv_ok


# ------------------------------------------------------------------------- what is sized


@dataclass(frozen=True)
class _Target:
    """What one estimate is for: a model at a dtype on one pool's GPUs, serving one workload,
    at an hourly price per GPU (None: the hardware table's)."""

    arch: catalog.Architecture
    m: _Sizing  # the model at `dtype`
    gpu: hardware.GPU  # the pool's GPU, or a what-if's
    pool: PoolShape
    dtype: api.Dtype
    workload: Workload
    hourly_cost: float | None

    @classmethod
    def of(
        cls,
        arch: catalog.Architecture,
        gpu: hardware.GPU,
        pool: PoolShape,
        dtype: api.Dtype,
        workload: Workload,
        hourly_cost: float | None,
    ) -> _Target:
        return cls(arch, _sizing(arch, dtype), gpu, pool, dtype, workload, hourly_cost)

    @property
    def context(self) -> float:
        """Tokens a sequence attends to on average while it decodes."""
        return self.workload.isl + self.workload.osl / 2


@dataclass(frozen=True)
class _Layout:
    """How one dense replica or MoE group splits its GPUs."""

    mode: api.ServingMode
    tp: int
    pp: int
    dp: int
    ep: int
    gpus: int
    nodes: int
    experts_per_rank: int = 0
    redundant_experts: int = 0


@dataclass(frozen=True)
class _Timing:
    """The chosen batch and what it takes: the decode step, time per token and one prefill."""

    decode: StepTime
    itl: float  # seconds per output token
    prefill: StepTime  # one request's prompt
    batch: int  # sequences per engine
    sequences: int  # sequences in flight in the whole replica or group
    note: str


def _gpu_of(pool: PoolShape) -> hardware.GPU | None:
    return hardware.gpus().get(pool.gpu)


def _infeasible(mode: api.ServingMode, pool: PoolShape, note: str) -> Estimate:
    return Estimate(mode=mode, feasible=False, note=note, gpu=pool.gpu)


def _unknown_gpu(mode: api.ServingMode, pool: PoolShape) -> Estimate:
    return _infeasible(mode, pool, f"GPU {pool.gpu!r} is not in the hardware table")


def _hourly(gpu: hardware.GPU, hourly_cost: float | None) -> float:
    return hourly_cost if hourly_cost is not None else gpu.hourly_cost


# ----------------------------------------------------------------------------------- dense


def _powers_of_two(limit: int) -> list[int]:
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return out


def dense_kv_free_gb(
    arch: catalog.Architecture,
    gpu: hardware.GPU,
    pool: facts.Pool,
    dtype: api.Dtype,
    tp: int,
    pp: int,
) -> float:
    """Per-GPU memory left for the KV cache with TP x PP (negative: weights do not fit)."""
    return _dense_free_gb(_sizing(arch, dtype), _usable_gb(PoolShape.of(pool), gpu), tp, pp)


def _dense_free_gb(m: _Sizing, usable_gb: float, tp: int, pp: int) -> float:
    return usable_gb - (m.shared + m.routed) / (tp * pp) / 1e9 - overhead_gb(m.s, ep=False)


def size_dense(
    arch: catalog.Architecture,
    pool: facts.Pool,
    dtype: api.Dtype,
    workload: Workload,
    hourly_cost: float | None = None,
) -> Estimate:
    """The smallest tensor-parallel replica (pipeline stages across nodes when one node is not
    enough) that holds the weights with room for a useful KV cache, and what it does.

    TP is a power of two up to the node's GPUs that divides the attention heads; PP stages are
    whole nodes. Purely computational.
    """
    return _size_dense(arch, PoolShape.of(pool), dtype, workload, hourly_cost)


def _size_dense(
    arch: catalog.Architecture,
    pool: PoolShape,
    dtype: api.Dtype,
    workload: Workload,
    hourly_cost: float | None,
) -> Estimate:
    gpu = _gpu_of(pool)
    if gpu is None:
        return _unknown_gpu(api.ServingMode.DENSE, pool)
    t = _Target.of(arch, gpu, pool, dtype, workload, hourly_cost)
    layout = _smallest_dense_layout(t)
    if layout is not None:
        return _dense_at(t, *layout, batch=None)
    weights = (t.m.shared + t.m.routed) / 1e9
    return _infeasible(
        api.ServingMode.DENSE,
        pool,
        f"{arch.name} at {dtype.value} ({weights:.0f} GB of weights) does not fit "
        f"{pool.total_gpus} x {gpu.key} ({_gpu_memory_gb(pool, gpu):.0f} GB each) with room "
        f"for {MIN_KV_SEQUENCES} sequences of KV cache",
    )


def _smallest_dense_layout(t: _Target) -> tuple[int, int] | None:
    """The first (tp, pp) that holds the weights with room for the minimum KV cache: TP grows
    inside a node first, then PP stages of whole nodes at the largest TP."""
    s, pool = t.m.s, t.pool
    usable = _usable_gb(pool, t.gpu)
    need_gb = _min_kv_bytes(s, t.workload) / 1e9
    tps = [tp for tp in _powers_of_two(pool.gpus_per_node) if _heads_divide(s, tp)] or [1]
    layouts = itertools.chain(  # lazily: most models fit long before the last PP depth
        ((tp, 1) for tp in tps),
        ((tps[-1], pp) for pp in range(2, min(pool.node_count, s.layers) + 1)),
    )
    for tp, pp in layouts:
        if pp > 1 and pp > pool.node_count:
            break
        free = _dense_free_gb(t.m, usable, tp, pp)
        kv_room = free * tp * pp * _kv_split(s, tp) / tp
        if free > 0 and kv_room >= need_gb:
            return tp, pp
    return None


def dense_at(
    arch: catalog.Architecture,
    pool: facts.Pool,
    dtype: api.Dtype,
    workload: Workload,
    tp: int,
    pp: int = 1,
    hourly_cost: float | None = None,
    batch: int | None = None,
    gpu: hardware.GPU | None = None,
) -> Estimate:
    """A dense (TP x PP) replica at a given layout: throughput, bounds and cost.

    `batch` pins the concurrent sequences; by default it is the most the KV cache holds, capped
    by --max-num-seqs and by the ITL target. `gpu` replaces the pool's GPU figures (what-ifs).
    Purely computational.
    """
    shape_ = PoolShape.of(pool)
    gpu = gpu or pool.hardware
    if gpu is None:
        return _unknown_gpu(api.ServingMode.DENSE, shape_)
    return _dense_at(_Target.of(arch, gpu, shape_, dtype, workload, hourly_cost), tp, pp, batch)


def _dense_at(t: _Target, tp: int, pp: int, batch: int | None) -> Estimate:
    """`dense_at` with the GPU chosen and the model at its dtype worked out."""
    mode = api.ServingMode.DENSE
    usable = _usable_gb(t.pool, t.gpu)
    free_gb = _dense_free_gb(t.m, usable, tp, pp)
    if free_gb <= 0:
        return _infeasible(mode, t.pool, f"weights do not fit at TP{tp} x PP{pp}")
    replica = _DenseReplica.of(t, tp, pp, usable, free_gb)
    cap = min(replica.kv_cap, t.workload.max_num_seqs * pp)
    b, note = _choose_batch(cap, batch, t.workload, lambda x: replica.decode(x)[1])
    if b < 1:
        return _infeasible(mode, t.pool, "no room for a single sequence's KV cache")
    decode, itl = replica.decode(b)
    timing = _Timing(decode, itl, replica.prefill(), batch=b, sequences=b, note=note)
    layout = _Layout(
        mode,
        tp=tp,
        pp=pp,
        dp=1,
        ep=1,
        gpus=tp * pp,
        nodes=max(pp, math.ceil(tp / t.pool.gpus_per_node)),
    )
    return _finish(t, layout, timing, replica.inputs(b))


@dataclass(frozen=True)
class _DenseReplica:
    """One dense TP x PP replica's fixed figures, and its decode step, prefill and inputs."""

    t: _Target
    tp: int
    pp: int
    usable_gb: float  # per GPU
    free_gb: float  # per GPU, left for the KV cache
    lk: Links
    peak: float  # TFLOPS at the dtype
    seq_kv: float  # KV bytes of one sequence at the mean decode context
    kv_share: int  # each GPU holds 1/kv_share of a sequence's KV
    kv_cap: int  # sequences the KV cache holds
    expert_active: float  # routed-expert parameters one token uses
    active: float  # parameters one token uses

    @classmethod
    def of(cls, t: _Target, tp: int, pp: int, usable_gb: float, free_gb: float) -> _DenseReplica:
        arch = t.arch
        seq_kv = kv_bytes_per_sequence(t.m.s, t.context, _kv_dtype(t.workload))
        kv_share = _kv_split(t.m.s, tp) * pp
        return cls(
            t=t,
            tp=tp,
            pp=pp,
            usable_gb=usable_gb,
            free_gb=free_gb,
            lk=_links(t.gpu, t.pool, tp),
            peak=t.gpu.peak_tflops(t.dtype),
            seq_kv=seq_kv,
            kv_share=kv_share,
            kv_cap=int(free_gb * 1e9 * kv_share / seq_kv),
            expert_active=t.m.routed_params * arch.experts_per_token / max(arch.routed_experts, 1),
            active=arch.active_parameters * 1e9,
        )

    def decode(self, b: float) -> tuple[StepTime, float]:
        """(one pipeline stage's step at microbatch b/pp, the time per output token)."""
        t, s, tp, pp = self.t, self.t.m.s, self.tp, self.pp
        mb = b / pp
        weights = (t.m.shared + t.m.routed * touched_fraction(t.arch, mb)) / (tp * pp)
        kv = mb * self.seq_kv / self.kv_share
        flops = mb * (2 * self.active + attention_flops_per_token(s, t.context)) / (tp * pp)
        payload = mb * s.hidden * 2
        lk = self.lk
        comm = 2 * (s.layers / pp) * allreduce_s(payload, tp, lk.tp_gbs, lk.tp_latency_s)
        if pp > 1:
            comm += P2P_LATENCY_S + payload / (lk.fabric_gbs * 1e9)
        st = roofline(
            weights + kv,
            flops,
            t.gpu.bandwidth_tbs,
            self.peak,
            comm,
            expert_flops=mb * 2 * self.expert_active / (tp * pp),
        )
        return st, st.seconds * pp

    def prefill(self) -> StepTime:
        """One request's prefill, spread over the replica's GPUs."""
        t, s, tp, pp = self.t, self.t.m.s, self.tp, self.pp
        isl = t.workload.isl
        p_flops = (2 * self.active * isl + _prefill_attention_flops(s, isl)) / (tp * pp)
        p_bytes = isl / PREFILL_CHUNK_TOKENS * (t.m.shared + t.m.routed) / (tp * pp)
        p_comm = isl * 2 * (s.layers / pp) * allreduce_s(s.hidden * 2, tp, self.lk.tp_gbs, 0.0)
        return roofline(
            p_bytes,
            p_flops,
            t.gpu.bandwidth_tbs,
            self.peak,
            p_comm,
            expert_flops=isl * 2 * self.expert_active / (tp * pp),
        )

    def inputs(self, b: int) -> dict[str, float | int | str]:
        """What the replica's figures came from, for `Estimate.inputs`."""
        t, m = self.t, self.t.m
        return {
            "weights_gb_total": _r((m.shared + m.routed) / 1e9),
            "weights_gb_per_gpu": _r((m.shared + m.routed) / (self.tp * self.pp) / 1e9),
            "usable_gb_per_gpu": _r(self.usable_gb),
            "overhead_gb_per_gpu": _r(overhead_gb(m.s, ep=False)),
            "kv_gb_per_gpu": _r(self.free_gb),
            "kv_bytes_per_token": _r(self.seq_kv / t.context),
            "kv_dtype": _kv_dtype(t.workload).value,
            "kv_sequences_max": self.kv_cap,
            "tp_link_gbs": self.lk.tp_gbs,
            "active_routed_params_b": _r(self.expert_active / 1e9),
            "touched_experts_fraction": _r(touched_fraction(t.arch, b / self.pp), 3),
        }


@functools.lru_cache(maxsize=1024)
def _prefill_attention_flops(s: Shape, isl: int) -> float:
    """Causal attention over a prompt: token i attends to the i tokens before it.

    Attention cost is linear in context (piecewise with a sliding window), so summing chunk
    midpoints times the chunk size is exact up to the window's corner. Cached: every pool and
    both modes of a plan ask for the same shape and prompt length.
    """
    chunks = max(1, min(isl, 16))
    size = isl / chunks
    return sum(attention_flops_per_token(s, (i + 0.5) * size) * size for i in range(chunks))


# ------------------------------------------------------------------------------------- MoE


def moe_memory(
    arch: catalog.Architecture, gpu: hardware.GPU, pool: facts.Pool, dtype: api.Dtype, ep: int
) -> tuple[float, int, int]:
    """(per-rank GB left for KV, experts per rank, redundant experts) for an EP group."""
    usable = _usable_gb(PoolShape.of(pool), gpu)
    return _moe_memory(_sizing(arch, dtype), arch.routed_experts, usable, ep)


def _moe_memory(m: _Sizing, experts: int, usable_gb: float, ep: int) -> tuple[float, int, int]:
    redundant = redundant_experts(experts, ep)
    per_rank = (experts + redundant) // ep
    per_expert = m.routed / experts
    free = usable_gb - (m.shared + per_rank * per_expert) / 1e9 - overhead_gb(m.s, ep=True)
    return free, per_rank, redundant


def moe_group_sizes(pool: facts.Pool) -> list[int]:
    """EP sizes to try, smallest first: powers of two inside a node, then whole nodes.

    The powers of two below a node's GPU count all come before the first whole node, so the
    list is built in order (a pool of 400 nodes gives some 400 sizes).
    """
    return list(_moe_group_sizes(PoolShape.of(pool)))


def _moe_group_sizes(pool: PoolShape) -> tuple[int, ...]:
    total = pool.total_gpus
    per_node = pool.gpus_per_node
    inside = [n for n in _powers_of_two(per_node - 1) if 2 <= n <= total]
    whole = range(max(per_node, 2), total + 1, per_node) if per_node > 0 else range(0)
    return (*inside, *whole)


def size_moe(
    arch: catalog.Architecture,
    pool: facts.Pool,
    dtype: api.Dtype,
    workload: Workload,
    imbalance: float | None = None,
    hourly_cost: float | None = None,
) -> Estimate:
    """The smallest EP/DP group (TP1 x DP N attention, EP N experts, EPLB redundant experts
    so every rank hosts as many) that holds the model with room for a useful KV cache on every
    rank, and what it does. Purely computational.
    """
    return _size_moe(arch, PoolShape.of(pool), dtype, workload, imbalance, hourly_cost)


def _size_moe(
    arch: catalog.Architecture,
    pool: PoolShape,
    dtype: api.Dtype,
    workload: Workload,
    imbalance: float | None,
    hourly_cost: float | None,
) -> Estimate:
    mode = api.ServingMode.MOE
    gpu = _gpu_of(pool)
    if gpu is None:
        return _unknown_gpu(mode, pool)
    if not arch.is_moe:
        return _infeasible(mode, pool, f"{arch.name} is dense: it has no experts to spread")
    t = _Target.of(arch, gpu, pool, dtype, workload, hourly_cost)
    ep = _smallest_group(t)
    if ep is not None:
        return _moe_at(t, ep, imbalance, batch=None)
    weights = (t.m.shared + t.m.routed) / 1e9
    return _infeasible(
        mode,
        pool,
        f"{arch.name} at {dtype.value} ({weights:.0f} GB of weights) does not fit an EP group "
        f"of at most {pool.total_gpus} x {gpu.key} ({_gpu_memory_gb(pool, gpu):.0f} GB each)",
    )


def _smallest_group(t: _Target) -> int | None:
    """The smallest EP size whose every rank holds its share with room for the minimum KV.

    Not a bisection: whether a size fits is not monotonic in it (the redundant-expert floor
    grows with the group until its cap), so every size is tried, skipping those whose GPUs
    cannot even hold the weights.
    """
    m = t.m
    usable = _usable_gb(t.pool, t.gpu)
    need_gb = _min_kv_bytes(m.s, t.workload) / 1e9
    floor_gpus = (m.shared + m.routed) / 1e9 / usable
    for n in _moe_group_sizes(t.pool):
        if n >= floor_gpus and _moe_memory(m, t.arch.routed_experts, usable, n)[0] >= need_gb:
            return n
    return None


def moe_at(
    arch: catalog.Architecture,
    pool: facts.Pool,
    dtype: api.Dtype,
    workload: Workload,
    ep: int,
    imbalance: float | None = None,
    hourly_cost: float | None = None,
    batch: int | None = None,
    gpu: hardware.GPU | None = None,
) -> Estimate:
    """One EP group of `ep` GPUs (TP1, DP ep): throughput, bounds and cost.

    Each rank runs attention for its own sequences and hosts `experts_per_rank` experts. The
    hottest rank (load `imbalance` x the mean) sets the pace of every step. `batch` pins the
    sequences per rank; `gpu` replaces the pool's GPU figures. Purely computational.
    """
    mode = api.ServingMode.MOE
    shape_ = PoolShape.of(pool)
    gpu = gpu or pool.hardware
    if gpu is None:
        return _unknown_gpu(mode, shape_)
    if not arch.is_moe:
        return _infeasible(mode, shape_, f"{arch.name} is dense: it has no experts to spread")
    t = _Target.of(arch, gpu, shape_, dtype, workload, hourly_cost)
    return _moe_at(t, ep, imbalance, batch)


def _moe_at(t: _Target, ep: int, imbalance: float | None, batch: int | None) -> Estimate:
    """`moe_at` with the GPU chosen, a MoE model, and the model at its dtype worked out."""
    mode = api.ServingMode.MOE
    usable = _usable_gb(t.pool, t.gpu)
    free_gb, per_rank, redundant = _moe_memory(t.m, t.arch.routed_experts, usable, ep)
    if free_gb <= 0:
        return _infeasible(mode, t.pool, f"weights do not fit at EP{ep}")
    group = _MoeGroup.of(t, ep, imbalance, usable, free_gb, per_rank)
    cap = min(group.kv_cap, t.workload.max_num_seqs)
    b, note = _choose_batch(cap, batch, t.workload, lambda x: group.decode(x)[1])
    if b < 1:
        return _infeasible(mode, t.pool, "no room for a single sequence's KV cache")
    decode, itl = group.decode(b)
    timing = _Timing(decode, itl, group.prefill(), batch=b, sequences=b * ep, note=note)
    layout = _Layout(
        mode,
        tp=1,
        pp=1,
        dp=ep,
        ep=ep,
        gpus=ep,
        nodes=math.ceil(ep / t.pool.gpus_per_node),
        experts_per_rank=per_rank,
        redundant_experts=redundant,
    )
    return _finish(t, layout, timing, group.inputs(b))


@dataclass(frozen=True)
class _MoeGroup:
    """One EP group's fixed figures, and its hottest rank's decode step, prefill and inputs."""

    t: _Target
    ep: int
    observed: bool  # whether the imbalance was observed (else DEFAULT_IMBALANCE)
    hot: float  # hottest rank's load over the mean
    usable_gb: float  # per GPU
    free_gb: float  # per rank, left for the KV cache
    per_rank: int  # experts each rank hosts
    lk: Links
    peak: float  # TFLOPS at the dtype
    seq_kv: float  # KV bytes of one sequence at the mean decode context
    kv_cap: int  # sequences one rank's KV cache holds
    per_expert: float  # bytes of one routed expert
    expert_active: float  # routed parameters one token uses
    shared_active: float  # the other parameters one token uses
    dispatch_bytes: float  # per hidden value sent to the experts: fp8 where the GPU has it

    @classmethod
    def of(
        cls,
        t: _Target,
        ep: int,
        imbalance: float | None,
        usable_gb: float,
        free_gb: float,
        per_rank: int,
    ) -> _MoeGroup:
        arch = t.arch
        seq_kv = kv_bytes_per_sequence(t.m.s, t.context, _kv_dtype(t.workload))
        k_share = arch.experts_per_token / arch.routed_experts
        expert_active = t.m.routed_params * k_share
        return cls(
            t=t,
            ep=ep,
            observed=imbalance is not None,
            hot=imbalance if imbalance is not None else DEFAULT_IMBALANCE,
            usable_gb=usable_gb,
            free_gb=free_gb,
            per_rank=per_rank,
            lk=_links(t.gpu, t.pool, ep),
            peak=t.gpu.peak_tflops(t.dtype),
            seq_kv=seq_kv,
            kv_cap=int(free_gb * 1e9 / seq_kv),
            per_expert=t.m.routed / arch.routed_experts,
            expert_active=expert_active,
            shared_active=arch.active_parameters * 1e9 - expert_active,
            dispatch_bytes=1.0 if "fp8" in t.gpu.tflops else 2.0,
        )

    def decode(self, b: float) -> tuple[StepTime, float]:
        """(the hottest rank's decode step with b sequences per rank, the time per token)."""
        t, arch, s, ep, hot, lk = self.t, self.t.arch, self.t.m.s, self.ep, self.hot, self.lk
        touched = min(self.per_rank, self.per_rank * touched_fraction(arch, b * ep) * hot)
        weights = t.m.shared + touched * self.per_expert
        kv = b * self.seq_kv
        flops = b * (
            2 * self.shared_active
            + 2 * self.expert_active * hot
            + attention_flops_per_token(s, t.context)
        )
        tokens = b * arch.experts_per_token * s.hidden * hot
        comm = s.moe_layers * (
            all_to_all_s(tokens * self.dispatch_bytes, ep, lk) + all_to_all_s(tokens * 2, ep, lk)
        )
        st = roofline(
            weights + kv,
            flops,
            t.gpu.bandwidth_tbs,
            self.peak,
            comm,
            expert_flops=b * 2 * self.expert_active * hot,
        )
        return st, st.seconds

    def prefill(self) -> StepTime:
        """One request's prefill, spread over the group (aggregate of all ranks)."""
        t, arch, s, ep, hot, lk = self.t, self.t.arch, self.t.m.s, self.ep, self.hot, self.lk
        isl = t.workload.isl
        p_flops = (
            isl * (2 * self.shared_active + 2 * self.expert_active * hot)
            + _prefill_attention_flops(s, isl)
        ) / ep
        p_bytes = isl / PREFILL_CHUNK_TOKENS * (t.m.shared + self.per_rank * self.per_expert) / ep
        tokens = isl * arch.experts_per_token * s.hidden * hot / ep
        p_comm = s.moe_layers * (
            all_to_all_s(tokens * self.dispatch_bytes, ep, lk)
            + all_to_all_s(tokens * 2, ep, lk)
            - 2 * A2A_LATENCY_S
        )
        return roofline(
            p_bytes,
            p_flops,
            t.gpu.bandwidth_tbs,
            self.peak,
            max(p_comm, 0.0),
            expert_flops=isl * 2 * self.expert_active * hot / ep,
        )

    def inputs(self, b: int) -> dict[str, float | int | str]:
        """What the group's figures came from, for `Estimate.inputs`."""
        t, ep, lk = self.t, self.ep, self.lk
        shared, routed = t.m.shared, t.m.routed
        local = min(lk.nvlink_domain, ep)
        return {
            "weights_gb_total": _r((shared + routed) / 1e9),
            "weights_gb_per_gpu": _r((shared + self.per_rank * self.per_expert) / 1e9),
            "shared_weights_gb": _r(shared / 1e9),
            "gb_per_expert": _r(self.per_expert / 1e9, 3),
            "usable_gb_per_gpu": _r(self.usable_gb),
            "overhead_gb_per_gpu": _r(overhead_gb(t.m.s, ep=True)),
            "kv_gb_per_gpu": _r(self.free_gb),
            "kv_bytes_per_token": _r(self.seq_kv / t.context),
            "kv_dtype": _kv_dtype(t.workload).value,
            "kv_sequences_max_per_rank": self.kv_cap,
            "imbalance": self.hot,
            "imbalance_source": "observed" if self.observed else "default (EPLB on)",
            "touched_experts_fraction": _r(touched_fraction(t.arch, b * ep), 3),
            "a2a_nvlink_gbs": _r(lk.intra_a2a_gbs),
            "a2a_fabric_gbs": _r(lk.fabric_gbs) if ep > local else "unused",
            "fabric": lk.fabric if ep > local else "none (one NVLink domain)",
        }


# ----------------------------------------------------------------------------- shared steps


def _choose_batch(
    cap: int, pinned: int | None, workload: Workload, itl_s: Callable[[float], float]
) -> tuple[int, str]:
    """Sequences in flight: pinned, else the KV cap, lowered to meet the ITL target."""
    if pinned is not None:
        return pinned, "batch pinned"
    if cap < 1 or workload.itl_target_ms is None:
        return cap, ""
    target = workload.itl_target_ms / 1000
    if itl_s(1) > target:
        return 1, (
            f"ITL target {workload.itl_target_ms:g} ms is out of reach: a single "
            f"sequence's step takes {itl_s(1) * 1000:.1f} ms"
        )
    lo, hi = 1, cap  # step time grows with the batch, so bisect for the largest that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if itl_s(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo, ""


def _r(value: float, digits: int = 2) -> float:
    return round(value, digits)


def _bound(prefill: StepTime, decode: StepTime, decode_weight: float) -> Bound:
    """What limits a request overall: time on each roof, prefill plus its share of decode."""
    totals: dict[Bound, float] = {"memory": 0.0, "compute": 0.0, "communication": 0.0}
    for st, weight in ((prefill, 1.0), (decode, decode_weight)):
        roof: Bound = "memory" if st.memory_s >= st.compute_s else "compute"
        totals[roof] += max(st.memory_s, st.compute_s) * weight
        totals["communication"] += st.comm_s * weight
    return max(totals, key=lambda key: totals[key])


def _finish(
    t: _Target, layout: _Layout, timing: _Timing, inputs: dict[str, float | int | str]
) -> Estimate:
    """Combine prefill and decode per request into tokens/s, bounds and cost."""
    workload, decode, prefill, itl = t.workload, timing.decode, timing.prefill, timing.itl
    in_flight = timing.sequences
    decode_s = workload.osl * itl / in_flight  # the request's share of the decode steps
    request_s = prefill.seconds + decode_s
    requests_per_s = 1 / request_s
    output_tps = workload.osl * requests_per_s
    total_tps = (workload.isl + workload.osl) * requests_per_s
    bound = _bound(prefill, decode, decode_s / decode.seconds)
    hourly = _hourly(t.gpu, t.hourly_cost)
    per_gpu = output_tps / layout.gpus
    notes = [
        n
        for n in (timing.note, "" if t.arch.exact else "approximate shapes (no per-layer facts)")
        if n
    ]
    return Estimate(
        mode=layout.mode,
        feasible=True,
        note="; ".join(notes),
        gpu=t.gpu.key,
        gpus=layout.gpus,
        nodes=layout.nodes,
        tp=layout.tp,
        pp=layout.pp,
        dp=layout.dp,
        ep=layout.ep,
        experts_per_rank=layout.experts_per_rank,
        redundant_experts=layout.redundant_experts,
        batch=timing.batch,
        output_tokens_per_second_per_gpu=per_gpu,
        total_tokens_per_second=total_tps,
        decode_bound_by=decode.bound,
        bound_by=bound,
        hourly_cost_per_gpu=hourly,
        dollars_per_million_tokens=hourly / (per_gpu * 3600) * 1e6 if per_gpu > 0 else None,
        inputs={**_timing_inputs(t, timing, decode_s), **inputs},
        itl_ms=itl * 1000,
        decode_tokens_per_second_per_gpu=in_flight / itl / layout.gpus if itl > 0 else 0.0,
        pool_replicas=t.pool.total_gpus // layout.gpus if layout.gpus else 0,
        workload=workload,
    )


def _timing_inputs(t: _Target, timing: _Timing, decode_s: float) -> dict[str, float | int | str]:
    """The figures every estimate shows first in `inputs`: workload, roofs and the times."""
    decode, prefill = timing.decode, timing.prefill
    return {
        "dtype": t.dtype.value,
        "isl": t.workload.isl,
        "osl": t.workload.osl,
        "hbm_tbs": t.gpu.bandwidth_tbs,
        "peak_tflops": t.gpu.peak_tflops(t.dtype),
        "hbm_efficiency": HBM_EFFICIENCY,
        "compute_efficiency": COMPUTE_EFFICIENCY,
        "expert_gemm_efficiency": EXPERT_GEMM_EFFICIENCY,
        "batch_per_engine": timing.batch,
        "sequences_in_flight": timing.sequences,
        "decode_step_ms": _r(decode.seconds * 1000, 3),
        "decode_memory_ms": _r(decode.memory_s * 1000, 3),
        "decode_compute_ms": _r(decode.compute_s * 1000, 3),
        "decode_comm_ms": _r(decode.comm_s * 1000, 3),
        "itl_ms": _r(timing.itl * 1000, 3),
        "prefill_ms_per_request": _r(prefill.seconds * 1000, 3),
        "prefill_compute_ms": _r(prefill.compute_s * 1000, 3),
        "prefill_comm_ms": _r(prefill.comm_s * 1000, 3),
        "decode_ms_per_request": _r(decode_s * 1000, 3),
    }


# ------------------------------------------------------------------------- from plain names


def synthetic_pool(gpu: str, gpus: int, fabric: str | None = None) -> facts.Pool:
    """A pool of `gpus` GPUs as `breakeven estimate` describes it, without a cluster.

    GPUs fill nodes of 8 (4 for GB200). `fabric` is what joins the nodes: `nvlink` makes every
    GPU one NVLink domain (an NVL72 rack), `pcie` means no NVLink inside a node either (nodes
    then talk over Ethernet); default InfiniBand. Raises EstimateError for bad input.
    """
    try:
        hw = hardware.gpu(gpu)
    except KeyError as err:
        raise EstimateError("gpu", str(err.args[0])) from None
    if gpus < 1:
        raise EstimateError("gpus", f"must be at least 1, not {gpus}")
    if fabric is not None and fabric not in FABRICS:
        raise EstimateError("fabric", f"unknown fabric {fabric!r}; known: {', '.join(FABRICS)}")
    per_node = NODE_GPUS.get(hw.key, 8)
    if gpus > per_node and gpus % per_node:
        raise EstimateError("gpus", f"{gpus} x {hw.key} do not fill whole nodes of {per_node} GPUs")
    per_node = min(per_node, gpus)
    nodes = gpus // per_node
    between = {"nvlink": "infiniband", "pcie": "ethernet", None: "infiniband"}.get(fabric, fabric)
    return facts.Pool(
        gpu=hw.key,
        product=hw.key,
        known=True,
        gpus_per_node=per_node,
        gpu_memory_gb=hw.memory_gb,
        nodes=tuple(f"node-{i}" for i in range(nodes)),
        ready_nodes=nodes,
        intra_node_nvlink=hw.nvlink and per_node > 1 and fabric != "pcie",
        fabrics={str(between): nodes},
        cliques={"nvlink-domain": gpus} if fabric == "nvlink" and hw.nvlink else {},
    )


def estimate(
    model: str,
    gpu: str,
    gpus: int,
    mode: api.ServingMode | str,
    fabric: str | None = None,
    dtype: api.Dtype | str | None = None,
    workload: Workload | None = None,
    imbalance: float | None = None,
    hourly_cost: float | None = None,
) -> Estimate:
    """Size one mode of a catalog model on `gpus` GPUs of one type; purely computational.

    Raises EstimateError (naming the argument) for an unknown model, GPU, mode or dtype; a model
    that does not fit comes back as an infeasible Estimate with the reason in `note`.
    """
    arch = catalog.get(model)
    if arch is None:
        raise EstimateError(
            "model", f"{model!r} is not in the catalog; known: {', '.join(catalog.names())}"
        )
    try:
        serving = _mode(mode)
    except ValueError:
        raise EstimateError("mode", f"unknown mode {mode!r}; use dense or moe") from None
    try:
        chosen = api.Dtype(dtype) if dtype is not None else arch.native_dtype
    except ValueError:
        raise EstimateError("dtype", f"unknown dtype {dtype!r}") from None
    pool = synthetic_pool(gpu, gpus, fabric)
    work = workload or Workload()
    if serving == api.ServingMode.MOE:
        return size_moe(arch, pool, chosen, work, imbalance, hourly_cost)
    return size_dense(arch, pool, chosen, work, hourly_cost)


def _mode(mode: api.ServingMode | str) -> api.ServingMode:
    if isinstance(mode, api.ServingMode):
        return mode
    for candidate in api.ServingMode:
        if candidate.value.lower() == mode.lower():
            return candidate
    raise ValueError(mode)
