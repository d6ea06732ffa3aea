"""Hypothesis strategies and counters for the fuzz suite (docs/reliability.md, "Fuzzing").

The strategies mix values the API accepts with values at and past every bound, and with the
shapes a hostile or careless author writes (strings where mappings belong, `.inf`, huge integers,
hundreds of digits), so a run exercises both acceptance and each rejection path.

`make test` runs a bounded number of examples per fuzz test (derandomized under CI, as every
property test here); `make fuzz` runs BREAKEVEN_FUZZ_EXAMPLES of them and prints the counts.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Examples per fuzz test: small in `make test`, large in `make fuzz`.
EXAMPLES = int(os.environ.get("BREAKEVEN_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# suite -> outcome -> count; printed at the end of the session (tests/conftest.py) and written to
# $BREAKEVEN_FUZZ_SUMMARY as JSON when that is set.
COUNTS: dict[str, Counter[str]] = {}


def count(suite: str, outcome: str) -> None:
    COUNTS.setdefault(suite, Counter())[outcome] += 1


def summary_lines() -> list[str]:
    lines = []
    for suite, outcomes in sorted(COUNTS.items()):
        tried = sum(outcomes.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        lines.append(f"{suite}: tried {tried} ({parts})")
    return lines


def write_summary() -> None:
    path = os.environ.get("BREAKEVEN_FUZZ_SUMMARY")
    if path and COUNTS:
        Path(path).write_text(
            json.dumps({s: dict(c) for s, c in sorted(COUNTS.items())}, indent=2) + "\n"
        )


# ------------------------------------------------------------------------------ values

MODELS = [
    "deepseek-ai/DeepSeek-V3",
    "Qwen/Qwen3-30B-A3B",
    "openai/gpt-oss-120b",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "acme/not-in-the-catalog",
]
UNITS = ["ms", "s", "m", "h", "d"]


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` about seven times in eight: a spec has a dozen fields, and a run should see plans
    the API accepts as well as each way of being rejected."""
    return st.sampled_from(range(8)).flatmap(lambda i: other if i == 7 else valid)


durations = mostly(
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 300), st.sampled_from(["s", "m", "h", "d"])),
    st.one_of(
        st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**6), st.sampled_from(UNITS)),
        st.builds(
            lambda a, u, b, v: f"{a}{u}{b}{v}",
            st.integers(0, 999),
            st.sampled_from(UNITS),
            st.integers(0, 999),
            st.sampled_from(UNITS),
        ),
        st.sampled_from(
            ["365d", "366d", "8760h", "8761h", "0s", "1.5h", "99999999999d", "1s1s1s1s1s"]
        ),
        st.builds(lambda n, u: "9" * n + u, st.integers(6, 400), st.sampled_from(UNITS)),
        st.text(alphabet="0123456789.smhd ", max_size=12),
    ),
)
parameter_counts = mostly(
    st.sampled_from(["7B", "37B", "671B", "70B", "1.5T", "8e9", "500M"]),
    st.one_of(
        st.builds(
            lambda n, s: f"{n}{s}",
            st.integers(0, 10**6),
            st.sampled_from(["", "K", "M", "B", "T", "e9", "e12", "e99"]),
        ),
        st.sampled_from(["0", "1M", "999999", "100T", "101T", "1e99", "671B", "7B", "37B", "lots"]),
        st.builds(lambda n: "9" * n, st.integers(10, 300)),
    ),
)
finite_numbers = st.one_of(
    st.integers(-10, 10**7),
    st.floats(min_value=-1e6, max_value=1e300, allow_nan=False, allow_infinity=False),
)
numbers = st.one_of(finite_numbers, st.sampled_from([float("inf"), float("-inf"), float("nan")]))


def fractions(json_safe: bool) -> st.SearchStrategy[Any]:
    """Mostly a value in (0, 1]; otherwise anything."""
    return mostly(
        st.floats(min_value=0.15, max_value=0.95), finite_numbers if json_safe else numbers
    )


def ratios(json_safe: bool) -> st.SearchStrategy[Any]:
    """Mostly a value in [1, 1000]; otherwise anything."""
    return mostly(st.floats(min_value=1, max_value=1000), finite_numbers if json_safe else numbers)


label_keys = st.one_of(
    st.sampled_from(["pool", "team", "nvidia.com/gpu.product", "example.com/zone"]),
    st.text(alphabet="abcdefgh./-_", min_size=0, max_size=20),
    st.builds(lambda n: "k" * n, st.integers(300, 330)),
)
label_values = st.one_of(
    st.sampled_from(["serving", "NVIDIA-H200", "a"]),
    st.text(max_size=8),
    st.builds(lambda n: "v" * n, st.integers(60, 70)),
)


