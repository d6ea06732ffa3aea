"""What vLLM and the EPLB sidecar would do inside a MoE pod, for a cluster whose pods run nothing.

kwok pods run no containers, so for a trial pod the e2e tests run the real `breakeven eplb-exporter`
process here, on 127.0.0.1, following a log file this module appends vLLM-format EPLB step lines to
(vLLM 0.13.0's wording, vllm/distributed/eplb/eplb_state.py line 588, docs/telemetry.md), and the
test Prometheus scrapes it under the pod's labels (namespace, pod), as a Kubernetes scrape would.
The process is stopped by its PID.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import httpx

from e2e.proc import StartError, free_port, wait_until
from e2e.prom import LocalPrometheus

ENTRY_POINT = Path(sys.executable).parent / "breakeven"
LINE = (
    "INFO 11-29 10:00:00 [eplb_state.py:588] EPLB step: {n} for model {model}: "
    "avg_tokens={avg:.2f}, max_tokens={max:d}, balancedness={b:.4f}\n"
)


class PodExporter:
    """One MoE pod's EPLB log and exporter, scraped by `prom` as `namespace`/`pod`."""

    def __init__(
        self, prom: LocalPrometheus, workdir: Path, namespace: str, pod: str, model: str
    ) -> None:
        self.prom, self.namespace, self.pod, self.model = prom, namespace, pod, model
        self.workdir = workdir
        self.log = workdir / "eplb.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.steps = 0
        self.name = f"{namespace}-{pod}"

    def start(self) -> PodExporter:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self.port = free_port()
        out = (self.workdir / "exporter.out").open("wb")
        self.proc = subprocess.Popen(
            [str(ENTRY_POINT), "eplb-exporter", "--log-file", str(self.log),
             "--port", str(self.port), "--address", "127.0.0.1", "--model", self.model,
             "--poll-interval", "0.1"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.close()
        proc = self.proc

        def serving() -> bool:
            if proc.poll() is not None:
                raise StartError(f"the EPLB exporter exited: {self.workdir / 'exporter.out'}")
            url = f"http://127.0.0.1:{self.port}/metrics"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until("the pod's EPLB exporter", serving, 30)
        except BaseException:
            self.stop()
            raise
        labels = {"namespace": self.namespace, "pod": self.pod}
        self.prom.add_target(self.name, f"127.0.0.1:{self.port}", labels)
        return self

    def write(self, ratios: Iterable[float], avg: float = 1000.0) -> None:
        """EPLB steps whose busiest rank carries `ratio` x the mean, as rank 0 logs them."""
        lines = []
        for ratio in ratios:
            maximum = round(avg * ratio)
            lines.append(
                LINE.format(n=self.steps, model=self.model, avg=avg, max=maximum, b=avg / maximum)
            )
            self.steps += 1
        with self.log.open("a") as f:
            f.write("".join(lines))

    def stop(self) -> None:
        self.prom.remove_target(self.name)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> PodExporter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
