"""`breakeven estimate`: the capacity model for one model, GPU type and mode, from the shell.

    breakeven estimate --model MODEL --gpu GPU --gpus N --mode dense|moe
                       [--fabric nvlink|infiniband|roce|efa|ethernet|pcie] [--dtype bf16|fp8|fp4]
                       [--isl 1000 --osl 1000] [--itl-ms MS] [-o table|json]

A thin shell: it parses flags, calls `capacity.estimate` and prints. Without --itl-ms the figures
are the most throughput memory allows. Bad input exits 2 naming the flag, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from breakeven.core import api, capacity, catalog

_DTYPES = [d.value for d in api.Dtype]


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `estimate` on the `breakeven` command's subparsers."""
    p = subparsers.add_parser(
        "estimate",
        help="size one mode of a model on a GPU type and estimate tokens/s and cost",
        description="Size a dense replica or an EP/DP MoE group and estimate its throughput "
        "and cost with the capacity model (docs/capacity-model.md).",
    )
    p.add_argument("--model", required=True, help="catalog model (`breakeven models`)")
    p.add_argument("--gpu", required=True, help="GPU type, e.g. H100, H200, B200, GB200, L40S")
    p.add_argument(
        "--gpus", required=True, type=int, help="GPUs available (whole nodes of 8; 4 for GB200)"
    )
    p.add_argument("--mode", required=True, type=str.lower, choices=["dense", "moe"])
    p.add_argument(
        "--fabric",
        choices=list(capacity.FABRICS),
        default=None,
        help="what joins the GPUs: nvlink = one NVLink domain; pcie = no NVLink; "
        "otherwise the network between nodes (default infiniband)",
    )
    p.add_argument(
        "--dtype",
        choices=_DTYPES,
        default=None,
        help="weight precision (default: the model's native dtype)",
    )
    p.add_argument(
        "--kv-dtype",
        choices=_DTYPES,
        default=None,
        help="KV-cache precision (default bf16, vLLM's auto)",
    )
    p.add_argument("--isl", type=int, default=1000, help="prompt tokens per request")
    p.add_argument("--osl", type=int, default=1000, help="output tokens per request")
    p.add_argument(
        "--itl-ms",
        type=float,
        default=None,
        help="inter-token latency target; the batch shrinks to meet it",
    )
    p.add_argument(
        "--imbalance",
        type=float,
        default=None,
        help=f"MoE: hottest rank's load over the mean (default "
        f"{capacity.DEFAULT_IMBALANCE}, EPLB on)",
    )
    p.add_argument(
        "--gpu-hourly-cost",
        type=float,
        default=None,
        help="$ per GPU-hour (default: the hardware table's price)",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=run)


# capacity.estimate's arguments, as this command's flags.
FLAGS = {f: f"--{f}" for f in ("model", "gpu", "gpus", "mode", "dtype", "fabric")}


def _fail(flag: str, message: str) -> int:
    print(f"breakeven estimate: error: {flag}: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run `breakeven estimate`; returns the exit status."""
    for flag, value, low in (("--isl", args.isl, 1), ("--osl", args.osl, 1)):
        if value < low:
            return _fail(flag, f"must be at least {low}, not {value}")
    for flag, number in (
        ("--itl-ms", args.itl_ms),
        ("--imbalance", args.imbalance),
        ("--gpu-hourly-cost", args.gpu_hourly_cost),
    ):
        if number is not None and number <= 0:
            return _fail(flag, f"must be positive, not {number:g}")
    if args.imbalance is not None and args.imbalance < 1:
        return _fail("--imbalance", "is max over mean, so at least 1")
    workload = capacity.Workload(
        isl=args.isl,
        osl=args.osl,
        itl_target_ms=args.itl_ms,
        kv_dtype=api.Dtype(args.kv_dtype) if args.kv_dtype else None,
    )
    try:
        est = capacity.estimate(
            args.model,
            args.gpu,
            args.gpus,
            args.mode,
            args.fabric,
            args.dtype,
            workload,
            args.imbalance,
            args.gpu_hourly_cost,
        )
    except capacity.EstimateError as err:
        return _fail(FLAGS.get(err.field, err.field), str(err))
    if not est.feasible:
        arch = catalog.get(args.model)
        flag = "--mode" if args.mode == "moe" and arch is not None and not arch.is_moe else "--gpus"
        return _fail(flag, est.note)
    if args.output == "json":
        print(json.dumps(as_dict(est), indent=2))
    else:
        print(table(est))
    return 0


def as_dict(est: capacity.Estimate) -> dict[str, Any]:
    """The estimate as camelCase JSON (the field names `breakeven plan` uses in status)."""
    return {
        "mode": est.mode.value,
        "feasible": est.feasible,
        "gpu": est.gpu,
        "gpus": est.gpus,
        "nodes": est.nodes,
        "tp": est.tp,
        "pp": est.pp,
        "dp": est.dp,
        "ep": est.ep,
        "expertsPerRank": est.experts_per_rank,
        "redundantExperts": est.redundant_experts,
        "batch": est.batch,
        "itlMs": round(est.itl_ms, 2),
        "outputTokensPerSecondPerGPU": round(est.output_tokens_per_second_per_gpu, 1),
        "decodeTokensPerSecondPerGPU": round(est.decode_tokens_per_second_per_gpu, 1),
        "totalTokensPerSecond": round(est.total_tokens_per_second, 1),
        "boundBy": est.bound_by,
        "decodeBoundBy": est.decode_bound_by,
        "hourlyCostPerGPU": est.hourly_cost_per_gpu,
        "dollarsPerMillionTokens": (
            round(est.dollars_per_million_tokens, 4)
            if est.dollars_per_million_tokens is not None
            else None
        ),
        "replicasInPool": est.pool_replicas,
        "note": est.note,
        "inputs": est.inputs,
    }


def table(est: capacity.Estimate) -> str:
    """A short human summary followed by every input, so the figure can be redone by hand."""
    layout = (
        f"EP{est.ep} (TP1 x DP{est.dp}), {est.experts_per_rank} experts per rank "
        f"({est.redundant_experts} redundant)"
        if est.mode == api.ServingMode.MOE
        else f"TP{est.tp}" + (f" x PP{est.pp}" if est.pp > 1 else "")
    )
    cost = (
        f"${est.dollars_per_million_tokens:,.3f} per million output tokens at "
        f"${est.hourly_cost_per_gpu:g}/GPU-hour"
        if est.dollars_per_million_tokens
        else "-"
    )
    rows = [
        ("mode", est.mode.value),
        ("layout", f"{layout} on {est.gpus} x {est.gpu}, {est.nodes} node(s)"),
        ("batch", f"{est.batch} sequences per engine, ITL {est.itl_ms:.1f} ms"),
        ("output tokens/s per GPU", f"{est.output_tokens_per_second_per_gpu:,.0f}"),
        ("decode-only tokens/s per GPU", f"{est.decode_tokens_per_second_per_gpu:,.0f}"),
        ("total tokens/s per replica", f"{est.total_tokens_per_second:,.0f}"),
        ("bound by", f"{est.bound_by} (decode: {est.decode_bound_by})"),
        ("cost", cost),
    ]
    if est.note:
        rows.append(("note", est.note))
    width = max(len(k) for k, _ in rows)
    head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    iw = max(len(k) for k in est.inputs)
    body = "\n".join(f"  {k.ljust(iw)}  {v}" for k, v in est.inputs.items())
    return f"{head}\n\ninputs:\n{body}"
