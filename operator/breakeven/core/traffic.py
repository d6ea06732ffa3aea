"""A plan's traffic from Prometheus, as pure code: the queries, their answers, the allowlist.

The rubric decides from a few traffic numbers (`facts.Traffic`): how many tokens per second the
model serves in its quiet hours and its bursts, how long its prompts are, how unevenly its experts
are loaded. Those numbers live in Prometheus as vLLM's counters and histograms. This module turns
`spec.traffic` into PromQL and reduces the answers to `facts.Traffic`; `breakeven.shell.prometheus`
sends the requests (httpx) and nothing else.

It is split the way the rest of the operator is:

    plans --query_for--> TrafficQuery --batches--> Batch --*_promql--> PromQL     pure
                                                     |
              shell.prometheus.read_traffic: POST /api/v1/query_range, /query  I/O (httpx)
                                                     |
                      answers --reduce--> {plan key: facts.Traffic}                 pure

Plans are batched: those that read the same Prometheus with the same selector label names, window
and expert metric form one `Batch`, and a batch sends ONE request per metric, whatever the number
of plans. Each request selects every plan of the batch with one matcher per label (`=~` over the
plans' values, regex-escaped, when they differ), aggregates `by` those labels, and the answer's
series are handed back to the plans by their label values. For two plans on the default selector:

    M = {model_name=~"org/a|org/b",namespace="team"}      K = model_name,namespace   W = 1209600s

    tokens/s (range query over W, step max(60s, W/4000), reduced here to p10/p50/p90/p95):
        (sum by (K) (rate(vllm:prompt_tokens_total M [5m]))
           + sum by (K) (rate(vllm:generation_tokens_total M [5m])))
        or sum by (K) (rate(vllm:prompt_tokens_total M [5m]))
        or sum by (K) (rate(vllm:generation_tokens_total M [5m]))
    prompt length p50/p90 (instant query at the end of the window; the same for output length
    with vllm:request_generation_tokens_bucket):
        label_replace(histogram_quantile(0.5, sum by (K, le)
                      (rate(vllm:request_prompt_tokens_bucket M [W]))), "breakeven_quantile", "0.5",
                      "", "")
        or label_replace(histogram_quantile(0.9, ...), "breakeven_quantile", "0.9", "", "")
    busiest EP rank over the mean rank, p95 over the window's EPLB steps (instant, at the real
    current time like the recent peak, so a trial's newest steps count; the series of
    Breakeven's own EPLB exporter, docs/telemetry.md; no series = no expert-balance data yet):
        histogram_quantile(0.95, sum by (model, namespace, le)
          (rate(breakeven_eplb_rank_load_max_over_mean_steps_bucket B [W])))
      where B = {model=~"org/a|org/b",namespace="team"}: the exporter labels its series with the
      served model name (spec.model.name) and the scrape adds the pod's namespace, whatever
      spec.traffic.selector says about vLLM's own series.
    hottest expert over the mean expert, only when spec.traffic.expertLoadMetric names a
    per-expert counter of the team's own pipeline (instant):
        max by (K) (sum by (K, expert) (rate(<expertLoadMetric> M [W])))
          / avg by (K) (sum by (K, expert) (rate(<expertLoadMetric> M [W])))

The `or` arms keep a plan that exports only one of the two token counters: `+` alone matches
one-to-one and would drop it. Per-label regexes also select label combinations no plan asked for
(org/a in another plan's namespace); those series match no plan and are ignored.

The range query ends at `now` rounded down to the step, and the instant queries are evaluated at
that same time. Percentiles are taken over the range query's points (linear interpolation, as
numpy does). `observed` runs from 5 minutes before the first point (its rate saw those minutes)
to the last point, at most the window: a full window of data reads as the window itself.

Nothing here raises for what Prometheus answers (`parse` turns any malformed answer, however
deeply nested, into ValueError, which the reader reports) or for what a plan says (`plan_query`
turns a selector PromQL cannot match, or a window too long to count, into error facts). Missing
numbers make the rubric rows that need them say `Unknown` (docs/reliability.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from breakeven.core import api, facts

PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_LENGTH = "vllm:request_prompt_tokens_bucket"
OUTPUT_LENGTH = "vllm:request_generation_tokens_bucket"
# Breakeven's EPLB exporter (shell/eplb_exporter.py): one observation per non-idle EPLB step.
RANK_BALANCE = "breakeven_eplb_rank_load_max_over_mean_steps_bucket"
RANK_BALANCE_QUANTILE = 0.95  # docs/rubric.md, expertBalance: why p95 of the steps
RATE_INTERVAL = "5m"  # tokens/s are 5-minute rates, as facts.Traffic says
RATE_INTERVAL_S = 300
MAX_POINTS = 4000  # per series in a range query; Prometheus refuses more than 11,000
MIN_STEP_S = 60
QUANTILE_LABEL = "breakeven_quantile"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels a selector may not use: `le` belongs to the histograms, `__*` to Prometheus.
RESERVED_LABELS = frozenset({"le", QUANTILE_LABEL})

# ------------------------------------------------------------------------------------ queries


class TrafficQuery(BaseModel):
    """What to read for one plan: where, which series, over how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(description="the plan as namespace/name; read_traffic's answer is keyed by it")
    url: str = Field(pattern=r"^https?://[^\s]+$", description="Prometheus base URL")
    selector: dict[str, str] = Field(min_length=1, description="label -> value, all must match")
    window_s: int = Field(gt=0, description="seconds of history")
    expert_metric: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    balance_selector: dict[str, str] = Field(
        default_factory=dict,
        description="labels of the EPLB exporter's series (model, namespace); empty: not read",
    )
    expert_label: str = Field(default="expert", pattern=LABEL_NAME.pattern)
    recent_s: int = Field(
        default=3600, gt=0, description="the demotion window: how far back the recent peak looks"
    )

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("selector", "balance_selector")
    @classmethod
    def _label_names(cls, selector: dict[str, str]) -> dict[str, str]:
        for name in selector:
            if not LABEL_NAME.match(name) or name.startswith("__") or name in RESERVED_LABELS:
                raise ValueError(
                    f"selector label {name!r} is not a label name Breakeven can match "
                    f"([a-zA-Z_][a-zA-Z0-9_]*, not __*, not {', '.join(sorted(RESERVED_LABELS))})"
                )
        return dict(sorted(selector.items()))

    @property
    def window(self) -> str:
        return api.format_duration(self.window_s)


