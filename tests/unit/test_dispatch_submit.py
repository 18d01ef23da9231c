"""Poll, claim and launch against in-memory Prefect and Kubernetes fakes."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import pytest

from prefect_job_operator.api.v1alpha1 import (
    ANNOTATION_CLAIM,
    ANNOTATION_POD_WATCH_TIMEOUT,
    LABEL_OPERATOR,
)
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.submit import SUBMIT_FAILED, launch, poll_once
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.errors import APIUnreachable
from tests.unit.fakes import (
    POOL_ID,
    FakeKube,
    FakePrefectClient,
    job_condition,
    job_json,
    make_runtime,
)

API = {"api": {"url": "http://prefect-server:4200/api"}}


async def poll(rt: Pool) -> int | None:
    """One poll, waiting for every submission it started."""
    limiter = anyio.CapacityLimiter(rt.cfg.spec.worker.submit_concurrency)
    async with anyio.create_task_group() as tg:
        started = await poll_once(rt.submitter, tg, limiter)
    return started


def jobs_of(kube: FakeKube, run_id: str) -> list[dict[str, Any]]:
    return [
        j for j in kube.jobs.values() if j["metadata"]["labels"]["prefect.io/flow-run-id"] == run_id
    ]


World = tuple[Pool, FakePrefectClient, FakeKube]


@pytest.fixture
def world() -> World:
    return make_runtime(spec=API)


def _claim_id(client: FakePrefectClient, run_id: str) -> str:
    for (rid, type_, name, _, _), result in zip(client.proposals, client.results, strict=True):
        if rid == run_id and type_ == "PENDING" and name == "Pending":
            assert result.status == "ACCEPT" and result.state is not None
            return str(result.state.id)
    raise AssertionError("no accepted claim")


async def test_claim_won_creates_one_labelled_job_and_records_pid(world: World) -> None:
    rt, client, kube = world
    dep = client.add_deployment()
    run_id = client.add_run(deployment_id=dep)

    assert await poll(rt) == 1

    [job] = jobs_of(kube, run_id)
    meta = job["metadata"]
    assert meta["namespace"] == "default"
    assert meta["name"].startswith("crimson-fox-")
    assert meta["labels"][LABEL_OPERATOR] == rt.cfg.settings.instance
    assert meta["labels"]["prefect.io/flow-run-id"] == run_id
    assert meta["labels"]["prefect.io/work-pool-id"] == POOL_ID
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[LABEL_OPERATOR] == rt.cfg.settings.instance
    assert pod_labels["prefect.io/flow-run-id"] == run_id
    assert meta["annotations"][ANNOTATION_CLAIM] == _claim_id(client, run_id)
    assert meta["annotations"][ANNOTATION_POD_WATCH_TIMEOUT] == "60"
    assert client.runs[run_id]["infrastructure_pid"] == f"default:{meta['name']}"
    # One state proposal per run by default: "Submitting" is opt-in (display only).
    assert client.state_of(run_id) == ("PENDING", "Pending")
    assert [p[:2] for p in client.proposed(run_id)] == [("PENDING", "Pending")]
    assert client.label_patches[0][1]["prefect.worker.name"] == rt.cfg.worker_name
    rec = rt.table.get(run_id)
    assert rec is not None and rec.pid == f"default:{meta['name']}"
    assert rec.pid_recorded and not rec.pid_queued
    assert rt.submitter.in_flight == set()
    assert rt.ports.counters.submitted == 1
    assert rt.ports.metrics.runs_dispatched.value(*rt.cfg.metric_labels) == 1


async def test_submitting_state_is_proposed_before_the_job_when_enabled() -> None:
    rt, client, kube = make_runtime(spec={**API, "worker": {"submittingState": True}})
    run_id = client.add_run(deployment_id=client.add_deployment())
    jobs_at_submitting: list[int] = []

    def count_jobs(rid: str, type_: str, name: str | None) -> None:
        if name == "Submitting":
            jobs_at_submitting.append(len(kube.jobs))

    client.on_propose = count_jobs
    await poll(rt)

    assert [p[:2] for p in client.proposed(run_id)] == [
        ("PENDING", "Pending"),
        ("PENDING", "Submitting"),
    ]
    assert jobs_at_submitting == [0]
    assert len(jobs_of(kube, run_id)) == 1
    assert client.state_of(run_id) == ("PENDING", "Submitting")


async def test_pid_and_labels_trail_the_job_without_holding_a_submission_slot() -> None:
    """With one submission slot and the first run's pid PATCH stuck, the second run still
    gets its Job: bookkeeping does not hold the slot."""
    rt, client, kube = make_runtime(spec={**API, "worker": {"submitConcurrency": 1}})
    dep = client.add_deployment()
    first = client.add_run(name="first-run", deployment_id=dep)
    second = client.add_run(name="second-run", deployment_id=dep)
    release = anyio.Event()
    pid_order: list[str] = []
    original = client.set_infrastructure_pid

    async def slow_pid(flow_run_id, pid):  # type: ignore[no-untyped-def]
        if str(flow_run_id) == first:
            await release.wait()
        pid_order.append(str(flow_run_id))
        await original(flow_run_id, pid)

    client.set_infrastructure_pid = slow_pid  # type: ignore[method-assign]
    limiter = anyio.CapacityLimiter(1)
    async with anyio.create_task_group() as tg:
        await poll_once(rt.submitter, tg, limiter)
        with anyio.fail_after(5):
            while len(kube.jobs) < 2:
                await anyio.sleep(0.01)
        rec = rt.table.get(first)
        assert rec is not None and rec.pid_queued and not rec.pid_recorded
        assert client.runs[first]["infrastructure_pid"] is None
        release.set()

    assert pid_order == [second, first]
    assert client.runs[first]["infrastructure_pid"] is not None
    assert client.runs[second]["infrastructure_pid"] is not None
    assert {p[0] for p in client.label_patches} == {first, second}


async def test_claim_lost_creates_no_job(world: World) -> None:
    rt, client, kube = world
    run_id = client.add_run(deployment_id=client.add_deployment())

    def other_worker_wins(rid: str, type_: str, name: str | None) -> None:
        if type_ == "PENDING" and name == "Pending":
            client.set_state(rid, "PENDING", "Pending")

    client.on_propose = other_worker_wins
    assert await poll(rt) == 1
    assert kube.jobs == {}
    assert kube.calls["create_job"] == 0
    assert client.results[-1].status == "ABORT"
    assert [p[:2] for p in client.proposed(run_id)] == [("PENDING", "Pending")]
    assert client.calls["set_infrastructure_pid"] == 0
    assert rt.ports.counters.submitted == 0
    assert rt.ports.metrics.runs_claim_lost.total(*rt.cfg.metric_labels) == 1


async def test_poll_skips_runs_being_submitted_or_already_tracked(world: World) -> None:
    rt, client, kube = world
    dep = client.add_deployment()
    busy = client.add_run(name="busy-run", deployment_id=dep)
    tracked = client.add_run(name="tracked-run", deployment_id=dep)
    fresh = client.add_run(name="fresh-run", deployment_id=dep)
    rt.submitter.in_flight.add(busy)
    rt.table.observe_job("ADDED", job_json(tracked, "tracked-run-aaaaaaaaaa"))

    assert await poll(rt) == 1
    assert {p[0] for p in client.proposals} == {fresh}
    assert len(kube.jobs) == 1 and jobs_of(kube, fresh)
    assert rt.submitter.in_flight == {busy}


async def test_limit_bounds_jobs_in_flight_not_submissions() -> None:
    rt, client, kube = make_runtime(spec={**API, "limit": 3})
    dep = client.add_deployment()
    runs = [client.add_run(name=f"run-{i}", deployment_id=dep) for i in range(5)]

    assert await poll(rt) == 3
    assert len(kube.jobs) == 3
    # Three Jobs pending: nothing more may start, even in a later poll.
    assert await poll(rt) == 0
    assert len(kube.jobs) == 3

    # One Job finishes: exactly one slot frees up.
    done_id = next(r for r in runs if jobs_of(kube, r))
    done = jobs_of(kube, done_id)[0]
    done["status"] = {"succeeded": 1, "conditions": [job_condition("Complete")]}
    rt.table.observe_job("MODIFIED", done)
    assert await poll(rt) == 1
    assert len(kube.jobs) == 4


async def test_limit_counts_runs_still_submitting() -> None:
    rt, client, kube = make_runtime(spec={**API, "limit": 3})
    dep = client.add_deployment()
    for i in range(5):
        client.add_run(name=f"run-{i}", deployment_id=dep)
    rt.submitter.in_flight.add("11111111-1111-4111-8111-111111111111")
    rt.table.observe_job("ADDED", job_json("22222222-2222-4222-8222-222222222222", "other-1"))
    assert await poll(rt) == 1
    assert len(kube.jobs) == 1


async def test_deployment_and_flow_read_once_per_poll(world: World) -> None:
    rt, client, kube = world
    flow = client.add_flow("etl")
    dep = client.add_deployment(flow_id=flow)
    for i in range(12):
        client.add_run(name=f"run-{i}", deployment_id=dep, flow_id=flow)

    assert await poll(rt) == 12
    assert len(kube.jobs) == 12
    assert client.calls["read_deployment"] == 1
    assert client.calls["read_flow"] == 1
    assert client.calls["get_scheduled_flow_runs"] == 1

    for i in range(3):
        client.add_run(name=f"later-{i}", deployment_id=dep, flow_id=flow)
    assert await poll(rt) == 3
    assert client.calls["read_deployment"] == 2  # once per poll
    assert client.calls["read_flow"] == 1  # flows are cached


async def test_second_launch_with_same_claim_adopts_the_job(world: World) -> None:
    rt, client, kube = world
    dep_id = client.add_deployment()
    run_id = client.add_run(deployment_id=dep_id)
    await poll(rt)
    [job] = jobs_of(kube, run_id)
    claim = _claim_id(client, run_id)
    crashed_before = [p for p in client.proposed(run_id) if p[0] == "CRASHED"]

    run = await client.read_flow_run(run_id)
    dep = await client.read_deployment(dep_id)
    flow = await client.read_flow(str(run.flow_id))
    await launch(rt.submitter, run, dep, flow, claim_id=claim, resubmission=True)

    assert kube.calls["create_job"] == 2  # the second got 409 ...
    assert kube.calls["read_job"] == 1  # ... and read the existing Job
    assert jobs_of(kube, run_id) == [job]
    assert client.runs[run_id]["infrastructure_pid"] == f"default:{job['metadata']['name']}"
    assert [p for p in client.proposed(run_id) if p[0] == "CRASHED"] == crashed_before == []


async def test_name_taken_by_another_runs_job_crashes(world: World) -> None:
    rt, client, kube = world
    dep_id = client.add_deployment()
    run_id = client.add_run(deployment_id=dep_id)
    await poll(rt)
    [job] = jobs_of(kube, run_id)
    job["metadata"]["labels"]["prefect.io/flow-run-id"] = "someone-else"
    run = await client.read_flow_run(run_id)
    await launch(
        rt.submitter,
        run,
        await client.read_deployment(dep_id),
        None,
        claim_id=_claim_id(client, run_id),
        resubmission=True,
    )
    type_, _, message, _ = client.proposed(run_id)[-1]
    assert type_ == "CRASHED"
    assert message is not None and "already exists" in message


async def test_namespace_outside_job_namespaces_crashes(world: World) -> None:
    rt, client, kube = world
    dep = client.add_deployment(namespace="team-b")
    run_id = client.add_run(deployment_id=dep)

    await poll(rt)

    assert kube.calls["create_job"] == 0
    assert client.state_of(run_id) == ("CRASHED", "Crashed")
    message = client.runs[run_id]["state"]["message"]
    assert message.startswith(f"{SUBMIT_FAILED}: ")
    assert "'team-b'" in message and "spec.jobNamespaces" in message and "default" in message
    assert rt.ports.metrics.submission_failures.value(*rt.cfg.metric_labels, "render") == 1
    assert rt.ports.counters.crashed == 1


async def test_render_error_crashes_that_run_and_the_pool_continues(world: World) -> None:
    rt, client, kube = world
    bad = client.add_run(name="bad-run", deployment_id=client.add_deployment(command=123))
    good = client.add_run(name="good-run", deployment_id=client.add_deployment())

    assert await poll(rt) == 2

    assert client.state_of(bad)[0] == "CRASHED"
    message = client.runs[bad]["state"]["message"]
    assert message.startswith("Failed to submit flow run to infrastructure: ")
    assert "command" in message
    assert jobs_of(kube, bad) == []
    assert len(jobs_of(kube, good)) == 1
    assert client.state_of(good) == ("PENDING", "Pending")
    assert rt.submitter.in_flight == set()


async def test_labels_patch_failure_never_crashes_the_run(world: World) -> None:
    rt, client, kube = world
    client.fail["update_flow_run_labels"] = APIUnreachable(503, "Service Unavailable")
    run_id = client.add_run(deployment_id=client.add_deployment())

    await poll(rt)

    assert client.calls["update_flow_run_labels"] == 1
    assert len(jobs_of(kube, run_id)) == 1
    assert all(p[0] != "CRASHED" for p in client.proposed(run_id))
    assert client.runs[run_id]["infrastructure_pid"] is not None


async def test_pid_patch_failure_keeps_the_job(world: World) -> None:
    rt, client, kube = world
    client.fail["set_infrastructure_pid"] = APIUnreachable(503, "Service Unavailable")
    run_id = client.add_run(deployment_id=client.add_deployment())
    await poll(rt)
    assert len(jobs_of(kube, run_id)) == 1
    assert all(p[0] != "CRASHED" for p in client.proposed(run_id))
    assert rt.table.get(run_id) is not None  # the sweep adopts it later


async def test_cancelling_seen_at_submitting_creates_no_job() -> None:
    rt, client, kube = make_runtime(spec={**API, "worker": {"submittingState": True}})
    run_id = client.add_run(deployment_id=client.add_deployment())

    def user_cancels(rid: str, type_: str, name: str | None) -> None:
        if name == "Submitting":
            client.set_state(rid, "CANCELLING", "Cancelling")

    client.on_propose = user_cancels
    await poll(rt)

    assert kube.calls["create_job"] == 0
    type_, name, message, force = client.proposed(run_id)[-1]
    assert (type_, name, force) == ("CANCELLED", "Cancelled", True)
    assert message is not None and "before its Job was created" in message
    assert client.state_of(run_id)[0] == "CANCELLED"
    assert rt.ports.counters.cancelled == 1


async def test_deployment_gone_force_cancels_with_upstream_message(world: World) -> None:
    rt, client, kube = world
    missing = "7a1e7c55-0000-4000-8000-00000000dead"
    run_id = client.add_run(deployment_id=missing)

    await poll(rt)

    assert kube.calls["create_job"] == 0
    assert client.proposed(run_id) == [
        ("CANCELLED", "Cancelled", f"Deployment {missing} no longer exists, cancelled run.", True)
    ]
    assert client.state_of(run_id)[0] == "CANCELLED"


async def test_rescheduled_run_whose_job_finished_is_dispatched_again(world: World) -> None:
    """SIGTERM with PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule (node drain): the
    flow proposes AwaitingRetry (SCHEDULED) and exits 0, so its Job completes. The next poll
    must claim the run again and create a new Job (new claim, new name)."""
    rt, client, kube = world
    run_id = client.add_run(deployment_id=client.add_deployment())
    await poll(rt)
    [first] = jobs_of(kube, run_id)

    client.set_state(run_id, "SCHEDULED", "AwaitingRetry")
    first["status"] = {"succeeded": 1, "conditions": [job_condition("Complete")]}
    rt.table.observe_job("MODIFIED", first)

    assert await poll(rt) == 1
    names = sorted(j["metadata"]["name"] for j in jobs_of(kube, run_id))
    assert len(names) == 2 and first["metadata"]["name"] in names


PREFECT_METHODS = [
    "get_scheduled_flow_runs",
    "read_deployment",
    "read_flow",
    "read_flow_run",
    "read_flow_runs",
    "set_flow_run_state",
    "set_infrastructure_pid",
    "update_flow_run_labels",
    "read_block_document_by_name",
    "read_block_document",
    "read_variable_by_name",
    "emit_events",
    "create_logs",
    "read_work_pool",
    "create_work_pool",
    "update_work_pool",
    "heartbeat",
]
KUBE_METHODS = [
    "create_job",
    "read_job",
    "delete_job",
    "list_jobs",
    "list_pods",
    "pod_log_tail",
    "create_or_replace_secret",
    "own_secret",
    "delete_secret",
    "read_secret_value",
    "read_configmap_value",
    "patch_status",
    "create_event",
    "patch_event",
    "read_event",
    "read_lease",
    "create_lease",
    "replace_lease",
]


def _shape(fn: object) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fake", "real", "name"),
    [(FakePrefectClient, PrefectClient, m) for m in PREFECT_METHODS]
    + [(FakeKube, Kube, m) for m in KUBE_METHODS],
)
def test_fakes_keep_the_real_signatures(fake: type, real: type, name: str) -> None:
    """The fakes stand in for the real boundaries only while their call shapes match."""
    real_fn, fake_fn = getattr(real, name), getattr(fake, name)
    assert inspect.iscoroutinefunction(fake_fn)
    if name == "update_work_pool":  # the fake takes **fields for the keyword-only updates
        assert _shape(fake_fn)[:2] == _shape(real_fn)[:2]
        return
    assert _shape(fake_fn) == _shape(real_fn)


async def test_cancel_requested_during_submission_creates_no_job(world: World) -> None:
    """sweep_cancelling flags a run that is still being submitted; launch honours it."""
    rt, client, kube = world
    dep_id = client.add_deployment()
    run_id = client.add_run(deployment_id=dep_id, state="PENDING", state_name="Submitting")
    client.set_state(run_id, "CANCELLING", "Cancelling")
    rt.submitter.cancel_requested.add(run_id)
    run = await client.read_flow_run(run_id)
    await launch(
        rt.submitter,
        run,
        await client.read_deployment(dep_id),
        None,
        claim_id="c1",
        resubmission=True,
    )
    assert kube.calls["create_job"] == 0
    assert client.proposed(run_id)[-1][:2] == ("CANCELLED", "Cancelled")
    assert client.state_of(run_id)[0] == "CANCELLED"


async def test_job_variables_cannot_override_the_routing_labels(world: World) -> None:
    """Job variables that set the labels the watches route by would make a Job the operator
    cannot see (and later kills): the operator's own values win, on the Job and its pods."""
    rt, client, kube = world
    dep = client.add_deployment(
        labels={
            "prefect-job-operator.dev/operator": "someone-else",
            "prefect.io/work-pool-id": "not-this-pool",
            "prefect.io/flow-run-id": "not-this-run",
            "prefect-job-operator.dev/workpool": "other",
            "team": "data",
        }
    )
    run_id = client.add_run(deployment_id=dep)
    await poll(rt)
    [job] = jobs_of(kube, run_id)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["prefect-job-operator.dev/operator"] == rt.cfg.settings.instance
        assert labels["prefect.io/work-pool-id"] == POOL_ID
        assert labels["prefect.io/flow-run-id"] == run_id
        assert labels["prefect-job-operator.dev/workpool"] == rt.cfg.name
        assert labels["team"] == "data"  # other job-variable labels are kept
    assert rt.table.get(run_id) is not None


async def test_a_64_character_workpool_name_gives_valid_label_values() -> None:
    name = "a" * 62 + "-b"
    rt, client, kube = make_runtime(spec={**API, "poolName": "k8s"}, name=name)
    run_id = client.add_run(deployment_id=client.add_deployment())
    await poll(rt)
    [job] = jobs_of(kube, run_id)
    value = job["metadata"]["labels"]["prefect-job-operator.dev/workpool"]
    assert len(value) <= 63 and value[-1].isalnum() and value[0].isalnum()
    assert job["spec"]["template"]["metadata"]["labels"]["prefect-job-operator.dev/workpool"] == (
        value
    )
