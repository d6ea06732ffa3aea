"""The Kubernetes writer: server-side apply of rendered children, reads of their state.

This is the only module that talks to the API server for the operator's own objects (kopf
watches the plans; the informers of runtime.py the nodes, our children and their pods). Every
write is a server-side apply with field manager `breakeven` into the plan's namespace, with an
owner reference to the plan so deleting the plan garbage-collects its children. The plan itself
is only ever patched on its status subresource.

`Writer` sends every request (and counts it: breakeven_api_requests_total). `CachedWriter` in
front of it is what a reconcile uses: it reads the plan's children (Deployments,
LeaderWorkerSets, Services labelled managed-by breakeven) from the informers' stores
(shell/informer.py, runtime.py) instead of GETs, a workload's pods from the pod informer's
store (`PodIndex`) instead of a LIST, and skips an apply whose rendered object is unchanged
since this process applied it and which nobody has changed since (same hash of the rendered
object, same generation of the live one; a Service by its resourceVersion). A name absent from
the stores is not ours: before creating it, one GET makes sure no other object holds the name
(an object of someone else's is never taken over); `claim` checks every name a step applies at
once, before any is written.

Verbs used here (and nothing else; manifests/rbac.yaml grants exactly these):

    deployments              get, patch (apply), delete
    leaderworkersets         get, patch (apply), delete
    services                 get, list, watch, patch (apply), delete (a Shadow trial's Service)
    httproutes               get, patch (apply), delete    spec.gateway (Gateway API v1)
    /apis/gateway.networking.k8s.io/v1   discovery
    configmaps               patch (apply), delete    the MoE telemetry's logging config
    podmonitors              patch (apply), delete    where monitoring.coreos.com/v1 is served
    /apis/monitoring.coreos.com/v1   discovery (allowed to every authenticated user)
    pods                     list, watch    the pod informer (and a LIST until its first is in)
    servingplans/status      patch
    servingplans             get
    events                   create
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes.aio import client as k8s
from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import api
from breakeven.shell import metrics

FIELD_MANAGER = "breakeven"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
# NVIDIA DRA driver's ComputeDomain (rendered for a group inside one NVLink domain).
CD_GROUP, CD_VERSION, CD_PLURAL = "resource.nvidia.com", "v1beta1", "computedomains"
PODMONITOR_GROUP, PODMONITOR_VERSION = "monitoring.coreos.com", "v1"
PODMONITOR_PLURAL = "podmonitors"
# Gateway API (sigs.k8s.io/gateway-api v1.6.3, standard channel): the plan's HTTPRoute.
GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
# The custom resources the writer touches, (group, version, plural) by kind, and which of them
# each verb may touch (what the generated role grants: tools/deploy.py).
CUSTOM: dict[str, tuple[str, str, str]] = {
    "LeaderWorkerSet": (LWS_GROUP, LWS_VERSION, LWS_PLURAL),
    "PodMonitor": (PODMONITOR_GROUP, PODMONITOR_VERSION, PODMONITOR_PLURAL),
    "HTTPRoute": (GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL),
    "ComputeDomain": (CD_GROUP, CD_VERSION, CD_PLURAL),
}
CUSTOM_GET = ("LeaderWorkerSet", "HTTPRoute")
CUSTOM_DELETE = ("LeaderWorkerSet", "PodMonitor", "HTTPRoute")

Obj = dict[str, Any]


def owner_reference(plan: api.ServingPlan) -> Obj:
    if not plan.metadata.uid:
        raise ValueError("the plan has no uid; owner references need one")
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": plan.name,
        "uid": plan.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned(obj: Mapping[str, Any], plan: api.ServingPlan) -> Obj:
    """The object with the plan as its controlling owner, in the plan's namespace."""
    out = dict(obj)
    metadata = dict(out.get("metadata") or {})
    metadata["namespace"] = plan.namespace
    metadata["ownerReferences"] = [owner_reference(plan)]
    out["metadata"] = metadata
    return out


INDEXED = ("Deployment", "LeaderWorkerSet", "Service")
"""The kinds of child read from the informers' stores (runtime.py) rather than the API server."""


