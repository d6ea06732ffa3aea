"""Every generated file (CRD, chart CRD, API docs, RBAC, operator Deployment, chart rules) is what
`python -m breakeven.tools.schema` makes from the code today."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from breakeven.tools import deploy, schema


@pytest.mark.parametrize("path", sorted(schema.outputs()), ids=lambda p: str(p.name))
def test_generated_file_is_current(path: Path) -> None:
    assert path.read_text() == schema.outputs()[path], f"{path} is stale: run `make generate`"


def test_chart_rbac_uses_the_generated_rules() -> None:
    # The chart renders its (Cluster)Roles from files/rules.yaml through the breakeven.rules
    # helper; tests/integration/test_chart.py checks the rendered rules with helm itself.
    helpers = (schema.ROOT / "charts/breakeven/templates/_helpers.tpl").read_text()
    template = (schema.ROOT / "charts/breakeven/templates/rbac.yaml").read_text()
    assert '.Files.Get "files/rules.yaml"' in helpers
    assert template.count('include "breakeven.rules"') == 2
    assert yaml.safe_load(schema.CHART_RULES_PATH.read_text()) == deploy.RULES


def test_rbac_has_no_wildcards_and_no_write_on_plans() -> None:
    for rule in deploy.RULES:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if "servingplans" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
    assert {"get", "list", "watch"} >= {
        v for r in deploy.RULES if r["resources"] == ["nodes"] for v in r["verbs"]
    }
