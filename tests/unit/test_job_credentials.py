"""Issue #15: the operator-wide Prefect key reaches a Job only where the admin allowed it.

The rule (`security.job_credentials`) table by table, then what `build_runtime` and the
renderer make of it: a refused pool's Jobs and Secrets never hold the operator's key, a pool
with its own key always gets its own.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from pydantic import SecretStr, ValidationError

from prefect_job_operator.api.job_namespaces import (
    NamespaceScope,
    namespace_refusal,
    namespace_report,
)
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.pool_factory import build_runtime
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.rendering import ResolvedReferences, SecretKeyRef, render_job
from prefect_job_operator.security.job_credentials import (
    CHART_VALUE,
    REASON_NOT_ALLOWED,
    SETTING,
    OperatorKeyUse,
    operator_key_refusal,
    operator_key_use,
    parse_namespaces,
)
from prefect_job_operator.settings import OperatorSettings
from tests.unit.fakes import FakeKube
from tests.unit.test_render_job import FLOW, deployment, flow_run

OP_KEY = "pnu_operator_wide"
OWN_KEY = "pnu_pool_own"


# ---- the rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("use", "job_ns", "refused"),
    [
        (None, "anything", None),  # no copy of the operator key: nothing to refuse
        (OperatorKeyUse("ops", ("ops",)), "ops", None),
        (OperatorKeyUse("ops", ()), "ops", ["'ops'"]),  # the binary's default: nowhere
        (OperatorKeyUse("team-a", ("ops",)), "team-a", ["'team-a'"]),
        (OperatorKeyUse("ops", ("ops",)), "team-a", ["'team-a'"]),  # Job elsewhere
        (OperatorKeyUse("team-a", ("ops",)), "etl", ["'team-a' and 'etl'"]),
        (OperatorKeyUse("team-a", ("team-*", "etl")), "etl", None),
        (OperatorKeyUse("team-a", ("team-*",)), "*", ["'*'"]),  # jobNamespaces: ['*']
        (OperatorKeyUse("team-a", ("*",)), "*", None),
        (OperatorKeyUse("team-a", ("*",)), "kube-system", None),  # '*': single-tenant
    ],
)
def test_operator_key_refusal(
    use: OperatorKeyUse | None, job_ns: str, refused: list[str] | None
) -> None:
    message = operator_key_refusal(use, job_ns)
    if refused is None:
        assert message is None
        return
    assert message is not None
    for part in refused:
        assert f"namespace {part} is not allowed" in message
    assert SETTING in message and CHART_VALUE in message and "apiKeySecretRef" in message


@pytest.mark.parametrize(
    ("create", "copied", "operator_wide", "expected"),
    [
        (True, {"PREFECT_API_KEY": OP_KEY}, True, OperatorKeyUse("ns", ("x",))),
        (True, {"PREFECT_API_AUTH_STRING": "u:p"}, True, OperatorKeyUse("ns", ("x",))),
        (False, {"PREFECT_API_KEY": OP_KEY}, True, None),  # no createSecretForApiKey
        (True, {}, True, None),  # the operator has no credentials
        (True, {"PREFECT_API_KEY": OWN_KEY}, False, None),  # the pool's own
    ],
)
def test_operator_key_use(
    create: bool, copied: dict[str, str], operator_wide: bool, expected: OperatorKeyUse | None
) -> None:
    got = operator_key_use(
        workpool_namespace="ns",
        create_secret_for_api_key=create,
        copied=copied,
        operator_wide=operator_wide,
        allowed=("x",),
    )
    assert got == expected


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("", ()), ("ops", ("ops",)), (" ops , team-* ,ops", ("ops", "team-*")), ("*", ("*",))],
)
def test_parse_namespaces(text: str, parsed: tuple[str, ...]) -> None:
    assert parse_namespaces(text) == parsed


@pytest.mark.parametrize("bad", ["Ops", "a_b", "ns;x", "-x"])
def test_a_malformed_setting_stops_the_operator(bad: str) -> None:
    with pytest.raises(ValidationError, match="not a namespace name or pattern"):
        OperatorSettings(operator_key_namespaces=bad)


def test_the_refusal_is_a_namespace_refusal_and_blocks_the_pool() -> None:
    scope = NamespaceScope(
        workpool_namespace="team-a",
        job_namespaces=("team-a",),
        operator_key=OperatorKeyUse("team-a", ("ops",)),
    )
    refusal = namespace_refusal("team-a", scope)
    assert refusal is not None and refusal.reason == REASON_NOT_ALLOWED
    report = namespace_report(scope, "team-a")
    assert (report.ok, report.reason, report.blocking) == (False, REASON_NOT_ALLOWED, True)
    # '*' in jobNamespaces does not make a refused pool namespace usable
    star = NamespaceScope("team-a", ("*",), operator_key=OperatorKeyUse("team-a", ("ops",)))
    assert namespace_report(star, None).blocking is True
    # allowed: nothing to report
    ok = NamespaceScope("ops", ("ops",), operator_key=OperatorKeyUse("ops", ("ops",)))
    assert namespace_refusal("ops", ok) is None and namespace_report(ok, "ops").ok


# ---- build_runtime: the one place the Job's credentials are decided ----------------------


class KeyKube(FakeKube):
    """FakeKube whose namespace "team-a" holds the pool's own key Secret."""

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        if (namespace, name, key) == ("team-a", "pool-key", "api-key"):
            return OWN_KEY
        return await super().read_secret_value(namespace, name, key)


