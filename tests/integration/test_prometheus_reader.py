"""The Prometheus reader against a real Prometheus holding 14 days of known traffic profiles.

The `prometheus` fixture (e2e/fixtures.py) backfills one model per profile of e2e/traffic.py in
namespace "traffic" with promtool, so real rate() and histogram_quantile() run over real blocks.
Each check compares what the reader reports with the shape the profile was generated with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from breakeven.core import api, facts
from breakeven.core import traffic as promql
from breakeven.shell import prometheus as prom
from e2e.fixtures import HISTORY_NAMESPACE, PrometheusEnv
from e2e.traffic import DEFAULT_BASE_RATE, PROFILES

pytestmark = pytest.mark.integration

WINDOW_S = 14 * 86_400
SETTINGS = prom.Settings(timeout_s=30.0, attempts=2, backoff_s=0.1)


def profile_query(env: PrometheusEnv, profile: str, **fields: Any) -> prom.TrafficQuery:
    assert profile in PROFILES
    return prom.TrafficQuery(
        key=f"{HISTORY_NAMESPACE}/{profile}",
        url=fields.pop("url", env.url),
        selector=fields.pop(
            "selector",
            {"model_name": f"breakeven-test/{profile}", "namespace": HISTORY_NAMESPACE},
        ),
        window_s=WINDOW_S,
        # The harness's history writes a per-expert counter: read it as a team's own pipeline.
        expert_metric=fields.pop("expert_metric", "moe_expert_tokens_total"),
        **fields,
    )


class Counting:
    """An httpx client that counts the requests it sends."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def _count(self, request: httpx.Request) -> None:
        self.paths.append(request.url.path)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"request": [self._count]})


@pytest.fixture
async def counting() -> AsyncIterator[tuple[Counting, httpx.AsyncClient]]:
    counter = Counting()
    async with counter.client() as client:
        yield counter, client


async def test_two_plans_in_one_batch_get_their_profiles(
    prometheus: PrometheusEnv, counting: tuple[Counting, httpx.AsyncClient]
) -> None:
    counter, client = counting
    queries = [profile_query(prometheus, "sustained"), profile_query(prometheus, "bursty")]
    got = await prom.read_traffic(client, queries, settings=SETTINGS)

    assert len(counter.paths) == 5  # one request per metric (five metrics) for both plans
    sustained, bursty = got["traffic/sustained"], got["traffic/bursty"]
    for traffic in (sustained, bursty):
        assert traffic.errors == ()
        assert traffic.observed_seconds >= WINDOW_S - 3600  # the history is 14 days long
    s = sustained.tokens_per_second
    assert s.p10 is not None and s.p50 is not None and s.p95 is not None
    assert s.p50 == pytest.approx(DEFAULT_BASE_RATE, rel=0.1)
    # The recent peak (highest 1-minute rate over the last hour, the demotion signal) is read at
    # the current time from the newest backfilled samples.
    assert sustained.recent_peak_tokens_per_second is not None
    assert sustained.recent_peak_tokens_per_second > 0.7 * DEFAULT_BASE_RATE
    assert s.p10 / s.p50 >= 0.7 and s.p95 / s.p50 <= 1.3  # what "sustained" promises
    b = bursty.tokens_per_second
    assert b.p50 is not None and b.p95 is not None
    # 0.1 x base most of the time, bursts to 1.5 x base for 25 minutes every 4 hours.
    assert b.p50 == pytest.approx(0.1 * DEFAULT_BASE_RATE, rel=0.2)
    assert b.p95 / b.p50 > 5


async def test_every_profile_reads_as_generated(prometheus: PrometheusEnv) -> None:
    queries = [profile_query(prometheus, name) for name in PROFILES]
    async with httpx.AsyncClient() as client:
        got = await prom.read_traffic(client, queries, settings=SETTINGS)

    def spread(t: facts.Traffic) -> float:
        assert t.prompt_tokens.p50 and t.prompt_tokens.p90
        return t.prompt_tokens.p90 / t.prompt_tokens.p50

    assert all(t.errors == () for t in got.values()), {k: t.errors for k, t in got.items()}
    assert got["traffic/no-expert-telemetry"].expert_load_max_over_mean is None
    assert got["traffic/no-expert-telemetry"].has_volume  # telemetry absent, traffic present
    hot = got["traffic/hot-expert"].expert_load_max_over_mean
    even = got["traffic/sustained"].expert_load_max_over_mean
    assert hot == pytest.approx(3.0, rel=0.05)
    assert even == pytest.approx(1.2, rel=0.05)
    low = got["traffic/low"].tokens_per_second.p50
    assert low == pytest.approx(0.05 * DEFAULT_BASE_RATE, rel=0.1)
    # Histogram buckets blur the lognormal a little; the profiles are far apart (1.5 vs 6).
    assert spread(got["traffic/sustained"]) < 2.5
    assert spread(got["traffic/irregular"]) > 4
    assert got["traffic/sustained"].prompt_tokens.p50 == pytest.approx(1000, rel=0.1)
    assert got["traffic/sustained"].output_tokens == facts.Percentiles()  # not exported here


