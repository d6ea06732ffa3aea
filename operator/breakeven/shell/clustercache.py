"""The cluster's GPU pools, built once per state of the node index and node selector.

`facts.Cluster.from_nodes` groups every GPU node into pools and checks each node's quantities:
at 4,500 GPU nodes that is about 90 ms of CPU (docs/performance.md), which every reconcile paid,
although the nodes change far less often than plans are reconciled (a node's status every 10
minutes or so). The answer depends only on the nodes, the label mapping and the plan's node
selector, so it is kept per selector while the index holds the same NodeInfo objects: kopf puts
a new object in the index for every event of a node, so "the same objects, in the same order"
(an identity check, about 0.2 ms at 4,500 nodes) means "the same nodes". The cached tuple keeps
those objects alive, so an id is never reused by another object while it is compared.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from breakeven.core import facts

MAX_SELECTORS = 64  # distinct node selectors kept (least recently used dropped)


class ClusterCache:
    def __init__(self, size: int = MAX_SELECTORS) -> None:
        self.size = size
        self._kept: OrderedDict[
            tuple[tuple[str, str], ...] | None, tuple[tuple[facts.NodeInfo, ...], facts.Cluster]
        ] = OrderedDict()
        self.hits = self.misses = 0

    def get(
        self,
        nodes: Sequence[facts.NodeInfo],
        mapping: facts.LabelMapping,
        node_selector: Mapping[str, str] | None,
        source: str = "cluster",
    ) -> facts.Cluster:
        """`facts.Cluster.from_nodes(nodes, mapping, node_selector, source)`, from the cache when
        `nodes` are the very objects it was built from (mapping and source must not vary)."""
        key = tuple(sorted(node_selector.items())) if node_selector else None
        now = tuple(nodes)
        kept = self._kept.get(key)
        if kept is not None and len(kept[0]) == len(now) and all(map(operator.is_, kept[0], now)):
            self._kept.move_to_end(key)
            self.hits += 1
            return kept[1]
        self.misses += 1
        cluster = facts.Cluster.from_nodes(now, mapping, node_selector=node_selector, source=source)
        self._kept[key] = (now, cluster)
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return cluster
