"""The EPLB log-line parser on the exact wording of every supported vLLM release, and the
VLLM_LOGGING_CONFIG_PATH document it relies on.

Each format string below is the one in that release's wheel (`pip download --no-deps vllm==X`),
in vllm/distributed/eplb/eplb_state.py at the line given; the prefixes are vLLM's default console
format (vllm/logger.py `_FORMAT`), the engine-core process prefix of newer releases, and the
prefix of our own file handler.
"""

from __future__ import annotations

import json
import logging
import logging.config
from pathlib import Path

import pytest

from breakeven.core import eplb

PLAIN = "EPLB step: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f"
WITH_MODEL = "EPLB step: %d for model %s: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f"
WITH_COUNTDOWN = WITH_MODEL + ", steps until the next rearrangement: %d"

# version -> (format string, line of the string in vllm/distributed/eplb/eplb_state.py)
VERSIONS = {
    "0.10.0": (PLAIN, 382),
    "0.10.1": (PLAIN, 390),
    "0.10.1.1": (PLAIN, 390),
    "0.10.2": (PLAIN, 390),
    "0.11.0": (PLAIN, 391),
    "0.11.1": (WITH_MODEL, 465),
    "0.11.2": (WITH_MODEL, 465),
    "0.12.0": (WITH_MODEL, 579),
    "0.13.0": (WITH_MODEL, 588),
    "0.33.0": (WITH_COUNTDOWN, 635),
}
MODEL = "deepseek-ai/DeepSeek-V3"


def message(version: str, avg: float, maximum: float, step: int = 7, until: int = 2993) -> str:
    """What vLLM `version` logs for one step (it computes balancedness as avg / max)."""
    fmt, _ = VERSIONS[version]
    balancedness = avg / maximum if maximum > 0 else 0.0
    if fmt == PLAIN:
        return fmt % (avg, maximum, balancedness)
    if fmt == WITH_MODEL:
        return fmt % (step, MODEL, avg, maximum, balancedness)
    return fmt % (step, MODEL, avg, maximum, balancedness, until)


def prefixes(version: str) -> list[str]:
    _, line = VERSIONS[version]
    return [
        "",
        f"INFO 11-29 10:00:00 [eplb_state.py:{line}] ",  # vLLM's default console format
        f"(EngineCore_DP0 pid=4242) INFO 11-29 10:00:00 [eplb_state.py:{line}] ",
        f"\x1b[32mINFO\x1b[0m 11-29 10:00:00 [eplb_state.py:{line}] ",  # VLLM_LOGGING_COLOR
        "2026-11-29 10:00:00,123 INFO vllm.distributed.eplb.eplb_state ",  # eplb.FILE_FORMAT
        "2026-11-29T10:00:00.123456789Z stdout F ",  # a container runtime's log file
    ]


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_release_wording_parses_with_any_prefix(version: str) -> None:
    text = message(version, 1234.5, 1500)
    for prefix in prefixes(version):
        step = eplb.parse_line(prefix + text + "\n")
        assert step is not None, prefix
        assert step.avg_tokens == 1234.5
        assert step.max_tokens == 1500
        assert step.balancedness == 0.823  # 1234.5 / 1500 printed with %.4f
        assert step.max_over_mean == pytest.approx(1500 / 1234.5)
        fmt, _ = VERSIONS[version]
        if fmt == PLAIN:
            assert (step.model, step.step, step.steps_until_rearrangement) == (None, None, None)
        else:
            assert (step.model, step.step) == (MODEL, 7)
            expected = 2993 if fmt == WITH_COUNTDOWN else None
            assert step.steps_until_rearrangement == expected


def test_exact_lines() -> None:
    line = "INFO 11-29 10:00:00 [eplb_state.py:381] EPLB step: avg_tokens=96.25, max_tokens=130, balancedness=0.7404"  # noqa: E501
    assert eplb.parse_line(line) == eplb.Step(avg_tokens=96.25, max_tokens=130, balancedness=0.7404)
    line = (
        "(EngineCore_DP0 pid=77) INFO 11-29 10:00:01 [eplb_state.py:587] EPLB step: 12 for model "
        "Qwen/Qwen3-30B-A3B: avg_tokens=2048.00, max_tokens=4096, balancedness=0.5000"
    )
    assert eplb.parse_line(line) == eplb.Step(
        avg_tokens=2048.0, max_tokens=4096, balancedness=0.5, model="Qwen/Qwen3-30B-A3B", step=12
    )
    line = (
        "EPLB step: 0 for model m: avg_tokens=10.00, max_tokens=10, balancedness=1.0000, "
        "steps until the next rearrangement: 3000"
    )
    step = eplb.parse_line(line)
    assert step is not None
    assert (step.max_over_mean, step.steps_until_rearrangement) == (1.0, 3000)


def test_a_model_name_with_colons_and_spaces_is_kept_whole() -> None:
    line = (
        "EPLB step: 3 for model /models/my model:v2: avg_tokens=1.00, max_tokens=2, "
        "balancedness=0.5000"
    )
    step = eplb.parse_line(line)
    assert step is not None and step.model == "/models/my model:v2"


def test_an_idle_step_has_no_ratio() -> None:
    step = eplb.parse_line(message("0.13.0", 0.0, 0))
    assert step is not None
    assert step.idle and step.max_over_mean is None and step.balancedness == 0.0


