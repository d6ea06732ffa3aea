"""The ServingPlan API: value parsing, defaults, and the errors a typo or a bad value gets."""

from __future__ import annotations

from typing import Any

import pytest
from builders import plan

from breakeven.core import api
from breakeven.shell import inputs


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("336h", 336 * 3600),
        ("5m", 300),
        ("90s", 90),
        ("1h30m", 5400),
        ("14d", 14 * 86400),
        ("250ms", 0.25),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert api.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "336", "h", "2 weeks", "-5m", "5M", "1h 30m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        api.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(336 * 3600, "336h"), (300, "5m"), (5400, "1h30m"), (0, "0s"), (61, "1m1s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert api.format_duration(seconds) == text
    assert api.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "value"),
    [("671B", 671e9), ("37B", 37e9), ("8e9", 8e9), ("1.5T", 1.5e12), ("500M", 5e8), ("7", 7.0)],
)
def test_parse_parameters(text: str, value: float) -> None:
    assert api.parse_parameters(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "B", "671b", "671 B", "seventy", "-1B", "1e"])
def test_parse_parameters_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a parameter count"):
        api.parse_parameters(text)


def test_defaults() -> None:
    spec = plan().spec
    assert spec.mode == api.Mode.AUTO
    assert spec.operations.platform_team == api.PlatformTeam.SHARED
    assert spec.traffic.window == "336h"
    assert spec.dry_run is False
    policy = spec.policy
    assert policy.gating == [
        api.Criterion.MODEL_SCALE,
        api.Criterion.SUSTAINED_LOAD,
        api.Criterion.INTERCONNECT,
        api.Criterion.OPS_MATURITY,
        api.Criterion.EXPERT_BALANCE,
    ]
    assert (policy.model_scale.dense_below, policy.model_scale.moe_from) == ("30B", "70B")
    assert policy.sustained_load.busy_fraction == 0.5
    assert policy.sustained_load.max_burstiness == 2.0
    assert policy.expert_balance.max_load_over_mean == 2.0
    assert policy.traffic_regularity.max_prompt_spread == 3.0
    assert policy.promotion_window == "336h"


def test_camel_case_on_the_wire() -> None:
    p = plan(operations={"platformTeam": "Dedicated"}, dryRun=True)
    assert p.spec.operations.platform_team == api.PlatformTeam.DEDICATED
    dumped = p.model_dump(by_alias=True, mode="json")
    assert dumped["spec"]["dryRun"] is True
    assert dumped["spec"]["operations"]["platformTeam"] == "Dedicated"


def test_plans_are_frozen() -> None:
    p = plan()
    with pytest.raises(ValueError):
        p.spec.mode = api.Mode.MOE  # type: ignore[misc]


def invalid(**spec: Any) -> str:
    with pytest.raises(inputs.InputError) as info:
        plan(**spec)
    return str(info.value)


@pytest.mark.parametrize(
    ("spec", "field", "detail"),
    [
        ({"mdoe": "MoE"}, "spec.mdoe", "unknown field"),
        ({"mode": "Sparse"}, "spec.mode", "'Auto', 'Dense' or 'MoE'"),
        ({"operations": {"platformTeam": "Big"}}, "spec.operations.platformTeam", "Dedicated"),
        ({"traffic": {"window": "2 weeks"}}, "spec.traffic.window", "pattern"),
        ({"policy": {"promotionWindow": "soon"}}, "spec.policy.promotionWindow", "pattern"),
        ({"policy": {"gating": ["modelScale", "vibes"]}}, "spec.policy.gating[1]", "modelScale"),
        (
            {"policy": {"sustainedLoad": {"busyFraction": 1.5}}},
            "spec.policy.sustainedLoad.busyFraction",
            "less than or equal to 1",
        ),
        (
            {"policy": {"expertBalance": {"maxLoadOverMean": 0.5}}},
            "spec.policy.expertBalance.maxLoadOverMean",
            "greater than or equal to 1",
        ),
        ({"serving": {"replicas": 0}}, "spec.serving.replicas", "greater than or equal to 1"),
        ({"traffic": {"prometheusUrl": "prom:9090"}}, "spec.traffic.prometheusUrl", "pattern"),
    ],
)
def test_field_errors_name_the_field(spec: dict[str, Any], field: str, detail: str) -> None:
    message = invalid(**spec)
    assert f"{field}: " in message
    assert detail in message


def test_model_errors_name_the_field() -> None:
    with pytest.raises(inputs.InputError, match=r"spec\.model\.totalParameters"):
        inputs.parse_plan(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": "p"},
                "spec": {"model": {"name": "x", "totalParameters": "lots"}},
            }
        )


def test_missing_model_is_reported() -> None:
    with pytest.raises(inputs.InputError, match=r"spec\.model: required field is missing"):
        inputs.parse_plan(
            {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "p"}, "spec": {}}
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": {"name": "x", "totalParameters": "10B", "activeParameters": "20B"}},
            "activeParameters must not exceed totalParameters",
        ),
        ({"model": {"name": "x", "experts": 8}}, r"expertsPerToken \(at least 1\) is required"),
        (
            {"model": {"name": "x", "experts": 8, "expertsPerToken": 9}},
            "expertsPerToken must not exceed experts",
        ),
        (
            {"model": {"name": "x"}, "policy": {"modelScale": {"denseBelow": "80B"}}},
            "denseBelow must not exceed modelScale.moeFrom",
        ),
        (
            {"model": {"name": "x"}, "policy": {"gating": ["modelScale", "modelScale"]}},
            "must not name a criterion twice",
        ),
        (
            {
                "model": {"name": "x"},
                "mode": "Dense",
                "serving": {"disaggregation": {"enabled": True}},
            },
            "disaggregation.enabled needs mode Auto or MoE",
        ),
    ],
)
def test_rules_that_span_fields(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(inputs.InputError, match=message):
        inputs.parse_plan(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": "p"},
                "spec": spec,
            }
        )


def test_every_cross_field_rule_has_a_cel_twin() -> None:
    messages = {rule["message"] for rules in api.CEL_RULES.values() for rule in rules}
    assert "expertsPerToken (at least 1) is required when experts is set" in messages
    assert "expertsPerToken must not exceed experts" in messages
    assert "gating must not name a criterion twice" in messages
    assert "serving.disaggregation.enabled needs mode Auto or MoE" in messages


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(inputs.InputError, match=r"apiVersion/kind must be breakeven\.dev/v1alpha1"):
        inputs.parse_plan({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}})


def test_bad_metadata_name_is_rejected() -> None:
    with pytest.raises(inputs.InputError, match=r"metadata\.name"):
        inputs.parse_plan(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": "Not_A_DNS_Name"},
                "spec": {"model": {"name": "x"}},
            }
        )
