"""The Kubernetes adapter (kube.client.Kube) and the pure builders it sends, on a real
kube-apiserver: Secret/ConfigMap key reads, absent objects as None, a Lease built by
rendering.operator_objects acquired, renewed and released, an Event created and patched."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from prefect_job_operator.kube.client import Kube, KubeError, load_api_client
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.kube.leases import PoolLease
from tests.infra.cluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture
async def kube(k8s_cluster: Cluster) -> AsyncIterator[Kube]:
    client = Kube(await load_api_client(str(k8s_cluster.kubeconfig)))
    try:
        yield client
    finally:
        await client.close()


async def test_secret_and_configmap_keys(kube: Kube, k8s_namespace: str) -> None:
    ns = k8s_namespace
    await kube.create_or_replace_secret(
        ns,
        {
            "metadata": {"name": "creds", "namespace": ns},
            "data": {"token": base64.b64encode(b"s3cret").decode()},
        },
    )
    await kube._json(
        kube.core.create_namespaced_config_map(
            ns,
            {"metadata": {"name": "conf"}, "data": {"url": "http://x"}},  # type: ignore[arg-type]
            _preload_content=False,
        )
    )
    assert await kube.read_secret_value(ns, "creds", "token") == "s3cret"
    assert await kube.read_configmap_value(ns, "conf", "url") == "http://x"
    for read, kind, name in (
        (kube.read_secret_value, "Secret", "creds"),
        (kube.read_configmap_value, "ConfigMap", "conf"),
    ):
        with pytest.raises(KubeError) as missing_key:
            await read(ns, name, "nope")
        assert missing_key.value.status == 404
        assert missing_key.value.message == f"{kind} {ns}/{name} has no key 'nope'"
        with pytest.raises(KubeError) as missing_object:
            await read(ns, "absent", "nope")
        assert missing_object.value.status == 404


async def test_absent_lease_and_event_read_as_none(kube: Kube, k8s_namespace: str) -> None:
    assert await kube.read_lease(k8s_namespace, "absent") is None
    assert await kube.read_event(k8s_namespace, "absent") is None


async def test_lease_acquire_renew_takeover_release(kube: Kube, k8s_namespace: str) -> None:
    ns = k8s_namespace
    a = PoolLease(kube, ns, "pool-etl", "replica-a", 15)
    assert await a.try_acquire() is True
    first = await kube.read_lease(ns, "pool-etl")
    assert first is not None and first["spec"]["holderIdentity"] == "replica-a"
    assert first["spec"]["leaseTransitions"] == 0
    assert await a.try_acquire() is True  # a renewal keeps acquireTime
    renewed = await kube.read_lease(ns, "pool-etl")
    assert renewed is not None
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert renewed["spec"]["renewTime"] >= first["spec"]["renewTime"]
    b = PoolLease(kube, ns, "pool-etl", "replica-b", 15)
    assert await b.try_acquire() is False and b.holder == "replica-a"
    await a.release()
    assert await b.try_acquire() is True  # released: taken over at once, one transition more
    taken = await kube.read_lease(ns, "pool-etl")
    assert taken is not None and taken["spec"]["holderIdentity"] == "replica-b"
    assert taken["spec"]["leaseTransitions"] == 1


async def test_event_is_created_then_counted(kube: Kube, k8s_namespace: str) -> None:
    ns = k8s_namespace
    involved = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "subject", "namespace": ns, "uid": "uid-subject"},
    }
    sink = EventSink(kube, "prefect-job-operator")
    await sink.post(involved, "Warning", "FlowRunCrashed", "first")
    await sink.post(involved, "Warning", "FlowRunCrashed", "second")
    events = await kube._json(kube.core.list_namespaced_event(ns, _preload_content=False))
    ours = [e for e in events["items"] if e["reason"] == "FlowRunCrashed"]
    assert len(ours) == 1
    assert (ours[0]["count"], ours[0]["message"]) == (2, "second")
    assert ours[0]["involvedObject"]["name"] == "subject"
