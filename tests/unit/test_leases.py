"""PoolLease against a FakeKube with the API server's optimistic concurrency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from prefect_job_operator.kube.client import Kube, KubeError
from prefect_job_operator.kube.leases import PoolLease
from tests.unit.fakes import FakeKube, now

NS, NAME = "prefect", "prefect-job-operator.k8s"


class Clock:
    """The lease's monotonic clock seam: tests move time, nobody sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lease(kube: FakeKube, identity: str, clock: Clock | None = None) -> PoolLease:
    return PoolLease(cast(Kube, kube), NS, NAME, identity, 15, clock=clock or Clock())


def stored(kube: FakeKube) -> dict[str, Any]:
    spec: dict[str, Any] = kube.leases[(NS, NAME)]["spec"]
    return spec


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
    """Expiry is measured from when this replica saw the record last change (client-go's
    rule), not from the holder's renewTime: another host's clock is never trusted."""
    kube = FakeKube()
    clock = Clock()
    put(kube, "replica-b", renewed_ago=60, transitions=2)
    old_acquire = stored(kube)["acquireTime"]
    a = lease(kube, "replica-a", clock)
    assert await a.try_acquire() is False  # first sight of this record: not expired yet
    clock.t += 15
    assert await a.try_acquire() is False  # exactly one duration: still live
    clock.t += 0.5
    assert await a.try_acquire() is True
    spec = stored(kube)
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseTransitions"] == 3
    assert spec["acquireTime"] != old_acquire


async def test_lost_race_on_replace_is_false() -> None:
    kube = FakeKube()
    clock = Clock()
    put(kube, "replica-b", renewed_ago=60)
    a = lease(kube, "replica-a", clock)
    assert await a.try_acquire() is False
    clock.t += 16

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


async def test_a_renewing_holder_never_expires_whatever_its_clock_says() -> None:
    """The holder's renewTime may be skewed far in the past: each new record it writes is
    a renewal for the observer, so its lease stays live."""
    kube = FakeKube()
    clock = Clock()
    a = lease(kube, "replica-a", clock)
    for i in range(5):
        put(kube, "replica-b", renewed_ago=3600 + i)  # a skewed clock, renewing
        kube.leases[(NS, NAME)]["metadata"]["resourceVersion"] = str(100 + i)
        assert await a.try_acquire() is False
        clock.t += 10
    assert a.holder == "replica-b"


async def test_a_leader_that_cannot_renew_steps_down_at_the_renew_deadline() -> None:
    kube = FakeKube()
    clock = Clock()
    a = lease(kube, "replica-a", clock)
    assert await a.try_acquire() is True
    assert a.renew_deadline == pytest.approx(10.0)  # < 15 s: before any peer can take over
    kube.fail["read_lease"] = KubeError(0, "Unreachable", "Kubernetes API unreachable")
    clock.t += 4
    assert await a.renew() is True  # a failed renewal within the deadline: still leading
    assert a.held
    clock.t += 5.9
    assert await a.renew() is True
    clock.t += 0.2  # 10.1 s since the last successful renewal
    assert await a.renew() is False
    assert not a.held
    # the API answers again: it leads again only once it holds the lease again
    del kube.fail["read_lease"]
    assert await a.renew() is False  # a renew() after stepping down never resumes by itself
    assert await a.try_acquire() is True
    assert a.held and await a.renew() is True


async def test_a_renewal_that_hangs_ends_at_the_renew_deadline() -> None:
    import anyio

    kube = FakeKube()
    a = PoolLease(cast(Kube, kube), NS, NAME, "replica-a", 1)  # the real clock: 0.67 s deadline
    assert await a.try_acquire() is True

    async def hang(namespace: str, name: str) -> None:
        await anyio.sleep(60)

    kube.read_lease = hang  # type: ignore[method-assign]
    with anyio.fail_after(5):
        assert await a.renew() is False
    assert not a.held


async def test_standby_takes_over_a_partitioned_leader_only_after_it_stepped_down() -> None:
    """The leader stops at 10 s without renewal; the standby takes over after 15 s of an
    unchanged record: there is never a moment with two leaders."""
    kube = FakeKube()
    clock = Clock()
    a, b = lease(kube, "replica-a", clock), lease(kube, "replica-b", clock)
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    partitioned = KubeError(0, "Unreachable", "Kubernetes API unreachable")
    leaders: list[tuple[float, bool, bool]] = []
    for _ in range(20):
        clock.t += 1
        kube.fail["read_lease"] = partitioned  # a's view
        a_leads = await a.renew() if a.held else False
        del kube.fail["read_lease"]
        b_leads = await b.try_acquire() if not b.held else await b.renew()
        leaders.append((clock.t, a_leads, b_leads))
    assert not any(x and y for _, x, y in leaders), leaders
    assert leaders[-1][2] is True
    first_b = next(t for t, _, y in leaders if y)
    last_a = max(t for t, x, _ in leaders if x)
    assert first_b - 1000 > 15 and last_a - 1000 < 10.5
