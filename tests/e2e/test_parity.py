"""Issue 10 items 6-9: what `prefect worker start --type kubernetes` users rely on, through the
real operator, the real control plane (garbage collector included) and a real Prefect server."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from prefect_job_operator.rendering import default_base_job_template
from tests.conftest import Measure
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra import prefect_setup as ps
from tests.infra.prefect_server import PrefectServer
from tests.infra.tls_proxy import TlsProxy, write_server_pki

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


def container_env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = job["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return {e["name"]: e for e in env}


def the_job(e2e: E2E, run_id: str, namespace: str | None = None) -> dict[str, Any]:
    out = e2e.kubectl("get", "jobs", "-n", namespace or e2e.ns, "-o", "json").stdout
    items = [
        j
        for j in json.loads(out)["items"]
        if j["metadata"]["labels"].get("prefect.io/flow-run-id") == run_id
    ]
    assert len(items) == 1, f"Jobs of flow run {run_id}: {items}"
    job: dict[str, Any] = items[0]
    return job


async def wait_generation_ready(e2e: E2E, timeout: float = 60) -> None:
    """Ready=True computed for the spec as applied last (not a previous generation)."""

    async def probe() -> bool:
        wp = e2e.get_json("workpool", "pool")
        generation = wp["metadata"]["generation"]
        for cond in (wp.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready":
                return bool(
                    cond["status"] == "True" and cond.get("observedGeneration") == generation
                )
        return False

    try:
        await eventually("Ready=True for the latest generation", probe, timeout)
    except AssertionError as exc:
        wp = e2e.get_json("workpool", "pool")
        raise AssertionError(
            f"{exc}\ngeneration {wp['metadata']['generation']}, status {wp.get('status')}\n"
            f"operator log:\n{e2e.operator.log_tail(60)}"
        ) from None


# ---- item 6 ------------------------------------------------------------------------------


async def test_prefect_api_behind_tls_with_a_private_ca(
    e2e: E2E, prefect_server: PrefectServer, tmp_path: Path, measure: Measure
) -> None:
    ca, cert, key = write_server_pki(tmp_path / "tls")
    upstream = urlsplit(prefect_server.api_url).port
    assert upstream is not None
    proxy = TlsProxy(upstream, cert, key).start()
    try:
        url = proxy.url("/api")
        # The URL is the operator-wide one too, so an admin allowlist of pool URLs is satisfied.
        e2e.operator.api_url = url
        e2e.operator.extra_env["PJO_ALLOWED_API_URLS"] = url
        e2e.kubectl(
            "create", "secret", "generic", "prefect-ca", "-n", e2e.ns, f"--from-file=ca.crt={ca}"
        )
        headers = {"X-Pjo-Test": "through-the-proxy"}

        # 1. No CA: the pool says why, at once (no retries on a certificate failure).
        e2e.apply_workpool({"api": {"url": url, "headers": headers}, "worker": fast_worker()})
        e2e.operator.start()
        started = time.monotonic()

        async def unreachable() -> dict[str, Any] | None:
            cond = e2e.condition("APIReachable")
            return cond if cond.get("status") == "False" else None

        cond = await eventually("APIReachable=False", unreachable, 60)
        assert "certificate verify failed" in cond["message"].lower(), cond
        assert "caBundleFrom" in cond["message"], cond
        measure("e2e: untrusted TLS -> APIReachable=False (s)", f"{time.monotonic() - started:.1f}")

        # 2. The CA from a Secret: synced, a run dispatched, the header went through.
        tls_ca = {"caBundleFrom": {"secretKeyRef": {"name": "prefect-ca", "key": "ca.crt"}}}
        e2e.apply_workpool(
            {"api": {"url": url, "headers": headers, "tls": tls_ca}, "worker": fast_worker()}
        )
        await wait_generation_ready(e2e)
        assert (await e2e.pool_json())["status"] == "READY"
        dep = await e2e.deployment()
        run = await e2e.run(dep)
        await e2e.wait_pid(run, 60)
        env = container_env(the_job(e2e, run))
        assert env["PREFECT_API_URL"]["value"] == url
        assert proxy.saw_header("X-Pjo-Test", "through-the-proxy"), sorted(proxy.headers)[:40]

        # 3. Verification off: works too.
        e2e.apply_workpool(
            {
                "api": {"url": url, "tls": {"insecureSkipVerify": True}},
                "worker": fast_worker(),
            }
        )
        await wait_generation_ready(e2e)
        run2 = await e2e.run(dep)
        await e2e.wait_pid(run2, 60)
    finally:
        proxy.stop()


# ---- item 7 ------------------------------------------------------------------------------


def team_template() -> dict[str, Any]:
    template = copy.deepcopy(default_base_job_template())
    manifest = template["job_configuration"]["job_manifest"]
    manifest["metadata"]["annotations"] = {"example.com/team": "{{ $TEAM }}"}
    # The Prefect server insists every placeholder of job_configuration is a declared variable,
    # `$TEAM` included (its value still comes from the worker side: here spec.templateEnv).
    template["variables"]["properties"]["$TEAM"] = {"type": "string"}
    return template


async def test_job_env_and_template_env(e2e: E2E) -> None:
    e2e.kubectl("create", "secret", "generic", "db", "-n", e2e.ns, "--from-literal=password=s3cret")
    job_env = [
        {"name": "PREFECT_LOGGING_LEVEL", "value": "DEBUG"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]
    # Undeclared {{ $TEAM }}: a condition and an Event at reconcile time, nothing dispatched.
    e2e.apply_workpool(
        {"baseJobTemplate": team_template(), "jobEnv": job_env, "worker": fast_worker()}
    )
    e2e.operator.start()

    async def undeclared() -> dict[str, Any] | None:
        cond = e2e.condition("PoolSynced")
        return cond if cond.get("reason") == "TemplateEnvUndeclared" else None

    cond = await eventually("PoolSynced=False TemplateEnvUndeclared", undeclared, 60)
    assert cond["status"] == "False" and "TEAM" in cond["message"], cond
    assert e2e.condition("Ready")["status"] == "False"

    async def event() -> bool:
        out = e2e.kubectl(
            "get", "events", "-n", e2e.ns, "--field-selector", "reason=TemplateEnvUndeclared"
        ).stdout
        return "TEAM" in out or "TemplateEnvUndeclared" in out

    await eventually("a TemplateEnvUndeclared Event", event, 30)

    # Declared: the Job carries the value, jobEnv sits in the Job's env.
    e2e.apply_workpool(
        {
            "baseJobTemplate": team_template(),
            "jobEnv": job_env,
            "templateEnv": {"TEAM": "data-eng"},
            "worker": fast_worker(),
        }
    )
    await wait_generation_ready(e2e)
    dep = await e2e.deployment()
    run = await e2e.run(dep)
    await e2e.wait_pid(run, 60)
    job = the_job(e2e, run)
    assert job["metadata"]["annotations"]["example.com/team"] == "data-eng"
    env = container_env(job)
    assert env["PREFECT_LOGGING_LEVEL"]["value"] == "DEBUG"
    assert env["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
    }

    # A job variable reading an undeclared name fails that run only, with the reason.
    bad = await e2e.run(dep, job_variables={"env": {"X": "{{ $NOT_DECLARED }}"}})
    crashed = await e2e.wait_state(bad, "CRASHED", 60)
    assert "NOT_DECLARED" in crashed["state"]["message"], crashed["state"]


# ---- item 8 ------------------------------------------------------------------------------


async def test_per_job_secrets_are_owned_by_the_job_in_its_namespace(
    e2e: E2E, measure: Measure
) -> None:
    other = f"{e2e.ns[:50]}-jobs"
    e2e.kubectl("create", "namespace", other)
    try:
        e2e.operator.namespaces.append(other)
        e2e.operator.extra_env["PJO_API_KEY"] = "pnu_e2e_not_a_real_key"
        # the admin lets both namespaces receive a copy of the operator's key (issue #15)
        e2e.operator.extra_env["PJO_OPERATOR_KEY_NAMESPACES"] = f"{e2e.ns},{other}"
        e2e.operator.extra_env["PJO_JOB_NAMESPACE_POLICY"] = f"{e2e.ns}={other}"
        e2e.apply_workpool(
            {
                "jobNamespaces": [e2e.ns, other],
                "worker": fast_worker(createSecretForApiKey=True, storeEnvAsSecret=True),
            }
        )
        e2e.operator.start()
        await wait_ready(e2e, 60)
        dep = await e2e.deployment({"namespace": other})
        run = await e2e.run(dep)
        pid = await e2e.wait_pid(run, 60)
        assert pid.startswith(f"{other}:"), pid
        job = the_job(e2e, run, other)
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        pod_spec = job["spec"]["template"]["spec"]["containers"][0]
        env = container_env(job)
        assert env["PREFECT_API_KEY"] == {
            "name": "PREFECT_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-api-key", "key": "value"}},
        }
        assert all("valueFrom" in e for e in env.values()), env  # plain values moved out
        assert pod_spec["envFrom"] == [{"secretRef": {"name": f"{name}-env"}}]

        secrets = {}
        for suffix in ("api-key", "env"):
            secret = yaml.safe_load(
                e2e.kubectl("get", "secret", f"{name}-{suffix}", "-n", other, "-o", "json").stdout
            )
            owners = secret["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Job", name, uid)]
            secrets[suffix] = secret
        key = base64.b64decode(secrets["api-key"]["data"]["value"]).decode()
        assert key == "pnu_e2e_not_a_real_key"
        env_data = {k: base64.b64decode(v).decode() for k, v in secrets["env"]["data"].items()}
        assert env_data["PREFECT__FLOW_RUN_ID"] == run
        assert "PREFECT_API_KEY" not in env_data
        assert not e2e.kubectl("get", "secrets", "-n", e2e.ns, "-o", "name").stdout.count(name)

        # Deleting the Job deletes its Secrets (the control plane's garbage collector).
        deleted = time.monotonic()
        e2e.kubectl("delete", "job", name, "-n", other, "--wait=false")

        async def gone() -> bool:
            out = e2e.kubectl("get", "secrets", "-n", other, "-o", "name").stdout
            return name not in out

        await eventually("the Job's Secrets to be garbage-collected", gone, 60)
        measure("e2e: Job deleted -> its Secrets gone (s)", f"{time.monotonic() - deleted:.1f}")
    finally:
        e2e.kubectl("delete", "namespace", other, "--wait=false", check=False)


# ---- item 9 ------------------------------------------------------------------------------


async def pod_events(e2e: E2E, run_id: str) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "occurred": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
            "event": {"prefix": ["prefect.kubernetes.pod."]},
            "related": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 50,
    }
    page = await ps.call(e2e.http, "POST", "/events/filter", body)
    events: list[dict[str, Any]] = page["events"]
    return events


def pod_of(e2e: E2E, run_id: str) -> dict[str, Any]:
    pods = e2e.get_json("pods", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    assert len(pods) == 1, pods
    pod: dict[str, Any] = pods[0]
    return pod


async def test_pod_events_reach_prefect_like_the_observers(e2e: E2E, measure: Measure) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e, 60)
    pool = await e2e.pool_json()
    dep_ok = await e2e.deployment()
    dep_fail = await e2e.deployment(
        {"annotations": {"pjo.test/outcome": "fail", "pjo.test/after": "1s"}}
    )
    ok, bad = await e2e.run(dep_ok), await e2e.run(dep_fail)
    started = time.monotonic()

    async def names(run_id: str, want: set[str]) -> set[str] | None:
        got = {e["event"] for e in await pod_events(e2e, run_id)}
        return got if want <= got else None

    want_ok = {f"prefect.kubernetes.pod.{p}" for p in ("pending", "running", "succeeded")}
    await eventually("pending/running/succeeded events", lambda: names(ok, want_ok), 90, 1)
    measure("e2e: run -> pod succeeded event readable (s)", f"{time.monotonic() - started:.1f}")
    # upstream names a Failed pod whose container terminated with a reason 'evicted'
    want_bad = {f"prefect.kubernetes.pod.{p}" for p in ("pending", "running", "evicted")}
    await eventually("pending/running/evicted events", lambda: names(bad, want_bad), 90, 1)

    run = await e2e.flow_run(ok)
    dep = await ps.call(e2e.http, "GET", f"/deployments/{dep_ok}")
    pod = pod_of(e2e, ok)
    events = await pod_events(e2e, ok)
    assert len({e["event"] for e in events}) == len(events), "one event per phase"
    for event in events:
        assert event["resource"] == {
            "prefect.resource.id": f"prefect.kubernetes.pod.{pod['metadata']['uid']}",
            "prefect.resource.name": pod["metadata"]["name"],
            "kubernetes.namespace": e2e.ns,
        }
        related = {r["prefect.resource.role"]: r for r in event["related"]}
        assert related["flow-run"]["prefect.resource.id"] == f"prefect.flow-run.{ok}"
        assert related["flow-run"]["prefect.resource.name"] == run["name"]
        assert related["deployment"]["prefect.resource.id"] == f"prefect.deployment.{dep_ok}"
        assert related["deployment"]["prefect.resource.name"] == dep["name"]
        assert related["flow"]["prefect.resource.id"] == f"prefect.flow.{run['flow_id']}"
        assert related["work-pool"]["prefect.resource.id"] == f"prefect.work-pool.{pool['id']}"
        assert related["work-pool"]["prefect.resource.name"] == e2e.pool
        assert related["worker"]["prefect.worker-type"] == "kubernetes"
    by_name = {e["event"]: e for e in events}
    assert (
        by_name["prefect.kubernetes.pod.running"]["follows"]
        == (by_name["prefect.kubernetes.pod.pending"]["id"])
    )
    bad_events = {e["event"]: e for e in await pod_events(e2e, bad)}
    evicted = bad_events["prefect.kubernetes.pod.evicted"]
    assert evicted["resource"]["kubernetes.reason"] == "Error"

    # The switch: off → the next run's pod produces none.
    e2e.apply_workpool({"worker": fast_worker(podEvents=False)})
    await wait_generation_ready(e2e)
    quiet = await e2e.run(dep_ok)

    async def succeeded() -> bool:
        pods = e2e.get_json("pods", "-l", f"prefect.io/flow-run-id={quiet}")["items"]
        return bool(pods) and pods[0]["status"].get("phase") == "Succeeded"

    await eventually("the quiet run's pod to succeed", succeeded, 90, 1)
    await asyncio.sleep(5)  # longer than the 1 s flush and the server's event persistence
    assert await pod_events(e2e, quiet) == []
