"""Differential tests: our renderer against prefect-kubernetes 0.8.0 run in-process.

Outputs are compared after normalising ONLY the documented deviations
(docs/compatibility.md): the deterministic name instead of generateName, credentials as
secretKeyRefs, explicit `image: null`, and our Secret names.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_job_operator.rendering import RenderError, default_base_job_template
from prefect_job_operator.rendering.case import CaseError, render_case, worker_context
from prefect_job_operator.rendering.slugs import slugify_name
from tests.unit.oracle_support import upstream_render

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
CASES = sorted(ORACLE.glob("case[0-9].json"))
DEFAULT_IMAGE = "prefecthq/prefect:3.9.1-python3.11"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _container(job: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return first


def upstream_settings_order(worker_env: dict[str, str]) -> list[str]:
    """The env names upstream's worker copies into a Job, in its order: what
    ``get_current_settings().to_environment_variables(exclude_unset=True)`` returns with
    `worker_env` set (the other variables of this process may add names, never reorder)."""
    from prefect.settings import Settings

    with mock.patch.dict(os.environ, worker_env):
        return list(Settings().to_environment_variables(exclude_unset=True))


def _upstream_base_env(case: dict[str, Any]) -> dict[str, str]:
    """What upstream's worker would inject: the same plain settings plus real credentials, in
    the order upstream's settings model gives them."""
    worker = worker_context(case)
    env = {str(k): str(v) for k, v in (case.get("worker_env") or {}).items()}
    values = {**worker.prefect_env, **{var: env[var] for var in worker.secret_env}}
    order = upstream_settings_order(env)
    assert set(values) <= set(order), set(values) - set(order)
    return {name: values[name] for name in order if name in values}


def normalised_upstream(
    case: dict[str, Any], upstream: dict[str, Any], ours: dict[str, Any]
) -> dict[str, Any]:
    """Upstream's Job with our documented deviations applied, for an exact comparison."""
    worker = worker_context(case)
    job: dict[str, Any] = copy.deepcopy(upstream["job"])
    generate_name = job["metadata"].pop("generateName")
    our_name = ours["job"]["metadata"]["name"]
    prefix = slugify_name(generate_name.rstrip("-")) or "prefect-job"
    assert our_name.startswith(prefix + "-") and len(our_name) == len(prefix) + 11
    container = _container(job)
    for i, entry in enumerate(container.get("env") or []):
        ref = worker.secret_env.get(entry.get("name"))
        if ref is not None:
            key_ref = {"name": ref.name, "key": ref.key}
            container["env"][i] = {"name": entry["name"], "valueFrom": {"secretKeyRef": key_ref}}
    if "image" in container and container["image"] is None:
        container["image"] = DEFAULT_IMAGE
    env_secrets = [s for s in upstream["secrets"] if s["labels"]]
    ours_env_secrets = [s for s in ours["secrets"] if s["metadata"].get("labels")]
    assert len(env_secrets) == len(ours_env_secrets)
    for theirs, mine in zip(env_secrets, ours_env_secrets, strict=True):
        assert mine["metadata"]["labels"] == theirs["labels"]
        assert mine["metadata"]["namespace"] == theirs["namespace"]
        assert mine["stringData"] == theirs["string_data"]
        for source in container.get("envFrom") or []:
            if source["secretRef"]["name"] == theirs["name"]:
                source["secretRef"]["name"] = mine["metadata"]["name"]
    return job


def assert_same_as_upstream(case: dict[str, Any]) -> dict[str, Any]:
    ours = render_case(copy.deepcopy(case))
    upstream = upstream_render(copy.deepcopy(case), _upstream_base_env(case))
    expected = normalised_upstream(case, upstream, ours)
    mine = copy.deepcopy(ours["job"])
    mine["metadata"].pop("name")
    assert mine == expected
    # lists are ordered: env order must match exactly, not just as a set
    assert _container(mine).get("env") == _container(expected).get("env")
    assert upstream["namespace"] == mine["metadata"]["namespace"]
    return ours


