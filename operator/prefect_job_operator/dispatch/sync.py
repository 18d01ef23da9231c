"""Make the Prefect work pool match the WorkPool spec, and keep the worker online.

Only what the spec sets is managed: ``paused`` and ``concurrencyLimit`` left unset belong to
the Prefect side (UI, CLI), set they are enforced and drift is put back. An explicit template
(inline or from a ConfigMap) is enforced; without one, an existing
pool's template is left alone and an empty one gets the `kubernetes` default, as the
upstream worker does, except that the default's ``namespace`` variable defaults to the
WorkPool's namespace (also in a pool that holds the stock default with another namespace).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.conditions import REASON_TEMPLATE_ENV_UNDECLARED
from prefect_job_operator.dispatch.runtime import PoolConfig, Ports, SyncedPool
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.prefect_api.errors import (
    ValidationFailed,
    WorkPoolAlreadyExists,
    WorkPoolNotFound,
)
from prefect_job_operator.prefect_api.models import Worker, WorkPool
from prefect_job_operator.prefect_api.port import PrefectPort
from prefect_job_operator.rendering import default_base_job_template, is_stock_template
from prefect_job_operator.rendering.templating import undeclared_env_placeholders

log = logging.getLogger(__name__)


class SyncProblem(Exception):
    """The pool cannot be synced for a reason the user must fix; ``reason`` is CamelCase."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def desired_template(cfg: PoolConfig, kube: KubePort) -> dict[str, Any] | None:
    """The template the spec asks for, or None when the spec names none."""
    spec = cfg.spec
    if spec.base_job_template:
        return dict(spec.base_job_template)
    if spec.base_job_template_from is not None:
        ref = spec.base_job_template_from.config_map_key_ref
        try:
            text = await kube.read_configmap_value(cfg.namespace, ref.name, ref.key)
        except KubeError as exc:
            raise SyncProblem(
                "TemplateNotFound", f"Cannot read ConfigMap {ref.name} key {ref.key}: {exc}"
            ) from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise SyncProblem(
                "TemplateInvalid", f"ConfigMap {ref.name} key {ref.key} is not JSON: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise SyncProblem(
                "TemplateInvalid", f"ConfigMap {ref.name} key {ref.key}: not an object"
            )
        from prefect_job_operator.api.v1alpha1 import template_problem

        problem = template_problem(value)
        if problem:
            raise SyncProblem("TemplateInvalid", f"ConfigMap {ref.name} key {ref.key}: {problem}")
        return value
    return None


OWNER_VARIABLE_PREFIX = "prefect_job_operator_owner_"
OWNER_TAG = "prefect-job-operator"
OFFLINE_AFTER_HEARTBEATS = 3  # Prefect's own rule for a worker going OFFLINE
OFFLINE_AFTER_AT_LEAST = 60.0
"""A busy operator heartbeats late; taking a live owner's pool over would swap the roles."""


def owner_variable(pool_name: str) -> str:
    """The Prefect Variable naming the WorkPool that runs a Prefect pool.

    A Variable, not the pool's description or template: the Prefect UI edits those, and two
    WorkPools fighting over them was the symptom (the description flipped at every sync).
    """
    return OWNER_VARIABLE_PREFIX + hashlib.sha256(pool_name.encode()).hexdigest()[:16]


def owner_record(cfg: PoolConfig) -> dict[str, str]:
    return {
        "namespace": cfg.namespace,
        "name": cfg.name,
        "uid": cfg.uid,
        "instance": cfg.settings.instance,
        "worker": cfg.worker_name,
        "pool": cfg.pool_name,
    }


def online_workers(workers: Iterable[Worker], now: datetime) -> set[str]:
    """Workers whose last heartbeat is recent: three intervals (Prefect's own rule), and at
    least a minute."""
    out = set()
    for w in workers:
        if w.last_heartbeat_time is None:
            continue
        horizon = max(
            OFFLINE_AFTER_HEARTBEATS * (w.heartbeat_interval_seconds or 30), OFFLINE_AFTER_AT_LEAST
        )
        if (now - w.last_heartbeat_time).total_seconds() <= horizon:
            out.add(w.name)
    return out


def is_same_owner(record: Mapping[str, Any], me: Mapping[str, str]) -> bool:
    """The same CR, or a re-creation of it (same namespace/name: same worker name)."""
    return record.get("uid") == me["uid"] or (
        record.get("namespace") == me["namespace"] and record.get("name") == me["name"]
    )


def foreign_owner(record: Any, me: Mapping[str, str], online: set[str]) -> Mapping[str, Any] | None:
    """The other WorkPool that runs this Prefect pool, while its worker is alive; None when
    this WorkPool may run it (no owner, itself, or an owner whose worker went offline)."""
    if not isinstance(record, Mapping) or is_same_owner(record, me):
        return None
    if record.get("worker") == me["worker"]:
        return None  # two CRs with one explicit worker name: the heartbeats cannot tell
    return record if record.get("worker") in online else None


