"""The Prometheus reader without a Prometheus: PromQL building, batching, reduction, retries.

The pure part is checked on its output (PromQL text, facts.Traffic); the I/O part against
httpx.MockTransport playing a Prometheus that is down, flaky or answering canned JSON.
tests/integration/test_prometheus_reader.py runs the same code against a real Prometheus.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import statistics
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from breakeven.core import api, facts, traffic
from breakeven.shell import prometheus as prom

URL = "http://prometheus.monitoring:9090"
NOW = 1_700_000_000.0
DAY = 86_400


def plan(
    name: str = "chat",
    namespace: str = "team",
    model: str = "deepseek-ai/DeepSeek-V3",
    **traffic: Any,
) -> api.ServingPlan:
    return api.ServingPlan.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": model}, "traffic": traffic},
        }
    )


def query(key: str, model: str, namespace: str = "team", **fields: Any) -> traffic.TrafficQuery:
    return traffic.TrafficQuery(
        key=key,
        url=fields.pop("url", URL),
        selector=fields.pop("selector", {"model_name": model, "namespace": namespace}),
        window_s=fields.pop("window_s", 14 * DAY),
        balance_selector=fields.pop("balance_selector", {"model": model, "namespace": namespace}),
        **fields,
    )


def unquote(literal: str) -> str:
    """A PromQL string literal's value. Python's escapes agree with Go's for what quote() emits."""
    assert literal[0] == literal[-1] == '"'
    value = ast.literal_eval(literal)
    assert isinstance(value, str)
    return value


# ------------------------------------------------------------------------------------ query_for


def test_query_for_defaults_to_the_model_and_namespace() -> None:
    q = traffic.query_for(plan(), URL + "/")
    assert q is not None
    assert q.key == "team/chat"
    assert q.url == URL  # trailing slash dropped, so equal URLs batch together
    assert q.selector == {"model_name": "deepseek-ai/DeepSeek-V3", "namespace": "team"}
    assert q.window_s == 14 * DAY and q.window == "336h"
    # No per-expert metric unless the plan names one; the EPLB exporter's series by served name.
    assert (q.expert_metric, q.expert_label) == (None, "expert")
    assert q.balance_selector == {"model": "deepseek-ai/DeepSeek-V3", "namespace": "team"}


def test_query_for_takes_the_plan_s_settings_over_the_operator_s() -> None:
    p = plan(
        prometheusUrl="https://thanos.example/prom",
        selector={"service": "chat-v3"},
        window="7d",
        expertLoadMetric="sglang:expert_tokens_total",
        expertLabel="expert_id",
    )
    q = traffic.query_for(p, URL)
    assert q is not None
    assert q.url == "https://thanos.example/prom"
    assert q.selector == {"service": "chat-v3"}
    assert q.window_s == 7 * DAY
    assert (q.expert_metric, q.expert_label) == ("sglang:expert_tokens_total", "expert_id")


def test_query_for_without_any_url_is_none() -> None:
    assert traffic.query_for(plan(), None) is None
    assert traffic.query_for(plan(), "") is None


@pytest.mark.parametrize("label", ["model-name", "0day", "__name__", "le", "a b", ""])
def test_a_label_name_promql_cannot_match_is_rejected(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        traffic.query_for(plan(selector={label: "x"}), URL)


# ------------------------------------------------------------------------------------ allowlist


def test_the_allowlist_is_the_operator_url_and_the_allowed_ones_without_slashes() -> None:
    allowed = traffic.allowed_urls(URL + "/", ["https://thanos.example/prom/", URL])
    assert allowed == {URL, "https://thanos.example/prom"}
    assert traffic.allowed_urls(None, []) == frozenset()


def test_a_plan_may_read_an_allowed_prometheus() -> None:
    p = plan(prometheusUrl="https://thanos.example/prom/")
    q = traffic.plan_query(p, URL, traffic.allowed_urls(URL, ["https://thanos.example/prom"]))
    assert isinstance(q, traffic.TrafficQuery) and q.url == "https://thanos.example/prom"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://prometheus.monitoring:9090.evil.example",  # a prefix of an allowed URL
        "http://prometheus.monitoring:9091",
        "https://prometheus.monitoring:9090",  # another scheme is another URL
    ],
)
def test_a_plan_cannot_point_the_operator_at_any_other_url(url: str) -> None:
    result = traffic.plan_query(plan(prometheusUrl=url), URL, traffic.allowed_urls(URL, []))
    assert isinstance(result, facts.Traffic)
    assert result.source == "not read"
    assert result.errors and result.errors[0].startswith("spec.traffic.prometheusUrl: ")


