"""Issue 10 items 6-9 in pure code: API options, templateEnv, per-Job Secrets, pod events."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from prefect_job_operator.api.v1alpha1 import InvalidSpecError, WorkPoolSpec
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.pool_factory import build_runtime
from prefect_job_operator.prefect_api.client import (
    HeaderConflict,
    PrefectClient,
    TlsOptions,
    custom_request_headers,
)
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.rendering import RenderError, SecretKeyRef
from prefect_job_operator.rendering.templating import undeclared_env_placeholders
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.tracking.pod_events import (
    PodEventLog,
    build_pod_event,
    diagnosis_category,
)
from tests.infra.tls_proxy import write_server_pki
from tests.unit.fakes import FakeKube
from tests.unit.test_render_job import WORKER, container, render

# ---- item 7: templateEnv -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "declared", "missing"),
    [
        ({"a": "{{ $TEAM }}"}, {"TEAM": "x"}, []),
        ({"a": "{{ $TEAM }}"}, {}, ["TEAM"]),
        ({"a": ["x-{{ $A }}-{{ $B }}", {"b": "{{$C}}"}]}, {"B": ""}, ["A", "C"]),
        ({"a": "{{ name }} {{ prefect.variables.x }}"}, {}, []),
        ({"a": 1, "b": None, "c": True}, {}, []),
    ],
)
def test_undeclared_env_placeholders(
    template: Any, declared: dict[str, str], missing: list[str]
) -> None:
    assert undeclared_env_placeholders(template, declared) == missing


TEAM_TEMPLATE: dict[str, Any] = {
    "job_configuration": {
        "namespace": "default",
        "labels": {"team": "{{ $TEAM }}"},
        "env": {"TEAM_ENV": "team={{ $TEAM }}"},
        "job_manifest": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"labels": "{{ labels }}"},
            "spec": {
                "template": {
                    "spec": {
                        "parallelism": 1,
                        "completions": 1,
                        "restartPolicy": "Never",
                        "containers": [{"name": "prefect-job", "env": "{{ env }}"}],
                    }
                }
            },
        },
    },
    "variables": {"properties": {"env": {"type": "object"}, "labels": {"type": "object"}}},
}


@pytest.mark.parametrize(
    ("template_env", "strict", "run_vars", "expect"),
    [
        ({"TEAM": "data"}, True, None, "team=data"),
        ({}, False, None, "team="),  # upstream (and the render command): missing → ""
        ({}, True, None, RenderError),
        ({"TEAM": "data"}, True, {"env": {"X": "{{ $OTHER }}"}}, RenderError),
        ({"TEAM": "data", "OTHER": "o"}, True, {"env": {"X": "{{ $OTHER }}"}}, "team=data"),
    ],
)
def test_template_env_is_strict_in_the_operator(
    template_env: dict[str, str],
    strict: bool,
    run_vars: dict[str, Any] | None,
    expect: str | type[Exception],
) -> None:
    worker = replace(WORKER, template_env=template_env, strict_template_env=strict)
    if isinstance(expect, type):
        with pytest.raises(expect, match=r"spec\.templateEnv"):
            render(template=TEAM_TEMPLATE, worker=worker, run_vars=run_vars)
        return
    job = render(template=TEAM_TEMPLATE, worker=worker, run_vars=run_vars)
    env = {e["name"]: e.get("value") for e in container(job)["env"]}
    assert env["TEAM_ENV"] == expect
    assert job.manifest["metadata"]["labels"]["team"] == template_env.get("TEAM", "")


def test_job_env_sits_with_the_worker_settings_and_secret_refs_stay_refs() -> None:
    worker = replace(
        WORKER,
        prefect_env={**WORKER.prefect_env, "PREFECT_LOGGING_LEVEL": "DEBUG"},
        secret_env={"DB_PASSWORD": SecretKeyRef("db", "password")},
    )
    env = container(render(worker=worker))["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["PREFECT_LOGGING_LEVEL"]["value"] == "DEBUG"
    assert by_name["DB_PASSWORD"] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
    }
    # the flow-run variables come after the worker's settings, as upstream orders them
    names = [e["name"] for e in env]
    assert names.index("PREFECT_LOGGING_LEVEL") < names.index("PREFECT__FLOW_RUN_ID")


# ---- item 8: per-Job Secrets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "store_env", "expect_secrets"),
    [
        ({}, False, []),
        ({"PREFECT_API_KEY": "pnu_k"}, False, ["-api-key"]),
        ({"PREFECT_API_AUTH_STRING": "u:p"}, False, ["-api-auth-string"]),
        ({"PREFECT_API_KEY": "pnu_k"}, True, ["-api-key", "-env"]),
        ({}, True, ["-env"]),
    ],
)
def test_per_job_secrets(
    credentials: dict[str, str], store_env: bool, expect_secrets: list[str]
) -> None:
    worker = replace(WORKER, credential_secrets=credentials, store_env_as_secret=store_env)
    job = render(worker=worker, run_vars={"namespace": "elsewhere"})
    assert [s["metadata"]["name"] for s in job.secrets] == [job.name + s for s in expect_secrets]
    for secret in job.secrets:
        assert secret["metadata"]["namespace"] == "elsewhere" == job.namespace
    env = container(job)["env"]
    for variable, value in credentials.items():
        (entry,) = [e for e in env if e["name"] == variable]
        ref = entry["valueFrom"]["secretKeyRef"]
        (secret,) = [s for s in job.secrets if s["metadata"]["name"] == ref["name"]]
        assert secret["stringData"][ref["key"]] == value
    assert not any(e.get("value") in credentials.values() for e in env)
    if store_env:
        assert all("valueFrom" in e for e in env)
        assert container(job)["envFrom"] == [{"secretRef": {"name": f"{job.name}-env"}}]


# ---- item 6: connectivity options -----------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "has_credentials", "ok"),
    [
        ({"X-Team": "a"}, True, True),
        ({"Authorization": "Bearer proxy"}, False, True),
        ({"authorization": "Bearer proxy"}, True, False),
        ({"User-Agent": "me"}, False, False),
        ({"prefect-csrf-token": "t"}, False, False),
    ],
)
def test_custom_headers(headers: dict[str, str], has_credentials: bool, ok: bool) -> None:
    if ok:
        assert custom_request_headers(headers, has_credentials=has_credentials) == headers
    else:
        with pytest.raises(HeaderConflict):
            custom_request_headers(headers, has_credentials=has_credentials)


def test_tls_options() -> None:
    assert TlsOptions().verify() is True
    assert TlsOptions(insecure_skip_verify=True).verify() is False
    with pytest.raises(ValueError, match="CA bundle"):
        TlsOptions(ca_pem="not a certificate").verify()
    with pytest.raises(ValueError, match="/nonexistent"):
        TlsOptions(ca_file="/nonexistent/ca.pem").verify()


@pytest.mark.parametrize(
    ("api", "error"),
    [
        ({"tls": {"caBundleFrom": {}}}, "exactly one"),
        (
            {
                "tls": {
                    "caBundleFrom": {
                        "secretKeyRef": {"name": "a", "key": "b"},
                        "configMapKeyRef": {"name": "a", "key": "b"},
                    }
                }
            },
            "exactly one",
        ),
        (
            {
                "tls": {
                    "caBundleFrom": {"secretKeyRef": {"name": "a", "key": "b"}},
                    "insecureSkipVerify": True,
                }
            },
            "not both",
        ),
        ({"headers": {"User-Agent": "x"}}, "User-Agent"),
        ({"headers": {"bad header": "x"}}, "headers"),
        ({"requestTimeoutSeconds": 0}, "requestTimeoutSeconds"),
        ({"maxRetries": 100}, "maxRetries"),
    ],
)
def test_api_spec_rejects(api: dict[str, Any], error: str) -> None:
    body = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"api": api}}
    with pytest.raises(InvalidSpecError, match=error):
        WorkPoolSpec.from_cr(body)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"jobEnv": [{"name": "A"}]}, "exactly one"),
        ({"jobEnv": [{"name": "PREFECT_API_KEY", "value": "k"}]}, "never as a plain value"),
        ({"jobEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "unique"),
        ({"jobEnv": [{"name": "1A", "value": "1"}]}, "jobEnv"),
        ({"templateEnv": {"bad-name": "x"}}, "templateEnv"),
    ],
)
def test_env_specs_reject(spec: dict[str, Any], error: str) -> None:
    body = {"metadata": {"name": "p", "namespace": "n"}, "spec": spec}
    with pytest.raises(InvalidSpecError, match=error):
        WorkPoolSpec.from_cr(body)


def test_settings_take_prefects_own_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_SSL_CERT_FILE", "/etc/ca.pem")
    monkeypatch.setenv("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true")
    monkeypatch.setenv("PREFECT_CLIENT_CUSTOM_HEADERS", '{"X-Team": "data"}')
    monkeypatch.setenv("PREFECT_API_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "2")
    s = OperatorSettings()
    assert (s.api_ssl_cert_file, s.api_tls_insecure_skip_verify) == ("/etc/ca.pem", True)
    assert s.client_custom_headers == {"X-Team": "data"}
    assert (s.api_request_timeout, s.client_max_retries) == (12.5, 2)
    monkeypatch.setenv("PJO_CLIENT_MAX_RETRIES", "3")
    assert OperatorSettings().client_max_retries == 3


# ---- item 9: pod events --------------------------------------------------------------------

LABELS = {
    "prefect.io/flow-run-id": "11111111-1111-1111-1111-111111111111",
    "prefect.io/flow-run-name": "crimson-otter",
    "prefect.io/deployment-id": "22222222-2222-2222-2222-222222222222",
    "prefect.io/deployment-name": "etl",
    "prefect.io/flow-id": "33333333-3333-3333-3333-333333333333",
    "prefect.io/flow-name": "etl-flow",
    "prefect.io/work-pool-id": "44444444-4444-4444-4444-444444444444",
    "prefect.io/work-pool-name": "k8s",
    "prefect.io/worker-name": "prefect-job-operator:ns:pool",
}


def pod(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "pod-uid-1",
            "name": "job-abc-xyz",
            "namespace": "ns",
            "labels": LABELS,
            "creationTimestamp": "2026-12-03T09:00:00Z",
        },
        "status": {"phase": phase, **status},
    }


TERMINATED = {
    "containerStatuses": [
        {
            "restartCount": 0,
            "state": {"terminated": {"reason": "Completed", "finishedAt": "2026-12-03T09:01:00Z"}},
        }
    ]
}
RUNNING = {
    "containerStatuses": [
        {"restartCount": 0, "state": {"running": {"startedAt": "2026-12-03T09:00:30Z"}}}
    ]
}


@pytest.mark.parametrize(
    ("event_type", "phase", "status", "name", "occurred", "reason"),
    [
        ("ADDED", "Pending", {}, "pending", "2026-12-03T09:00:00+00:00", None),
        ("MODIFIED", "Running", RUNNING, "running", "2026-12-03T09:00:30+00:00", None),
        ("MODIFIED", "Succeeded", TERMINATED, "succeeded", "2026-12-03T09:01:00+00:00", None),
        (None, "Failed", TERMINATED, "failed", "2026-12-03T09:01:00+00:00", None),
        ("MODIFIED", "Failed", TERMINATED, "evicted", "2026-12-03T09:01:00+00:00", "Completed"),
    ],
)
def test_pod_event_like_the_observer(
    event_type: str | None,
    phase: str,
    status: dict[str, Any],
    name: str,
    occurred: str,
    reason: str | None,
) -> None:
    event = build_pod_event(event_type, pod(phase, **status))
    assert event is not None
    assert event["event"] == f"prefect.kubernetes.pod.{name}"
    assert event["occurred"] == occurred
    expected_id = uuid.uuid5(
        uuid.NAMESPACE_URL,
        json.dumps(
            {"uid": "pod-uid-1", "phase": phase, "restart_count": 0, "diagnosis": None},
            sort_keys=True,
        ),
    )
    assert event["id"] == str(expected_id)
    resource = {
        "prefect.resource.id": "prefect.kubernetes.pod.pod-uid-1",
        "prefect.resource.name": "job-abc-xyz",
        "kubernetes.namespace": "ns",
    }
    if reason:
        resource["kubernetes.reason"] = reason
    assert event["resource"] == resource


def test_related_resources_equal_the_observers() -> None:
    """Upstream's own function, in a child interpreter (its import registers kopf handlers)."""
    code = (
        "import json,sys\n"
        "from prefect_kubernetes.observer import _related_resources_from_labels as f\n"
        "print(json.dumps([dict(r) for r in f(json.loads(sys.argv[1]))]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(LABELS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    upstream = json.loads(out.stdout.strip().splitlines()[-1])
    event = build_pod_event("ADDED", pod("Pending"))
    assert event is not None
    assert event["related"] == upstream


def test_pod_event_log_sends_each_phase_once_and_chains_follows() -> None:
    log = PodEventLog()
    first = log.next_event("ADDED", pod("Pending"))
    assert first is not None and "follows" not in first
    assert log.next_event("MODIFIED", pod("Pending")) is None  # same phase: already sent
    running = log.next_event("MODIFIED", pod("Running", **RUNNING))
    assert running is not None and running["follows"] == first["id"]
    assert log.next_event("DELETED", pod("Succeeded", **TERMINATED)) is None
    assert log.next_event("ADDED", {"metadata": {"uid": "x"}, "status": {}}) is None


# ---- the WorkPool spec → the runtime (pool_factory) ------------------------------------------


def _context(kube: FakeKube, **settings: Any) -> OperatorContext:
    return OperatorContext(
        settings=OperatorSettings().model_copy(
            update={"api_url": "http://prefect.test/api", **settings}
        ),
        kube=cast(Kube, kube),
        metrics=Metrics(),
        events=EventSink(cast(Kube, kube), "prefect-job-operator"),
    )


def _body(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "pool", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec,
    }


async def _build(ctx: OperatorContext, spec: dict[str, Any]) -> Pool:
    rt = await build_runtime(ctx, _body(spec))
    await rt.ports.client.aclose()
    return rt


async def test_job_env_template_env_and_secret_options_reach_the_worker_context() -> None:
    # the admin lets namespace "ns" receive the operator's key (tests/unit/test_job_credentials)
    ctx = _context(FakeKube(), api_key=SecretStr("pnu_op"), operator_key_namespaces="ns")
    rt = await _build(
        ctx,
        {
            "jobEnv": [
                {"name": "PREFECT_LOGGING_LEVEL", "value": "DEBUG"},
                {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            ],
            "templateEnv": {"TEAM": "data"},
            "worker": {"createSecretForApiKey": True, "storeEnvAsSecret": True},
        },
    )
    w = rt.synced.worker_ctx
    assert w is not None
    assert dict(w.prefect_env) == {
        "PREFECT_API_URL": "http://prefect.test/api",
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    assert w.secret_env == {"DB": SecretKeyRef("db", "pw")}
    assert (dict(w.template_env), w.strict_template_env) == ({"TEAM": "data"}, True)
    assert w.store_env_as_secret is True
    assert w.credential_secrets == {"PREFECT_API_KEY": "pnu_op"}


async def test_a_named_api_key_secret_wins_over_create_secret_for_api_key() -> None:
    ctx = _context(FakeKube(), api_key=SecretStr("pnu_op"), api_key_secret_name="prefect-api")
    rt = await _build(ctx, {"worker": {"createSecretForApiKey": True}})
    assert rt.synced.worker_ctx is not None
    assert rt.synced.worker_ctx.credential_secrets == {}
    assert rt.synced.worker_ctx.secret_env["PREFECT_API_KEY"] == SecretKeyRef(
        "prefect-api", "api-key"
    )


@pytest.mark.parametrize(
    ("settings", "spec", "error"),
    [
        ({"api_key": SecretStr("k")}, {"api": {"headers": {"Authorization": "x"}}}, "replace"),
        (
            {"api_key": SecretStr("k"), "client_custom_headers": {"authorization": "x"}},
            {},
            "PJO_CLIENT_CUSTOM_HEADERS",
        ),
        (
            {},
            {"api": {"tls": {"caBundleFrom": {"configMapKeyRef": {"name": "ca", "key": "x"}}}}},
            "cannot read the CA bundle",
        ),
        (
            {},
            {"api": {"tls": {"caBundleFrom": {"configMapKeyRef": {"name": "bad", "key": "x"}}}}},
            "no usable PEM",
        ),
    ],
)
async def test_unusable_api_options_are_invalid_specs(
    settings: dict[str, Any], spec: dict[str, Any], error: str
) -> None:
    kube = FakeKube()
    kube.configmaps[("ns", "bad")] = {"x": "not a pem"}
    with pytest.raises(InvalidSpecError, match=error):
        await build_runtime(_context(kube, **settings), _body(spec))


async def test_ca_bundle_timeout_and_retries_reach_the_client(tmp_path: Path) -> None:
    ca, _, _ = write_server_pki(tmp_path)
    kube = FakeKube()
    kube.configmaps[("ns", "ca")] = {"ca.crt": ca.read_text()}
    spec = {
        "api": {
            "tls": {"caBundleFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}},
            "headers": {"X-Team": "data"},
            "requestTimeoutSeconds": 7,
            "maxRetries": 2,
        }
    }
    rt = await _build(_context(kube, client_max_retries=4), spec)
    client = rt.ports.client
    assert isinstance(client, PrefectClient)  # the adapter the pool factory builds
    assert client._http.headers["X-Team"] == "data"
    assert client._http.timeout.read == 7
    assert client.retry.max_retries == 2
    rt2 = await _build(_context(kube, client_max_retries=4, api_request_timeout=9), {})
    client2 = rt2.ports.client
    assert isinstance(client2, PrefectClient)
    assert (client2.retry.max_retries, client2._http.timeout.read) == (4, 9)


def _waiting(reason: str) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "c", "state": {"waiting": {"reason": reason}}}]}


def _terminated(reason: str, key: str = "containerStatuses") -> dict[str, Any]:
    return {key: [{"name": "c", "state": {"terminated": {"reason": reason}}}]}


def _unschedulable(message: str) -> dict[str, Any]:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    return {"conditions": [{**cond, "message": message}]}


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"phase": "Running"},
        _waiting("ImagePullBackOff"),
        _waiting("ErrImagePull"),
        _waiting("CrashLoopBackOff"),
        _waiting("ContainerCreating"),
        _terminated("OOMKilled"),
        _terminated("OOMKilled", "initContainerStatuses"),
        _terminated("Evicted"),
        _terminated("Error"),
        _terminated("Completed"),
        _unschedulable("0/3 nodes are available: 3 Insufficient cpu."),
        _unschedulable("node(s) had untolerated taint {x: y}"),
        _unschedulable("node(s) didn't match Pod's node affinity/selector"),
        _unschedulable(""),
        {"reason": "Evicted", "message": "The node was low on resource: memory."},
        {**_waiting("CrashLoopBackOff"), **_unschedulable("Insufficient cpu")},
    ],
)
def test_diagnosis_category_equals_upstreams(status: dict[str, Any]) -> None:
    from prefect_kubernetes.diagnostics import diagnose_k8s_pod

    upstream = diagnose_k8s_pod(status)
    assert diagnosis_category(status) == (upstream.category.value if upstream else None)


def test_a_diagnosis_is_labelled_and_changes_the_id() -> None:
    plain = build_pod_event("MODIFIED", pod("Pending"))
    stuck = build_pod_event("MODIFIED", pod("Pending", **_unschedulable("Insufficient cpu")))
    assert plain is not None and stuck is not None
    assert "kubernetes.diagnosis" not in plain["resource"]
    assert stuck["resource"]["kubernetes.diagnosis"] == "Unschedulable.InsufficientResources"
    assert stuck["id"] != plain["id"]
