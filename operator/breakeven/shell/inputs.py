"""Reading user input files (plans, node lists, traffic facts) into the core's models.

Every failure is an `InputError` whose message names the file, the field and what is allowed,
so the CLI can print it and exit 2 without a traceback.

Reads files; no cluster or network I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from breakeven.core import api, facts
from breakeven.core.errors import InputError as InputError

REFERENCE_CLUSTER = "built-in reference cluster (4x8 H200 InfiniBand, 2x8 L40S PCIe Ethernet)"
# A plan, node list or traffic file larger than this is not one a person wrote or kubectl printed.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _loc(loc: Sequence[int | str], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1 if parts else 0 :] = [f"{parts[-1] if parts else ''}[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(p for p in parts if p)


def describe(error: pydantic.ValidationError, prefix: str = "") -> str:
    """A pydantic error as `field: what is wrong` lines, with API (camelCase) field names."""
    lines = []
    for err in error.errors():
        field = _loc(err["loc"], prefix) or prefix or "(document)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; `kubectl explain servingplan.spec`)"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif "expected" in (err.get("ctx") or {}):
            message = f"{message} (got {err.get('input')!r})"
        lines.append(f"{field}: {message}")
    return "\n".join(lines)


def _documents(path: Path) -> list[Any]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}): YAML files are UTF-8"
        ) from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to be a Kubernetes object") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (int's own limit)
        raise InputError(f"{path}: not a value Breakeven can read: {exc}") from None


def parse_plan(document: Mapping[str, Any], origin: str = "plan") -> api.ServingPlan:
    """Validate one ServingPlan object (as a dict) the way the API server would."""
    if document.get("apiVersion") != api.API_VERSION or document.get("kind") != api.KIND:
        raise InputError(
            f"{origin}: apiVersion/kind must be {api.API_VERSION}/{api.KIND}, got "
            f"{document.get('apiVersion')}/{document.get('kind')}"
        )
    try:
        return api.ServingPlan.model_validate(document)
    except pydantic.ValidationError as exc:
        raise InputError(f"{origin}: invalid ServingPlan:\n{describe(exc)}") from None


def load_plans(path: Path) -> list[api.ServingPlan]:
    docs = _documents(path)
    if not docs:
        raise InputError(f"{path}: no ServingPlan in the file")
    out = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise InputError(f"{path}: each document must be a mapping (a ServingPlan)")
        out.append(parse_plan(doc, str(path)))
    return out


def _node_dicts(docs: list[Any], origin: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise InputError(f"{origin}: each document must be a Node or a List of Nodes")
        items = (doc.get("items") or []) if doc.get("kind") in ("List", "NodeList") else [doc]
        if not isinstance(items, list):
            raise InputError(f"{origin}: items: must be a list of Nodes")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or item.get("kind", "Node") != "Node":
                raise InputError(f"{origin}: items[{i}]: kind must be Node")
            metadata = item.get("metadata")
            if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
                raise InputError(f"{origin}: items[{i}].metadata.name: required field is missing")
            nodes.append(item)
    return nodes


def load_nodes(path: Path | None) -> tuple[list[dict[str, Any]], str]:
    """Nodes from `kubectl get nodes -o yaml` output (a List) or multi-document YAML.

    Without a path, the built-in reference cluster, and a source string that says so.
    """
    if path is None:
        text = resources.files("breakeven.core").joinpath("data/reference-cluster.yaml").read_text()
        return _node_dicts(list(yaml.safe_load_all(text)), "reference cluster"), REFERENCE_CLUSTER
    return _node_dicts(_documents(path), str(path)), str(path)


def load_cluster(
    path: Path | None, plan: api.ServingPlan, mapping: facts.LabelMapping | None = None
) -> facts.Cluster:
    nodes, source = load_nodes(path)
    return facts.Cluster.from_nodes(
        nodes, mapping, node_selector=plan.spec.serving.node_selector, source=source
    )


def load_traffic(path: Path | None) -> facts.Traffic:
    if path is None:
        return facts.NOTHING_OBSERVED
    docs = _documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InputError(f"{path}: traffic facts must be one YAML mapping")
    try:
        return facts.Traffic.model_validate({"source": str(path), **docs[0]})
    except pydantic.ValidationError as exc:
        raise InputError(f"{path}: invalid traffic facts:\n{describe(exc)}") from None


def load_mapping(path: Path | None) -> facts.LabelMapping:
    if path is None:
        return facts.LabelMapping()
    docs = _documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InputError(f"{path}: a label mapping must be one YAML mapping")
    try:
        return facts.LabelMapping().merged(docs[0])
    except pydantic.ValidationError as exc:
        raise InputError(f"{path}: invalid label mapping:\n{describe(exc)}") from None
