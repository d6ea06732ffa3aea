"""The ServingPlan API (`breakeven.dev/v1alpha1`), as pydantic models.

These models are the single source of truth: `breakeven.tools.schema` turns them into the CRD's
structural OpenAPI schema (manifests/crd.yaml, the chart's crds/) and docs/api.md, and the CLI and
the operator parse user input with them, so the API server and `breakeven plan` reject the same
mistakes.

Field descriptions are user documentation: they end up in `kubectl explain` and docs/api.md.
Rules that span fields are declared with `cel(...)` and land in `x-kubernetes-validations`; each
has a Python twin in a model validator so the CLI rejects what the API server would.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "breakeven.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServingPlan"
PLURAL = "servingplans"
SINGULAR = "servingplan"
SHORT_NAMES = ("sp",)

# Go-style durations as Kubernetes writes them (`336h`, `5m`, `90s`), plus `d` for days: at most
# four parts of at most six digits each (a fraction of at most three), so neither the API server nor
# the operator ever meets a number it cannot hold; each field also has a maximum in seconds.
DURATION_PATTERN = r"^([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h|d)){1,4}$"
DURATION_MAX_LENGTH = 48
# Parameter counts: a plain number or one with a K/M/B/T suffix (`671B`, `37B`, `8e9`).
PARAMETERS_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,6})?([eE][0-9]{1,2}|[KMBT])?$"
PARAMETERS_MAX_LENGTH = 24
# The largest count any field takes: 100T, about 50 times the largest open model.
MAX_PARAMETERS = 1e14
# A model has at least a million parameters (a zero or near-zero count divides by zero downstream).
MIN_MODEL_PARAMETERS = 1e6
DAY = 86400.0
# Windows, graces, dwell and drain are bounded at one year: `timedelta` and Prometheus ranges hold
# that comfortably, and no rubric clock needs more.
MAX_DURATION_SECONDS = 365 * DAY
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PARAMETER_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as `336h` or `1h30m`."""
    if len(text) > DURATION_MAX_LENGTH or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 336h, 5m or 90s")
    return sum(
        float(number) * _DURATION_UNITS[unit]
        for number, _, unit in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h|d)", text)
    )


def format_duration(seconds: float) -> str:
    """The shortest Go-style duration for whole seconds (`336h`, `5m`, `1h30m`)."""
    rest = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def parse_parameters(text: str) -> float:
    """A parameter count such as `671B` as a number."""
    if len(text) > PARAMETERS_MAX_LENGTH or not re.fullmatch(PARAMETERS_PATTERN, text):
        raise ValueError(f"{text!r} is not a parameter count such as 671B, 37B or 8e9")
    if text[-1] in _PARAMETER_SUFFIXES:
        return float(text[:-1]) * _PARAMETER_SUFFIXES[text[-1]]
    return float(text)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _show_seconds(seconds: float) -> str:
    return f"{seconds / DAY:g}d" if seconds >= DAY else format_duration(seconds)


def _show_count(value: float) -> str:
    for suffix, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


# The CEL twin of parse_duration: each `<number><unit>` part to seconds, summed. `double()` parses
# at most six digits (the pattern), so the sum is finite; CEL's lists library provides sum().
_CEL_DURATION_SECONDS = (
    "self.findAll('[0-9]+([.][0-9]+)?(ms|s|m|h|d)').map(p, "
    "p.endsWith('ms') ? double(p.substring(0, p.size() - 2)) / 1000.0 : "
    "p.endsWith('s') ? double(p.substring(0, p.size() - 1)) : "
    "p.endsWith('m') ? double(p.substring(0, p.size() - 1)) * 60.0 : "
    "p.endsWith('h') ? double(p.substring(0, p.size() - 1)) * 3600.0 : "
    "double(p.substring(0, p.size() - 1)) * 86400.0).sum()"
)


def cel_parameters(field: str = "self") -> str:
    """The CEL twin of parse_parameters for `field` (the pattern has already bounded the digits)."""
    f = field
    return (
        f"({f}.endsWith('K') ? double({f}.substring(0, {f}.size() - 1)) * 1e3 : "
        f"{f}.endsWith('M') ? double({f}.substring(0, {f}.size() - 1)) * 1e6 : "
        f"{f}.endsWith('B') ? double({f}.substring(0, {f}.size() - 1)) * 1e9 : "
        f"{f}.endsWith('T') ? double({f}.substring(0, {f}.size() - 1)) * 1e12 : "
        f"double({f}))"
    )


