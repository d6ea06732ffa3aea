"""Events are posted off the reconcile's path, a few at a time, and never dropped silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from breakeven.core import switching
from breakeven.shell import publish

BODY = {
    "metadata": {
        "name": "web",
        "namespace": "team",
        "uid": "u",
        "resourceVersion": "7",
        "managedFields": [{"manager": "kubectl"}],
    },
    "status": {"placements": {"Dense": {"nodes": ["n1", "n2"]}}},
}


class SlowEvents:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.posted: list[tuple[Mapping[str, Any], str]] = []
        self.release = asyncio.Event()

    async def post_event(self, plan: Mapping[str, Any], type: str, reason: str, msg: str) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        self.posted.append((plan, reason))


def events(n: int) -> list[switching.Event]:
    return [
        switching.Event(type="Normal", reason=f"Reason{i}", message="message") for i in range(n)
    ]


async def test_events_are_posted_a_few_at_a_time_each_with_the_plans_identity_only() -> None:
    api = SlowEvents()
    publisher = publish.Publisher(api)  # type: ignore[arg-type]
    publisher.post(BODY, events(3 * publish.POSTING))  # returns at once: nothing awaited
    await asyncio.sleep(0.01)
    assert api.in_flight == publish.POSTING and not api.posted
    api.release.set()
    await asyncio.gather(*publisher._posting)
    assert api.most == publish.POSTING and len(api.posted) == 3 * publish.POSTING
    assert api.posted[0][0] == {
        "metadata": {"name": "web", "namespace": "team", "uid": "u", "resourceVersion": "7"}
    }


async def test_events_beyond_the_waiting_bound_are_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(publish, "WAITING_MAX", 2)
    api = SlowEvents()
    publisher = publish.Publisher(api)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="breakeven"):
        publisher.post(BODY, events(3))
    assert len(publisher._posting) == 2
    assert "dropped the Normal Event Reason2 of team/web" in caplog.text
    api.release.set()
    await asyncio.gather(*publisher._posting)
    assert [reason for _, reason in api.posted] == ["Reason0", "Reason1"]


async def test_a_failed_post_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing:
        async def post_event(self, *args: Any) -> None:
            raise RuntimeError("refused")

    publisher = publish.Publisher(Refusing())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="breakeven"):
        publisher.post(BODY, events(1))
        await asyncio.gather(*publisher._posting, return_exceptions=True)
        await asyncio.sleep(0)
    assert "could not post an event: refused" in caplog.text
