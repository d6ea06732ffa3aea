"""Fuzz: generated plan files, node lists and traffic facts through `breakeven plan` (in
process) and the facts layer. `breakeven plan` exits 0 or 2, never raises; facts built from
Nodes never raise; traffic facts raise only pydantic's ValidationError (which the CLI turns into
exit 2 naming the field). Counts are printed at the end of the session (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from fuzzing import SETTINGS, count, node_lists, plan_documents, traffic_documents
from hypothesis import given
from hypothesis import strategies as st

from breakeven.cli import main as cli
from breakeven.core import facts


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, err.getvalue()


@SETTINGS
@given(
    plan=plan_documents(),
    items=node_lists,
    traffic=st.one_of(st.none(), traffic_documents),
    render=st.booleans(),
)
def test_breakeven_plan_exits_0_or_2_on_any_input(
    plan: dict[str, Any], items: list[dict[str, Any]], traffic: dict[str, Any] | None, render: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp, "plan.yaml")
        plan_path.write_text(_dump(plan))
        nodes_path = Path(tmp, "nodes.yaml")
        nodes_path.write_text(_dump({"apiVersion": "v1", "kind": "List", "items": items}))
        argv = ["plan", str(plan_path), "--nodes", str(nodes_path), "-o", "json"]
        if traffic is not None:
            traffic_path = Path(tmp, "traffic.yaml")
            traffic_path.write_text(_dump(traffic))
            argv += ["--traffic", str(traffic_path)]
        if render:
            argv.append("--render")
        try:
            code, err = _cli(*argv)
        except BaseException:
            count("cli", "crashed")
            raise
    count("cli", {0: "accepted", 2: "rejected"}.get(code, "crashed"))
    assert code in (0, 2), err
    if code == 2:
        errors = [
            line for line in err.splitlines() if not line.startswith("breakeven plan: warning")
        ]
        assert errors[0].startswith("breakeven plan: error: "), err
        assert "Traceback" not in err


@SETTINGS
@given(items=node_lists, selector=st.one_of(st.none(), st.just({"pool": "serving"})))
def test_node_facts_never_raise(
    items: list[dict[str, Any]], selector: dict[str, str] | None
) -> None:
    try:
        direct = facts.Cluster.from_nodes(items, node_selector=selector)
        projected = facts.Cluster.from_nodes(
            [facts.node_info(n) for n in items], node_selector=selector
        )
    except BaseException:
        count("nodes", "crashed")
        raise
    # The operator (projections in its index) and the CLI (Node objects) see the same pools.
    assert projected == direct
    count("nodes", "with warnings" if direct.warnings else "clean")
    for pool in direct.pools:
        assert 0 < pool.gpus_per_node <= facts.MAX_GPUS_PER_NODE
        assert pool.gpu_memory_gb >= 0


@SETTINGS
@given(data=traffic_documents)
def test_traffic_facts_raise_only_validation_errors(data: dict[str, Any]) -> None:
    try:
        traffic = facts.Traffic.model_validate(data)
    except pydantic.ValidationError:
        count("traffic facts", "rejected")
        return
    except BaseException:
        count("traffic facts", "crashed")
        raise
    count("traffic facts", "accepted")
    assert traffic.observed_seconds >= 0


@pytest.mark.parametrize("depth", [10, 900, 5000])
def test_deep_nesting_is_an_input_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("spec: " + "{a: " * depth + "1" + "}" * depth)
    code, err = _cli("plan", str(path))
    assert code == 2 and "Traceback" not in err
