"""Checks of the harness's pure parts (node pools, traffic shapes, OpenMetrics output).

They need no cluster or Prometheus, so they carry no marker and run in the unit tier too: a broken
generator shows up before any server is started.
"""

import math
import random
import statistics
from pathlib import Path

import pytest

from e2e.nodes import KWOK_ANNOTATION, node_objects, synthetic_cluster, without_labels
from e2e.traffic import (
    PROFILES,
    PROMPT_BUCKETS,
    TrafficSpec,
    bucket_shares,
    expert_weights,
    rate_at,
    write_openmetrics,
)


def test_default_pools() -> None:
    nodes = node_objects()
    names = [n["metadata"]["name"] for n in nodes]
    assert len(names) == len(set(names)) == 4 + 2 + 18
    assert all(n["metadata"]["annotations"][KWOK_ANNOTATION] == "fake" for n in nodes)
    h200 = [n for n in nodes if n["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H200"]
    assert len(h200) == 4
    assert h200[0]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    gb200 = [n for n in nodes if n["metadata"]["name"].startswith("gb200")]
    assert len({n["metadata"]["labels"]["nvidia.com/gpu.clique"] for n in gb200}) == 1
    stripped = without_labels(nodes, ["nvidia.com/gpu.product"])
    assert all("nvidia.com/gpu.product" not in n["metadata"]["labels"] for n in stripped)
    assert "nvidia.com/gpu.product" in nodes[0]["metadata"]["labels"]  # the input is untouched


def test_synthetic_cluster_is_deterministic_and_sized() -> None:
    nodes = synthetic_cluster(5000)
    assert len(nodes) == 5000
    assert len({n["metadata"]["name"] for n in nodes}) == 5000
    assert synthetic_cluster(5000) == nodes
    gb200 = [n for n in nodes if n["metadata"]["name"].startswith("syn-gb200")]
    cliques = {n["metadata"]["labels"]["nvidia.com/gpu.clique"] for n in gb200}
    assert len(cliques) == math.ceil(len(gb200) / 18)


def _rates(profile: str, days: int = 14) -> list[float]:
    spec = TrafficSpec("m", "ns", profile)
    rng = random.Random(1)
    return [rate_at(spec, t, rng) for t in range(0, days * 86_400, 300)]


def _ratio(values: list[float], hi: int, lo: int) -> float:
    q = statistics.quantiles(values, n=100)
    return q[hi - 1] / q[lo - 1]


def test_profile_rate_shapes() -> None:
    sustained = _rates("sustained")
    assert _ratio(sustained, 10, 50) >= 0.7 and _ratio(sustained, 95, 50) <= 1.3
    bursty = _rates("bursty")
    assert _ratio(bursty, 95, 50) >= 3
    assert statistics.median(_rates("low")) == pytest.approx(0.05 * 60_000, rel=0.05)


@pytest.mark.parametrize(("profile", "ratio"), [("sustained", 1.2), ("hot-expert", 3.0)])
def test_expert_skew(profile: str, ratio: float) -> None:
    weights = expert_weights(TrafficSpec("m", "ns", profile))
    assert sum(weights) == pytest.approx(1)
    assert max(weights) / statistics.mean(weights) == pytest.approx(ratio)


def test_prompt_buckets_are_cumulative() -> None:
    for profile in PROFILES.values():
        shares = bucket_shares(profile)
        assert shares == sorted(shares) and len(shares) == len(PROMPT_BUCKETS)


def test_openmetrics_output(tmp_path: Path) -> None:
    specs = [
        TrafficSpec("org/a", "ns", "hot-expert"),
        TrafficSpec("org/b", "ns", "no-expert-telemetry"),
    ]
    stats = write_openmetrics(specs, tmp_path / "h.om", days=0.5, step=60, end=1_800_000_000)
    text = (tmp_path / "h.om").read_text()
    assert text.endswith("# EOF\n")
    assert text.count("# TYPE vllm:prompt_tokens counter") == 1  # one family block for all models
    assert 'moe_expert_tokens_total{model_name="org/a",namespace="ns",expert="7"}' in text
    assert 'moe_expert_tokens_total{model_name="org/b"' not in text
    assert stats.samples == stats.series * (12 * 60 + 1)
    windows = write_openmetrics(specs, tmp_path / "w.om", days=0.5, end=1_800_000_000, window=7200)
    assert len(windows.paths) == 7 and windows.samples == stats.samples


def test_kwokctl_config_keeps_every_server_on_loopback_ports_we_picked() -> None:
    """kwokctl's own defaults are 0.0.0.0 and ports scanned down from 32767 (a race between
    sessions); the config hands it ours, our cached binaries, and the flags it does not set."""
    from e2e.cluster import Binaries, kwokctl_config

    bins = Binaries()
    ports = {
        name: 40000 + i
        for i, name in enumerate(("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok"))
    }
    [doc] = kwokctl_config(bins, ports)
    options = doc["options"]
    assert doc["kind"] == "KwokctlConfiguration" and options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    given = {v for k, v in options.items() if k.endswith("Port")}
    assert given == set(ports.values())
    assert options["kubeApiserverBinary"] == str(bins.kube_apiserver)
    assert options["kwokControllerBinary"] == str(bins.kwok)
    args = {
        p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in doc["componentsPatches"]
    }
    assert args["kube-apiserver"]["endpoint-reconciler-type"] == "none"
    assert args["kube-controller-manager"]["use-service-account-credentials"] == "true"
    assert args["kwok-controller"]["manage-all-nodes"] == "false"
    assert args["kwok-controller"]["manage-nodes-with-annotation-selector"] == (
        f"{KWOK_ANNOTATION}=fake"
    )
