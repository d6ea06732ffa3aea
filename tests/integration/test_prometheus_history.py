"""Prometheus with backfilled traffic history and a live exporter, queried with real PromQL.

Breakeven's decisions start from PromQL over weeks of vLLM metrics; these tests pin down that the
harness's history has the documented shape per profile and that live changes become visible.
"""

import statistics

import pytest

from e2e.fixtures import HISTORY_NAMESPACE, PrometheusEnv, wait_for
from e2e.traffic import DEFAULT_BASE_RATE, TrafficSpec

pytestmark = pytest.mark.integration

BASE = DEFAULT_BASE_RATE


def _sel(profile: str) -> str:
    return f'model_name="breakeven-test/{profile}",namespace="{HISTORY_NAMESPACE}"'


def _token_rates(prometheus: PrometheusEnv, profile: str, window: str = "5m") -> list[float]:
    """Prompt+generation token rates every 15 minutes over the whole 14-day history."""
    history = prometheus.prom.history
    assert history is not None
    s = _sel(profile)
    promql = (
        f"sum(rate(vllm:prompt_tokens_total{{{s}}}[{window}]))"
        f" + sum(rate(vllm:generation_tokens_total{{{s}}}[{window}]))"
    )
    result = prometheus.query_range(promql, history.start + 900, history.end, 900)
    assert len(result) == 1, result
    values = [float(v) for _, v in result[0]["values"]]
    assert len(values) >= 14 * 24 * 4 - 2  # every 15 minutes of 14 days answered
    return values


def _q(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def test_sustained_history_rates(prometheus: PrometheusEnv) -> None:
    rates = _token_rates(prometheus, "sustained")
    p10, p50, p95 = _q(rates, 0.10), _q(rates, 0.50), _q(rates, 0.95)
    assert p50 == pytest.approx(BASE, rel=0.1)
    assert p10 >= 0.7 * p50
    assert p95 / p50 <= 1.3


def test_bursty_history_rates(prometheus: PrometheusEnv) -> None:
    rates = _token_rates(prometheus, "bursty")
    p10, p50, p95 = _q(rates, 0.10), _q(rates, 0.50), _q(rates, 0.95)
    assert p10 < 0.2 * BASE
    assert p95 / p50 >= 3


def test_low_history_rates(prometheus: PrometheusEnv) -> None:
    rates = _token_rates(prometheus, "low")
    assert statistics.median(rates) == pytest.approx(0.05 * BASE, rel=0.15)


def _prompt_quantile(prometheus: PrometheusEnv, profile: str, q: float) -> float:
    history = prometheus.prom.history
    assert history is not None
    promql = (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(vllm:request_prompt_tokens_bucket{{{_sel(profile)}}}[1d])))"
    )
    value = prometheus.scalar(promql, at=history.end)
    assert value is not None
    return value


def test_prompt_length_spread(prometheus: PrometheusEnv) -> None:
    # histogram_quantile over vLLM's 1-2-5 buckets overstates the true ratios (1.5 and 6).
    sustained = _prompt_quantile(prometheus, "sustained", 0.9) / _prompt_quantile(
        prometheus, "sustained", 0.5
    )
    irregular = _prompt_quantile(prometheus, "irregular", 0.9) / _prompt_quantile(
        prometheus, "irregular", 0.5
    )
    assert sustained < 2.5
    assert irregular >= 4


def _expert_skew(prometheus: PrometheusEnv, profile: str) -> float | None:
    history = prometheus.prom.history
    assert history is not None
    rate = f"rate(moe_expert_tokens_total{{{_sel(profile)}}}[1h])"
    return prometheus.scalar(f"max({rate}) / avg({rate})", at=history.end)


def test_expert_load_skew(prometheus: PrometheusEnv) -> None:
    assert _expert_skew(prometheus, "hot-expert") == pytest.approx(3.0, rel=0.1)
    assert _expert_skew(prometheus, "sustained") == pytest.approx(1.2, rel=0.1)
    assert _expert_skew(prometheus, "no-expert-telemetry") is None


def test_gpu_telemetry_present(prometheus: PrometheusEnv) -> None:
    history = prometheus.prom.history
    assert history is not None
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_DRAM_ACTIVE"):
        result = prometheus.query(f"{metric}{{{_sel('sustained')}}}", at=history.end)
        assert result and {"gpu", "Hostname"} <= result[0]["metric"].keys()


def test_live_rate_change_is_visible(prometheus: PrometheusEnv) -> None:
    stream = prometheus.exporter.add(TrafficSpec("breakeven-test/live", "live"), rate=BASE)
    s = 'model_name="breakeven-test/live",namespace="live"'
    promql = (
        f"sum(rate(vllm:prompt_tokens_total{{{s}}}[5s]))"
        f" + sum(rate(vllm:generation_tokens_total{{{s}}}[5s]))"
    )

    def rate_near(target: float) -> bool:
        value = prometheus.scalar(promql)
        return value is not None and abs(value - target) <= 0.2 * target

    wait_for("the live rate to reach the base rate", lambda: rate_near(BASE), 30)
    stream.set_rate(BASE * 0.02)
    wait_for("the drop to show in Prometheus", lambda: rate_near(BASE * 0.02), 30)
