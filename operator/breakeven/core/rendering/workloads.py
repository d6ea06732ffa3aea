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
# Prefill/decode: llm-d's routing sidecar takes the decode pod's HTTP port and forwards to vLLM on
# this one, running the prefill step first on the prefill pod the scheduler named in the request
# header (llm-d guides/wide-ep-lws/manifests/modelserver/base/decode.yaml: an init container with
# restartPolicy Always, `--port=8000 --vllm-port=8200 --connector=nixlv2 --secure-proxy=false`).
VLLM_BEHIND_SIDECAR_PORT = 8200
ROUTING_SIDECAR_IMAGE = "ghcr.io/llm-d/llm-d-routing-sidecar:v0.3.0"
SIDECAR_UID = 65532
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
# EFA devices are exclusive per pod (the EFA device plugin hands out whole devices): a pod asks
# for its GPU share of the node's devices. The other RDMA resources are shared-device plugins
# (rdma/ib, rdma/rdma_shared_device_a, ...) where one grants access to every HCA.
EXCLUSIVE_RDMA_RESOURCES = frozenset({"vpc.amazonaws.com/efa"})
# GKE machine types with RDMA NICs (A3 Ultra: H200, A4: B200, A4X: GB200): one RDMA NIC per GPU,
# attached as eth2.. on the networks rdma-0.. (llm-d guides/wide-ep-lws/manifests/modelserver/gke/
# kustomization.yaml for 8 NICs, gke-a4x/decode.yaml for 4; GKE "configure pod manifests for
# RDMA" as those files cite). GKE has no RDMA extended resource: the annotations attach the NICs.
GKE_RDMA_ACCELERATORS = frozenset({"nvidia-h200-141gb", "nvidia-b200", "nvidia-gb200"})
GKE_GIB_HOST_PATH = "/home/kubernetes/bin/gib"
GKE_GIB_MOUNT = "/usr/local/gib"
# Requests take this fraction of the node's allocatable CPU and memory per GPU share, leaving
# room for the daemon sets (GPU operator, network plugins) every GPU node runs.
ALLOCATABLE_SHARE = 0.85
# Without allocatable figures (a node list that omits them): a floor per GPU, so serving pods are
# Burstable rather than BestEffort.
FALLBACK_CPU_PER_GPU = 4
FALLBACK_MEMORY_PER_GPU = 32 * 1024**3
SHM_PER_GPU = 2 * 1024**3  # NCCL and torch IPC buffers; llm-d's A4X guide sets 2Gi for 4 GPUs
# NVIDIA DRA driver ComputeDomain (resource.nvidia.com/v1beta1, driver >= 25.3.0): an IMEX channel
# for multi-node NVLink (deployments/helm/nvidia-dra-driver-gpu/crds/
# resource.nvidia.com_computedomains.yaml in NVIDIA/k8s-dra-driver-gpu).
IMEX_CLAIM = "imex-channel"
# Environment the operator owns: what it renders, and what LeaderWorkerSet injects. A plan
# setting one of these is rejected (spec.serving.env), never merged.
RESERVED_ENV_PREFIXES = ("LWS_", "NVSHMEM_", "NCCL_", "GLOO_", "VLLM_NIXL_", "UCX_")
RESERVED_ENV = frozenset(
    {
        "HOME",
        "USER",
        "HF_HOME",
        "HF_TOKEN",
        "DP_SIZE_LOCAL",
        "VLLM_ALL2ALL_BACKEND",
        "BASH_ENV",
        "DEEP_EP_DEVICE_TO_HCA_MAPPING",
        "VLLM_PORT",
        "VLLM_HOST_IP",
        "CUDA_VISIBLE_DEVICES",
    }
)
# vLLM's short aliases of flags the operator renders (vllm/engine/arg_utils.py).
RESERVED_SHORT_FLAGS = frozenset(
    {"-tp", "-pp", "-dp", "-dpl", "-dpa", "-dpp", "-dpr", "-dph", "-dpn", "-ep"}
)
# Flags a plan may pass through extraArgs although the flag table lists them.
USER_FLAGS = frozenset({"--trust-remote-code"})

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

    @property
    def gke_rdma(self) -> bool:
        """GKE RDMA NICs to attach: a GKE RDMA machine type, and pods that talk over RDMA."""
        return self.rdma and self.pool.gke_accelerator in GKE_RDMA_ACCELERATORS

    @property
    def one_nvlink_domain(self) -> bool:
        """A multi-node group inside one NVLink domain (GB200/GB300 NVL72 clique)."""
        return (
            self.multi_node
            and bool(self.pool.cliques)
            and self.pool.largest_clique_gpus >= self.estimate.gpus
        )

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
    loaded = _model_arch(ctx)
    if loaded.min_vllm and ctx.version < versions.parse(loaded.min_vllm):
        raise errors.RenderError(
            f"spec.serving.vllmVersion: vLLM {ctx.version_text} cannot load {loaded.name} "
            f"({loaded.hf_architecture} arrived in {loaded.min_vllm})"
        )
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
    if not versions.table().has_eplb(ctx.arch.hf_architecture, ctx.version):
        since = versions.table().eplb_since(ctx.arch.hf_architecture)
        raise errors.RenderError(
            f"spec.serving.vllmVersion: vLLM {ctx.version_text} builds no EPLB state for "
            f"{ctx.arch.name} ({ctx.arch.hf_architecture or 'architecture unknown'}); "
            + (f"EPLB arrives in {since}" if since else "no vLLM release has it")
            + ", so an MoE workload with --enable-eplb would crash on its first step"
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
    if ctx.disaggregated and ctx.pool.fabric == "efa":
        # llm-d's AWS P/D guide runs NIXL with kv_connector_extra_config backends [LIBFABRIC] on
        # an EFA-enabled image (guides/pd-disaggregation/modelserver/gpu/vllm/aws/); NIXL's
        # default UCX backend has no EFA transport.
        raise errors.RenderError(
            "spec.serving.disaggregation.enabled: KV transfer over EFA needs NIXL's LIBFABRIC "
            "backend and an EFA-enabled image, which Breakeven does not render; disable "
            "prefill/decode disaggregation on this pool"
        )
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


def plan_labels(plan: api.ServingPlan) -> dict[str, str]:
    """The labels of the plan's objects that belong to no one mode (its Service, its route)."""
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": names.label_value(plan.name),
        "app.kubernetes.io/managed-by": "breakeven",
        PLAN_LABEL: names.label_value(plan.name),
    }


