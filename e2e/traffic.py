"""Synthetic vLLM traffic: weeks of metric history as OpenMetrics, and a live exporter.

Breakeven decides dense vs expert-parallel serving from traffic history (token rates, prompt-length
distribution, per-expert load) and falls back when live traffic drops. Tests need that history to
exist before they start, with known shapes, and need live traffic they can change mid-test. This
module writes named traffic profiles as OpenMetrics (which `promtool tsdb create-blocks-from
openmetrics` backfills into Prometheus) and exports live series with prometheus-client.

Series, all labelled model_name="<HF model id>" and namespace="<ns>":
  vllm:prompt_tokens_total, vllm:generation_tokens_total         counters
  vllm:request_prompt_tokens_bucket{le}/_sum/_count              histogram (vLLM 1-2-5 buckets)
  vllm:num_requests_running                                      gauge
  moe_expert_tokens_total{expert="0".."N-1"}                     counter (tokens routed x top_k)
  DCGM_FI_DEV_GPU_UTIL, DCGM_FI_PROF_DRAM_ACTIVE {gpu,Hostname,pod} gauges
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

# vLLM builds request_prompt_tokens buckets as 1-2-5 steps up to max_model_len; we keep 10..50000.
PROMPT_BUCKETS: tuple[float, ...] = (
    10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
)  # fmt: skip
DEFAULT_BASE_RATE = 60_000.0
REQUEST_LATENCY_S = 4.0  # for vllm:num_requests_running = request rate x latency


@dataclass(frozen=True)
class Profile:
    """A named traffic shape. Rates are prompt+generation tokens/s relative to a base rate."""

    name: str
    description: str
    prompt_median: float  # tokens
    prompt_p90_over_p50: float  # of the true (lognormal) prompt-length distribution
    expert_max_over_mean: float | None  # None: the model exports no per-expert series

    @property
    def prompt_sigma(self) -> float:
        return math.log(self.prompt_p90_over_p50) / 1.2815515655446004  # z(0.9)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("sustained", "steady diurnal load around base: p10 >= 0.7 p50, p95 <= 1.3 p50",
                1000, 1.5, 1.2),
        Profile("bursty", "0.1 x base, with one 20-40 min burst to 1.5 x base per 4 h (random)",
                1000, 1.5, 1.2),
        Profile("low", "steady 0.05 x base", 1000, 1.5, 1.2),
        Profile("irregular", "sustained rates, heavy-tailed prompt lengths (p90/p50 = 6)",
                500, 6.0, 1.2),
        Profile("hot-expert", "sustained rates, one expert gets 3 x the mean load", 1000, 1.5, 3.0),
        Profile("no-expert-telemetry", "sustained rates, no moe_expert_tokens_total series",
                1000, 1.5, None),
    )
}  # fmt: skip


@dataclass(frozen=True)
class TrafficSpec:
    """One model's traffic: which series (labels) and which profile."""

    model: str
    namespace: str
    profile: str = "sustained"
    base_rate: float = DEFAULT_BASE_RATE  # prompt + generation tokens/s
    experts: int = 8
    top_k: int = 2  # experts per token: moe_expert_tokens_total sums to tokens x top_k
    gpus: int = 2  # DCGM series per model (GPUs of one replica shown)
    prompt_fraction: float = 0.75  # share of tokens that are prompt tokens

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {sorted(PROFILES)}")

    @property
    def seed(self) -> int:
        return zlib.crc32(f"{self.model}|{self.namespace}|{self.profile}".encode())

    @property
    def pod(self) -> str:
        short = self.model.rsplit("/", 1)[-1].lower().replace(".", "-").replace("_", "-")
        return f"{short[:40]}-0"


BURST_SLOT_S = 4 * 3600


