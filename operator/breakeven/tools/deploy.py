"""How the operator itself is deployed: its RBAC and its Deployment, as data.

`python -m breakeven.tools.schema` writes these to manifests/ (and the chart's templates are checked
against the same rules by tests). The rules hold only the verbs the operator uses:

    servingplans          get list watch    kopf's watch; `breakeven explain` reads one
    servingplans/status   get patch         status is the only thing written on a plan
    servingplans/finalizers  update         owner references with blockOwnerDeletion on children
                                            (OwnerReferencesPermissionEnforcement, e.g. OpenShift)
    nodes                 list watch        the GPU node index
    deployments           get list watch create patch delete   children (apply creates)
    leaderworkersets      get list watch create patch delete   multi-node children
    services              get list watch create patch delete  the stable Service (watched: kopf's
                                            index); a Shadow trial's Service is deleted after it
    httproutes            get create patch delete  spec.gateway's HTTPRoute (where served)
    configmaps            create patch delete  vLLM's logging config for EPLB telemetry (MoE)
    podmonitors           create patch delete  scraping the EPLB exporters, where that CRD is served
    pods                  list watch        is a workload broken? (the pod informer of our
                                            workloads' pods: shell/runtime.py)
    events                create            decisions and switches
    customresourcedefinitions  list watch   kopf discovers the resources it serves through them
    clusterkopfpeerings, kopfpeerings  get list watch patch   kopf peering: one active replica
                                            (kopf docs/peering.rst, docs/deployment-rbac.yaml)

Leader election is kopf peering (docs/reliability.md, "Leader election"): `peering()` is the two
peering CRDs (kopf.dev/v1, as kopf's `references.CLUSTER_PEERINGS_K`/`NAMESPACED_PEERINGS_K` name
them) and the ClusterKopfPeering object the Deployment's `--peering` names.
"""

from __future__ import annotations

from typing import Any

from breakeven.core import api
from breakeven.core.rendering import telemetry

NAME = "breakeven"
PEERING = NAME  # the ClusterKopfPeering (or per-namespace KopfPeering) the replicas share
KOPF_GROUP = "kopf.dev"
IMAGE = telemetry.IMAGE  # one image: the operator, and the EPLB exporter sidecar it renders

RULES: list[dict[str, Any]] = [
    {"apiGroups": [api.GROUP], "resources": [api.PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["leaderworkerset.x-k8s.io"],
        "resources": ["leaderworkersets"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        # ComputeDomains for groups inside one NVLink domain (owned by the plan; GC deletes them).
        "apiGroups": ["resource.nvidia.com"],
        "resources": ["computedomains"],
        "verbs": ["get", "create", "patch"],
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        # spec.gateway: the plan's HTTPRoute (gateway.networking.k8s.io/v1), where it is served.
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch", "delete"]},
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["podmonitors"],
        "verbs": ["create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": [KOPF_GROUP],
        "resources": ["clusterkopfpeerings", "kopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    },
]


def _peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{KOPF_GROUP}",
            "labels": {"app.kubernetes.io/name": NAME},
        },
        "spec": {
            "group": KOPF_GROUP,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    # kopf writes each peer's id, priority and lifetime under status.
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs (cluster-wide operators use the first, namespaced ones the second)."""
    return [
        _peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


def peering_object() -> dict[str, Any]:
    """The ClusterKopfPeering a cluster-wide operator's replicas meet in (`--peering breakeven`).
    An operator limited to namespaces uses a KopfPeering of the same name in each of them."""
    return {
        "apiVersion": f"{KOPF_GROUP}/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": PEERING, "labels": {"app.kubernetes.io/name": NAME}},
    }


def rbac(namespace: str = NAME) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": NAME}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
    ]


def operator_deployment(
    namespace: str = NAME,
    image: str = IMAGE,
    prometheus_url: str = "http://prometheus.monitoring:9090",
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "operator"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {
            # One active replica and a hot standby, through kopf peering: each replica's priority
            # is its start time (earlier = higher), so a standby never pre-empts the active one.
            "replicas": 2,
            # A terminating pod must not freeze the new one (kopf#734).
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "operator",
                            "image": image,
                            "args": [
                                "run",
                                f"--peering={PEERING}",
                                f"--prometheus-url={prometheus_url}",
                                "--liveness=http://0.0.0.0:8081/healthz",
                            ],
                            # kopf's peer identity (kopf peering.detect_own_id reads POD_ID).
                            "env": [
                                {
                                    "name": "POD_ID",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "ports": [
                                {"name": "metrics", "containerPort": 8080},
                                {"name": "health", "containerPort": 8081},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "health"},
                                "periodSeconds": 20,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