def test_the_packaged_default_template_is_prefect_kubernetes_0_8_0() -> None:
    from prefect_kubernetes.worker import KubernetesWorker

    assert default_base_job_template() == KubernetesWorker.get_default_base_job_template()
    assert default_base_job_template() == _load(ORACLE / "default-base-job-template.json")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_sample_cases_match_upstream_in_process(path: Path) -> None:
    assert_same_as_upstream(_load(path))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_sample_cases_match_the_committed_oracle_output(path: Path) -> None:
    """The committed outputs came from a real worker process (real settings, ephemeral
    profile): only the documented deviations differ."""
    case = _load(path)
    committed = _load(path.with_suffix(".out.json"))
    calls = committed["kubernetes_calls"]
    (job_call,) = [c for c in calls if c["call"] == "BatchV1Api.create_namespaced_job"]
    theirs = copy.deepcopy(job_call["body"])
    ours = render_case(case)
    mine = copy.deepcopy(ours["job"])
    theirs["metadata"].pop("generateName")
    mine["metadata"].pop("name")
    env = _container(theirs)["env"]
    _container(theirs)["env"] = [e for e in env if e["name"] != "PREFECT_SERVER_EPHEMERAL_ENABLED"]
    if _container(theirs)["image"] is None:
        _container(theirs)["image"] = DEFAULT_IMAGE
    for source in _container(theirs).get("envFrom", []):
        source["secretRef"]["name"] = ours["secrets"][-1]["metadata"]["name"]
    assert mine == theirs
    secret_calls = [c for c in calls if c["call"] == "CoreV1Api.create_namespaced_secret"]
    assert [s["metadata"]["namespace"] for s in ours["secrets"]] == [
        c["namespace"] for c in secret_calls
    ]
    for secret, call in zip(ours["secrets"], secret_calls, strict=True):
        keys = sorted(k for k in call["keys"] if k != "PREFECT_SERVER_EPHEMERAL_ENABLED")
        assert sorted(secret["stringData"]) == keys
        assert secret["metadata"].get("labels") == call["labels"]


def test_worker_settings_env_is_in_upstreams_order() -> None:
    """Issue #10 item 5 (held-out case): a worker setting among the credentials keeps
    upstream's order, which `$(VAR)` expansion depends on."""
    case = _load(ORACLE / "case1.json")
    case["worker_env"] = {
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_API_URL": "http://prefect-server:4200/api",
        "PREFECT_API_KEY": "pnu_FAKEKEY",
    }
    ours = assert_same_as_upstream(case)
    names = [e["name"] for e in _container(ours["job"])["env"]]
    assert names[:5] == [
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_LOGGING_LEVEL",
        "PREFECT__FLOW_RUN_ID",
        "PREFECT__WORKER_NAME",
    ], names


def test_settings_order_is_prefects() -> None:
    """rendering/prefect_settings_order.py is generated from the installed prefect."""
    from prefect.settings import Settings
    from prefect.settings.base import PrefectBaseSettings

    from prefect_job_operator.rendering.prefect_settings_order import SETTINGS_ENV_ORDER

    def walk(cls: type[PrefectBaseSettings]) -> list[str]:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names: list[str] = []
        for name, field in cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, PrefectBaseSettings):
                names += walk(ann)
            else:
                names.append((prefix + name).upper())
        return names

    assert list(SETTINGS_ENV_ORDER) == walk(Settings)
    some = {"PREFECT_LOGGING_LEVEL": "DEBUG", "PREFECT_API_URL": "http://x/api"}
    upstream = [n for n in upstream_settings_order(some) if n in some]
    assert upstream == [n for n in SETTINGS_ENV_ORDER if n in some]


def test_case3_api_key_secret_is_redacted_and_referenced() -> None:
    ours = render_case(_load(ORACLE / "case3.json"))
    api_secret = ours["secrets"][0]
    assert api_secret["metadata"] == {
        "name": "prefect-op-worker-3-api-key",
        "namespace": "etl-jobs",
    }
    assert "pnu_FAKEKEY" not in json.dumps(ours)
    assert base64.b64encode(b"pnu_FAKEKEY").decode() not in json.dumps(ours)
    assert _container(ours["job"])["env"] == [
        {
            "name": "PREFECT_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "prefect-op-worker-3-api-key", "key": "value"}},
        }
    ]


# ---------------------------------------------------------------------------------------
# Generated cases
# ---------------------------------------------------------------------------------------

