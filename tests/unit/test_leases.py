"""PoolLease against a FakeKube with the API server's optimistic concurrency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from prefect_job_operator.kube.client import Kube, KubeError
from prefect_job_operator.kube.leases import PoolLease
from tests.unit.fakes import FakeKube, now

NS, NAME = "prefect", "prefect-job-operator.k8s"


def lease(kube: FakeKube, identity: str) -> PoolLease:
    return PoolLease(cast(Kube, kube), NS, NAME, identity, 15)


def stored(kube: FakeKube) -> dict[str, Any]:
    return kube.leases[(NS, NAME)]["spec"]


def put(kube: FakeKube, holder: str | None, renewed_ago: float, transitions: int = 2) -> None:
    stamp = (now() - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube.leases[(NS, NAME)] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "77"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        },
    }


async def test_acquire_when_free_creates_the_lease() -> None:
    kube = FakeKube()
    a = lease(kube, "replica-a")
    assert await a.try_acquire() is True
    assert a.held and a.holder == "replica-a"
    spec = stored(kube)
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z")


async def test_renew_own_lease_keeps_acquire_time_and_transitions() -> None:
    kube = FakeKube()
    put(kube, "replica-a", renewed_ago=5, transitions=3)
    acquired = stored(kube)["acquireTime"]
    renewed = stored(kube)["renewTime"]
    a = lease(kube, "replica-a")
    assert await a.try_acquire() is True
    spec = stored(kube)
    assert spec["acquireTime"] == acquired
    assert spec["renewTime"] > renewed
    assert spec["leaseTransitions"] == 3


async def test_live_foreign_lease_is_refused() -> None:
    kube = FakeKube()
    put(kube, "replica-b", renewed_ago=5)
    a = lease(kube, "replica-a")
    assert await a.try_acquire() is False
    assert not a.held and a.holder == "replica-b"
    assert kube.calls["replace_lease"] == 0
    assert stored(kube)["holderIdentity"] == "replica-b"


async def test_expired_foreign_lease_is_taken_over() -> None:
    kube = FakeKube()
    put(kube, "replica-b", renewed_ago=60, transitions=2)
    old_acquire = stored(kube)["acquireTime"]
    a = lease(kube, "replica-a")
    assert await a.try_acquire() is True
    spec = stored(kube)
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseTransitions"] == 3
    assert spec["acquireTime"] != old_acquire


async def test_lost_race_on_replace_is_false() -> None:
    kube = FakeKube()
    put(kube, "replica-b", renewed_ago=60)
    a = lease(kube, "replica-a")

    def peer_renews() -> None:  # between a's read and a's replace
        put(kube, "replica-b", renewed_ago=0)
        kube.leases[(NS, NAME)]["metadata"]["resourceVersion"] = "78"

    kube.before["replace_lease"] = peer_renews
    assert await a.try_acquire() is False
    assert not a.held
    assert stored(kube)["holderIdentity"] == "replica-b"


async def test_lost_race_on_create_is_false() -> None:
    kube = FakeKube()
    a = lease(kube, "replica-a")
    kube.before["create_lease"] = lambda: put(kube, "replica-b", renewed_ago=0)
    assert await a.try_acquire() is False
    assert not a.held
    assert stored(kube)["holderIdentity"] == "replica-b"


async def test_other_api_errors_propagate() -> None:
    kube = FakeKube()
    kube.fail["read_lease"] = KubeError(403, "Forbidden", "leases is forbidden")
    with pytest.raises(KubeError) as info:
        await lease(kube, "replica-a").try_acquire()
    assert info.value.status == 403


async def test_release_clears_holder_so_a_peer_takes_over_at_once() -> None:
    kube = FakeKube()
    a, b = lease(kube, "replica-a"), lease(kube, "replica-b")
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    await a.release()
    assert not a.held
    assert stored(kube)["holderIdentity"] is None
    assert await b.try_acquire() is True
    assert stored(kube)["holderIdentity"] == "replica-b"
    assert stored(kube)["leaseTransitions"] == 1


async def test_release_does_not_touch_a_lease_held_by_someone_else() -> None:
    kube = FakeKube()
    a = lease(kube, "replica-a")
    assert await a.try_acquire() is True
    put(kube, "replica-b", renewed_ago=0)  # b took over meanwhile (a was paused)
    await a.release()
    assert stored(kube)["holderIdentity"] == "replica-b"


async def test_release_without_holding_is_a_no_op() -> None:
    kube = FakeKube()
    await lease(kube, "replica-a").release()
    assert kube.calls["read_lease"] == 0
