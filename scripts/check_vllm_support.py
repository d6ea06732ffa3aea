#!/usr/bin/env python3
"""Check Breakeven's vLLM support matrix against the released vLLM wheels.

Not part of CI: it downloads each wheel from PyPI (300-450 MB each) with `pip download --no-deps`,
keeps only the wheel's Python sources (in a cache directory), deletes the wheel, and reads from the
sources:

- every flag the matrix lists: present when `"--flag"` is a string in vllm/engine/arg_utils.py,
  vllm/entrypoints/openai/cli_args.py or vllm/entrypoints/cli/serve.py, or when the flag's
  snake_case name is a field of FrontendArgs (cli_args.py generates `--port` from `port: int`);
- environment variables: the keys of the `environment_variables` table in vllm/envs.py;
- all-to-all backends: the `All2AllBackend` Literal in vllm/config/parallel.py, else the
  `all2all_backend == "..."` branches of
  vllm/distributed/device_communicators/cuda_communicator.py (0.10.x);
- EPLB-capable architectures: for each catalog architecture, the class the model registry
  (vllm/model_executor/models/registry.py) maps it to, and whether that class has vLLM's
  `MixtureOfExperts` interface among its bases (followed through the models package);
- the EPLB balancedness log format (the logger call in vllm/distributed/eplb/eplb_state.py);
- the KV-cache usage gauge (`vllm:kv_cache_usage_perc` or `vllm:gpu_cache_usage_perc`).

Then it prints, per version, every difference between those facts and what
operator/breakeven/core/data/vllm_flags.yaml says for that version. Exit status 1 when any
differs. The output of the last run is committed as
operator/breakeven/core/data/vllm_support_check.txt.

    python3 scripts/check_vllm_support.py 0.13.0 0.33.0        # given versions
    python3 scripts/check_vllm_support.py                      # every version in `verified`

Needs: pip, PyYAML, network access to PyPI. Standard library otherwise.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "operator" / "breakeven" / "core" / "data"
FLAG_SOURCES = (
    "vllm/engine/arg_utils.py",
    "vllm/entrypoints/openai/cli_args.py",
    "vllm/entrypoints/common/cli_args.py",
    "vllm/entrypoints/launchers/cli_args.py",
    "vllm/entrypoints/cli/serve.py",
)


def parse(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.lstrip("v").split("."))
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def has(entry: dict | None, version: str) -> bool:
    if not entry or entry.get("since") is None:
        return False
    v = parse(version)
    if v < parse(entry["since"]):
        return False
    return entry.get("until") is None or v < parse(entry["until"])


def sources(version: str, cache: Path) -> Path:
    """The wheel's Python sources for `version`, downloaded once into `cache`."""
    target = cache / version
    if (target / "vllm").is_dir():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", f"vllm=={version}", "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("vllm-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            members = [n for n in z.namelist() if n.endswith(".py")]
            z.extractall(target, members=members)
    return target


def read(root: Path, rel: str) -> str:
    path = root / rel
    return path.read_text(errors="replace") if path.is_file() else ""


def _cli_texts(root: Path) -> list[str]:
    """Sources that define `vllm serve` options (they moved between releases)."""
    found = [read(root, rel) for rel in FLAG_SOURCES]
    return found


def flag_present(root: Path, flag: str) -> bool:
    texts = _cli_texts(root)
    if any(f'"{flag}"' in t or f"'{flag}'" in t for t in texts):
        return True
    field = flag.lstrip("-").replace("-", "_")
    for text in texts:
        for block in re.findall(r"class \w*FrontendArgs\b.*?(?=\nclass |\Z)", text, re.S):
            if re.search(rf"^\s+{field}\s*:", block, re.M):
                return True
    return False


def env_vars(root: Path) -> set[str]:
    text = read(root, "vllm/envs.py")
    return set(re.findall(r'^\s+"([A-Z][A-Z0-9_]+)"\s*:', text, re.M))


def backends(root: Path) -> set[str]:
    parallel = read(root, "vllm/config/parallel.py")
    match = re.search(r"All2AllBackend\s*=\s*Literal\[(.*?)\]", parallel, re.S)
    if match:
        listed = set(re.findall(r'"([a-z0-9_]+)"', match.group(1)))
        # Names kept in the Literal only to warn: "The '%s' all2all backend has been removed."
        for names, tail in re.findall(
            r"all2all_backend in \[([^\]]*)\]:(.{0,200})", parallel, re.S
        ):
            if "has been removed" in tail:
                listed -= set(re.findall(r'"([a-z0-9_]+)"', names))
        return listed
    comm = read(root, "vllm/distributed/device_communicators/cuda_communicator.py")
    return set(re.findall(r'all2all_backend\s*==\s*"([a-z0-9_]+)"', comm))


class Models:
    """Class lookups across vllm/model_executor/models, following `from .x import Y`."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "vllm" / "model_executor" / "models"
        self.trees: dict[str, ast.Module | None] = {}

    def tree(self, module: str) -> ast.Module | None:
        if module not in self.trees:
            path = self.dir / f"{module}.py"
            if not path.is_file():
                path = self.dir / module / "__init__.py"
            self.trees[module] = ast.parse(path.read_text()) if path.is_file() else None
        return self.trees[module]

    def registry(self) -> dict[str, tuple[str, str]]:
        text = (self.dir / "registry.py").read_text()
        found = re.findall(r'"([A-Za-z0-9_]+)"\s*:\s*\(\s*"([a-z0-9_.]+)"\s*,\s*"([A-Za-z0-9_]+)"', text)
        return {arch: (module, cls) for arch, module, cls in found}

    def is_moe(self, module: str, name: str, depth: int = 0) -> bool:
        tree = self.tree(module)
        if tree is None or depth > 12:
            return False
        imports: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for alias in node.names:
                    imports[alias.asname or alias.name] = node.module
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                for base in node.bases:
                    base_name = base.id if isinstance(base, ast.Name) else (
                        base.attr if isinstance(base, ast.Attribute) else None
                    )
                    if base_name is None:
                        continue
                    if base_name == "MixtureOfExperts":
                        return True
                    if base_name in imports:
                        if self.is_moe(imports[base_name], base_name, depth + 1):
                            return True
                    elif self.is_moe(module, base_name, depth + 1):
                        return True
                return False
        if name in imports:
            return self.is_moe(imports[name], name, depth + 1)
        return False


def eplb_log_format(root: Path) -> str | None:
    tree = ast.parse(read(root, "vllm/distributed/eplb/eplb_state.py") or "\n")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and "balancedness=" in node.args[0].value
        ):
            return node.args[0].value
    return None


def kv_cache_metrics(root: Path) -> set[str]:
    text = read(root, "vllm/v1/metrics/loggers.py")
    return {n for n in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc") if f'"{n}"' in text}


def check(version: str, root: Path, table: dict, catalog: dict) -> list[str]:
    out = []
    for flag, entry in table["flags"].items():
        want, got = has(entry, version), flag_present(root, flag)
        if want != got:
            out.append(f"flag {flag}: data says {'present' if want else 'absent'}, wheel has "
                       f"it {'present' if got else 'absent'}")
    envs = env_vars(root)
    for name, entry in table["env"].items():
        want, got = has(entry, version), name in envs
        if want != got:
            out.append(f"env {name}: data {want}, wheel {got}")
    found = backends(root)
    for name, entry in table["all2all_backends"].items():
        want, got = has(entry, version), name in found
        if want != got:
            out.append(f"all2all backend {name}: data {want}, wheel {got}")
    unlisted = sorted(found - set(table["all2all_backends"]))
    models = Models(root)
    registry = models.registry()
    for arch, entry in table["eplb_architectures"].items():
        if arch not in registry:
            got = False
        else:
            got = models.is_moe(*registry[arch])
        want = has(entry, version)
        if want != got:
            out.append(f"EPLB {arch}: data {want}, wheel {got}")
    for model, facts in catalog["models"].items():
        arch = facts.get("hfArchitecture")
        if not arch:
            continue
        want = has({"since": facts.get("minVllm") or "0"}, version)
        got = arch in registry
        if want != got:
            out.append(f"model {model}: {arch} in the registry: data {want}, wheel {got}")
    fmt = eplb_log_format(root)
    want_fmt = next(
        (e["format"] for e in table["eplb_log_formats"] if has(e, version)), None
    )
    if fmt != want_fmt:
        out.append(f"EPLB log format: data {want_fmt!r}, wheel {fmt!r}")
    metrics = kv_cache_metrics(root)
    for entry in table["kv_cache_metrics"]:
        want, got = has(entry, version), entry["name"] in metrics
        if want != got:
            out.append(f"KV-cache gauge {entry['name']}: data {want}, wheel {got}")
    summary = (
        f"  backends in wheel: {', '.join(sorted(found))}"
        + (f" (not in data: {', '.join(unlisted)})" if unlisted else "")
        + f"\n  EPLB log format: {fmt!r}\n  KV-cache gauges: {', '.join(sorted(metrics))}"
    )
    return [summary, *out]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="vLLM versions (default: `verified`)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "breakeven-vllm")
    parser.add_argument("--keep", action="store_true", help="keep extracted sources")
    args = parser.parse_args()
    table = yaml.safe_load((DATA / "vllm_flags.yaml").read_text())
    catalog = yaml.safe_load((DATA / "models.yaml").read_text())
    versions = args.versions or table["verified"]
    differences = 0
    for version in versions:
        root = sources(version, args.cache)
        lines = check(version, root, table, catalog)
        diffs = lines[1:]
        differences += len(diffs)
        print(f"vllm {version}: {'OK' if not diffs else f'{len(diffs)} difference(s)'}")
        print(lines[0])
        for line in diffs:
            print(f"  DIFF {line}")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
