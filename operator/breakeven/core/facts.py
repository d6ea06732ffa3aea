"""Cluster and traffic facts: what the rubric and the capacity model reason about.

Cluster facts come from Node objects as the API server returns them (or as `kubectl get nodes -o
yaml` prints them): which GPU each node has, how many, whether they share NVLink inside the node,
which fabric joins the node to others, and which multi-node NVLink domain (clique) it is in. The
label and resource keys are the ones real clusters carry (see ../shared/reference/node-labels.md);
`LabelMapping` lets an operator add or override keys.

A pool is the set of nodes with the same GPU type and count. A pool where some nodes have an RDMA
fabric and some do not keeps that breakdown (`Pool.fabrics`), so the rubric sees it as mixed
rather than as an average.

Traffic facts are what the operator reads from Prometheus, reduced to a few numbers.

Pure: builds facts from plain mappings; the shell reads the Nodes and Prometheus.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from breakeven.core import api, hardware

FabricKind = Literal["infiniband", "roce", "efa", "rdma", "ethernet"]
RDMA_FABRICS: frozenset[str] = frozenset({"infiniband", "roce", "efa", "rdma"})


class _Facts(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,  # `.inf` is valid YAML; no fact means it
    )


# ------------------------------------------------------------------------------ label mapping


def _default_fabric_labels() -> dict[str, dict[str, FabricKind]]:
    return {
        # CoreWeave
        "backend.coreweave.cloud/flavor": {"infiniband": "infiniband", "roce": "roce"},
        # GKE: a3-ultra (H200), a4 (B200) and a4x (GB200) use RDMA over RoCE; a3-high/mega
        # (GPUDirect-TCPX/TCPXO) are not RDMA.
        "cloud.google.com/gke-accelerator": {
            "nvidia-h200-141gb": "roce",
            "nvidia-b200": "roce",
            "nvidia-gb200": "roce",
            "nvidia-h100-80gb": "ethernet",
            "nvidia-h100-mega-80gb": "ethernet",
        },
        # AKS ND-series with InfiniBand
        "node.kubernetes.io/instance-type": {
            "Standard_ND96isr_H100_v5": "infiniband",
            "Standard_ND96isr_H200_v5": "infiniband",
            "Standard_ND96asr_v4": "infiniband",
            "Standard_ND96amsr_A100_v4": "infiniband",
        },
    }


def _default_rdma_labels() -> list[str]:
    return [
        # `available` means the RDMA drivers are loaded; `capable` alone only says a Mellanox
        # NIC is present (node-labels.md), which is not enough to run all-to-all over it.
        "feature.node.kubernetes.io/rdma.available",
        "feature.node.kubernetes.io/custom-rdma.available",
    ]


def _default_rdma_resources() -> dict[str, FabricKind]:
    return {
        "vpc.amazonaws.com/efa": "efa",
        "rdma/ib": "infiniband",
        "rdma/roce_gdr": "roce",
        "rdma/rdma_shared_device_a": "rdma",
        "rdma/rdma_shared_device_b": "rdma",
        "nvidia.com/sriov_rdma": "rdma",
        "nvidia.com/hostdev": "rdma",
    }


def _default_gpu_labels() -> list[str]:
    return [
        "nvidia.com/gpu.product",
        "cloud.google.com/gke-accelerator",
        "gpu.nvidia.com/class",
        # Instance types before the bare GPU names: `a100` names both a 40 and an 80 GB part.
        "node.kubernetes.io/instance-type",
        "karpenter.k8s.aws/instance-gpu-name",
        "eks.amazonaws.com/instance-gpu-name",
        "karpenter.azure.com/sku-gpu-name",
    ]


class LabelMapping(_Facts):
    """Which node labels and resources say what. Built-in defaults; an operator adds or overrides.

    Loaded from the operator's `--label-mapping` file (YAML with these camelCase keys); each key
    given there replaces or extends the default of the same name.
    """

    gpu_labels: list[str] = Field(default_factory=_default_gpu_labels)
    gpu_resource: str = "nvidia.com/gpu"
    gpu_count_label: str = "nvidia.com/gpu.count"
    gpu_memory_label: str = "nvidia.com/gpu.memory"
    clique_label: str = "nvidia.com/gpu.clique"
    rdma_labels: list[str] = Field(default_factory=_default_rdma_labels)
    rdma_resources: dict[str, FabricKind] = Field(default_factory=_default_rdma_resources)
    fabric_labels: dict[str, dict[str, FabricKind]] = Field(default_factory=_default_fabric_labels)

    def merged(self, overrides: Mapping[str, Any]) -> LabelMapping:
        """This mapping with an operator's overrides: lists extend, dicts merge, scalars replace."""
        current = self.model_dump()
        given = LabelMapping.model_validate(overrides).model_dump(exclude_unset=True)
        for key in LabelMapping.model_validate(overrides).model_fields_set:
            value = given[key]
            if isinstance(value, list):
                current[key] = list(dict.fromkeys([*value, *current[key]]))
            elif isinstance(value, dict):
                merged = dict(current[key])
                for k, v in value.items():
                    merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) else v
                current[key] = merged
            else:
                current[key] = value
        return LabelMapping.model_validate(current)


