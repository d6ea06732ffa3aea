"""Fake GPU nodes for kwok, built from a YAML description of node pools.

Breakeven decides from node labels and allocatable resources (GPU product, NVLink domain, RDMA) how
a model can be served, so tests need nodes that look like real GPU nodes without any GPUs. The
functions here turn a pool description (see e2e/nodepools/default.yaml) into plain Node dicts, which
kwok then keeps Ready. `synthetic_cluster` makes thousands of such nodes for benchmarks; none of the
pure functions need a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

NODEPOOLS_DIR = Path(__file__).resolve().parent / "nodepools"
DEFAULT_DESCRIPTION = NODEPOOLS_DIR / "default.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
POOL_LABEL = "breakeven.dev/e2e-pool"

Node = dict[str, Any]


def load_description(
    source: str | Path | Mapping[str, Any] = DEFAULT_DESCRIPTION,
) -> dict[str, Any]:
    """A node-pool description from a mapping, a YAML file path, or a name in e2e/nodepools/."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.exists() and not path.suffix:
        path = NODEPOOLS_DIR / f"{source}.yaml"
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        raise ValueError(f"{path}: expected a mapping with a 'pools' list")
    return data


def _node(pool: Mapping[str, Any], index: int) -> Node:
    name = f"{pool['name']}-{index}"
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        "type": "kwok",
        POOL_LABEL: str(pool["name"]),
    }
    for key, value in (pool.get("labels") or {}).items():
        labels[str(key)] = (
            str(value).replace("{pool}", str(pool["name"])).replace("{index}", str(index))
        )
    capacity = {str(k): str(v) for k, v in (pool.get("capacity") or {}).items()}
    allocatable = {str(k): str(v) for k, v in (pool.get("allocatable") or capacity).items()}
    annotations = {str(k): str(v) for k, v in (pool.get("annotations") or {}).items()}
    annotations[KWOK_ANNOTATION] = KWOK_ANNOTATION_VALUE
    annotations.setdefault("node.alpha.kubernetes.io/ttl", "0")
    spec: dict[str, Any] = {}
    if pool.get("taints"):
        spec["taints"] = copy.deepcopy(list(pool["taints"]))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": allocatable},
    }


def node_objects(description: str | Path | Mapping[str, Any] = DEFAULT_DESCRIPTION) -> list[Node]:
    """Every Node (as a dict) that a pool description stands for, named `<pool>-<index>`."""
    data = load_description(description)
    nodes: list[Node] = []
    for pool in data["pools"]:
        for index in range(int(pool.get("count", 1))):
            nodes.append(_node(pool, index))
    return nodes


def without_labels(nodes: Iterable[Node], keys: Iterable[str]) -> list[Node]:
    """Copies of `nodes` without the label `keys` (e.g. a cluster without GPU feature discovery)."""
    drop = set(keys)
    out = []
    for node in nodes:
        node = copy.deepcopy(node)
        labels = node["metadata"].get("labels", {})
        node["metadata"]["labels"] = {k: v for k, v in labels.items() if k not in drop}
        out.append(node)
    return out


# Pools that a benchmark-sized cluster is drawn from, with their share of nodes.
_SYNTHETIC_POOLS: list[tuple[float, dict[str, Any]]] = [
    (0.30, {
        "name": "h100", "gpus": 8, "product": "NVIDIA-H100-80GB-HBM3", "memory": 81559,
        "family": "hopper", "rdma": True,
    }),
    (0.20, {
        "name": "h200", "gpus": 8, "product": "NVIDIA-H200", "memory": 143771,
        "family": "hopper", "rdma": True,
    }),
    (0.10, {
        "name": "b200", "gpus": 8, "product": "NVIDIA-B200", "memory": 183359,
        "family": "blackwell", "rdma": True,
    }),
    (0.15, {
        "name": "gb200", "gpus": 4, "product": "NVIDIA-GB200", "memory": 189471,
        "family": "blackwell", "rdma": True, "clique": 18,
    }),
    (0.15, {
        "name": "l40s", "gpus": 8, "product": "NVIDIA-L40S", "memory": 46068,
        "family": "ada-lovelace", "rdma": False,
    }),
    (0.10, {"name": "cpu", "gpus": 0}),
]  # fmt: skip


