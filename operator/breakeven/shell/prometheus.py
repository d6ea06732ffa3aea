"""Reading a plan's traffic from Prometheus: the I/O half (httpx).

`breakeven.core.traffic` builds the PromQL and reduces the answers; this module only sends the
requests and hands the bodies back:

    core.traffic.batches ──> read_traffic: POST /api/v1/query_range, /query ──> core.traffic.reduce

What it must not do: raise because Prometheus is down, slow or wrong, or take long. Every failure
(after one retry with backoff on connection errors, timeouts and 5xx) becomes a line in
`facts.Traffic.errors` for the plans it touches, and the rubric rows that need the missing numbers
say `Unknown`. A whole read ends within `Settings.deadline_s` (15 s): a request gets at most 5 s,
no attempt starts past the deadline, and the client does no retries of its own (`client()`).
An answer that is not JSON, or nests deeper than the parser goes, is an invalid response.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from breakeven.core import facts
from breakeven.core.traffic import (
    OUTPUT_LENGTH,
    PROMPT_LENGTH,
    Answer,
    Answers,
    Batch,
    Failed,
    TrafficQuery,
    balance_promql,
    batches,
    expert_promql,
    length_promql,
    parse,
    query_for,
    recent_promql,
    reduce,
    tokens_promql,
)

__all__ = ["OnError", "Settings", "TrafficQuery", "query_for", "read_one", "read_traffic"]

OnError = Callable[[str, str], None]
"""Called once per failed request as on_error(prometheus url, short reason), e.g. for a counter
labelled by reason: `timeout`, `unreachable`, `http 503`, `bad_data`, `invalid response`."""


# ---------------------------------------------------------------------------------- I/O (shell)


@dataclass(frozen=True)
class Settings:
    """How hard to try. Retries cover connection errors, timeouts and HTTP 5xx/429; they are
    the reader's only retries (the client's transport must not retry too, see `client()`)."""

    timeout_s: float = 5.0  # per request, connecting included
    attempts: int = 2
    backoff_s: float = 0.5  # before the 2nd attempt; doubles each time
    max_backoff_s: float = 2.0
    concurrency: int = 8  # requests in flight at once, all batches together
    deadline_s: float = 15.0  # the whole read: no attempt starts or runs past it


def client() -> httpx.AsyncClient:
    """The operator's Prometheus client: no transport retries (the reader's own attempts are
    the only ones, so one read's time stays bounded) and small timeouts."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(Settings.timeout_s, connect=2.0),
        transport=httpx.AsyncHTTPTransport(retries=0),
    )


def _deadline(settings: Settings) -> float:
    return time.monotonic() + settings.deadline_s


async def _ask(
    client: httpx.AsyncClient,
    url: str,
    path: str,
    form: Mapping[str, str],
    settings: Settings,
    limit: asyncio.Semaphore,
    on_error: OnError | None,
    deadline: float,
) -> Answer:
    """One Prometheus API request with retries, all within `deadline` (time.monotonic());
    never raises for Prometheus problems."""
    failed, tries = Failed(f"prometheus {url}: no request sent", "invalid request"), 0
    while tries < max(1, settings.attempts):
        if tries:
            delay = min(settings.backoff_s * 2 ** (tries - 1), settings.max_backoff_s)
            if time.monotonic() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        left = deadline - time.monotonic()
        if left <= 0:
            failed = Failed(
                f"prometheus {url}: no answer within the read's {settings.deadline_s:g}s",
                "timeout",
            )
            break
        tries += 1
        answer, retry = await _attempt(client, url, path, form, settings, limit, left)
        if not isinstance(answer, Failed):
            return answer
        failed = answer
        if not retry:
            break
    if tries > 1:
        failed = Failed(f"{failed.message} (after {tries} attempts)", failed.reason)
    if on_error is not None:
        on_error(url, failed.reason)
    return failed


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    path: str,
    form: Mapping[str, str],
    settings: Settings,
    limit: asyncio.Semaphore,
    left: float,
) -> tuple[Answer, bool]:
    """One try, in at most `left` seconds (waiting for a slot included): the answer, or the
    failure and whether it is worth retrying."""
    where = f"prometheus {url}"
    timeout = min(settings.timeout_s, left)
    try:
        async with asyncio.timeout(left):
            async with limit:
                response = await client.post(url + path, data=dict(form), timeout=timeout)
    except (httpx.TimeoutException, TimeoutError) as exc:
        return Failed(
            f"{where}: timed out after {timeout:g}s ({type(exc).__name__})", "timeout"
        ), True
    except httpx.TransportError as exc:
        return Failed(f"{where}: unreachable ({type(exc).__name__}: {exc})", "unreachable"), True
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # e.g. a URL httpx cannot parse
        return Failed(f"{where}: {type(exc).__name__}: {exc}", "invalid request"), False
    status = response.status_code
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested deeper than a parser goes
        body = None
    if isinstance(body, dict) and body.get("status") == "error":
        kind = str(body.get("errorType") or f"http {status}")
        message = f"{where}: {kind}: {body.get('error', '')}".rstrip(": ")
        return Failed(message, kind), status >= 500 or status == 429
    if status >= 400 or body is None:
        text = " ".join(response.text.split())[:200]
        reason = f"http {status}" if status >= 400 else "invalid response"
        return Failed(f"{where}: HTTP {status} from {path}: {text}".rstrip(": "), reason), (
            status >= 500 or status == 429
        )
    try:
        return parse(body), False
    except ValueError as exc:
        return Failed(f"{where}: invalid response from {path}: {exc}", "invalid response"), False


