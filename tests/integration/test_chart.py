"""The Helm chart, through the real `helm` (v3.22.0, built by e2e/controlplane/build.sh).

`helm lint` and `helm template` with the default values and with every documented option
(tests/integration/data/chart-every-option.yaml, which must cover every leaf of values.yaml), the
values schema rejecting wrong values with the field named, and `helm install` onto the local
control plane creating the CRD, the RBAC, the ServiceAccount and the Deployment, with the RBAC
checked by `kubectl auth can-i` as the chart's ServiceAccount.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.cli.main import build_parser
from breakeven.tools import deploy
from e2e.fixtures import ClusterHandle, wait_for
from e2e.tools import CHART, helm, helm_template, tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Cluster-scoped resources the operator's rules may name (the breakeven.rules helper's list).
CLUSTER_SCOPED = {"nodes", "namespaces", "customresourcedefinitions", "clusterkopfpeerings"}
EVERY_OPTION = Path(__file__).parent / "data" / "chart-every-option.yaml"


render = helm_template


def by_kind(docs: list[Any]) -> dict[tuple[str, str, str], Any]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


def container(docs: list[Any]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def leaves(node: Any, path: str = "") -> dict[str, Any]:
    """Leaf paths of a values tree; a list or an empty map is one leaf."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(leaves(value, f"{path}.{key}" if path else key))
        return out
    return {path: node}


