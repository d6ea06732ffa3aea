"""The hardware table against every product string the platforms label nodes with.

Each row is a label value exactly as a platform writes it (GFD's nvidia.com/gpu.product, GKE's
cloud.google.com/gke-accelerator, an EKS or AKS instance type, CoreWeave's gpu.nvidia.com/class)
and what the table must make of it: memory, HBM bandwidth, NVLink or none. Sources are in
operator/breakeven/core/data/hardware.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breakeven.cli import main as cli
from breakeven.core import facts, hardware

ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    # (label value, table key, memory GB, bandwidth TB/s, NVLink)
    ("NVIDIA-A100-SXM4-40GB", "A100-40G", 40, 1.555, True),
    ("A100-SXM4-40GB", "A100-40G", 40, 1.555, True),
    ("NVIDIA-A100-SXM4-80GB", "A100-80G", 80, 2.039, True),
    ("NVIDIA-A100-PCIE-40GB", "A100-40G-PCIe", 40, 1.555, False),
    ("NVIDIA-A100-80GB-PCIe", "A100-80G-PCIe", 80, 1.935, False),
    ("nvidia-tesla-a100", "A100-40G", 40, 1.555, True),
    ("nvidia-a100-80gb", "A100-80G", 80, 2.039, True),
    ("A100_PCIE_40GB", "A100-40G-PCIe", 40, 1.555, False),
    ("A100_PCIE_80GB", "A100-80G-PCIe", 80, 1.935, False),
    ("A100_NVLINK", "A100-40G", 40, 1.555, True),
    ("A100_NVLINK_80GB", "A100-80G", 80, 2.039, True),
    ("p4d.24xlarge", "A100-40G", 40, 1.555, True),
    ("p4de.24xlarge", "A100-80G", 80, 2.039, True),
    ("Standard_ND96asr_v4", "A100-40G", 40, 1.555, True),
    ("Standard_ND96amsr_A100_v4", "A100-80G", 80, 2.039, True),
    ("Standard_NC24ads_A100_v4", "A100-80G-PCIe", 80, 1.935, False),
    ("NVIDIA-H100-80GB-HBM3", "H100", 80, 3.35, True),
    ("NVIDIA-H100-PCIe", "H100-PCIe", 80, 2.0, False),
    ("NVIDIA-H100-NVL", "H100-NVL", 94, 3.9, False),
    ("nvidia-h100-80gb", "H100", 80, 3.35, True),
    ("nvidia-h100-mega-80gb", "H100", 80, 3.35, True),
    ("H100_NVLINK_80GB", "H100", 80, 3.35, True),
    ("H100_PCIE", "H100-PCIe", 80, 2.0, False),
    ("p5.48xlarge", "H100", 80, 3.35, True),
    ("h100", "H100", 80, 3.35, True),
    ("Standard_ND96isr_H100_v5", "H100", 80, 3.35, True),
    ("Standard_NC40ads_H100_v5", "H100-NVL", 94, 3.9, False),
    ("NVIDIA-H800", "H800", 80, 3.35, True),
    ("NVIDIA-H800-PCIe", "H800-PCIe", 80, 2.0, False),
    ("NVIDIA-H20", "H20", 96, 4.0, True),
    ("NVIDIA-H200", "H200", 141, 4.8, True),
    ("NVIDIA-H200-NVL", "H200-NVL", 141, 4.8, False),
    ("nvidia-h200-141gb", "H200", 141, 4.8, True),
    ("p5e.48xlarge", "H200", 141, 4.8, True),
    ("p5en.48xlarge", "H200", 141, 4.8, True),
    ("Standard_ND96isr_H200_v5", "H200", 141, 4.8, True),
    ("H200", "H200", 141, 4.8, True),
    ("NVIDIA-GH200-480GB", "GH200", 96, 4.0, False),
    ("NVIDIA-GH200-144G-HBM3e", "GH200-144G", 144, 4.9, False),
    ("GH200_480GB", "GH200", 96, 4.0, False),
    ("NVIDIA-B200", "B200", 180, 7.7, True),
    ("nvidia-b200", "B200", 180, 7.7, True),
    ("p6-b200.48xlarge", "B200", 180, 7.7, True),
    ("NVIDIA-GB200", "GB200", 186, 8.0, True),
    ("nvidia-gb200", "GB200", 186, 8.0, True),
    ("p6e-gb200.36xlarge", "GB200", 186, 8.0, True),
    ("Standard_ND128isr_NDR_GB200_v6", "GB200", 186, 8.0, True),
    ("NVIDIA-B300-SXM6-AC", "B300", 288, 8.0, True),
    ("p6-b300.48xlarge", "B300", 288, 8.0, True),
    ("NVIDIA-GB300", "GB300", 288, 8.0, True),
    ("NVIDIA-L40", "L40", 48, 0.864, False),
    ("L40", "L40", 48, 0.864, False),
    ("NVIDIA-L40S", "L40S", 48, 0.864, False),
    ("l40s", "L40S", 48, 0.864, False),
    ("NVIDIA-L4", "L4", 24, 0.3, False),
    ("nvidia-l4", "L4", 24, 0.3, False),
]


@pytest.mark.parametrize(("label", "key", "memory", "bandwidth", "nvlink"), ROWS)
def test_every_platform_product_string_maps_to_its_part(
    label: str, key: str, memory: float, bandwidth: float, nvlink: bool
) -> None:
    gpu = hardware.identify(label)
    assert gpu is not None, label
    assert (gpu.key, gpu.memory_gb, gpu.bandwidth_tbs, gpu.nvlink) == (
        key,
        memory,
        bandwidth,
        nvlink,
    )


def test_every_table_entry_is_covered_by_a_row() -> None:
    assert {key for _, key, *_ in ROWS} == set(hardware.gpus())


def test_a_bare_a100_name_is_left_to_the_instance_type() -> None:
    # karpenter's `a100` is both p4d's 40 GB and p4de's 80 GB part.
    assert hardware.identify("a100") is None
    node = {
        "metadata": {
            "name": "p4de",
            "labels": {
                "karpenter.k8s.aws/instance-gpu-name": "a100",
                "node.kubernetes.io/instance-type": "p4de.24xlarge",
            },
        },
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    (pool,) = facts.Cluster.from_nodes([node]).pools
    assert (pool.gpu, pool.gpu_memory_gb) == ("A100-80G", 80)


@pytest.mark.parametrize("platform", ["gfd", "coreweave"])
def test_breakeven_plan_reports_an_a100_pcie_40gb_pool_as_40_gb_without_nvlink(
    platform: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """GFD and CoreWeave are the platforms that label A100 PCIe 40GB nodes (GKE's and AWS's
    A100s are SXM4, Azure's NC A100 v4 is the 80 GB PCIe card)."""
    nodes = str(ROOT / "examples" / "nodes" / f"a100-pcie-40gb-{platform}.yaml")
    plan = str(ROOT / "examples" / "plans" / "deepseek-v3-sustained.yaml")
    assert cli.main(["plan", plan, "--nodes", nodes]) == 0
    out = capsys.readouterr().out
    assert "2x4 A100-40G-PCIe 40 GB (no NVLink, ethernet)" in out
    assert cli.main(["plan", plan, "--nodes", nodes, "-o", "json"]) == 0
    (pool,) = json.loads(capsys.readouterr().out)["cluster"]["pools"]
    assert pool["gpu"] == "A100-40G-PCIe"
    assert (pool["nvlink"], pool["gpuMemoryGb"]) == (False, 40)