LABEL_TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 -_./&!é€αß漢")), min_size=1, max_size=80
)
SAFE_TEXT = st.text(alphabet=st.sampled_from(list("abcdef-_123")), min_size=1, max_size=12)
COMMANDS = st.sampled_from(
    [
        "python -m etl.main --date 2026-11-28",
        "python -c 'print(\"hi there\")'",
        'bash -c "echo $HOME && ls"',
        "prefect flow-run execute",
        "",
        "python 'unterminated",
    ]
)
NAMES = st.sampled_from(
    [
        "{{ ctx.flow.name }}-{{ ctx.flow_run.name }}",
        "{{ ctx.flow_run.name }}",
        "{{ ctx.flow_run.id }}-x",
        "{{ ctx.flow_run.nonexistent }}",
        "My Job_Name",
        "x" * 70,
        "!!!",
        "",
        "job-{{ $PJO_T_VAR }}",
    ]
)
RUN_NAMES = st.sampled_from(["crimson-otter", "Ünïcode Rün", "a" * 60, "run_1 (prod)"])
ENV_VALUES = st.one_of(SAFE_TEXT, st.none(), st.integers(0, 99), st.just("{{ image }}"))
ENV_KEYS = st.sampled_from(["A", "B", "REGION", "PREFECT_LOGGING_LEVEL", "PREFECT_API_KEY"])
REFERENCE_VALUES = st.sampled_from(
    [
        "{{ prefect.variables.tag }}",
        "ghcr.io/acme/etl:{{ prefect.variables.tag }}",
        "{{ prefect.variables.absent }}",
        "{{ prefect.blocks.string.sa }}",
        "sa-{{ prefect.blocks.string.sa }}",
        "{{ prefect.blocks.json.cfg.value.account }}",
        "x-{{ prefect.blocks.json.cfg }}",
        "{{ prefect.blocks.string.missing }}",
        "plain",
    ]
)


