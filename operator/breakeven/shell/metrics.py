"""The operator's own Prometheus metrics (prometheus-client), served on --metrics-port.

breakeven_plan_mode{plan,mode}                       1 for the mode serving traffic
breakeven_criterion_verdict{plan,criterion,verdict}  1 for each row's current verdict
breakeven_decisions_total{plan,mode}                 rubric decision changes
breakeven_switches_total{plan,to,reason}             completed switches
breakeven_fallbacks_total{plan,reason}               switches that were fallbacks
breakeven_reconcile_duration_seconds                 one plan's reconcile
breakeven_reconciles_total{result}                   reconciles by the work queue (ok, error)
breakeven_queue_depth                                plans waiting in the work queue
breakeven_api_requests_total{verb,kind}              requests the operator's writer sent
breakeven_api_requests_saved_total{verb,kind}        reads answered from the watch caches,
                                                     applies skipped as unchanged
breakeven_evaluation_duration_seconds                planning.evaluate alone
breakeven_traffic_read_duration_seconds              one batched Prometheus read
breakeven_prometheus_query_errors_total{url}         failed Prometheus requests
breakeven_trial_phase{plan,phase}                    1 for the latest trial's phase
breakeven_trials_total{plan,outcome}                 trials Started, Passed, Failed, Aborted
breakeven_trial_rank_load_max_over_mean{plan}        the rank figure expertBalance reads
                                                     (p95 over EPLB steps), while a trial runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily

from breakeven.core import api

if TYPE_CHECKING:
    from breakeven.core import planning, switching

REGISTRY = prom.CollectorRegistry()


class PlanGauge:
    """A labelled gauge family kept as one dict, label values -> value, for the per-plan series.

    prometheus-client keeps an object with its own lock per series (about 0.7 KB): with a
    verdict series per criterion and verdict that was 28 KB per plan, 28 MB at 1,000 plans.
    The same series, exposed the same way, cost a dict entry each here. `labels(...).set(v)`,
    `remove(*values)` and `_metrics` behave as prometheus-client's (forget_plan reads `_metrics`).
    Written from the event loop, read by the metrics server's thread: `collect` copies the items
    first (one C-level call, which the GIL does not split).
    """

    def __init__(
        self, name: str, documentation: str, labelnames: list[str], registry: prom.CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._metrics: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def labels(self, *values: str, **by_name: str) -> _PlanGaugeChild:
        if by_name:
            values = tuple(by_name[label] for label in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, got {values}")
        return _PlanGaugeChild(self, tuple(str(v) for v in values))

    def remove(self, *values: str) -> None:
        self._metrics.pop(tuple(values), None)

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, value in list(self._metrics.items()):
            family.add_metric(list(values), value)
        return [family]


class _PlanGaugeChild:
    __slots__ = ("family", "key")

    def __init__(self, family: PlanGauge, key: tuple[str, ...]) -> None:
        self.family = family
        self.key = key

    def set(self, value: float) -> None:
        self.family._metrics[self.key] = float(value)


PLAN_MODE = PlanGauge(
    "breakeven_plan_mode",
    "1 for the mode serving each plan's traffic",
    ["plan", "mode"],
    registry=REGISTRY,
)
VERDICT = PlanGauge(
    "breakeven_criterion_verdict",
    "1 for each criterion's current verdict",
    ["plan", "criterion", "verdict"],
    registry=REGISTRY,
)
DECISIONS = prom.Counter(
    "breakeven_decisions", "Changes of the rubric's decision", ["plan", "mode"], registry=REGISTRY
)
SWITCHES = prom.Counter(
    "breakeven_switches", "Completed mode switches", ["plan", "to", "reason"], registry=REGISTRY
)
FALLBACKS = prom.Counter(
    "breakeven_fallbacks", "Switches that fell back to dense", ["plan", "reason"], registry=REGISTRY
)
RECONCILE = prom.Histogram(
    "breakeven_reconcile_duration_seconds", "One plan's reconcile", registry=REGISTRY
)
RECONCILES = prom.Counter(
    "breakeven_reconciles", "Reconciles by the work queue", ["result"], registry=REGISTRY
)
QUEUE_DEPTH = prom.Gauge(
    "breakeven_queue_depth", "Plans waiting in the work queue", registry=REGISTRY
)
API_REQUESTS = prom.Counter(
    "breakeven_api_requests",
    "Requests the operator's writer sent to the API server",
    ["verb", "kind"],
    registry=REGISTRY,
)
API_SAVED = prom.Counter(
    "breakeven_api_requests_saved",
    "Reads answered from the watch caches and applies skipped as unchanged",
    ["verb", "kind"],
    registry=REGISTRY,
)
EVALUATION = prom.Histogram(
    "breakeven_evaluation_duration_seconds",
    "Facts to decision (planning.evaluate)",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1),
)
TRAFFIC_READ = prom.Histogram(
    "breakeven_traffic_read_duration_seconds", "One batched Prometheus read", registry=REGISTRY
)
PROMETHEUS_ERRORS = prom.Counter(
    "breakeven_prometheus_query_errors", "Failed Prometheus requests", ["url"], registry=REGISTRY
)


TRIAL_PHASE = PlanGauge(
    "breakeven_trial_phase",
    "1 for the phase of each plan's latest expert-balance trial",
    ["plan", "phase"],
    registry=REGISTRY,
)
TRIALS = prom.Counter(
    "breakeven_trials",
    "Expert-balance trials by outcome (Started, Passed, Failed, Aborted)",
    ["plan", "outcome"],
    registry=REGISTRY,
)
TRIAL_BALANCE = prom.Gauge(
    "breakeven_trial_rank_load_max_over_mean",
    "While a trial runs: p95 over its EPLB steps of the busiest EP rank over the mean",
    ["plan"],
    registry=REGISTRY,
)
# Events whose reason counts a trial outcome in TRIALS.
TRIAL_EVENTS = {
    "TrialStarted": "Started",
    "TrialPassed": "Passed",
    "TrialFailed": "Failed",
    "TrialAborted": "Aborted",
}


def serve(port: int, address: str = "0.0.0.0") -> None:
    prom.start_http_server(port, addr=address, registry=REGISTRY)


_RECORDED: dict[str, tuple[Any, ...]] = {}
"""Per plan, what `record` set last: a reconcile that changes none of it sets nothing (a plan
has some 45 series; setting each costs a label lookup, every reconcile of every plan)."""


def record(plan: str, evaluation: planning.Evaluation, step: switching.Step) -> None:
    ratio = evaluation.traffic.rank_load_max_over_mean
    seen = (
        step.mode,
        tuple((row.name, row.verdict) for row in step.rows),
        step.trial.phase if step.trial is not None else None,
        ratio,
    )
    if _RECORDED.get(plan) == seen:
        return
    _RECORDED[plan] = seen
    for mode in api.ServingMode:
        PLAN_MODE.labels(plan=plan, mode=mode.value).set(1 if step.mode == mode else 0)
    for row in step.rows:
        for verdict in api.Verdict:
            VERDICT.labels(plan=plan, criterion=row.name.value, verdict=verdict.value).set(
                1 if row.verdict == verdict else 0
            )
    if step.trial is not None:
        for phase in api.TrialPhase:
            TRIAL_PHASE.labels(plan=plan, phase=phase.value).set(
                1 if step.trial.phase == phase else 0
            )
    if step.trial is not None and step.trial.phase == api.TrialPhase.RUNNING and ratio is not None:
        TRIAL_BALANCE.labels(plan=plan).set(ratio)
    elif (plan,) in TRIAL_BALANCE._metrics:  # prometheus-client has no public lookup
        TRIAL_BALANCE.remove(plan)


def forget_plan(plan: str) -> None:
    """Drop a deleted plan's series so they do not linger."""
    _RECORDED.pop(plan, None)
    for metric in (PLAN_MODE, VERDICT, TRIAL_PHASE, TRIAL_BALANCE):
        for labels in list(metric._metrics):  # prometheus-client has no public lookup
            if labels[0] == plan:
                metric.remove(*labels)
