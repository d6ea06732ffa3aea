"""The alerts (charts/breakeven/files/alerts.yaml) and the Grafana dashboard (files/dashboard.json).

`promtool check rules` and `promtool test rules` (tests/integration/data/alerts_test.yaml, a case
per alert); every operator metric they name is one the operator serves; every dashboard query runs
without error against a real Prometheus scraping the operator's own metrics registry and a vLLM
exporter, and the operator's panels return data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.fixtures import wait_for
from e2e.proc import free_port
from e2e.prom import LocalPrometheus
from e2e.traffic import LiveExporter, TrafficSpec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "charts" / "breakeven" / "files" / "alerts.yaml"
DASHBOARD = ROOT / "charts" / "breakeven" / "files" / "dashboard.json"
ALERT_TESTS = Path(__file__).parent / "data" / "alerts_test.yaml"
PROMTOOL = shutil.which("promtool") or "promtool"


def served_metric_names() -> set[str]:
    """Sample names the operator's registry exposes (counters with _total, histogram parts)."""
    from breakeven.shell import metrics

    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    out = subprocess.run(
        [PROMTOOL, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == set(alert_exprs())


def test_promtool_fails_a_wrong_expectation(tmp_path: Path) -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(ALERTS)]
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"plan": "ns/a"}}]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tests))
    out = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "t.yaml")], capture_output=True, text=True
    )
    assert out.returncode != 0


def test_every_operator_metric_named_is_served() -> None:
    served = served_metric_names()
    exprs = [*alert_exprs().values(), *dashboard_exprs()]
    named = {m for e in exprs for m in re.findall(r"\bbreakeven_[a-z_]+", e)}
    assert named, "no operator metric named at all"
    assert named <= served, f"not served by operator/breakeven/shell/metrics.py: {named - served}"


@pytest.fixture
def operator_metrics() -> Iterator[str]:
    """The operator's registry served on a free port, with one plan's worth of samples."""
    import prometheus_client

    from breakeven.shell import metrics

    metrics.PLAN_MODE.labels(plan="ns/web", mode="MoE").set(1)
    metrics.PLAN_MODE.labels(plan="ns/web", mode="Dense").set(0)
    metrics.VERDICT.labels(plan="ns/web", criterion="interconnect", verdict="Go").set(1)
    metrics.DECISIONS.labels(plan="ns/web", mode="MoE").inc()
    metrics.SWITCHES.labels(plan="ns/web", to="MoE", reason="AllGatesGo").inc()
    metrics.FALLBACKS.labels(plan="ns/web", reason="MoEWorkloadBroken").inc()
    metrics.PROMETHEUS_ERRORS.labels(url="http://prom:9090").inc()
    metrics.RECONCILES.labels(result="error").inc()
    metrics.TRIAL_BALANCE.labels(plan="ns/web").set(1.3)
    for seconds in (0.01, 0.2, 1.5):
        metrics.RECONCILE.observe(seconds)
        metrics.TRAFFIC_READ.observe(seconds)
    port = free_port()
    server, thread = prometheus_client.start_http_server(
        port, addr="127.0.0.1", registry=metrics.REGISTRY
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)
        metrics.forget_plan("ns/web")


def test_every_dashboard_query_runs_on_prometheus(operator_metrics: str, tmp_path: Path) -> None:
    exporter = LiveExporter().start()
    exporter.add(TrafficSpec("breakeven-test/moe", "dash"), rate=5_000)
    prom = LocalPrometheus(tmp_path / "prom", live_targets=[exporter, operator_metrics])
    prom.start()
    try:
        # Two scrapes at least, so rate() over the range has two samples.
        wait_for(
            "two scrapes of the operator",
            lambda: bool(prom.query("count_over_time(breakeven_plan_mode[1m]) >= 3")),
            60,
        )
        wait_for(
            "vLLM token counters", lambda: bool(prom.query("vllm:generation_tokens_total")), 60
        )
        end = time.time()
        empty = []
        for expr in dashboard_exprs():
            promql = (
                expr.replace("$__rate_interval", "1m")
                .replace("$plan", ".*")
                .replace("$namespace", ".*")
            )
            result: list[Any] = prom.query_range(promql, end - 120, end, 5)  # raises on error
            if not result and "breakeven_" in expr:
                empty.append(promql)
        assert not empty, f"operator panels with no data: {empty}"
    finally:
        prom.stop()
        exporter.stop()