def projection(body: Mapping[str, Any], kind: str) -> Obj:
    """What a reconcile reads of a child: kept in its informer's store instead of the whole
    body (shell/informer.py)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return {
        "kind": kind,
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [
                {"uid": o.get("uid"), "kind": o.get("kind"), "name": o.get("name")}
                for o in meta.get("ownerReferences") or []
            ],
            "generation": meta.get("generation"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": {"replicas": spec["replicas"]} if "replicas" in spec else {},
        "status": {
            k: status[k]
            for k in ("replicas", "readyReplicas", "updatedReplicas", "unavailableReplicas")
            if k in status
        },
    }


POD_LABEL_PREFIX = "breakeven.dev/"
"""The labels a pod's projection keeps: ours (plan, mode, workload, endpoint), what
rendering.selector_labels selects on. A selector naming another label is answered by a LIST."""
POD_CONDITION_MESSAGE = 200  # characters of a PodScheduled message kept (statuses._not_scheduled)


def pod_projection(body: Mapping[str, Any]) -> Obj:
    """What a reconcile reads of a pod (statuses.broken, statuses._not_scheduled), in a pod's
    shape: its name, namespace and our labels; its phase; the waiting reasons of its containers;
    its PodScheduled condition while it is False. A few hundred bytes per pod instead of its
    whole body (tens of KB with managedFields). Strings that repeat across pods are interned."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    labels = {
        sys.intern(k): sys.intern(v)
        for k, v in (meta.get("labels") or {}).items()
        if isinstance(k, str) and k.startswith(POD_LABEL_PREFIX) and isinstance(v, str)
    }
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise ValueError("metadata.name and metadata.namespace must be strings")
    kept: Obj = {}
    phase = status.get("phase")
    if isinstance(phase, str):
        kept["phase"] = sys.intern(phase)
    waiting = [
        reason
        for cs in status.get("containerStatuses") or []
        if isinstance(cs, Mapping)
        and isinstance(reason := ((cs.get("state") or {}).get("waiting") or {}).get("reason"), str)
    ]
    if waiting:
        kept["containerStatuses"] = [
            {"state": {"waiting": {"reason": sys.intern(r)}}} for r in waiting
        ]
    for c in status.get("conditions") or []:
        if not isinstance(c, Mapping):
            continue
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            condition = {"type": "PodScheduled", "status": "False"}
            if c.get("reason"):
                condition["reason"] = str(c["reason"])
            if c.get("message"):
                condition["message"] = str(c["message"])[:POD_CONDITION_MESSAGE]
            kept["conditions"] = [condition]
            break
    return {
        "metadata": {"name": name, "namespace": sys.intern(namespace), "labels": labels},
        "status": kept,
    }


