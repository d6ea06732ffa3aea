"""Cluster facts from Node objects: the label and resource keys real clusters carry."""

from __future__ import annotations

import pytest
from builders import example_nodes, node, nodes

from breakeven.core import facts, hardware


def one_pool(items: list[dict[str, object]], **kwargs: object) -> facts.Pool:
    cluster = facts.Cluster.from_nodes(items, **kwargs)  # type: ignore[arg-type]
    assert len(cluster.pools) == 1, cluster.pools
    return cluster.pools[0]


# ------------------------------------------------------------------ GPU feature discovery


def test_gfd_labels_give_the_gpu_count_and_memory() -> None:
    pool = one_pool(nodes(2, labels={"nvidia.com/gpu.memory": "143771"}))
    assert (pool.gpu, pool.product, pool.known) == ("H200", "NVIDIA-H200", True)
    assert pool.gpus_per_node == 8
    assert pool.gpu_memory_gb == pytest.approx(150.8, abs=0.1)  # 143771 MiB
    assert pool.nodes == ("gpu-0", "gpu-1")
    assert pool.total_gpus == 16


def test_memory_defaults_to_the_hardware_table_without_the_label() -> None:
    assert one_pool(nodes(1)).gpu_memory_gb == hardware.gpu("H200").memory_gb


def test_gpu_count_falls_back_to_the_label_when_no_resource_is_allocatable() -> None:
    item = node("n0", gpus=0, labels={"nvidia.com/gpu.count": "4"})
    assert one_pool([item]).gpus_per_node == 4


@pytest.mark.parametrize(
    ("product", "key", "nvlink"),
    [
        ("NVIDIA-H100-80GB-HBM3", "H100", True),
        ("NVIDIA-H200", "H200", True),
        ("NVIDIA-B200", "B200", True),
        ("NVIDIA-GB200", "GB200", True),
        ("A100-SXM4-80GB", "A100-80G", True),
        ("NVIDIA-H100-PCIe", "H100-PCIe", False),
        ("NVIDIA-L40S", "L40S", False),
        ("NVIDIA-L4", "L4", False),
    ],
)
def test_intra_node_nvlink_follows_the_product(product: str, key: str, nvlink: bool) -> None:
    pool = one_pool(nodes(1, product=product))
    assert (pool.gpu, pool.intra_node_nvlink) == (key, nvlink)


def test_an_unknown_gpu_keeps_its_product_name_and_has_no_nvlink() -> None:
    pool = one_pool(nodes(1, product="Tesla-T4", gpus=4))
    assert (pool.gpu, pool.known, pool.intra_node_nvlink) == ("Tesla-T4", False, False)


def test_one_gpu_per_node_has_no_nvlink_to_speak_of() -> None:
    assert one_pool(nodes(1, gpus=1)).intra_node_nvlink is False


@pytest.mark.parametrize("product", ["NVIDIA-H100-NVL", "NVIDIA-H200-NVL"])
def test_nvl_pcie_cards_are_not_nvswitch_parts(product: str) -> None:
    assert one_pool(nodes(1, product=product)).intra_node_nvlink is False


def test_pools_split_by_gpu_type_and_count() -> None:
    items = [
        *nodes(2, prefix="h200"),
        *nodes(1, prefix="h200-half", gpus=4),
        *nodes(3, prefix="l40s", product="NVIDIA-L40S"),
    ]
    cluster = facts.Cluster.from_nodes(items)
    summary = {(p.gpu, p.gpus_per_node): p.node_count for p in cluster.pools}
    assert summary == {("H200", 8): 2, ("H200", 4): 1, ("L40S", 8): 3}
    assert cluster.gpu_nodes == 6


# ------------------------------------------------------------------------------ fabrics


@pytest.mark.parametrize(
    "label",
    [
        "feature.node.kubernetes.io/rdma.available",
        "feature.node.kubernetes.io/custom-rdma.available",  # NFD v0.10-v0.13
    ],
)
def test_nfd_rdma_labels_new_and_old(label: str) -> None:
    assert one_pool(nodes(2, labels={label: "true"})).fabric == "rdma"


@pytest.mark.parametrize(
    "label",
    [
        "feature.node.kubernetes.io/rdma.capable",
        "feature.node.kubernetes.io/custom-rdma.capable",
    ],
)
def test_rdma_capable_alone_is_not_rdma(label: str) -> None:
    # `capable`: a Mellanox NIC is present; `available`: its RDMA drivers are loaded.
    assert one_pool(nodes(2, labels={label: "true"})).fabric == "ethernet"


