"""The e2e load generator (e2e/inference_sim.py) against a stub OpenAI endpoint on 127.0.0.1.

No simulator, cluster or Prometheus: they carry no marker and run in the unit tier, so a broken
generator shows up before the e2e suite starts its simulators.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from e2e.inference_sim import MESSAGE_OVERHEAD, LoadGenerator, PromptShape


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: the generator's bursts of new connections overflowed
    # it and the kernel reset some (ECONNRESET, counted as failed requests) on a busy machine.
    request_queue_size = 128


class Stub:
    """Answers /v1/chat/completions as the simulator does: usage from the words and max_tokens."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.bodies.append(body)
                words = len(body["messages"][0]["content"].split())
                usage = {
                    "prompt_tokens": words + MESSAGE_OVERHEAD,
                    "completion_tokens": body["max_tokens"],
                }
                out = json.dumps({"usage": usage}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.server.shutdown()
    s.server.server_close()


def wait(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_prompt_shape_draws_its_median_and_spread() -> None:
    rng = random.Random(1)
    lengths = sorted(PromptShape(1000, 6.0).draw(rng) for _ in range(20_000))
    p50, p90 = statistics.median(lengths), lengths[int(0.9 * len(lengths))]
    assert math.isclose(p50, 1000, rel_tol=0.05)
    assert math.isclose(p90 / p50, 6.0, rel_tol=0.1)
    assert max(PromptShape(1000, 6.0, longest=3000).draw(rng) for _ in range(2000)) == 3000
    assert {PromptShape(700, 1.0).draw(rng) for _ in range(10)} == {700}


@pytest.mark.parametrize(
    "args", [(0, 1.5), (5000, 1.5, 1000), (1000, 0.5)], ids=["median0", "over-longest", "p90<p50"]
)
def test_prompt_shape_rejects_impossible_shapes(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="median <= longest and p90/p50 >= 1"):
        PromptShape(*args)


def test_requests_carry_the_model_and_the_answer_length_and_the_tally_is_the_usage(
    stub: Stub,
) -> None:
    gen = LoadGenerator([stub.url], "org/m", 200_000, PromptShape(50, 2.0), output_ratio=0.5)
    with gen:
        wait(lambda: gen.ok >= 30)
        gen.set_rate(0)
        wait(lambda: gen.in_flight == 0)
        sent = stub.count()
        time.sleep(1)  # at rate 0 nothing more goes out
        assert stub.count() == sent
    assert gen.failed == 0 and gen.ok == sent, gen.summary()
    expected = 0
    for body in stub.bodies:
        assert body["model"] == "org/m" and body["ignore_eos"] is True
        words = len(body["messages"][0]["content"].split())
        assert body["max_tokens"] == max(1, round(words * 0.5))
        expected += words + MESSAGE_OVERHEAD + body["max_tokens"]
    assert gen.tokens == expected


def test_requests_alternate_between_pods_and_refusals_are_counted() -> None:
    good, bad = Stub(), Stub(status=400)
    try:
        gen = LoadGenerator([good.url, bad.url], "org/m", 100_000, PromptShape(20, 1.0))
        with gen:
            wait(lambda: gen.ok >= 10 and gen.failed >= 10)
        assert abs(good.count() - bad.count()) <= gen.max_in_flight
        assert gen.last_error.startswith("HTTP 400")
    finally:
        for s in (good, bad):
            s.server.shutdown()
            s.server.server_close()


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="tokens_per_s must be >= 0"):
        LoadGenerator(["http://127.0.0.1:1"], "m", -1)
