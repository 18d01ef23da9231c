"""Issue #15: the operator-wide Prefect key reaches no Job the admin did not allow.

The operator runs as a subprocess with ``PJO_API_KEY`` against the local control plane and a
real Prefect server; everything is read back from the API server:
- a WorkPool without credentials of its own, in a namespace outside
  ``PJO_OPERATOR_KEY_NAMESPACES``, asking for ``worker.createSecretForApiKey``: the CR says
  why (JobNamespaces/OperatorKeyNotAllowed, an Event), its runs are Crashed naming the
  setting, and no Job, Secret or Pod of its namespace holds the operator's key (today's
  main copied the key into a per-Job Secret there);
- the same WorkPool with its own ``api.apiKeySecretRef``: its Jobs and Pods read its own
  key, and still nothing holds the operator's.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]

OPERATOR_KEY = "pnu_operator-wide-key-for-e2e"
ADMIN_NS = "pjo-admin-only"  # the allowed set: not the WorkPool's namespace
CREATE_SECRET = {"createSecretForApiKey": True, "storeEnvAsSecret": True}


def _operator(e2e: E2E) -> None:
    e2e.operator.extra_env["PJO_API_KEY"] = OPERATOR_KEY
    e2e.operator.extra_env["PJO_OPERATOR_KEY_NAMESPACES"] = ADMIN_NS


def namespace_dump(e2e: E2E) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Every Job, Secret, Pod and ConfigMap of the WorkPool's namespace, as the API server
    returns them (Secret data base64-encoded, hence the checks for both forms)."""
    items: dict[str, list[dict[str, Any]]] = {}
    for kind in ("jobs", "secrets", "pods", "configmaps"):
        items[kind] = e2e.get_json(kind)["items"]
    return json.dumps(items), items


def assert_no_operator_key(text: str) -> None:
    encoded = base64.b64encode(OPERATOR_KEY.encode()).decode()
    assert OPERATOR_KEY not in text
    assert encoded not in text


def workpool_events(e2e: E2E) -> str:
    return str(
        e2e.kubectl(
            "get", "events", "-n", e2e.ns, "--field-selector", "involvedObject.kind=WorkPool",
            "-o", "custom-columns=REASON:.reason,MESSAGE:.message",
        ).stdout
    )  # fmt: skip


async def test_a_pool_outside_the_allowed_namespaces_never_gets_the_operator_key(
    e2e: E2E, measure: Any
) -> None:
    _operator(e2e)
    e2e.apply_workpool({"worker": fast_worker(**CREATE_SECRET)})
    started = time.monotonic()
    e2e.operator.start()

    async def refused() -> dict[str, Any] | None:
        cond = e2e.condition("JobNamespaces")
        return cond if cond.get("reason") == "OperatorKeyNotAllowed" else None

    cond = await eventually("JobNamespaces=OperatorKeyNotAllowed", refused, 60)
    measure("operator_key.condition_seconds", round(time.monotonic() - started, 1))
    assert cond["status"] == "False", cond
    assert "PJO_OPERATOR_KEY_NAMESPACES" in cond["message"], cond
    assert "security.operatorKeyNamespaces" in cond["message"], cond
    assert "apiKeySecretRef" in cond["message"], cond
    ready = e2e.condition("Ready")
    assert ready.get("status") == "False", ready  # no run of this pool can be placed

    async def has_event() -> bool:
        return "OperatorKeyNotAllowed" in workpool_events(e2e)

    await eventually("a Warning Event OperatorKeyNotAllowed", has_event, 30)

    dep = await e2e.deployment()
    runs = [await e2e.run(dep) for _ in range(2)]
    for run in runs:
        crashed = await e2e.wait_state(run, "CRASHED", 60)
        message = crashed["state"]["message"]
        assert "PJO_OPERATOR_KEY_NAMESPACES" in message, message
        assert f"namespace {e2e.ns!r} is not allowed" in message, message
        assert not crashed.get("infrastructure_pid"), crashed
    measure("operator_key.refused_runs", len(runs))

    text, items = namespace_dump(e2e)
    assert items["jobs"] == [], [j["metadata"]["name"] for j in items["jobs"]]
    assert_no_operator_key(text)
    measure("operator_key.secrets_scanned", len(items["secrets"]))


async def test_a_pool_with_its_own_key_gets_its_own_key(e2e: E2E, measure: Any) -> None:
    _operator(e2e)
    e2e.kubectl(
        "create", "secret", "generic", "pool-key", "-n", e2e.ns,
        "--from-literal=api-key=pool-own-key",
    )  # fmt: skip
    e2e.apply_workpool(
        {
            "api": {"apiKeySecretRef": {"name": "pool-key", "key": "api-key"}},
            "worker": fast_worker(**CREATE_SECRET),
        }
    )
    e2e.operator.start()
    await wait_ready(e2e, 60)
    assert e2e.condition("JobNamespaces").get("status") == "True"
    dep = await e2e.deployment()
    run = await e2e.run(dep)
    pid = await e2e.wait_pid(run, 60)
    assert pid.startswith(f"{e2e.ns}:"), pid
    own_ref = {"secretKeyRef": {"name": "pool-key", "key": "api-key"}}

    def env_of(spec: dict[str, Any]) -> dict[str, Any]:
        return {e["name"]: e for e in spec["containers"][0].get("env") or []}

    async def pod_of_run() -> list[dict[str, Any]] | None:
        pods = [
            p
            for p in e2e.get_json("pods")["items"]
            if p["metadata"].get("labels", {}).get("prefect.io/flow-run-id") == run
        ]
        return pods or None

    pods = await eventually("the run's Pod", pod_of_run, 60)
    text, items = namespace_dump(e2e)
    jobs = [
        j for j in items["jobs"] if j["metadata"]["labels"].get("prefect.io/flow-run-id") == run
    ]
    assert len(jobs) == 1, jobs
    assert env_of(jobs[0]["spec"]["template"]["spec"])["PREFECT_API_KEY"]["valueFrom"] == own_ref
    assert env_of(pods[0]["spec"])["PREFECT_API_KEY"]["valueFrom"] == own_ref
    # no per-Job copy of any key: the Job reads the pool's own Secret
    name = jobs[0]["metadata"]["name"]
    names = {s["metadata"]["name"] for s in items["secrets"]}
    assert f"{name}-api-key" not in names, names
    assert f"{name}-env" in names, names  # storeEnvAsSecret still works
    assert_no_operator_key(text)
    measure("operator_key.own_key_pods", len(pods))