def synthetic_cluster(n: int, nodes_per_leaf: int = 32) -> list[Node]:
    """`n` fake nodes in a fixed mix of GPU types (H100, H200, B200, GB200 NVL72, L40S, CPU).

    Deterministic: the same `n` gives the same nodes. GB200 nodes come in NVLink cliques of 18,
    RDMA nodes are spread over leaf switches of `nodes_per_leaf`. Pure: no cluster needed.
    """
    counts = [int(n * share) for share, _ in _SYNTHETIC_POOLS]
    counts[0] += n - sum(counts)
    nodes: list[Node] = []
    for count, (_, kind) in zip(counts, _SYNTHETIC_POOLS, strict=True):
        gpus = int(kind["gpus"])
        capacity = {"cpu": "192", "memory": "2Ti", "pods": "110", "ephemeral-storage": "20Ti"}
        labels: dict[str, str] = {"topology.kubernetes.io/zone": "zone-a"}
        if gpus:
            capacity["nvidia.com/gpu"] = str(gpus)
            labels.update({
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": kind["product"],
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": str(kind["memory"]),
                "nvidia.com/gpu.family": kind["family"],
            })  # fmt: skip
        if kind.get("rdma"):
            capacity["rdma/rdma_shared_device_a"] = "1000"
            labels["feature.node.kubernetes.io/rdma.capable"] = "true"
            labels["feature.node.kubernetes.io/rdma.available"] = "true"
        pool = {"name": f"syn-{kind['name']}", "labels": labels, "capacity": capacity}
        for index in range(count):
            node = _node(pool, index)
            node_labels = node["metadata"]["labels"]
            if kind.get("rdma"):
                node_labels["network.topology.nvidia.com/leaf"] = f"leaf-{index // nodes_per_leaf}"
            if kind.get("clique"):
                node_labels["nvidia.com/gpu.clique"] = (
                    f"00000000-0000-4000-8000-000000000000.{index // int(kind['clique'])}"
                )
            nodes.append(node)
    return nodes


def _core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


def _apply_one(core: Any, node: Node) -> None:
    from kubernetes.client.exceptions import ApiException

    name = node["metadata"]["name"]
    try:
        created = core.create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise
        meta_patch = {
            "metadata": {
                "labels": node["metadata"]["labels"],
                "annotations": node["metadata"]["annotations"],
            },
            "spec": node.get("spec") or {},
        }
        core.patch_node(name, meta_patch)
        created = None
    want = node.get("status") or {}
    have = (created.status.capacity or {}) if created is not None and created.status else {}
    if want and have != want.get("capacity"):
        status = {k: want[k] for k in ("capacity", "allocatable") if k in want}
        core.patch_node_status(name, {"status": status})


def apply_nodes(api_client: Any, nodes: Sequence[Node], parallelism: int = 8) -> None:
    """Create each Node, or update its labels, annotations, spec and resources.

    kwok then marks the Nodes Ready (when its annotation selector matches).
    """
    core = _core(api_client)
    if parallelism <= 1 or len(nodes) < 2:
        for node in nodes:
            _apply_one(core, node)
        return
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        for future in [pool.submit(_apply_one, core, node) for node in nodes]:
            future.result()


def remove_labels(api_client: Any, node_names: Iterable[str], keys: Iterable[str]) -> None:
    """Remove label `keys` from live Nodes (a JSON merge patch with null values)."""
    core = _core(api_client)
    patch = {"metadata": {"labels": dict.fromkeys(keys)}}
    for name in node_names:
        core.patch_node(name, patch)


def delete_nodes(api_client: Any, node_names: Iterable[str]) -> None:
    """Delete Nodes by name, ignoring ones already gone."""
    from kubernetes.client.exceptions import ApiException

    core = _core(api_client)
    for name in node_names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def ready_node_names(api_client: Any, label_selector: str = "") -> list[str]:
    """Names of Nodes whose Ready condition is True."""
    names = []
    for node in _core(api_client).list_node(label_selector=label_selector).items:
        conditions = (node.status.conditions or []) if node.status else []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            names.append(node.metadata.name)
    return names