async def _read_batch(
    client: httpx.AsyncClient,
    batch: Batch,
    end: float,
    settings: Settings,
    limit: asyncio.Semaphore,
    on_error: OnError | None,
    deadline: float,
) -> dict[str, facts.Traffic]:
    step = batch.step_s
    real_end = end
    end = math.floor(end / step) * step  # aligned, so repeated reads see the same points
    at = f"{end:.3f}"

    def instant(query: str) -> Awaitable[Answer]:
        form = {"query": query, "time": at}
        return _ask(client, batch.url, "/api/v1/query", form, settings, limit, on_error, deadline)

    ranged = {"query": tokens_promql(batch), "start": f"{end - batch.window_s:.3f}",
              "end": at, "step": f"{step}s"}  # fmt: skip
    now_form = {"query": recent_promql(batch), "time": f"{real_end:.3f}"}

    async def optional(query: str | None, at_now: bool = False) -> Answer | None:
        if query is None:
            return None
        if not at_now:
            return await instant(query)
        form = {"query": query, "time": f"{real_end:.3f}"}
        return await _ask(client, batch.url, "/api/v1/query", form, settings, limit, on_error,
                          deadline)  # fmt: skip

    tokens, prompt, output, experts, recent, balance = await asyncio.gather(
        _ask(client, batch.url, "/api/v1/query_range", ranged, settings, limit, on_error, deadline),
        instant(length_promql(batch, PROMPT_LENGTH)),
        instant(length_promql(batch, OUTPUT_LENGTH)),
        optional(expert_promql(batch)),
        _ask(client, batch.url, "/api/v1/query", now_form, settings, limit, on_error, deadline),
        # At the real current time, like the recent peak: a trial's newest EPLB steps count.
        optional(balance_promql(batch), at_now=True),
    )
    return reduce(batch, Answers(tokens, prompt, output, experts, recent, balance))


async def read_traffic(
    client: httpx.AsyncClient,
    queries: Sequence[TrafficQuery],
    now: float | None = None,
    *,
    settings: Settings | None = None,
    on_error: OnError | None = None,
) -> dict[str, facts.Traffic]:
    """Every query's traffic facts, keyed by `TrafficQuery.key`, read with one request per metric
    per batch. Never raises for Prometheus problems: they become `facts.Traffic.errors`."""
    settings = settings or Settings()
    end = time.time() if now is None else now
    limit = asyncio.Semaphore(max(1, settings.concurrency))
    deadline = _deadline(settings)
    results = await asyncio.gather(
        *(
            _read_batch(client, b, end, settings, limit, on_error, deadline)
            for b in batches(queries)
        )
    )
    return {key: traffic for result in results for key, traffic in result.items()}


async def read_one(
    client: httpx.AsyncClient,
    query: TrafficQuery,
    now: float | None = None,
    *,
    settings: Settings | None = None,
) -> facts.Traffic:
    """One plan's traffic facts (the CLI's and the tests' convenience)."""
    return (await read_traffic(client, [query], now, settings=settings))[query.key]