def _common_labels(plan: api.ServingPlan, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": names.label_value(plan.name),
        "app.kubernetes.io/managed-by": "breakeven",
        "app.kubernetes.io/version": names.label_value(version),
        PLAN_LABEL: names.label_value(plan.name),
    }


def model_label(served_name: str) -> str:
    """The `llm-d.ai/model` value: the served model name where it is a valid label value, else
    its last path segment (`deepseek-ai/DeepSeek-R1-0528` -> `DeepSeek-R1-0528`, the value
    llm-d's guides and InferencePool values select), else a hashed label value."""
    if names.is_label_value(served_name):
        return served_name
    tail = served_name.rsplit("/", 1)[-1]
    return tail if names.is_label_value(tail) else names.label_value(served_name)


def _pod_labels(ctx: _Ctx, workload: str, role: Role, endpoint: bool) -> dict[str, str]:
    return {
        **_common_labels(ctx.plan, ctx.version_text),
        "app.kubernetes.io/component": "server" if role == "both" else role,
        MODE_LABEL: _mode_value(ctx.mode),
        WORKLOAD_LABEL: names.label_value(workload),
        ENDPOINT_LABEL: "true" if endpoint else "false",
        "llm-d.ai/role": role,
        "llm-d.ai/model": model_label(ctx.served_name),
        "llm-d.ai/inference-serving": "true",
    }


# ---------------------------------------------------------------------------- vllm args


def _base_args(ctx: _Ctx, port: int = HTTP_PORT) -> list[str]:
    serving = ctx.serving
    args = [
        _literal(ctx.model),
        *ctx.flag("--port", str(port)),
        *ctx.flag("--served-model-name", _literal(ctx.served_name)),
    ]
    if serving.max_model_len is not None:
        args += ctx.flag("--max-model-len", str(serving.max_model_len))
    args += ctx.flag("--gpu-memory-utilization", f"{serving.gpu_memory_utilization:g}")
    for flag in _model_arch(ctx).serve_flags:
        args += ctx.flag(flag)
    return args


