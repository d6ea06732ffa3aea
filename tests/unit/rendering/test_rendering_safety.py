"""No user string is ever run by a shell, and the pods carry the tightest securityContext.

User strings (model name, extra args, env values) may reach a container only as exec-form
arguments or env values. The kubelet still expands `$(VAR)` in those, so they are escaped; a
Python twin of the kubelet's expansion (k8s.io/kubernetes third_party/forked/golang/expansion)
checks that what vLLM finally receives is exactly what the user wrote.
"""

from __future__ import annotations

import re
from typing import Any

import builders
import pytest
import rendering_cases as cases

from breakeven.core import api, rendering
from breakeven.core.rendering import workloads

HOSTILE = "$(rm -rf /)'\"; `reboot` $HOME ${PATH} $$ \\"
HOSTILE_MODEL = "evil/$(rm -rf /)"


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of command, args and env values."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _hostile_case(name: str) -> cases.Case:
    base = cases.CASES[name]()
    serving = base.plan.spec.serving.model_copy(
        update={
            "extra_args": [HOSTILE, "--trust-remote-code", "$(HF_TOKEN)"],
            "env": [
                api.EnvVar(name="MY_SETTING", value=HOSTILE),
            ],
        }
    )
    model = base.plan.spec.model.model_copy(update={"name": HOSTILE_MODEL})
    spec = base.plan.spec.model_copy(update={"serving": serving, "model": model})
    return cases.Case(
        base.plan.model_copy(update={"spec": spec}), base.mode, base.estimate, base.pool, base.arch
    )


SHELL_CASES = ["dense-1gpu", "dense-tp8-pp2", "moe-two-node-lws", "moe-pd"]


@pytest.mark.parametrize("name", SHELL_CASES)
def test_user_strings_reach_vllm_verbatim_and_never_a_shell(name: str) -> None:
    for obj in _hostile_case(name).render():
        for container in cases.containers(obj):
            command = container["command"]
            # The only script is the constant one, and it takes the arguments as "$@".
            if command[0] != "vllm":
                assert command[1:] == ["-c", workloads.START_RANK_SCRIPT, "vllm-serve"]
                assert command[0] in ("/bin/sh", "/bin/bash")
            assert not any(HOSTILE in part or "rm -rf" in part for part in command)
            env_values = {e["name"]: e.get("value", "") for e in container["env"]}
            kube_env = {**env_values, "HF_TOKEN": "secret", "LWS_LEADER_ADDRESS": "leader"}
            args = [kubelet_expand(a, kube_env) for a in container["args"]]
            assert args[0] == HOSTILE_MODEL
            assert args[-3:] == [HOSTILE, "--trust-remote-code", "$(HF_TOKEN)"]
            assert args[args.index("--served-model-name") + 1] == HOSTILE_MODEL
            assert kubelet_expand(env_values["MY_SETTING"], kube_env) == HOSTILE


def _with_serving(name: str, **update: object) -> cases.Case:
    base = cases.CASES[name]()
    serving = base.plan.spec.serving.model_copy(update=update)
    spec = base.plan.spec.model_copy(update={"serving": serving})
    return cases.Case(
        base.plan.model_copy(update={"spec": spec}), base.mode, base.estimate, base.pool, base.arch
    )


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("moe-two-node-lws", "DP_SIZE_LOCAL"),  # reaches $((...)) in the start-rank script
        ("moe-two-node-lws", "LWS_WORKER_INDEX"),
        ("dense-1gpu", "HOME"),
        ("dense-1gpu", "HF_TOKEN"),
        ("moe-two-node-lws", "NCCL_SOCKET_IFNAME"),
        ("gke-a3-ultra", "BASH_ENV"),
    ],
)
def test_a_plan_cannot_override_the_operators_env(name: str, var: str) -> None:
    case = _with_serving(
        name, env=[api.EnvVar(name="OK", value="1"), api.EnvVar(name=var, value="1")]
    )
    with pytest.raises(rendering.RenderError, match=rf"^spec\.serving\.env\[1\]\.name: {var} "):
        case.render()