def pod_matches(pod: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    """Whether the pod's labels hold every key=value of `selector` (an equality selector)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


PodLookup = Callable[[str, Mapping[str, str]], "list[Obj] | None"]
"""(namespace, selector) -> the matching pods' projections by name, or None when the store cannot
answer (a namespace no pod informer watches, a selector on a label the projection drops)."""


class PodIndex:
    """The pod informers' projections by (namespace, plan label), kept by their `on_change`, so a
    reconcile's read looks at its own plan's pods, not at every pod of the fleet."""

    PLAN = POD_LABEL_PREFIX + "plan"

    def __init__(self, namespaces: Sequence[str] = ()) -> None:
        self.namespaces = frozenset(namespaces)  # empty: every namespace
        self.by_plan: dict[tuple[str, str], dict[str, Obj]] = {}

    def change(self, type: str, key: Any, old: Obj | None, new: Obj | None) -> None:
        if old is not None:
            bucket = self._bucket(old)
            held = self.by_plan.get(bucket)
            if held is not None:
                held.pop(old["metadata"]["name"], None)
                if not held:
                    del self.by_plan[bucket]
        if new is not None:
            self.by_plan.setdefault(self._bucket(new), {})[new["metadata"]["name"]] = new

    def _bucket(self, pod: Mapping[str, Any]) -> tuple[str, str]:
        meta = pod["metadata"]
        return meta["namespace"], meta["labels"].get(self.PLAN, "")

    def find(self, namespace: str, selector: Mapping[str, str]) -> list[Obj] | None:
        if self.namespaces and namespace not in self.namespaces:
            return None
        if not all(k.startswith(POD_LABEL_PREFIX) for k in selector):
            return None
        plan = selector.get(self.PLAN)
        if plan is not None:
            buckets = [self.by_plan.get((namespace, plan)) or {}]
        else:
            buckets = [pods for (ns, _), pods in self.by_plan.items() if ns == namespace]
        found = [p for pods in buckets for p in pods.values() if pod_matches(p, selector)]
        found.sort(key=lambda p: p["metadata"]["name"])  # a LIST's order
        return found


def read_part(body: Mapping[str, Any], kind: str) -> int:
    """A fingerprint of what a reconcile reads of a child (its projection without the
    resourceVersion, which every write moves): equal before and after an event that changed
    only conditions, timestamps or observedGeneration, so such an event needs no reconcile."""
    part = projection(body, kind)
    if kind != "Service":  # a Service's resourceVersion is its version (`version` below)
        part["metadata"].pop("resourceVersion", None)
    return hash(json.dumps(part, sort_keys=True, default=str))


def settled(obj: Mapping[str, Any]) -> bool:
    """Whether a workload's own status says every pod (or group) it wants is there, current and
    ready, and no other is: then none can be crashing or failed, and its pods need no LIST."""
    want = int((obj.get("spec") or {}).get("replicas", 1))
    status = obj.get("status") or {}
    return (
        int(status.get("readyReplicas") or 0) >= want
        and int(status.get("replicas") or 0) == want
        and int(status.get("updatedReplicas", want) or 0) == want
        and not status.get("unavailableReplicas")
    )


def version(obj: Mapping[str, Any]) -> str:
    """What changes when someone changes the object's spec: its generation, or for a Service
    (whose generation does not move) its resourceVersion."""
    meta = obj.get("metadata") or {}
    if obj.get("kind") == "Service":
        return str(meta.get("resourceVersion"))
    return str(meta.get("generation"))


def digest(obj: Mapping[str, Any]) -> str:
    """A hash of a rendered object (stable across dict order)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (str(obj["kind"]), str(meta["namespace"]), str(meta["name"]))


def _owner_uids(obj: Mapping[str, Any]) -> set[str]:
    return {str(o.get("uid")) for o in (obj.get("metadata") or {}).get("ownerReferences") or []}


async def _raise_for_status(response: Any) -> None:
    """The typed client's `*_without_preload_content` calls do not raise; this does."""
    if response.status >= 400:
        body = (await response.read()).decode()
        raise ApiException(status=response.status, reason=response.reason, body=body)


async def _json(response: Any) -> Obj:
    data: Obj = json.loads(await response.read())
    return data


class Client(Protocol):
    """What a reconcile calls: `Writer`, or `CachedWriter` in front of it."""

    async def claim(self, objs: Sequence[Mapping[str, Any]]) -> None: ...
    async def apply(self, obj: Mapping[str, Any], claimed: bool = False) -> Obj: ...
    async def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    async def delete(self, kind: str, namespace: str, name: str) -> bool: ...
    async def serves(self, group: str, version: str, plural: str) -> bool: ...
    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]: ...
    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None: ...
    async def post_event(
        self, plan: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None: ...
    async def get_plan(self, namespace: str, name: str) -> Obj | None: ...


def _count(verb: str, kind: str) -> None:
    metrics.API_REQUESTS.labels(verb=verb, kind=kind).inc()


class Writer:
    """Typed async Kubernetes clients, used as the operator's hands; every request counted."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    async def claim(self, objs: Sequence[Mapping[str, Any]]) -> None:
        """Nothing: the raw writer checks no names (`CachedWriter.claim` does)."""

    async def apply(self, obj: Mapping[str, Any], claimed: bool = False) -> Obj:
        """Server-side apply (force: the operator owns what it renders)."""
        kind = obj["kind"]
        name = obj["metadata"]["name"]
        ns = obj["metadata"]["namespace"]
        _count("apply", kind)
        common: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY,
        }
        if kind == "Deployment":
            resp = await self.apps.patch_namespaced_deployment_without_preload_content(
                name, ns, dict(obj), **common
            )
        elif kind == "Service":
            resp = await self.core.patch_namespaced_service_without_preload_content(
                name, ns, dict(obj), **common
            )
        elif kind == "ConfigMap":
            resp = await self.core.patch_namespaced_config_map_without_preload_content(
                name, ns, dict(obj), **common
            )
        elif kind in CUSTOM:
            group, version, plural = CUSTOM[kind]
            resp = await self.custom.patch_namespaced_custom_object_without_preload_content(
                group, version, ns, plural, name, dict(obj), **common
            )
        else:
            raise ValueError(f"the operator does not apply {kind} objects")
        await _raise_for_status(resp)
        return await _json(resp)

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        _count("get", kind)
        if kind == "Deployment":
            call = self.apps.read_namespaced_deployment_without_preload_content(name, namespace)
        elif kind == "Service":
            call = self.core.read_namespaced_service_without_preload_content(name, namespace)
        elif kind in CUSTOM_GET:
            group, version, plural = CUSTOM[kind]
            call = self.custom.get_namespaced_custom_object_without_preload_content(
                group, version, namespace, plural, name
            )
        else:
            raise ValueError(f"the operator does not read {kind} objects")
        resp = await call
        if resp.status == 404:
            return None
        await _raise_for_status(resp)
        return await _json(resp)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        _count("delete", kind)
        body = k8s.V1DeleteOptions(propagation_policy="Background")
        if kind == "Deployment":
            call = self.apps.delete_namespaced_deployment_without_preload_content(
                name, namespace, body=body
            )
        elif kind == "ConfigMap":
            call = self.core.delete_namespaced_config_map_without_preload_content(
                name, namespace, body=body
            )
        elif kind in CUSTOM_DELETE:
            group, version, plural = CUSTOM[kind]
            call = self.custom.delete_namespaced_custom_object_without_preload_content(
                group, version, namespace, plural, name, body=body
            )
        elif kind == "Service":
            call = self.core.delete_namespaced_service_without_preload_content(
                name, namespace, body=body
            )
        else:
            raise ValueError(f"the operator does not delete {kind} objects")
        resp = await call
        if resp.status == 404:
            return False
        await _raise_for_status(resp)
        return True

    async def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in group/version (API discovery)."""
        _count("discovery", group)
        resp = await self.custom.get_api_resources_without_preload_content(group, version)
        if resp.status == 404:
            return False
        await _raise_for_status(resp)
        return any(r.get("name") == plural for r in (await _json(resp)).get("resources", []))

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        _count("list", "Pod")
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        resp = await self.core.list_namespaced_pod_without_preload_content(
            namespace, label_selector=label_selector
        )
        await _raise_for_status(resp)
        items: list[Obj] = (await _json(resp)).get("items", [])
        return items

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """A merge patch of the status. With `resource_version`, the API server refuses it
        (409 Conflict) unless the plan is still at that version: a status computed from an
        older body never lands on a newer one."""
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        _count("patch", "ServingPlan/status")
        resp = await self.custom.patch_namespaced_custom_object_status_without_preload_content(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            patch,
            _content_type=MERGE,
        )
        await _raise_for_status(resp)

    async def post_event(
        self, plan: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on the plan (what `kubectl describe sp` shows)."""
        _count("create", "Event")
        meta = plan["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {  # the client serialises a plain dict as it is
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": "breakeven.dev/operator",
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        resp = await self.core.create_namespaced_event_without_preload_content(
            meta["namespace"], body
        )
        await _raise_for_status(resp)

    async def get_plan(self, namespace: str, name: str) -> Obj | None:
        _count("get", "ServingPlan")
        resp = await self.custom.get_namespaced_custom_object_without_preload_content(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name
        )
        if resp.status == 404:
            return None
        await _raise_for_status(resp)
        return await _json(resp)


Lookup = Callable[[str, str, str], "Mapping[str, Any] | None"]
"""(kind, namespace, name) -> the child as its informer's store holds it, or None."""


class CachedWriter:
    """The writer a reconcile uses: reads children from the indexes, skips unchanged applies.

    `lookup` is None until the informers' first lists are in (then every call goes to
    `inner`); `pod_lookup` likewise until the pod informers' first lists are in (then a pod
    read is a LIST)."""

    def __init__(
        self,
        inner: Writer,
        lookup: Callable[[], Lookup | None],
        pod_lookup: Callable[[], PodLookup | None] | None = None,
    ) -> None:
        self.inner = inner
        self.lookup = lookup
        self.pod_lookup = pod_lookup
        self.applied: dict[tuple[str, str, str], tuple[str, str]] = {}  # key -> (digest, version)

    def _cached(self, kind: str, namespace: str, name: str) -> tuple[bool, Obj | None]:
        lookup = self.lookup() if kind in INDEXED else None
        if lookup is None:
            return False, None
        found = lookup(kind, namespace, name)
        return True, (json.loads(json.dumps(found)) if found is not None else None)

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        cached, obj = self._cached(kind, namespace, name)
        if cached:
            metrics.API_SAVED.labels(verb="get", kind=kind).inc()
            return obj
        return await self.inner.get(kind, namespace, name)

    async def claim(self, objs: Sequence[Mapping[str, Any]]) -> None:
        """Make sure nobody else holds the names of `objs`, which are about to be applied: one
        GET for each name absent from the indexes, all at once (a new plan's Deployment and
        Service cost one round trip, not two). Raises ApiException 409 for the first (in
        order) held by an object that is not the applier's; then nothing should be applied."""
        unknown = []
        for obj in objs:
            key = _key(obj)
            cached, live = self._cached(*key)
            if cached and live is None:
                unknown.append((key, obj))
        found = await asyncio.gather(*(self.inner.get(*key) for key, _ in unknown))
        for (key, obj), existing in zip(unknown, found, strict=True):
            if existing is not None and not _owner_uids(existing) & _owner_uids(obj):
                raise ApiException(
                    status=409,
                    reason=f"Conflict: {key[0]} {key[2]} already exists in {key[1]} and is not "
                    "owned by this plan; rename the plan or the object",
                )

    async def apply(self, obj: Mapping[str, Any], claimed: bool = False) -> Obj:
        """Apply `obj` unless it is unchanged (see the class); `claimed`: `claim` has just
        checked its name (else a name absent from the indexes is checked here)."""
        key = _key(obj)
        rendered = digest(obj)
        cached, live = self._cached(*key)
        if cached and live is not None and self.applied.get(key) == (rendered, version(live)):
            metrics.API_SAVED.labels(verb="apply", kind=key[0]).inc()
            return live
        if cached and live is None and not claimed:
            # Not ours (or not yet seen): never take over someone else's object.
            await self.claim([obj])
        result = await self.inner.apply(obj)
        self.applied[key] = (rendered, version(result))
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        cached, live = self._cached(kind, namespace, name)
        if cached and live is None:
            metrics.API_SAVED.labels(verb="delete", kind=kind).inc()
            return False  # none of ours by that name (someone else's is left alone)
        self.applied.pop((kind, namespace, name), None)
        return await self.inner.delete(kind, namespace, name)

    async def serves(self, group: str, version: str, plural: str) -> bool:
        return await self.inner.serves(group, version, plural)

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        """The pods from the pod informer's store once it is synced (no LIST), else a LIST."""
        find = self.pod_lookup() if self.pod_lookup is not None else None
        found = find(namespace, selector) if find is not None else None
        if found is None:
            return await self.inner.pods(namespace, selector)
        metrics.API_SAVED.labels(verb="list", kind="Pod").inc()
        copied: list[Obj] = json.loads(json.dumps(found))  # the store's objects stay as held
        return copied

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        await self.inner.patch_status(namespace, name, status, resource_version)

    async def post_event(
        self, plan: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        await self.inner.post_event(plan, type, reason, message)

    async def get_plan(self, namespace: str, name: str) -> Obj | None:
        return await self.inner.get_plan(namespace, name)