def query_for(plan: api.ServingPlan, default_url: str | None) -> TrafficQuery | None:
    """The query for `plan`, or None when neither the plan nor the operator names a Prometheus.

    Purely computational. Raises ValueError (pydantic's ValidationError) for a selector label
    name PromQL cannot match, or a URL that is not http(s)://.
    """
    traffic = plan.spec.traffic
    url = traffic.prometheus_url or default_url
    if not url:
        return None
    selector = traffic.selector or {"model_name": plan.spec.model.name, "namespace": plan.namespace}
    return TrafficQuery(
        key=f"{plan.namespace}/{plan.name}",
        url=url,
        selector=selector,
        window_s=max(1, round(api.parse_duration(traffic.window))),
        expert_metric=traffic.expert_load_metric,
        expert_label=traffic.expert_label,
        balance_selector={"model": plan.spec.model.name, "namespace": plan.namespace},
        recent_s=max(1, round(api.parse_duration(plan.spec.policy.demotion_window))),
    )


def quote(value: str) -> str:
    """`value` as a PromQL double-quoted string literal (Go escapes)."""
    out = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def regex_escape(value: str) -> str:
    """`value` as an RE2 pattern that matches exactly it (Prometheus anchors `=~` itself)."""
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)


def selector_text(selector: Mapping[str, str]) -> str:
    """An equality selector as PromQL writes it: `{model_name="org/a",namespace="team"}`."""
    return "{" + ",".join(f"{k}={quote(v)}" for k, v in sorted(selector.items())) + "}"


