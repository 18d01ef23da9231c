"""Every state the operator writes to Prefect goes through here.

One place decides which outcomes are final, which proposals are best-effort, and how the
orchestration result (not the HTTP code) is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from prefect_job_operator.prefect_api.errors import PrefectAPIError
from prefect_job_operator.prefect_api.port import PrefectPort

log = logging.getLogger(__name__)

FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True)
class Claim:
    """The result of proposing Pending: ``claim_id`` is the Pending state's id when won."""

    won: bool
    claim_id: str | None
    state_type: str | None
    state_name: str | None
    reason: str | None


class StateWriter:
    """Proposals for one pool, with counters for the CR status and metrics."""

    def __init__(
        self, client: PrefectPort, *, on_outcome: Callable[[str, str], None] | None = None
    ) -> None:
        self.client = client
        self.on_outcome: Callable[[str, str], None] = on_outcome or (lambda kind, reason: None)
        """Told (kind, reason) for every accepted Crashed/Cancelled: counters and metrics."""

    async def claim(self, flow_run_id: str) -> Claim:
        """Propose Pending; only ACCEPT with a PENDING state wins the run."""
        result = await self.client.set_flow_run_state(flow_run_id, type="PENDING")
        state = result.state
        won = result.status == "ACCEPT" and state is not None and state.type == "PENDING"
        return Claim(
            won=won,
            claim_id=str(state.id) if won and state is not None and state.id else None,
            state_type=state.type if state is not None else None,
            state_name=state.name if state is not None else None,
            reason=result.reason,
        )

    async def submitting(self, flow_run_id: str) -> str | None:
        """Pending "Submitting", best-effort; returns the run's state type if not accepted."""
        try:
            result = await self.client.set_flow_run_state(
                flow_run_id, type="PENDING", name="Submitting"
            )
        except PrefectAPIError as exc:
            log.warning("Proposing Submitting for flow run %s failed: %s", flow_run_id, exc)
            return None
        if result.status == "ACCEPT" or result.state is None:
            return None
        return result.state.type

    async def infrastructure_pending(self, flow_run_id: str, message: str) -> None:
        """Pending "InfrastructurePending" while the pod waits (observer parity)."""
        try:
            await self.client.set_flow_run_state(
                flow_run_id, type="PENDING", name="InfrastructurePending", message=message
            )
        except PrefectAPIError as exc:
            log.info("Proposing InfrastructurePending for %s failed: %s", flow_run_id, exc)

    async def crashed(self, flow_run_id: str, message: str, reason: str = "JobFailed") -> bool:
        """Propose Crashed; True when the server accepted it."""
        result = await self.client.set_flow_run_state(
            flow_run_id, type="CRASHED", name="Crashed", message=message
        )
        accepted = result.status == "ACCEPT"
        if accepted:
            self.on_outcome("crashed", reason)
        return accepted

    async def cancelled(self, flow_run_id: str, message: str) -> None:
        """Force Cancelled, as BaseWorker does (orchestration rules are bypassed)."""
        await self.client.set_flow_run_state(
            flow_run_id, type="CANCELLED", name="Cancelled", message=message, force=True
        )
        self.on_outcome("cancelled", "Cancelled")

    async def record_pid(self, flow_run_id: str, pid: str) -> None:
        await self.client.set_infrastructure_pid(flow_run_id, pid)

    async def labels(self, flow_run_id: str, labels: dict[str, str]) -> None:
        """Worker labels on the run: display only, so a failure never touches the run."""
        try:
            await self.client.update_flow_run_labels(flow_run_id, labels)
        except PrefectAPIError as exc:
            log.warning("Labelling flow run %s failed (ignored): %s", flow_run_id, exc)
