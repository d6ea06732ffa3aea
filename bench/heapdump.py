"""`breakeven` with a report of where its memory goes, written on SIGUSR1.

    BREAKEVEN_HEAP_REPORT=/tmp/heap.txt python bench/heapdump.py run ...   # any breakeven args
    kill -USR1 <pid>                                                        # writes the report

bench/controlplane.py `--heap-dump` runs the operator this way and prints the report after its
last sweep. Nothing here is imported by the operator; it costs nothing until the signal comes
(with PYTHONTRACEMALLOC=N set it also lists the top allocation sites, at tracemalloc's cost).

The report: RSS; the deep size (each object counted once, in the first root that reaches it) of
what the operator holds per plan, per node and per child: the scheduler's plan states (and the
plan bodies among them), kopf's indexes (nodes, children), kopf's per-object memories, the
Prometheus client's registry; then the gc-tracked objects by type; then, when tracing,
tracemalloc's top lines and files.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def deep_size(roots: Iterable[Any], seen: set[int]) -> tuple[int, int]:
    """(bytes, objects) reachable from `roots` through containers and instance attributes, each
    object once (`seen` is shared between calls); classes, modules and functions are not entered."""
    total = count = 0
    stack = list(roots)
    skip = (type, type(sys), type(deep_size), type(len))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        try:
            total += sys.getsizeof(obj)
        except TypeError:
            continue
        count += 1
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, str | bytes | int | float | bool) or obj is None:
            continue
        else:
            attrs = getattr(obj, "__dict__", None)
            if attrs is not None:
                stack.append(attrs)
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))
            if hasattr(obj, "__pydantic_fields_set__"):
                stack.append(getattr(obj, "__pydantic_extra__", None))
    return total, count


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _instances(cls: type) -> list[Any]:
    return [o for o in gc.get_objects() if isinstance(o, cls)]


def report() -> str:
    """The text of one report (see the module docstring)."""
    from kopf._core.reactor import inventory

    from breakeven.shell import metrics
    from breakeven.shell.runtime import Runtime

    gc.collect()
    lines = [f"RSS {_rss_mb():.1f} MB, {len(gc.get_objects()):,} gc-tracked objects"]
    seen: set[int] = set()
    roots: list[tuple[str, list[Any]]] = []
    for runtime in _instances(Runtime):
        plans = runtime.scheduler.plans
        roots += [
            ("plan bodies (PlanState.body)", [s.body for s in plans.values()]),
            ("plan states, the rest (traffic facts, ...)", list(plans.values())),
            ("node informer store (facts.NodeInfo)", [list((runtime.nodes or {}).get("gpu", ()))]),
            ("children informer stores (kube.projection)", [runtime.children]),
            (
                "pod informer stores and index (kube.pod_projection)",
                [[i.store for i in runtime.pod_informers], runtime.pods.by_plan],
            ),
            ("reconciler and writer (hashes, caches)", [runtime.reconciler]),
        ]
    roots += [
        ("kopf ResourceMemories (per watched object)", _instances(inventory.ResourceMemories)),
        ("prometheus_client registry (per-plan series)", [metrics.REGISTRY]),
    ]
    total = 0
    for label, objs in roots:
        size, count = deep_size(objs, seen)
        total += size
        lines.append(f"  {size / 1e6:9.1f} MB  {count:>10,} objects  {label}")
    lines.append(f"  {total / 1e6:9.1f} MB  in these roots (object sizes, no allocator slack)")
    by_type: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        by_type[name] += 1
        sizes[name] += sys.getsizeof(obj)
    lines.append("gc-tracked objects by type (shallow sizes; strings and numbers not counted):")
    for name, size in sizes.most_common(15):
        lines.append(f"  {size / 1e6:9.1f} MB  {by_type[name]:>10,}  {name}")
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        for key in ("filename", "lineno"):
            stats = snapshot.statistics(key)
            traced = sum(s.size for s in stats)
            lines.append(f"tracemalloc by {key} ({traced / 1e6:.1f} MB traced):")
            for stat in stats[:25]:
                frame = stat.traceback[0]
                where = frame.filename.replace(str(ROOT) + "/", "")
                if key == "lineno":
                    where += f":{frame.lineno}"
                lines.append(f"  {stat.size / 1e6:9.1f} MB  {stat.count:>10,}  {where}")
    return "\n".join(lines) + "\n"


def install(path: Path) -> None:
    """On SIGUSR1, write a report to `path`. The handler runs in the main thread, between two
    steps of the event loop, which waits for it: nothing changes while it counts."""

    def handler(signum: int, frame: Any) -> None:
        try:
            text = report()
        except Exception as exc:  # a report that fails says so, the operator goes on
            text = f"report failed: {exc!r}\n"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(path)

    signal.signal(signal.SIGUSR1, handler)


def main() -> int:
    install(Path(os.environ.get("BREAKEVEN_HEAP_REPORT", "heap-report.txt")))
    from breakeven.cli.main import main as cli_main

    return int(cli_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