# A count is an integer or a string (x-kubernetes-int-or-string): CEL sees either, so it reads
# `string(self)`, which is the decimal digits for an integer.
_CEL_PARAMETERS = cel_parameters("string(self)")


def _duration_field(maximum: float) -> Any:
    """Pattern, length and the CEL maximum of a duration field."""
    return Field(
        pattern=DURATION_PATTERN,
        max_length=DURATION_MAX_LENGTH,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(  # type: ignore[list-item]  # a dict of str is JSON
                    f"{_CEL_DURATION_SECONDS} <= {maximum!r}",
                    f"must be at most {_show_seconds(maximum)}",
                )
            ]
        },
    )


def _duration_at_most(maximum: float) -> AfterValidator:
    """The Python twin of the CEL maximum."""

    def bounded(text: str) -> str:
        if parse_duration(text) > maximum:
            raise ValueError(f"{text!r} is longer than the maximum, {_show_seconds(maximum)}")
        return text

    return AfterValidator(bounded)


def _parameters_message(minimum: float, maximum: float) -> str:
    return f"must be between {_show_count(minimum)} and {_show_count(maximum)}"


def _parameters_field(minimum: float, maximum: float) -> Any:
    """Pattern, length and the CEL range of a parameter-count field."""
    return Field(
        pattern=PARAMETERS_PATTERN,
        max_length=PARAMETERS_MAX_LENGTH,
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                cel(  # type: ignore[list-item]  # a dict of str is JSON
                    f"{_CEL_PARAMETERS} >= {minimum!r} && {_CEL_PARAMETERS} <= {maximum!r}",
                    _parameters_message(minimum, maximum),
                )
            ],
        },
    )


def _parameters_within(minimum: float, maximum: float) -> AfterValidator:
    """The Python twin of the CEL range."""

    def bounded(text: str) -> str:
        value = parse_parameters(text)
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise ValueError(f"{text!r} {_parameters_message(minimum, maximum)}")
        return text

    return AfterValidator(bounded)


Duration = Annotated[
    str, _duration_field(MAX_DURATION_SECONDS), _duration_at_most(MAX_DURATION_SECONDS)
]


def _count_as_text(value: object) -> object:
    """An integer count (`480000000000`, as Kubernetes users write quantities) as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# A parameter count: an integer or a string such as `671B` (x-kubernetes-int-or-string in the
# CRD). The before-validator comes last so that it runs first.
Parameters = Annotated[
    str,
    _parameters_field(0.0, MAX_PARAMETERS),
    _parameters_within(0.0, MAX_PARAMETERS),
    BeforeValidator(_count_as_text),
]
ModelParameters = Annotated[
    str,
    _parameters_field(MIN_MODEL_PARAMETERS, MAX_PARAMETERS),
    _parameters_within(MIN_MODEL_PARAMETERS, MAX_PARAMETERS),
    BeforeValidator(_count_as_text),
]
# Label keys and values as Kubernetes bounds them (a prefix of 253, a name of 63, a value of 63).
LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class Model(BaseModel):
    """Base for the API: camelCase on the wire, unknown fields are an error (a typo is caught).

    Every number of the spec has a minimum and a maximum, which `.inf` and `.nan` (valid YAML
    floats) both fail (tests/unit/test_bad_input.py)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class Mode(StrEnum):
    AUTO = "Auto"
    DENSE = "Dense"
    MOE = "MoE"


class ServingMode(StrEnum):
    """A mode something actually runs in (Auto is a request, never a state)."""

    DENSE = "Dense"
    MOE = "MoE"


class PlatformTeam(StrEnum):
    SHARED = "Shared"
    DEDICATED = "Dedicated"


