"""A local Prometheus with weeks of backfilled vLLM traffic and live scrape targets.

Breakeven reads traffic history from Prometheus. Tests need a real Prometheus (real PromQL, real
rate() and histogram_quantile()) holding known history, so this module backfills synthetic profiles
from e2e.traffic with `promtool tsdb create-blocks-from openmetrics` into a fresh TSDB, then starts
Debian's `prometheus` on a free 127.0.0.1 port, scraping live exporters. Stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from e2e.proc import ProcessGroup, StartError, free_port, wait_until
from e2e.traffic import BLOCK_SECONDS, HistoryStats, LiveExporter, TrafficSpec, write_openmetrics


def _log(message: str) -> None:
    print(f"[prometheus] {message}", file=sys.stderr, flush=True)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StartError(
            f"`{name}` is not installed: run `make prometheus-install` (Debian package)"
        )
    return path


class LocalPrometheus:
    """Prometheus in `workdir`, backfilled with `backfill` specs and scraping `live_targets`.

    `live_targets` are host:port strings or LiveExporter objects. `url` is the HTTP API base.
    `target_labels` adds labels to a target's series (host:port -> labels), as a Kubernetes
    scrape adds the pod's namespace. `add_target`/`remove_target` change targets while it runs
    (a file_sd job, as pods come and go).
    """

    def __init__(
        self,
        workdir: str | Path,
        backfill: Sequence[TrafficSpec] = (),
        live_targets: Sequence[str | LiveExporter] = (),
        days: float = 14.0,
        step: int = 60,
        scrape_interval: str = "1s",
        timeout: float = 60.0,
        target_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.target_labels = {t: dict(labels) for t, labels in (target_labels or {}).items()}
        self.workdir = Path(workdir).resolve()
        self.backfill = list(backfill)
        self.live_targets = list(live_targets)
        self.days = days
        self.step = step
        self.scrape_interval = scrape_interval
        self.timeout = timeout
        self.group = ProcessGroup(self.workdir)
        self.port = 0
        self.history: HistoryStats | None = None
        self.backfill_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalPrometheus:
        prometheus = _tool("prometheus")
        if any(p.alive() for p in ProcessGroup.load(self.workdir).procs):
            raise StartError(f"a Prometheus already runs from {self.workdir}")
        try:
            self._start(prometheus)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.group.stop_all()

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, prometheus: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(self.workdir / "logs", ignore_errors=True)
        data.mkdir()
        if self.backfill:
            self._backfill(data)
        self.port = free_port()
        config = self.workdir / "prometheus.yml"
        targets = [t.target if isinstance(t, LiveExporter) else t for t in self.live_targets]
        scrape = {
            "job_name": "live",
            "scrape_interval": self.scrape_interval,
            "scrape_timeout": self.scrape_interval,
            "static_configs": [{"targets": [t]} for t in targets if t not in self.target_labels]
            + [
                {"targets": [t], "labels": self.target_labels[t]}
                for t in targets
                if t in self.target_labels
            ],
        }
        self.targets_dir.mkdir(exist_ok=True)
        pods = {
            "job_name": "pods",
            "scrape_interval": self.scrape_interval,
            "scrape_timeout": self.scrape_interval,
            "honor_labels": True,
            "file_sd_configs": [
                {"files": [str(self.targets_dir / "*.json")], "refresh_interval": "1s"}
            ],
        }
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": self.scrape_interval,
                        "evaluation_interval": self.scrape_interval,
                    },
                    "scrape_configs": [*([scrape] if targets else []), pods],
                }
            )
        )
        _log(f"starting prometheus on {self.url}")
        proc = self.group.start("prometheus", [
            prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=30d", "--log.level=warn",
        ])  # fmt: skip

        def ready() -> bool:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        wait_until("prometheus /-/ready", ready, self.timeout, [proc])
        if targets:
            # Prometheus applies target sets every 5 s, so the first scrape comes a while later.
            wait_until("the first scrape of every live target", self._targets_up, self.timeout,
                       [proc])  # fmt: skip

    @property
    def targets_dir(self) -> Path:
        return self.workdir / "targets"

    def add_target(self, name: str, target: str, labels: Mapping[str, str]) -> None:
        """Scrape `target` (host:port) with `labels` from now on (the `pods` job)."""
        tmp = self.targets_dir / f".{name}.tmp"
        tmp.write_text(json.dumps([{"targets": [target], "labels": dict(labels)}]))
        tmp.rename(self.targets_dir / f"{name}.json")  # atomic: never a half-written file

    def remove_target(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def _targets_up(self) -> bool:
        active = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def _backfill(self, data: Path) -> None:
        promtool = _tool("promtool")
        started = time.monotonic()
        staging = self.workdir / "openmetrics"
        shutil.rmtree(staging, ignore_errors=True)
        self.history = write_openmetrics(
            self.backfill, staging / "history.om", self.days, self.step, window=BLOCK_SECONDS
        )
        _log(
            f"backfilling {self.history.samples:,} samples of {self.history.series} series "
            f"({self.history.bytes / 1e6:.0f} MB of OpenMetrics in {len(self.history.paths)} files)"
        )

        def create(path: Path) -> None:
            r = subprocess.run(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(data)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if r.returncode != 0:
                raise StartError(f"promtool failed on {path.name}: {r.stderr.strip()[-2000:]}")
            path.unlink()

        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(create, p) for p in self.history.paths]:
                future.result()
        shutil.rmtree(staging, ignore_errors=True)
        self.backfill_seconds = time.monotonic() - started
        _log(f"backfill took {self.backfill_seconds:.1f}s")

    # -- queries ------------------------------------------------------------------------------

    def _api(self, path: str, params: dict[str, Any]) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(
                f"PromQL {params.get('query')!r} failed: {body.get('error', r.text)}"
            )
        return body["data"]["result"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the `result` list of the API answer."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        return list(self._api("query", params))

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """A range query; each result has `metric` and `values` ([[ts, "value"], ...])."""
        params = {"query": promql, "start": start, "end": end, "step": step}
        return list(self._api("query_range", params))

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        """The value of a query that returns one series, or None when it returns none."""
        result = self.query(promql, at)
        if not result:
            return None
        return float(result[0]["value"][1])
