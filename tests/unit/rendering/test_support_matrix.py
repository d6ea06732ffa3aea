"""Every (catalog model, vLLM release, pool) against the support matrix.

For each combination the renderer either renders a workload whose every `vllm serve` flag, env
var, all-to-all backend, EPLB flag and serve flag the matrix (data/vllm_flags.yaml, models.yaml)
allows for that release and image, or, where the matrix rules MoE out (no EPLB for the
architecture in that release), refuses with the field named while the rubric gives a gating
`runtimeSupport` row and Dense: never a workload that would crash.
"""

from __future__ import annotations

from typing import Any

import builders
import pytest
import rendering_cases as cases

from breakeven.core import api, catalog, facts, rendering, rubric
from breakeven.core.rendering import versions, workloads

TABLE = versions.table()
VERSIONS = list(TABLE.verified)
MODELS = catalog.names()
STOCK = "vllm/vllm-openai"


def _pools() -> dict[str, tuple[facts.Pool, int, int, str]]:
    """name -> (pool, MoE GPUs, MoE nodes, image repository)."""
    return {
        "h200-infiniband": (builders.pool(), 16, 2, STOCK),
        "h200-infiniband-llm-d": (builders.pool(), 16, 2, "ghcr.io/llm-d/llm-d-cuda"),
        "h200-one-node": (builders.pool(nodes=1), 8, 1, STOCK),
        "gke-a3-ultra": (
            builders.pool("H200", "nvidia-h200-141gb", fabric="roce", rdma_resource=None,
                       gke_accelerator="nvidia-h200-141gb", cpu=220, memory_gib=2800),
            16, 2, "ghcr.io/llm-d/llm-d-cuda",
        ),
        "eks-p5": (
            builders.pool("H100", "p5.48xlarge", fabric="efa",
                       rdma_resource="vpc.amazonaws.com/efa", rdma_devices=32),
            16, 2, STOCK,
        ),
        "gb200-clique": (
            builders.pool("GB200", "NVIDIA-GB200", gpus_per_node=4, nodes=18, fabric="infiniband",
                       cliques={"c.0": 72}),
            16, 4, STOCK,
        ),
    }  # fmt: skip


POOLS = _pools()


def _plan(model: str, version: str, repository: str, mode: str = "Auto") -> api.ServingPlan:
    serving: dict[str, Any] = {"image": f"{repository}:v{version}"}
    if repository != STOCK:
        serving["vllmVersion"] = ".".join(version.split(".")[:3])
    if len(version.split(".")) > 3:  # 0.10.1.1: the pattern takes three parts, the tag four
        serving = {"image": f"{repository}:v{version}"}
    return api.ServingPlan.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"model": {"name": model}, "mode": mode, "serving": serving},
        }
    )


def _moe_estimate(arch: catalog.Architecture, gpus: int, nodes: int) -> Any:
    redundant = (-arch.routed_experts) % gpus or gpus
    return builders.moe(gpus, nodes, redundant=redundant)


