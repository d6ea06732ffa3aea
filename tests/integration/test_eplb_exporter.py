"""The real `breakeven eplb-exporter` process, following a log file written through the logging
config Breakeven ships to vLLM, scraped by the real Prometheus: the figures come back exact.

The lines are written the way vLLM writes them: the standard library's dictConfig loads the
document of breakeven.core.eplb.logging_config (as vLLM loads VLLM_LOGGING_CONFIG_PATH), and the
EPLB logger logs vLLM's own format strings (vllm/distributed/eplb/eplb_state.py: 0.10.2 line 390,
0.13.0 line 588). Its RotatingFileHandler rotates the file several times during the test, and the
test truncates it once. Every process is stopped by its PID.
"""

from __future__ import annotations

import json
import logging
import logging.config
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from breakeven.core import eplb
from breakeven.shell import eplb_exporter
from e2e.fixtures import wait_for
from e2e.proc import free_port
from e2e.prom import LocalPrometheus

pytestmark = pytest.mark.integration

ENTRY_POINT = Path(sys.executable).parent / "breakeven"
PLAIN = "EPLB step: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f"  # 0.10.0 - 0.11.0
WITH_MODEL = "EPLB step: %d for model %s: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f"
SERVED = "served-model"  # --model: the label of lines that name no model
NAMED = "deepseek-ai/DeepSeek-V3"


