"""Rendering: a plan, its mode and its sizing -> the Kubernetes objects that serve it.

This is the last pure step of the pipeline (facts -> rubric.decide -> capacity.size ->
rendering.render -> manifests): it turns a decision into the Deployment or LeaderWorkerSet a
platform team would otherwise write by hand, correct for the vLLM version the plan runs, plus the
one Service whose selector says which mode serves. `breakeven plan --render` and the operator call
the same functions; the operator adds owner references and applies the result.

    rendering/
      workloads.py   render(), service(), names and selectors
      versions.py    which vLLM release, and which flags it has (data/vllm_flags.yaml)
      telemetry.py   EPLB telemetry of MoE workloads: logging ConfigMap, exporter sidecar
      names.py       DNS-1123 names and label values with hashed truncation
      errors.py      RenderError

Pure: imports neither kopf, nor the Kubernetes client, nor httpx; no clock, no randomness.
"""

from __future__ import annotations

from breakeven.core.rendering.errors import RenderError
from breakeven.core.rendering.workloads import (
    prefill_workload_name,
    render,
    resolve_vllm_version,
    selector_labels,
    service,
    service_name,
    workload_name,
    workload_names,
)

__all__ = [
    "RenderError",
    "prefill_workload_name",
    "render",
    "resolve_vllm_version",
    "selector_labels",
    "service",
    "service_name",
    "workload_name",
    "workload_names",
]
