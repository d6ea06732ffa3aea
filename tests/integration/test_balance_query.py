"""expertBalance's figure through the whole real path: vLLM-format EPLB lines appended to a log
file, the real `breakeven eplb-exporter` process, the real Prometheus scraping it with the pod's
namespace as a target label, and the operator's reader (`query_for` -> `read_one`).

The p95 comes from `histogram_quantile` over bucket rates, so the test checks the bucket it lands
in (the exporter's bounds, shell/eplb_exporter.RATIO_BUCKETS), which is exact whatever Prometheus's
rate extrapolation does inside a bucket, and the rubric row's verdict. Every process is stopped
by its PID.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from breakeven.core import api, facts, rubric
from breakeven.shell import prometheus as prom
from e2e.fixtures import wait_for
from e2e.proc import free_port
from e2e.prom import LocalPrometheus

pytestmark = pytest.mark.integration

ENTRY_POINT = Path(sys.executable).parent / "breakeven"
# vLLM 0.13.0, vllm/distributed/eplb/eplb_state.py line 588 (docs/telemetry.md)
LINE = "INFO 11-29 10:00:00 [eplb_state.py:588] EPLB step: {n} for model {model}: avg_tokens={avg:.2f}, max_tokens={max:d}, balancedness={b:.4f}\n"  # noqa: E501
NAMESPACE = "team"


def plan(model: str) -> api.ServingPlan:
    return api.ServingPlan.model_validate(
        {
            "metadata": {"name": "p", "namespace": NAMESPACE},
            "spec": {"model": {"name": model}, "traffic": {"window": "10m"}},
        }
    )


def steps(model: str, ratios: list[float]) -> str:
    avg = 1000.0
    return "".join(
        LINE.format(n=i, model=model, avg=avg, max=round(avg * r), b=avg / round(avg * r))
        for i, r in enumerate(ratios)
    )


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    log = tmp_path / "eplb.log"
    log.write_text("")
    port = free_port()
    out = (tmp_path / "exporter.out").open("wb")
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "eplb-exporter", "--log-file", str(log), "--port", str(port),
         "--address", "127.0.0.1", "--model", "served", "--poll-interval", "0.1"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            "the exporter's /metrics",
            lambda: (
                proc.poll() is None
                and httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
            ),
            timeout=30,
            interval=0.2,
        )
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        out.close()


def count(url: str, model: str) -> float:
    body = httpx.get(
        f"{url}/api/v1/query",
        params={"query": f'breakeven_eplb_rank_load_max_over_mean_steps_count{{model="{model}"}}'},
        timeout=10,
    ).json()
    return sum(float(r["value"][1]) for r in body["data"]["result"])


async def test_the_reader_turns_exporter_histograms_into_the_rank_figure(
    tmp_path: Path, exporter: tuple[int, Path]
) -> None:
    port, log = exporter
    target = f"127.0.0.1:{port}"
    with LocalPrometheus(
        tmp_path / "prometheus",
        live_targets=[target],
        target_labels={target: {"namespace": NAMESPACE}},
    ) as local:
        # One step each first, scraped, so the series exist before the steps that count: rate()
        # sees only what a counter gains while it is scraped.
        with log.open("a") as f:
            f.write(steps("org/even", [1.0]) + steps("org/hot", [1.0]))
        wait_for("the first steps scraped", lambda: count(local.url, "org/hot") == 1, timeout=60)
        # even: 99 steps at 1.08 and one at 3.0 (an outlier the p95 ignores);
        # hot: 100 steps at 2.5, TensorRT-LLM's per-rank figure without EPLB, about.
        for _ in range(4):
            with log.open("a") as f:
                f.write(steps("org/even", [1.08] * 24 + [1.08 if _ else 3.0]))
                f.write(steps("org/hot", [2.5] * 25))
            seen = count(local.url, "org/hot")
            wait_for("a scrape of the batch", lambda s=seen: count(local.url, "org/hot") > s,
                     timeout=60)  # fmt: skip
        wait_for("every step scraped", lambda: count(local.url, "org/even") == 101, timeout=60)

        got: dict[str, facts.Traffic] = {}
        async with httpx.AsyncClient() as client:
            for model in ("org/even", "org/hot", "org/never-served-as-moe"):
                q = prom.query_for(plan(model), local.url)
                assert q is not None
                got[model] = await prom.read_one(client, q)

    even = got["org/even"].rank_load_max_over_mean
    hot = got["org/hot"].rank_load_max_over_mean
    assert even is not None and 1.05 < even <= 1.1  # the bucket (1.05, 1.1] holds the p95
    assert hot is not None and 2.0 < hot <= 3.0  # the bucket (2.0, 3.0]
    assert got["org/never-served-as-moe"].rank_load_max_over_mean is None
    policy = api.Policy()
    verdicts = {m: rubric.expert_balance(t, policy).verdict for m, t in got.items()}
    assert verdicts == {
        "org/even": api.Verdict.GO,
        "org/hot": api.Verdict.STAY_DENSE,
        "org/never-served-as-moe": api.Verdict.UNKNOWN,
    }
