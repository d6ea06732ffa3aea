"""Plan + mode + sizing -> the Deployment, LeaderWorkerSet and Service objects that serve it.

What gets rendered:

    mode   role(s)            nodes per replica/group   object
    Dense  serve              1                         Deployment  <plan>-dense
    Dense  serve              >1 (pipeline stages)      LeaderWorkerSet <plan>-dense (>= 0.11.1)
    MoE    serve              1                         Deployment  <plan>-moe
    MoE    serve              >1                        LeaderWorkerSet <plan>-moe
    MoE    prefill + decode   1 or >1                   <plan>-moe-prefill and <plan>-moe

plus one Service `<plan>` whose selector names the mode, so a switch is a selector change.

Every user string (model name, extra args, env values) reaches the container as an exec-form
argument or an env value, escaped against the kubelet's `$(VAR)` expansion. The one shell script
(the start-rank arithmetic of multi-node data parallelism) is a constant; it reads only
environment variables and receives the vLLM arguments as "$@".

Purely computational: no clock, no randomness, no I/O; the same inputs give equal dicts, so a
GitOps diff of two renders is empty. The operator adds owner references and applies the objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from breakeven.core import api, capacity, catalog, facts
from breakeven.core.rendering import errors, names, telemetry, versions

Role = Literal["both", "prefill", "decode"]

HTTP_PORT = 8000
SERVICE_PORT = 80
DP_RPC_PORT = 29550  # vLLM's default --data-parallel-rpc-port, written out for clarity
MASTER_PORT = 29501  # vLLM's default --master-port (multi-node TP/PP without Ray)
NIXL_PORT = 5600  # vLLM's default VLLM_NIXL_SIDE_CHANNEL_PORT
NON_ROOT_UID = 1000
HOME = "/home/vllm"
HF_HOME = f"{HOME}/.cache/huggingface"
# A startup probe every 10 s that may fail 360 times: an hour to download and load weights
# (DeepSeek-class models take 7-10 minutes to load from a warm cache, far longer to download).
STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 360
EPLB_WINDOW_SIZE = 1000  # vLLM's defaults, used unless the estimate says otherwise
EPLB_STEP_INTERVAL = 3000
CLIQUE_LABEL = "nvidia.com/gpu.clique"
LWS_GROUP_KEY = "leaderworkerset.sigs.k8s.io/group-key"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
# Preferred (never required) topology keys for a multi-node group: a key no node carries only
# scores zero, while a required one would leave the group Pending.
PREFERRED_TOPOLOGY_KEYS = (
    "network.topology.nvidia.com/spine",
    "cloud.google.com/gce-topology-block",
    "topology.k8s.aws/network-node-layer-2",
    "backend.coreweave.cloud/leafgroup",
)
# DeepEP's NVSHMEM transport needs InfiniBand/RoCE verbs (IBGDA); EFA has none.
DEEPEP_FABRICS = frozenset({"infiniband", "roce", "rdma"})

# Start rank of this pod's data-parallel ranks: LWS numbers the pods of a group 0..size-1.
# A constant: every value reaches it through the environment or as "$@".
START_RANK_SCRIPT = (
    'exec vllm serve "$@" --data-parallel-start-rank "$((LWS_WORKER_INDEX * DP_SIZE_LOCAL))"'
)

PLAN_LABEL = "breakeven.dev/plan"
MODE_LABEL = "breakeven.dev/mode"
ENDPOINT_LABEL = "breakeven.dev/endpoint"
WORKLOAD_LABEL = "breakeven.dev/workload"


# ------------------------------------------------------------------------------------ names


def workload_name(plan: api.ServingPlan, mode: api.ServingMode) -> str:
    """`<plan>-dense` or `<plan>-moe` (a DNS-1123 label, hashed when it would not fit)."""
    return _workload_name(plan, f"-{_mode_value(mode)}")


def prefill_workload_name(plan: api.ServingPlan) -> str:
    """`<plan>-moe-prefill`: the prefill role of a disaggregated MoE deployment."""
    return _workload_name(plan, "-moe-prefill")


def workload_names(plan: api.ServingPlan, mode: api.ServingMode) -> list[str]:
    """Every object name `mode` may render (with or without P/D): what to observe and delete."""
    if mode == api.ServingMode.MOE:
        return [workload_name(plan, mode), prefill_workload_name(plan)]
    return [workload_name(plan, mode)]


def _workload_name(plan: api.ServingPlan, suffix: str) -> str:
    base = names.dns_label(plan.name, names.WORKLOAD_NAME_MAX - len("-moe-prefill"))
    return base + suffix


def service_name(plan: api.ServingPlan) -> str:
    """The stable Service: the plan's name when it is a valid Service name."""
    return names.dns1035_label(plan.name)


