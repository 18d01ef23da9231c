"""Worker events name the Prefect server's version (GET /admin/version), not a constant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect_job_operator.dispatch.telemetry import Telemetry
from prefect_job_operator.prefect_api.errors import APIUnreachable
from prefect_job_operator.rendering.contracts import DEFAULT_PREFECT_VERSION
from tests.unit.fakes import FakePrefectClient, pod_json

POOL = {"id": "p-1", "name": "k8s", "type": "kubernetes"}
RUN = "5f0e7c1e-8a53-4c8e-9a35-0d1f4a3c2b10"


def _telemetry(client: FakePrefectClient) -> Telemetry:
    return Telemetry(client, worker_name="w-1", pool=POOL)


def _worker_versions(event: Mapping[str, Any]) -> list[str]:
    resources = [event["resource"], *event["related"]]
    return [r["prefect.version"] for r in resources if "prefect.version" in r]


async def test_events_carry_the_servers_version_once_known() -> None:
    client = FakePrefectClient()
    client.version = "3.8.2"
    telemetry = _telemetry(client)
    await telemetry.flush()
    telemetry.event("prefect.worker.submitted-flow-run")
    pod = pod_json(RUN, "Running")
    pod["metadata"]["labels"]["prefect.io/worker-name"] = "w-1"
    telemetry.pod_event("MODIFIED", pod)
    await telemetry.flush()
    assert [_worker_versions(e) for e in client.emitted] == [["3.8.2"], ["3.8.2"]]
    await telemetry.flush()
    assert client.calls["server_version"] == 1  # asked once


async def test_an_unanswered_version_falls_back_and_is_not_asked_again() -> None:
    client = FakePrefectClient()
    client.fail["server_version"] = APIUnreachable(None, "down")
    telemetry = _telemetry(client)
    await telemetry.flush()
    telemetry.event("prefect.worker.submitted-flow-run")
    await telemetry.flush()
    assert [_worker_versions(e) for e in client.emitted] == [[DEFAULT_PREFECT_VERSION]]
    assert client.calls["server_version"] == 1
