"""The unit tests' FakePrefectClient orchestrates state proposals as a real Prefect 3.9.1 does.

Each scenario starts from a fresh Scheduled run (a real one made through a deployment, a fake
one with ``add_run``), sends the same proposals to both through the same port
(``PrefectPort.set_flow_run_state``) and compares, step by step, the result status, the
type of the state the result carries, and the run's state afterwards. A rule changed on
either side fails here, so the fake the dispatch unit tests rely on cannot drift.
"""

from __future__ import annotations

from typing import Any

import pytest

from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.models import OrchestrationResult
from prefect_job_operator.prefect_api.port import PrefectPort
from tests.infra.prefect_server import PrefectServer
from tests.infra.prefect_setup import (
    create_deployment,
    create_flow,
    create_flow_run,
    create_work_pool,
    setup_client,
    unique,
)
from tests.unit.fakes import FakePrefectClient

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

Proposal = tuple[str, str | None, bool]
"""(state type, state name or None for the default, force)."""

SCENARIOS: dict[str, list[Proposal]] = {
    "claim then run then complete": [
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("COMPLETED", None, False),
    ],
    "a second claim is aborted": [("PENDING", None, False), ("PENDING", None, False)],
    "a claim from Running is aborted": [
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("PENDING", None, False),
    ],
    "a renamed Pending from Pending is accepted": [
        ("PENDING", None, False),
        ("PENDING", "Submitting", False),
    ],
    "the same renamed Pending twice": [
        ("PENDING", "Submitting", False),
        ("PENDING", "Submitting", False),
    ],
    "cancelling then cancelled": [
        ("PENDING", None, False),
        ("CANCELLING", None, False),
        ("CANCELLED", None, False),
    ],
    "crashed from pending": [("PENDING", None, False), ("CRASHED", None, False)],
    "crashed from running": [
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("CRASHED", None, False),
    ],
    "failed from running": [
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("FAILED", None, False),
    ],
    "nothing moves a terminal run": [
        ("PENDING", None, False),
        ("CANCELLED", None, False),
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("CRASHED", None, False),
    ],
    "force moves a terminal run": [
        ("PENDING", None, False),
        ("RUNNING", None, False),
        ("COMPLETED", None, False),
        ("SCHEDULED", None, True),
        ("PENDING", None, False),
    ],
    "forced pending over pending": [("PENDING", None, False), ("PENDING", None, True)],
}

STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "CANCELLING",
    "COMPLETED",
    "FAILED",
    "CRASHED",
    "CANCELLED",
)
# Every unforced proposal from every state a run can be in, reached by forced proposals
# through Pending (the server turns Scheduled -> Cancelling into Cancelled, even forced).
SCENARIOS.update(
    {
        f"{start} -> {proposed}": [
            ("PENDING", None, True),
            (start, None, True),
            (proposed, None, False),
        ]
        for start in STATE_TYPES[1:]
        for proposed in STATE_TYPES
    }
)

Step = tuple[str, str | None, str]
"""(result status, type of the result's state or None, the run's state type afterwards)."""


def _step(result: OrchestrationResult, run_state: str) -> Step:
    carried = str(result.state.type) if result.state is not None else None
    return (str(result.status), carried, run_state)


async def _play(port: PrefectPort, run_id: str, proposals: list[Proposal]) -> list[Step]:
    steps: list[Step] = []
    for type_, name, force in proposals:
        result = await port.set_flow_run_state(run_id, type=type_, name=name, force=force)
        run = await port.read_flow_run(run_id)
        assert run.state is not None
        steps.append(_step(result, str(run.state.type)))
    return steps


async def _real_runs(server: PrefectServer, count: int) -> list[str]:
    """Fresh Scheduled runs of one deployment in a pool of their own."""
    async with setup_client(server.api_url) as http:
        pool = unique("parity")
        await create_work_pool(http, pool)
        flow = await create_flow(http, unique("flow"))
        dep = await create_deployment(
            http, flow_id=flow["id"], name=unique("dep"), work_pool_name=pool
        )
        return [str((await create_flow_run(http, dep["id"]))["id"]) for _ in range(count)]


async def test_fake_orchestration_matches_the_real_server(prefect_server: PrefectServer) -> None:
    run_ids = await _real_runs(prefect_server, len(SCENARIOS))
    fake = FakePrefectClient()
    mismatches: dict[str, Any] = {}
    steps_compared = 0
    async with PrefectClient(prefect_server.api_url) as real:
        for run_id, (scenario, proposals) in zip(run_ids, SCENARIOS.items(), strict=True):
            want = await _play(real, run_id, proposals)
            have = await _play(fake, fake.add_run(), proposals)
            steps_compared += len(want)
            if have != want:
                mismatches[scenario] = {"server": want, "fake": have}
    assert steps_compared == sum(len(p) for p in SCENARIOS.values())
    assert not mismatches, "\n".join(f"{k}: {v}" for k, v in mismatches.items())