class Dtype(StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    FP4 = "fp4"


class Criterion(StrEnum):
    MODEL_SCALE = "modelScale"
    SUSTAINED_LOAD = "sustainedLoad"
    INTERCONNECT = "interconnect"
    OPS_MATURITY = "opsMaturity"
    EXPERT_BALANCE = "expertBalance"
    TRAFFIC_REGULARITY = "trafficRegularity"
    MEMORY_BANDWIDTH_PRESSURE = "memoryBandwidthPressure"
    RUNTIME_SUPPORT = "runtimeSupport"


class Verdict(StrEnum):
    GO = "Go"
    WAIT = "Wait"
    STAY_DENSE = "StayDense"
    UNKNOWN = "Unknown"


# --------------------------------------------------------------------------------------- spec


class ModelSpec(Model):
    """The model to serve, named as on Hugging Face."""

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Model id as on Hugging Face, e.g. deepseek-ai/DeepSeek-V3. Passed to vLLM "
        "as the model to serve and used to find the architecture in the built-in catalog.",
    )
    architecture: str | None = Field(
        default=None,
        max_length=256,
        description="Catalog key whose architecture facts to use when `name` is not in the "
        "catalog (a fine-tune of a catalog model, say). Defaults to `name`.",
    )
    total_parameters: ModelParameters | None = Field(
        default=None,
        description="Total parameter count for a model outside the catalog, as an integer "
        "(480000000000) or a string (671B, 8e9); overrides the catalog.",
    )
    active_parameters: ModelParameters | None = Field(
        default=None,
        description="Parameters active per token, an integer or a string such as 37B; equals "
        "the total for a dense model.",
    )
    experts: int | None = Field(
        default=None, ge=0, le=4096, description="Routed experts per MoE layer; 0 for dense."
    )
    experts_per_token: int | None = Field(
        default=None, ge=0, le=64, description="Routed experts each token is sent to (top-k)."
    )
    dtype: Dtype | None = Field(
        default=None,
        description="Weight precision to serve in. Defaults to the catalog's native dtype "
        "(bf16 for models outside the catalog).",
    )

    @model_validator(mode="after")
    def _explicit_numbers_consistent(self) -> ModelSpec:
        if (
            self.total_parameters
            and self.active_parameters
            and parse_parameters(self.active_parameters) > parse_parameters(self.total_parameters)
        ):
            raise ValueError("activeParameters must not exceed totalParameters")
        if (self.experts or 0) > 0 and (self.experts_per_token or 0) < 1:
            raise ValueError("expertsPerToken (at least 1) is required when experts is set")
        if (
            self.experts_per_token is not None
            and self.experts is not None
            and self.experts_per_token > self.experts
        ):
            raise ValueError("expertsPerToken must not exceed experts")
        return self


MODEL_SPEC_RULES = [
    cel(
        "!has(self.totalParameters) || !has(self.activeParameters) || "
        f"{cel_parameters('string(self.activeParameters)')} <= "
        f"{cel_parameters('string(self.totalParameters)')}",
        "activeParameters must not exceed totalParameters",
    ),
    cel(
        "!has(self.experts) || self.experts == 0 || "
        "(has(self.expertsPerToken) && self.expertsPerToken >= 1)",
        "expertsPerToken (at least 1) is required when experts is set",
    ),
    cel(
        "!has(self.experts) || !has(self.expertsPerToken) || self.expertsPerToken <= self.experts",
        "expertsPerToken must not exceed experts",
    ),
]


class Operations(Model):
    """What the team declares about itself: the rubric cannot observe it."""

    platform_team: PlatformTeam = Field(
        default=PlatformTeam.SHARED,
        description="Shared: a small or shared platform team. Dedicated: an infra team that "
        "owns expert-parallel serving (placement, EPLB, all-to-all tuning, per-expert "
        "monitoring). MoE needs Dedicated.",
    )
    gpu_hourly_cost: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="What one GPU-hour costs you, in dollars, for the cost estimates. Defaults "
        "to a public price per GPU type (docs/capacity-model.md).",
    )


class Traffic(Model):
    """Where the operator reads the model's traffic, and over which window."""

    prometheus_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="Prometheus base URL (http or https). Defaults to the operator's "
        "--prometheus-url; any other URL must be allowed with --allowed-prometheus-url.",
    )
    selector: dict[
        Annotated[str, Field(max_length=128)], Annotated[str, Field(max_length=1024)]
    ] = Field(
        default_factory=dict,
        max_length=16,
        description="Label matchers (equality) that select this model's vLLM series. Defaults to "
        "{model_name: <spec.model.name>, namespace: <plan namespace>}.",
    )
    window: Duration = Field(
        default="336h",
        description="How much history the traffic facts cover (default 14 days).",
    )
    expert_load_metric: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="Optional counter of tokens routed to each expert, labelled per expert, from "
        "your own pipeline (no vLLM release exports one). expertBalance reads Breakeven's EPLB "
        "exporter first (docs/telemetry.md) and this only where that has no data.",
    )
    expert_label: str = Field(
        default="expert",
        max_length=128,
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="The label of expertLoadMetric that names the expert.",
    )

    @model_validator(mode="after")
    def _selector_label_names(self) -> Traffic:
        for name in self.selector:
            if (
                not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name)
                or name.startswith("__")
                or (name == "le")
            ):
                raise ValueError(
                    f"selector: {name!r} is not a Prometheus label name Breakeven can match "
                    "([a-zA-Z_][a-zA-Z0-9_]*, not __*, not le)"
                )
        return self


