"""The operator's generated RBAC (operator/breakeven/tools/deploy.py RULES) on the real API server.

Three parts, bounded in time:

- Every (resource, verb) of the generated rules, called as a ServiceAccount bound to exactly the
  generated ClusterRole, passes the API server's authorizer; a verb outside them is refused.
- For each (resource, verb) of the rules, a role missing only that verb makes the check fail with
  a message naming the verb and the resource (real requests through the API server's RBAC
  authorizer, one per rule and verb: authorization comes before admission and validation, so a
  refused call answers 403 and an allowed one anything else).
- Real runs of `breakeven run`, cluster-wide as the generated Deployment runs it, under a
  ServiceAccount token: with exactly the generated role the operator reconciles a plan to Serving
  with no request refused; with the role missing `create deployments` or
  `patch servingplans/status` it does not, and its log names the verb. (A full operator run per
  verb would take about a minute each; the per-verb part uses the single call instead.)
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from breakeven.core import api as plan_api
from breakeven.tools import deploy
from e2e import running
from e2e.fixtures import ClusterHandle, wait_for

pytestmark = pytest.mark.integration

CLUSTER_SCOPED = {"nodes", "customresourcedefinitions", "clusterkopfpeerings"}
VERSIONS = {
    "": "v1",
    "apps": "v1",
    plan_api.GROUP: plan_api.VERSION,
    "leaderworkerset.x-k8s.io": "v1",
    "apiextensions.k8s.io": "v1",
    deploy.KOPF_GROUP: "v1",
    "resource.nvidia.com": "v1beta1",
    "monitoring.coreos.com": "v1",
    "gateway.networking.k8s.io": "v1",
}
# The authorizer runs before the API server routes a request, so a group whose CRD this cluster
# lacks (ComputeDomain, PodMonitor) is still refused with 403 or, when allowed, answered 404.
PROBE = "rbac-probe"  # a name no object has: an allowed get/patch/delete answers 404


def grants(rules: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every verb the rules grant."""
    return [
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    ]


def without(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> list[Any]:
    """The rules with one verb on one resource removed (the rest of each rule kept)."""
    out = []
    for rule in rules:
        if group not in rule["apiGroups"] or resource not in rule["resources"]:
            out.append(rule)
            continue
        others = [r for r in rule["resources"] if r != resource]
        if others:
            out.append({**rule, "resources": others})
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            out.append({**rule, "resources": [resource], "verbs": verbs})
    return out


@dataclass
class Identity:
    """A ServiceAccount bound to a ClusterRole of given rules, and a token for it."""

    cluster: ClusterHandle
    namespace: str
    name: str
    token: str = ""

    def bind(self, rules: list[dict[str, Any]]) -> None:
        from kubernetes import client

        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": self.name},
            "rules": rules,
        }
        with self.cluster.api_client() as k8s:
            rbac = client.RbacAuthorizationV1Api(k8s)
            try:
                rbac.create_cluster_role(role)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                rbac.replace_cluster_role(self.name, role)
            if not self.token:
                core = client.CoreV1Api(k8s)
                core.create_namespaced_service_account(
                    self.namespace, {"metadata": {"name": self.name}}
                )
                rbac.create_cluster_role_binding(
                    {
                        "metadata": {"name": self.name},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": self.name,
                        },
                        "subjects": [
                            {"kind": "ServiceAccount", "name": self.name,
                             "namespace": self.namespace}
                        ],
                    }
                )  # fmt: skip
                self.token = core.create_namespaced_service_account_token(
                    self.name, self.namespace, {"spec": {"expirationSeconds": 3600}}
                ).status.token

    def remove(self) -> None:
        from kubernetes import client

        with self.cluster.api_client() as k8s:
            rbac = client.RbacAuthorizationV1Api(k8s)
            for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
                try:
                    delete(self.name)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise

    def kubeconfig(self, path: Path) -> Path:
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [cluster],
                    "users": [{"name": self.name, "user": {"token": self.token}}],
                    "contexts": [
                        {"name": "sa", "context": {"cluster": cluster["name"], "user": self.name}}
                    ],
                    "current-context": "sa",
                }
            )
        )
        path.chmod(0o600)
        return path


@pytest.fixture
def identity(cluster: ClusterHandle, namespace: str) -> Iterator[Identity]:
    who = Identity(cluster, namespace, f"rbac-{uuid.uuid4().hex[:8]}")
    try:
        yield who
    finally:
        who.remove()


def _http(identity: Identity) -> httpx.Client:
    config = yaml.safe_load(identity.cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)  # noqa: SIM115
    ca.write(base64.b64decode(config["certificate-authority-data"]))
    ca.close()
    return httpx.Client(
        base_url=config["server"],
        headers={"Authorization": f"Bearer {identity.token}"},
        verify=ca.name,
        timeout=30,
    )


def call(
    http: httpx.Client, group: str, resource: str, verb: str, namespace: str
) -> httpx.Response:
    """The request the operator makes for `verb` on `resource`, on an object that does not exist
    (list and watch across the cluster, as the cluster-wide operator does)."""
    base, _, sub = resource.partition("/")
    prefix = f"/api/{VERSIONS[group]}" if not group else f"/apis/{group}/{VERSIONS[group]}"
    cluster_wide = base in CLUSTER_SCOPED or verb in ("list", "watch")
    scope = "" if cluster_wide else f"/namespaces/{namespace}"
    collection = f"{prefix}{scope}/{base}"
    item = f"{collection}/{PROBE}" + (f"/{sub}" if sub else "")
    if verb == "list":
        return http.get(collection)
    if verb == "watch":
        return http.get(collection, params={"watch": "1", "timeoutSeconds": "1"})
    if verb == "get":
        return http.get(item)
    if verb == "create":
        return http.post(collection, json={})
    if verb == "patch":
        headers = {"Content-Type": "application/merge-patch+json"}
        return http.patch(item, content=b"{}", headers=headers)
    if verb == "update":
        return http.put(item, json={})
    if verb == "delete":
        return http.delete(item)
    raise ValueError(f"no probe for verb {verb!r}")


