"""Fuzz: Prometheus-like answers through the reader's pure half (`prometheus.parse`, then
`prometheus.reduce` into traffic facts). `parse` raises only ValueError (its documented error,
which the reader turns into a failed read); `reduce` never raises and its facts are finite."""

from __future__ import annotations

import math
from typing import Any

import pytest
from builders import plan
from fuzzing import SETTINGS, count, prometheus_answers
from hypothesis import given

from breakeven.shell import prometheus as prom

PLAN = plan(name="p")
QUERY = prom.query_for(PLAN, "http://prometheus:9090")
assert QUERY is not None
BATCH = prom.batches([QUERY])[0]
ANSWERS = prometheus_answers(dict(QUERY.selector))


def _parsed(body: Any) -> prom.Answer:
    try:
        series = prom.parse(body)
    except ValueError as exc:
        count("prometheus answers", "rejected")
        return prom.Failed(str(exc), "malformed")
    except BaseException:
        count("prometheus answers", "crashed")
        raise
    count("prometheus answers", "accepted")
    return series


@SETTINGS
@given(tokens=ANSWERS, prompt=ANSWERS, output=ANSWERS, experts=ANSWERS, recent=ANSWERS)
def test_answers_reduce_to_finite_facts_or_a_failed_read(
    tokens: Any, prompt: Any, output: Any, experts: Any, recent: Any
) -> None:
    answers = prom.Answers(
        tokens=_parsed(tokens),
        prompt=_parsed(prompt),
        output=_parsed(output),
        experts=_parsed(experts),
        recent=_parsed(recent),
    )
    traffic = prom.reduce(BATCH, answers)[QUERY.key]
    figures = [
        *traffic.tokens_per_second.model_dump().values(),
        *traffic.prompt_tokens.model_dump().values(),
        *traffic.output_tokens.model_dump().values(),
        traffic.expert_load_max_over_mean,
        traffic.recent_peak_tokens_per_second,
    ]
    assert all(v is None or (math.isfinite(v) and v >= 0) for v in figures)
    assert 0 <= traffic.observed_seconds <= BATCH.window_s


def test_a_timestamp_too_large_for_a_float_is_a_value_error() -> None:
    body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [10**400, "1"]}]},
    }
    with pytest.raises(ValueError):
        prom.parse(body)
