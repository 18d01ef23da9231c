"""The worker loop writes a WorkPool's status when it changed, and once a minute otherwise."""

from __future__ import annotations

import pytest

from prefect_job_operator.dispatch.worker import write_status
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.writeback.cr_status import STATUS_REFRESH_SECONDS
from tests.unit.clocks import frozen
from tests.unit.fakes import FakeKube, make_runtime


async def test_an_unchanged_status_is_not_rewritten_until_the_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen(monkeypatch)
    kube = FakeKube()
    pool, _, _ = make_runtime(kube=kube)

    await write_status(pool)
    clock.advance(5)
    await write_status(pool)  # nothing changed: no write
    assert len(kube.status_patches) == 1

    pool.ports.counters.submitted += 1
    await write_status(pool)  # a count changed: written at once
    assert len(kube.status_patches) == 2
    assert kube.status_patches[-1][2]["counts"]["submitted"] == 1

    clock.advance(STATUS_REFRESH_SECONDS)
    await write_status(pool)  # unchanged but a minute old: written again
    assert len(kube.status_patches) == 3


async def test_a_failed_write_is_retried_at_the_next_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen(monkeypatch)
    kube = FakeKube()
    pool, _, _ = make_runtime(kube=kube)
    kube.fail["patch_status"] = KubeError(0, "", "connection refused")
    await write_status(pool)
    del kube.fail["patch_status"]
    await write_status(pool)
    assert len(kube.status_patches) == 1  # the failed write is not taken as written
    assert kube.calls["patch_status"] == 2


async def test_a_condition_keeps_its_transition_time_across_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against the status last written, not the body the pool started with (whose empty
    status made every write look like a transition: `kubectl describe` showed "just now")."""
    clock = frozen(monkeypatch)
    kube = FakeKube()
    pool, _, _ = make_runtime(kube=kube)
    await write_status(pool)
    clock.advance(STATUS_REFRESH_SECONDS)
    pool.ports.counters.submitted += 1
    await write_status(pool)
    first, second = (patch["conditions"] for _, _, patch in kube.status_patches)
    assert [c["lastTransitionTime"] for c in first] == [c["lastTransitionTime"] for c in second]