def _model_arch(ctx: _Ctx) -> catalog.Architecture:
    """The architecture of the weights this mode loads (the dense baseline's, in dense mode)."""
    dense = ctx.plan.spec.dense
    if ctx.mode == api.ServingMode.DENSE and dense is not None:
        return catalog.get(dense.architecture or dense.name) or ctx.arch
    return ctx.arch


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
    if not ctx.multi_node or ctx.one_nvlink_domain or ctx.pool.fabric not in DEEPEP_FABRICS:
        return intra
    if not table.image_has_deepep(ctx.serving.image):
        # The image cannot load DeepEP (data/vllm_flags.yaml `deepep_images`): NCCL's
        # all-gather/reduce-scatter runs over the same RDMA fabric, slower but it starts.
        return intra
    wanted = "deepep_high_throughput" if role == "prefill" else "deepep_low_latency"
    return wanted if table.has_backend(wanted, ctx.version) else intra


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
    owned = {f for f in versions.table().flags if f not in USER_FLAGS} | {
        "--model",
        "--host",
        "--uds",
        "--api-server-count",
        "--config",
    }
    for i, arg in enumerate(ctx.serving.extra_args):
        if not arg.startswith("-"):
            continue
        name = arg.split("=", 1)[0]
        long = "--" + name.lstrip("-").replace("_", "-").split(".", 1)[0]
        if name in RESERVED_SHORT_FLAGS or (name.startswith("--") and long in owned):
            raise errors.RenderError(
                f"spec.serving.extraArgs[{i}]: {name} is set by Breakeven (it sizes, names and "
                "connects the workload); remove it from extraArgs"
            )
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
        if ctx.multi_node:
            # NVSHMEM's bootstrap over the pod's primary interface (llm-d wide-ep-lws decode.yaml).
            env.append(_env("NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME", "eth0"))
    if ctx.gke_rdma:
        # GKE's NCCL settings for its RDMA NICs come from the gIB plugin's script, which bash
        # sources through BASH_ENV (the container runs under bash, see _command); GDRCopy is off
        # on GKE (llm-d guides/wide-ep-lws/manifests/modelserver/gke/kustomization.yaml).
        env.append(_env("BASH_ENV", f"{GKE_GIB_MOUNT}/scripts/set_nccl_env.sh"))
        if backend.startswith("deepep"):
            env.append(_env("NVSHMEM_DISABLED_GDRCOPY", "true"))
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
    """The rendered env, then the plan's `spec.serving.env`; a plan may not set a variable the
    operator or LeaderWorkerSet owns (RenderError naming the entry)."""
    rendered = {e["name"] for e in env}
    for i, var in enumerate(ctx.serving.env):
        if (
            var.name in rendered
            or var.name in RESERVED_ENV
            or var.name.startswith(RESERVED_ENV_PREFIXES)
        ):
            raise errors.RenderError(
                f"spec.serving.env[{i}].name: {var.name} is set by Breakeven or LeaderWorkerSet "
                "(the launch script and the fabric settings read it); remove it from env"
            )
    return env + [_env(e.name, _literal(e.value)) for e in ctx.serving.env]


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
        added = ["IPC_LOCK"]
        if _uses_deepep(ctx):
            # NVSHMEM's IBGDA transport maps the NIC's doorbells into GPU-visible memory
            # (mlx5dv_devx_uar): llm-d's wide-EP manifests add SYS_RAWIO for it, and on GKE run
            # the container privileged, as GKE's RDMA guide requires for GPU-initiated RDMA.
            added.append("SYS_RAWIO")
            if ctx.gke_rdma:
                container = {"privileged": True}
        if "privileged" not in container:
            container["capabilities"] = {"drop": ["ALL"], "add": added}
    else:
        pod.update(runAsNonRoot=True, runAsUser=NON_ROOT_UID, runAsGroup=NON_ROOT_UID)
    return pod, container


def _uses_deepep(ctx: _Ctx) -> bool:
    if ctx.mode != api.ServingMode.MOE:
        return False
    roles: tuple[Role, ...] = ("prefill", "decode") if ctx.disaggregated else ("both",)
    return any(_all2all_backend(ctx, r).startswith("deepep") for r in roles)


def _probes(serves_http: bool, port: str = "http") -> dict[str, Any]:
    if not serves_http:
        return {}

    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": port}

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


def _gib(value: float) -> str:
    return f"{max(int(value // 1024**3), 1)}Gi"


def _memory_request(ctx: _Ctx) -> float:
    share = ctx.gpus_per_pod / ctx.pool.gpus_per_node
    if ctx.pool.memory_per_node > 0:
        return ctx.pool.memory_per_node * share * ALLOCATABLE_SHARE
    return float(FALLBACK_MEMORY_PER_GPU * ctx.gpus_per_pod)


