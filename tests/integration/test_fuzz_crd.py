"""Fuzz: generated ServingPlans against the CRD on the real API server (server-side dry-run
create). The API server and the Python model agree on accept or reject; a rejection names a
field the model names too. Counts are printed at the end of the session."""

from __future__ import annotations

from typing import Any

import pytest
from bad_input import plan_object
from crd_checks import dry_run_create
from fuzzing import SETTINGS, count, spec_fragments
from hypothesis import given

from breakeven.shell import inputs
from e2e.fixtures import ClusterHandle

pytestmark = pytest.mark.integration


@SETTINGS
@given(spec=spec_fragments(json_safe=True))
def test_the_api_server_and_the_model_agree(
    crd_installed: ClusterHandle, namespace: str, spec: dict[str, Any]
) -> None:
    obj = plan_object(spec)
    server = dry_run_create(crd_installed, namespace, obj)
    try:
        inputs.parse_plan(obj)
        model = None
    except inputs.InputError as exc:
        model = str(exc)
    if (server is None) != (model is None):
        count("crd", "disagreed")
    else:
        count("crd", "accepted" if server is None else "rejected")
    assert (server is None) == (model is None), f"API server: {server}\nmodel: {model}"
    if server is not None and model is not None:
        fields = [line.split(": ")[0].split(".") for line in model.splitlines()[1:]]
        # The API server names the field, or for a map's key the map (`spec.traffic.selector`
        # where the model says `spec.traffic.selector.KEY.[key]`): a path the model names, or
        # a prefix of it of at least three parts (`spec.<section>.<field>`), is in the message.
        named = {
            ".".join(parts[:i])
            for parts in fields
            for i in range(min(3, len(parts)), len(parts) + 1)
        }
        assert any(path in server for path in named), (server, model)