TRAFFIC_RULES = [
    cel(
        "!has(self.selector) || self.selector.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') "
        "&& !k.startsWith('__') && k != 'le')",
        "selector keys must be Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not __*, not le)",
        ".selector",
    )
]


class ModelScalePolicy(Model):
    dense_below: Parameters = Field(
        default="30B", description="Dense is favoured below this many total parameters."
    )
    moe_from: Parameters = Field(
        default="70B",
        description="A sparse model with at least this many total parameters favours MoE.",
    )


class SustainedLoadPolicy(Model):
    busy_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Traffic keeps every EP rank busy when its p10 is at least this fraction of "
        "the capacity of the smallest MoE deployment the cluster can host.",
    )
    max_burstiness: float = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="Traffic whose p95/p50 exceeds this is bursty (stay dense).",
    )


class TrafficRegularityPolicy(Model):
    max_prompt_spread: float = Field(
        default=3.0,
        ge=1,
        le=1000,
        description="Prompt lengths are homogeneous when p90/p50 is at most this.",
    )


class ExpertBalancePolicy(Model):
    max_load_over_mean: float = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="The hottest expert may carry at most this multiple of the mean expert load.",
    )


def _default_gating() -> list[Criterion]:
    return [
        Criterion.MODEL_SCALE,
        Criterion.SUSTAINED_LOAD,
        Criterion.INTERCONNECT,
        Criterion.OPS_MATURITY,
        Criterion.EXPERT_BALANCE,
    ]


class Policy(Model):
    """Thresholds and windows of the rubric; docs/rubric.md explains each default."""

    gating: list[Criterion] = Field(
        default_factory=_default_gating,
        json_schema_extra={"default": [c.value for c in _default_gating()]},
        max_length=8,
        description="Criteria that must all be Go for MoE. The others are advisory: reported, "
        "never deciding. runtimeSupport gates whether listed or not.",
    )
    model_scale: ModelScalePolicy = Field(
        default_factory=ModelScalePolicy, description="Thresholds of the modelScale row."
    )
    sustained_load: SustainedLoadPolicy = Field(
        default_factory=SustainedLoadPolicy, description="Thresholds of the sustainedLoad row."
    )
    traffic_regularity: TrafficRegularityPolicy = Field(
        default_factory=TrafficRegularityPolicy,
        description="Thresholds of the trafficRegularity row.",
    )
    expert_balance: ExpertBalancePolicy = Field(
        default_factory=ExpertBalancePolicy, description="Thresholds of the expertBalance row."
    )
    promotion_window: Duration = Field(
        default="336h",
        description="Every gating row must have held Go this long before the plan moves to MoE.",
    )
    demotion_grace: Duration = Field(
        default="5m",
        description="A gating row that lapses for longer than this sends the plan back to dense.",
    )
    demotion_window: Duration = Field(
        default="1h",
        description="Traffic under the sustainedLoad floor for this long sends the plan to dense.",
    )
    min_dwell: Duration = Field(
        default="30m", description="Least time between two switches of mode."
    )
    drain_period: Duration = Field(
        default="2m",
        description="How long the old workload keeps running after the Service has moved away.",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Policy:
        if parse_parameters(self.model_scale.dense_below) > parse_parameters(
            self.model_scale.moe_from
        ):
            raise ValueError("modelScale.denseBelow must not exceed modelScale.moeFrom")
        if len(set(self.gating)) != len(self.gating):
            raise ValueError("gating must not name a criterion twice")
        return self


POLICY_RULES = [
    cel(
        "!has(self.modelScale) || !has(self.modelScale.denseBelow) || "
        "!has(self.modelScale.moeFrom) || "
        f"{cel_parameters('string(self.modelScale.denseBelow)')} <= "
        f"{cel_parameters('string(self.modelScale.moeFrom)')}",
        "modelScale.denseBelow must not exceed modelScale.moeFrom",
    ),
    cel(
        "!has(self.gating) || self.gating.all(g, self.gating.exists_one(h, h == g))",
        "gating must not name a criterion twice",
        ".gating",
    ),
]


class DenseBaseline(Model):
    """A different model to serve when the plan runs dense (e.g. a distilled dense model)."""

    name: str = Field(min_length=1, max_length=256, description="Model id as on Hugging Face.")
    architecture: str | None = Field(
        default=None, max_length=256, description="Catalog key to use instead of name."
    )
    dtype: Dtype | None = Field(default=None, description="Weight precision to serve in.")


class EnvVar(Model):
    name: str = Field(
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        max_length=256,
        description="Environment variable name.",
    )
    value: str = Field(default="", max_length=32768, description="Its value.")


class SecretKeyRef(Model):
    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, description="Secret name."
    )
    key: str = Field(default="token", max_length=253, description="Key within the Secret.")