class Expected:
    """What the exporter should report, computed here from the steps written."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.idle: dict[str, int] = {}
        self.errors = 0
        self.ratios: dict[str, list[float]] = {}
        self.last: dict[str, tuple[float, int, float]] = {}

    def step(self, model: str, avg: float, maximum: int) -> None:
        self.steps[model] = self.steps.get(model, 0) + 1
        if maximum == 0:
            self.idle[model] = self.idle.get(model, 0) + 1
            return
        self.ratios.setdefault(model, []).append(maximum / avg)
        self.last[model] = (avg, maximum, float(f"{avg / maximum:.4f}"))


@pytest.fixture
def eplb_logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path, list[int]]]:
    """The EPLB logger configured from the JSON document, and a count of its rollovers."""
    log = tmp_path / "logs" / "eplb.log"
    log.parent.mkdir()
    config_file = tmp_path / "logging.json"  # what the ConfigMap mounts for vLLM
    config_file.write_text(json.dumps(eplb.logging_config(str(log), max_bytes=2048)))
    names = ["vllm", eplb.LOGGER]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}  # fmt: skip
    logging.config.dictConfig(json.loads(config_file.read_text()))
    logger = logging.getLogger(eplb.LOGGER)
    [handler] = [h for h in logger.handlers if h not in saved[eplb.LOGGER][0]]
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    rollovers = [0]
    rollover = handler.doRollover

    def counted() -> None:
        rollovers[0] += 1
        rollover()

    handler.doRollover = counted  # type: ignore[method-assign]
    try:
        yield logger, log, rollovers
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            for h in lg.handlers:
                if h not in handlers:
                    h.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


@pytest.fixture
def exporter(tmp_path: Path, eplb_logger: Any) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    _, log, _ = eplb_logger
    port = free_port()
    out = (tmp_path / "exporter.out").open("wb")
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "eplb-exporter", "--log-file", str(log), "--port", str(port),
         "--address", "127.0.0.1", "--model", SERVED, "--poll-interval", "0.1"],
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
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()  # only if the test failed before stopping it by SIGTERM
            proc.wait(timeout=10)
        out.close()


def query(url: str, promql: str) -> dict[str, float]:
    """Instant query -> {model label (or ''): value}."""
    resp = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return {
        r["metric"].get("model", ""): float(r["value"][1]) for r in resp.json()["data"]["result"]
    }


def exporter_value(port: int, name: str, **labels: str) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_exporter_follows_rotations_and_prometheus_reads_exact_figures(
    tmp_path: Path, eplb_logger: Any, exporter: tuple[int, subprocess.Popen[bytes]]
) -> None:
    logger, log, rollovers = eplb_logger
    port, proc = exporter
    expected = Expected()

    def written() -> int:
        return sum(expected.steps.values())

    def caught_up() -> bool:
        return exporter_value(port, "breakeven_eplb_steps_total", model=SERVED) == float(
            expected.steps.get(SERVED, 0)
        ) and exporter_value(port, "breakeven_eplb_steps_total", model=NAMED) == (
            float(expected.steps[NAMED]) if NAMED in expected.steps else None
        )

    def batch(values: list[tuple[float, int]], named: bool) -> None:
        """Fewer lines than one file holds (2048 bytes), then wait until the exporter read them:
        with backupCount 1 a writer two rotations ahead would delete lines before they are read."""
        for i, (avg, maximum) in enumerate(values):
            balancedness = avg / maximum if maximum else 0.0
            if named:
                logger.info(WITH_MODEL, i, NAMED, avg, maximum, balancedness)
                expected.step(NAMED, avg, maximum)
            else:
                logger.info(PLAIN, avg, maximum, balancedness)
                expected.step(SERVED, avg, maximum)
        wait_for(f"the exporter to read {written()} steps", caught_up, timeout=60, interval=0.2)

    # vLLM 0.10.x lines (no model: labelled --model), an idle step, noise, a malformed line
    batch([(96.25, 130), (100.00, 100), (0.0, 0)], named=False)
    logger.info("Rearranging experts (profile)...")  # the EPLB logger's other messages: ignored
    logger.info("EPLB step: avg_tokens=12.50, max_tok")  # truncated: a parse error
    expected.errors += 1
    # 0.13.0 lines naming the model, enough of them for several rotations
    for k in range(6):
        batch([(1000.0 + k, 1500 + 10 * j) for j in range(8)], named=True)
        batch([(50.5 + k, 75)], named=False)
    assert rollovers[0] >= 2, "the test must have rotated the file more than once"
    # copytruncate-style truncation, then more lines
    wait_for("the parse error", lambda: exporter_value(
        port, "breakeven_eplb_parse_errors_total", model=SERVED) == 1.0)  # fmt: skip
    log.write_text("")
    batch([(10.0, 40)], named=False)

    with LocalPrometheus(tmp_path / "prometheus", live_targets=[f"127.0.0.1:{port}"]) as prom:

        def scraped() -> bool:
            steps = query(prom.url, "breakeven_eplb_steps_total")
            return steps == {m: float(n) for m, n in expected.steps.items()}

        wait_for("Prometheus to scrape the final figures", scraped, timeout=60)
        url = prom.url
        for model, (avg, maximum, balancedness) in expected.last.items():
            assert query(url, f'breakeven_eplb_avg_tokens{{model="{model}"}}') == {model: avg}
            assert query(url, f'breakeven_eplb_max_tokens{{model="{model}"}}') == {
                model: float(maximum)
            }
            assert query(url, f'breakeven_eplb_balancedness{{model="{model}"}}') == {
                model: balancedness
            }
            assert query(url, f'breakeven_eplb_rank_load_max_over_mean{{model="{model}"}}') == {
                model: maximum / avg
            }
        for model, ratios in expected.ratios.items():
            for le in eplb_exporter.RATIO_BUCKETS[:-1]:
                got = query(url, f'breakeven_eplb_rank_load_max_over_mean_steps_bucket'
                                 f'{{model="{model}",le="{le}"}}')  # fmt: skip
                assert got == {model: float(sum(r <= le for r in ratios))}, (model, le)
            count = query(url, f'breakeven_eplb_rank_load_max_over_mean_steps_count'
                               f'{{model="{model}"}}')  # fmt: skip
            assert count == {model: float(len(ratios))}
        assert query(url, "breakeven_eplb_idle_steps_total") == {
            SERVED: float(expected.idle[SERVED])
        }
        assert query(url, "breakeven_eplb_parse_errors_total") == {SERVED: float(expected.errors)}
        assert query(url, "breakeven_eplb_log_rotations_total") == {"": float(rollovers[0])}
        assert query(url, "breakeven_eplb_log_truncations_total") == {"": 1.0}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