def spec_fragments(json_safe: bool) -> st.SearchStrategy[dict[str, Any]]:
    """ServingPlan specs: mostly well-formed shapes with values in and out of bounds.

    `json_safe` leaves out NaN and the infinities, which JSON (the API server's wire format)
    cannot carry; YAML files can, and the CLI gets them."""
    num = finite_numbers if json_safe else numbers
    model = st.fixed_dictionaries(
        {"name": st.sampled_from(MODELS)},
        optional={
            "totalParameters": parameter_counts,
            "activeParameters": parameter_counts,
            "experts": st.integers(-1, 5000),
            "expertsPerToken": st.integers(-1, 70),
            "dtype": st.sampled_from(["bf16", "fp8", "fp4", "int3"]),
        },
    )
    policy = st.fixed_dictionaries(
        {},
        optional={
            "promotionWindow": durations,
            "demotionGrace": durations,
            "demotionWindow": durations,
            "minDwell": durations,
            "drainPeriod": durations,
            "modelScale": st.fixed_dictionaries(
                {}, optional={"denseBelow": parameter_counts, "moeFrom": parameter_counts}
            ),
            "sustainedLoad": st.fixed_dictionaries(
                {},
                optional={
                    "busyFraction": fractions(json_safe),
                    "maxBurstiness": ratios(json_safe),
                },
            ),
            "expertBalance": st.fixed_dictionaries(
                {}, optional={"maxLoadOverMean": ratios(json_safe)}
            ),
            "trafficRegularity": st.fixed_dictionaries(
                {}, optional={"maxPromptSpread": ratios(json_safe)}
            ),
        },
    )
    traffic = st.fixed_dictionaries(
        {},
        optional={
            "window": durations,
            "selector": st.dictionaries(
                mostly(
                    st.sampled_from(["job", "model_name"]),
                    st.sampled_from(["le", "__name__", "a" * 130]),
                ),
                label_values,
                max_size=3,
            ),
        },
    )
    serving = st.fixed_dictionaries(
        {},
        optional={
            "replicas": mostly(st.integers(1, 4), st.integers(-1, 2000)),
            "maxModelLen": mostly(st.integers(256, 131072), st.integers(0, 20_000_000)),
            "gpuMemoryUtilization": fractions(json_safe),
            "nodeSelector": mostly(
                st.just({}), st.dictionaries(label_keys, label_values, max_size=3)
            ),
            "vllmVersion": mostly(
                st.sampled_from(["0.12.0", "v0.11"]), st.sampled_from(["1." + "0" * 40, "latest"])
            ),
        },
    )
    return st.fixed_dictionaries(
        {"model": model},
        optional={
            "mode": mostly(st.sampled_from(["Auto", "Dense", "MoE"]), st.just("Sparse")),
            "operations": st.fixed_dictionaries(
                {},
                optional={
                    "platformTeam": st.sampled_from(["Shared", "Dedicated"]),
                    "gpuHourlyCost": mostly(st.floats(min_value=0.5, max_value=20), num),
                },
            ),
            "policy": policy,
            "traffic": traffic,
            "serving": serving,
        },
    )


# Whole documents for the CLI: the spec above, or a wrong shape where a mapping belongs.
junk = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.lists(st.integers(), max_size=3),
    st.none(),
    st.floats(),
)


def plan_documents() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just("breakeven.dev/v1alpha1"),
            "kind": st.just("ServingPlan"),
            "metadata": mostly(st.just({"name": "p"}), junk),
            "spec": mostly(spec_fragments(json_safe=False), junk),
        },
        optional={"status": mostly(st.just({}), st.one_of(junk, st.just({"mode": "Sideways"})))},
    )


# ------------------------------------------------------------------------------ nodes

GPU_LABEL_VALUES = mostly(
    st.sampled_from(["8", "4", "2"]),
    st.one_of(
        st.sampled_from(["0", "M", "inf", "nan", "-8", "2.5", "1e400", "1k", "8Gi", ""]),
        st.builds(lambda n: "9" * n, st.integers(1, 5000)),
        st.text(max_size=6),
    ),
)
MEMORY_LABEL_VALUES = mostly(st.sampled_from(["143771", "81559", "46068"]), GPU_LABEL_VALUES)
PRODUCTS = st.sampled_from(
    [
        "NVIDIA-H200",
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-L40S",
        "NVIDIA-A100-SXM4-80GB",
        "Mystery-GPU",
        "",
    ]
)