def _resources(ctx: _Ctx) -> dict[str, Any]:
    """GPUs (and RDMA devices) as limits; CPU and memory requests from the node's allocatable.

    Requests are the pod's GPU share of the smallest node's allocatable CPU and memory (times
    ALLOCATABLE_SHARE), so the pod is Burstable and the scheduler counts what vLLM really uses
    (tokenizer and API server processes, pinned host buffers, /dev/shm). No CPU or memory limit:
    weight loading peaks above the steady state and a limit would throttle or OOM-kill it.
    """
    gpus = str(ctx.gpus_per_pod)
    limits = {"nvidia.com/gpu": gpus}
    if ctx.rdma and ctx.pool.rdma_resource:
        count = 1
        if ctx.pool.rdma_resource in EXCLUSIVE_RDMA_RESOURCES:
            count = max(ctx.pool.rdma_devices * ctx.gpus_per_pod // ctx.pool.gpus_per_node, 1)
        limits[ctx.pool.rdma_resource] = str(count)
    share = ctx.gpus_per_pod / ctx.pool.gpus_per_node
    if ctx.pool.cpu_per_node > 0:
        cpu = max(int(ctx.pool.cpu_per_node * share * ALLOCATABLE_SHARE), 1)
    else:
        cpu = FALLBACK_CPU_PER_GPU * ctx.gpus_per_pod
    requests = {**limits, "cpu": str(cpu), "memory": _gib(_memory_request(ctx))}
    resources: dict[str, Any] = {"requests": requests, "limits": limits}
    if ctx.one_nvlink_domain:
        resources["claims"] = [{"name": IMEX_CLAIM}]
    return resources


def _volumes(ctx: _Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pvc = ctx.serving.model_cache_pvc
    cache: dict[str, Any] = (
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc}}
        if pvc
        else {"name": "model-cache", "emptyDir": {}}
    )
    # /dev/shm counts against the pod's memory: SHM_PER_GPU per GPU, at most a quarter of the
    # memory request.
    shm = min(SHM_PER_GPU * ctx.gpus_per_pod, _memory_request(ctx) / 4)
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _gib(shm)}},
        {"name": "home", "emptyDir": {}},
        cache,
    ]
    mounts = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "home", "mountPath": HOME},
        {"name": "model-cache", "mountPath": HF_HOME},
    ]
    if ctx.gke_rdma:
        # GKE's gIB plugin (NCCL net plugin and set_nccl_env.sh), installed on the node.
        volumes.append({"name": "gib", "hostPath": {"path": GKE_GIB_HOST_PATH, "type": ""}})
        mounts.append({"name": "gib", "mountPath": GKE_GIB_MOUNT})
    return volumes, mounts


def _gke_annotations(ctx: _Ctx) -> dict[str, str]:
    """GKE multi-network: eth0 on the default network, one RDMA NIC per GPU on rdma-0..N-1."""
    if not ctx.gke_rdma:
        return {}
    nics = [{"interfaceName": "eth0", "network": "default"}] + [
        {"interfaceName": f"eth{i + 2}", "network": f"rdma-{i}"}
        for i in range(ctx.pool.gpus_per_node)
    ]
    return {
        "networking.gke.io/default-interface": "eth0",
        "networking.gke.io/interfaces": json.dumps(nics, separators=(",", ":")),
    }


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


def _ports(
    ctx: _Ctx, serves_http: bool, extra: list[dict[str, Any]], sidecar: bool = False
) -> list[dict[str, Any]]:
    http = (
        {"name": "vllm", "containerPort": VLLM_BEHIND_SIDECAR_PORT, "protocol": "TCP"}
        if sidecar
        else {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}
    )
    ports = [http] if serves_http else []
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
    routing_sidecar: bool = False  # decode of a P/D pair: llm-d's routing sidecar in front