@dataclass(frozen=True)
class Batch:
    """Plans read with the same requests: same Prometheus, label names, window, expert metric."""

    url: str
    labels: tuple[str, ...]
    window_s: int
    expert_metric: str | None
    expert_label: str
    queries: tuple[TrafficQuery, ...]
    recent_s: int = 3600
    balance_labels: tuple[str, ...] = ()

    @property
    def matchers(self) -> str:
        """`{k="v"}` for a label every plan shares, `{k=~"v1|v2"}` for one that differs."""
        return _matchers(self.labels, [q.selector for q in self.queries])

    @property
    def by(self) -> str:
        return ", ".join(self.labels)

    @property
    def balance_matchers(self) -> str:
        """The EPLB exporter's series of every plan: like `matchers`, over `balance_selector`."""
        return _matchers(self.balance_labels, [q.balance_selector for q in self.queries])

    @property
    def step_s(self) -> int:
        return step_for(self.window_s)

    def plans_of(self, labels: Mapping[str, str]) -> list[TrafficQuery]:
        """The plans a result series belongs to (an absent label reads as the empty value)."""
        wanted = tuple(labels.get(label, "") for label in self.labels)
        return [q for q in self.queries if tuple(q.selector[k] for k in self.labels) == wanted]

    def balance_plans_of(self, labels: Mapping[str, str]) -> list[TrafficQuery]:
        """The plans an EPLB exporter series belongs to."""
        wanted = tuple(labels.get(label, "") for label in self.balance_labels)
        return [
            q
            for q in self.queries
            if q.balance_selector
            and tuple(q.balance_selector[k] for k in self.balance_labels) == wanted
        ]


def _matchers(labels: Sequence[str], selectors: Sequence[Mapping[str, str]]) -> str:
    """`{k="v"}` for a label every selector shares, `{k=~"v1|v2"}` for one that differs."""
    parts = []
    for label in labels:
        values = sorted({s[label] for s in selectors})
        if len(values) == 1:
            parts.append(f"{label}={quote(values[0])}")
        else:
            parts.append(f"{label}=~{quote('|'.join(regex_escape(v) for v in values))}")
    return "{" + ",".join(parts) + "}"


def batches(queries: Iterable[TrafficQuery]) -> list[Batch]:
    """Group queries that can share requests. Purely computational."""
    Group = tuple[str, tuple[str, ...], int, str, str, int, tuple[str, ...]]
    groups: dict[Group, list[TrafficQuery]] = {}
    for q in queries:
        group = (
            q.url, tuple(sorted(q.selector)), q.window_s, q.expert_metric or "", q.expert_label,
            q.recent_s, tuple(sorted(q.balance_selector)),
        )  # fmt: skip
        groups.setdefault(group, []).append(q)
    return [
        Batch(url, labels, window_s, metric or None, label, tuple(members), recent_s, balance)
        for (url, labels, window_s, metric, label, recent_s, balance), members in sorted(
            groups.items()
        )
    ]


def step_for(window_s: float) -> int:
    """Range-query step: one point a minute, coarser when that would exceed MAX_POINTS."""
    return max(MIN_STEP_S, math.ceil(window_s / MAX_POINTS))


def tokens_promql(batch: Batch) -> str:
    """Prompt + generation tokens/s per plan, 5-minute rates (a range query)."""
    m, by = batch.matchers, batch.by
    prompt = f"sum by ({by}) (rate({PROMPT_TOKENS}{m}[{RATE_INTERVAL}]))"
    generation = f"sum by ({by}) (rate({GENERATION_TOKENS}{m}[{RATE_INTERVAL}]))"
    return f"({prompt} + {generation}) or {prompt} or {generation}"


def recent_promql(batch: Batch) -> str:
    """The highest 1-minute token rate per plan over the demotion window (an instant query at
    the real current time): under the sustainedLoad floor means traffic *stayed* under it."""
    m, by = batch.matchers, batch.by
    prompt = f"sum by ({by}) (rate({PROMPT_TOKENS}{m}[1m]))"
    generation = f"sum by ({by}) (rate({GENERATION_TOKENS}{m}[1m]))"
    rates = f"({prompt} + {generation}) or {prompt} or {generation}"
    return f"max_over_time(({rates})[{batch.recent_s}s:15s])"


