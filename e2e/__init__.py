"""Local test infrastructure for Breakeven's integration and end-to-end tests.

The machine that runs our tests has no container engine, so kind and k3d cannot run. This package
starts a real Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler) built
from Go modules as local processes, with kwok simulating GPU nodes and the LeaderWorkerSet
controller, plus a Prometheus fed with synthetic vLLM traffic. See docs/testing.md.
"""