def test_an_nfd_label_that_is_not_true_is_not_rdma() -> None:
    labels = {"feature.node.kubernetes.io/rdma.available": "false"}
    assert one_pool(nodes(2, labels=labels)).fabric == "ethernet"


def test_a_mellanox_nic_alone_is_not_rdma() -> None:
    labels = {"feature.node.kubernetes.io/pci-15b3.present": "true"}
    assert one_pool(nodes(2, labels=labels)).fabric == "ethernet"


@pytest.mark.parametrize(
    ("resource", "fabric"),
    [
        ("rdma/ib", "infiniband"),
        ("rdma/roce_gdr", "roce"),
        ("vpc.amazonaws.com/efa", "efa"),
        ("rdma/rdma_shared_device_a", "rdma"),
        ("nvidia.com/sriov_rdma", "rdma"),
        ("nvidia.com/hostdev", "rdma"),
    ],
)
def test_rdma_extended_resources(resource: str, fabric: str) -> None:
    pool = one_pool(nodes(2, rdma=resource))
    assert pool.fabric == fabric
    assert pool.rdma_resource == resource
    assert pool.rdma_nodes == 2


def test_an_rdma_resource_with_zero_allocatable_is_not_rdma() -> None:
    pool = one_pool(nodes(2, allocatable={"rdma/ib": "0"}))
    assert (pool.fabric, pool.rdma_resource) == ("ethernet", None)


def test_kubernetes_quantities_with_suffixes_count() -> None:
    assert one_pool(nodes(1, allocatable={"rdma/rdma_shared_device_a": "1k"})).fabric == "rdma"


def test_a_mixed_pool_stays_mixed() -> None:
    items = [
        *nodes(2, prefix="rdma", rdma="rdma/ib"),
        *nodes(2, prefix="eth"),
    ]
    pool = one_pool(items)
    assert pool.fabric == "mixed"
    assert pool.fabrics == {"ethernet": 2, "infiniband": 2}
    assert pool.rdma_nodes == 2
    assert pool.rdma_resource is None  # not every node offers it


def test_the_example_mixed_pool_is_mixed() -> None:
    pool = one_pool(example_nodes("h200-mixed"))
    assert pool.fabric == "mixed"
    assert pool.rdma_nodes == 2


# ------------------------------------------------------------------------ cloud providers


def test_gke_accelerator_label_names_the_gpu_and_the_fabric() -> None:
    labels = {
        "cloud.google.com/gke-accelerator": "nvidia-h200-141gb",
        "node.kubernetes.io/instance-type": "a3-ultragpu-8g",
    }
    pool = one_pool(nodes(2, product=None, labels=labels))
    assert (pool.gpu, pool.fabric, pool.intra_node_nvlink) == ("H200", "roce", True)


def test_gke_a3_high_is_not_rdma() -> None:
    labels = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    pool = one_pool(nodes(2, product=None, labels=labels))
    assert (pool.gpu, pool.fabric) == ("H100", "ethernet")


def test_eks_instance_type_and_efa_resource() -> None:
    labels = {"node.kubernetes.io/instance-type": "p5e.48xlarge"}
    pool = one_pool(nodes(2, product=None, labels=labels, rdma="vpc.amazonaws.com/efa"))
    assert (pool.gpu, pool.fabric) == ("H200", "efa")


def test_karpenter_gpu_name_label() -> None:
    labels = {"karpenter.k8s.aws/instance-gpu-name": "h100"}
    assert one_pool(nodes(1, product=None, labels=labels)).gpu == "H100"


def test_coreweave_class_and_fabric_flavor() -> None:
    labels = {
        "gpu.nvidia.com/class": "H200",
        "backend.coreweave.cloud/flavor": "infiniband",
    }
    pool = one_pool(nodes(2, product=None, labels=labels))
    assert (pool.gpu, pool.fabric) == ("H200", "infiniband")


def test_coreweave_roce_flavor() -> None:
    labels = {"backend.coreweave.cloud/flavor": "roce"}
    assert one_pool(nodes(2, labels=labels)).fabric == "roce"


