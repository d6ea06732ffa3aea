"""`breakeven eplb-exporter`: follow vLLM's EPLB log file and serve its figures to Prometheus.

Runs as a native sidecar (an init container with `restartPolicy: Always`) beside every MoE vLLM
container Breakeven renders (breakeven.core.rendering.telemetry). vLLM writes its `EPLB step`
lines to a size-rotated file in a shared emptyDir (breakeven.core.eplb.logging_config); this
process follows that file across rotations and truncation, parses each line with
breakeven.core.eplb.parse_line and serves, with prometheus-client:

    breakeven_eplb_rank_load_max_over_mean{model}   last step: busiest EP rank / mean rank load
    breakeven_eplb_rank_load_max_over_mean_steps{model}  histogram of that ratio over every step
    breakeven_eplb_balancedness{model}              last step: mean / max (as vLLM logs it)
    breakeven_eplb_avg_tokens{model}                last step: mean tokens per EP rank
    breakeven_eplb_max_tokens{model}                last step: tokens of the busiest EP rank
    breakeven_eplb_steps_total{model}               EPLB step lines read
    breakeven_eplb_idle_steps_total{model}          of those, steps in which no rank had a token
    breakeven_eplb_parse_errors_total{model}        lines naming an EPLB step that did not parse
    breakeven_eplb_log_rotations_total              times the file was replaced (rotation)
    breakeven_eplb_log_truncations_total            times the file shrank in place

Idle steps update only the counters: their ratio is undefined. 0.10.x-0.11.x lines name no
model: they (and lines that do not parse) are labelled with `--model`, the served model name.

Nothing in a log line can stop it: a bad line is counted, never raised.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import prometheus_client as prom

from breakeven.core import eplb

# max/mean of rank loads: 1 is perfect balance. vLLM's EPLB targets the low end; the high
# buckets catch the hot-rank cases a rubric threshold must reject.
RATIO_BUCKETS = (1.0, 1.02, 1.05, 1.1, 1.15, 1.2, 1.3, 1.5, 1.75, 2.0, 3.0, 5.0, float("inf"))
DEFAULT_MODEL = "unknown"
MAX_LINE = 64 * 1024  # a line longer than this without a newline is dropped as malformed


class Metrics:
    """The exporter's metrics, in a registry of their own (no process or platform collectors)."""

    def __init__(self, default_model: str) -> None:
        self.default_model = default_model
        self.registry = prom.CollectorRegistry()
        labels = ["model"]
        r = self.registry
        self.ratio = prom.Gauge(
            "breakeven_eplb_rank_load_max_over_mean",
            "Last EPLB step: tokens of the busiest EP rank over the mean per rank",
            labels,
            registry=r,
        )
        self.ratio_steps = prom.Histogram(
            "breakeven_eplb_rank_load_max_over_mean_steps",
            "Busiest EP rank over the mean per rank, one observation per non-idle EPLB step",
            labels,
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.balancedness = prom.Gauge(
            "breakeven_eplb_balancedness", "Last EPLB step: mean over max rank load", labels,
            registry=r,
        )  # fmt: skip
        self.avg_tokens = prom.Gauge(
            "breakeven_eplb_avg_tokens", "Last EPLB step: mean tokens per EP rank", labels,
            registry=r,
        )  # fmt: skip
        self.max_tokens = prom.Gauge(
            "breakeven_eplb_max_tokens", "Last EPLB step: tokens of the busiest EP rank", labels,
            registry=r,
        )  # fmt: skip
        self.steps = prom.Counter(
            "breakeven_eplb_steps", "EPLB step lines read", labels, registry=r
        )
        self.idle_steps = prom.Counter(
            "breakeven_eplb_idle_steps", "EPLB steps in which no rank had a token", labels,
            registry=r,
        )  # fmt: skip
        self.parse_errors = prom.Counter(
            "breakeven_eplb_parse_errors", "Lines naming an EPLB step that did not parse", labels,
            registry=r,
        )  # fmt: skip
        self.rotations = prom.Counter(
            "breakeven_eplb_log_rotations", "Times the EPLB log file was replaced", registry=r
        )
        self.truncations = prom.Counter(
            "breakeven_eplb_log_truncations", "Times the EPLB log file shrank in place", registry=r
        )
        # Every model series exists from the start, so "no steps yet" reads 0, not absent.
        self.steps.labels(default_model)
        self.idle_steps.labels(default_model)
        self.parse_errors.labels(default_model)

    def line(self, text: str) -> None:
        """Account for one log line; never raises for its content."""
        try:
            step = eplb.parse_line(text)
        except eplb.MalformedLine:
            self.parse_errors.labels(self.default_model).inc()
            return
        if step is None:
            return  # another message of the EPLB logger
        model = step.model or self.default_model
        self.steps.labels(model).inc()
        ratio = step.max_over_mean
        if ratio is None:
            self.idle_steps.labels(model).inc()
            return
        self.ratio.labels(model).set(ratio)
        self.ratio_steps.labels(model).observe(ratio)
        self.balancedness.labels(model).set(step.balancedness)
        self.avg_tokens.labels(model).set(step.avg_tokens)
        self.max_tokens.labels(model).set(step.max_tokens)

    def malformed(self) -> None:
        self.parse_errors.labels(self.default_model).inc()


@dataclass
class Follower:
    """Reads the complete lines appended to `path`, like `tail -F`.

    RotatingFileHandler rotates by renaming the file to `<path>.1` and opening a new `<path>`:
    a changed inode. Then the old file is read to its end through the descriptor still open,
    `<path>.1` too when it is neither (two rotations between polls), and the new file from its
    start. A file that shrinks in place (truncation) is read again from its start.
    """

    path: Path
    _file: BinaryIO | None = None
    _inode: int | None = None
    _partial: bytes = b""
    rotations: int = 0
    truncations: int = 0
    dropped: int = 0  # partial lines lost to a rotation or truncation, or too long
    _seen: set[int] = field(default_factory=set)  # inodes read: the current and the previous

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self) -> Iterator[str]:
        """The lines completed since the last poll (decoded as UTF-8, bad bytes replaced)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if self._file is None:
            if stat is None:
                return
            yield from self._open(stat.st_ino)
            return
        if stat is not None and stat.st_ino != self._inode:
            yield from self._read()  # the rest of the rotated file, through our descriptor
            self._drop_partial()
            self.close()
            self.rotations += 1
            # only the file just left counts as read: an older inode may be reused
            self._seen = {self._inode} if self._inode is not None else set()
            yield from self._read_backup(stat.st_ino)
            yield from self._open(stat.st_ino)
            return
        if stat is not None and self._file is not None and stat.st_size < self._file.tell():
            self.truncations += 1
            self._drop_partial()
            self._file.seek(0)
        yield from self._read()

    def _open(self, inode: int) -> Iterator[str]:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - held open across polls
        except FileNotFoundError:
            return
        self._inode = os.fstat(self._file.fileno()).st_ino
        self._seen.add(self._inode)
        yield from self._read()

    def _read_backup(self, new_inode: int) -> Iterator[str]:
        backup = self.path.with_name(self.path.name + ".1")
        try:
            with open(backup, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                if inode in self._seen or inode == new_inode:
                    return
                self._seen.add(inode)
                data = f.read()
        except FileNotFoundError:
            return
        *lines, rest = data.split(b"\n")
        for raw in lines:
            yield raw.decode("utf-8", "replace")
        if rest:
            self.dropped += 1

    def _read(self) -> Iterator[str]:
        assert self._file is not None
        while True:
            chunk = self._file.read(1 << 16)
            if not chunk:
                break
            data = self._partial + chunk
            *lines, self._partial = data.split(b"\n")
            for raw in lines:
                yield raw.decode("utf-8", "replace")
            if len(self._partial) > MAX_LINE:
                self._partial = b""
                self.dropped += 1

    def _drop_partial(self) -> None:
        if self._partial:
            self.dropped += 1
            self._partial = b""


def run(
    log_file: Path,
    port: int,
    address: str,
    model: str,
    poll_interval: float,
    stop: threading.Event,
) -> None:
    """Serve /metrics on address:port and follow `log_file` until `stop` is set."""
    metrics = Metrics(model)
    server, thread = prom.start_http_server(port, addr=address, registry=metrics.registry)
    follower = Follower(log_file)
    rotations = truncations = dropped = 0
    try:
        while True:
            for line in follower.poll():
                metrics.line(line)
            metrics.rotations.inc(follower.rotations - rotations)
            metrics.truncations.inc(follower.truncations - truncations)
            for _ in range(follower.dropped - dropped):
                metrics.malformed()
            rotations, truncations = follower.rotations, follower.truncations
            dropped = follower.dropped
            if stop.wait(poll_interval):
                break
    finally:
        follower.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