async def claim_pool(cfg: PoolConfig, client: PrefectPort) -> None:
    """Refuse to run a Prefect pool another live WorkPool runs; else record ourselves."""
    name = owner_variable(cfg.pool_name)
    me = owner_record(cfg)
    record = await client.read_variable_by_name(name)
    if isinstance(record, Mapping) and not is_same_owner(record, me):
        workers = await client.read_workers(cfg.pool_name)
        other = foreign_owner(record, me, online_workers(workers, clock.now()))
        if other is not None:
            raise SyncProblem(
                c.REASON_POOL_CLAIMED,
                f'Prefect work pool "{cfg.pool_name}" is already run by WorkPool '
                f"{other.get('namespace')}/{other.get('name')} (uid {other.get('uid')}, "
                f"operator instance {other.get('instance')}); this WorkPool does not dispatch. "
                "Give one of them another spec.poolName, or delete one.",
            )
    if record != me:
        await client.write_variable(name, me, tags=[OWNER_TAG])


async def sync_pool(cfg: PoolConfig, ports: Ports, synced: SyncedPool) -> list[str]:
    """Create or update the Prefect pool; return what changed (for Events). On success the
    synced pool holds the Prefect pool as read and the template Jobs are rendered from."""
    wanted_template = await desired_template(cfg, ports.kube)
    if wanted_template is not None:
        check_template_env(cfg, wanted_template)
    changes: list[str] = []
    pool = await _read_or_create(cfg, ports.client, wanted_template, changes)
    await claim_pool(cfg, ports.client)  # before any write: a second WorkPool changes nothing
    updates = _updates(cfg, pool, wanted_template)
    if updates:
        try:
            await ports.client.update_work_pool(cfg.pool_name, **updates)
        except ValidationFailed as exc:
            raise SyncProblem(
                "TemplateRejected", f"Prefect rejected the pool update: {exc}"
            ) from None
        changes.append("Updated " + ", ".join(sorted(updates)))
        pool = await ports.client.read_work_pool(cfg.pool_name)
    if pool.type != cfg.spec.type:
        log.warning(
            "Worker type mismatch: pool %s has type %r, the WorkPool says %r",
            cfg.pool_name,
            pool.type,
            cfg.spec.type,
        )
    template = pool.base_job_template or default_base_job_template(cfg.namespace)
    check_template_env(cfg, template)
    synced.pool = pool.model_dump(mode="json")
    synced.template = template
    return changes


async def _read_or_create(
    cfg: PoolConfig,
    client: PrefectPort,
    wanted_template: dict[str, Any] | None,
    changes: list[str],
) -> WorkPool:
    """The Prefect pool, created first when missing and the spec allows it."""
    spec = cfg.spec
    try:
        return await client.read_work_pool(cfg.pool_name)
    except WorkPoolNotFound:
        if not spec.create_if_missing:
            raise SyncProblem(
                "PoolNotFound",
                f'Work pool "{cfg.pool_name}" does not exist and spec.createIfMissing is false.',
            ) from None
    try:
        await client.create_work_pool(
            cfg.pool_name,
            type=spec.type,
            base_job_template=wanted_template or default_base_job_template(cfg.namespace),
            description=spec.description,
            concurrency_limit=spec.managed_concurrency_limit[1],
            is_paused=bool(spec.paused),
        )
        changes.append("Created")
    except WorkPoolAlreadyExists:
        pass  # another replica or worker won the race; read it below
    except ValidationFailed as exc:
        raise SyncProblem("TemplateRejected", f"Prefect rejected the pool: {exc}") from None
    return await client.read_work_pool(cfg.pool_name)


def _updates(
    cfg: PoolConfig, pool: WorkPool, wanted_template: dict[str, Any] | None
) -> dict[str, Any]:
    """What the Prefect pool must change to match the spec (pure)."""
    spec = cfg.spec
    limit_managed, limit = spec.managed_concurrency_limit
    updates: dict[str, Any] = {}
    if wanted_template is not None and pool.base_job_template != wanted_template:
        updates["base_job_template"] = wanted_template
    elif wanted_template is None and _wants_default(pool.base_job_template, cfg.namespace):
        updates["base_job_template"] = default_base_job_template(cfg.namespace)
    if spec.description is not None and pool.description != spec.description:
        updates["description"] = spec.description
    # Unset in the spec = not managed: a pause or limit set in the Prefect UI/CLI stays.
    if limit_managed and pool.concurrency_limit != limit:
        updates["concurrency_limit"] = limit
    if spec.paused is not None and pool.is_paused != spec.paused:
        updates["is_paused"] = spec.paused
    return updates


def _wants_default(current: dict[str, Any] | None, namespace: str) -> bool:
    """An empty template, or the stock one defaulting elsewhere, gets the namespaced default."""
    if not current:
        return True
    return is_stock_template(current) and current != default_base_job_template(namespace)


def check_template_env(cfg: PoolConfig, template: dict[str, Any]) -> None:
    """An undeclared `{{ $NAME }}` stops the pool here, not as an empty string in every Job."""
    missing = undeclared_env_placeholders(template.get("job_configuration"), cfg.spec.template_env)
    if missing:
        raise SyncProblem(
            REASON_TEMPLATE_ENV_UNDECLARED,
            "The base job template reads {{ $NAME }} placeholders that spec.templateEnv does "
            f"not declare: {', '.join(missing)}. Add them to spec.templateEnv (the operator "
            "never fills them from its own environment).",
        )


async def heartbeat(cfg: PoolConfig, client: PrefectPort) -> None:
    """The REST heartbeat: the worker shows ONLINE and the pool READY."""
    await client.heartbeat(
        cfg.pool_name, cfg.worker_name, cfg.spec.worker.heartbeat_interval_seconds
    )
