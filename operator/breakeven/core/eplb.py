"""vLLM's EPLB balancedness log line -> numbers; and the logging config that writes those lines.

No vLLM release exports expert load as a metric. With EPLB's `log_balancedness` on, the rank 0 of
each expert-parallel group logs one INFO line per engine step from the logger
`vllm.distributed.eplb.eplb_state` (vllm/distributed/eplb/eplb_state.py, `logger.info("EPLB
step...")`). The wording changed over releases (read from each release wheel's eplb_state.py,
the line of the format string in brackets):

    0.10.0 [382], 0.10.1 [390], 0.10.1.1 [390], 0.10.2 [390], 0.11.0 [391]
        EPLB step: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f
    0.11.1 [465], 0.11.2 [465], 0.12.0 [579], 0.13.0 [588]
        EPLB step: %d for model %s: avg_tokens=%.2f, max_tokens=%d, balancedness=%.4f
    0.33.0 [635], the newest release checked
        as 0.11.1, then `, steps until the next rearrangement: %d`

The model is `model_config.model` (what `vllm serve` loads, which Breakeven renders equal to the
served name for MoE); the step number counts steps since the last rearrangement, not a total.
For each MoE layer vLLM takes the mean and the largest number of tokens an EP rank received;
`avg_tokens` and `max_tokens` are those summed over the layers, and balancedness = avg / max.
The slowest rank sets the pace of an EP group, so the figure Breakeven reads is max / mean
(1 / balancedness).

`parse_line` finds that message whatever prefix the line carries (vLLM's default
`INFO 11-29 10:00:00 [eplb_state.py:588] `, `VLLM_LOGGING_PREFIX`, the prefix of `logging_config`,
a container runtime's timestamp). `logging_config` is the `logging.config.dictConfig` document
vLLM loads from `VLLM_LOGGING_CONFIG_PATH` (vllm/logger.py, `_configure_vllm_root_logger`): the
file *replaces* vLLM's default config, so it keeps a stdout handler like vLLM's own and adds a
size-rotated file handler on the EPLB logger only, which the exporter follows.

Pure: no I/O, no clock. breakeven.shell.eplb_exporter reads the file and serves the figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LOGGER = "vllm.distributed.eplb.eplb_state"  # init_logger(__name__) in eplb_state.py
MARKER = "EPLB step"

# vLLM's default console format (vllm/logger.py `_FORMAT`, `_DATE_FORMAT`; 0.10.2 and later
# print `%(fileinfo)s`, a record attribute only vLLM's own formatter sets, in place of the
# standard `%(filename)s` used here), so that stdout keeps looking as it did.
VLLM_CONSOLE_FORMAT = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
VLLM_CONSOLE_DATEFMT = "%m-%d %H:%M:%S"
# The prefix of the lines in the EPLB file: ISO time, level, logger. The parser ignores prefixes.
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 1

# The numbers are matched as vLLM formats them (%.2f, %d, %.4f): a line cut inside a number does
# not parse as a smaller number.
_STEP = re.compile(
    r"EPLB step(?:: (?P<step>[0-9]+) for model (?P<model>.+?))?: "
    r"avg_tokens=(?P<avg>[0-9]+\.[0-9]{2}), "
    r"max_tokens=(?P<max>[0-9]+), "
    r"balancedness=(?P<balancedness>[0-9]+\.[0-9]{4})"
    r"(?:, steps until the next rearrangement: (?P<until>[0-9]+))?"
    r"\s*$"
)


class MalformedLine(ValueError):
    """A line that carries the EPLB step marker but not a message of any known wording."""


@dataclass(frozen=True)
class Step:
    """One `EPLB step` line. `model` and `step` are None in 0.10.x - 0.11.x, which name neither."""

    avg_tokens: float
    max_tokens: int
    balancedness: float
    model: str | None = None
    step: int | None = None
    steps_until_rearrangement: int | None = None

    @property
    def idle(self) -> bool:
        """A step in which no rank received a token (vLLM then logs balancedness 0.0)."""
        return self.max_tokens == 0

    @property
    def max_over_mean(self) -> float | None:
        """Load of the busiest EP rank over the mean rank load; None for an idle step."""
        if self.idle or self.avg_tokens <= 0:
            return None
        return self.max_tokens / self.avg_tokens


def parse_line(line: str) -> Step | None:
    """The step a log line reports; None for a line that is not an EPLB step line.

    Purely computational. Raises MalformedLine (with the reason) for a line that names an EPLB
    step but cannot be read: truncated, interleaved with another line, or an unknown wording.
    """
    text = line.rstrip("\r\n")
    found = text.count(MARKER)
    if found == 0:
        return None
    if found > 1:
        raise MalformedLine(f"{found} EPLB step messages in one line (interleaved writes)")
    match = _STEP.search(text)
    if match is None:
        raise MalformedLine("an EPLB step line in no known wording (truncated or changed)")
    avg = float(match["avg"])
    maximum = int(match["max"])
    if avg > maximum:
        raise MalformedLine(f"avg_tokens {avg} exceeds max_tokens {maximum}")
    return Step(
        avg_tokens=avg,
        max_tokens=maximum,
        balancedness=float(match["balancedness"]),
        model=match["model"],
        step=int(match["step"]) if match["step"] is not None else None,
        steps_until_rearrangement=int(match["until"]) if match["until"] is not None else None,
    )


def logging_config(
    log_file: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backup_count: int = DEFAULT_BACKUP_COUNT,
    level: str = "INFO",
) -> dict[str, Any]:
    """The dictConfig document for VLLM_LOGGING_CONFIG_PATH.

    Keeps vLLM's stdout logging (the `vllm` logger at DEBUG, a stdout handler at `level`, as
    vLLM's default does with VLLM_LOGGING_LEVEL) and adds a RotatingFileHandler on the EPLB
    logger, which still propagates to stdout. The file handler opens its file only on the first
    record (`delay`), so the many vLLM processes of a pod that never log an EPLB step never touch
    it and only EP rank 0's process writes and rotates it. Purely computational.
    """
    if not log_file.startswith("/"):
        raise ValueError(f"log_file: {log_file!r} is not an absolute path")
    if max_bytes < 1024:
        raise ValueError(f"max_bytes: {max_bytes} is under 1024; the file would rotate every line")
    if backup_count < 1:
        raise ValueError(f"backup_count: {backup_count} < 1; RotatingFileHandler would not rotate")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "vllm": {"format": VLLM_CONSOLE_FORMAT, "datefmt": VLLM_CONSOLE_DATEFMT},
            "eplb": {"format": FILE_FORMAT},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "vllm",
                "level": level.upper(),
                "stream": "ext://sys.stdout",
            },
            "eplb_file": {
                "class": "logging.handlers.RotatingFileHandler",
                "formatter": "eplb",
                "level": "INFO",
                "filename": log_file,
                "maxBytes": max_bytes,
                "backupCount": backup_count,
                "encoding": "utf-8",
                "delay": True,
            },
        },
        "loggers": {
            "vllm": {"handlers": ["console"], "level": "DEBUG", "propagate": False},
            LOGGER: {"handlers": ["eplb_file"], "level": "INFO", "propagate": True},
        },
    }