def selector_labels(plan: api.ServingPlan, mode: api.ServingMode) -> dict[str, str]:
    """What the Service selects for `mode`: the pods of that mode that take client requests."""
    return {
        PLAN_LABEL: names.label_value(plan.name),
        MODE_LABEL: _mode_value(mode),
        ENDPOINT_LABEL: "true",
    }


def _mode_value(mode: api.ServingMode) -> str:
    return "dense" if mode == api.ServingMode.DENSE else "moe"


def resolve_vllm_version(plan: api.ServingPlan) -> str:
    """The vLLM version rendered for: `spec.serving.vllmVersion`, else the image tag."""
    return versions.resolve(plan.spec.serving)


# ---------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _Ctx:
    plan: api.ServingPlan
    mode: api.ServingMode
    estimate: capacity.Estimate
    pool: facts.Pool
    arch: catalog.Architecture
    version_text: str
    version: versions.Version

    @property
    def serving(self) -> api.Serving:
        return self.plan.spec.serving

    @property
    def model(self) -> str:
        """The weights to load: the dense baseline when the plan names one."""
        dense = self.plan.spec.dense
        if self.mode == api.ServingMode.DENSE and dense is not None:
            return dense.name
        return self.plan.spec.model.name

    @property
    def served_name(self) -> str:
        """The model name clients send; the same in both modes, so a switch is invisible."""
        return self.plan.spec.model.name

    @property
    def nodes(self) -> int:
        return max(self.estimate.nodes, 1)

    @property
    def gpus_per_pod(self) -> int:
        return self.estimate.gpus // self.nodes

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    @property
    def disaggregated(self) -> bool:
        return self.mode == api.ServingMode.MOE and self.serving.disaggregation.enabled

    @property
    def rdma(self) -> bool:
        """Whether pods talk over the RDMA fabric: across nodes, or NIXL KV transfer."""
        return self.pool.fabric in facts.RDMA_FABRICS and (self.multi_node or self.disaggregated)

    def has_flag(self, flag: str) -> bool:
        return versions.table().has_flag(flag, self.version)

    def flag(self, flag: str, *values: str) -> list[str]:
        """`[flag, *values]`, after checking the version has the flag."""
        if not self.has_flag(flag):
            raise errors.RenderError(
                f"spec.serving.vllmVersion: vLLM {self.version_text} has no {flag}, which this "
                f"{self.mode.value} deployment needs"
            )
        return [flag, *values]


def _literal(text: str) -> str:
    """A user string, escaped so the kubelet's `$(VAR)` expansion leaves it as written."""
    return text.replace("$", "$$")


# ------------------------------------------------------------------------------- validation


