"""Live vLLM series from real processes: llm-d-inference-sim pods and a load generator.

kwok pods run no vLLM, and the series Breakeven reads (`vllm:prompt_tokens_total`,
`vllm:generation_tokens_total`, `vllm:request_prompt_tokens_bucket`, labelled `model_name`) should
not be written by the harness: then the tests would only check that the harness agrees with itself.
So the live part of the e2e traffic comes from llm-d-inference-sim (github.com/llm-d/
llm-d-inference-sim, v0.10.2, built by e2e/controlplane/build.sh), a vLLM stand-in that answers the
OpenAI API with dummy text and keeps vLLM's metrics the way vLLM does, per request it served:

    SimPod        one simulated vLLM pod: a simulator process on a free port (started and stopped
                  by PID through e2e/proc.py), registered in the test Prometheus's `pods` job under
                  the pod's `namespace` and `pod`, as a Kubernetes scrape labels a pod's series
    LoadGenerator threads sending /v1/chat/completions round-robin to the pods at a token rate and
                  a prompt-length shape that a test changes while it runs
    LiveVllm      a model's pods plus the generator that feeds them

What the simulator exports, from its source at v0.10.2 (pkg/llm-d-inference-sim/metrics.go):
`vllm:prompt_tokens_total` and `vllm:generation_tokens_total` (counters, the names as written, so
no second `_total`), `vllm:request_prompt_tokens` and `vllm:request_generation_tokens`
(histograms with vLLM's 1-2-5 buckets up to `--max-model-len`, `Build125Buckets`),
`vllm:request_success_total{finish_reason}`, `vllm:num_requests_running`, all labelled
`model_name` (pkg/api/vllm-models.go, PromLabelModelName), whose value is the first
`--served-model-name` (pkg/common/config.go, DisplayModelName), as vLLM's is. They are recorded
once per finished request (recordRequestMetricsOnSuccess), served in the text format 0.0.4
(pkg/communication/http.go: promhttp without OpenMetrics). Differences from vLLM that do not
touch what Breakeven reads: no `engine` label (vLLM adds one, vllm/v1/metrics/loggers.py; the
reader sums it away), and the counters appear with the first request instead of at 0. With
`--force-dummy-tokenizer` (pkg/tokenizer/tokenizer.go) a prompt's tokens are its words and
punctuation marks plus the chat framing (measured: a one-message prompt of n words counts n + 5);
with `ignore_eos` the answer has exactly `max_tokens` tokens (pkg/dataset/dataset.go,
GetResponseTokens). A prompt plus `max_tokens` over `--max-model-len` is refused with HTTP 400.

The simulator listens on every IPv4 address (pkg/communication/http.go: `net.Listen("tcp4",
":<port>")`, no host flag at v0.10.2); the harness only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from e2e.cluster import BUILD_SCRIPT, cache_dir
from e2e.proc import Managed, ProcessGroup, StartError, free_port, stop_pid, wait_until
from e2e.prom import LocalPrometheus

NAME = "llm-d-inference-sim"
# vLLM's request_prompt_tokens buckets are 1-2-5 steps up to max_model_len (vLLM's
# build_1_2_5_buckets, the simulator's Build125Buckets): 65536 gives 1 ... 20000, 50000, so
# e2e/traffic.py's backfilled buckets (10 ... 50000) are all among them.
MAX_MODEL_LEN = 65536
# The simulator sizes some channels by (max-num-seqs + max-waiting-queue-length) x max-model-len
# (metrics.go, tpotChan): small queues keep that allocation small.
MAX_NUM_SEQS = 16
MAX_WAITING = 100
MESSAGE_OVERHEAD = 5  # chat framing the dummy tokenizer counts for one message (measured)
Z90 = 1.2815515655446004


def version() -> str:
    """INFERENCE_SIM_VERSION as build.sh pins it (the one place it is written)."""
    found = re.search(r"^INFERENCE_SIM_VERSION=(v[0-9][^\s]*)$", BUILD_SCRIPT.read_text(), re.M)
    if not found:
        raise RuntimeError(f"{BUILD_SCRIPT}: no INFERENCE_SIM_VERSION pinned")
    return found.group(1)


def binary() -> Path:
    """The cached simulator binary; build.sh builds what is missing."""
    path = cache_dir() / "bin" / f"{NAME}-{version()}"
    if not path.is_file():
        print(f"[inference-sim] {path.name} missing; running {BUILD_SCRIPT}", file=sys.stderr)
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=sys.stderr, check=False)
        if result.returncode != 0 or not path.is_file():
            raise StartError(f"{BUILD_SCRIPT} did not build {path} (exit {result.returncode})")
    return path


class SimPod:
    """One simulated vLLM pod of `model`, scraped by `prom` as `namespace`/`pod`."""

    def __init__(
        self,
        group: ProcessGroup,
        prom: LocalPrometheus,
        namespace: str,
        pod: str,
        model: str,
        served_model_name: str | None = None,
        seed: int = 1,
    ) -> None:
        self.group, self.prom = group, prom
        self.namespace, self.pod, self.model = namespace, pod, model
        self.served_model_name = served_model_name or model
        self.seed = seed
        self.port = 0
        self.proc: Managed | None = None
        self.name = f"sim-{namespace}-{pod}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimPod:
        self.port = free_port()
        argv = [
            str(binary()), "--port", str(self.port), "--model", self.model,
            "--served-model-name", self.served_model_name, "--force-dummy-tokenizer",
            "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", str(MAX_NUM_SEQS),
            "--max-waiting-queue-length", str(MAX_WAITING), "--seed", str(self.seed),
        ]  # fmt: skip
        self.proc = self.group.start(self.name, argv)

        def serving() -> bool:
            return httpx.get(f"{self.url}/metrics", timeout=2).status_code == 200

        try:
            wait_until(f"{self.name} /metrics", serving, 60, [self.proc])
        except BaseException:
            self.stop()
            raise
        labels = {"namespace": self.namespace, "pod": self.pod}
        self.prom.add_target(self.name, f"127.0.0.1:{self.port}", labels)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def stop(self) -> None:
        self.prom.remove_target(self.name)
        if self.proc is not None:
            stop_pid(self.proc.pid, self.proc.exe)
            if self.proc.popen is not None:
                self.proc.popen.wait(timeout=5)


@dataclass(frozen=True)
class PromptShape:
    """Prompt lengths in tokens: lognormal with this median and p90/p50, cut at `longest`."""

    median: float
    p90_over_p50: float = 1.5
    longest: int = 32_000  # + an answer as long stays under MAX_MODEL_LEN

    def __post_init__(self) -> None:
        if not (1 <= self.median <= self.longest) or self.p90_over_p50 < 1:
            raise ValueError(f"PromptShape: 1 <= median <= longest and p90/p50 >= 1, got {self}")

    def draw(self, rng: random.Random) -> int:
        sigma = math.log(self.p90_over_p50) / Z90
        length = rng.lognormvariate(math.log(self.median), sigma) if sigma else self.median
        return max(1, min(self.longest, round(length)))


# The shapes of e2e/traffic.py's `sustained` and (nearly) `irregular` profiles. The operator sizes
# both modes for the observed prompt and answer p50 (planning.workload_for), so a median far from
# the history's 1000 changes the deployments, and with them whether dense fits beside MoE.
REGULAR = PromptShape(1000, 1.5)  # histogram_quantile over the 1-2-5 buckets reads p90/p50 ~1.8
IRREGULAR = PromptShape(1000, 6.0)


class LoadGenerator:
    """Chat completions to `urls` (round robin) at `tokens_per_s` prompt + answer tokens.

    Each request's prompt length is drawn from `prompts`; its answer is `output_ratio` x the prompt
    (`max_tokens` with `ignore_eos`, so the simulator answers exactly that many). A scheduler
    thread spaces the requests by their tokens over the rate; a pool of threads sends them.
    `set_rate` and `set_prompts` apply from the next request. `tokens` counts what the simulators
    reported in `usage` (prompt + completion tokens), which is what their counters added.
    """

    def __init__(
        self,
        urls: Sequence[str],
        model: str,
        tokens_per_s: float,
        prompts: PromptShape = REGULAR,
        output_ratio: float = 1.0,
        seed: int = 7,
        workers: int = 16,
        max_in_flight: int = 64,
    ) -> None:
        if tokens_per_s < 0:
            raise ValueError(f"tokens_per_s must be >= 0, got {tokens_per_s}")
        self.urls = list(urls)
        self.model = model
        self.rate = float(tokens_per_s)
        self.prompts = prompts
        self.output_ratio = output_ratio
        self.max_in_flight = max_in_flight
        self._rng = random.Random(seed)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loadgen")
        self._client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=workers * 2))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_url = 0
        self.in_flight = 0
        self.sent = 0
        self.ok = 0
        self.failed = 0
        self.skipped = 0  # not sent: max_in_flight requests were already waiting for answers
        self.tokens = 0  # prompt + completion tokens the simulators reported
        self.last_error = ""
        self.prompt_lengths: deque[int] = deque(maxlen=2000)  # prompt tokens of the newest answers

    def set_rate(self, tokens_per_s: float) -> None:
        if tokens_per_s < 0:
            raise ValueError(f"tokens_per_s must be >= 0, got {tokens_per_s}")
        self.rate = float(tokens_per_s)
        self._changed.set()

    def set_prompts(self, prompts: PromptShape) -> None:
        self.prompts = prompts

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            rate = self.rate
            if rate <= 0:
                self._changed.wait(0.5)
                self._changed.clear()
                due = time.monotonic()
                continue
            prompt = self.prompts.draw(self._rng)
            answer = max(1, round(prompt * self.output_ratio))
            wait = due - time.monotonic()
            if wait > 0 and self._changed.wait(wait):
                self._changed.clear()  # a new rate: start its spacing from now
                due = time.monotonic()
                continue
            # Behind by more than a second (a starved CPU): skip ahead rather than burst.
            due = max(due, time.monotonic() - 1.0) + (prompt + MESSAGE_OVERHEAD + answer) / rate
            with self._lock:
                if self.in_flight >= self.max_in_flight:
                    self.skipped += 1
                    continue
                self.in_flight += 1
                self.sent += 1
                url = self.urls[self._next_url % len(self.urls)]
                self._next_url += 1
            self._pool.submit(self._send, url, prompt, answer)

    def _send(self, url: str, prompt: int, answer: int) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "a " * (prompt - 1) + "a"}],
            "max_tokens": answer,
            "ignore_eos": True,
        }
        try:
            r = self._client.post(f"{url}/v1/chat/completions", json=body)
            usage = r.json()["usage"] if r.status_code == 200 else None
            with self._lock:
                if usage is None:
                    self.failed += 1
                    self.last_error = f"HTTP {r.status_code}: {r.text[:200]}"
                else:
                    self.ok += 1
                    self.tokens += int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
                    self.prompt_lengths.append(int(usage["prompt_tokens"]))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            with self._lock:
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self.in_flight -= 1

    def summary(self) -> str:
        with self._lock:
            return (
                f"rate {self.rate:,.0f} tok/s, sent {self.sent}, ok {self.ok}, "
                f"failed {self.failed}, skipped {self.skipped}, tokens {self.tokens:,}"
                + (f", last error {self.last_error}" if self.last_error else "")
            )


class LiveVllm:
    """`replicas` simulated vLLM pods serving `served_model_name` in `namespace`, fed by one
    LoadGenerator at `tokens_per_s`. Processes are recorded in `<workdir>/pids.json`."""

    def __init__(
        self,
        prom: LocalPrometheus,
        workdir: Path,
        namespace: str,
        served_model_name: str,
        model: str = "deepseek-ai/DeepSeek-V3",
        replicas: int = 2,
        tokens_per_s: float = 0.0,
        prompts: PromptShape = REGULAR,
    ) -> None:
        self.prom, self.namespace = prom, namespace
        self.served_model_name, self.model = served_model_name, model
        self.group = ProcessGroup(workdir)
        prefix = _dns(served_model_name)
        self.pods = [
            SimPod(self.group, prom, namespace, f"{prefix}-sim-{i}", model, served_model_name, i)
            for i in range(replicas)
        ]
        self.tokens_per_s = tokens_per_s
        self.prompts = prompts
        self.generator: LoadGenerator | None = None

    def start(self) -> LiveVllm:
        try:
            for pod in self.pods:
                pod.start()
            self.generator = LoadGenerator(
                [p.url for p in self.pods], self.served_model_name, self.tokens_per_s, self.prompts
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.generator is not None:
            self.generator.stop()
        for pod in self.pods:
            pod.stop()
        self.group.stop_all()

    def dead(self) -> list[str]:
        """The pods whose simulator exited."""
        return [p.pod for p in self.pods if p.proc is not None and not p.alive()]

    def __enter__(self) -> LiveVllm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _dns(name: str) -> str:
    """A model name as a pod-name prefix: `e2e/live` -> `live`."""
    short = name.rsplit("/", 1)[-1].lower()
    return "".join(c if c.isalnum() else "-" for c in short).strip("-")[:40] or "model"