def _node(name: str, labels: Any, allocatable: Any, spec: Any, conditions: Any) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": allocatable, "conditions": conditions},
    }


nodes = st.builds(
    _node,
    st.sampled_from(["n0", "n1", "n2", "n3"]),
    mostly(
        st.fixed_dictionaries(
            {"nvidia.com/gpu.product": PRODUCTS},
            optional={
                "nvidia.com/gpu.count": GPU_LABEL_VALUES,
                "nvidia.com/gpu.memory": MEMORY_LABEL_VALUES,
                "nvidia.com/gpu.clique": st.text(max_size=5),
                "feature.node.kubernetes.io/rdma.available": st.sampled_from(["true", "false"]),
                "pool": st.sampled_from(["serving", "batch"]),
            },
        ),
        junk,
    ),
    mostly(
        st.fixed_dictionaries(
            {},
            optional={
                "nvidia.com/gpu": GPU_LABEL_VALUES,
                "rdma/ib": GPU_LABEL_VALUES,
                "vpc.amazonaws.com/efa": GPU_LABEL_VALUES,
            },
        ),
        junk,
    ),
    mostly(st.just({}), st.one_of(st.just({"unschedulable": True}), junk)),
    mostly(
        st.just([{"type": "Ready", "status": "True"}]), st.one_of(junk, st.lists(junk, max_size=2))
    ),
)
node_lists = st.lists(nodes, max_size=6)


# ------------------------------------------------------------------------- traffic facts

traffic_figures = mostly(
    st.floats(min_value=0, max_value=1e6),
    st.one_of(
        finite_numbers,
        st.sampled_from([float("inf"), float("nan"), -1.0, 0.0, 1e308]),
        st.builds(lambda n: int("9" * n), st.integers(1, 400)),
    ),
)
traffic_documents = st.fixed_dictionaries(
    {},
    optional={
        "window": durations,
        "observed": durations,
        "tokensPerSecond": st.one_of(
            st.fixed_dictionaries(
                {}, optional={k: traffic_figures for k in ("p10", "p50", "p90", "p95")}
            ),
            junk,
        ),
        "promptTokens": st.fixed_dictionaries(
            {}, optional={k: traffic_figures for k in ("p50", "p90")}
        ),
        "outputTokens": st.fixed_dictionaries(
            {}, optional={k: traffic_figures for k in ("p50", "p90")}
        ),
        "expertLoadMaxOverMean": traffic_figures,
        "recentPeakTokensPerSecond": traffic_figures,
    },
)


# ----------------------------------------------------------------- Prometheus-like answers

# Timestamps are JSON numbers: finite floats here. A JSON integer too large for a float is the
# separate, deterministic case in tests/unit/test_fuzz_prometheus.py.
_timestamps = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
_sample_values = mostly(
    st.floats(min_value=0, max_value=1e6).map(repr),
    st.one_of(
        st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "-1", "x", ""]),
        st.builds(lambda n: "9" * n, st.integers(1, 500)),
        st.integers(),
        st.none(),
    ),
)
_points = mostly(st.tuples(_timestamps, _sample_values).map(list), junk)


def prometheus_answers(labels: dict[str, str]) -> st.SearchStrategy[Any]:
    """Bodies of Prometheus query answers: mostly well formed, series labelled for the plan."""
    metric = mostly(
        st.builds(lambda q: {**labels, "quantile": q}, st.sampled_from(["0.5", "0.9", "0.99"])),
        st.one_of(st.just({}), junk, st.dictionaries(st.text(max_size=3), junk, max_size=2)),
    )
    vector = st.fixed_dictionaries({"metric": metric, "value": _points})
    matrix = st.fixed_dictionaries(
        {"metric": metric, "values": mostly(st.lists(_points, max_size=30), junk)}
    )
    data = mostly(
        st.one_of(
            st.fixed_dictionaries(
                {"resultType": st.just("vector"), "result": st.lists(vector, max_size=4)}
            ),
            st.fixed_dictionaries(
                {"resultType": st.just("matrix"), "result": st.lists(matrix, max_size=4)}
            ),
        ),
        st.one_of(junk, st.fixed_dictionaries({"resultType": junk, "result": junk})),
    )
    return st.fixed_dictionaries(
        {"status": mostly(st.just("success"), st.sampled_from(["error", ""])), "data": data}
    )
