"""Leader election through kopf peering, and the RBAC it and OwnerReferencesPermissionEnforcement
need (issue 10: item 10 and "no leader election at all")."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from breakeven.cli import main as cli
from breakeven.tools import deploy, schema


def run_settings(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """What `breakeven run ARGV` hands kopf.operator, without running it."""
    from breakeven.shell import operator

    seen: dict[str, Any] = {}

    async def fake_operator(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(operator.kopf, "operator", fake_operator)
    monkeypatch.setattr(operator.kopf, "configure", lambda **_: None)
    assert cli.main(["run", "--metrics-port", "0", *argv]) == 0
    assert "standalone" not in seen and "peering_name" not in seen  # all in the settings
    return seen


def test_peering_names_a_mandatory_peering_object(monkeypatch: pytest.MonkeyPatch) -> None:
    peering = run_settings(monkeypatch, "--peering", "breakeven")["settings"].peering
    assert (peering.name, peering.mandatory, peering.standalone) == ("breakeven", True, False)


def test_standalone_turns_peering_off(monkeypatch: pytest.MonkeyPatch) -> None:
    peering = run_settings(monkeypatch, "--standalone")["settings"].peering
    assert peering.standalone is True


def test_by_default_peering_is_used_when_its_crds_are_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peering = run_settings(monkeypatch)["settings"].peering
    assert (peering.name, peering.mandatory, peering.standalone) == ("breakeven", False, False)


def test_an_earlier_start_has_the_higher_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    from breakeven.shell import operator

    clock = iter([1_000.0, 2_000.0])
    monkeypatch.setattr(operator.time, "time", lambda: next(clock))
    first = run_settings(monkeypatch)["settings"].peering.priority
    second = run_settings(monkeypatch)["settings"].peering.priority
    assert first > second  # the standby started later never pre-empts the active replica
    assert run_settings(monkeypatch, "--priority", "7")["settings"].peering.priority == 7


def test_peering_and_standalone_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--peering", "x", "--standalone"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def rules_for(resource: str) -> set[str]:
    return {v for r in deploy.RULES if resource in r["resources"] for v in r["verbs"]}


def test_the_role_may_update_plan_finalizers_for_block_owner_deletion() -> None:
    # With OwnerReferencesPermissionEnforcement, an ownerReference with blockOwnerDeletion needs
    # `update` on the owner's finalizers subresource.
    assert "update" in rules_for("servingplans/finalizers")
    assert rules_for("servingplans") <= {"get", "list", "watch"}  # still no write on the plan


def test_the_role_may_use_kopf_peering() -> None:
    for resource in ("clusterkopfpeerings", "kopfpeerings"):
        assert {"get", "list", "watch", "patch"} <= rules_for(resource)
    assert all(
        r["apiGroups"] == [deploy.KOPF_GROUP]
        for r in deploy.RULES
        if "kopfpeerings" in r["resources"]
    )


def test_the_deployment_runs_an_active_replica_and_a_standby_through_peering() -> None:
    docs = list(yaml.safe_load_all(schema.OPERATOR_PATH.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    peering = next(d for d in docs if d["kind"] == "ClusterKopfPeering")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert f"--peering={peering['metadata']['name']}" in container["args"]
    assert container["env"][0]["name"] == "POD_ID"  # kopf's peer identity
    crds = list(yaml.safe_load_all(schema.PEERING_PATH.read_text()))
    assert {c["spec"]["names"]["kind"] for c in crds} == {"ClusterKopfPeering", "KopfPeering"}
    assert peering["apiVersion"] == f"{deploy.KOPF_GROUP}/v1"