async def _runtime(spec: dict[str, Any], **settings: Any) -> Pool:
    kube = KeyKube()
    ctx = OperatorContext(
        settings=OperatorSettings().model_copy(
            update={"api_url": "http://prefect.test/api", **settings}
        ),
        kube=cast(Kube, kube),
        metrics=Metrics(),
        events=EventSink(cast(Kube, kube), "prefect-job-operator"),
    )
    body = {
        "metadata": {"name": "pool", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": spec,
    }
    rt = await build_runtime(ctx, body)
    await rt.ports.client.aclose()
    return rt


CREATE = {"worker": {"createSecretForApiKey": True, "storeEnvAsSecret": True}}
OWN = {"api": {"apiKeySecretRef": {"name": "pool-key", "key": "api-key"}}}
OP = {"api_key": SecretStr(OP_KEY)}
OP_AUTH = {"api_auth_string": SecretStr("admin:op-password")}


@pytest.mark.parametrize(
    ("spec", "settings", "copied", "secret_env", "refused"),
    [
        # not allowed (the binary's default: no namespace): no copy, every Job refused
        (CREATE, OP, {}, {}, True),
        (CREATE, OP_AUTH, {}, {}, True),
        (CREATE, {**OP, "operator_key_namespaces": "ops,team-b"}, {}, {}, True),
        # the admin allowed the namespace: upstream's behaviour
        (CREATE, {**OP, "operator_key_namespaces": "team-*"}, {"PREFECT_API_KEY": OP_KEY}, {},
         False),
        # the pool's own key: always its own, by reference, never refused
        ({**CREATE, **OWN}, OP, {}, {"PREFECT_API_KEY": SecretKeyRef("pool-key", "api-key")},
         False),
        # no createSecretForApiKey: nothing of the operator's goes into the Job
        ({}, OP, {}, {}, False),
        # an allowlisted URL of the pool's own never gets the operator's credentials
        (
            {**CREATE, "api": {"url": "http://other.test/api"}},
            {**OP, "allowed_api_urls": "http://other.test/api"},
            {},
            {},
            False,
        ),
    ],
)  # fmt: skip
async def test_build_runtime_decides_the_jobs_credentials(
    spec: dict[str, Any],
    settings: dict[str, Any],
    copied: dict[str, str],
    secret_env: dict[str, SecretKeyRef],
    refused: bool,
) -> None:
    rt = await _runtime(spec, **settings)
    assert rt.synced.worker_ctx is not None
    assert dict(rt.synced.worker_ctx.credential_secrets) == copied
    assert dict(rt.synced.worker_ctx.secret_env) == secret_env
    refusal = rt.access.refusal("team-a")
    assert (refusal is not None) == refused, refusal
    if refusal is not None:
        assert refusal.reason == REASON_NOT_ALLOWED and SETTING in refusal.message
    # What would be rendered for a run holds no operator credential, in any form.
    rendered = render_job(
        rt.synced.template or None,
        deployment=deployment({"env": {"EXTRA": "1"}}),
        flow=FLOW,
        flow_run=flow_run(),
        worker=rt.synced.worker_ctx,
        references=ResolvedReferences(),
        claim_id="c",
    )
    text = json.dumps([rendered.manifest, rendered.secrets])
    if not copied:
        assert OP_KEY not in text and "op-password" not in text
    else:  # allowed: the per-Job Secret holds it, the Job references it
        assert [
            s["stringData"] for s in rendered.secrets if s["metadata"]["name"].endswith("-api-key")
        ] == [{"value": OP_KEY}]
    env = {
        e["name"]: e for e in rendered.manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    # credentials are never plain values (upstream puts the worker's key in the Job env)
    assert all(
        "value" not in env[v] for v in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING") if v in env
    )
    if secret_env:
        assert env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "pool-key",
            "key": "api-key",
        }
        assert OWN_KEY not in text


async def test_the_allowed_job_namespace_is_checked_per_job() -> None:
    """Pool namespace allowed, the run's namespace not: that submission is refused."""
    rt = await _runtime(
        {**CREATE, "jobNamespaces": ["team-a", "etl"]},
        **OP,
        operator_key_namespaces="team-a",
        job_namespace_policy="team-a=etl",
    )
    assert rt.access.refusal("team-a") is None
    refusal = rt.access.refusal("etl")
    assert refusal is not None and refusal.reason == REASON_NOT_ALLOWED
    assert "namespace 'etl' is not allowed" in refusal.message