class Toleration(Model):
    key: str | None = Field(default=None, max_length=316, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] = Field(default="Exists", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; all when empty."
    )


class Disaggregation(Model):
    enabled: bool = Field(
        default=False,
        description="Run prefill and decode as separate roles (MoE only) joined by NIXL KV "
        "transfer.",
    )
    prefill_replicas: int = Field(
        default=1, ge=1, le=64, description="Prefill groups when disaggregated."
    )


class Serving(Model):
    """How the workloads are rendered (image, vLLM version, resources, placement)."""

    image: str = Field(
        default="vllm/vllm-openai:v0.33.0",
        max_length=512,
        pattern=r"^[^\s]+$",
        description="vLLM server image.",
    )
    vllm_version: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^v?[0-9]{1,4}\.[0-9]{1,4}(\.[0-9]{1,4})?$",
        description="vLLM version the image runs; parsed from the image tag when empty. Flags are "
        "rendered for this version.",
    )
    max_model_len: int | None = Field(
        default=None, ge=256, le=10_000_000, description="--max-model-len; vLLM's default if empty."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0.1, le=0.98, description="--gpu-memory-utilization."
    )
    itl_target_ms: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Inter-token latency target; the capacity model picks batch sizes that "
        "meet it. Without it, throughput is the maximum memory allows.",
    )
    replicas: int = Field(
        default=1, ge=1, le=1024, description="Replicas (dense) or EP groups (MoE)."
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra vllm serve arguments, appended as exec-form arguments (never through "
        "a shell).",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, description="Extra environment variables."
    )
    model_cache_pvc: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="PersistentVolumeClaim for the Hugging Face cache; emptyDir when empty.",
    )
    hf_token_secret: SecretKeyRef | None = Field(
        default=None, description="Secret holding the Hugging Face token (HF_TOKEN)."
    )
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra node labels the serving pods require.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations for the serving pods."
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="PriorityClass of the serving pods.",
    )
    disaggregation: Disaggregation = Field(
        default_factory=Disaggregation, description="Prefill/decode disaggregation (MoE)."
    )


class TrialMode(StrEnum):
    CANARY = "Canary"
    SHADOW = "Shadow"


# Gateway API bounds (sigs.k8s.io/gateway-api v1.6.3, apis/v1/shared_types.go ParentReference and
# apis/v1/httproute_types.go HTTPRouteSpec; config/crd/standard/
# gateway.networking.k8s.io_httproutes.yaml): a plan's values must fit the HTTPRoute it renders.
GATEWAY_HOSTNAME_PATTERN = (
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ParentRef(Model):
    """A Gateway the plan's HTTPRoute attaches to (Gateway API's ParentReference, kind Gateway)."""

    name: str = Field(min_length=1, max_length=253, description="The Gateway's name.")
    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="The Gateway's namespace; the plan's namespace when empty (a Gateway "
        "elsewhere must allow routes from it).",
    )
    section_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="The Gateway listener to attach to; all of them when empty.",
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="The listener port to attach to."
    )


class GatewaySpec(Model):
    """Expose the plan through Gateway API: the operator owns an HTTPRoute named like the plan's
    Service (gateway.networking.k8s.io/v1), pointed at that Service."""

    parent_refs: list[ParentRef] = Field(
        min_length=1,
        max_length=32,
        description="The Gateways the HTTPRoute attaches to (at most 32, as Gateway API allows).",
    )
    hostnames: list[
        Annotated[str, Field(min_length=1, max_length=253, pattern=GATEWAY_HOSTNAME_PATTERN)]
    ] = Field(
        default_factory=list,
        max_length=16,
        description="Host names the HTTPRoute matches (at most 16); every host the Gateway "
        "listener accepts when empty.",
    )