def test_without_any_prometheus_the_facts_say_so() -> None:
    result = traffic.plan_query(plan(), None, traffic.allowed_urls(None, []))
    assert isinstance(result, facts.Traffic) and result.source == "no Prometheus"
    assert "--prometheus-url" in result.errors[0]


def test_a_selector_promql_cannot_match_becomes_an_error_not_an_exception() -> None:
    # The API rejects such a selector; a plan built around it (an older CRD) still must not raise.
    p = plan()
    bad = p.spec.traffic.model_copy(update={"selector": {"le": "x"}})
    p = p.model_copy(update={"spec": p.spec.model_copy(update={"traffic": bad})})
    result = traffic.plan_query(p, URL, traffic.allowed_urls(URL, []))
    assert isinstance(result, facts.Traffic) and result.source == "invalid query"
    assert "label" in result.errors[0]


# ------------------------------------------------------------------------------------- escaping

NASTY = [
    'say "hi"',
    "back\\slash",
    "trailing\\",
    '"} or vector(1) or up{a="',
    "new\nline\ttab\x01",
    "a|b",
    "org/model.v1+(beta)*[x]{2}^$?",
    "ünïcødé/模型",
    "",
]


@pytest.mark.parametrize("value", NASTY)
def test_quote_round_trips_and_cannot_end_the_literal_early(value: str) -> None:
    literal = traffic.quote(value)
    assert unquote(literal) == value
    # Every quote inside the literal is escaped: the literal ends only at its last character.
    assert re.fullmatch(r'"([^"\\\n]|\\.)*"', literal), literal


@pytest.mark.parametrize("value", NASTY)
def test_regex_escape_matches_exactly_the_value(value: str) -> None:
    pattern = traffic.regex_escape(value)
    assert re.fullmatch(pattern, value, re.DOTALL)
    for other in ("a", "b", value + "x", "x" + value):
        if other != value:
            assert not re.fullmatch(pattern, other, re.DOTALL)


def test_an_injection_attempt_stays_inside_its_matcher() -> None:
    evil = '"} or vector(1) or up{a="'
    batch = traffic.batches([query("t/a", evil), query("t/b", "org/b")])[0]
    matchers = batch.matchers
    m = re.fullmatch(r'\{model_name=~("(?:[^"\\]|\\.)*"),namespace="team"\}', matchers)
    assert m, matchers
    alternatives = unquote(m.group(1))
    assert re.fullmatch(alternatives, evil) and re.fullmatch(alternatives, "org/b")
    assert not re.fullmatch(alternatives, "org/c")
    single = traffic.batches([query("t/a", evil)])[0].matchers
    assert single == '{model_name="\\"} or vector(1) or up{a=\\"",namespace="team"}'


def test_regex_values_do_not_match_each_other_s_prefixes() -> None:
    batch = traffic.batches([query("t/a", "org/m.1"), query("t/b", "org/m")])[0]
    m = re.search(r'model_name=~("(?:[^"\\]|\\.)*")', batch.matchers)
    assert m
    alternatives = unquote(m.group(1))
    assert {
        v for v in ("org/m.1", "org/m", "org/mx1", "org/m.1x") if re.fullmatch(alternatives, v)
    } == {
        "org/m.1",
        "org/m",
    }


# ------------------------------------------------------------------------------------- batching


def test_plans_that_share_url_labels_window_and_expert_metric_share_a_batch() -> None:
    queries = [
        query("a/x", "org/x", "a"),
        query("b/y", "org/y", "b"),
        query("c/z", "org/z", "c", window_s=7 * DAY),
        query("d/w", "org/w", "d", url="http://other:9090"),
        query("e/v", "org/v", selector={"service": "v"}),
        query("f/u", "org/u", "f", expert_metric="experts_total"),
    ]
    groups = traffic.batches(queries)
    assert sorted(sorted(q.key for q in b.queries) for b in groups) == [
        ["a/x", "b/y"],
        ["c/z"],
        ["d/w"],
        ["e/v"],
        ["f/u"],
    ]
    first = next(b for b in groups if len(b.queries) == 2)
    assert first.labels == ("model_name", "namespace")
    assert first.matchers == '{model_name=~"org/x|org/y",namespace=~"a|b"}'


