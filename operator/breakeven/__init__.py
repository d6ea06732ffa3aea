"""Breakeven: serve each model dense or as an expert-parallel MoE, whichever pays.

The folder a module lives in decides its layer; import-linter (pyproject.toml) enforces it:

    breakeven.cli     the `breakeven` command (plan, estimate, explain, run)
        |
    breakeven.shell   I/O: kopf handlers, the reconcile, Prometheus (httpx), Kubernetes, metrics,
        |             input files
    breakeven.core    pure: API models, catalog, hardware, facts, capacity, rubric, planning,
                      switching, rendering, statuses, report; no I/O library, no clock

    breakeven.tools   development-time generators (CRD, RBAC, manifests, calibration); they
                      import the core only, and nothing at run time imports them

docs/architecture.md draws the path of one reconcile through them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
