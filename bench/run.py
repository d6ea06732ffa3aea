"""Run every benchmark and print its figures (`make bench`); docs/performance.md records them.

    .venv/bin/python bench/run.py

Each benchmark is a script with a main() that prints its own figures; this loads them by path
(bench/ is not a package) and runs them one after the other in this process, under a line
naming the machine. capacity.py goes first so that its "cold" figure still loads the data files.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("capacity.py", "decide.py")  # capacity first: its "cold" figure loads the data


def load(name: str) -> ModuleType:
    path = HERE / name
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({sys.executable})"
    )
    for name in BENCHMARKS:
        print(f"\n== bench/{name}")
        sys.stdout.flush()
        load(name).main()


if __name__ == "__main__":
    main()