class TrialSpec(Model):
    """The trial that measures expert balance before a promotion (docs/operations.md)."""

    mode: TrialMode = Field(
        default=TrialMode.CANARY,
        description="Canary: the trial's pods join the plan's Service and answer their share of "
        "requests. Shadow: the plan's HTTPRoute (spec.gateway) mirrors mirrorPercent of its "
        "requests to the trial, whose answers are discarded; needs spec.gateway.",
    )
    mirror_percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Shadow: the percentage of the HTTPRoute's requests mirrored to the trial "
        "(default 100: the sustainedLoad gate already holds the traffic to what keeps one EP "
        "group busy, and balance is measured on the real mix).",
    )
    enabled: bool = Field(
        default=True,
        description="Run a trial when every gating row but expertBalance is Go and no expert "
        "balance has been measured. Off: such a plan stays dense until expertBalance is Go.",
    )
    duration: Duration = Field(
        default="336h",
        description="How long the trial serves before its balance is judged (default 14 days, "
        "the article's two weeks).",
    )
    retry_after: Duration = Field(
        default="336h",
        description="After a failed trial, the least time before the next (default 14 days, the "
        "default traffic window, so a retry is judged on fresh EPLB steps).",
    )
    ready_timeout: Duration = Field(
        default="30m", description="A trial whose pods are not ready within this fails."
    )
    telemetry_timeout: Duration = Field(
        default="15m",
        description="A ready trial whose EPLB telemetry has not reached Prometheus within this "
        "fails.",
    )


class ServingPlanSpec(Model):
    """What the platform team wants served, and how the choice of mode is made."""

    model: ModelSpec = Field(description="The model to serve.")
    mode: Mode = Field(
        default=Mode.AUTO,
        description="Auto lets the rubric decide. Dense or MoE pin the mode; the rubric is still "
        "evaluated and reported.",
    )
    dry_run: bool = Field(
        default=False,
        description="Plan only: report the decision and the manifests it would apply in status, "
        "and apply nothing.",
    )
    operations: Operations = Field(
        default_factory=Operations, description="What the team declares about itself."
    )
    traffic: Traffic = Field(default_factory=Traffic, description="Where traffic is read.")
    policy: Policy = Field(default_factory=Policy, description="Rubric thresholds and windows.")
    dense: DenseBaseline | None = Field(
        default=None,
        description="Serve this model when dense; by default dense serves spec.model without "
        "expert parallelism.",
    )
    serving: Serving = Field(default_factory=Serving, description="How workloads are rendered.")
    trial: TrialSpec = Field(
        default_factory=TrialSpec,
        description="A trial of one MoE replica (canary or shadow) that measures expert balance "
        "before promotion.",
    )
    gateway: GatewaySpec | None = Field(
        default=None,
        description="Expose the plan through Gateway API: the operator applies an HTTPRoute to "
        "the plan's Service (needed by trial.mode Shadow).",
    )

    @model_validator(mode="after")
    def _disaggregation_needs_moe(self) -> ServingPlanSpec:
        if self.serving.disaggregation.enabled and self.mode == Mode.DENSE:
            raise ValueError("serving.disaggregation.enabled needs mode Auto or MoE")
        if self.trial.mode == TrialMode.SHADOW and self.gateway is None:
            raise ValueError(SHADOW_NEEDS_GATEWAY)
        return self


SHADOW_NEEDS_GATEWAY = (
    "trial.mode Shadow needs spec.gateway.parentRefs: the HTTPRoute that mirrors to the trial"
)


SPEC_RULES = [
    cel(
        "!has(self.serving) || !has(self.serving.disaggregation) || "
        "!self.serving.disaggregation.enabled || !has(self.mode) || self.mode != 'Dense'",
        "serving.disaggregation.enabled needs mode Auto or MoE",
    ),
    cel(
        "!has(self.trial) || !has(self.trial.mode) || self.trial.mode != 'Shadow' || "
        "has(self.gateway)",
        SHADOW_NEEDS_GATEWAY,
    ),
]


# ------------------------------------------------------------------------------------- status


class CriterionRow(Model):
    """One row of the rubric."""

    name: Criterion = Field(description="The criterion.")
    verdict: Verdict = Field(description="Go, Wait, StayDense or Unknown.")
    gating: bool = Field(default=False, description="Whether this row decides the mode.")
    observed: str = Field(default="", description="What was observed, in words and numbers.")
    threshold: str = Field(default="", description="What Go needs.")
    reason: str = Field(default="", description="Why this verdict, for a person.")
    since: str | None = Field(
        default=None,
        description="When this row's known verdict last changed (RFC 3339). `Unknown` is no "
        "verdict: a row turning Unknown keeps the clock of its last known verdict.",
    )
    last_known: Verdict | None = Field(
        default=None,
        description="While the verdict is Unknown: the last known verdict, the one `since` dates.",
    )
    not_go_since: str | None = Field(
        default=None,
        description="Since when this row has not been Go, whatever mix of non-Go verdicts it "
        "showed (RFC 3339); the demotion clock.",
    )