def test_other_lines_are_not_steps() -> None:
    for line in [
        "",
        "INFO 11-29 10:00:00 [eplb_state.py:620] Rearranging experts (profile)...",
        "INFO 11-29 10:00:00 [api_server.py:1] Started server process",
        "EPLB: step count",
    ]:
        assert eplb.parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        # truncated at every interesting place of a 0.10.x and a 0.13.0 line
        "EPLB step: avg_tokens=12",
        "EPLB step: avg_tokens=12.50, max_tok",
        "EPLB step: avg_tokens=12.50, max_tokens=20, balancedness=0.62",
        "EPLB step: avg_tokens=12.50, max_tokens=20, balancedness=",
        "EPLB step: 4 for model m: avg_tokens=12.50, max_tokens=20",
        "EPLB step: 4 for mo",
        "INFO 11-29 10:00:00 [eplb_state.py:382] EPLB step",
        # not numbers as vLLM prints them
        "EPLB step: avg_tokens=-1.00, max_tokens=20, balancedness=0.6250",
        "EPLB step: avg_tokens=nan, max_tokens=20, balancedness=0.6250",
        "EPLB step: avg_tokens=12.5, max_tokens=20, balancedness=0.6250",
        "EPLB step: avg_tokens=12.50, max_tokens=20.0, balancedness=0.6250",
        "EPLB step: avg_tokens=30.00, max_tokens=20, balancedness=1.5000",  # mean above max
        # trailing garbage, and two writers interleaved in one line
        "EPLB step: avg_tokens=12.50, max_tokens=20, balancedness=0.6250 extra",
        "EPLB step: avg_tokens=12.50, max_tokEPLB step: avg_tokens=1.00, max_tokens=2, "
        "balancedness=0.5000",
        "EPLB step: avg_tokens=12.50, max_tokens=20, balancedness=0.6250INFO 11-29 10:00:00 "
        "[eplb_state.py:382] EPLB step: avg_tokens=1.00, max_tokens=2, balancedness=0.5000",
        "EPLB step: avg_tokens=12.50, INFO 11-29 10:00:00 [core.py:1] Engine started",
    ],
)
def test_malformed_lines_raise(line: str) -> None:
    with pytest.raises(eplb.MalformedLine):
        eplb.parse_line(line)


def test_interleaved_lines_parse_one_by_one() -> None:
    lines = [
        message("0.10.2", 10.0, 20),
        "INFO 11-29 10:00:00 [loggers.py:1] Engine 000: Avg prompt throughput: 1.0 tokens/s",
        message("0.10.2", 15.0, 20),
        "EPLB step: avg_tokens=15.00, max_tok",
        message("0.10.2", 20.0, 20),
    ]
    parsed: list[eplb.Step | str | None] = []
    for line in lines:
        try:
            parsed.append(eplb.parse_line(line))
        except eplb.MalformedLine:
            parsed.append("malformed")
    ratios = [p.max_over_mean if isinstance(p, eplb.Step) else p for p in parsed]
    assert ratios == [2.0, None, pytest.approx(20 / 15), "malformed", 1.0]


# --------------------------------------------------------------------- logging config


def test_logging_config_is_json_and_names_the_eplb_logger() -> None:
    config = eplb.logging_config("/var/log/breakeven/eplb.log")
    assert json.loads(json.dumps(config)) == config
    assert config["loggers"][eplb.LOGGER]["handlers"] == ["eplb_file"]
    assert config["loggers"][eplb.LOGGER]["propagate"] is True
    assert config["loggers"]["vllm"]["handlers"] == ["console"]
    assert config["handlers"]["console"]["stream"] == "ext://sys.stdout"
    file = config["handlers"]["eplb_file"]
    assert file["class"] == "logging.handlers.RotatingFileHandler"
    assert (file["filename"], file["delay"]) == ("/var/log/breakeven/eplb.log", True)
    assert config["disable_existing_loggers"] is False


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"log_file": "eplb.log"}, "log_file"),
        ({"log_file": "/x", "max_bytes": 10}, "max_bytes"),
        ({"log_file": "/x", "backup_count": 0}, "backup_count"),
    ],
)
def test_logging_config_rejects_bad_values_naming_them(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        eplb.logging_config(**kwargs)


@pytest.fixture
def restore_logging():
    """dictConfig changes process-wide state: put the loggers it touches back afterwards."""
    names = ["vllm", eplb.LOGGER]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}  # fmt: skip
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_the_config_writes_parseable_lines_and_rotates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """The document, loaded by the standard dictConfig as vLLM loads it, writes the EPLB
    logger's lines to the file (and stdout), other vLLM loggers' only to stdout, and rotates."""
    log = tmp_path / "eplb.log"
    config = eplb.logging_config(str(log), max_bytes=1024, backup_count=1)
    logging.config.dictConfig(json.loads(json.dumps(config)))
    assert not log.exists()  # delay: a process that logs no EPLB step never creates the file
    logging.getLogger("vllm.engine").info("not an EPLB line")
    eplb_logger = logging.getLogger(eplb.LOGGER)
    for i in range(20):  # ~100 bytes a line: more than 1024 bytes, so at least one rotation
        eplb_logger.info(VERSIONS["0.13.0"][0], i, MODEL, 10.0, 20, 0.5)
    lines = [line for path in (Path(f"{log}.1"), log) for line in path.read_text().splitlines()]
    assert Path(f"{log}.1").exists()
    steps = [eplb.parse_line(line) for line in lines]
    assert all(s is not None and s.max_over_mean == 2.0 for s in steps)
    assert {s.step for s in steps if s is not None} <= set(range(20))
    out = capsys.readouterr().out
    assert "not an EPLB line" in out and out.count("EPLB step") == 20
    assert "[test_eplb.py:" in out  # vLLM's console prefix, `[file:line]`