def test_the_coreweave_example_with_old_custom_rdma_labels() -> None:
    pool = one_pool(example_nodes("coreweave-h100"))
    assert (pool.gpu, pool.fabric, pool.node_count) == ("H100", "infiniband", 4)


def test_aks_nd_series_instance_type_is_infiniband() -> None:
    labels = {
        "node.kubernetes.io/instance-type": "Standard_ND96isr_H100_v5",
        "kubernetes.azure.com/accelerator": "nvidia",
    }
    pool = one_pool(nodes(2, product=None, labels=labels))
    assert (pool.gpu, pool.fabric) == ("H100", "infiniband")


def test_a_fabric_label_wins_over_a_generic_rdma_label() -> None:
    labels = {
        "backend.coreweave.cloud/flavor": "roce",
        "feature.node.kubernetes.io/rdma.available": "true",
    }
    assert one_pool(nodes(1, labels=labels)).fabric == "roce"


# ------------------------------------------------------------------------ NVLink domains


def test_clique_label_groups_gpus_into_nvlink_domains() -> None:
    items = [
        *nodes(
            3,
            prefix="a",
            product="NVIDIA-GB200",
            gpus=4,
            labels={"nvidia.com/gpu.clique": "cluster.1"},
        ),
        *nodes(
            2,
            prefix="b",
            product="NVIDIA-GB200",
            gpus=4,
            labels={"nvidia.com/gpu.clique": "cluster.2"},
        ),
    ]
    pool = one_pool(items)
    assert pool.cliques == {"cluster.1": 12, "cluster.2": 8}
    assert pool.largest_clique_gpus == 12


def test_the_nvl72_example_is_one_72_gpu_clique() -> None:
    pool = one_pool(example_nodes("gb200-nvl72"))
    assert (pool.gpu, pool.gpus_per_node, pool.largest_clique_gpus) == ("GB200", 4, 72)


def test_no_clique_label_means_no_nvlink_domain() -> None:
    assert one_pool(nodes(2)).largest_clique_gpus == 0


# ----------------------------------------------------------------- partitions and states


@pytest.mark.parametrize(
    "product", ["NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", "NVIDIA-H100-80GB-HBM3-SHARED"]
)
def test_mig_and_time_sliced_gpus_are_flagged(product: str) -> None:
    assert one_pool(nodes(1, product=product)).partitioned is True


def test_whole_gpus_are_not_flagged() -> None:
    assert one_pool(nodes(1)).partitioned is False


def test_cordoned_nodes_are_left_out() -> None:
    items = [node("up"), node("cordoned", unschedulable=True)]
    assert one_pool(items).nodes == ("up",)


def test_not_ready_nodes_stay_in_the_pool_but_are_not_counted_ready() -> None:
    pool = one_pool([node("a"), node("b", ready=False)])
    assert (pool.node_count, pool.ready_nodes) == (2, 1)


def test_nodes_without_gpus_are_left_out() -> None:
    cpu = node("cpu-0", product=None, gpus=0)
    assert facts.Cluster.from_nodes([cpu]).pools == ()


def test_node_selector_narrows_the_cluster() -> None:
    items = [
        node("a", labels={"pool": "serving"}),
        node("b", labels={"pool": "batch"}),
    ]
    assert one_pool(items, node_selector={"pool": "serving"}).nodes == ("a",)


def test_node_info_keeps_every_label_but_only_the_resources_the_mapping_reads() -> None:
    info = facts.node_info(node("a", labels={"team": "x"}, rdma="rdma/ib"))
    assert info.labels["team"] == "x"  # a plan's nodeSelector may name any label
    # cpu and memory are kept: they size the serving pods' requests.
    assert set(info.allocatable) == {"cpu", "memory", "nvidia.com/gpu", "rdma/ib"}
    assert info.allocatable["rdma/ib"] == "1"
    assert facts.Cluster.from_nodes([info]).pools[0].fabric == "infiniband"


def test_a_node_selector_on_an_unmapped_label_finds_the_same_pool_in_the_operators_index() -> None:
    """The operator reasons over `node_info` projections (its node index), the CLI over the Node
    objects: a selector on a label outside the mapping must find the same pool in both."""
    items = [node("a", labels={"team": "serving"}), node("b", labels={"team": "batch"})]
    projections = [facts.node_info(n) for n in items]
    selector = {"team": "serving"}
    from_objects = facts.Cluster.from_nodes(items, node_selector=selector)
    from_index = facts.Cluster.from_nodes(projections, node_selector=selector)
    assert [p.nodes for p in from_index.pools] == [p.nodes for p in from_objects.pools] == [("a",)]


