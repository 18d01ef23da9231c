"""The pure builders of the objects the operator writes besides the rendered Job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from prefect_job_operator.api.v1alpha1 import (
    ANNOTATION_CLAIM,
    ANNOTATION_JOB_WATCH_TIMEOUT,
    ANNOTATION_POD_WATCH_TIMEOUT,
    ANNOTATION_WORKPOOL,
    LABEL_FLOW_RUN_ID,
    LABEL_OPERATOR,
    LABEL_WORK_POOL_ID,
    LABEL_WORKPOOL,
)
from prefect_job_operator.rendering.operator_objects import (
    MAX_EVENT_MESSAGE,
    decorate_job,
    event_body,
    event_name,
    lease_spec,
    new_lease,
    repeat_patch,
    routing_labels,
    takeover_spec,
)

RUN = "5f0e7c1e-8a53-4c8e-9a35-0d1f4a3c2b10"
NOW = datetime(2026, 12, 3, 12, 0, 1, 250000, tzinfo=UTC)
RUN_LABEL = {LABEL_FLOW_RUN_ID: RUN}
WP: dict[str, Any] = {
    "apiVersion": "prefect-job-operator.dev/v1alpha1",
    "kind": "WorkPool",
    "metadata": {"name": "etl", "namespace": "data", "uid": "u-1"},
}


@pytest.mark.parametrize(
    ("instance", "workpool", "pool_id", "expected"),
    [
        (
            "ops",
            "etl",
            "pool-1",
            {
                LABEL_OPERATOR: "ops",
                LABEL_WORKPOOL: "etl",
                LABEL_FLOW_RUN_ID: RUN,
                LABEL_WORK_POOL_ID: "pool-1",
            },
        ),
        (
            "ops",
            "etl",
            None,
            {LABEL_OPERATOR: "ops", LABEL_WORKPOOL: "etl", LABEL_FLOW_RUN_ID: RUN},
        ),
        ("ops", "etl", "", {LABEL_OPERATOR: "ops", LABEL_WORKPOOL: "etl", LABEL_FLOW_RUN_ID: RUN}),
    ],
)
def test_routing_labels(
    instance: str, workpool: str, pool_id: str | None, expected: dict[str, str]
) -> None:
    assert routing_labels(instance, workpool, RUN, pool_id) == expected


def test_routing_label_values_are_valid_label_values() -> None:
    labels = routing_labels("x" * 80, "a/b", RUN, None)
    assert len(labels[LABEL_OPERATOR]) <= 63 and "/" not in labels[LABEL_WORKPOOL]


ROUTING = {LABEL_OPERATOR: "ops", LABEL_FLOW_RUN_ID: RUN}


@pytest.mark.parametrize(
    ("manifest", "kwargs", "annotations", "labels", "pod_labels", "ttl"),
    [
        (  # a bare manifest: everything is added
            {},
            {"claim_id": "c-1", "pod_watch_timeout": 60, "job_watch_timeout": 600},
            {
                ANNOTATION_WORKPOOL: "data/etl",
                ANNOTATION_CLAIM: "c-1",
                ANNOTATION_POD_WATCH_TIMEOUT: "60",
                ANNOTATION_JOB_WATCH_TIMEOUT: "600",
            },
            ROUTING,
            ROUTING,
            300,
        ),
        (  # the routing labels override a template's, other labels stay; its TTL wins
            {
                "metadata": {"labels": {LABEL_OPERATOR: "other", "team": "a"}},
                "spec": {
                    "ttlSecondsAfterFinished": 5,
                    "template": {"metadata": {"labels": {"app": "x"}}},
                },
            },
            {"claim_id": None, "pod_watch_timeout": None, "job_watch_timeout": None},
            {ANNOTATION_WORKPOOL: "data/etl"},
            {**ROUTING, "team": "a"},
            {**ROUTING, "app": "x"},
            5,
        ),
    ],
)
def test_decorate_job(
    manifest: dict[str, Any],
    kwargs: dict[str, Any],
    annotations: dict[str, str],
    labels: dict[str, str],
    pod_labels: dict[str, str],
    ttl: int,
) -> None:
    decorate_job(manifest, routing=ROUTING, workpool_key="data/etl", finished_job_ttl=300, **kwargs)
    assert manifest["metadata"]["annotations"] == annotations
    assert manifest["metadata"]["labels"] == labels
    assert manifest["spec"]["template"]["metadata"]["labels"] == pod_labels
    assert manifest["spec"]["ttlSecondsAfterFinished"] == ttl


def test_no_default_ttl_leaves_the_spec_without_one() -> None:
    manifest: dict[str, Any] = {}
    decorate_job(
        manifest,
        routing=ROUTING,
        workpool_key="data/etl",
        claim_id=None,
        pod_watch_timeout=None,
        job_watch_timeout=None,
        finished_job_ttl=None,
    )
    assert "ttlSecondsAfterFinished" not in manifest["spec"]


@pytest.mark.parametrize(
    ("involved", "type_", "reason", "same_as_first"),
    [
        (WP, "Warning", "FlowRunCrashed", True),
        (WP, "Normal", "FlowRunCrashed", False),
        (WP, "Warning", "PoolSynced", False),
        ({**WP, "metadata": {**WP["metadata"], "uid": "u-2"}}, "Warning", "FlowRunCrashed", False),
    ],
)
def test_event_name_is_one_per_object_type_and_reason(
    involved: dict[str, Any], type_: str, reason: str, same_as_first: bool
) -> None:
    first = event_name(WP, "Warning", "FlowRunCrashed")
    name = event_name(involved, type_, reason)
    assert name.startswith("etl.") and len(name) == len("etl.") + 16
    assert (name == first) is same_as_first


def test_event_body_and_repeat_patch() -> None:
    body = event_body(
        WP,
        name="etl.x",
        type_="Warning",
        reason="FlowRunCrashed",
        message="m" * 2000,
        component="pjo",
        now="2026-12-03T12:00:00Z",
    )
    assert body["metadata"] == {"name": "etl.x", "namespace": "data"}
    assert body["involvedObject"] == {
        "apiVersion": WP["apiVersion"],
        "kind": "WorkPool",
        "name": "etl",
        "namespace": "data",
        "uid": "u-1",
    }
    assert (body["count"], body["firstTimestamp"], body["lastTimestamp"]) == (
        1,
        "2026-12-03T12:00:00Z",
        "2026-12-03T12:00:00Z",
    )
    assert len(body["message"]) == MAX_EVENT_MESSAGE
    assert repeat_patch(3, "again", "t") == {"count": 3, "lastTimestamp": "t", "message": "again"}


def test_new_lease() -> None:
    spec = lease_spec("me", 15, NOW, None, 0)
    assert new_lease("ops", "pool-etl", spec) == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "pool-etl", "namespace": "ops"},
        "spec": {
            "holderIdentity": "me",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-12-03T12:00:01.250000Z",
            "renewTime": "2026-12-03T12:00:01.250000Z",
            "leaseTransitions": 0,
        },
    }


@pytest.mark.parametrize(
    ("current", "acquire_time", "transitions"),
    [
        # renewing our own lease keeps acquireTime and the transition count
        ({"holderIdentity": "me", "acquireTime": "T0", "leaseTransitions": 2}, "T0", 2),
        # taking over another's (expired) lease is a new acquisition and one more transition
        (
            {"holderIdentity": "peer", "acquireTime": "T0", "leaseTransitions": 2},
            "2026-12-03T12:00:01.250000Z",
            3,
        ),
        # a released lease (no holder) is taken over too
        ({"holderIdentity": None}, "2026-12-03T12:00:01.250000Z", 1),
    ],
)
def test_takeover_spec(current: dict[str, Any], acquire_time: str, transitions: int) -> None:
    spec = takeover_spec(current, "me", 15, NOW)
    assert spec == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": acquire_time,
        "renewTime": "2026-12-03T12:00:01.250000Z",
        "leaseTransitions": transitions,
    }