@st.composite
def job_variables(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["image"] = draw(st.one_of(st.none(), st.just("ghcr.io/acme/etl:1"), REFERENCE_VALUES))
    if draw(st.booleans()):
        out["env"] = draw(st.dictionaries(ENV_KEYS, ENV_VALUES, max_size=4))
    if draw(st.booleans()):
        out[f"env.{draw(ENV_KEYS)}"] = draw(SAFE_TEXT)
    if draw(st.booleans()):
        out["labels"] = draw(st.dictionaries(LABEL_TEXT, LABEL_TEXT, max_size=3))
    if draw(st.booleans()):
        out["annotations"] = draw(st.dictionaries(LABEL_TEXT, LABEL_TEXT, max_size=3))
    if draw(st.booleans()):
        out["command"] = draw(COMMANDS)
    if draw(st.booleans()):
        out["backoff_limit"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        out["name"] = draw(NAMES)
    if draw(st.booleans()):
        out["namespace"] = draw(st.sampled_from(["data", "etl-jobs", "{{ prefect.variables.ns }}"]))
    if draw(st.booleans()):
        out["service_account_name"] = draw(REFERENCE_VALUES)
    if draw(st.booleans()):
        out["node_selector"] = draw(st.dictionaries(SAFE_TEXT, SAFE_TEXT, max_size=2))
    if draw(st.booleans()):
        out["finished_job_ttl"] = draw(st.one_of(st.none(), st.integers(0, 600)))
    if draw(st.booleans()):
        out["cpu_request"] = draw(st.sampled_from(["500m", "1"]))
    return out


@st.composite
def templates(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    template = default_base_job_template()
    config = template["job_configuration"]
    props = template["variables"]["properties"]
    pod_spec = config["job_manifest"]["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    if draw(st.booleans()):
        props["node_selector"] = {
            "type": "object",
            "default": draw(st.sampled_from([{"pool": "batch"}, None])),
        }
        pod_spec["nodeSelector"] = "{{ node_selector }}"
    if draw(st.booleans()):
        container["workingDir"] = "/work/{{ namespace }}/{{ $PJO_T_VAR }}{{ $PJO_T_MISSING }}"
    if draw(st.booleans()):
        props["env"]["default"] = {"POOL_DEFAULT": "yes"}
    if draw(st.booleans()):
        container["env"] = [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "A", "value": "from-template"},
        ]
    if draw(st.booleans()):
        config["job_manifest"]["metadata"]["annotations"] = {"static/one": "{{ namespace }}-x"}
    if draw(st.booleans()):
        props["finished_job_ttl"]["default"] = 3600
    if draw(st.booleans()):
        pod_spec["initContainers"] = [
            {"name": "init", "image": "{{ image }}", "args": "{{ command }}"}
        ]
    return template


WORKER_ENVS = st.sampled_from(
    [
        {"PREFECT_API_URL": "http://prefect:4200/api"},
        {"PREFECT_API_URL": "http://prefect:4200/api", "PREFECT_LOGGING_LEVEL": "DEBUG"},
        {
            "PREFECT_API_URL": "https://api.example.com/api",
            "PREFECT_API_KEY": "pnu_X",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_CREATE_SECRET_FOR_API_KEY": "true",
        },
        {
            "PREFECT_API_URL": "https://api.example.com/api",
            "PREFECT_API_KEY": "pnu_X",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME": "my-key",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY": "k",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_STORE_ENV_AS_SECRET": "true",
        },
        {
            "PREFECT_API_URL": "http://prefect:4200/api",
            "PREFECT_API_AUTH_STRING": "admin:pass",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME": "auth",
            "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY": "s",
        },
    ]
)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    flow_id, deployment_id = str(uuid.uuid4()), str(uuid.uuid4())
    has_deployment = draw(st.booleans())
    worker_env = dict(draw(WORKER_ENVS))
    worker_env["PJO_T_VAR"] = "tv"
    deployment = {
        "id": deployment_id,
        "name": draw(st.sampled_from(["etl-prod", "Nightly Load v2", "Déploiement"])),
        "flow_id": flow_id,
        "updated": draw(
            st.sampled_from(
                ["2026-11-28T19:24:57.826903Z", "2026-01-01T00:00:00Z", "2026-06-01T12:00:00+02:00"]
            )
        ),
        "job_variables": draw(job_variables()),
    }
    return {
        "worker_env": worker_env,
        "worker_name": draw(st.sampled_from(["op-worker-1", "k8s-worker-\u03b1 1"])),
        "work_pool": {
            "id": str(uuid.uuid4()),
            "name": "k8s-pool",
            "type": "kubernetes",
            "base_job_template": draw(templates()),
        },
        "deployment": deployment if has_deployment else None,
        "flow": {"id": flow_id, "name": draw(st.sampled_from(["etl-flow", "My_ETL Flow (Prod)"]))},
        "flow_run": {
            "id": str(uuid.uuid4()),
            "name": draw(RUN_NAMES),
            "flow_id": flow_id,
            "deployment_id": deployment_id if has_deployment else None,
            "job_variables": draw(job_variables()),
            "state": {"type": "PENDING", "name": "Pending", "id": str(uuid.uuid4())},
        },
        "variables": draw(
            st.sampled_from([{}, {"tag": "1.3", "ns": "etl-jobs"}, {"tag": 7, "ns": "data"}])
        ),
        "blocks": draw(
            st.sampled_from(
                [
                    {},
                    {
                        "string/sa": {"value": "etl-runner"},
                        "json/cfg": {"value": {"account": "a1"}},
                    },
                ]
            )
        ),
    }


OUTCOMES: list[str] = []


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:  # upstream raises many kinds; ours RenderError/CaseError
        return "error", exc


@settings(
    max_examples=int(os.environ.get("PJO_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=cases())
def test_generated_cases_match_upstream(case: dict[str, Any]) -> None:
    ours_kind, ours = _outcome(lambda: render_case(copy.deepcopy(case)))
    OUTCOMES.append(ours_kind)
    theirs_kind, theirs = _outcome(
        lambda: upstream_render(copy.deepcopy(case), _upstream_base_env(case))
    )
    if ours_kind == "error":
        assert isinstance(ours, RenderError | CaseError), ours
    assert ours_kind == theirs_kind, (ours, theirs)
    if ours_kind == "ok":
        expected = normalised_upstream(case, theirs, ours)
        mine = copy.deepcopy(ours["job"])
        mine["metadata"].pop("name")
        assert mine == expected
        assert _container(mine).get("env") == _container(expected).get("env")
        assert theirs["namespace"] == mine["metadata"]["namespace"]