def _check(ctx: _Ctx) -> None:
    est = ctx.estimate
    if est.mode != ctx.mode:
        raise errors.RenderError(
            f"estimate.mode: the sizing is for {est.mode.value}, asked to render {ctx.mode.value}"
        )
    if not est.feasible:
        raise errors.RenderError(
            f"estimate.feasible: no feasible {ctx.mode.value} sizing: {est.note}"
        )
    if est.gpus < 1 or est.gpus % ctx.nodes:
        raise errors.RenderError(
            f"estimate.gpus: {est.gpus} GPUs do not split evenly over {ctx.nodes} node(s)"
        )
    if ctx.gpus_per_pod > ctx.pool.gpus_per_node:
        raise errors.RenderError(
            f"estimate.gpus: {ctx.gpus_per_pod} GPUs per node, but pool {ctx.pool.gpu} nodes "
            f"have {ctx.pool.gpus_per_node}"
        )
    if ctx.mode == api.ServingMode.DENSE:
        if est.tp * est.pp * est.dp != est.gpus:
            raise errors.RenderError(
                f"estimate.gpus: tp {est.tp} x pp {est.pp} x dp {est.dp} != {est.gpus} GPUs"
            )
        if ctx.multi_node and est.dp != 1:
            raise errors.RenderError(
                "estimate.dp: a multi-node dense replica is rendered with pipeline stages only; "
                "scale dense replicas with spec.serving.replicas"
            )
        return
    if not ctx.arch.is_moe:
        raise errors.RenderError(
            f"spec.model.name: {ctx.arch.name} has no routed experts; it cannot run as an MoE"
        )
    if est.pp != 1:
        raise errors.RenderError(
            "estimate.pp: expert-parallel MoE is rendered without pipeline stages"
        )
    if est.tp * est.dp != est.gpus or est.ep != est.gpus:
        raise errors.RenderError(
            f"estimate.ep: EP must equal TP x DP = GPUs (tp {est.tp}, dp {est.dp}, ep {est.ep}, "
            f"gpus {est.gpus})"
        )
    if est.ep < 2:
        raise errors.RenderError("estimate.ep: EPLB needs at least two expert-parallel ranks")
    if ctx.gpus_per_pod % est.tp:
        raise errors.RenderError(
            f"estimate.tp: tp {est.tp} does not divide the {ctx.gpus_per_pod} GPUs of a node"
        )
    physical = ctx.arch.routed_experts + est.redundant_experts
    if est.redundant_experts < 0 or physical % est.ep:
        raise errors.RenderError(
            f"estimate.redundant_experts: {ctx.arch.routed_experts} routed + "
            f"{est.redundant_experts} redundant experts do not divide evenly over {est.ep} EP ranks"
        )
    if est.experts_per_rank and est.experts_per_rank != physical // est.ep:
        raise errors.RenderError(
            f"estimate.experts_per_rank: {est.experts_per_rank} != ({ctx.arch.routed_experts} + "
            f"{est.redundant_experts}) / {est.ep}"
        )


# ---------------------------------------------------------------------------------- labels


def _common_labels(plan: api.ServingPlan, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": names.label_value(plan.name),
        "app.kubernetes.io/managed-by": "breakeven",
        "app.kubernetes.io/version": names.label_value(version),
        PLAN_LABEL: names.label_value(plan.name),
    }


def _pod_labels(ctx: _Ctx, workload: str, role: Role, endpoint: bool) -> dict[str, str]:
    return {
        **_common_labels(ctx.plan, ctx.version_text),
        "app.kubernetes.io/component": "server" if role == "both" else role,
        MODE_LABEL: _mode_value(ctx.mode),
        WORKLOAD_LABEL: names.label_value(workload),
        ENDPOINT_LABEL: "true" if endpoint else "false",
        "llm-d.ai/role": role,
        "llm-d.ai/model": names.label_value(ctx.served_name),
        "llm-d.ai/inference-serving": "true",
    }


# ---------------------------------------------------------------------------- vllm args


def _base_args(ctx: _Ctx) -> list[str]:
    serving = ctx.serving
    args = [
        _literal(ctx.model),
        *ctx.flag("--port", str(HTTP_PORT)),
        *ctx.flag("--served-model-name", _literal(ctx.served_name)),
    ]
    if serving.max_model_len is not None:
        args += ctx.flag("--max-model-len", str(serving.max_model_len))
    args += ctx.flag("--gpu-memory-utilization", f"{serving.gpu_memory_utilization:g}")
    return args


def _all2all_backend(ctx: _Ctx, role: Role) -> str:
    """DeepEP across an RDMA fabric (low latency for decode, high throughput for prefill);
    the NCCL all-gather/reduce-scatter backend inside one NVLink node or clique, or where
    DeepEP cannot run."""
    table = versions.table()
    intra = (
        "allgather_reducescatter"
        if table.has_backend("allgather_reducescatter", ctx.version)
        else "naive"
    )
    in_one_domain = not ctx.multi_node or (
        bool(ctx.pool.cliques) and ctx.pool.largest_clique_gpus >= ctx.estimate.gpus
    )
    if in_one_domain or ctx.pool.fabric not in DEEPEP_FABRICS:
        return intra
    return "deepep_high_throughput" if role == "prefill" else "deepep_low_latency"