def _routing_sidecar() -> dict[str, Any]:
    """llm-d's routing sidecar as a native sidecar (an init container that keeps running)."""
    return {
        "name": "routing-proxy",
        "image": ROUTING_SIDECAR_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "args": [
            f"--port={HTTP_PORT}",
            f"--vllm-port={VLLM_BEHIND_SIDECAR_PORT}",
            "--connector=nixlv2",
            "--secure-proxy=false",
        ],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
        },
    }


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
        "command": _command(ctx, spec.command),
        "args": spec.args,
        "env": _with_user_env(ctx, spec.env),
        "ports": _ports(ctx, spec.serves_http, list(spec.ports), spec.routing_sidecar),
        "resources": _resources(ctx),
        "volumeMounts": mounts,
        "securityContext": container_security,
        **_probes(spec.serves_http, "vllm" if spec.routing_sidecar else "http"),
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
    if spec.routing_sidecar:
        pod["initContainers"] = [_routing_sidecar()]
    if affinity:
        pod["affinity"] = affinity
    if ctx.serving.priority_class_name:
        pod["priorityClassName"] = ctx.serving.priority_class_name
    metadata: dict[str, Any] = {"labels": labels}
    annotations = _gke_annotations(ctx)
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": pod}


def _command(ctx: _Ctx, command: list[str]) -> list[str]:
    """The container command; under bash where GKE's BASH_ENV must be sourced first."""
    if not ctx.gke_rdma:
        return command
    if command[:2] == ["/bin/sh", "-c"]:
        return ["/bin/bash", "-c", *command[2:]]
    return ["/bin/bash", "-c", 'exec "$0" "$@"', *command]


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
    if ctx.one_nvlink_domain:
        claims = [{"name": IMEX_CLAIM, "resourceClaimTemplateName": _imex_template(name)}]
        for key in ("leaderTemplate", "workerTemplate"):
            if key in template:
                template[key]["spec"]["resourceClaims"] = claims
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


def _imex_template(workload: str) -> str:
    return f"{workload}-imex"


def _compute_domain(ctx: _Ctx, name: str, role: Role) -> dict[str, Any]:
    """The NVIDIA DRA driver's ComputeDomain for a group spanning nodes of one NVLink domain.

    The driver's controller creates the ResourceClaimTemplate named in `channel`; each pod's
    claim on it gives the pod an IMEX channel, which multi-node NVLink (MNNVL) memory sharing
    needs. `numNodes: 0`, as the CRD recommends with the driver's IMEXDaemonsWithDNSNames
    feature gate (on by default): the spec is immutable, so a count that followed
    spec.serving.replicas would make every later apply fail.
    """
    return {
        "apiVersion": "resource.nvidia.com/v1beta1",
        "kind": "ComputeDomain",
        "metadata": _metadata(ctx, name, role),
        "spec": {
            "numNodes": 0,
            "channel": {"resourceClaimTemplate": {"name": _imex_template(name)}},
        },
    }


def _with_domain(
    ctx: _Ctx, name: str, role: Role, workload: dict[str, Any]
) -> list[dict[str, Any]]:
    if not ctx.one_nvlink_domain:
        return [workload]
    return [_compute_domain(ctx, name, role), workload]


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
    lws = _leader_worker_set(ctx, name, "both", ctx.serving.replicas, worker, leader, True)
    return _with_domain(ctx, name, "both", lws)


# ----------------------------------------------------------------------------------- MoE


def _moe_role(ctx: _Ctx, role: Role, name: str, replicas: int) -> list[dict[str, Any]]:
    est = ctx.estimate
    backend = _all2all_backend(ctx, role)
    sidecar = ctx.disaggregated and role == "decode"
    port = VLLM_BEHIND_SIDECAR_PORT if sidecar else HTTP_PORT
    args = _base_args(ctx, port) + ctx.flag("--enable-expert-parallel")
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
        spec = _Container(
            command=["vllm", "serve"],
            args=args + _extra_args(ctx),
            env=env,
            routing_sidecar=sidecar,
        )
        return [_deployment(ctx, name, role, replicas, spec, endpoint)]
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
        routing_sidecar=sidecar,
    )
    lws = _leader_worker_set(ctx, name, role, replicas, spec, None, endpoint)
    return _with_domain(ctx, name, role, lws)


def _render_moe(ctx: _Ctx) -> list[dict[str, Any]]:
    main = workload_name(ctx.plan, ctx.mode)
    if not ctx.disaggregated:
        return _moe_role(ctx, "both", main, ctx.serving.replicas)
    prefill = prefill_workload_name(ctx.plan)
    prefill_replicas = ctx.serving.disaggregation.prefill_replicas
    return [
        *_moe_role(ctx, "prefill", prefill, prefill_replicas),
        *_moe_role(ctx, "decode", main, ctx.serving.replicas),
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
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(plan),
            "namespace": plan.namespace,
            "labels": plan_labels(plan),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(plan, mode),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