@pytest.mark.parametrize(
    "arg",
    ["--port", "--port=9000", "--served-model-name", "--tensor_parallel_size=2", "-tp",
     "--data-parallel-size-local", "--enable-eplb", "--eplb-config.window_size", "--host",
     "--model", "--headless", "--kv-transfer-config"],
)  # fmt: skip
def test_extra_args_cannot_override_the_operators_flags(arg: str) -> None:
    case = _with_serving("moe-two-node-lws", extra_args=["--max-num-seqs", "256", arg, "1"])
    with pytest.raises(rendering.RenderError, match=r"^spec\.serving\.extraArgs\[2\]: "):
        case.render()


def test_extra_args_that_are_the_users_pass_through() -> None:
    extra = ["--max-num-seqs", "256", "--trust-remote-code", "--enable-prefix-caching"]
    (obj, _) = _with_serving("dense-1gpu", extra_args=extra).render()
    assert cases.containers(obj)[0]["args"][-4:] == extra


def test_start_rank_script_is_constant_and_survives_kubelet_expansion() -> None:
    script = workloads.START_RANK_SCRIPT
    env = {"LWS_WORKER_INDEX": "1", "DP_SIZE_LOCAL": "8", "LWS_LEADER_ADDRESS": "x"}
    assert kubelet_expand(script, env) == script
    assert not re.search(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", script)
    assert '"$@"' in script and script.startswith("exec vllm serve ")


def test_only_multi_node_data_parallel_uses_the_script() -> None:
    for name in sorted(cases.CASES):
        for obj in cases.load_golden(name):
            for container in cases.containers(obj):
                scripted = container["command"][0] != "vllm"
                moe = name.startswith("moe") or name in cases.PLATFORM_CASES
                assert scripted == (obj["kind"] == "LeaderWorkerSet" and moe), name


def _pod_specs(name: str) -> list[dict[str, Any]]:
    return [t["spec"] for o in cases.load_golden(name) for t in cases.pod_templates(o)]


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_security_context(name: str) -> None:
    for pod in _pod_specs(name):
        (container,) = pod["containers"]
        security = container["securityContext"]
        if security.get("privileged"):
            assert name == "gke-a3-ultra"
            continue
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        limits = container["resources"]["limits"]
        rdma = any(k.startswith("rdma/") or k == "vpc.amazonaws.com/efa" for k in limits)
        gke = name.startswith("gke")  # GKE attaches RDMA NICs by annotation, no resource
        if security.get("privileged"):
            # GKE + DeepEP only: GPU-initiated RDMA needs it there (docs/rendering.md).
            assert name == "gke-a3-ultra"
            continue
        if rdma or gke:
            deepep = "NVSHMEM_REMOTE_TRANSPORT" in {e["name"] for e in container["env"]}
            assert security["capabilities"]["add"] == (
                ["IPC_LOCK", "SYS_RAWIO"] if deepep else ["IPC_LOCK"]
            )
            assert pod["securityContext"]["runAsUser"] == 0
        else:
            assert "add" not in security["capabilities"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 1000


def test_rdma_only_across_nodes_on_an_rdma_fabric() -> None:
    def limits(name: str) -> dict[str, str]:
        found: dict[str, str] = _pod_specs(name)[0]["containers"][0]["resources"]["limits"]
        return found

    assert "rdma/ib" not in limits("moe-single-node")  # one node: NVLink only
    assert limits("moe-two-node-lws")["rdma/ib"] == "1"
    assert limits("moe-gb200-clique")["rdma/rdma_shared_device_a"] == "1"
    assert set(limits("dense-tp8")) == {"nvidia.com/gpu"}


def test_common_pod_shape() -> None:
    pod = _pod_specs("dense-tp8")[0]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "hf-cache"}
    assert _pod_specs("dense-1gpu")[0]["volumes"][2] == {"name": "model-cache", "emptyDir": {}}
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["model-cache"] == env["HF_HOME"]["value"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    # No allocatable figures in this pool: the per-GPU floor, so the pod is Burstable.
    assert container["resources"]["requests"] == {
        "nvidia.com/gpu": "8",
        "cpu": "32",
        "memory": "256Gi",
    }
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert container["command"] == ["vllm", "serve"]
    assert container["args"][container["args"].index("--tensor-parallel-size") + 1] == "8"


def test_render_has_no_owner_references_and_uses_the_plan_namespace() -> None:
    for name in sorted(cases.CASES):
        for obj in cases.load_golden(name):
            assert "ownerReferences" not in obj["metadata"]
            assert obj["metadata"]["namespace"] == "serving"


def test_service_selects_the_mode_and_switching_changes_only_the_selector() -> None:
    plan = builders.serving_plan()
    dense = rendering.service(plan, api.ServingMode.DENSE)
    moe = rendering.service(plan, api.ServingMode.MOE)
    assert dense["spec"]["selector"]["breakeven.dev/mode"] == "dense"
    assert moe["spec"]["selector"]["breakeven.dev/mode"] == "moe"
    assert {**dense, "spec": {**dense["spec"], "selector": None}} == {
        **moe,
        "spec": {**moe["spec"], "selector": None},
    }
    assert dense["spec"]["ports"][0]["port"] == 80


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_service_selects_exactly_the_endpoint_pods(name: str) -> None:
    objects = cases.load_golden(name)
    selector = objects[-1]["spec"]["selector"]
    selected = [
        t["metadata"]["labels"]["llm-d.ai/role"]
        for o in objects[:-1]
        for t in cases.pod_templates(o)
        if selector.items() <= t["metadata"]["labels"].items()
    ]
    assert selected, name
    assert "prefill" not in selected
    for obj in objects[:-1]:
        for template in cases.pod_templates(obj):
            container = template["spec"]["containers"][0]
            if selector.items() <= template["metadata"]["labels"].items():
                assert "readinessProbe" in container  # the Service routes only to HTTP servers


def test_decode_pods_of_a_pd_pair_run_llm_ds_routing_sidecar_in_front_of_vllm() -> None:
    prefill, decode = cases.load_workloads("moe-pd")
    service = cases.load_golden("moe-pd")[-1]
    (prefill_pod,) = cases.pod_templates(prefill)
    (decode_pod,) = cases.pod_templates(decode)
    # Both carry the EPLB exporter (docs/telemetry.md); only decode pods run the routing proxy.
    assert [c["name"] for c in prefill_pod["spec"]["initContainers"]] == ["eplb-exporter"]
    sidecar, exporter = decode_pod["spec"]["initContainers"]
    assert (sidecar["name"], exporter["name"]) == ("routing-proxy", "eplb-exporter")
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: runs beside vLLM
    assert sidecar["args"] == [
        "--port=8000",
        "--vllm-port=8200",
        "--connector=nixlv2",
        "--secure-proxy=false",
    ]
    (vllm,) = decode_pod["spec"]["containers"]
    assert vllm["args"][vllm["args"].index("--port") + 1] == "8200"
    assert {p["name"]: p["containerPort"] for p in vllm["ports"]}["vllm"] == 8200
    assert vllm["readinessProbe"]["httpGet"]["port"] == "vllm"
    # The Service's `http` target port is the sidecar's on decode pods, vLLM's on prefill pods.
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert sidecar["ports"][0]["name"] == "http"
    assert decode_pod["metadata"]["labels"]["llm-d.ai/role"] == "decode"


def test_the_compute_domain_spec_does_not_change_with_replicas() -> None:
    """ComputeDomain.spec is immutable (a CEL rule in its CRD): scaling must not touch it."""

    def domain(replicas: int) -> dict[str, Any]:
        objects = _with_serving("gb200-multi-node", replicas=replicas).render()
        (found,) = [o for o in objects if o["kind"] == "ComputeDomain"]
        return dict(found["spec"])

    assert domain(1) == domain(3)