def _eplb_args(ctx: _Ctx) -> list[str]:
    inputs = ctx.estimate.inputs
    window = int(inputs.get("eplb_window_size", EPLB_WINDOW_SIZE))
    step = int(inputs.get("eplb_step_interval", EPLB_STEP_INTERVAL))
    redundant = ctx.estimate.redundant_experts
    args = ctx.flag("--enable-eplb")
    if ctx.has_flag("--eplb-config"):
        config = {"window_size": window, "step_interval": step, "num_redundant_experts": redundant}
        config |= telemetry.EPLB_CONFIG  # log_balancedness: EPLB telemetry
        return args + ctx.flag("--eplb-config", json.dumps(config, separators=(",", ":")))
    return (
        args
        + ctx.flag("--eplb-window-size", str(window))
        + ctx.flag("--eplb-step-interval", str(step))
        + ctx.flag("--num-redundant-experts", str(redundant))
        + ctx.flag(telemetry.LOG_BALANCEDNESS_FLAG)
    )


def _kv_transfer_args(ctx: _Ctx) -> list[str]:
    config = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    return ctx.flag("--kv-transfer-config", json.dumps(config, separators=(",", ":")))


def _extra_args(ctx: _Ctx) -> list[str]:
    return [_literal(a) for a in ctx.serving.extra_args]


# ------------------------------------------------------------------------------------- env


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _base_env(ctx: _Ctx) -> list[dict[str, Any]]:
    env = [_env("HOME", HOME), _env("USER", "vllm"), _env("HF_HOME", HF_HOME)]
    secret = ctx.serving.hf_token_secret
    if secret is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        )
    return env