async def test_a_plan_with_only_one_token_counter_still_counts(
    prometheus: PrometheusEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = profile_query(prometheus, "sustained")
    async with httpx.AsyncClient() as client:
        both = await prom.read_one(client, q, settings=SETTINGS)
        monkeypatch.setattr(promql, "GENERATION_TOKENS", "vllm:no_such_counter_total")
        prompt_only = await prom.read_one(client, q, settings=SETTINGS)
        monkeypatch.setattr(promql, "PROMPT_TOKENS", "vllm:no_such_counter_total")
        monkeypatch.setattr(promql, "GENERATION_TOKENS", "vllm:generation_tokens_total")
        generation_only = await prom.read_one(client, q, settings=SETTINGS)
    assert both.tokens_per_second.p50 and prompt_only.tokens_per_second.p50
    assert generation_only.tokens_per_second.p50
    # e2e/traffic.py sends 75% of the tokens as prompt tokens.
    assert prompt_only.tokens_per_second.p50 == pytest.approx(
        0.75 * both.tokens_per_second.p50, rel=0.02
    )
    assert generation_only.tokens_per_second.p50 == pytest.approx(
        0.25 * both.tokens_per_second.p50, rel=0.02
    )


@pytest.mark.parametrize(
    "value",
    [
        'breakeven-test/sustained"} or vector(1) or up{a="',
        "breakeven-test/sustaine.",  # a regex dot would match "sustained"
        "breakeven-test/.*",
        'back\\slash "quoted" \n newline',
    ],
)
async def test_selector_values_cannot_break_or_widen_the_query(
    prometheus: PrometheusEnv, value: str
) -> None:
    evil = profile_query(
        prometheus, "sustained", selector={"model_name": value, "namespace": HISTORY_NAMESPACE}
    )
    evil = evil.model_copy(update={"key": "traffic/evil"})
    honest = profile_query(prometheus, "bursty")
    async with httpx.AsyncClient() as client:
        alone = await prom.read_one(client, evil, settings=SETTINGS)
        batched = await prom.read_traffic(client, [evil, honest], settings=SETTINGS)  # =~ path
    for traffic in (alone, batched["traffic/evil"]):
        assert not traffic.has_volume
        assert len(traffic.errors) == 1 and traffic.errors[0].startswith("no series match")
    assert batched["traffic/bursty"].errors == () and batched["traffic/bursty"].has_volume


async def test_an_unreachable_prometheus_yields_errors_not_exceptions(
    prometheus: PrometheusEnv,
) -> None:
    from e2e.proc import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    reasons: list[tuple[str, str]] = []
    queries = [
        profile_query(prometheus, "sustained", url=dead),
        profile_query(prometheus, "bursty"),  # a working Prometheus in the same call
    ]
    async with httpx.AsyncClient() as client:
        got = await prom.read_traffic(
            client, queries, settings=SETTINGS, on_error=lambda u, r: reasons.append((u, r))
        )
    down = got["traffic/sustained"]
    assert not down.has_volume and down.expert_load_max_over_mean is None
    assert len(down.errors) == 1
    assert down.errors[0].startswith(f"prometheus {dead}: unreachable")
    assert reasons == [(dead, "unreachable")] * 5
    assert got["traffic/bursty"].errors == () and got["traffic/bursty"].has_volume


async def test_a_serving_plan_s_default_selector_finds_its_model(
    prometheus: PrometheusEnv,
) -> None:
    plan = api.ServingPlan.model_validate(
        {
            "metadata": {"name": "hot", "namespace": HISTORY_NAMESPACE},
            "spec": {
                "model": {"name": "breakeven-test/hot-expert"},
                "traffic": {"expertLoadMetric": "moe_expert_tokens_total"},
            },
        }
    )
    q = prom.query_for(plan, prometheus.url)
    assert q is not None
    async with httpx.AsyncClient() as client:
        traffic = await prom.read_one(client, q)
    assert traffic.errors == () and traffic.window == "336h"
    assert traffic.expert_load_max_over_mean == pytest.approx(3.0, rel=0.05)