def test_helm_lint_default_and_every_option() -> None:
    for args in ([], ["--values", str(EVERY_OPTION)]):
        out = helm("lint", "--strict", str(CHART), *args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_default_render_is_cluster_wide_with_the_generated_rules() -> None:
    docs = by_kind(render())
    assert set(docs) == {
        ("ServiceAccount", "breakeven", "breakeven"),
        ("ClusterRole", "", "breakeven"),
        ("ClusterRoleBinding", "", "breakeven"),
        ("Service", "breakeven", "breakeven-metrics"),
        ("Deployment", "breakeven", "breakeven"),
        ("ClusterKopfPeering", "", "breakeven"),
    }
    assert docs[("ClusterRole", "", "breakeven")]["rules"] == deploy.RULES
    binding = docs[("ClusterRoleBinding", "", "breakeven")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "breakeven", "namespace": "breakeven"}
    ]
    c = container(list(docs.values()))
    assert c["image"] == "ghcr.io/breakeven/breakeven:0.1.0"  # the chart's appVersion
    args = build_parser().parse_args(c["args"])  # the operator's own parser accepts them
    assert args.namespace == [] and args.prometheus_url == "http://prometheus.monitoring:9090"
    # Two replicas, one active: kopf peering in the ClusterKopfPeering named after the release,
    # each replica identified by its pod name.
    assert docs[("Deployment", "breakeven", "breakeven")]["spec"]["replicas"] == 2
    assert args.peering == "breakeven" and not args.standalone
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    pod = docs[("Deployment", "breakeven", "breakeven")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["serviceAccountName"] == "breakeven"


def test_every_option_file_covers_every_value() -> None:
    defaults = leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    chosen = leaves(yaml.safe_load(EVERY_OPTION.read_text()))
    # An empty map in values.yaml (labels, nodeSelector, ...) is covered by any key under it.
    missing = sorted(
        k for k in defaults if k not in chosen and not any(c.startswith(k + ".") for c in chosen)
    )
    assert not missing, f"chart-every-option.yaml does not set {missing}"
    same = sorted(
        k for k in defaults if chosen.get(k, ...) == defaults[k] and k != "metrics.service.enabled"
    )
    assert not same, f"chart-every-option.yaml leaves {same} at the default"


def test_every_option_shows_in_the_render() -> None:
    values = yaml.safe_load(EVERY_OPTION.read_text())
    docs = render("--values", str(EVERY_OPTION))
    objs = by_kind(docs)
    c = container(docs)
    pod = objs[("Deployment", "breakeven", "breakeven")]["spec"]["template"]
    spec = pod["spec"]

    digest = values["image"]["digest"]
    assert c["image"] == f"registry.example.internal/mirror/breakeven@{digest}"
    assert c["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "mirror-pull"}]
    assert objs[("Deployment", "breakeven", "breakeven")]["spec"]["replicas"] == 0

    args = build_parser().parse_args(c["args"])
    assert args.namespace == ["team-a", "team-b"]
    # Namespaced kopf peers per namespace: a KopfPeering in each, no ClusterKopfPeering.
    assert args.peering == "breakeven"
    assert {k for k in objs if "KopfPeering" in k[0]} == {
        ("KopfPeering", "team-a", "breakeven"),
        ("KopfPeering", "team-b", "breakeven"),
    }
    assert args.prometheus_url == values["prometheus"]["url"]
    assert args.allowed_prometheus_url == values["prometheus"]["allowedUrls"]
    assert args.interval == 120
    assert args.workers == 16
    assert args.metrics_port == 9100
    assert args.label_mapping == "/etc/breakeven/label-mapping.yaml"
    assert {"name": "metrics", "containerPort": 9100} in c["ports"]

    mapping = objs[("ConfigMap", "breakeven", "breakeven-label-mapping")]
    assert yaml.safe_load(mapping["data"]["label-mapping.yaml"]) == values["labelMapping"]
    assert c["volumeMounts"][0]["mountPath"] == "/etc/breakeven"
    assert c["resources"] == values["resources"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert pod["metadata"]["annotations"]["example.com/owner"] == "platform"

    # Watched namespaces: a Role per namespace, and a ClusterRole for cluster-scoped reads only.
    cluster_rules = objs[("ClusterRole", "", "breakeven")]["rules"]
    cluster_resources = {r for rule in cluster_rules for r in rule["resources"]}
    assert {"customresourcedefinitions", "nodes"} <= cluster_resources
    assert cluster_resources <= CLUSTER_SCOPED
    for ns in ("team-a", "team-b"):
        role = objs[("Role", ns, "breakeven")]
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert "servingplans/status" in resources and "deployments" in resources
        assert not resources & CLUSTER_SCOPED
        binding = objs[("RoleBinding", ns, "breakeven")]
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "breakeven"
    # Together the two hold exactly the generated rules, verb for verb.
    split = {
        (g, r, v)
        for rules in (cluster_rules, objs[("Role", "team-a", "breakeven")]["rules"])
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    generated = {
        (g, r, v)
        for rule in deploy.RULES
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    # plus listing and watching namespaces, which kopf does when it serves a list of them.
    assert split == generated | {("", "namespaces", "list"), ("", "namespaces", "watch")}

    monitor = objs[("ServiceMonitor", "breakeven", "breakeven")]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    pod_monitor = objs[("PodMonitor", "breakeven", "breakeven-vllm")]
    assert pod_monitor["spec"]["podMetricsEndpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "10s",
    }
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    rule = objs[("PrometheusRule", "breakeven", "breakeven")]
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = objs[("ConfigMap", "grafana", "breakeven-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard_custom"] == "yes"
    assert json.loads(dashboard["data"]["breakeven.json"])["uid"] == "breakeven"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("replicas=-1", "/replicas"),
        ("interval=0", "/interval"),
        ("interval=soon", "/interval"),
        ("workers=0", "/workers"),
        ("workers=257", "/workers"),
        ("workers=2.5", "/workers"),
        ("watchNamespaces={Team_A}", "/watchNamespaces/0"),
        ("prometheus.url=prometheus:9090", "/prometheus/url"),
        ("image.digest=latest", "/image/digest"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("metrics.port=8081", "/metrics/port"),
        ("metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval"),
        ("prometheusUrl=http://old:9090", "prometheusUrl"),
    ],
)
def test_a_wrong_value_fails_naming_the_field(setting: str, named: str) -> None:
    out = helm("template", "breakeven", str(CHART), "--set", setting)
    assert out.returncode != 0, f"--set {setting} rendered"
    assert "values don't meet the specifications of the schema" in out.stderr
    assert named in out.stderr, out.stderr


def test_service_monitor_without_service_fails() -> None:
    out = helm(
        "template",
        "breakeven",
        str(CHART),
        "--set",
        "metrics.service.enabled=false",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    )
    assert out.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in out.stderr


# ------------------------------------------------------------------------- onto the cluster


def _can_i(cluster: ClusterHandle, sa: str, verb: str, resource: str, ns: str | None) -> bool:
    """`kubectl auth can-i VERB RESOURCE --as=SA`, or, for a resource of an API group this
    cluster does not serve (kubectl cannot resolve it: ComputeDomains, PodMonitors, HTTPRoutes),
    the same SubjectAccessReview sent through the API."""
    name, _, sub = resource.partition("/")
    base, _, group = name.partition(".")
    if group in ("resource.nvidia.com", "monitoring.coreos.com", "gateway.networking.k8s.io"):
        from kubernetes import client

        attributes = {"verb": verb, "group": group, "resource": base}
        attributes.update({"subresource": sub} if sub else {})
        attributes.update({"namespace": ns} if ns else {})
        with cluster.api_client() as api:
            review = client.AuthorizationV1Api(api).create_subject_access_review(
                {"spec": {"user": sa, "resourceAttributes": attributes}}
            )
        return bool(review.status.allowed)
    argv = [str(tool("kubectl")), "--kubeconfig", str(cluster.kubeconfig), "auth", "can-i"]
    argv += [verb, name, f"--as={sa}"] + ([f"--subresource={sub}"] if sub else [])
    argv += ["--namespace", ns] if ns else ["--all-namespaces"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.stdout.strip() in ("yes", "no"), out.stdout + out.stderr
    return out.stdout.strip() == "yes"


def _resource(rule: dict[str, Any], name: str) -> str:
    """`servingplans/status` in group breakeven.dev -> `servingplans.breakeven.dev/status`."""
    group = rule["apiGroups"][0]
    base, slash, sub = name.partition("/")
    return (f"{base}.{group}" if group else base) + slash + sub


def _install(cluster: ClusterHandle, release: str, namespace: str, *args: str) -> None:
    out = helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait=false",
        *args,
        kubeconfig=cluster.kubeconfig,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _uninstall(cluster: ClusterHandle, release: str, namespace: str) -> None:
    out = helm("uninstall", release, "--namespace", namespace, kubeconfig=cluster.kubeconfig)
    assert out.returncode == 0, out.stdout + out.stderr


def test_helm_install_creates_what_the_operator_needs(cluster: ClusterHandle) -> None:
    from kubernetes import client

    release = f"be-{uuid.uuid4().hex[:6]}"
    namespace = f"{release}-system"
    _install(cluster, release, namespace)
    try:
        with cluster.api_client() as api:
            ext = client.ApiextensionsV1Api(api)
            crd = ext.read_custom_resource_definition("servingplans.breakeven.dev")
            assert crd.spec.names.kind == "ServingPlan"
            core = client.CoreV1Api(api)
            assert core.read_namespaced_service_account(release, namespace)
            rbac = client.RbacAuthorizationV1Api(api)
            assert rbac.read_cluster_role(release).rules
            assert rbac.read_cluster_role_binding(release).subjects[0].name == release
            deployment = client.AppsV1Api(api).read_namespaced_deployment(release, namespace)
            assert deployment.spec.template.spec.service_account_name == release
            # Helm installed kopf's peering CRDs from crds/ before the peering object.
            peering = client.CustomObjectsApi(api).get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", release
            )
            assert peering["metadata"]["name"] == release

        def crd_established() -> bool:
            with cluster.api_client() as api:
                crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
                    "servingplans.breakeven.dev"
                )
            conditions = crd.status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for("the ServingPlan CRD to be established", crd_established, 30)
        sa = f"system:serviceaccount:{namespace}:{release}"
        for rule in deploy.RULES:
            for name in rule["resources"]:
                for verb in rule["verbs"]:
                    resource = _resource(rule, name)
                    assert _can_i(cluster, sa, verb, resource, None), f"cannot {verb} {resource}"
        assert not _can_i(cluster, sa, "update", "servingplans.breakeven.dev", None)
        assert not _can_i(cluster, sa, "list", "secrets", None)
    finally:
        _uninstall(cluster, release, namespace)


def test_helm_install_with_watched_namespaces_grants_only_those(cluster: ClusterHandle) -> None:
    release = f"be-{uuid.uuid4().hex[:6]}"
    namespace = f"{release}-system"
    watched = f"{release}-team"
    from kubernetes import client

    with cluster.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=watched))
        )
    _install(cluster, release, namespace, "--set", f"watchNamespaces={{{watched}}}")
    try:
        sa = f"system:serviceaccount:{namespace}:{release}"
        assert _can_i(cluster, sa, "patch", "servingplans.breakeven.dev/status", watched)
        assert _can_i(cluster, sa, "create", "deployments.apps", watched)
        assert not _can_i(cluster, sa, "create", "deployments.apps", "default")
        assert not _can_i(cluster, sa, "list", "servingplans.breakeven.dev", None)
        assert _can_i(cluster, sa, "watch", "nodes", None)
        assert _can_i(cluster, sa, "watch", "namespaces", None)
        assert _can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", watched)
        assert not _can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", "default")
        with cluster.api_client() as api:
            peering = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "kopf.dev", "v1", watched, "kopfpeerings", release
            )
        assert peering["metadata"]["namespace"] == watched
        assert _can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
    finally:
        _uninstall(cluster, release, namespace)
        with cluster.api_client() as api:
            client.CoreV1Api(api).delete_namespace(watched)
