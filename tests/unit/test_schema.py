"""The CRD and docs/api.md are generated from the pydantic models: no drift, structural schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from breakeven.core import api
from breakeven.tools import schema

GENERATED = [schema.CRD_PATH, schema.CHART_CRD_PATH, schema.API_DOC_PATH]


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: str(p.relative_to(schema.ROOT)))
def test_generated_file_matches_the_models(path: Path) -> None:
    assert path.read_text() == schema.outputs()[path], (
        f"{path.relative_to(schema.ROOT)} is stale: run `python -m breakeven.tools.schema`"
    )


def openapi() -> dict[str, Any]:
    crd = yaml.safe_load(schema.CRD_PATH.read_text())
    version = crd["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every schema node, with its path."""
    if isinstance(node, dict):
        yield path, node
        for name, child in (node.get("properties") or {}).items():
            yield from nodes(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from nodes(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_no_ref_and_no_any_of_anywhere() -> None:
    text = schema.CRD_PATH.read_text()
    assert "$ref" not in text
    assert "anyOf" not in text
    assert "$defs" not in text
    assert "title:" not in text


def test_every_node_has_a_type() -> None:
    # x-kubernetes-int-or-string nodes have no type in a structural schema.
    untyped = [
        p
        for p, n in nodes(openapi())
        if "type" not in n and not n.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_counts_are_int_or_string_with_the_pattern() -> None:
    spec = openapi()["properties"]["spec"]["properties"]
    for node in (
        spec["model"]["properties"]["totalParameters"],
        spec["model"]["properties"]["activeParameters"],
        spec["policy"]["properties"]["modelScale"]["properties"]["moeFrom"],
    ):
        assert node["x-kubernetes-int-or-string"] is True
        assert "type" not in node and node["pattern"]


def test_generated_yaml_has_no_anchors() -> None:
    from breakeven.tools import schema

    for path, text in schema.outputs().items():
        if path.suffix == ".yaml":
            assert "&id0" not in text and "*id0" not in text, path


def test_every_property_has_a_description() -> None:
    missing = [
        f"{path}.{name}"
        for path, node in nodes(openapi())
        for name, prop in (node.get("properties") or {}).items()
        if not prop.get("description")
    ]
    # The API server accepts nothing but the type on the root's metadata.
    assert missing == [".metadata"]


def test_exclusive_bounds_are_openapi_v3_booleans() -> None:
    for path, node in nodes(openapi()):
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                assert isinstance(node[key], bool), path


def test_nullable_replaces_null_unions() -> None:
    spec = openapi()["properties"]["spec"]
    assert spec["properties"]["dense"]["nullable"] is True
    assert spec["properties"]["model"]["properties"]["architecture"]["nullable"] is True


def rules_at(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules_are_present_where_rules_span_fields() -> None:
    spec = openapi()["properties"]["spec"]
    assert rules_at(spec) == [r["rule"] for r in api.SPEC_RULES]
    assert rules_at(spec["properties"]["model"]) == [r["rule"] for r in api.MODEL_SPEC_RULES]
    assert rules_at(spec["properties"]["policy"]) == [r["rule"] for r in api.POLICY_RULES]


def test_enums_and_defaults_are_in_the_schema() -> None:
    spec = openapi()["properties"]["spec"]["properties"]
    assert spec["mode"]["enum"] == ["Auto", "Dense", "MoE"]
    assert spec["mode"]["default"] == "Auto"
    team = spec["operations"]["properties"]["platformTeam"]
    assert (team["enum"], team["default"]) == (["Shared", "Dedicated"], "Shared")
    gating = spec["policy"]["properties"]["gating"]
    assert gating["default"] == [
        "modelScale",
        "sustainedLoad",
        "interconnect",
        "opsMaturity",
        "expertBalance",
    ]
    assert set(gating["items"]["enum"]) == {c.value for c in api.Criterion}
    assert spec["traffic"]["properties"]["window"]["default"] == "336h"
    assert spec["policy"]["default"] == {}  # so the API server fills in nested defaults


def test_crd_metadata_printer_columns_and_status_subresource() -> None:
    crd = yaml.safe_load(schema.CRD_PATH.read_text())
    assert crd["metadata"]["name"] == "servingplans.breakeven.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["shortNames"]) == ("ServingPlan", ["sp"])
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Mode", "Target", "Ready", "Reason", "Age"]


def test_the_api_doc_lists_every_spec_field_and_rule() -> None:
    doc = schema.API_DOC_PATH.read_text()
    for field in (
        "spec.model.name",
        "spec.mode",
        "spec.operations.platformTeam",
        "spec.policy.gating",
        "spec.traffic.window",
        "status.criteria",
    ):
        assert f"| `{field}` |" in doc
    for rules in api.CEL_RULES.values():
        for rule in rules:
            assert rule["message"] in doc