# -------------------------------------------------------------------------------- nodes


class NodeInfo(_Facts):
    """The small projection of a Node the operator keeps in memory (its Node informer's store)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    allocatable: dict[str, str] = Field(default_factory=dict)
    schedulable: bool = True
    ready: bool = True


# A Kubernetes quantity (resource.Quantity's serialisation): a decimal number with a binary or
# decimal suffix or exponent. Digits are bounded so the value is always a finite float.
_QUANTITY = re.compile(
    r"([0-9]{1,18}(?:\.[0-9]{1,9})?|\.[0-9]{1,9})(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][0-9]{1,2})?"
)
_QUANTITY_SUFFIXES = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
    "Pi": 1024.0**5,
    "Ei": 1024.0**6,
}
# More GPUs on one node, or more GPU memory than this, is not a real node: its labels are wrong.
MAX_GPUS_PER_NODE = 1024
MAX_GPU_MEMORY_MIB = 64 * 1024 * 1024


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity (`8`, `1k`, `80Gi`, `1e3`) as a finite number; ValueError otherwise."""
    found = _QUANTITY.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text[:64]!r} is not a quantity")
    number, suffix = found.groups()
    value = float(number)
    if suffix and suffix[0] in "eE":
        value *= 10.0 ** int(suffix[1:])
    elif suffix:
        value *= _QUANTITY_SUFFIXES[suffix]
    return value


def _quantity(text: str | None) -> float:
    """A quantity as a number, 0 when absent or not a quantity (`from_nodes` reports those)."""
    if not text:
        return 0.0
    try:
        return parse_quantity(text)
    except ValueError:
        return 0.0


def _as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> dict[str, str]:
    """A label or allocatable map as strings; keys or values that are not scalars are dropped.

    The strings are interned: thousands of nodes carry the same label keys and mostly the same
    values (GPU product, pool, zone), which each Node's JSON otherwise brings as its own copies
    (at 5,000 nodes, half of the node index's memory)."""
    return {
        sys.intern(str(k)): sys.intern(str(v))
        for k, v in _as_mapping(value).items()
        if isinstance(v, str | int | float | bool) and isinstance(k, str | int | float | bool)
    }


def node_info(node: Mapping[str, Any], mapping: LabelMapping | None = None) -> NodeInfo:
    """Project a Node object (a dict as the API returns it) onto what the facts need.

    Every label is kept (a plan's `nodeSelector` may name any of them; a node carries a few dozen),
    but only the allocatable resources the mapping reads. Never raises on a malformed Node: parts
    that are not the right shape read as absent, and `Cluster.from_nodes` reports bad values.
    """
    mapping = mapping or LabelMapping()
    metadata = _as_mapping(node.get("metadata"))
    spec = _as_mapping(node.get("spec"))
    status = _as_mapping(node.get("status"))
    # cpu and memory size the serving pods' requests (rendering.workloads).
    resources = {mapping.gpu_resource, *mapping.rdma_resources, "cpu", "memory"}
    allocatable = {k: v for k, v in _strings(status.get("allocatable")).items() if k in resources}
    conditions = status.get("conditions")
    conditions = conditions if isinstance(conditions, list) else []
    ready = all(
        c.get("status") == "True"
        for c in conditions
        if isinstance(c, Mapping) and c.get("type") == "Ready"
    )
    name = metadata.get("name", "")
    return NodeInfo(
        name=name if isinstance(name, str) else str(name),
        labels=_strings(metadata.get("labels")),
        allocatable=allocatable,
        schedulable=spec.get("unschedulable", False) is not True,
        ready=ready,
    )