# ------------------------------------------------------------------------ label mapping


def test_a_mapping_adds_a_fabric_label() -> None:
    mapping = facts.LabelMapping().merged(
        {"fabricLabels": {"example.com/fabric": {"ib": "infiniband"}}}
    )
    items = nodes(2, labels={"example.com/fabric": "ib"})
    assert one_pool(items, mapping=mapping).fabric == "infiniband"
    # the defaults are still there
    assert "backend.coreweave.cloud/flavor" in mapping.fabric_labels


def test_a_mapping_overrides_a_default_fabric_value() -> None:
    mapping = facts.LabelMapping().merged(
        {"fabricLabels": {"cloud.google.com/gke-accelerator": {"nvidia-h100-80gb": "roce"}}}
    )
    labels = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert one_pool(nodes(1, product=None, labels=labels), mapping=mapping).fabric == "roce"
    assert mapping.fabric_labels["cloud.google.com/gke-accelerator"]["nvidia-h200-141gb"] == "roce"


def test_a_mapping_adds_a_gpu_label_and_an_rdma_resource() -> None:
    mapping = facts.LabelMapping().merged(
        {"gpuLabels": ["example.com/gpu"], "rdmaResources": {"example.com/rdma": "roce"}}
    )
    assert mapping.gpu_labels[0] == "example.com/gpu"
    assert "nvidia.com/gpu.product" in mapping.gpu_labels
    items = nodes(
        1, product=None, labels={"example.com/gpu": "H200"}, allocatable={"example.com/rdma": "4"}
    )
    pool = one_pool(items, mapping=mapping)
    assert (pool.gpu, pool.fabric) == ("H200", "roce")


def test_a_mapping_replaces_scalar_keys() -> None:
    mapping = facts.LabelMapping().merged({"cliqueLabel": "example.com/nvlink-domain"})
    items = nodes(2, labels={"example.com/nvlink-domain": "d1"})
    assert one_pool(items, mapping=mapping).cliques == {"d1": 16}


def test_a_mapping_rejects_unknown_keys_and_fabrics() -> None:
    with pytest.raises(ValueError, match="gpuLable"):
        facts.LabelMapping().merged({"gpuLable": ["x"]})
    with pytest.raises(ValueError, match="fabricLabels"):
        facts.LabelMapping().merged({"fabricLabels": {"x": {"y": "token-ring"}}})


# -------------------------------------------------------------------------------- traffic


def test_traffic_facts_load_from_the_contract_keys() -> None:
    t = facts.Traffic.model_validate(
        {
            "window": "336h",
            "tokensPerSecond": {"p10": 9000, "p50": 12000, "p95": 15000},
            "promptTokens": {"p50": 1000, "p90": 2500},
            "expertLoadMaxOverMean": 1.3,
        }
    )
    assert t.tokens_per_second.p10 == 9000
    assert t.prompt_tokens.p90 == 2500
    assert t.expert_load_max_over_mean == 1.3
    assert t.has_volume
    assert t.observed_seconds == 14 * 86400


def test_absent_traffic_keys_mean_not_observed() -> None:
    t = facts.Traffic.model_validate({"tokensPerSecond": None})
    assert not t.has_volume
    assert t.expert_load_max_over_mean is None
    assert not facts.NOTHING_OBSERVED.has_volume


@pytest.mark.parametrize(
    "data",
    [
        {"tokensPerSecond": {"p10": -1}},
        {"expertLoadMaxOverMean": 0.5},
        {"window": "two weeks"},
        {"tokensPerSecond": {"p99": 1}},
    ],
)
def test_invalid_traffic_facts_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        facts.Traffic.model_validate(data)


def test_the_pool_remembers_which_label_named_its_gpu() -> None:
    # A GKE node carries no GPU feature discovery product label; placement must select on the
    # label that is there (rendering uses Pool.gpu_label for the nodeSelector).
    gke = nodes(2, product=None, labels={"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"})
    pool = one_pool(gke)
    assert (pool.gpu, pool.gpu_label, pool.product) == (
        "H200",
        "cloud.google.com/gke-accelerator",
        "nvidia-h200-141gb",
    )
    assert one_pool(nodes(2)).gpu_label == "nvidia.com/gpu.product"