def length_promql(batch: Batch, metric: str, quantiles: Sequence[float] = (0.5, 0.9)) -> str:
    """Quantiles of a request-length histogram over the window, one series per plan and quantile."""
    buckets = f"sum by ({batch.by}, le) (rate({metric}{batch.matchers}[{batch.window_s}s]))"
    return " or ".join(
        f'label_replace(histogram_quantile({q:g}, {buckets}), "{QUANTILE_LABEL}", "{q:g}", "", "")'
        for q in quantiles
    )


def balance_promql(batch: Batch) -> str | None:
    """p95 over the window's EPLB steps of the busiest EP rank's load over the mean rank's, per
    plan, from Breakeven's EPLB exporter; None when no plan of the batch reads it."""
    if not batch.balance_labels:
        return None
    by = ", ".join(batch.balance_labels)
    buckets = f"sum by ({by}, le) (rate({RANK_BALANCE}{batch.balance_matchers}[{batch.window_s}s]))"
    return f"histogram_quantile({RANK_BALANCE_QUANTILE:g}, {buckets})"


def expert_promql(batch: Batch) -> str | None:
    """The hottest expert's routed-token rate over the mean expert's, per plan; None when the
    batch names no per-expert metric (spec.traffic.expertLoadMetric)."""
    if batch.expert_metric is None:
        return None
    per_expert = (
        f"sum by ({batch.by}, {batch.expert_label}) "
        f"(rate({batch.expert_metric}{batch.matchers}[{batch.window_s}s]))"
    )
    return f"max by ({batch.by}) ({per_expert}) / avg by ({batch.by}) ({per_expert})"


# ------------------------------------------------------------------------------------ answers


