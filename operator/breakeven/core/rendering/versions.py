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


class Support(BaseModel):
    """An architecture's EPLB support: `since` None means no release has it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: str | None
    until: str | None = None
    source: str


class LogFormat(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    since: str
    until: str | None = None
    format: str


class Metric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    since: str
    until: str | None = None
    name: str


class Image(BaseModel):
    """An image repository known to ship DeepEP (so the `deepep_*` backends can load)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str
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
    eplb_architectures: dict[str, Support] = Field(default_factory=dict)
    eplb_log_formats: tuple[LogFormat, ...] = ()
    kv_cache_metrics: tuple[Metric, ...] = ()
    deepep_images: tuple[Image, ...] = ()

    def _has(
        self, table: dict[str, Entry] | dict[str, Support], name: str, version: Version
    ) -> bool:
        entry = table.get(name)
        return entry is not None and _within(entry.since, entry.until, version)

    def has_eplb(self, architecture: str | None, version: Version) -> bool:
        """Whether vLLM `version` builds EPLB state for this Hugging Face architecture."""
        return architecture is not None and self._has(
            self.eplb_architectures, architecture, version
        )

    def eplb_since(self, architecture: str | None) -> str | None:
        entry = self.eplb_architectures.get(architecture or "")
        return entry.since if entry else None

    def kv_cache_metric(self, version: Version) -> str:
        """The KV-cache usage gauge to read: the current name where the version has it."""
        names = [m.name for m in self.kv_cache_metrics if _within(m.since, m.until, version)]
        return "vllm:kv_cache_usage_perc" if "vllm:kv_cache_usage_perc" in names else names[0]

    def eplb_log_format(self, version: Version) -> str | None:
        return next(
            (f.format for f in self.eplb_log_formats if _within(f.since, f.until, version)), None
        )

    def image_has_deepep(self, image: str) -> bool:
        """Whether the image's repository is one known to ship DeepEP."""
        repository = image.split("@", 1)[0]
        last = repository.rsplit("/", 1)
        if ":" in last[-1]:
            repository = repository.rsplit(":", 1)[0]
        return any(repository == i.repository for i in self.deepep_images)

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


def _within(since: str | None, until: str | None, version: Version) -> bool:
    if since is None or version < parse(since):
        return False
    return until is None or version < parse(until)


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
    return resolve_release(serving.vllm_version, serving.image)


def resolve_release(vllm_version: str | None, image: str) -> str:
    """`resolve` on the two fields it reads (hashable, so callers can cache on them)."""
    if vllm_version:
        field, text = "spec.serving.vllmVersion", vllm_version
    else:
        field, found = "spec.serving.image", version_from_image(image)
        if found is None:
            raise errors.RenderError(
                f"spec.serving.vllmVersion: the image {image!r} has no version in its tag; "
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
