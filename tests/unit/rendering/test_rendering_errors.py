"""Combinations that cannot run are RenderErrors naming the field to change, never manifests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import builders
import pytest
import rendering_cases as cases

from breakeven.core import api, rendering

MOE = api.ServingMode.MOE
DENSE = api.ServingMode.DENSE


def _render(case: cases.Case) -> None:
    rendering.render(case.plan, case.mode, case.estimate, case.pool, case.arch)


def _with(name: str, **changes: object) -> cases.Case:
    base = cases.CASES[name]()
    return cases.Case(**{**base.__dict__, **changes})


@pytest.mark.parametrize(
    ("case", "field"),
    [
        # Ray-free multi-node pipeline parallelism arrived in vLLM 0.11.1.
        (lambda: _with("dense-tp8-pp2", plan=builders.serving_plan(
            name="llama-405b", model=builders.LLAMA_405B, image="vllm/vllm-openai:v0.11.0")),
         "spec.serving.vllmVersion"),
        (lambda: _with("moe-single-node", arch=builders.arch(builders.LLAMA_70B)),
         "spec.model.name"),
        (lambda: _with("moe-two-node-lws", estimate=builders.moe(16, 2, redundant=30)),
         "estimate.redundant_experts"),
        (lambda: _with("moe-two-node-lws", estimate=builders.moe(16, 2, redundant=32).model_copy(
            update={"ep": 8})), "estimate.ep"),
        (lambda: _with("moe-single-node", estimate=builders.moe(16, 1, redundant=0)),
         "estimate.gpus"),
        (lambda: _with("moe-single-node", estimate=builders.moe(8, 1, 0).model_copy(
            update={"feasible": False, "note": "does not fit"})), "estimate.feasible"),
        (lambda: _with("dense-tp8", estimate=builders.estimate(DENSE, 8, tp=4)), "estimate.gpus"),
        (lambda: _with("dense-tp8", mode=MOE), "estimate.mode"),
        (lambda: _with("moe-single-node", estimate=builders.estimate(MOE, 1, ep=1)), "estimate.ep"),
    ],
    ids=["pp-needs-0.11.1", "dense-model-as-moe", "experts-not-divisible", "ep-not-tp-x-dp",
         "more-gpus-than-node", "infeasible", "tp-x-pp-not-gpus", "mode-mismatch", "ep-1"],
)  # fmt: skip
def test_render_error_names_the_field(case: object, field: str) -> None:
    with pytest.raises(rendering.RenderError, match=f"^{re.escape(field)}: "):
        _render(case())  # type: ignore[operator]


def test_dense_baseline_is_served_under_the_plan_model_name() -> None:
    plan = builders.serving_plan(name="chat", model=builders.DEEPSEEK, dense=builders.LLAMA_70B,
                      image="vllm/vllm-openai:v0.12.0")  # fmt: skip
    case = _with("dense-tp8", plan=plan)
    (deployment,) = rendering.render(plan, DENSE, case.estimate, case.pool, case.arch)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == builders.LLAMA_70B
    assert args[args.index("--served-model-name") + 1] == builders.DEEPSEEK


FORBIDDEN = {"kopf", "kubernetes", "httpx", "requests", "subprocess", "socket", "time", "random",
             "datetime", "uuid", "os"}  # fmt: skip


def test_rendering_is_pure() -> None:
    package = Path(rendering.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported = {node.module.split(".")[0]}
            else:
                continue
            assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"


def test_prefill_decode_over_efa_is_refused_naming_the_field() -> None:
    import rendering_cases as cases

    base = cases.CASES["eks-p5"]()
    serving = base.plan.spec.serving.model_copy(
        update={"disaggregation": api.Disaggregation(enabled=True)}
    )
    plan = base.plan.model_copy(
        update={"spec": base.plan.spec.model_copy(update={"serving": serving})}
    )
    with pytest.raises(rendering.RenderError, match=r"^spec\.serving\.disaggregation\.enabled: "):
        rendering.render(plan, base.mode, base.estimate, base.pool, base.arch)
