"""Kubernetes Events aggregated like client-go's EventRecorder: one object per
(WorkPool, type, reason), count and lastTimestamp patched on each repeat."""

from __future__ import annotations

from typing import Any, cast

from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.rendering.operator_objects import event_name
from tests.unit.fakes import FakeKube

WP: dict[str, Any] = {
    "apiVersion": "prefect-job-operator.dev/v1alpha1",
    "kind": "WorkPool",
    "metadata": {"name": "etl", "namespace": "data", "uid": "u-1"},
}


async def test_five_crashes_are_one_event_with_count_five() -> None:
    kube = FakeKube()
    sink = EventSink(cast(Kube, kube), "prefect-job-operator")
    for i in range(5):
        await sink.post(WP, "Warning", "FlowRunCrashed", f"Flow run run-{i}: exit code 1")
    [(key, event)] = kube.event_objects.items()
    assert key == ("data", event_name(WP, "Warning", "FlowRunCrashed"))
    assert event["count"] == 5 and event["message"] == "Flow run run-4: exit code 1"
    assert event["involvedObject"]["uid"] == "u-1"
    assert kube.calls["create_event"] == 1 and kube.calls["patch_event"] == 4


async def test_other_reasons_and_objects_get_their_own_event() -> None:
    kube = FakeKube()
    sink = EventSink(cast(Kube, kube), "c")
    other = {**WP, "metadata": {**WP["metadata"], "uid": "u-2"}}
    await sink.post(WP, "Warning", "FlowRunCrashed", "a")
    await sink.post(WP, "Normal", "PoolSynced", "b")
    await sink.post(other, "Warning", "FlowRunCrashed", "c")
    assert len(kube.event_objects) == 3
    assert all(e["count"] == 1 for e in kube.event_objects.values())


async def test_a_restarted_operator_continues_the_count_and_an_expired_event_starts_over() -> None:
    kube = FakeKube()
    await EventSink(cast(Kube, kube), "c").post(WP, "Warning", "APIUnreachable", "down")
    await EventSink(cast(Kube, kube), "c").post(WP, "Warning", "APIUnreachable", "down")
    [event] = kube.event_objects.values()
    assert event["count"] == 2

    sink = EventSink(cast(Kube, kube), "c")
    await sink.post(WP, "Warning", "APIUnreachable", "down")
    kube.event_objects.clear()  # the API server's Event TTL
    await sink.post(WP, "Warning", "APIUnreachable", "down again")
    [event] = kube.event_objects.values()
    assert event["count"] == 1 and event["message"] == "down again"


async def test_a_failing_api_never_raises() -> None:
    kube = FakeKube()
    from prefect_job_operator.kube.client import KubeError

    kube.fail["read_event"] = KubeError(0, "", "connection refused")
    await EventSink(cast(Kube, kube), "c").post(WP, "Warning", "X", "y")
    assert kube.event_objects == {}