def test_series_go_back_to_their_plan_by_label_values() -> None:
    batch = traffic.batches([query("a/x", "org/x", "a"), query("b/y", "org/y", "b")])[0]
    assert [q.key for q in batch.plans_of({"model_name": "org/x", "namespace": "a"})] == ["a/x"]
    # The regex matchers also select org/x in namespace b: that series belongs to nobody.
    assert batch.plans_of({"model_name": "org/x", "namespace": "b"}) == []


def test_two_plans_with_the_same_selector_both_get_its_series() -> None:
    batch = traffic.batches([query("a/one", "org/x"), query("a/two", "org/x")])[0]
    assert [q.key for q in batch.plans_of({"model_name": "org/x", "namespace": "team"})] == [
        "a/one",
        "a/two",
    ]


@pytest.mark.parametrize(
    ("window_s", "step_s"), [(3600, 60), (DAY, 60), (14 * DAY, 303), (30 * DAY, 648)]
)
def test_step_keeps_a_range_query_under_the_point_budget(window_s: int, step_s: int) -> None:
    assert traffic.step_for(window_s) == step_s
    assert window_s / step_s + 1 <= traffic.MAX_POINTS + 1


def test_the_promql_of_a_batch() -> None:
    batch = traffic.batches([query("team/a", "org/a"), query("team/b", "org/b")])[0]
    m = '{model_name=~"org/a|org/b",namespace="team"}'
    prompt = f"sum by (model_name, namespace) (rate(vllm:prompt_tokens_total{m}[5m]))"
    gen = f"sum by (model_name, namespace) (rate(vllm:generation_tokens_total{m}[5m]))"
    # A plan exporting only one of the two counters still counts: `+` alone would drop it.
    assert traffic.tokens_promql(batch) == f"({prompt} + {gen}) or {prompt} or {gen}"
    buckets = (
        f"sum by (model_name, namespace, le) (rate(vllm:request_prompt_tokens_bucket{m}[1209600s]))"
    )
    assert traffic.length_promql(batch, traffic.PROMPT_LENGTH) == (
        f'label_replace(histogram_quantile(0.5, {buckets}), "breakeven_quantile", "0.5", "", "")'
        f' or label_replace(histogram_quantile(0.9, {buckets}), "breakeven_quantile", "0.9", '
        '"", "")'
    )
    assert traffic.expert_promql(batch) is None  # no spec.traffic.expertLoadMetric
    b = '{model=~"org/a|org/b",namespace="team"}'
    assert traffic.balance_promql(batch) == (
        "histogram_quantile(0.95, sum by (model, namespace, le) "
        f"(rate(breakeven_eplb_rank_load_max_over_mean_steps_bucket{b}[1209600s])))"
    )
    batch = traffic.batches(
        [
            query("team/a", "org/a", expert_metric="moe_expert_tokens_total"),
            query("team/b", "org/b", expert_metric="moe_expert_tokens_total"),
        ]
    )[0]
    per_expert = (
        f"sum by (model_name, namespace, expert) (rate(moe_expert_tokens_total{m}[1209600s]))"
    )
    assert traffic.expert_promql(batch) == (
        f"max by (model_name, namespace) ({per_expert}) "
        f"/ avg by (model_name, namespace) ({per_expert})"
    )


# ------------------------------------------------------------------------------------ reduction


def matrix(*series: tuple[dict[str, str], list[tuple[float, float | str]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": labels, "values": [[t, str(v)] for t, v in points]}
                for labels, points in series
            ],
        },
    }


def vector(*series: tuple[dict[str, str], float | str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [NOW, str(v)]} for labels, v in series],
        },
    }