@dataclass(frozen=True)
class Series:
    """One series of an answer: its labels and its (unix time, value) points, finite values only."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Failed:
    """A request that got no usable answer: `message` for people, `reason` for a metric label."""

    message: str
    reason: str


Answer = list[Series] | Failed


@dataclass(frozen=True)
class Answers:
    """What Prometheus said for one batch, one entry per metric."""

    tokens: Answer
    prompt: Answer
    output: Answer
    experts: Answer | None
    recent: Answer | None = None
    balance: Answer | None = None


def parse(body: Any) -> list[Series]:
    """The series of a Prometheus API answer (`matrix` or `vector`). Raises ValueError if it is
    not one. Non-finite values (NaN from an empty histogram, Inf from a zero mean) are dropped."""
    try:
        return _parse(body)
    except RecursionError:
        raise ValueError("malformed series (nested too deeply)") from None
    except (TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"malformed series ({type(exc).__name__}: {exc})") from exc


def _parse(body: Any) -> list[Series]:
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("not a successful Prometheus API answer")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind not in ("matrix", "vector") or not isinstance(result, list):
        raise ValueError(f"unexpected result type {kind!r}")
    series = []
    for item in result:
        raw = item.get("values", []) if kind == "matrix" else [item.get("value")]
        points = []
        for point in raw:
            t, v = float(point[0]), float(point[1])
            if math.isfinite(v):
                points.append((t, v))
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        series.append(Series(labels, tuple(points)))
    return series


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _per_plan(
    batch: Batch, answer: Answer | None, balance: bool = False
) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    if answer is None or isinstance(answer, Failed):
        return out
    for s in answer:
        for q in batch.balance_plans_of(s.labels) if balance else batch.plans_of(s.labels):
            out.setdefault(q.key, []).append(s)
    return out


def _quantiles(series: Sequence[Series]) -> facts.Percentiles:
    found: dict[str, float] = {}
    for s in series:
        if s.points and s.points[-1][1] >= 0:
            found[s.labels.get(QUANTILE_LABEL, "")] = s.points[-1][1]
    return facts.Percentiles(p50=found.get("0.5"), p90=found.get("0.9"))


def reduce(batch: Batch, answers: Answers) -> dict[str, facts.Traffic]:
    """Each plan's traffic facts from its batch's answers. Purely computational."""
    tokens = _per_plan(batch, answers.tokens)
    prompt = _per_plan(batch, answers.prompt)
    output = _per_plan(batch, answers.output)
    experts = _per_plan(batch, answers.experts)
    recent = _per_plan(batch, answers.recent)
    balance = _per_plan(batch, answers.balance, balance=True)
    failures = [
        a.message
        for a in (answers.tokens, answers.prompt, answers.output, answers.experts, answers.balance)
        if isinstance(a, Failed)
    ]
    base_errors = tuple(dict.fromkeys(failures))
    window = api.format_duration(batch.window_s)
    out = {}
    for q in batch.queries:
        errors = list(base_errors)
        points = sorted(p for s in tokens.get(q.key, []) for p in s.points if p[1] >= 0)
        rates = [v for _, v in points]
        tps = facts.Percentiles()
        observed = None
        if rates:
            tps = facts.Percentiles(
                p10=percentile(rates, 10),
                p50=percentile(rates, 50),
                p90=percentile(rates, 90),
                p95=percentile(rates, 95),
            )
            # The first 5-minute rate already saw the 5 minutes before its timestamp.
            covered = points[-1][0] - points[0][0] + RATE_INTERVAL_S
            observed = api.format_duration(min(batch.window_s, covered))
        elif not isinstance(answers.tokens, Failed):
            errors.append(
                f"no series match {selector_text(q.selector)} in the last {window} "
                f"({PROMPT_TOKENS}, {GENERATION_TOKENS})"
            )
        ratio = None
        for s in experts.get(q.key, []):
            if s.points:
                ratio = max(1.0, s.points[-1][1])
        rank_ratio = None
        for s in balance.get(q.key, []):
            if s.points:  # histogram_quantile interpolates inside the lowest bucket: clamp at 1
                rank_ratio = max(rank_ratio or 1.0, s.points[-1][1])
        peak = None
        for s in recent.get(q.key, []):
            if s.points:
                peak = max(peak or 0.0, s.points[-1][1])
        out[q.key] = facts.Traffic(
            window=window,
            observed=observed,
            tokens_per_second=tps,
            prompt_tokens=_quantiles(prompt.get(q.key, [])),
            output_tokens=_quantiles(output.get(q.key, [])),
            expert_load_max_over_mean=ratio,
            rank_load_max_over_mean=rank_ratio,
            recent_peak_tokens_per_second=peak,
            recent_window=api.format_duration(batch.recent_s),
            source=f"prometheus {q.url} {selector_text(q.selector)}",
            errors=tuple(errors),
        )
    return out


# ------------------------------------------------------------------------------------ allowlist


def allowed_urls(default_url: str | None, allowed: Iterable[str]) -> frozenset[str]:
    """The Prometheus base URLs the operator may send requests to: its own `--prometheus-url`
    and each `--allowed-prometheus-url`, without trailing slashes. A plan names its Prometheus,
    and the operator must not let a plan author point it anywhere (server-side request forgery)."""
    urls = {u.rstrip("/") for u in allowed}
    if default_url:
        urls.add(default_url.rstrip("/"))
    return frozenset(urls)


def plan_query(
    plan: api.ServingPlan, default_url: str | None, allowed: frozenset[str]
) -> TrafficQuery | facts.Traffic:
    """What to read for `plan`, or, when nothing may be read, the traffic facts that say why
    (their rows turn Unknown). Purely computational."""
    try:
        query = query_for(plan, default_url)
    except (ValueError, OverflowError) as exc:
        return facts.Traffic(source="invalid query", errors=(str(exc),))
    if query is None:
        return facts.Traffic(
            source="no Prometheus",
            errors=("no spec.traffic.prometheusUrl and no --prometheus-url",),
        )
    if query.url not in allowed:
        return facts.Traffic(
            source="not read",
            errors=(
                f"spec.traffic.prometheusUrl: {query.url} is not one the operator may "
                "read (its --prometheus-url or --allowed-prometheus-url)",
            ),
        )
    return query
