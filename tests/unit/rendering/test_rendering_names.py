"""Names and labels are valid for Kubernetes whatever the plan is called."""

from __future__ import annotations

import re
from typing import Any

import builders
import pytest
import rendering_cases as cases
from hypothesis import example, given
from hypothesis import strategies as st

from breakeven.core import api, rendering
from breakeven.core.rendering import names

LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
PLAN_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True)


@given(st.text(max_size=300))
def test_label_value_is_always_valid(text: str) -> None:
    value = names.label_value(text)
    assert names.is_label_value(value)
    assert names.label_value(value) == value


@given(st.text(max_size=300), st.integers(min_value=20, max_value=63))
def test_dns_label_is_always_valid(text: str, limit: int) -> None:
    label = names.dns_label(text, limit)
    assert names.is_dns_label(label) and len(label) <= limit
    assert names.is_dns1035_label(names.dns1035_label(text))


def test_valid_strings_are_kept_and_changed_ones_hashed() -> None:
    assert names.label_value("chat") == "chat"
    assert names.label_value("deepseek-ai/DeepSeek-V3").startswith("deepseek-ai-DeepSeek-V3-")
    assert names.dns_label("a.b") != names.dns_label("a-b")  # no collision through cleaning
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert names.label_value(long_a) != names.label_value(long_b)


@given(PLAN_NAME)
# A name that starts with a digit: the Service becomes `x-<name>` and may pass the workload
# bound, which is not its own (a Service's pods are not named after it; its bound is 63).
@example("0000000000000000000000000000000000000000.0")
def test_every_name_and_label_of_any_plan_is_valid(plan_name: str) -> None:
    plan = builders.serving_plan(name=plan_name, image="vllm/vllm-openai:v0.12.0")
    case = cases.CASES["moe-pd"]()
    objects = rendering.render(plan, api.ServingMode.MOE, case.estimate, case.pool, case.arch)
    for mode in api.ServingMode:
        name = rendering.workload_name(plan, mode)
        assert names.is_dns_label(name) and len(name) <= names.WORKLOAD_NAME_MAX
        assert all(names.is_label_value(v) for v in rendering.selector_labels(plan, mode).values())
    service = rendering.service(plan, api.ServingMode.MOE)
    assert names.is_dns1035_label(service["metadata"]["name"])
    for obj in [*objects, service]:
        assert names.is_dns_label(obj["metadata"]["name"])
        if obj["kind"] == "Service":
            assert names.is_dns1035_label(obj["metadata"]["name"])
        else:
            assert len(obj["metadata"]["name"]) <= names.WORKLOAD_NAME_MAX
        check_labels(obj["metadata"]["labels"])
        for template in cases.pod_templates(obj):
            check_labels(template["metadata"]["labels"])


def check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        assert LABEL_KEY.match(key) and len(key.rsplit("/", 1)[-1]) <= 63, key
        assert isinstance(value, str) and names.is_label_value(value), (key, value)


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_golden_labels_and_port_names(name: str) -> None:
    for obj in cases.load_golden(name):
        check_labels(obj["metadata"]["labels"])
        for template in cases.pod_templates(obj):
            labels = template["metadata"]["labels"]
            check_labels(labels)
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                        "app.kubernetes.io/managed-by", "breakeven.dev/plan",
                        "breakeven.dev/mode", "llm-d.ai/role", "llm-d.ai/model"):  # fmt: skip
                assert key in labels, key
            assert labels["breakeven.dev/mode"] in {"dense", "moe"}
            for container in template["spec"]["containers"]:
                for port in container.get("ports", []):
                    assert len(port["name"]) <= 15 and re.match(r"^[a-z0-9-]+$", port["name"])


def test_public_names() -> None:
    plan = builders.serving_plan(name="chat")
    assert rendering.workload_name(plan, api.ServingMode.DENSE) == "chat-dense"
    assert rendering.workload_name(plan, api.ServingMode.MOE) == "chat-moe"
    assert rendering.prefill_workload_name(plan) == "chat-moe-prefill"
    assert rendering.service_name(plan) == "chat"
    assert rendering.workload_names(plan, api.ServingMode.MOE) == ["chat-moe", "chat-moe-prefill"]
    assert rendering.workload_names(plan, api.ServingMode.DENSE) == ["chat-dense"]
    assert rendering.selector_labels(plan, api.ServingMode.DENSE) == {
        "breakeven.dev/plan": "chat",
        "breakeven.dev/mode": "dense",
        "breakeven.dev/endpoint": "true",
    }


def test_public_surface() -> None:
    assert set(rendering.__all__) == {
        "RenderError", "prefill_workload_name", "render", "resolve_vllm_version",
        "selector_labels", "service", "service_name", "workload_name", "workload_names",
    }  # fmt: skip
    assert issubclass(rendering.RenderError, ValueError)