A = {"model_name": "org/a", "namespace": "team"}
B = {"model_name": "org/b", "namespace": "team"}


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    inclusive = statistics.quantiles(values, n=20, method="inclusive")
    assert traffic.percentile(values, 10) == pytest.approx(inclusive[1])
    assert traffic.percentile(values, 50) == pytest.approx(50.5)
    assert traffic.percentile(values, 95) == pytest.approx(inclusive[18])
    assert traffic.percentile([7.0], 95) == 7.0


def test_answers_reduce_to_each_plan_s_traffic() -> None:
    batch = traffic.batches([query("team/a", "org/a"), query("team/b", "org/b")])[0]
    start = NOW - 14 * DAY
    # Plan a: 100 points, rates 1..100; one NaN (dropped). Plan b: bursty, with a gap.
    a_points: list[tuple[float, float | str]] = [(start + i * 303, i + 1) for i in range(100)]
    a_points.insert(50, (start + 50.5 * 303, "NaN"))
    b_points: list[tuple[float, float | str]] = [(start + i * 303, 10) for i in range(90)]
    b_points += [(start + (1000 + i) * 303, 1000) for i in range(10)]
    answers = traffic.Answers(
        tokens=traffic.parse(matrix((A, a_points), (B, b_points))),
        prompt=traffic.parse(
            vector(
                ({**A, "breakeven_quantile": "0.5"}, 900),
                ({**A, "breakeven_quantile": "0.9"}, 1800),
                ({**B, "breakeven_quantile": "0.5"}, "NaN"),
            )
        ),
        output=traffic.parse(vector()),
        experts=traffic.parse(vector((A, 2.5), (B, 0.9999999))),
        balance=traffic.parse(
            vector(
                ({"model": "org/a", "namespace": "team"}, 1.75),
                ({"model": "org/b", "namespace": "team"}, 0.98),
                ({"model": "org/a", "namespace": "elsewhere"}, 9.0),  # nobody's
            )
        ),
    )
    got = traffic.reduce(batch, answers)
    a, b = got["team/a"], got["team/b"]
    assert a.tokens_per_second == facts.Percentiles(p10=10.9, p50=50.5, p90=90.1, p95=95.05)
    # From the first point's 5-minute rate (which starts 5 minutes earlier) to the last one.
    assert a.observed == api.format_duration(99 * 303 + 300) == "8h24m57s"
    assert a.window == "336h"
    assert a.prompt_tokens == facts.Percentiles(p50=900, p90=1800)
    assert a.output_tokens == facts.Percentiles()
    assert a.expert_load_max_over_mean == 2.5
    assert a.rank_load_max_over_mean == 1.75
    assert a.load_max_over_mean == 1.75  # the rank figure is what the capacity model derates by
    assert a.errors == ()
    assert a.source == f'prometheus {URL} {{model_name="org/a",namespace="team"}}'
    assert b.tokens_per_second.p50 == 10 and b.tokens_per_second.p95 == pytest.approx(1000)
    assert b.observed == api.format_duration(1009 * 303 + 300)
    assert b.prompt_tokens == facts.Percentiles()  # NaN: an empty histogram is not a number
    assert b.expert_load_max_over_mean == 1.0  # rounding below 1 is clamped
    assert b.rank_load_max_over_mean == 1.0  # interpolated inside the lowest bucket: clamped


def test_a_plan_without_series_says_so_and_others_are_unaffected() -> None:
    batch = traffic.batches([query("team/a", "org/a"), query("team/b", "org/b")])[0]
    answers = traffic.Answers(
        tokens=traffic.parse(matrix((A, [(NOW, 5.0)]))),
        prompt=[],
        output=[],
        experts=[],
    )
    got = traffic.reduce(batch, answers)
    assert got["team/a"].has_volume and got["team/a"].errors == ()
    assert got["team/a"].expert_load_max_over_mean is None  # no telemetry, not an error
    assert got["team/a"].rank_load_max_over_mean is None
    b = got["team/b"]
    assert not b.has_volume and b.observed is None
    assert b.errors == (
        'no series match {model_name="org/b",namespace="team"} in the last 336h '
        "(vllm:prompt_tokens_total, vllm:generation_tokens_total)",
    )


