"""Which vLLM release the plan runs, and which flags that release understands.

The facts are data (`data/vllm_flags.yaml`, each flag with the release it appeared in, the one it
left in, and where that was checked); this module loads them and answers "does version X have
flag Y". The renderer asks it every time a flag changed between releases, so the same plan renders
`--num-redundant-experts` for 0.10.1 and `--eplb-config` for 0.12.

Pure: reads only the package's own data file.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

from breakeven.core import api
from breakeven.core.rendering import errors

Version = tuple[int, ...]

_TAG_VERSION = re.compile(r"^v?(?P<version>[0-9]+\.[0-9]+(\.[0-9]+)*)(?:$|[-+._])")


class Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    since: str
    until: str | None = None
    source: str


class Supported(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: str
    below: str


class FlagTable(BaseModel):
    """The contents of data/vllm_flags.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    supported: Supported
    verified: tuple[str, ...]
    flags: dict[str, Entry]
    env: dict[str, Entry]
    all2all_backends: dict[str, Entry] = Field(default_factory=dict)

    def _has(self, table: dict[str, Entry], name: str, version: Version) -> bool:
        entry = table.get(name)
        if entry is None:
            return False
        if version < parse(entry.since):
            return False
        return entry.until is None or version < parse(entry.until)

    def has_flag(self, flag: str, version: Version) -> bool:
        return self._has(self.flags, flag, version)

    def has_env(self, name: str, version: Version) -> bool:
        return self._has(self.env, name, version)

    def has_backend(self, backend: str, version: Version) -> bool:
        return self._has(self.all2all_backends, backend, version)

    def flags_of(self, version: Version) -> frozenset[str]:
        return frozenset(f for f in self.flags if self.has_flag(f, version))

    def is_supported(self, version: Version) -> bool:
        return parse(self.supported.min) <= version < parse(self.supported.below)


def parse(text: str) -> Version:
    """`v0.10.1.1` -> (0, 10, 1, 1); missing parts compare as zeros, so 0.12 == 0.12.0."""
    parts = tuple(int(p) for p in text.lstrip("v").split("."))
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def format_version(version: Version) -> str:
    padded = version + (0,) * (3 - len(version))
    return ".".join(str(p) for p in padded)


@functools.cache
def table() -> FlagTable:
    text = resources.files("breakeven.core").joinpath("data/vllm_flags.yaml").read_text()
    return FlagTable.model_validate(yaml.safe_load(text))


def version_from_image(image: str) -> str | None:
    """The version in an image tag (`vllm/vllm-openai:v0.12.0` -> `0.12.0`), if it has one."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _TAG_VERSION.match(last.split(":", 1)[1])
    return match.group("version") if match else None


def resolve(serving: api.Serving) -> str:
    """The vLLM version to render for, from `vllmVersion` or else the image tag.

    Purely computational; raises RenderError naming the field that holds the bad value.
    """
    if serving.vllm_version:
        field, text = "spec.serving.vllmVersion", serving.vllm_version
    else:
        field, found = "spec.serving.image", version_from_image(serving.image)
        if found is None:
            raise errors.RenderError(
                f"spec.serving.vllmVersion: the image {serving.image!r} has no version in its tag; "
                "set vllmVersion to the vLLM release it runs"
            )
        text = found
    version = parse(text)
    flags = table()
    if not flags.is_supported(version):
        raise errors.RenderError(
            f"{field}: vLLM {text.lstrip('v')} is not supported; Breakeven renders vLLM "
            f">= {flags.supported.min} and < {flags.supported.below} "
            f"(verified: {', '.join(flags.verified)})"
        )
    return format_version(version)
