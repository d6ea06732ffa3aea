"""The cluster's GPU pools, built once per state of the node index and node selector.

`facts.Cluster.from_nodes` groups every GPU node into pools and checks each node's quantities:
at 4,500 GPU nodes that is about 90 ms of CPU (docs/performance.md), which every reconcile paid,
although the nodes change far less often than plans are reconciled (a node's status every 10
minutes or so). The answer depends only on the nodes, the label mapping and the plan's node
selector, so it is kept per selector while the Node informer's store holds the same NodeInfo
objects: it puts a new object there only when a node's projection changed (shell/informer.py),
so "the same objects, in the same order"
(an identity check, about 0.2 ms at 4,500 nodes) means "the same nodes". The cached tuple keeps
those objects alive, so an id is never reused by another object while it is compared.

While Nodes churn (a fleet coming up, a rollout relabelling nodes), every reconcile would find a
new object somewhere and group every node again: at 5,000 nodes that was about 90 ms of CPU per
reconcile, and a burst of new plans ran at the grouping's pace (docs/performance.md). With
`min_age`, pools built less than `min_age` seconds ago are answered even though a node changed
since (counted in `holds`), so the grouping runs at most once per `min_age` per node selector
however fast the nodes change. Nothing is re-queued for a held answer: a node change never
triggered a reconcile (plans see nodes at their periodic re-evaluation), and asking again for
every plan answered from held pools multiplied the reconciles while the nodes churned (measured:
45 reconciles of 11 plans in one interval). So a node change reaches a plan at its first
reconcile that starts `min_age` after the pools were last grouped: within one interval plus
`min_age` while nodes keep changing, as within one interval when they do not.
"""

from __future__ import annotations

import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from breakeven.core import facts

MAX_SELECTORS = 64  # distinct node selectors kept (least recently used dropped)


class _Kept(NamedTuple):
    nodes: tuple[facts.NodeInfo, ...]
    cluster: facts.Cluster
    built: float  # clock() when built


class ClusterCache:
    def __init__(
        self,
        size: int = MAX_SELECTORS,
        min_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.min_age = min_age
        self.clock = clock
        self._kept: OrderedDict[tuple[tuple[str, str], ...] | None, _Kept] = OrderedDict()
        self.hits = self.misses = self.holds = 0

    def get(
        self,
        nodes: Sequence[facts.NodeInfo],
        mapping: facts.LabelMapping,
        node_selector: Mapping[str, str] | None,
        source: str = "cluster",
    ) -> facts.Cluster:
        """`facts.Cluster.from_nodes(nodes, mapping, node_selector, source)`, from the cache when
        `nodes` are the very objects it was built from (mapping and source must not vary), or
        built from older ones under `min_age` seconds ago (a hold)."""
        key = tuple(sorted(node_selector.items())) if node_selector else None
        now = tuple(nodes)
        kept = self._kept.get(key)
        if kept is not None:
            same = len(kept.nodes) == len(now) and all(map(operator.is_, kept.nodes, now))
            if same or self.clock() - kept.built < self.min_age:
                self._kept.move_to_end(key)
                if same:
                    self.hits += 1
                else:
                    self.holds += 1
                return kept.cluster
        self.misses += 1
        cluster = facts.Cluster.from_nodes(now, mapping, node_selector=node_selector, source=source)
        self._kept[key] = _Kept(now, cluster, self.clock())
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return cluster