class ModeEstimate(Model):
    """The capacity model's estimate for one mode (docs/capacity-model.md)."""

    mode: ServingMode = Field(description="Dense or MoE.")
    feasible: bool = Field(default=True, description="Whether the cluster can host it at all.")
    gpu: str = Field(default="", description="GPU type it was sized for.")
    gpus: int = Field(default=0, ge=0, description="GPUs in one replica or EP group.")
    nodes: int = Field(default=0, ge=0, description="Nodes one replica or group spans.")
    tp: int = Field(default=1, ge=0, description="Tensor-parallel size.")
    pp: int = Field(default=1, ge=0, description="Pipeline stages.")
    dp: int = Field(default=1, ge=0, description="Data-parallel (attention) ranks.")
    ep: int = Field(default=1, ge=0, description="Expert-parallel ranks.")
    output_tokens_per_second_per_gpu: float = Field(
        default=0,
        ge=0,
        alias="outputTokensPerSecondPerGPU",
        description="Output tokens/s per GPU at full load.",
    )
    total_tokens_per_second: float = Field(
        default=0, ge=0, description="Prompt plus output tokens/s one replica handles at full load."
    )
    bound_by: str = Field(default="", description="memory, compute or communication.")
    dollars_per_million_tokens: float | None = Field(
        default=None, ge=0, description="$ per million output tokens at full load."
    )
    dollars_per_million_tokens_observed: float | None = Field(
        default=None, ge=0, description="$ per million output tokens at the observed demand."
    )
    note: str = Field(default="", description="Why infeasible, or what limited it.")


class WorkloadStatus(Model):
    kind: str = Field(description="Deployment or LeaderWorkerSet.")
    name: str = Field(description="Object name.")
    mode: ServingMode = Field(description="Mode it serves.")
    replicas: int = Field(default=0, ge=0, description="Desired replicas or groups.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready replicas or groups.")
    serving: bool = Field(default=False, description="Whether the Service selects it.")
    down_since: str | None = Field(
        default=None,
        description="Since when it has had no ready pods after it had served (RFC 3339); past "
        "spec.policy.demotionGrace it counts as broken.",
    )


class Condition(Model):
    """A condition as the Kubernetes API conventions define it."""

    type: str = Field(description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition is about."
    )


class Phase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    SERVING = "Serving"
    SWITCHING = "Switching"
    PLANNED = "Planned"
    INVALID = "Invalid"
    DEGRADED = "Degraded"


class SwitchStep(StrEnum):
    """Where a switch stands (`status.switch.step`)."""

    WAITING_FOR_TARGET = "WaitingForTarget"  # the target is applied; the Service waits for it
    STEPWISE = "Stepwise"  # no room for both: one unit of the old released per unit ready
    BLOCKED_NO_ROOM = "BlockedNoRoom"  # no room for both and one replica: the switch waits
    DRAINING = "Draining"  # the Service moved; the old workload drains until drainUntil