def node_problem(node: NodeInfo, mapping: LabelMapping) -> str | None:
    """What makes this node's GPU facts unusable (a label or resource that is not a sane count),
    or None. Such a node is left out of the pools, and only it."""

    def check(where: str, text: str | None, limit: float, whole: bool) -> str | None:
        if text is None:
            return None
        try:
            value = parse_quantity(text)
        except ValueError:
            return f"{where} {text[:64]!r} is not a quantity"
        if not math.isfinite(value) or value < 0 or value > limit or (whole and value % 1):
            return f"{where} {text[:64]!r} is not a {'count' if whole else 'size'} in 0..{limit:g}"
        return None

    checks = [
        (f"allocatable {mapping.gpu_resource}", node.allocatable.get(mapping.gpu_resource)),
        (f"label {mapping.gpu_count_label}", node.labels.get(mapping.gpu_count_label)),
    ]
    for where, text in checks:
        problem = check(where, text, MAX_GPUS_PER_NODE, True)
        if problem:
            return problem
    problem = check(
        f"label {mapping.gpu_memory_label}",
        node.labels.get(mapping.gpu_memory_label),
        MAX_GPU_MEMORY_MIB,
        False,
    )
    if problem:
        return problem
    for resource in mapping.rdma_resources:
        problem = check(f"allocatable {resource}", node.allocatable.get(resource), 1e18, False)
        if problem:
            return problem
    return None


def _gpu_name(node: NodeInfo, mapping: LabelMapping) -> tuple[str, str, hardware.GPU | None]:
    """(label key, product name, GPU) from the first GPU label that names a known GPU."""
    for key in mapping.gpu_labels:
        value = node.labels.get(key)
        if value:
            found = hardware.identify(value)
            if found is not None or key == mapping.gpu_labels[0]:
                return key, value, found
    return "", "", None


def node_fabric(node: NodeInfo, mapping: LabelMapping | None = None) -> FabricKind:
    """The fabric between this node and others, from the most specific signal present."""
    mapping = mapping or LabelMapping()
    for key, values in mapping.fabric_labels.items():
        value = node.labels.get(key)
        if value is not None and value in values:
            return values[value]
    for resource, kind in mapping.rdma_resources.items():
        if _quantity(node.allocatable.get(resource)) > 0:
            return kind
    if any(node.labels.get(key) == "true" for key in mapping.rdma_labels):
        return "rdma"
    return "ethernet"


