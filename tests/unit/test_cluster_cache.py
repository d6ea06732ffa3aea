"""shell/clustercache.py: the GPU pools are rebuilt when the node index changes, or held a
bounded while and said to be held."""

from __future__ import annotations

from typing import Any

from breakeven.core import facts
from breakeven.shell.clustercache import ClusterCache

MAPPING = facts.LabelMapping()


def node(name: str, product: str = "NVIDIA-H100-80GB-HBM3", zone: str = "a") -> facts.NodeInfo:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": "8",
                "nvidia.com/gpu.memory": "81559",
                "topology.kubernetes.io/zone": zone,
            },
        },
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    return facts.node_info(body, MAPPING)


def test_the_same_nodes_give_the_cached_pools_and_equal_what_from_nodes_gives() -> None:
    cache = ClusterCache()
    nodes = [node("a"), node("b"), node("c", "NVIDIA-H200")]
    first = cache.get(nodes, MAPPING, None)
    assert first == facts.Cluster.from_nodes(nodes, MAPPING, source="cluster")
    assert cache.get(list(nodes), MAPPING, None) is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_node_event_rebuilds_the_pools() -> None:
    cache = ClusterCache()
    nodes = [node("a"), node("b")]
    before = cache.get(nodes, MAPPING, None)
    nodes[1] = node("b", "NVIDIA-H200")  # the informer stored a new object for node b
    after = cache.get(nodes, MAPPING, None)
    assert after == facts.Cluster.from_nodes(nodes, MAPPING, source="cluster") != before
    gone = cache.get(nodes[:1], MAPPING, None)  # a node deleted
    assert gone == facts.Cluster.from_nodes(nodes[:1], MAPPING, source="cluster")
    assert cache.misses == 3


def test_each_node_selector_has_its_own_pools_and_the_oldest_is_dropped() -> None:
    cache = ClusterCache(size=2)
    nodes = [node("a", zone="a"), node("b", zone="b")]
    in_a = cache.get(nodes, MAPPING, {"topology.kubernetes.io/zone": "a"})
    everywhere = cache.get(nodes, MAPPING, None)
    assert in_a == facts.Cluster.from_nodes(
        nodes, MAPPING, node_selector={"topology.kubernetes.io/zone": "a"}, source="cluster"
    )
    assert in_a != everywhere
    cache.get(nodes, MAPPING, {"topology.kubernetes.io/zone": "b"})  # drops the zone-a entry
    assert cache.get(nodes, MAPPING, None) is everywhere
    cache.get(nodes, MAPPING, {"topology.kubernetes.io/zone": "a"})
    assert cache.misses == 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_while_nodes_churn_the_pools_are_held_under_min_age_and_counted() -> None:
    clock = Clock()
    cache = ClusterCache(min_age=5.0, clock=clock)
    nodes = [node("a"), node("b")]
    first = cache.get(nodes, MAPPING, None)
    nodes[1] = node("b", "NVIDIA-H200")  # a node changed 1 s after the pools were built
    clock.now += 1.0
    held = cache.get(nodes, MAPPING, None)
    assert held is first and cache.holds == 1
    clock.now += 4.0  # the pools are min_age old: the next question groups the nodes again
    fresh = cache.get(nodes, MAPPING, None)
    assert cache.holds == 1
    assert fresh == facts.Cluster.from_nodes(nodes, MAPPING, source="cluster")
    assert fresh != first
    assert (cache.hits, cache.holds, cache.misses) == (0, 1, 2)
    assert cache.get(list(nodes), MAPPING, None) is fresh  # unchanged: a hit
    assert (cache.hits, cache.holds) == (1, 1)


def test_without_min_age_a_change_is_never_held() -> None:
    cache = ClusterCache(clock=Clock())  # the clock never moves
    nodes = [node("a")]
    cache.get(nodes, MAPPING, None)
    nodes[0] = node("a", "NVIDIA-H200")
    cache.get(nodes, MAPPING, None)
    assert cache.holds == 0
    assert cache.misses == 2