class SwitchStatus(Model):
    """A switch in flight. Unknown fields (from another operator version) are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    from_: ServingMode = Field(alias="from", description="The mode switched away from.")
    to: ServingMode = Field(description="The mode switched to.")
    started_at: str = Field(description="When the switch started (RFC 3339).")
    step: SwitchStep = Field(description="Where the switch stands.")
    stepwise: bool | None = Field(
        default=None, description="Whether the pool is too small for both workloads at once."
    )
    target_ready: int | None = Field(
        default=None, ge=0, description="Stepwise: units of the target ready so far."
    )
    drain_until: str | None = Field(
        default=None, description="Draining: when the old workload is deleted (RFC 3339)."
    )


class Placement(Model):
    """The pool and sizing one mode's workload was rendered from (kept as written)."""

    model_config = ConfigDict(extra="allow")

    generation: int | None = Field(default=None, description="The spec generation it is for.")
    pool: dict[str, Any] = Field(
        default_factory=dict,
        description="The GPU pool.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )
    estimate: dict[str, Any] = Field(
        default_factory=dict,
        description="The capacity estimate.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )


class MoEBackoff(Model):
    """A broken MoE workload's cost: MoE is not tried again before `retryAfter`."""

    model_config = ConfigDict(extra="allow")

    failures: int = Field(ge=1, description="MoE attempts that broke since MoE last held.")
    last_failure: str = Field(description="When the last one broke (RFC 3339).")
    retry_after: str = Field(description="No MoE workload is applied before this (RFC 3339).")
    reason: str = Field(default="", description="Why the last one broke.")


class TrialPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"
    ABORTED = "Aborted"


class TrialStatus(Model):
    """The expert-balance trial: one replica of the MoE workload beside dense, in the Service."""

    model_config = ConfigDict(extra="allow")

    phase: TrialPhase = Field(description="Pending, Running, Passed, Failed or Aborted.")
    since: str = Field(description="When the trial entered this phase (RFC 3339).")
    started_at: str | None = Field(default=None, description="When it started running.")
    ready_since: str | None = Field(default=None, description="When its pods were first ready.")
    workload: str | None = Field(default=None, description="The trial's workload.")
    share: str | None = Field(
        default=None,
        description="Canary: the trial's share of the Service's ready endpoints, trial/all; "
        "requests follow the endpoint count. Shadow: the percentage of the HTTPRoute's requests "
        "mirrored to the trial's Service.",
    )
    observed_balance: str | None = Field(
        default=None, description="The expertBalance row's observation during the trial."
    )
    reason: str = Field(default="", description="Why the trial is in this phase, for a person.")
    retry_after: str | None = Field(
        default=None, description="Failed: no new trial starts before this (RFC 3339)."
    )
    generation: int | None = Field(default=None, description="The spec generation it runs for.")


class ServingPlanStatus(Model):
    """What the operator observed, decided and did. Written only by the operator."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = Field(default=None, description="Last spec generation seen.")
    mode: ServingMode | None = Field(default=None, description="The mode serving traffic now.")
    target_mode: ServingMode | None = Field(default=None, description="The mode being moved to.")
    decided_mode: ServingMode | None = Field(
        default=None, description="What the rubric says right now, before hysteresis."
    )
    phase: Phase | None = Field(default=None, description="Lifecycle phase.")
    reason: str | None = Field(default=None, description="One-word reason for the current mode.")
    message: str | None = Field(default=None, description="The decision in one sentence.")
    ready: str | None = Field(default=None, description="Ready pods of the serving workload, n/m.")
    criteria: list[CriterionRow] = Field(default_factory=list, description="The rubric's rows.")
    estimates: list[ModeEstimate] = Field(
        default_factory=list, description="Capacity and cost for each mode."
    )
    workloads: list[WorkloadStatus] = Field(
        default_factory=list, description="Workloads the operator manages and their readiness."
    )
    switch: SwitchStatus | None = Field(
        default=None, description="Progress of a switch in flight; absent when none is."
    )
    last_switch_time: str | None = Field(default=None, description="When mode last changed.")
    moe_backoff: MoEBackoff | None = Field(
        default=None,
        description="Set while MoE is backing off after its workload broke (docs/reliability.md).",
    )
    trial: TrialStatus | None = Field(
        default=None, description="The latest expert-balance trial, if any ran."
    )
    route: str | None = Field(
        default=None,
        description="With spec.gateway: the plan's HTTPRoute and what it does (plain, or "
        "mirroring to the trial), or why it is not applied.",
    )
    placements: dict[str, Placement] | None = Field(
        default=None,
        description="Per mode (Dense, MoE), the pool and sizing its workload was rendered from, "
        "and the spec generation: a running workload is re-rendered from these until the spec "
        "changes, so new cluster or traffic facts never roll its pods.",
    )
    rendered: list[dict[str, Any]] | None = Field(
        default=None,
        description="Dry run: the manifests the operator would apply.",
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")


class ObjectMeta(BaseModel):
    """The parts of metadata the core reads; everything else is passed through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None


class ServingPlan(Model):
    """A model to serve, and the decision whether to serve it dense or as an expert-parallel MoE."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["breakeven.dev/v1alpha1"] = Field(
        default="breakeven.dev/v1alpha1", description="breakeven.dev/v1alpha1"
    )
    kind: Literal["ServingPlan"] = Field(default="ServingPlan", description="ServingPlan")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: ServingPlanSpec = Field(description="What to serve and how to decide.")
    status: ServingPlanStatus | None = Field(default=None, description="Written by the operator.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


CEL_RULES: dict[type[BaseModel], list[dict[str, str]]] = {
    ModelSpec: MODEL_SPEC_RULES,
    Traffic: TRAFFIC_RULES,
    Policy: POLICY_RULES,
    ServingPlanSpec: SPEC_RULES,
}