def refusals(identity: Identity, namespace: str) -> list[str]:
    """One message per (resource, verb) of the generated rules that the identity is refused."""
    out = []
    with _http(identity) as http:
        for group, resource, verb in grants(deploy.RULES):
            answer = call(http, group, resource, verb, namespace)
            if answer.status_code == 403:
                reason = answer.json().get("message", answer.text)
                out.append(
                    f"the operator needs `{verb}` on {resource} ({group or 'core'}); "
                    f"the API server refused it: {reason}"
                )
    return out


def settle(identity: Identity, namespace: str, expect: int) -> list[str]:
    """The refusals once a role change has reached the authorizer's cache."""
    found: list[str] = []

    def settled() -> bool:
        found[:] = refusals(identity, namespace)
        return len(found) == expect

    with contextlib.suppress(AssertionError):  # the caller asserts on what was found
        wait_for(f"{expect} refusal(s)", settled, 20)
    return found


def test_exactly_the_generated_role_allows_every_call(identity: Identity, namespace: str) -> None:
    identity.bind(deploy.RULES)
    assert settle(identity, namespace, 0) == []
    with _http(identity) as http:  # and no more than the rules: a verb outside them is refused
        assert call(http, plan_api.GROUP, plan_api.PLURAL, "update", namespace).status_code == 403
        assert call(http, "", "secrets", "list", namespace).status_code == 403
        assert call(http, "", "pods", "delete", namespace).status_code == 403


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    grants(deploy.RULES),
    ids=[f"{v}-{r}" for _, r, v in grants(deploy.RULES)],
)
def test_a_role_missing_one_verb_fails_naming_it(
    identity: Identity, namespace: str, group: str, resource: str, verb: str
) -> None:
    identity.bind(without(deploy.RULES, group, resource, verb))
    found = settle(identity, namespace, 1)
    assert len(found) == 1, found
    assert f"needs `{verb}` on {resource}" in found[0]
    # The API server's own reason names the verb and the resource too.
    assert f'cannot {verb} resource "{resource}"' in found[0], found[0]


# ------------------------------------------------------------------- the operator, for real


def _plan(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": plan_api.API_VERSION,
        "kind": plan_api.KIND,
        "metadata": {"name": "rbac", "namespace": namespace},
        "spec": {
            "model": {"name": "mistralai/Mixtral-8x7B-Instruct-v0.1"},
            "mode": "Dense",
            "serving": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"}},
        },
    }


def _run(
    identity: Identity, namespace: str, tmp_path: Path, until: Any, what: str
) -> tuple[str, dict[str, Any]]:
    """Run the operator cluster-wide, as the generated manifests do, as `identity`, on a plan in
    `namespace` until `until(log, plan)`; the log and the plan. Its ClusterKopfPeering is its own
    (named after the identity) and removed afterwards."""
    from kubernetes import client

    with identity.cluster.api_client() as k8s:
        running.install(k8s)  # the ServingPlan CRD
        running.install_peering(k8s, None, identity.name)
    log = tmp_path / "operator.log"
    operator = running.OperatorProcess(
        identity.kubeconfig(tmp_path / "sa.kubeconfig"), "http://127.0.0.1:9", log,
        interval=2, extra=["--peering", identity.name],
    )  # fmt: skip
    plan: dict[str, Any] = {}
    with identity.cluster.api_client() as k8s:
        custom = client.CustomObjectsApi(k8s)
        args = (plan_api.GROUP, plan_api.VERSION, namespace, plan_api.PLURAL)
        custom.create_namespaced_custom_object(*args, _plan(namespace))
        operator.start()
        try:

            def done() -> bool:
                plan.update(custom.get_namespaced_custom_object(*args, "rbac"))
                return bool(until(log.read_text(errors="replace") if log.exists() else "", plan))

            try:
                wait_for(what, done, 120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- operator log ---\n{operator.tail()}") from None
        finally:
            operator.stop()
            running.remove_cluster_peering(k8s, identity.name)
    return log.read_text(errors="replace"), plan


def _serving(plan: dict[str, Any]) -> bool:
    return (plan.get("status") or {}).get("phase") == "Serving"


def test_the_operator_reconciles_under_exactly_the_generated_role(
    identity: Identity, namespace: str, tmp_path: Path
) -> None:
    identity.bind(deploy.RULES)
    log, plan = _run(
        identity, namespace, tmp_path, lambda _log, p: _serving(p), "the plan to be Serving"
    )
    assert _serving(plan)
    assert "forbidden" not in log.lower(), log


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [("apps", "deployments", "create"), (plan_api.GROUP, "servingplans/status", "patch")],
    ids=["create-deployments", "patch-servingplans-status"],
)
def test_the_operator_fails_without_a_verb_and_says_which(
    identity: Identity, namespace: str, tmp_path: Path, group: str, resource: str, verb: str
) -> None:
    identity.bind(without(deploy.RULES, group, resource, verb))
    needle = f'cannot {verb} resource \\"{resource}\\"'
    plain = f'cannot {verb} resource "{resource}"'
    _, plan = _run(
        identity, namespace, tmp_path, lambda text, _p: needle in text or plain in text,
        f"the operator to report `{verb}` on {resource} refused",
    )  # fmt: skip
    assert not _serving(plan), plan.get("status")