class Pool(_Facts):
    """Nodes with the same GPU type and GPUs per node."""

    gpu: str = Field(description="hardware table key, or the raw product name when unknown")
    product: str = Field(description="the product name as the node labels give it")
    gpu_label: str = Field(
        default="nvidia.com/gpu.product", description="the node label the product name is in"
    )
    known: bool = Field(description="whether the GPU is in the hardware table")
    gpus_per_node: int
    gpu_memory_gb: float
    nodes: tuple[str, ...]
    ready_nodes: int
    intra_node_nvlink: bool
    fabrics: dict[str, int] = Field(description="fabric -> number of nodes")
    cliques: dict[str, int] = Field(
        default_factory=dict, description="NVLink domain id -> GPUs in this pool"
    )
    partitioned: bool = Field(default=False, description="MIG or time-sliced GPUs")
    rdma_resource: str | None = Field(
        default=None, description="RDMA extended resource every node offers, if any"
    )
    rdma_devices: int = Field(
        default=0, description="the fewest rdma_resource devices a node of the pool offers"
    )
    cpu_per_node: float = Field(
        default=0, description="the smallest allocatable CPU of a node, cores (0: unknown)"
    )
    memory_per_node: float = Field(
        default=0, description="the smallest allocatable memory of a node, bytes (0: unknown)"
    )
    gke_accelerator: str = Field(
        default="", description="GKE's cloud.google.com/gke-accelerator value, on GKE"
    )

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def total_gpus(self) -> int:
        return self.node_count * self.gpus_per_node

    @property
    def fabric(self) -> str:
        """The single fabric of every node; `rdma` when every node has RDMA of differing kinds
        (some labelled InfiniBand, some only `rdma`); otherwise `mixed`."""
        if len(self.fabrics) == 1:
            return next(iter(self.fabrics))
        if all(kind in RDMA_FABRICS for kind in self.fabrics):
            return "rdma"
        return "mixed"

    @property
    def rdma_nodes(self) -> int:
        return sum(n for kind, n in self.fabrics.items() if kind in RDMA_FABRICS)

    @property
    def largest_clique_gpus(self) -> int:
        return max(self.cliques.values(), default=0)

    @property
    def hardware(self) -> hardware.GPU | None:
        return hardware.gpus().get(self.gpu)


class Cluster(_Facts):
    """GPU pools of a cluster, plus where the facts came from."""

    pools: tuple[Pool, ...] = ()
    source: str = ""
    warnings: tuple[str, ...] = Field(
        default=(), description="nodes left out because a label or resource made no sense"
    )

    @classmethod
    def from_nodes(
        cls,
        nodes: Iterable[NodeInfo | Mapping[str, Any]],
        mapping: LabelMapping | None = None,
        node_selector: Mapping[str, str] | None = None,
        source: str = "",
    ) -> Cluster:
        """Group GPU nodes into pools. Purely computational; the caller reads the Nodes.

        Nodes without GPUs, cordoned nodes, and (when given) nodes that do not match
        `node_selector` are left out. Node objects are untrusted: a node whose GPU count, memory or
        RDMA resource is not a sane quantity is left out and named in `warnings`; the others
        still make pools.
        """
        mapping = mapping or LabelMapping()
        groups: dict[tuple[str, int], list[tuple[NodeInfo, hardware.GPU | None, str]]] = {}
        label_keys: dict[tuple[str, int], str] = {}
        warnings: list[str] = []
        for raw in nodes:
            info = raw if isinstance(raw, NodeInfo) else node_info(raw, mapping)
            if node_selector and any(info.labels.get(k) != v for k, v in node_selector.items()):
                continue
            if not info.schedulable:
                continue
            problem = node_problem(info, mapping)
            if problem:
                warnings.append(f"node {info.name or '(unnamed)'}: {problem}; left out")
                continue
            count = int(_quantity(info.allocatable.get(mapping.gpu_resource)))
            if count == 0:
                count = int(_quantity(info.labels.get(mapping.gpu_count_label)))
            label_key, product, gpu = _gpu_name(info, mapping)
            if count == 0 or not product:
                continue
            key = gpu.key if gpu else product
            groups.setdefault((key, count), []).append((info, gpu, product))
            label_keys.setdefault((key, count), label_key)

        pools = []
        for (key, count), members in sorted(groups.items()):
            gpu = members[0][1]
            products = Counter(p for _, _, p in members)
            memory_mib = [_quantity(n.labels.get(mapping.gpu_memory_label)) for n, _, _ in members]
            memory_gb = (
                min(memory_mib) * 1024**2 / 1e9
                if all(memory_mib)
                else (gpu.memory_gb if gpu else 0.0)
            )
            fabrics = Counter(node_fabric(n, mapping) for n, _, _ in members)
            cliques: Counter[str] = Counter()
            for n, _, _ in members:
                clique = n.labels.get(mapping.clique_label)
                if clique:
                    cliques[clique] += count
            rdma_resource = next(
                (
                    r
                    for r in mapping.rdma_resources
                    if all(_quantity(n.allocatable.get(r)) > 0 for n, _, _ in members)
                ),
                None,
            )
            product = products.most_common(1)[0][0]

            def least(resource: str, group: list[Any] = members) -> float:
                return min(_quantity(n.allocatable.get(resource)) for n, _, _ in group)

            gke = {n.labels.get("cloud.google.com/gke-accelerator", "") for n, _, _ in members}
            pools.append(
                Pool(
                    gpu=key,
                    product=product,
                    gpu_label=label_keys[(key, count)],
                    known=gpu is not None,
                    gpus_per_node=count,
                    gpu_memory_gb=round(memory_gb, 1),
                    nodes=tuple(sorted(n.name for n, _, _ in members)),
                    ready_nodes=sum(1 for n, _, _ in members if n.ready),
                    intra_node_nvlink=bool(gpu and gpu.nvlink) and count > 1,
                    fabrics=dict(sorted(fabrics.items())),
                    cliques=dict(sorted(cliques.items())),
                    partitioned=any(
                        "-MIG-" in p.upper() or p.upper().endswith("-SHARED") for p in products
                    ),
                    rdma_resource=rdma_resource,
                    rdma_devices=int(least(rdma_resource)) if rdma_resource else 0,
                    cpu_per_node=least("cpu"),
                    memory_per_node=least("memory"),
                    gke_accelerator=gke.pop() if len(gke) == 1 else "",
                )
            )
        return cls(pools=tuple(pools), source=source, warnings=tuple(warnings))

    @property
    def gpu_nodes(self) -> int:
        return sum(p.node_count for p in self.pools)


