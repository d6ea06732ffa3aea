"""The API server honours the resourceVersion the operator puts in its status merge patch
(shell/kube.py, Writer.patch_status): a patch from an older body is refused with 409, one from
the current body lands."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.aio import client as aio
from kubernetes.aio import config as aio_config
from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import api
from breakeven.shell import kube
from e2e import running
from e2e.fixtures import ClusterHandle

pytestmark = pytest.mark.integration


def _plan(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "rv", "namespace": namespace},
        "spec": {"model": {"name": "deepseek-ai/DeepSeek-V3"}},
    }


async def test_a_status_patch_from_an_older_body_is_refused(
    cluster: ClusterHandle, namespace: str
) -> None:
    with cluster.api_client() as admin:
        running.install(admin)
        plans = client.CustomObjectsApi(admin)
        created = plans.create_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, _plan(namespace)
        )
    old = created["metadata"]["resourceVersion"]
    configuration = aio.Configuration()
    await aio_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    async with aio.ApiClient(configuration) as api_client:
        writer = kube.Writer(api_client)
        await writer.patch_status(namespace, "rv", {"reason": "First"}, old)
        with pytest.raises(ApiException) as refused:
            await writer.patch_status(namespace, "rv", {"reason": "Stale"}, old)
        assert refused.value.status == 409
        current = await writer.get_plan(namespace, "rv")
        assert current is not None and current["status"]["reason"] == "First"
        await writer.patch_status(
            namespace, "rv", {"reason": "Fresh"}, current["metadata"]["resourceVersion"]
        )
        assert (await writer.get_plan(namespace, "rv") or {})["status"]["reason"] == "Fresh"
