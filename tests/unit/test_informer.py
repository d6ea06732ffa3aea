"""shell/informer.py against a small scripted API server on 127.0.0.1 (aiohttp.web): paged lists,
an expired continue token, watch events, bookmarks, bad lines, 410s and dropped watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import pytest
from aiohttp import web
from builders import node as build_node
from kubernetes.aio import client as k8s

from breakeven.core import facts
from breakeven.shell import informer as informer_module
from breakeven.shell.informer import Informer, collection_path
from breakeven.shell.runtime import gpu_node

MAPPING = facts.LabelMapping()


def node(name: str, gpus: int = 8, rv: int = 1, **labels: str) -> dict[str, Any]:
    body = build_node(name, product="NVIDIA-H200" if gpus else None, gpus=gpus, labels=labels)
    body["metadata"]["resourceVersion"] = str(rv)
    return body


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def bookmark(rv: int) -> bytes:
    return line("BOOKMARK", {"kind": "Node", "metadata": {"resourceVersion": str(rv)}})


class FakeAPI:
    """Serves /api/v1/nodes: lists from `nodes` (paged by name), watches from `watches`, a
    queue of scripts (bytes lines to send then close, or an int HTTP status); with no script
    queued a watch stays open until the test ends. Every request's query is logged."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rv = 10
        self.requests: list[dict[str, str]] = []
        self.watches: asyncio.Queue[list[bytes] | int] = asyncio.Queue()
        self.list_status: list[int] = []  # statuses to answer list requests with, first first
        self.expire_continue = 0  # how many continue requests answer 410

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        if query.get("watch") == "true":
            return await self._watch(request)
        if self.list_status:
            return web.Response(status=self.list_status.pop(0), text="{}")
        if "continue" in query and self.expire_continue:
            self.expire_continue -= 1
            return web.json_response({"kind": "Status", "code": 410}, status=410)
        names = sorted(self.nodes)
        start = int(query.get("continue", "0"))
        limit = int(query.get("limit", "0")) or len(names)
        page = names[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(names):
            meta["continue"] = str(start + limit)
        return web.json_response(
            {"kind": "NodeList", "metadata": meta, "items": [self.nodes[n] for n in page]}
        )

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        script = await self.watches.get()
        if isinstance(script, int):
            return web.json_response({"kind": "Status", "code": script}, status=script)
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in script:
            await response.write(chunk)
        return response

    def watch_queries(self) -> list[dict[str, str]]:
        return [q for q in self.requests if q.get("watch") == "true"]

    def list_queries(self) -> list[dict[str, str]]:
        return [q for q in self.requests if q.get("watch") != "true"]


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeAPI, k8s.ApiClient]]:
    fake = FakeAPI()
    app = web.Application()
    app.router.add_get("/api/v1/nodes", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        yield fake, client
    finally:
        await client.close()
        await runner.cleanup()


Changes = list[tuple[str, Hashable, Any, Any]]


def start(
    client: k8s.ApiClient, page_size: int = 3
) -> tuple[Informer[facts.NodeInfo], Changes, asyncio.Task[None]]:
    changes: Changes = []
    inf: Informer[facts.NodeInfo] = Informer(
        client,
        collection_path("", "v1", "nodes"),
        lambda body: gpu_node(body, MAPPING),
        on_change=lambda *change: changes.append(change),
        page_size=page_size,
        name="nodes",
    )
    return inf, changes, asyncio.create_task(inf.run())


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`; fail after many event-loop turns (a guard, not a timing test)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "BACKOFF_INIT", 0.01)
    monkeypatch.setattr(informer_module, "BACKOFF_MAX", 0.02)


async def test_paged_list_fills_the_store_and_skips_nodes_without_gpus(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    for i in range(7):
        fake.nodes[f"n{i}"] = node(f"n{i}")
    fake.nodes["cpu"] = node("cpu", gpus=0)
    inf, changes, task = start(client, page_size=3)
    try:
        await until(inf.synced.is_set)
        assert sorted(k[1] for k in inf.store) == [f"n{i}" for i in range(7)]
        assert all(isinstance(v, facts.NodeInfo) for v in inf.store.values())
        lists = fake.list_queries()
        assert [q.get("continue") for q in lists] == [None, "3", "6"]
        assert all(q["limit"] == "3" for q in lists)
        assert inf.resource_version == "10"
        assert [c[0] for c in changes] == ["ADDED"] * 7
        await until(lambda: len(fake.watch_queries()) == 1)
        watch = fake.watch_queries()[0]
        assert watch["resourceVersion"] == "10"
        assert watch["allowWatchBookmarks"] == "true"
        assert int(watch["timeoutSeconds"]) >= 1
    finally:
        await stop(task)


async def test_an_expired_continue_token_lists_again_from_the_start(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    for i in range(5):
        fake.nodes[f"n{i}"] = node(f"n{i}")
    fake.expire_continue = 1
    inf, _, task = start(client, page_size=2)
    try:
        await until(inf.synced.is_set)
        assert [q.get("continue") for q in fake.list_queries()] == [None, "2", None, "2", "4"]
        assert len(inf.store) == 5
    finally:
        await stop(task)


async def test_watch_events_bookmarks_and_bad_lines(api: tuple[FakeAPI, k8s.ApiClient]) -> None:
    fake, client = api
    fake.nodes = {"a": node("a"), "b": node("b")}
    inf, changes, task = start(client)
    try:
        await until(inf.synced.is_set)
        held = inf.store[("", "a")]
        changes.clear()
        heartbeat = node("a", rv=11)  # the same projection: a kwok heartbeat
        relabelled = node("b", rv=12, pool="x")
        script = [
            line("MODIFIED", heartbeat),
            b"this is not json\n",
            b'{"type": "ADDED"}\n',  # no object
            line("ADDED", {"metadata": {"labels": {}}}),  # no name
            line("ADDED", node("c", rv=13)),
            line("MODIFIED", relabelled),
            line("ADDED", node("cpu", gpus=0, rv=14)),
            line("DELETED", node("c", rv=15)),
            bookmark(20),
        ]
        await fake.watches.put(script)
        await until(lambda: len(fake.watch_queries()) >= 2)  # the watch ended; watched again
        assert inf.store[("", "a")] is held  # an unchanged projection keeps its object
        assert [(c[0], c[1]) for c in changes] == [
            ("ADDED", ("", "c")),
            ("MODIFIED", ("", "b")),
            ("DELETED", ("", "c")),
        ]
        assert changes[1][3].labels["pool"] == "x"
        assert sorted(inf.store) == [("", "a"), ("", "b")]
        assert fake.watch_queries()[1]["resourceVersion"] == "20"  # from the bookmark
        assert len(fake.list_queries()) == 1  # a watch that ended is not a new list
    finally:
        await stop(task)


async def test_a_node_that_loses_its_gpus_leaves_the_store(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    fake.nodes = {"a": node("a")}
    inf, changes, task = start(client)
    try:
        await until(inf.synced.is_set)
        await fake.watches.put([line("MODIFIED", node("a", gpus=0, rv=11))])
        await until(lambda: not inf.store)
        assert changes[-1][0] == "DELETED"
    finally:
        await stop(task)


@pytest.mark.parametrize("how", ["error event", "http status"])
async def test_a_410_on_the_watch_lists_again_and_reports_what_vanished(
    api: tuple[FakeAPI, k8s.ApiClient], how: str
) -> None:
    fake, client = api
    fake.nodes = {"a": node("a"), "b": node("b"), "c": node("c")}
    inf, changes, task = start(client)
    try:
        await until(inf.synced.is_set)
        kept_b = inf.store[("", "b")]
        changes.clear()
        # While the watch was away: c deleted, d added, a relabelled.
        del fake.nodes["c"]
        fake.nodes["d"] = node("d", rv=30)
        fake.nodes["a"] = node("a", rv=31, pool="y")
        fake.rv = 40
        gone = line("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})
        await fake.watches.put([gone] if how == "error event" else 410)
        await until(lambda: len(fake.list_queries()) == 2 and inf.resource_version == "40")
        assert sorted(inf.store) == [("", "a"), ("", "b"), ("", "d")]
        assert inf.store[("", "b")] is kept_b
        assert sorted((c[0], c[1]) for c in changes) == [
            ("ADDED", ("", "d")),
            ("DELETED", ("", "c")),
            ("MODIFIED", ("", "a")),
        ]
        await until(lambda: len(fake.watch_queries()) == 2)
        assert fake.watch_queries()[1]["resourceVersion"] == "40"
    finally:
        await stop(task)


async def test_a_dropped_watch_resumes_from_the_last_resource_version(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    fake.nodes = {"a": node("a")}
    inf, _, task = start(client)
    try:
        await until(inf.synced.is_set)
        # The stream ends in the middle of a line (a connection cut), then an HTTP 500.
        await fake.watches.put([line("ADDED", node("b", rv=17)), b'{"type": "MOD'])
        await fake.watches.put(500)
        await until(lambda: len(fake.watch_queries()) == 3)
        assert [q["resourceVersion"] for q in fake.watch_queries()] == ["10", "17", "17"]
        assert sorted(inf.store) == [("", "a"), ("", "b")]
        assert len(fake.list_queries()) == 1
    finally:
        await stop(task)


async def test_a_failing_list_is_retried(api: tuple[FakeAPI, k8s.ApiClient]) -> None:
    fake, client = api
    fake.nodes = {"a": node("a")}
    fake.list_status = [500, 403]
    inf, _, task = start(client)
    try:
        await until(inf.synced.is_set)
        assert len(fake.list_queries()) == 3
        assert list(inf.store) == [("", "a")]
    finally:
        await stop(task)


def test_collection_paths() -> None:
    assert collection_path("", "v1", "nodes") == "/api/v1/nodes"
    assert (
        collection_path("apps", "v1", "deployments", "team a")
        == "/apis/apps/v1/namespaces/team%20a/deployments"
    )


async def test_a_collection_not_served_is_empty_and_synced(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    fake.list_status = [404]
    inf, _, task = start(client)
    try:
        await until(inf.synced.is_set)
        assert inf.store == {}
        assert fake.watch_queries() == []  # no watch of what is not there
    finally:
        await stop(task)


async def test_a_projection_that_raises_skips_the_object_and_keeps_the_rest(
    api: tuple[FakeAPI, k8s.ApiClient],
) -> None:
    fake, client = api
    fake.nodes = {"a": node("a"), "bad": node("bad")}
    changes: Changes = []

    def project(body: Any) -> facts.NodeInfo | None:
        if body["metadata"]["name"] == "bad":
            raise ValueError("a malformed object")
        return gpu_node(body, MAPPING)

    inf: Informer[facts.NodeInfo] = Informer(
        client, "/api/v1/nodes", project, on_change=lambda *c: changes.append(c)
    )
    task = asyncio.create_task(inf.run())
    try:
        await until(inf.synced.is_set)
        assert list(inf.store) == [("", "a")]
        await fake.watches.put([line("MODIFIED", node("bad", rv=11)), bookmark(12)])
        await until(lambda: inf.resource_version == "12")
        assert list(inf.store) == [("", "a")] and len(changes) == 1
    finally:
        await stop(task)
