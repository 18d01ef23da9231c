"""Two WorkPools naming one Prefect pool: the second one says so and does not dispatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefect_job_operator.dispatch.sync import (
    SyncProblem,
    foreign_owner,
    online_workers,
    owner_variable,
    sync_pool,
)
from prefect_job_operator.prefect_api.models import Worker
from tests.unit.fakes import FakePrefectClient, make_runtime

API = {"api": {"url": "http://prefect-server:4200/api"}, "poolName": "shared"}
ME = {"namespace": "b", "name": "pool", "uid": "u-b", "instance": "i", "worker": "w-b"}
OTHER = {"namespace": "a", "name": "pool", "uid": "u-a", "instance": "i", "worker": "w-a"}


@pytest.mark.parametrize(
    ("record", "online", "foreign"),
    [
        (None, set(), False),  # nobody runs it
        ("garbage", set(), False),
        (ME, {"w-b"}, False),  # itself
        ({**ME, "uid": "u-old"}, {"w-b"}, False),  # itself, re-created (same ns/name)
        (OTHER, {"w-a"}, True),  # another live WorkPool
        (OTHER, set(), False),  # its worker went offline: take over
        ({**OTHER, "worker": "w-b"}, {"w-b"}, False),  # one explicit worker name: undecidable
    ],
)
def test_foreign_owner(record: object, online: set[str], foreign: bool) -> None:
    assert (foreign_owner(record, ME, online) is not None) is foreign


def test_online_workers_uses_three_heartbeat_intervals_and_at_least_a_minute() -> None:
    now = datetime.now(UTC)
    workers = [
        Worker(
            name="fresh",
            last_heartbeat_time=now - timedelta(seconds=20),
            heartbeat_interval_seconds=10,
        ),
        Worker(
            name="late",  # 3 intervals ago, but within the minute: still alive
            last_heartbeat_time=now - timedelta(seconds=45),
            heartbeat_interval_seconds=10,
        ),
        Worker(
            name="stale",
            last_heartbeat_time=now - timedelta(seconds=61),
            heartbeat_interval_seconds=10,
        ),
        Worker(name="never"),
    ]
    assert online_workers(workers, now) == {"fresh", "late"}


def test_owner_variable_is_a_valid_prefect_variable_name() -> None:
    name = owner_variable("My Pool/with stuff")
    assert name == name.lower() and all(ch.isalnum() or ch == "_" for ch in name)
    assert owner_variable("a") != owner_variable("b")


async def test_second_workpool_on_one_prefect_pool_reports_the_first_and_writes_nothing() -> None:
    client = FakePrefectClient()
    a, _, _ = make_runtime(
        spec={**API, "description": "team A"}, name="a", namespace="ns-a", client=client
    )
    b, _, _ = make_runtime(
        spec={**API, "description": "team B"}, name="b", namespace="ns-b", client=client
    )
    await sync_pool(a.cfg, a.ports, a.synced)
    client.workers.append(
        {
            "pool": "shared",
            "name": a.cfg.worker_name,
            "last_heartbeat_time": datetime.now(UTC),
            "heartbeat_interval_seconds": 30,
        }
    )
    writes = client.calls["update_work_pool"]

    with pytest.raises(SyncProblem) as info:
        await sync_pool(b.cfg, b.ports, b.synced)

    assert info.value.reason == "PoolClaimedByOtherWorkPool"
    assert "ns-a/a" in info.value.message and a.cfg.uid in info.value.message
    assert client.calls["update_work_pool"] == writes  # no description flip, no template write
    assert client.pools["shared"]["description"] == "team A"
    assert client.variables[owner_variable("shared")]["uid"] == a.cfg.uid


async def test_a_dead_owner_is_taken_over() -> None:
    client = FakePrefectClient()
    a, _, _ = make_runtime(spec=API, name="a", namespace="ns-a", client=client)
    b, _, _ = make_runtime(spec=API, name="b", namespace="ns-b", client=client)
    await sync_pool(a.cfg, a.ports, a.synced)
    client.workers.append(
        {
            "pool": "shared",
            "name": a.cfg.worker_name,
            "last_heartbeat_time": datetime.now(UTC) - timedelta(minutes=10),
            "heartbeat_interval_seconds": 30,
        }
    )
    await sync_pool(b.cfg, b.ports, b.synced)
    assert client.variables[owner_variable("shared")]["uid"] == b.cfg.uid
