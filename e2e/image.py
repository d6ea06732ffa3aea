"""Build the operator image (Containerfile) with podman or docker, online or offline.

    python -m e2e.image build [--tag T] [--base REF [--build-base REF]]

With `--base` (a release build) the engine pulls BASE, pinned by digest, and pip reads its index.
Without it (our machines and CI: no registry), the bases are built from Debian packages: a
`debootstrap --variant=minbase` of the host's Debian release with python3 (runtime) and with
python3-venv (build stage), each imported as a local image and kept; the project's dependencies
are fetched as wheels into .whl/ by the host's pip, and the build runs with no network at all.
podman reads e2e/containers.conf (CONTAINERS_CONF), see /work/shared/reference/containers.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO_ROOT / "e2e" / "containers.conf"
WHEELS = REPO_ROOT / ".whl"
DEFAULT_TAG = "localhost/breakeven:dev"
RUNTIME_BASE = "localhost/breakeven-base:{release}"
BUILD_BASE = "localhost/breakeven-build-base:{release}"


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def engine() -> str:
    """podman when installed, else docker when its daemon answers; raises otherwise."""
    if shutil.which("podman"):
        return "podman"
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return "docker"
    raise RuntimeError(
        "neither podman nor a running docker daemon: `make image-tools` installs podman, runc "
        "and debootstrap (Debian packages)"
    )


def run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), text=True, capture_output=True, env=engine_env(), check=False, **kw
    )  # type: ignore[call-overload, no-any-return]


def debian_release() -> str:
    """The host's Debian codename (VERSION_CODENAME in /etc/os-release), e.g. bookworm."""
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=(\w+)$", text, re.M)
    if not found:
        raise RuntimeError("/etc/os-release names no VERSION_CODENAME: not a Debian host?")
    return found.group(1)


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses (never written into the repository)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for uri in re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", sources.read_text(), re.M):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    raise RuntimeError("no Debian mirror found in /etc/apt/sources.list*")


def image_exists(tool: str, ref: str) -> bool:
    return run([tool, "image", "inspect", ref]).returncode == 0


def debootstrap_image(tool: str, ref: str, packages: Sequence[str]) -> float:
    """Import a minbase Debian with `packages` as `ref` unless it exists; returns seconds taken."""
    if image_exists(tool, ref):
        return 0.0
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is missing: run `make image-tools`")
    started = time.monotonic()
    release, mirror = debian_release(), debian_mirror()
    with tempfile.TemporaryDirectory(prefix="breakeven-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _log(f"debootstrap {release} with {', '.join(packages)} from {mirror}")
        out = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
             release, str(root), mirror],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [tool, "import", "-", ref],
            stdin=tar.stdout, capture_output=True, text=True, env=engine_env(), check=False,
        )  # fmt: skip
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"importing {ref} failed: {imported.stderr}")
    seconds = time.monotonic() - started
    _log(f"{ref} imported in {seconds:.0f}s")
    return seconds


def fetch_wheels(python: str = sys.executable) -> None:
    """The dependencies and the build backend as wheels in .whl/ (for the offline build)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    WHEELS.mkdir(exist_ok=True)
    out = subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--wheel-dir", str(WHEELS), *wanted],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {out.stderr[-3000:]}")


def build(
    tag: str = DEFAULT_TAG,
    base: str | None = None,
    build_base: str | None = None,
    revision: str = "unknown",
) -> dict[str, float]:
    """Build the image; returns the seconds each part took (bases, wheels, build)."""
    tool = engine()
    times: dict[str, float] = {}
    args: list[str] = []
    WHEELS.mkdir(exist_ok=True)  # COPY .whl/ needs the folder even when it stays empty
    if base is None:
        release = debian_release()
        base = RUNTIME_BASE.format(release=release)
        build_base = BUILD_BASE.format(release=release)
        times["bases"] = debootstrap_image(tool, base, ["python3"]) + debootstrap_image(
            tool, build_base, ["python3", "python3-venv"]
        )
        started = time.monotonic()
        fetch_wheels()
        times["wheels"] = time.monotonic() - started
        args += ["--network=none", "--build-arg", "PIP_NO_INDEX=1"]
        args += ["--build-arg", "PIP_FIND_LINKS=/wheels"]
    elif "@sha256:" not in base:
        raise ValueError(f"--base {base}: a release base must be pinned by digest (@sha256:...)")
    args += ["--build-arg", f"BASE={base}", "--build-arg", f"BUILD_BASE={build_base or base}"]
    args += ["--build-arg", f"REVISION={revision}"]
    args += ["--build-arg", f"CREATED={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]
    started = time.monotonic()
    _log(f"{tool} build -t {tag}")
    out = run([tool, "build", "-f", str(REPO_ROOT / "Containerfile"), "-t", tag, *args,
               str(REPO_ROOT)])  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{tool} build failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    times["build"] = time.monotonic() - started
    if removed := prune_leftovers(tool):
        _log(f"removed {len(removed)} untagged images earlier builds left")
    _log(f"built {tag}: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    return times


def prune_leftovers(tool: str) -> list[str]:
    """Remove the untagged images earlier builds left; returns the ids removed.

    Each build leaves two: the image the tag pointed to before (its `created` label differs, so
    the new build is a new image) and its build stage's last image (Containerfile labels the stage
    `dev.breakeven.stage=build`). The newest build stage is kept: a rebuild of unchanged sources
    reuses it. Only images carrying one of our two labels are looked at.
    """
    removed: list[str] = []
    for label, keep in (
        ("org.opencontainers.image.title=breakeven", 0),
        ("dev.breakeven.stage=build", 1),
    ):
        out = run([tool, "images", "--filter", "dangling=true", "--filter", f"label={label}",
                   "--format", "{{.CreatedAt}}\t{{.ID}}"])  # fmt: skip
        if out.returncode != 0:
            _log(f"listing leftover images failed: {out.stderr.strip()}")
            continue
        rows = sorted(line.split("\t") for line in out.stdout.splitlines() if "\t" in line)
        for _, image in rows[: max(len(rows) - keep, 0)]:
            if run([tool, "rmi", image]).returncode == 0:
                removed.append(image)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the operator image")
    b.add_argument("--tag", default=DEFAULT_TAG)
    b.add_argument("--base", default=None, help="release runtime base, pinned by digest")
    b.add_argument("--build-base", default=None, help="build-stage base (default: --base)")
    b.add_argument("--revision", default="unknown", help="org.opencontainers.image.revision")
    args = parser.parse_args(argv)
    try:
        build(args.tag, args.base, args.build_base, args.revision)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
