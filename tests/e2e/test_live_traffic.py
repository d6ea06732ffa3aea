"""Live traffic from real vLLM metrics: the rows follow what a load generator sends.

The session's live model `e2e/live` (tests/e2e/conftest.py) has 14 days of backfilled history and,
from the session's start on, two llm-d-inference-sim processes (namespace `traffic`, pods
`live-sim-0/1`) answering real /v1/chat/completions from a load generator; the test Prometheus
scrapes their /metrics, so the operator reads `vllm:prompt_tokens_total`,
`vllm:generation_tokens_total` and `vllm:request_prompt_tokens_bucket` exactly as the simulator
exports them. Only the per-expert counter (spec.traffic.expertLoadMetric, a team's own pipeline)
still comes from the harness's exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_operator import create, plan, status

from e2e.fixtures import PrometheusEnv
from e2e.inference_sim import IRREGULAR, REGULAR, LiveVllm
from e2e.running import E2E_BASE_RATE as BASE_RATE

pytestmark = pytest.mark.e2e

LIVE_SERIES = "e2e/live"  # the live model tests/e2e/conftest.py starts with the session
SELECTOR = {"model_name": LIVE_SERIES, "namespace": "traffic"}


def rows(k8s: Any, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in status(k8s, namespace, name).get("criteria") or []}


def live_tokens(prometheus: PrometheusEnv) -> float:
    """Prompt + generation tokens the simulator pods have counted, through vLLM's names."""
    total = 0.0
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        value = prometheus.scalar(f'sum({name}{{model_name="{LIVE_SERIES}",pod=~".+"}})')
        assert value is not None, f"no {name} scraped from the simulator pods"
        total += value
    return total


def test_live_vllm_traffic_drives_the_rows_and_a_drop_sends_the_plan_back_to_dense(
    k8s: Any, namespace: str, until: Callable[..., None], prometheus: PrometheusEnv
) -> None:
    live = prometheus.live
    assert isinstance(live, LiveVllm) and live.generator is not None
    generator = live.generator
    experts = next(s for s in prometheus.exporter.streams if s.spec.model == LIVE_SERIES)
    body = plan("live", namespace)
    body["spec"]["traffic"] = {
        "selector": dict(SELECTOR),
        "expertLoadMetric": "moe_expert_tokens_total",
        "window": "3m",
    }
    body["spec"]["policy"]["demotionWindow"] = "20s"

    def verdict(row: str) -> str:
        return str(rows(k8s, namespace, "live").get(row, {}).get("verdict"))

    try:
        create(k8s, body)
        # The 3-minute window must first hold only full-rate 5-minute rates of the session's load.
        until(
            "MoE on live traffic",
            lambda: status(k8s, namespace, "live").get("mode") == "MoE",
            timeout=420,
        )
        found = rows(k8s, namespace, "live")
        assert found["sustainedLoad"]["verdict"] == "Go", found["sustainedLoad"]
        assert found["trafficRegularity"]["verdict"] == "Go", found["trafficRegularity"]
        assert generator.failed == 0, generator.summary()

        # Heavy-tailed prompts (p90/p50 6, which the history never had) at the same token rate:
        # the advisory row turns once they fill most of the 3-minute histogram window; the plan
        # stays MoE.
        generator.set_prompts(IRREGULAR)
        until(
            "trafficRegularity to see the irregular prompts",
            lambda: verdict("trafficRegularity") == "StayDense",
            timeout=300,
        )
        assert status(k8s, namespace, "live").get("mode") == "MoE"
        assert verdict("sustainedLoad") == "Go"

        # The load drops to 1 %: the plan goes back to dense (the demotion reads the last 20 s;
        # until the 3-minute window's p10 lapses too, the rows may still call for MoE, so allow
        # for the 5-minute rates to fall).
        generator.set_rate(BASE_RATE / 100)
        experts.set_rate(BASE_RATE / 100)
        until(
            "the fallback to dense after the drop",
            lambda: status(k8s, namespace, "live").get("mode") == "Dense",
            timeout=420,
        )
        reason = status(k8s, namespace, "live")["reason"]
        assert reason in ("TrafficBelowFloor", "SustainedLoadLapsed"), reason

        # What Prometheus holds under vLLM's names is what the simulators answered: their
        # counters equal the usage the generator was sent back (within a scrape of the low rate).
        def counted() -> bool:
            sent = generator.tokens
            return abs(live_tokens(prometheus) - sent) <= 0.002 * sent + 5 * BASE_RATE / 100

        until("the simulators' counters to match the generator's tally", counted, timeout=30)
        assert generator.failed == 0, generator.summary()
        assert not live.dead(), live.dead()

        # The row itself lapses later than the demotion (which reads the last 20 s): its p10 is
        # over 5-minute rates, which take about 4 minutes after the drop to fall under the floor.
        until(
            "sustainedLoad to lapse",
            lambda: verdict("sustainedLoad") == "StayDense",
            timeout=420,
        )
    finally:
        generator.set_prompts(REGULAR)
        generator.set_rate(BASE_RATE)
        experts.set_rate(BASE_RATE)
