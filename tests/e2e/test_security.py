"""Issue #15 on the real components: a WorkPool gives its author no power they did not have.

- Credentials follow their URL: a loopback recorder named by a WorkPool never receives the
  operator-wide key nor a Secret, unless the admin allowlists it, and then only the pool's
  own credentials reach it.
- The admission webhook (the operator's kopf server on loopback, registered with a
  ValidatingWebhookConfiguration by URL) refuses, for an impersonated user, a WorkPool naming
  a Secret they cannot read or a namespace they cannot create Jobs in, naming the permission.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.e2e.harness import E2E, eventually, fast_worker
from tests.infra.cluster import LocalCluster, free_port, wait_for
from tests.infra.operator_process import OperatorProcess
from tests.infra.pki import write_webhook_tls
from tests.infra.recorder import Recorder
from tests.integration.test_chart import CHART, KUBE, service_account_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]

OPERATOR_KEY = "pnu_operator-wide-test-key"


def events(e2e: E2E) -> str:
    return str(
        e2e.kubectl(
            "get", "events", "-n", e2e.ns, "--field-selector", "involvedObject.kind=WorkPool",
            "-o", "custom-columns=NAME:.involvedObject.name,REASON:.reason,MESSAGE:.message",
        ).stdout
    )  # fmt: skip


async def ready_condition(e2e: E2E, name: str, timeout: float = 60) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        cond = e2e.condition("Ready", name)
        return (
            cond
            if cond.get("status") in ("True", "False")
            and cond.get("reason")
            not in (
                "Pending",
                "NotReady",
            )
            else None
        )

    return await eventually(f"WorkPool {name} Ready decided", probe, timeout)


# -- credentials follow their URL (findings 1 and 2) -----------------------------------


async def test_a_url_the_admin_did_not_allow_receives_nothing(e2e: E2E, measure: Any) -> None:
    """Finding 1 (the operator-wide key) and 2 (a Secret of the namespace), webhook off."""
    e2e.kubectl(
        "create", "secret", "generic", "db-password", "-n", e2e.ns,
        "--from-literal=password=db-secret-value",
    )  # fmt: skip
    with Recorder() as rec:
        e2e.operator.extra_env["PJO_API_KEY"] = OPERATOR_KEY
        url = f"{rec.url}/api"
        e2e.apply_workpool(
            {"poolName": "exfil", "api": {"url": url}, "worker": fast_worker()}, name="exfil"
        )
        e2e.apply_workpool(
            {
                "poolName": "secret",
                "api": {"url": url, "apiKeySecretRef": {"name": "db-password", "key": "password"}},
                "worker": fast_worker(),
            },
            name="secret",
        )
        e2e.operator.start()
        started = time.monotonic()
        for name in ("exfil", "secret"):
            cond = await ready_condition(e2e, name)
            assert (cond["status"], cond["reason"]) == ("False", "APIURLNotAllowed"), cond
            assert "security.allowedApiUrls" in cond["message"], cond
            assert "PJO_ALLOWED_API_URLS" in cond["message"], cond
            synced = e2e.condition("PoolSynced", name)
            assert synced["reason"] == "APIURLNotAllowed", synced
        await eventually("the APIURLNotAllowed Events", lambda: _has_events(e2e), 20)
        await asyncio.sleep(3)  # a few more poll intervals (1 s) for any stray request
        measure("security.refused_url.requests_received", len(rec.requests))
        measure("security.refused_url.observed_seconds", round(time.monotonic() - started, 1))
        assert rec.requests == [], [(s.method, s.path, s.headers) for s in rec.requests]


async def _has_events(e2e: E2E) -> bool:
    text = events(e2e)
    return all(
        any(name in line and "APIURLNotAllowed" in line for line in text.splitlines())
        for name in ("exfil", "secret")
    )


async def test_an_allowlisted_url_gets_only_the_pools_own_credentials(
    e2e: E2E, measure: Any
) -> None:
    """Another spelling of the same real server and a recording proxy, both allowlisted."""
    parts = urlsplit(e2e.api_url)
    other_form = f"http://localhost:{parts.port}/api"  # same server, not the operator's URL
    e2e.kubectl(
        "create", "secret", "generic", "pool-key", "-n", e2e.ns,
        "--from-literal=api-key=pool-own-key",
    )  # fmt: skip
    with Recorder(upstream=f"{parts.scheme}://{parts.netloc}") as proxy:
        e2e.operator.extra_env.update(
            {
                "PJO_API_KEY": OPERATOR_KEY,
                "PJO_ALLOWED_API_URLS": f"{other_form},{proxy.url}/",
            }
        )
        own = {"apiKeySecretRef": {"name": "pool-key"}}
        pools = {
            "direct": {"url": other_form, **own},
            "proxied-own": {"url": f"{proxy.url}/api", **own},
            "proxied-bare": {"url": f"{proxy.url}/api"},
        }
        for name, api in pools.items():
            e2e.apply_workpool(
                {"poolName": f"{e2e.pool}-{name}", "api": api, "worker": fast_worker()},
                name=name,
            )
        e2e.operator.start()
        for name in pools:
            cond = await ready_condition(e2e, name, timeout=90)
            assert cond["status"] == "True", (name, cond, e2e.operator.log_tail())
        auths = proxy.authorizations()
        measure("security.allowlisted_proxy.requests", len(proxy.requests))
        measure("security.allowlisted_proxy.with_authorization", len(auths))
        assert auths and set(auths) == {"Bearer pool-own-key"}, set(auths)
        assert len(auths) < len(proxy.requests), "the bare pool must talk without credentials"
        assert not any(OPERATOR_KEY in v for s in proxy.requests for v in s.headers.values())


# -- the admission webhook (finding 2 and the author's rights of finding 3) ------------


@pytest.fixture
def other_namespace(workpool_crd: LocalCluster) -> Iterator[str]:
    name = f"t-sec-other-{uuid.uuid4().hex[:6]}"
    workpool_crd.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        workpool_crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _tls_up(port: int, ca: bytes) -> bool:
    ctx = ssl.create_default_context(cadata=ca.decode())
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True
    except OSError:
        return False


def _as(e2e: E2E, user: str, verb: str, body: dict[str, Any], *extra: str) -> Any:
    return e2e.cluster.kubectl(
        verb, "-f", "-", *extra, input=yaml.safe_dump(body), as_user=user, check=False
    )


def _workpool(e2e: E2E, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {"name": name, "namespace": e2e.ns},
        "spec": {"poolName": f"{e2e.pool}-{name}", "worker": fast_worker(), **spec},
    }


async def test_the_webhook_refuses_what_the_author_could_not_do_themselves(
    e2e: E2E, other_namespace: str, tmp_path: Path, measure: Any
) -> None:
    cluster = e2e.cluster
    ns, other = e2e.ns, other_namespace
    # The operator runs as the chart's ServiceAccount with exactly the chart's RBAC.
    release = f"sec-{uuid.uuid4().hex[:6]}"
    rbac = cluster.helm(
        "template", release, str(CHART), "-n", ns, *KUBE,
        "--show-only", "templates/rbac.yaml", "--show-only", "templates/serviceaccount.yaml",
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=rbac)
    vwc_name = f"pjo-test-{ns}"[:63]
    try:
        sa = f"{release}-prefect-job-operator"
        kubeconfig = service_account_kubeconfig(cluster, ns, sa, tmp_path / "sa.yaml")
        ca = write_webhook_tls(tmp_path / "tls")
        port = free_port()
        e2e.operator = OperatorProcess(
            kube_env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
            api_url=e2e.api_url,
            log_path=tmp_path / "operator.log",
            namespaces=[ns],
            instance=f"pjo-{ns}"[:63],
            identity=f"op-{ns}",
            extra_env={
                "PJO_WEBHOOK_PORT": str(port),
                "PJO_WEBHOOK_HOST": "127.0.0.1",
                "PJO_WEBHOOK_CERT_DIR": str(tmp_path / "tls"),
            },
        ).start()
        wait_for("the webhook's TLS port", lambda: _tls_up(port, ca), 60, 0.2)
        cluster.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump(_vwc(vwc_name, port, ca, ns, other))
        )

        # alice and bob may write WorkPools and create Jobs here; only bob may read the
        # Secret, and only bob may create Jobs in the other namespace.
        e2e.kubectl("create", "secret", "generic", "db-password", "-n", ns,
                    "--from-literal=password=db-secret-value")  # fmt: skip
        e2e.kubectl("create", "role", "wp-author", "-n", ns, "--verb=get,list,create,update,patch",
                    "--resource=workpools.prefect-job-operator.dev")  # fmt: skip
        e2e.kubectl("create", "role", "job-creator", "-n", ns, "--verb=create",
                    "--resource=jobs.batch")  # fmt: skip
        e2e.kubectl("create", "role", "read-db", "-n", ns, "--verb=get", "--resource=secrets",
                    "--resource-name=db-password")  # fmt: skip
        cluster.kubectl("create", "role", "job-creator", "-n", other, "--verb=create",
                        "--resource=jobs.batch")  # fmt: skip
        for role, users, where in (
            ("wp-author", ("alice", "bob"), ns),
            ("job-creator", ("alice", "bob"), ns),
            ("read-db", ("bob",), ns),
            ("job-creator", ("bob",), other),
        ):
            cluster.kubectl("create", "rolebinding", f"{role}-{'-'.join(users)}", "-n", where,
                            f"--role={role}", *(f"--user={u}" for u in users))  # fmt: skip

        with Recorder() as rec:
            stolen = _workpool(
                e2e,
                "stolen",
                {"api": {"url": f"{rec.url}/api",
                         "apiKeySecretRef": {"name": "db-password", "key": "password"}}},
            )  # fmt: skip

            # the API server needs a moment to load a new webhook configuration
            def refused() -> Any:
                proc = _as(e2e, "alice", "create", stolen, "--dry-run=server")
                return proc if "denied the request" in proc.stderr else None

            wait_for("the webhook to answer", refused, 30, 0.5)
            started = time.monotonic()
            proc = _as(e2e, "alice", "apply", stolen)
            measure("security.webhook.refusal_seconds", round(time.monotonic() - started, 2))
            assert proc.returncode != 0
            assert f"'alice' may not get secrets 'db-password' in namespace '{ns}'" in proc.stderr
            assert "spec.api.apiKeySecretRef" in proc.stderr
            wide = _workpool(e2e, "wide", {"jobNamespaces": [ns, other]})
            proc = _as(e2e, "alice", "apply", wide)
            assert proc.returncode != 0
            assert f"may not create jobs.batch in namespace '{other}'" in proc.stderr, proc.stderr
            assert f"in namespace '{ns}'" not in proc.stderr  # alice may create Jobs here
            proc = _as(e2e, "alice", "apply", _workpool(e2e, "star", {"jobNamespaces": ["*"]}))
            assert "may not create jobs.batch in all namespaces" in proc.stderr, proc.stderr
            assert e2e.kubectl("get", "wp", "-n", ns, "-o", "name").stdout == ""
            await asyncio.sleep(2)
            assert rec.requests == []

        # bob holds every permission: admitted, and the operator (kopf's finalizer patch,
        # an UPDATE by the operator's own identity) is not refused either.
        proc = _as(e2e, "bob", "apply", _workpool(e2e, "ok", {
            "api": {"apiKeySecretRef": {"name": "db-password", "key": "password"}},
            "jobNamespaces": [ns, other],
        }))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        plain = _as(e2e, "alice", "apply", _workpool(e2e, "plain", {}))
        assert plain.returncode == 0, plain.stderr

        def finalized() -> bool:
            meta = e2e.get_json("workpool", "ok")["metadata"]
            return "prefect-job-operator.dev/finalizer" in (meta.get("finalizers") or [])

        wait_for("the operator's finalizer on the admitted WorkPool", finalized, 30, 0.5)
        # alice may relabel bob's pool (no spec change) but not edit its spec
        relabel = cluster.kubectl("label", "wp", "ok", "-n", ns, "team=data", as_user="alice",
                                  check=False)  # fmt: skip
        assert relabel.returncode == 0, relabel.stderr
        edit = cluster.kubectl("patch", "wp", "ok", "-n", ns, "--type=merge",
                               "-p", '{"spec": {"description": "mine now"}}',
                               as_user="alice", check=False)  # fmt: skip
        assert edit.returncode != 0
        assert "may not get secrets 'db-password'" in edit.stderr, edit.stderr
        log = e2e.operator.log_tail(400).lower()
        assert "forbidden" not in log and " 403" not in log, e2e.operator.log_tail(80)
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", vwc_name, check=False)
        cluster.kubectl("delete", "-f", "-", input=rbac, check=False)


def _vwc(name: str, port: int, ca: bytes, *namespaces: str) -> dict[str, Any]:
    """The chart's webhook (templates/webhook.yaml), addressed by URL on loopback."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "workpools.prefect-job-operator.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate-workpool",
                    "caBundle": base64.b64encode(ca).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["prefect-job-operator.dev"],
                        "apiVersions": ["*"],
                        "resources": ["workpools"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "In",
                            "values": list(namespaces),
                        }
                    ]
                },
            }
        ],
    }
