"""Leader election per WorkPool with a coordination.k8s.io/v1 Lease.

Several operator replicas may run; only the holder of a pool's Lease dispatches its runs
and acts on its Jobs, so a run is never claimed twice and a crash is reported once.

The timing rules are client-go's (k8s.io/client-go/tools/leaderelection):

- a lease is expired when this replica has seen the same record (holder, renewTime,
  resourceVersion) for longer than its duration, measured on this replica's monotonic clock
  from when it *observed* the record change: another host's clock is never trusted;
- a leader that has not renewed within ``renew_deadline`` (< duration) stops leading, so it
  stops claiming before any peer can consider the lease expired, and leads again only after
  it holds the lease again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from prefect_job_operator import clock
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.rendering.operator_objects import lease_spec, new_lease, takeover_spec

log = logging.getLogger(__name__)

RENEW_DEADLINE_FRACTION = 2 / 3  # client-go's defaults: 10 s of a 15 s lease
RETRY_FRACTION = 2 / 15  # client-go's defaults: 2 s of a 15 s lease


class PoolLease:
    """Acquire and renew one Lease; ``held`` says whether this replica may act."""

    def __init__(
        self,
        kube: KubePort,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.renew_deadline = duration_seconds * RENEW_DEADLINE_FRACTION
        self.retry_period = max(0.5, duration_seconds * RETRY_FRACTION)
        self.clock = clock
        self.held = False
        self.holder: str | None = None
        self.last_renewed: float | None = None
        """Monotonic time of this replica's last successful acquire or renewal."""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    def _observe(self, lease: dict[str, Any]) -> float:
        """Seconds since this replica saw the lease record change (client-go's rule)."""
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("acquireTime"),
            (lease.get("metadata") or {}).get("resourceVersion"),
        )
        now = self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        return now - self._observed_at

    def _won(self) -> bool:
        self.held, self.holder, self.last_renewed = True, self.identity, self.clock()
        return True

    async def try_acquire(self) -> bool:
        """One acquire-or-renew round; False when someone else holds a live lease."""
        now = clock.now()
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None:
                spec = lease_spec(self.identity, self.duration, now, None, 0)
                await self.kube.create_lease(
                    self.namespace, new_lease(self.namespace, self.name, spec)
                )
                return self._won()
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            unchanged_for = self._observe(lease)
            duration = int(spec.get("leaseDurationSeconds") or self.duration)
            expired = unchanged_for > duration
            if holder not in (None, "", self.identity) and not expired:
                self.held, self.holder = False, holder
                return False
            lease["spec"] = takeover_spec(spec, self.identity, self.duration, now)
            written = await self.kube.replace_lease(self.namespace, self.name, lease)
            self._observe(written if isinstance(written, dict) and written else lease)
            return self._won()
        except KubeError as exc:
            if exc.status == 409:  # lost a race: someone else renewed or created it
                self.held = False
                return False
            raise

    def deadline_passed(self) -> bool:
        """True when the last successful renewal is older than the renew deadline."""
        return self.last_renewed is None or (
            self.clock() - self.last_renewed >= self.renew_deadline
        )

    async def renew(self) -> bool:
        """A leader's renewal round: False when leadership must stop now.

        An API error or a hanging call is tolerated until the renew deadline: the leader
        then stops before a peer can take the lease over, and never acts on a lease it may
        have lost.
        """
        remaining = (
            0.0
            if self.last_renewed is None
            else self.renew_deadline - (self.clock() - self.last_renewed)
        )
        if remaining > 0:
            with anyio.move_on_after(remaining):
                try:
                    return await self.try_acquire()
                except KubeError as exc:
                    log.warning("Renewing Lease %s/%s failed: %s", self.namespace, self.name, exc)
        if self.deadline_passed():
            log.warning(
                "Lease %s/%s not renewed within %.1fs: stepping down",
                self.namespace,
                self.name,
                self.renew_deadline,
            )
            self.held = False
            return False
        return True

    async def release(self) -> None:
        """Give the lease up at shutdown so a peer takes over at once."""
        if not self.held:
            return
        self.held = False
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except KubeError:
            pass