def test_a_failed_metric_keeps_the_others_and_names_the_failure() -> None:
    batch = traffic.batches([query("team/a", "org/a")])[0]
    failed = traffic.Failed(f"prometheus {URL}: execution: query timed out", "execution")
    answers = traffic.Answers(
        tokens=failed,
        prompt=traffic.parse(vector(({**A, "breakeven_quantile": "0.5"}, 1000))),
        output=failed,
        experts=failed,
        balance=failed,
    )
    a = traffic.reduce(batch, answers)["team/a"]
    assert not a.has_volume
    assert a.prompt_tokens.p50 == 1000
    assert a.errors == (failed.message,)  # once, and no "no series" guess on top


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "1"]}},
        {"status": "success", "data": {"resultType": "matrix", "result": [{"values": [["x"]]}]}},
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
        {"status": "success", "data": {"resultType": "vector", "result": [1, 2]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": None}]}},
        ["not", "an", "object"],
    ],
)
def test_parse_rejects_what_is_not_a_vector_or_matrix(body: Any) -> None:
    with pytest.raises(ValueError):
        traffic.parse(body)


# ------------------------------------------------------------------------------- I/O (mocked)

FAST = prom.Settings(timeout_s=1.0, attempts=3, backoff_s=0.0)


class FakePrometheus:
    """A MockTransport handler answering by PromQL; `fail` can make requests fail first."""

    def __init__(self, fail: Callable[[int], httpx.Response | None] | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self.fail = fail

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        form["path"] = request.url.path
        self.requests.append(form)
        if self.fail is not None:
            failure = self.fail(len(self.requests))
            if failure is not None:
                return failure
        promql = form["query"]
        if request.url.path.endswith("/query_range"):
            start, end, step = float(form["start"]), float(form["end"]), float(form["step"][:-1])
            n = int((end - start) / step) + 1
            points: list[tuple[float, float | str]] = [
                (start + i * step, 100.0 + i % 10) for i in range(n)
            ]
            return httpx.Response(200, json=matrix((A, points)))
        if "histogram_quantile" in promql and "prompt" in promql:
            return httpx.Response(
                200,
                json=vector(
                    ({**A, "breakeven_quantile": "0.5"}, 1000),
                    ({**A, "breakeven_quantile": "0.9"}, 1500),
                ),
            )
        if "moe_expert_tokens_total" in promql:
            return httpx.Response(200, json=vector((A, 1.5)))
        if "breakeven_eplb_rank_load_max_over_mean_steps_bucket" in promql:
            return httpx.Response(200, json=vector(({"model": "org/a", "namespace": "team"}, 1.4)))
        return httpx.Response(200, json=vector())


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_one_request_per_metric_per_batch_whatever_the_number_of_plans() -> None:
    fake = FakePrometheus()
    queries = [query(f"team/p{i}", f"org/p{i}") for i in range(5)]
    queries.append(query("team/a", "org/a"))
    queries.append(query("other/x", "org/x", url="http://other:9090"))
    async with client_for(fake) as client:
        got = await prom.read_traffic(client, queries, now=NOW, settings=FAST)
    assert set(got) == {q.key for q in queries}
    assert len(fake.requests) == 2 * 5  # two batches, five metrics each (no per-expert metric)
    paths = sorted(r["path"] for r in fake.requests)
    assert paths == ["/api/v1/query"] * 8 + ["/api/v1/query_range"] * 2
    a = got["team/a"]
    assert a.tokens_per_second.p50 == 104  # the median of 4001 points cycling 100..109
    assert a.prompt_tokens == facts.Percentiles(p50=1000, p90=1500)
    assert a.expert_load_max_over_mean is None  # not asked: no expertLoadMetric
    assert a.rank_load_max_over_mean == 1.4
    assert a.errors == ()
    assert got["team/p0"].errors and not got["team/p0"].has_volume


async def test_the_range_query_covers_the_window_in_aligned_steps() -> None:
    fake = FakePrometheus()
    async with client_for(fake) as client:
        a = await prom.read_one(client, query("team/a", "org/a"), now=NOW + 17, settings=FAST)
    ranged = next(r for r in fake.requests if r["path"].endswith("/query_range"))
    step = traffic.step_for(14 * DAY)
    end, start = float(ranged["end"]), float(ranged["start"])
    assert ranged["step"] == f"{step}s"
    assert end % step == 0 and NOW + 17 - step < end <= NOW + 17
    assert end - start == 14 * DAY
    assert (end - start) / step <= traffic.MAX_POINTS
    instants = [r for r in fake.requests if r["path"].endswith("/query")]
    recent = [r for r in instants if r["query"].startswith("max_over_time(")]
    balance = [r for r in instants if "breakeven_eplb" in r["query"]]
    assert {float(r["time"]) for r in instants if r not in recent + balance} == {end}
    assert [float(r["time"]) for r in recent] == [NOW + 17]  # the recent peak is read at now
    assert [float(r["time"]) for r in balance] == [NOW + 17]  # so are a trial's newest steps
    assert a.observed == "336h"  # points cover the whole window, though 336h is no multiple of step


async def test_an_unreachable_prometheus_yields_errors_not_exceptions() -> None:
    calls: list[tuple[str, str]] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    queries = [query("team/a", "org/a"), query("team/b", "org/b")]
    async with client_for(refuse) as client:
        got = await prom.read_traffic(
            client, queries, now=NOW, settings=FAST, on_error=lambda u, r: calls.append((u, r))
        )
    for facts_ in got.values():
        assert not facts_.has_volume
        assert facts_.prompt_tokens == facts.Percentiles()
        assert facts_.expert_load_max_over_mean is None
        assert facts_.errors == (
            f"prometheus {URL}: unreachable (ConnectError: [Errno 111] Connection refused) "
            "(after 3 attempts)",
        )
    assert calls == [(URL, "unreachable")] * 5  # one per failed request, for the error counter


async def test_a_real_unreachable_port_yields_errors_not_exceptions() -> None:
    q = query("team/a", "org/a", url="http://127.0.0.1:9")  # discard port: nothing listens
    async with httpx.AsyncClient() as client:
        a = await prom.read_one(client, q, now=NOW, settings=FAST)
    assert not a.has_volume
    assert len(a.errors) == 1 and a.errors[0].startswith("prometheus http://127.0.0.1:9: ")


async def test_a_5xx_is_retried_and_then_succeeds() -> None:
    fake = FakePrometheus(fail=lambda n: httpx.Response(503, text="busy") if n <= 5 else None)
    async with client_for(fake) as client:
        a = await prom.read_one(client, query("team/a", "org/a"), now=NOW, settings=FAST)
    assert a.errors == () and a.has_volume and a.rank_load_max_over_mean == 1.4
    assert len(fake.requests) == 10  # five first tries failed, five retries


async def test_timeouts_are_retried_then_reported() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client_for(slow) as client:
        a = await prom.read_one(client, query("team/a", "org/a"), now=NOW, settings=FAST)
    assert a.errors == (f"prometheus {URL}: timed out after 1s (ReadTimeout) (after 3 attempts)",)


async def test_a_bad_query_is_not_retried_and_says_what_prometheus_said() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected"}
    fake = FakePrometheus(fail=lambda n: httpx.Response(400, json=body))
    reasons: list[str] = []
    async with client_for(fake) as client:
        got = await prom.read_traffic(
            client,
            [query("team/a", "org/a")],
            now=NOW,
            settings=FAST,
            on_error=lambda u, r: reasons.append(r),
        )
    assert len(fake.requests) == 5
    assert got["team/a"].errors == (f"prometheus {URL}: bad_data: 1:5: parse error: unexpected",)
    assert reasons == ["bad_data"] * 5


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, text="<html>login</html>"), "HTTP 200 from /api/v1/query"),
        (httpx.Response(404, text="404 page not found"), "HTTP 404 from /api/v1/query"),
        (httpx.Response(200, json={"status": "success", "data": {}}), "invalid response"),
    ],
)
async def test_what_is_not_a_prometheus_answer_becomes_an_error(
    response: httpx.Response, expected: str
) -> None:
    fake = FakePrometheus(fail=lambda n: response)
    async with client_for(fake) as client:
        a = await prom.read_one(client, query("team/a", "org/a"), now=NOW, settings=FAST)
    assert not a.has_volume
    assert any(expected in e for e in a.errors), a.errors
    assert len(fake.requests) == 5  # nothing retried