def _network_env(ctx: _Ctx, backend: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if ctx.multi_node:
        # Gloo and NCCL's bootstrap otherwise pick an interface by hostname lookup; the pod's
        # primary interface is the one the leader address resolves to.
        env += [_env("GLOO_SOCKET_IFNAME", "eth0"), _env("NCCL_SOCKET_IFNAME", "eth0")]
    if backend.startswith("deepep"):
        env += [_env("NVSHMEM_REMOTE_TRANSPORT", "ibgda"), _env("NVSHMEM_IB_ENABLE_IBGDA", "true")]
    if ctx.disaggregated:
        env += [
            {
                "name": "VLLM_NIXL_SIDE_CHANNEL_HOST",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            },
            _env("VLLM_NIXL_SIDE_CHANNEL_PORT", str(NIXL_PORT)),
        ]
    return env


def _with_user_env(ctx: _Ctx, env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rendered env with the plan's `spec.serving.env` on top (same name: the plan wins)."""
    user = {e.name: _env(e.name, _literal(e.value)) for e in ctx.serving.env}
    merged = [user.pop(e["name"], e) for e in env]
    return merged + [user[e.name] for e in ctx.serving.env if e.name in user]


# --------------------------------------------------------------------------------- pod spec


def _security(ctx: _Ctx) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod securityContext, container securityContext).

    Non-root everywhere except with RDMA: registering memory with the NIC needs IPC_LOCK, and
    Kubernetes grants added capabilities only to root processes (it sets no ambient capabilities).
    """
    pod: dict[str, Any] = {
        "fsGroup": NON_ROOT_UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if ctx.rdma:
        pod.update(runAsNonRoot=False, runAsUser=0, runAsGroup=0)
        container["capabilities"] = {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    else:
        pod.update(runAsNonRoot=True, runAsUser=NON_ROOT_UID, runAsGroup=NON_ROOT_UID)
    return pod, container


def _probes(serves_http: bool) -> dict[str, Any]:
    if not serves_http:
        return {}

    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": "http"}

    return {
        "startupProbe": {
            "httpGet": get("/health"),
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": STARTUP_FAILURES,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": get("/health"),
            "periodSeconds": 10,
            "failureThreshold": 6,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": get("/v1/models"),
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
    }


def _resources(ctx: _Ctx) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(ctx.gpus_per_pod)}
    if ctx.rdma and ctx.pool.rdma_resource:
        limits[ctx.pool.rdma_resource] = "1"
    return {"limits": limits}


def _volumes(ctx: _Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pvc = ctx.serving.model_cache_pvc
    cache: dict[str, Any] = (
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc}}
        if pvc
        else {"name": "model-cache", "emptyDir": {}}
    )
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "home", "emptyDir": {}},
        cache,
    ]
    mounts = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "home", "mountPath": HOME},
        {"name": "model-cache", "mountPath": HF_HOME},
    ]
    return volumes, mounts


def _node_selector(ctx: _Ctx) -> dict[str, str]:
    # The label the pool's product name came from.
    return {ctx.pool.gpu_label: ctx.pool.product, **ctx.serving.node_selector}


def _tolerations(ctx: _Ctx) -> list[dict[str, Any]]:
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    given = [t.model_dump(exclude_none=True) for t in ctx.serving.tolerations]
    return [gpu, *(t for t in given if t != gpu)]


def _group_affinity(ctx: _Ctx, workload: str) -> dict[str, Any]:
    """Keep the pods of one LeaderWorkerSet group inside one fabric domain.

    With NVLink cliques (GB200 NVL72) the clique label is the domain and is required; otherwise
    the group prefers to share the first topology level a cluster labels (topograph's spine, a
    GKE block, an AWS network node, a CoreWeave leaf group).
    """

    def term(key: str) -> dict[str, Any]:
        return {
            "labelSelector": {"matchLabels": {LWS_NAME_LABEL: workload}},
            "matchLabelKeys": [LWS_GROUP_KEY],
            "topologyKey": key,
        }

    if ctx.pool.cliques and ctx.pool.largest_clique_gpus >= ctx.estimate.gpus:
        required = [term(CLIQUE_LABEL)]
        return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    preferred = [
        {"weight": 100 - 10 * i, "podAffinityTerm": term(key)}
        for i, key in enumerate(PREFERRED_TOPOLOGY_KEYS)
    ]
    return {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}


def _ports(ctx: _Ctx, serves_http: bool, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ports = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}] if serves_http else []
    if ctx.disaggregated:
        ports.append({"name": "nixl", "containerPort": NIXL_PORT, "protocol": "TCP"})
    return ports + extra


@dataclass(frozen=True)
class _Container:
    command: list[str]
    args: list[str]
    env: list[dict[str, Any]]
    serves_http: bool = True
    ports: tuple[dict[str, Any], ...] = ()


def _pod_template(
    ctx: _Ctx,
    labels: dict[str, str],
    spec: _Container,
    affinity: dict[str, Any] | None,
) -> dict[str, Any]:
    pod_security, container_security = _security(ctx)
    volumes, mounts = _volumes(ctx)
    container: dict[str, Any] = {
        "name": "vllm",
        "image": ctx.serving.image,
        "imagePullPolicy": "IfNotPresent",
        "command": spec.command,
        "args": spec.args,
        "env": _with_user_env(ctx, spec.env),
        "ports": _ports(ctx, spec.serves_http, list(spec.ports)),
        "resources": _resources(ctx),
        "volumeMounts": mounts,
        "securityContext": container_security,
        **_probes(spec.serves_http),
    }
    pod: dict[str, Any] = {
        # vLLM needs no API access, and Service links would inject VLLM_PORT-style variables
        # that vLLM reads as its own settings.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "nodeSelector": _node_selector(ctx),
        "tolerations": _tolerations(ctx),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    if affinity:
        pod["affinity"] = affinity
    if ctx.serving.priority_class_name:
        pod["priorityClassName"] = ctx.serving.priority_class_name
    return {"metadata": {"labels": labels}, "spec": pod}


# -------------------------------------------------------------------------------- objects


def _metadata(ctx: _Ctx, name: str, role: Role) -> dict[str, Any]:
    labels = {
        **_common_labels(ctx.plan, ctx.version_text),
        "app.kubernetes.io/component": "server" if role == "both" else role,
        MODE_LABEL: _mode_value(ctx.mode),
    }
    est = ctx.estimate
    sizing = (
        f"gpus={est.gpus} nodes={ctx.nodes} tp={est.tp} pp={est.pp} dp={est.dp} ep={est.ep}"
        + (f" redundant_experts={est.redundant_experts}" if ctx.mode == api.ServingMode.MOE else "")
    )
    return {
        "name": name,
        "namespace": ctx.plan.namespace,
        "labels": labels,
        "annotations": {"breakeven.dev/sizing": sizing, "breakeven.dev/pool": ctx.pool.gpu},
    }


def _deployment(
    ctx: _Ctx, name: str, role: Role, replicas: int, spec: _Container, endpoint: bool
) -> dict[str, Any]:
    labels = _pod_labels(ctx, name, role, endpoint)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ctx, name, role),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {k: labels[k] for k in (PLAN_LABEL, WORKLOAD_LABEL)}},
            # Never below the serving capacity during an update: one extra replica at a time.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            # Loading weights takes as long as the startup probe allows, not the default 10 min.
            "progressDeadlineSeconds": STARTUP_PERIOD_S * STARTUP_FAILURES,
            "template": _pod_template(ctx, labels, spec, affinity=None),
        },
    }


def _leader_worker_set(
    ctx: _Ctx,
    name: str,
    role: Role,
    replicas: int,
    worker: _Container,
    leader: _Container | None,
    endpoint: bool,
) -> dict[str, Any]:
    affinity = _group_affinity(ctx, name)
    template: dict[str, Any] = {
        "size": ctx.nodes,
        # One lost rank breaks every collective of the group: restart the group together.
        "restartPolicy": "RecreateGroupOnPodRestart",
    }
    if leader is not None:
        leader_labels = _pod_labels(ctx, name, role, endpoint)
        worker_labels = {
            **leader_labels,
            ENDPOINT_LABEL: "false",
            "llm-d.ai/inference-serving": "false",
        }
        template["leaderTemplate"] = _pod_template(ctx, leader_labels, leader, affinity)
        template["workerTemplate"] = _pod_template(ctx, worker_labels, worker, affinity)
    else:
        labels = _pod_labels(ctx, name, role, endpoint)
        template["workerTemplate"] = _pod_template(ctx, labels, worker, affinity)
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(ctx, name, role),
        "spec": {
            "replicas": replicas,
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": template,
        },
    }


# --------------------------------------------------------------------------------- dense


def _render_dense(ctx: _Ctx) -> list[dict[str, Any]]:
    est = ctx.estimate
    name = workload_name(ctx.plan, ctx.mode)
    parallel = ctx.flag("--tensor-parallel-size", str(est.tp))
    if est.pp > 1:
        parallel += ctx.flag("--pipeline-parallel-size", str(est.pp))
    if est.dp > 1:
        parallel += ctx.flag("--data-parallel-size", str(est.dp))
    env = _base_env(ctx) + _network_env(ctx, backend="")
    if not ctx.multi_node:
        args = _base_args(ctx) + parallel + _extra_args(ctx)
        spec = _Container(command=["vllm", "serve"], args=args, env=env)
        return [_deployment(ctx, name, "both", ctx.serving.replicas, spec, endpoint=True)]
    if not ctx.has_flag("--nnodes"):
        raise errors.RenderError(
            f"spec.serving.vllmVersion: a dense replica across {ctx.nodes} nodes needs vLLM's "
            f"Ray-free multi-node launch (--nnodes, vLLM >= 0.11.1); {ctx.version_text} would need "
            "a Ray cluster, which Breakeven does not render"
        )
    # Multi-node TP/PP with the multiprocessing executor: every pod runs `vllm serve` with its
    # node rank; rank 0 (the LWS leader) serves HTTP, the others run --headless.
    multi = (
        ctx.flag("--nnodes", str(ctx.nodes))
        + ctx.flag("--node-rank", "$(LWS_WORKER_INDEX)")
        + ctx.flag("--master-addr", "$(LWS_LEADER_ADDRESS)")
        + ctx.flag("--master-port", str(MASTER_PORT))
    )
    master = ({"name": "master", "containerPort": MASTER_PORT, "protocol": "TCP"},)
    leader = _Container(
        command=["vllm", "serve"],
        args=_base_args(ctx) + parallel + multi + _extra_args(ctx),
        env=env,
        ports=master,
    )
    worker = _Container(
        command=["vllm", "serve"],
        args=_base_args(ctx) + parallel + multi + ctx.flag("--headless") + _extra_args(ctx),
        env=env,
        serves_http=False,
    )
    return [_leader_worker_set(ctx, name, "both", ctx.serving.replicas, worker, leader, True)]


# ----------------------------------------------------------------------------------- MoE


def _moe_role(ctx: _Ctx, role: Role, name: str, replicas: int) -> dict[str, Any]:
    est = ctx.estimate
    backend = _all2all_backend(ctx, role)
    args = _base_args(ctx) + ctx.flag("--enable-expert-parallel")
    args += ctx.flag("--tensor-parallel-size", str(est.tp))
    args += ctx.flag("--data-parallel-size", str(est.dp))
    env = _base_env(ctx)
    if ctx.has_flag("--all2all-backend"):
        args += ctx.flag("--all2all-backend", backend)
    elif versions.table().has_env("VLLM_ALL2ALL_BACKEND", ctx.version):
        env.append(_env("VLLM_ALL2ALL_BACKEND", backend))
    else:  # pragma: no cover - the table has one or the other for every supported version
        raise errors.RenderError(
            f"spec.serving.vllmVersion: no all2all setting in {ctx.version_text}"
        )
    args += _eplb_args(ctx)
    if ctx.disaggregated:
        args += _kv_transfer_args(ctx)
    env += _network_env(ctx, backend)
    endpoint = role != "prefill"
    if not ctx.multi_node:
        spec = _Container(command=["vllm", "serve"], args=args + _extra_args(ctx), env=env)
        return _deployment(ctx, name, role, replicas, spec, endpoint)
    # One pod per node, each running its local DP ranks with its own API server (hybrid load
    # balancing); LWS numbers the pods, the script turns that into the first DP rank.
    local = ctx.gpus_per_pod // est.tp
    args += ctx.flag("--data-parallel-size-local", str(local))
    args += ctx.flag("--data-parallel-address", "$(LWS_LEADER_ADDRESS)")
    args += ctx.flag("--data-parallel-rpc-port", str(DP_RPC_PORT))
    args += ctx.flag("--data-parallel-hybrid-lb")
    ctx.flag("--data-parallel-start-rank")  # rendered by START_RANK_SCRIPT
    env.append(_env("DP_SIZE_LOCAL", str(local)))
    rpc = ({"name": "dp-rpc", "containerPort": DP_RPC_PORT, "protocol": "TCP"},)
    spec = _Container(
        command=["/bin/sh", "-c", START_RANK_SCRIPT, "vllm-serve"],
        args=args + _extra_args(ctx),
        env=env,
        ports=rpc,
    )
    return _leader_worker_set(ctx, name, role, replicas, spec, None, endpoint)


def _render_moe(ctx: _Ctx) -> list[dict[str, Any]]:
    main = workload_name(ctx.plan, ctx.mode)
    if not ctx.disaggregated:
        return [_moe_role(ctx, "both", main, ctx.serving.replicas)]
    prefill = prefill_workload_name(ctx.plan)
    prefill_replicas = ctx.serving.disaggregation.prefill_replicas
    return [
        _moe_role(ctx, "prefill", prefill, prefill_replicas),
        _moe_role(ctx, "decode", main, ctx.serving.replicas),
    ]


# ------------------------------------------------------------------------------- public


def render(
    plan: api.ServingPlan,
    mode: api.ServingMode,
    estimate: capacity.Estimate,
    pool: facts.Pool,
    arch: catalog.Architecture,
    telemetry_options: telemetry.Options = telemetry.DEFAULT,
) -> list[dict[str, Any]]:
    """The workload objects that serve `plan` in `mode`, sized by `estimate` on `pool`.

    Purely computational: returns plain dicts without owner references (the operator adds them
    and applies the objects). Raises RenderError, naming the field to change, for a combination
    that cannot run (an unsupported vLLM version, a sizing that does not fit the pool, an MoE mode
    for a dense model, expert counts that do not divide over the EP ranks).
    """
    version_text = resolve_vllm_version(plan)
    ctx = _Ctx(
        plan=plan,
        mode=mode,
        estimate=estimate,
        pool=pool,
        arch=arch,
        version_text=version_text,
        version=versions.parse(version_text),
    )
    _check(ctx)
    if mode == api.ServingMode.DENSE:
        return _render_dense(ctx)
    labels = {**_common_labels(plan, version_text), MODE_LABEL: "moe"}
    selector = {k: labels[k] for k in (PLAN_LABEL, MODE_LABEL)}
    return telemetry.instrument(_render_moe(ctx), plan, workload_name(plan, mode),
                                ctx.served_name, labels, selector, telemetry_options)  # fmt: skip


def service(plan: api.ServingPlan, mode: api.ServingMode) -> dict[str, Any]:
    """The one stable Service of the plan, pointed at the endpoint pods of `mode`.

    Port 80 -> the pods' `http` port (8000). Switching modes changes only `spec.selector`.
    Purely computational.
    """
    labels = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": names.label_value(plan.name),
        "app.kubernetes.io/managed-by": "breakeven",
        PLAN_LABEL: names.label_value(plan.name),
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(plan), "namespace": plan.namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(plan, mode),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
