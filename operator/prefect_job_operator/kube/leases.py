"""Leader election per WorkPool with a coordination.k8s.io/v1 Lease.

Several operator replicas may run; only the holder of a pool's Lease dispatches its runs
and acts on its Jobs, so a run is never claimed twice and a crash is reported once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.kube.client import Kube, KubeError


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class PoolLease:
    """Acquire and renew one Lease; ``held`` says whether this replica may act."""

    def __init__(
        self, kube: Kube, namespace: str, name: str, identity: str, duration_seconds: int
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.held = False
        self.holder: str | None = None

    def _spec(self, now: datetime, acquired: str | None, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": acquired or _fmt(now),
            "renewTime": _fmt(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One acquire-or-renew round; False when someone else holds a live lease."""
        now = clock.now()
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is None:
                await self.kube.create_lease(
                    self.namespace,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(now, None, 0),
                    },
                )
                self.held, self.holder = True, self.identity
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
            duration = int(spec.get("leaseDurationSeconds") or self.duration)
            expired = renewed is None or now - renewed > timedelta(seconds=duration)
            if holder not in (None, "", self.identity) and not expired:
                self.held, self.holder = False, holder
                return False
            transitions = int(spec.get("leaseTransitions") or 0)
            mine = holder == self.identity
            lease["spec"] = self._spec(
                now,
                spec.get("acquireTime") if mine else None,
                transitions if mine else transitions + 1,
            )
            await self.kube.replace_lease(self.namespace, self.name, lease)
            self.held, self.holder = True, self.identity
            return True
        except KubeError as exc:
            if exc.status == 409:  # lost a race: someone else renewed or created it
                self.held = False
                return False
            raise

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
