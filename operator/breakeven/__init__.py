"""Breakeven: serve each model dense or as an expert-parallel MoE, whichever pays.

The pure core (no I/O) and the shell (kopf, Kubernetes, Prometheus):

    api        the ServingPlan API (pydantic; source of the CRD)      core
    catalog    model architectures (data/models.yaml)                 core
    hardware   GPUs and fabrics (data/hardware.yaml)                  core
    facts      cluster facts from Nodes, traffic facts                core
    capacity   sizing, throughput and cost of both modes              core
    rubric     the break-even criteria and the decision               core
    planning   facts -> sizing -> decision, in one call               core
    rendering  the Kubernetes objects for either mode                 core
    switching  hysteresis and make-before-break steps                 core
    prometheus reading traffic facts (httpx)                          shell
    kube       server-side apply and reads (kubernetes client)        shell
    operator   kopf handlers and the reconcile loop                   shell
    cli        the `breakeven` command                                shell
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
