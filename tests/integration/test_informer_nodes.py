"""The Node informer (shell/informer.py) against the test control plane's API server: its first
list holds the fake GPU nodes, and the store follows Nodes created, relabelled and deleted."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from breakeven.core import facts
from breakeven.shell.informer import Informer, collection_path
from breakeven.shell.runtime import gpu_node
from e2e.fixtures import ClusterHandle
from e2e.nodes import apply_nodes, delete_nodes

pytestmark = pytest.mark.integration

NAME = "informer-test-0"


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition` (a guard against a hang, not a timing assertion)."""
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def test_the_node_informer_follows_the_api_server(cluster: ClusterHandle) -> None:
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    mapping = facts.LabelMapping()
    changes: list[tuple[str, Hashable]] = []
    async with k8s.ApiClient(configuration) as api_client:
        informer: Informer[facts.NodeInfo] = Informer(
            api_client,
            collection_path("", "v1", "nodes"),
            lambda body: gpu_node(body, mapping),
            on_change=lambda kind, key, old, new: changes.append((kind, key)),
            page_size=2,  # several pages even with the few fake nodes
        )
        task = asyncio.create_task(informer.run())
        sync = cluster.api_client()
        try:
            await until(informer.synced.is_set)
            gpu_names = {
                n["metadata"]["name"] for n in cluster.nodes if gpu_node(n, mapping) is not None
            }
            assert gpu_names and {k[1] for k in informer.store} >= gpu_names
            assert informer.lists == 1

            base: dict[str, Any] = copy.deepcopy(cluster.nodes[0])
            base["metadata"]["name"] = NAME
            base["metadata"].setdefault("labels", {})["kubernetes.io/hostname"] = NAME
            await asyncio.to_thread(apply_nodes, sync, [base])
            await until(lambda: ("", NAME) in informer.store)
            assert ("ADDED", ("", NAME)) in changes
            # kwok marks it Ready and keeps its heartbeat: the projection changes once (Ready)
            await until(lambda: informer.store[("", NAME)].ready)
            held = informer.store[("", NAME)]

            core = client.CoreV1Api(sync)
            # An annotation changes no projection: once the informer has seen that event (its
            # resourceVersion), the store still holds the very same object. kubelet-like labels
            # and conditions kwok adds after the node is Ready may land in between, so a few
            # tries; one must keep the object.
            kept = False
            for i in range(5):
                held = informer.store[("", NAME)]
                note = {"metadata": {"annotations": {"breakeven.dev/x": str(i)}}}
                patched = await asyncio.to_thread(core.patch_node, NAME, note)
                seen = int(patched.metadata.resource_version)
                await until(lambda seen=seen: int(informer.resource_version) >= seen)
                if informer.store[("", NAME)] is held:
                    kept = True
                    break
            assert kept
            await asyncio.to_thread(
                core.patch_node, NAME, {"metadata": {"labels": {"breakeven.dev/pool": "x"}}}
            )
            await until(lambda: informer.store[("", NAME)].labels.get("breakeven.dev/pool") == "x")
            assert informer.store[("", NAME)] is not held
            assert changes[-1] == ("MODIFIED", ("", NAME))

            await asyncio.to_thread(delete_nodes, sync, [NAME])
            await until(lambda: ("", NAME) not in informer.store)
            assert changes[-1] == ("DELETED", ("", NAME))
            assert informer.lists == 1 and informer.watches >= 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                delete_nodes(sync, [NAME])
            sync.close()