async def test_the_url_path_prefix_is_kept() -> None:
    fake = FakePrometheus()
    q = query("team/a", "org/a", url="http://gateway/prometheus/")
    async with client_for(fake) as client:
        await prom.read_one(client, q, now=NOW, settings=FAST)
    assert {r["path"] for r in fake.requests} == {
        "/prometheus/api/v1/query",
        "/prometheus/api/v1/query_range",
    }


def test_the_request_body_carries_the_query_verbatim() -> None:
    # POSTed as a form, so a long batch regex and any user value survive URL-encoding intact.
    evil = 'x"} or vector(1)'
    batch = traffic.batches([query("team/a", evil)])[0]
    encoded = httpx.Request("POST", URL, data={"query": traffic.tokens_promql(batch)}).content
    assert parse_qs(encoded.decode())["query"] == [traffic.tokens_promql(batch)]
    assert json.dumps(evil) in traffic.tokens_promql(batch)  # the same escapes JSON would use


async def test_a_url_httpx_cannot_use_is_an_error_too() -> None:
    q = query("team/a", "org/a", url="http://[::1")
    async with httpx.AsyncClient() as client:
        a = await prom.read_one(client, q, now=NOW, settings=FAST)
    assert not a.has_volume
    assert a.errors and all(e.startswith("prometheus http://[::1: ") for e in a.errors)