def _in_burst(seed: int, t: float) -> bool:
    """One burst of 20-40 minutes at a random offset in every 4-hour slot (12.5% of the time)."""
    slot = int(t // BURST_SLOT_S)
    slot_rng = random.Random(seed * 1_000_003 + slot)
    length = slot_rng.uniform(20 * 60, 40 * 60)
    begin = slot * BURST_SLOT_S + slot_rng.uniform(0, BURST_SLOT_S - length)
    return begin <= t < begin + length


def rate_at(spec: TrafficSpec, t: float, rng: random.Random) -> float:
    """Token rate (prompt + generation, tokens/s) of `spec` at unix time `t`, with noise."""
    base = spec.base_rate
    diurnal = math.sin(2 * math.pi * (t % 86_400) / 86_400)
    if spec.profile == "low":
        return base * 0.05 * (1 + 0.1 * diurnal) * rng.uniform(0.97, 1.03)
    if spec.profile == "bursty":
        if _in_burst(spec.seed, t):
            return base * 1.5 * rng.uniform(0.9, 1.1)
        return base * 0.1 * rng.uniform(0.8, 1.2)
    return base * (1 + 0.15 * diurnal) * rng.uniform(0.95, 1.05)


def expected_rate(spec: TrafficSpec, t: float) -> float:
    """The noise-free rate at `t` (what a test compares PromQL results with)."""
    rng = random.Random(0)
    rng.uniform = lambda a, b: (a + b) / 2  # type: ignore[method-assign]
    return rate_at(spec, t, rng)


def expert_weights(spec: TrafficSpec) -> list[float]:
    """Share of routed tokens per expert (sums to 1)."""
    prof = PROFILES[spec.profile]
    n = spec.experts
    ratio = prof.expert_max_over_mean or 1.0
    if n <= 1:
        return [1.0]
    if ratio >= 2:  # one hot expert, the rest equal
        hot = ratio / n
        weights = [hot] + [(1 - hot) / (n - 1)] * (n - 1)
    else:  # a gentle linear skew whose max/mean is `ratio`
        span = ratio - 1
        raw = [1 - span + 2 * span * i / (n - 1) for i in range(n)]
        weights = [w / sum(raw) for w in raw]
    return weights


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def bucket_shares(profile: Profile) -> list[float]:
    """Cumulative share of requests at or below each PROMPT_BUCKETS bound (lognormal lengths)."""
    mu, sigma = math.log(profile.prompt_median), profile.prompt_sigma
    return [_normal_cdf((math.log(le) - mu) / sigma) for le in PROMPT_BUCKETS]


def mean_prompt_len(profile: Profile) -> float:
    return profile.prompt_median * math.exp(profile.prompt_sigma**2 / 2)


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


@dataclass
class _Family:
    name: str  # the family name in # TYPE lines
    kind: str
    help: str
    series: list[tuple[str, str, array[float]]] = field(default_factory=list)  # sample, labels, v


_FAMILIES = (
    ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed."),
    ("vllm:generation_tokens", "counter", "Number of generation tokens processed."),
    ("vllm:request_prompt_tokens", "histogram", "Number of prefill tokens processed per request."),
    ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches."),
    ("moe_expert_tokens", "counter", "Tokens routed to each expert (token x top_k assignments)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles the device memory interface is active."),
)


def _series_for(
    spec: TrafficSpec, times: Sequence[int], step: int, fams: dict[str, _Family]
) -> None:
    prof = PROFILES[spec.profile]
    rng = random.Random(spec.seed)
    n = len(times)
    base = [("model_name", spec.model), ("namespace", spec.namespace)]
    lb = _labels(base)
    shares = bucket_shares(prof)
    mean_len = mean_prompt_len(prof)
    weights = expert_weights(spec) if prof.expert_max_over_mean is not None else []

    prompt, gen = array("d", bytes(8 * n)), array("d", bytes(8 * n))
    buckets = [array("d", bytes(8 * n)) for _ in range(len(PROMPT_BUCKETS) + 1)]
    hsum, running = array("d", bytes(8 * n)), array("d", bytes(8 * n))
    experts = [array("d", bytes(8 * n)) for _ in weights]
    util = [array("d", bytes(8 * n)) for _ in range(spec.gpus)]
    dram = [array("d", bytes(8 * n)) for _ in range(spec.gpus)]
    p_acc = g_acc = r_acc = 0.0
    e_acc = [0.0] * len(weights)
    for i, t in enumerate(times):
        rate = rate_at(spec, t, rng) if i else 0.0  # counters start at 0
        p_acc += rate * spec.prompt_fraction * step
        g_acc += rate * (1 - spec.prompt_fraction) * step
        r_acc += rate * spec.prompt_fraction * step / mean_len
        prompt[i], gen[i] = round(p_acc), round(g_acc)
        for b, share in enumerate(shares):
            buckets[b][i] = round(r_acc * share)
        buckets[-1][i] = round(r_acc)
        hsum[i] = round(p_acc)
        req_rate = rate * spec.prompt_fraction / mean_len
        running[i] = round(req_rate * REQUEST_LATENCY_S * rng.uniform(0.9, 1.1), 1)
        for e, w in enumerate(weights):
            e_acc[e] += rate * spec.top_k * step * w * rng.uniform(0.97, 1.03)
            experts[e][i] = round(e_acc[e])
        load = min(1.0, rate / (spec.base_rate * 1.3))
        for g in range(spec.gpus):
            u = min(100.0, max(0.0, 100 * load * rng.uniform(0.95, 1.05)))
            util[g][i] = round(u, 1)
            dram[g][i] = round(u / 100 * 0.6, 4)

    fams["vllm:prompt_tokens"].series.append(("vllm:prompt_tokens_total", lb, prompt))
    fams["vllm:generation_tokens"].series.append(("vllm:generation_tokens_total", lb, gen))
    hist = fams["vllm:request_prompt_tokens"]
    for le, values in zip([*PROMPT_BUCKETS, math.inf], buckets, strict=True):
        le_s = "+Inf" if le == math.inf else f"{float(le)}"
        hist.series.append(
            ("vllm:request_prompt_tokens_bucket", _labels([*base, ("le", le_s)]), values)
        )
    hist.series.append(("vllm:request_prompt_tokens_sum", lb, hsum))
    hist.series.append(("vllm:request_prompt_tokens_count", lb, buckets[-1]))
    fams["vllm:num_requests_running"].series.append(("vllm:num_requests_running", lb, running))
    for e, values in enumerate(experts):
        fams["moe_expert_tokens"].series.append(
            ("moe_expert_tokens_total", _labels([*base, ("expert", str(e))]), values)
        )
    for g in range(spec.gpus):
        gl = _labels([*base, ("gpu", str(g)), ("Hostname", f"{spec.pod}-node"), ("pod", spec.pod)])
        fams["DCGM_FI_DEV_GPU_UTIL"].series.append(("DCGM_FI_DEV_GPU_UTIL", gl, util[g]))
        fams["DCGM_FI_PROF_DRAM_ACTIVE"].series.append(("DCGM_FI_PROF_DRAM_ACTIVE", gl, dram[g]))


@dataclass(frozen=True)
class HistoryStats:
    """What write_openmetrics wrote."""

    paths: list[Path]
    start: int
    end: int
    step: int
    series: int
    samples: int
    bytes: int


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


BLOCK_SECONDS = 2 * 3600  # promtool cuts blocks at 2h boundaries


def write_openmetrics(
    specs: Iterable[TrafficSpec],
    path: Path,
    days: float = 14.0,
    step: int = 60,
    end: float | None = None,
    window: int | None = None,
) -> HistoryStats:
    """Write `days` of history for every spec, one sample per `step` seconds, ending at `end`
    (default: now), as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`.

    With `window` (seconds), writes one file per aligned window instead, named
    `<path stem>-<window start>.om` beside `path`: promtool re-reads its whole input for every 2h
    block it cuts, so 2h windows make a 14-day backfill linear instead of quadratic in time.
    """
    end_ts = int(end if end is not None else time.time()) // step * step
    start_ts = end_ts - int(days * 86_400) // step * step
    times = list(range(start_ts, end_ts + 1, step))
    fams = {name: _Family(name, kind, help_) for name, kind, help_ in _FAMILIES}
    for spec in specs:
        _series_for(spec, times, step, fams)
    ranges: list[tuple[Path, int, int]] = []
    if window is None:
        ranges.append((path, 0, len(times)))
    else:
        lo = 0
        while lo < len(times):
            w_start = times[lo] // window * window
            hi = lo
            while hi < len(times) and times[hi] < w_start + window:
                hi += 1
            ranges.append((path.with_name(f"{path.stem}-{w_start}.om"), lo, hi))
            lo = hi
    samples = 0
    series = sum(len(f.series) for f in fams.values())
    size = 0
    for out_path, lo, hi in ranges:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", encoding="utf-8") as out:
            for fam in fams.values():
                if not fam.series:
                    continue
                out.write(f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} {fam.kind}\n")
                for sample, labels, values in fam.series:
                    samples += _write_series(out, f"{sample}{labels} ", values, times, lo, hi)
            out.write("# EOF\n")
        size += out_path.stat().st_size
    return HistoryStats([p for p, _, _ in ranges], start_ts, end_ts, step, series, samples, size)


def _write_series(
    out: IO[str], prefix: str, values: array[float], times: Sequence[int], lo: int, hi: int
) -> int:
    out.writelines(f"{prefix}{_fmt(values[i])} {times[i]}\n" for i in range(lo, hi))
    return hi - lo


# -- live traffic ---------------------------------------------------------------------------------


class LiveExporter:
    """A prometheus-client HTTP endpoint on 127.0.0.1 whose traffic a test changes while it runs.

        exporter = LiveExporter().start()
        traffic = exporter.add(TrafficSpec("org/model", "ns"), rate=60_000)
        traffic.set_rate(1_000)          # a drop the operator must notice
        exporter.stop()

    A background thread advances the counters every `tick` seconds at each stream's current rate.
    """

    def __init__(self, port: int = 0, tick: float = 0.5) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.port = port
        self.tick = tick
        base = ["model_name", "namespace"]
        self.prompt = Counter("vllm:prompt_tokens", "Prefill tokens.", base, registry=self.registry)
        self.gen = Counter("vllm:generation_tokens", "Generation tokens.", base,
                           registry=self.registry)  # fmt: skip
        self.hist = Histogram("vllm:request_prompt_tokens", "Prefill tokens per request.", base,
                              buckets=PROMPT_BUCKETS, registry=self.registry)  # fmt: skip
        self.running = Gauge("vllm:num_requests_running", "Running requests.", base,
                             registry=self.registry)  # fmt: skip
        self.experts = Counter("moe_expert_tokens", "Tokens routed per expert.", [*base, "expert"],
                               registry=self.registry)  # fmt: skip
        gpu = [*base, "gpu", "Hostname", "pod"]
        self.util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization.", gpu, registry=self.registry)
        self.dram = Gauge("DCGM_FI_PROF_DRAM_ACTIVE", "DRAM active.", gpu, registry=self.registry)
        self.streams: list[LiveTraffic] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: object | None = None

    @property
    def target(self) -> str:
        """host:port for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    def add(
        self, spec: TrafficSpec, rate: float | None = None, vllm_series: bool = True
    ) -> LiveTraffic:
        """A stream of `spec`'s series. `vllm_series=False`: only the per-expert counter and the
        DCGM gauges, for a model whose vllm:* series come from real simulator processes
        (e2e/inference_sim.py)."""
        stream = LiveTraffic(self, spec, spec.base_rate if rate is None else rate, vllm_series)
        with self._lock:
            self.streams.append(stream)
        return stream

    def start(self) -> LiveExporter:
        from e2e.proc import free_port

        self.port = self.port or free_port()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.registry))
        self._server = server
        threading.Thread(target=server.serve_forever, name="live-exporter", daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._server = None

    def __enter__(self) -> LiveExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            with self._lock:
                streams = list(self.streams)
            for stream in streams:
                stream._advance(now - last)
            last = now


def _handler(registry: object) -> type[BaseHTTPRequestHandler]:
    """Serves the registry in the classic text format (0.0.4) whatever the scraper asks for.

    prometheus-client answers an OpenMetrics Accept header with names whose ':' became '_'
    (vllm_prompt_tokens_total), and Prometheus 2.42 asks for OpenMetrics first; vLLM's series keep
    their colons in the text format.
    """
    from prometheus_client import generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry)  # type: ignore[arg-type]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the scraper gave up (its scrape timeout, on a busy machine)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


class LiveTraffic:
    """One model's live stream; `set_rate` changes prompt+generation tokens/s from now on."""

    def __init__(
        self, exporter: LiveExporter, spec: TrafficSpec, rate: float, vllm_series: bool = True
    ) -> None:
        self.exporter = exporter
        self.spec = spec
        self.rate = rate
        self.vllm_series = vllm_series
        self.profile = PROFILES[spec.profile]
        self._rng = random.Random(spec.seed)
        self._weights = expert_weights(spec) if self.profile.expert_max_over_mean else []
        self._pending_requests = 0.0

    def set_rate(self, tokens_per_s: float) -> None:
        self.rate = float(tokens_per_s)

    def _advance(self, dt: float) -> None:
        ex, spec = self.exporter, self.spec
        labels = (spec.model, spec.namespace)
        tokens = self.rate * dt
        if self.vllm_series:
            self._advance_vllm(dt)
        for e, w in enumerate(self._weights):
            ex.experts.labels(*labels, str(e)).inc(tokens * spec.top_k * w)
        util = 100 * min(1.0, self.rate / (spec.base_rate * 1.3))
        for g in range(spec.gpus):
            gl = (*labels, str(g), f"{spec.pod}-node", spec.pod)
            ex.util.labels(*gl).set(round(util, 1))
            ex.dram.labels(*gl).set(round(util / 100 * 0.6, 4))

    def _advance_vllm(self, dt: float) -> None:
        ex, spec, prof = self.exporter, self.spec, self.profile
        labels = (spec.model, spec.namespace)
        tokens = self.rate * dt
        prompt_tokens = tokens * spec.prompt_fraction
        ex.prompt.labels(*labels).inc(prompt_tokens)
        ex.gen.labels(*labels).inc(tokens - prompt_tokens)
        self._pending_requests += prompt_tokens / mean_prompt_len(prof)
        whole = int(self._pending_requests)
        self._pending_requests -= whole
        hist = ex.hist.labels(*labels)
        mu, sigma = math.log(prof.prompt_median), prof.prompt_sigma
        for _ in range(min(whole, 2000)):  # bounded work per tick
            hist.observe(self._rng.lognormvariate(mu, sigma))
        req_rate = self.rate * spec.prompt_fraction / mean_prompt_len(prof)
        ex.running.labels(*labels).set(round(req_rate * REQUEST_LATENCY_S, 1))