# ------------------------------------------------------------------------------ traffic


class Percentiles(_Facts):
    p10: float | None = Field(default=None, ge=0)
    p50: float | None = Field(default=None, ge=0)
    p90: float | None = Field(default=None, ge=0)
    p95: float | None = Field(default=None, ge=0)


class Traffic(_Facts):
    """Observed traffic for one plan, reduced to the numbers the rubric reads.

    Loads from YAML with the keys below; an absent key means it was not observed (and an absent
    `rankLoadMaxOverMean` means no EPLB telemetry was read).
    """

    window: api.Duration = Field(default="336h", description="span the facts cover")
    observed: api.Duration | None = Field(
        default=None, description="how much history there actually was (may be under window)"
    )
    tokens_per_second: Percentiles = Field(
        default_factory=Percentiles, description="prompt+generation tokens/s, 5-minute rates"
    )
    recent_peak_tokens_per_second: float | None = Field(
        default=None,
        ge=0,
        description="highest 1-minute token rate over recentWindow (the demotion window)",
    )
    recent_window: api.Duration | None = Field(default=None, description="span of the peak")
    prompt_tokens: Percentiles = Field(
        default_factory=Percentiles, description="prompt length per request"
    )
    output_tokens: Percentiles = Field(
        default_factory=Percentiles, description="generated tokens per request"
    )
    expert_load_max_over_mean: float | None = Field(
        default=None,
        ge=1,
        description="hottest expert's load over the mean, from spec.traffic.expertLoadMetric; "
        "absent = no such series",
    )
    rank_load_max_over_mean: float | None = Field(
        default=None,
        ge=1,
        description="p95 over the window's EPLB steps of the busiest EP rank's load over the "
        "mean rank's, from Breakeven's EPLB exporter; absent = no EPLB telemetry",
    )
    source: str = ""
    errors: tuple[str, ...] = Field(default=(), description="why some facts are missing")

    @field_validator(
        "tokens_per_second",
        "prompt_tokens",
        "output_tokens",
        mode="before",
    )
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return {} if value is None else value

    @property
    def has_volume(self) -> bool:
        return self.tokens_per_second.p10 is not None and self.tokens_per_second.p50 is not None

    @property
    def load_max_over_mean(self) -> float | None:
        """The imbalance the capacity model derates MoE by: the EP ranks' (what stalls the
        group) when measured, else the hottest expert's."""
        if self.rank_load_max_over_mean is not None:
            return self.rank_load_max_over_mean
        return self.expert_load_max_over_mean

    @property
    def observed_seconds(self) -> float:
        return api.parse_duration(self.observed or self.window)


NOTHING_OBSERVED = Traffic(source="nothing observed")