def _flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def _check_container(
    container: dict[str, Any], version: versions.Version, arch: catalog.Architecture, image: str
) -> None:
    args = cases.vllm_args(container)
    for flag in _flags(args):
        assert TABLE.has_flag(flag, version), f"{flag} not in vLLM {version}"
    for flag in arch.serve_flags:
        assert flag in args
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in env:
        if name in TABLE.env:
            assert TABLE.has_env(name, version), f"{name} not in vLLM {version}"
    backend = env.get("VLLM_ALL2ALL_BACKEND")
    if "--all2all-backend" in args:
        backend = args[args.index("--all2all-backend") + 1]
    if backend is not None:
        assert TABLE.has_backend(backend, version), f"backend {backend} not in {version}"
        if backend.startswith("deepep"):
            assert TABLE.image_has_deepep(image)
            assert env["NVSHMEM_REMOTE_TRANSPORT"] == "ibgda"
    if "--enable-eplb" in args:
        assert TABLE.has_eplb(arch.hf_architecture, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_model_and_pool_renders_only_what_the_matrix_allows(version: str) -> None:
    parsed = versions.parse(version)
    rendered = refused = 0
    for model in MODELS:
        arch = catalog.get(model)
        assert arch is not None
        for pool_name, (pool, gpus, nodes, repository) in POOLS.items():
            plan = _plan(model, version, repository)
            image = plan.spec.serving.image
            # Dense renders (a single-node tensor-parallel replica) wherever the release's model
            # registry has the architecture.
            dense = builders.estimate(api.ServingMode.DENSE, pool.gpus_per_node,
                                   tp=pool.gpus_per_node)  # fmt: skip
            if arch.min_vllm and parsed < versions.parse(arch.min_vllm):
                with pytest.raises(rendering.RenderError, match="cannot load"):
                    rendering.render(plan, api.ServingMode.DENSE, dense, pool, arch)
                continue
            for obj in rendering.render(plan, api.ServingMode.DENSE, dense, pool, arch):
                for container in cases.containers(obj):
                    _check_container(container, parsed, arch, image)
            if not arch.is_moe:
                continue
            row = rubric.runtime_support(arch, plan.spec.serving)
            estimate = _moe_estimate(arch, gpus, nodes)
            if TABLE.has_eplb(arch.hf_architecture, parsed):
                assert row.verdict == api.Verdict.GO, (model, version, row.reason)
                objects = rendering.render(plan, api.ServingMode.MOE, estimate, pool, arch)
                for obj in objects:
                    for container in cases.containers(obj):
                        _check_container(container, parsed, arch, image)
                        assert "--enable-eplb" in cases.vllm_args(container)
                kinds = {o["kind"] for o in objects}
                assert ("ComputeDomain" in kinds) == (pool_name == "gb200-clique")
                rendered += 1
            else:
                assert row.verdict == api.Verdict.STAY_DENSE, (model, version)
                assert "MoE not available" in row.reason
                with pytest.raises(rendering.RenderError, match=r"^spec\.serving\.vllmVersion: "):
                    rendering.render(plan, api.ServingMode.MOE, estimate, pool, arch)
                refused += 1
    # Every release renders some MoE (DeepSeek has EPLB throughout) and refuses gpt-oss.
    assert rendered and refused


@pytest.mark.parametrize("version", ["0.10.2", "0.13.0", "0.33.0"])
@pytest.mark.parametrize("mode", ["Auto", "MoE"])
def test_gpt_oss_without_eplb_is_dense_with_a_gating_runtime_support_row(
    version: str, mode: str
) -> None:
    arch = catalog.get("openai/gpt-oss-120b")
    assert arch is not None
    plan = _plan("openai/gpt-oss-120b", version, STOCK, mode=mode)
    pool = builders.pool()
    cluster = facts.Cluster(pools=(pool,))
    traffic = facts.Traffic(
        tokens_per_second=facts.Percentiles(p10=12000, p50=14000, p95=16000),
        prompt_tokens=facts.Percentiles(p50=1000, p90=2000),
        expert_load_max_over_mean=1.2,
    )
    moe = rubric.Candidate(
        pool=pool,
        estimate=_moe_estimate(arch, 8, 1).model_copy(
            update={"total_tokens_per_second": 20000, "dollars_per_million_tokens": 0.5}
        ),
    )
    decision = rubric.decide(plan, arch, cluster, traffic, [moe], [])
    row = decision.row(api.Criterion.RUNTIME_SUPPORT)
    short = version.removesuffix(".0")
    assert row.gating and row.verdict == api.Verdict.STAY_DENSE
    assert f"gpt-oss-120b has no EPLB in vLLM {short}; MoE not available" in row.reason
    assert decision.mode == api.ServingMode.DENSE
    with pytest.raises(rendering.RenderError, match="no vLLM release has it"):
        rendering.render(plan, api.ServingMode.MOE, moe.estimate, pool, arch)


def test_kimi_k2_is_served_with_trust_remote_code() -> None:
    arch = catalog.get("moonshotai/Kimi-K2-Instruct")
    assert arch is not None and arch.serve_flags == ("--trust-remote-code",)
    plan = _plan("moonshotai/Kimi-K2-Instruct", "0.33.0", STOCK)
    objs = rendering.render(plan, api.ServingMode.MOE, builders.moe(8, 1, 8), builders.pool(), arch)
    (obj,) = [o for o in objs if o["kind"] in ("Deployment", "LeaderWorkerSet")]
    assert "--trust-remote-code" in cases.containers(obj)[0]["args"]


def test_deepep_needs_an_rdma_fabric_with_verbs_and_an_image_that_ships_it() -> None:
    assert {"infiniband", "roce", "rdma"} == workloads.DEEPEP_FABRICS
    assert TABLE.image_has_deepep("ghcr.io/llm-d/llm-d-cuda:v0.4.0")
    assert not TABLE.image_has_deepep("vllm/vllm-openai:v0.33.0")
    assert not TABLE.image_has_deepep("registry.example/ghcr.io/llm-d/llm-d-cuda:v0.4.0")
