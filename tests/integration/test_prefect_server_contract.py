"""What the real Prefect 3.9.1 server accepts, where the benchmark's cost questions hinge on it
(docs/benchmarks.md, issue #14): can the worker labels ride in the ``infrastructure_pid``
PATCH, and what must a label write preserve?

The answers come from the server, not from reading its code: ``FlowRunUpdate`` has no
``labels`` field and forbids extra fields, so a combined PATCH is refused whole (422, the pid
is not written either); ``PATCH /flow_runs/{id}/labels`` merges into the run's labels, so the
labels the server derived at creation (``prefect.flow.id``, ``prefect.deployment.id``) and any
the user set stay. One write per run for the labels is therefore the minimum.
"""

from __future__ import annotations

import pytest

from tests.infra.prefect_server import PrefectServer
from tests.infra.prefect_setup import (
    call,
    create_deployment,
    create_flow,
    create_flow_run,
    create_work_pool,
    read_flow_run,
    setup_client,
    unique,
)

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

WORKER_LABELS = {"prefect.worker.name": "op", "prefect.worker.type": "kubernetes"}


async def test_labels_cannot_ride_in_the_pid_patch_and_the_labels_patch_merges(
    prefect_server: PrefectServer,
) -> None:
    async with setup_client(prefect_server.api_url) as http:
        pool = unique("pool")
        await create_work_pool(http, pool)
        flow = await create_flow(http, unique("flow"))
        dep = await create_deployment(
            http, flow_id=flow["id"], name=unique("dep"), work_pool_name=pool
        )
        run = await create_flow_run(http, dep["id"])
        run_id = run["id"]
        created = (await read_flow_run(http, run_id))["labels"]
        assert created["prefect.flow.id"] == flow["id"]
        assert created["prefect.deployment.id"] == dep["id"]

        both = await http.patch(
            f"/flow_runs/{run_id}", json={"infrastructure_pid": "ns:job", "labels": WORKER_LABELS}
        )
        assert both.status_code == 422, both.text
        assert "labels" in both.text  # the extra field is what is refused
        assert (await read_flow_run(http, run_id))["infrastructure_pid"] is None, "not partial"

        await call(http, "PATCH", f"/flow_runs/{run_id}/labels", {"user.label": "kept"})
        await call(http, "PATCH", f"/flow_runs/{run_id}/labels", WORKER_LABELS)
        labels = (await read_flow_run(http, run_id))["labels"]
        assert labels == {**created, "user.label": "kept", **WORKER_LABELS}
