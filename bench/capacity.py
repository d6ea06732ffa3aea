"""Benchmark: the capacity model for every catalog model x every GPU type x both modes.

The operator sizes both modes on every pool for every plan it evaluates (through caches, see
docs/performance.md), so the model's own work must stay far under a second all together.
Prints the grid of output tokens/s per GPU and the timing figures: the first run (which loads
the data files), runs with the capacity caches emptied before each (the model's own work) and
runs that find every estimate cached:

    .venv/bin/python bench/capacity.py
"""

from __future__ import annotations

import statistics
import time

from breakeven.core import api, capacity, catalog, hardware

NODES = 8  # pool size: 8 nodes of the GPU's usual node (64 GPUs; 32 GB200)
REPEAT = 5


def _all_estimates() -> list[capacity.Estimate]:
    out = []
    for name in catalog.names():
        arch = catalog.get(name)
        assert arch is not None
        for gpu in hardware.gpus():
            pool = capacity.synthetic_pool(gpu, capacity.NODE_GPUS.get(gpu, 8) * NODES)
            dtype = arch.native_dtype
            out.append(capacity.size_dense(arch, pool, dtype, capacity.Workload()))
            out.append(capacity.size_moe(arch, pool, dtype, capacity.Workload()))
    return out


def _runs(clear: bool) -> list[float]:
    runs = []
    for _ in range(REPEAT):
        if clear:
            capacity.clear_caches()
        start = time.perf_counter()
        _all_estimates()
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    capacity.clear_caches()
    first = time.perf_counter()
    estimates = _all_estimates()  # also loads the data files once
    cold = time.perf_counter() - first
    computed = _runs(clear=True)
    cached = _runs(clear=False)

    gpus = list(hardware.gpus())
    width = max(len(n.split("/")[-1]) for n in catalog.names())
    print("output tokens/s per GPU at 1000/1000, native dtype, dense / MoE ('-' = does not fit)")
    print(" " * width + "".join(f"{g:>16}" for g in gpus))
    it = iter(estimates)
    for name in catalog.names():
        cells = []
        for _ in gpus:
            dense, moe = next(it), next(it)
            cells.append(
                "/".join(
                    f"{e.output_tokens_per_second_per_gpu:.0f}" if e.feasible else "-"
                    for e in (dense, moe)
                )
            )
        print(f"{name.split('/')[-1]:<{width}}" + "".join(f"{c:>16}" for c in cells))
    n = len(estimates)
    feasible = sum(e.feasible for e in estimates)
    modes = {m: sum(e.mode == m for e in estimates) for m in api.ServingMode}
    print()
    print(
        f"{n} estimates ({modes[api.ServingMode.DENSE]} dense, {modes[api.ServingMode.MOE]} "
        f"MoE; {feasible} feasible) over {len(catalog.names())} models x {len(gpus)} GPUs"
    )
    print(f"cold (loads data files): {cold * 1000:.1f} ms")
    for label, runs in (("computed (caches emptied first)", computed), ("cached", cached)):
        print(
            f"{label}, best of {REPEAT}: {min(runs) * 1000:.1f} ms, median "
            f"{statistics.median(runs) * 1000:.1f} ms ({min(runs) / n * 1e6:.1f} us per estimate)"
        )


if __name__ == "__main__":
    main()