# ---------------------------------------------------------------- faults (issue 10 items 1, 9)


async def test_a_silent_prometheus_costs_one_bounded_read_not_a_stall() -> None:
    calls: list[str] = []
    never = asyncio.Event()

    async def silent(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        await never.wait()  # accepts the request and never answers
        raise AssertionError("unreachable")

    settings = prom.Settings(timeout_s=0.05, attempts=3, backoff_s=0.0, deadline_s=0.2)
    queries = [query("team/a", "org/a"), query("team/b", "org/b")]
    async with httpx.AsyncClient(transport=httpx.MockTransport(silent)) as client:
        # The guard only turns a hang into a failure; the reader's own deadline ends the read.
        got = await asyncio.wait_for(
            prom.read_traffic(client, queries, now=NOW, settings=settings), timeout=60
        )
    assert set(got) == {"team/a", "team/b"}
    for facts_ in got.values():
        assert facts_.errors and all("timed out" in e or "within" in e for e in facts_.errors)
    assert len(calls) <= 5 * settings.attempts  # five requests per batch, never more tries


async def test_deeply_nested_json_is_an_invalid_response_not_a_recursion_error() -> None:
    deep = '{"status":"success","data":{"resultType":"vector","result":' + "[" * 100_000
    deep += "]" * 100_000 + "}}"

    def nested(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=deep, headers={"content-type": "application/json"})

    reasons: list[str] = []
    async with client_for(nested) as client:
        got = await prom.read_traffic(
            client,
            [query("team/a", "org/a")],
            now=NOW,
            settings=FAST,
            on_error=lambda url, reason: reasons.append(reason),
        )
    assert got["team/a"].errors
    assert reasons == ["invalid response"] * 5  # each request, once: not worth retrying


def test_a_deeply_nested_answer_parses_to_a_value_error() -> None:
    body: Any = {"status": "success", "data": {"resultType": "vector", "result": []}}
    item: Any = {}
    for _ in range(50_000):
        item = {"x": item}
    body["data"]["result"] = [{"metric": item, "value": [1, "1"]}]
    with pytest.raises(ValueError, match="malformed"):
        traffic.parse(body)


def test_a_window_too_long_to_count_is_an_error_for_that_plan_only() -> None:
    p = plan()
    huge = p.spec.traffic.model_copy(update={"window": "9" * 400 + "s"})
    p = p.model_copy(update={"spec": p.spec.model_copy(update={"traffic": huge})})
    result = traffic.plan_query(p, URL, traffic.allowed_urls(URL, []))
    assert isinstance(result, facts.Traffic) and result.source == "invalid query"
    quiet = p.spec.policy.model_copy(update={"demotion_window": "9" * 400 + "h"})
    p = plan()
    p = p.model_copy(update={"spec": p.spec.model_copy(update={"policy": quiet})})
    result = traffic.plan_query(p, URL, traffic.allowed_urls(URL, []))
    assert isinstance(result, facts.Traffic) and result.source == "invalid query"
