"""Bad ServingPlan specs and the field each must be rejected at, shared by the unit tests (the
pydantic model, `breakeven plan`) and the integration test (the real API server with the CRD).

Each entry is (id, a spec fragment merged into a minimal valid spec, the field path as the API
server and the CLI name it).
"""

# ruff: noqa: E501  (tables of cases read best one to a line)

from __future__ import annotations

import copy
from typing import Any

VALID_SPEC: dict[str, Any] = {"model": {"name": "deepseek-ai/DeepSeek-V3"}}

HUNDREDS_OF_DIGITS = "9" * 300

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("window-hundreds-of-digits", {"traffic": {"window": HUNDREDS_OF_DIGITS + "s"}}, "spec.traffic.window"),
    ("window-over-a-year", {"traffic": {"window": "366d"}}, "spec.traffic.window"),
    ("demotion-window-huge", {"policy": {"demotionWindow": "999999999999d"}}, "spec.policy.demotionWindow"),
    ("drain-period-huge", {"policy": {"drainPeriod": "99999999999d"}}, "spec.policy.drainPeriod"),
    ("drain-period-over-a-year", {"policy": {"drainPeriod": "8761h"}}, "spec.policy.drainPeriod"),
    ("min-dwell-many-parts", {"policy": {"minDwell": "1s1s1s1s1s"}}, "spec.policy.minDwell"),
    ("promotion-window-long-fraction", {"policy": {"promotionWindow": "1.00001h"}}, "spec.policy.promotionWindow"),
    ("total-parameters-zero", {"model": {"name": "x", "totalParameters": "0"}}, "spec.model.totalParameters"),
    ("total-parameters-huge", {"model": {"name": "x", "totalParameters": "1e99"}}, "spec.model.totalParameters"),
    ("total-parameters-digits", {"model": {"name": "x", "totalParameters": HUNDREDS_OF_DIGITS}}, "spec.model.totalParameters"),
    ("total-parameters-over-100T", {"model": {"name": "x", "totalParameters": "101T"}}, "spec.model.totalParameters"),
    ("active-parameters-zero", {"model": {"name": "x", "totalParameters": "7B", "activeParameters": "0"}}, "spec.model.activeParameters"),
    ("dense-below-huge", {"policy": {"modelScale": {"denseBelow": "1e40"}}}, "spec.policy.modelScale.denseBelow"),
    ("max-burstiness-huge", {"policy": {"sustainedLoad": {"maxBurstiness": 1e300}}}, "spec.policy.sustainedLoad.maxBurstiness"),
    ("max-prompt-spread-huge", {"policy": {"trafficRegularity": {"maxPromptSpread": 5000}}}, "spec.policy.trafficRegularity.maxPromptSpread"),
    ("max-load-over-mean-huge", {"policy": {"expertBalance": {"maxLoadOverMean": 1001}}}, "spec.policy.expertBalance.maxLoadOverMean"),
    ("vllm-version-long", {"serving": {"vllmVersion": "1." + "0" * 40}}, "spec.serving.vllmVersion"),
    ("expert-load-metric-long", {"traffic": {"expertLoadMetric": "m" * 300}}, "spec.traffic.expertLoadMetric"),
    ("expert-label-long", {"traffic": {"expertLabel": "e" * 200}}, "spec.traffic.expertLabel"),
    ("selector-value-long", {"traffic": {"selector": {"job": "v" * 2000}}}, "spec.traffic.selector"),
    ("node-selector-value-long", {"serving": {"nodeSelector": {"pool": "v" * 64}}}, "spec.serving.nodeSelector"),
    ("node-selector-key-long", {"serving": {"nodeSelector": {"k" * 318: "v"}}}, "spec.serving.nodeSelector"),
    ("node-selector-too-many", {"serving": {"nodeSelector": {f"k{i}": "v" for i in range(33)}}}, "spec.serving.nodeSelector"),
    ("priority-class-not-a-name", {"serving": {"priorityClassName": "Not A Name"}}, "spec.serving.priorityClassName"),
    ("mirror-percent-zero", {"trial": {"mirrorPercent": 0}}, "spec.trial.mirrorPercent"),
    ("mirror-percent-over-100", {"trial": {"mirrorPercent": 101}}, "spec.trial.mirrorPercent"),
    ("gateway-without-parents", {"gateway": {"parentRefs": []}}, "spec.gateway.parentRefs"),
    ("gateway-too-many-parents", {"gateway": {"parentRefs": [{"name": "g"}] * 33}}, "spec.gateway.parentRefs"),
    ("gateway-parent-port-zero", {"gateway": {"parentRefs": [{"name": "g", "port": 0}]}}, "spec.gateway.parentRefs[0].port"),
    ("gateway-parent-name-long", {"gateway": {"parentRefs": [{"name": "g" * 254}]}}, "spec.gateway.parentRefs[0].name"),
    ("gateway-hostname-not-a-host", {"gateway": {"parentRefs": [{"name": "g"}], "hostnames": ["a host"]}}, "spec.gateway.hostnames[0]"),
]  # fmt: skip


def spec_with(fragment: dict[str, Any]) -> dict[str, Any]:
    """VALID_SPEC with `fragment` merged in (nested mappings merge, everything else replaces)."""

    def merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    spec = copy.deepcopy(VALID_SPEC)
    merge(spec, fragment)
    return spec


def plan_object(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": name},
        "spec": spec,
    }
