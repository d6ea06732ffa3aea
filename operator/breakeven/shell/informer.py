"""A list+watch cache of one kind of object, kept as small projections (client-go's reflector).

    Informer.run ─ list ── paged GETs (limit, continue); each page's items projected at once
                 │         and the page dropped, so whole bodies never pile up; a 410 on a
                 │         continue token lists again from the start (client-go's
                 │         tools/pager/pager.go, FullListIfExpired); objects the store held that
                 │         the list no longer has are reported deleted
                 └ watch ─ from the list's resourceVersion, allowWatchBookmarks, timeoutSeconds
                           (tools/cache/reflector.go, Reflector.watch); each line decoded and
                           projected as it arrives; bookmarks move the resourceVersion; a watch
                           that ends or drops is started again from the last resourceVersion;
                           410 Gone (an ERROR event or the HTTP status) lists again

The store maps a key to the projection of each object the projection keeps (one that returns
None is not kept: a Node without GPUs). An event whose projection equals the one held keeps the
held object and reports nothing, so a heartbeat of a node (a kwok node's status every few
seconds) leaves the store's objects as they were: shell/clustercache.py compares them by
identity. `on_change(type, key, old, new)` is called for every change; `synced` is set once the
first list is in.

Why not kopf's indexes: kopf lists every object in one unpaged response and keeps each body in a
per-object worker for a few seconds, so at start every Node body is alive at once (312 MB of RSS
at 5,000 nodes) and it spends ~10 ms per event (docs/performance.md, run J). Why not
kubernetes.aio's watch.Watch: it deserialises each event's object into the client's model
classes (kubernetes/aio/watch/watch.py, Watch.unmarshal_event calls ApiClient.deserialize when
it finds a return type, as it does for list_node), and it retries a 410 by watching again from
the same, expired, resourceVersion instead of listing. This reads the raw response lines itself
through the operator's ApiClient (its authentication, TLS and connection pool).

Objects are untrusted input: a line that is not JSON, an event without a type or object, or an
object the projection raises on is logged and skipped; nothing an API server sends stops it.
Errors back off exponentially (0.8 s doubling to 30 s with jitter, reflector.go's defaults),
reset by a list or watch that worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import urllib.parse
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp
from kubernetes.aio import client as k8s

logger = logging.getLogger("breakeven")

T = TypeVar("T")

PAGE_SIZE = 500  # items per LIST page (client-go's pager default)
WATCH_TIMEOUT = (300, 600)  # seconds a watch asks for, drawn per watch (reflector.go's range)
BACKOFF_INIT = 0.8
BACKOFF_MAX = 30.0
MAX_LINE = 16 * 1024 * 1024  # a watch line longer than this is dropped and the watch restarted


class Gone(Exception):
    """The resourceVersion or continue token expired (410): list again."""


class Failed(Exception):
    """A request failed; back off and try again."""


class NotServed(Exception):
    """The API server does not serve the collection (404: its CRD is not installed)."""


NOT_SERVED_RETRY = 60.0  # seconds before a collection that was not served is listed again


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name); cluster-scoped objects have namespace ""."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    namespace, name = meta.get("namespace") or "", meta.get("name")
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise ValueError("metadata.name (and metadata.namespace) must be strings")
    return namespace, name


def _resource_version(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) and rv else None


Change = Callable[[str, Hashable, Any, Any], None]


class Informer(Generic[T]):
    """List and watch `path` (an API collection path, e.g. /api/v1/nodes) into `store`."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        path: str,
        project: Callable[[Mapping[str, Any]], T | None],
        *,
        key: Callable[[Mapping[str, Any]], Hashable] = object_key,
        label_selector: str | None = None,
        on_change: Change | None = None,
        page_size: int = PAGE_SIZE,
        watch_timeout: tuple[int, int] = WATCH_TIMEOUT,
        name: str | None = None,
    ) -> None:
        self.api_client = api_client
        self.path = path
        self.project = project
        self.key = key
        self.label_selector = label_selector
        self.on_change = on_change
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.name = name or path
        self.store: dict[Hashable, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.lists = self.watches = 0  # requests started (for tests and logs)
        self._failures = 0

    # ------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        """List, then watch until the watch needs a new list; forever (cancel to stop)."""
        while True:
            try:
                await self._list()
            except (Failed, Gone) as exc:
                await self._back_off(f"list failed: {exc}")
                continue
            except NotServed:
                # Not an error of ours: as kopf does for a resource the cluster lacks, nothing
                # is kept (the store empty and synced), and the list is tried again later.
                logger.info(
                    "%s: not served by the API server (404); again in %.0fs",
                    self.name,
                    NOT_SERVED_RETRY,
                )
                for key in list(self.store):
                    self._remove(key)
                self.synced.set()
                await asyncio.sleep(NOT_SERVED_RETRY)
                continue
            except Exception as exc:  # a bug of ours must not end the informer either
                logger.exception("%s: list failed", self.name)
                await self._back_off(f"list failed: {type(exc).__name__}")
                continue
            self._failures = 0
            while True:
                try:
                    await self._watch()
                except Gone:
                    logger.info("%s: watch expired (410); listing again", self.name)
                    break
                except Failed as exc:
                    await self._back_off(f"watch failed: {exc}")
                except Exception as exc:  # a bug of ours: list again rather than stop
                    logger.exception("%s: watch failed", self.name)
                    await self._back_off(f"watch failed: {type(exc).__name__}")
                    break

    async def _back_off(self, why: str) -> None:
        self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_INIT * 2 ** (self._failures - 1))
        delay *= 1 + random.random()  # jitter 1.0, as reflector.go's default back-off
        delay = min(delay, BACKOFF_MAX)
        logger.warning("%s: %s; retrying in %.1fs", self.name, why, delay)
        await asyncio.sleep(delay)

    # ------------------------------------------------------------------------- requests

    async def _get(self, query: dict[str, str], timeout: aiohttp.ClientTimeout) -> Any:
        if self.label_selector:
            query = {**query, "labelSelector": self.label_selector}
        try:
            method, url, headers, _, _ = await self.api_client.param_serialize(
                "GET",
                self.path,
                query_params=list(query.items()),
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            return await self.api_client.call_api(method, url, headers, _request_timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, k8s.ApiException) as exc:
            raise Failed(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def _status(response: Any) -> None:
        """Raise Gone or Failed for a response that is not 200 (its body read and dropped)."""
        status = response.status
        if status == 200:
            return
        with contextlib.suppress(Exception):
            await response.read()
        response.response.release()
        if status == 410:
            raise Gone(f"HTTP {status}")
        raise Failed(f"HTTP {status} {response.reason}")

    # ------------------------------------------------------------------------- list

    async def _list(self) -> None:
        """Every object, page by page, into the store; then what the list lacks is deleted."""
        self.lists += 1
        seen: set[Hashable] = set()
        query = {"limit": str(self.page_size)}
        timeout = aiohttp.ClientTimeout(total=120)
        while True:
            response = await self._get(query, timeout)
            if response.status == 404:
                with contextlib.suppress(Exception):
                    await response.read()
                response.response.release()
                raise NotServed()
            try:
                await self._status(response)
            except Gone:
                if "continue" not in query:
                    raise
                # The continue token expired while we worked through the pages: list again
                # from the start, as pager.go's FullListIfExpired does.
                logger.info("%s: list continue token expired (410); listing again", self.name)
                query, seen = {"limit": str(self.page_size)}, set()
                continue
            try:
                page = json.loads(await response.read())
            except (ValueError, aiohttp.ClientError, TimeoutError) as exc:
                raise Failed(f"list page unreadable: {exc}") from exc
            finally:
                response.response.release()
            if not isinstance(page, Mapping):
                raise Failed("list page is not an object")
            items = page.get("items")
            for obj in items if isinstance(items, list) else []:
                key = self._apply("ADDED", obj)
                if key is not None:
                    seen.add(key)
            meta = page.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            token = meta.get("continue")
            del page, items
            if isinstance(token, str) and token:
                query = {"limit": str(self.page_size), "continue": token}
                continue
            rv = meta.get("resourceVersion")
            if not isinstance(rv, str) or not rv:
                raise Failed("list without metadata.resourceVersion")
            break
        for key in [k for k in self.store if k not in seen]:
            self._remove(key)
        self.resource_version = rv
        self.synced.set()

    # ------------------------------------------------------------------------- watch

    async def _watch(self) -> None:
        """One watch from the current resourceVersion, until it ends; Gone on a 410."""
        self.watches += 1
        seconds = random.randint(*self.watch_timeout)
        query = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        # The server ends the watch after timeoutSeconds; a silent connection is dropped a
        # minute after that (behind a load balancer a watch can go quiet without closing).
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=seconds + 60)
        response = await self._get(query, timeout)
        await self._status(response)
        self._failures = 0
        buffer = b""
        try:
            async for chunk in response.response.content.iter_any():
                buffer += chunk
                if len(buffer) > MAX_LINE and b"\n" not in buffer:
                    raise Failed(f"a watch line longer than {MAX_LINE} bytes")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(line)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Failed(f"watch dropped: {type(exc).__name__}: {exc}") from exc
        finally:
            response.response.release()
        if buffer.strip():
            self._event(buffer)  # the last line, without its newline

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            logger.warning("%s: skipped a watch line that is not JSON: %.200r", self.name, line)
            return
        kind = event.get("type") if isinstance(event, Mapping) else None
        obj = event.get("object") if isinstance(event, Mapping) else None
        if not isinstance(kind, str) or not isinstance(obj, Mapping):
            logger.warning("%s: skipped a watch event without type or object", self.name)
            return
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(str(obj.get("message", "")))
            raise Failed(f"watch error {code}: {obj.get('message', '')}")
        rv = _resource_version(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            logger.warning("%s: skipped a watch event of type %.40r", self.name, kind)
            return
        if kind == "DELETED":
            try:
                key = self.key(obj)
            except Exception as exc:
                logger.warning("%s: skipped a deletion without a key: %s", self.name, exc)
            else:
                self._remove(key)
        else:
            self._apply(kind, obj)
        if rv:
            self.resource_version = rv

    # ------------------------------------------------------------------------- the store

    def _apply(self, kind: str, obj: Any) -> Hashable | None:
        """Project `obj` into the store; its key, or None when it was skipped."""
        try:
            if not isinstance(obj, Mapping):
                raise ValueError("not an object")
            key = self.key(obj)
            new = self.project(obj)
        except Exception as exc:  # untrusted input: skipped, never the informer's end
            logger.warning("%s: skipped an object that could not be read: %s", self.name, exc)
            return None
        if new is None:
            self._remove(key)  # no longer one the projection keeps
            return None
        old = self.store.get(key)
        if old is not None and old == new:
            return key  # the held object stays (identity kept for the cluster cache)
        self.store[key] = new
        self._notify("ADDED" if old is None else "MODIFIED", key, old, new)
        return key

    def _remove(self, key: Hashable) -> None:
        old = self.store.pop(key, None)
        if old is not None:
            self._notify("DELETED", key, old, None)

    def _notify(self, kind: str, key: Hashable, old: Any, new: Any) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(kind, key, old, new)
        except Exception:
            logger.exception("%s: change handler failed for %s", self.name, key)


def collection_path(group: str, version: str, plural: str, namespace: str | None = None) -> str:
    """The API path of a collection: /api/v1/nodes, /apis/apps/v1/namespaces/x/deployments."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
    return f"{base}/{plural}"
