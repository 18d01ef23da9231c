"""render_job end to end on small inputs: upstream's rules and our deliberate deviations."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from prefect_job_operator.rendering import (
    RenderedJob,
    RenderError,
    ResolvedReferences,
    SecretKeyRef,
    WorkerContext,
    collect_references,
    default_base_job_template,
    job_name,
    render_job,
)

WORKER = WorkerContext(
    worker_name="op-worker-1",
    work_pool_name="k8s-pool",
    work_pool_id="pool-id",
    prefect_env={"PREFECT_API_URL": "http://prefect:4200/api"},
    secret_env={},
)
FLOW = {"id": "flow-id", "name": "etl-flow"}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def flow_run(job_variables: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    run = {
        "id": "run-id",
        "name": "crimson-otter",
        "flow_id": "flow-id",
        "deployment_id": "dep-id",
        "job_variables": job_variables or {},
        "state": {"id": "state-1", "type": "PENDING"},
    }
    run.update(extra)
    return run


def deployment(job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "dep-id",
        "name": "etl-prod",
        "updated": "2026-11-28T19:24:57.826903Z",
        "job_variables": job_variables or {},
    }


def render(
    dep_vars: dict[str, Any] | None = None,
    run_vars: dict[str, Any] | None = None,
    *,
    template: dict[str, Any] | None = None,
    worker: WorkerContext = WORKER,
    references: ResolvedReferences | None = None,
    claim_id: str | None = "claim-1",
    run: dict[str, Any] | None = None,
) -> RenderedJob:
    return render_job(
        template,
        deployment=deployment(dep_vars),
        flow=FLOW,
        flow_run=run or flow_run(run_vars),
        worker=worker,
        references=references or ResolvedReferences(),
        claim_id=claim_id,
    )


def container(job: RenderedJob) -> dict[str, Any]:
    first: dict[str, Any] = job.manifest["spec"]["template"]["spec"]["containers"][0]
    return first


def env_of(job: RenderedJob) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def test_default_template_typical_run() -> None:
    job = render({"image": "ghcr.io/acme/etl:1", "namespace": "data", "cpu_request": "500m"})
    assert job.namespace == "data"
    assert job.manifest["metadata"]["namespace"] == "data"
    assert container(job)["image"] == "ghcr.io/acme/etl:1"
    assert container(job)["resources"] == {"limits": {}, "requests": {"cpu": "500m"}}
    assert container(job)["args"] == ["prefect", "flow-run", "execute"]
    assert "serviceAccountName" not in job.manifest["spec"]["template"]["spec"]
    assert "ttlSecondsAfterFinished" not in job.manifest["spec"]
    assert (job.pod_watch_timeout_seconds, job.job_watch_timeout_seconds) == (60, None)
    assert job.stream_output is True
    assert job.secrets == []
    env = env_of(job)
    assert list(env)[:2] == ["PREFECT_API_URL", "PREFECT__FLOW_RUN_ID"]
    assert env["PREFECT__DEPLOYMENT_NAME"] == "etl-prod"
    assert env["PREFECT__FLOW_NAME"] == "etl-flow"


def test_default_image_when_absent_and_when_explicitly_null() -> None:
    assert container(render())["image"] == "prefecthq/prefect:3.9.1-python3.11"
    # deviation: upstream sends `image: null`, which Kubernetes rejects
    assert container(render(run_vars={"image": None}))["image"] == WORKER.default_image
    custom = WorkerContext(**{**WORKER.__dict__, "default_image": "registry/prefect:3"})
    assert container(render(worker=custom))["image"] == "registry/prefect:3"


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (
            "python -m etl.main --date 2026-11-28",
            ["python", "-m", "etl.main", "--date", "2026-11-28"],
        ),
        ("python -c 'print(\"a b\")'", ["python", "-c", 'print("a b")']),
        ('echo "two words" plain\\ space', ["echo", "two words", "plain space"]),
        ("", []),  # upstream too: "" is a string, split into no arguments
    ],
)
def test_command_is_split_like_a_posix_shell(command: str, args: list[str]) -> None:
    assert container(render({"command": command}))["args"] == args


def test_unbalanced_quotes_name_the_command() -> None:
    with pytest.raises(RenderError, match="command"):
        render({"command": "python 'oops"})


@pytest.mark.parametrize(
    ("backoff", "user_value", "expected"),
    [
        (0, None, "reschedule"),
        (0, "relinquish", "relinquish"),  # backoffLimit 0 respects an explicit setting
        (2, None, "relinquish"),
        (2, "reschedule", "relinquish"),  # otherwise Kubernetes owns retries: forced
    ],
)
def test_backoff_limit_decides_the_sigterm_behaviour(
    backoff: int, user_value: str | None, expected: str
) -> None:
    dep_vars: dict[str, Any] = {"backoff_limit": backoff}
    if user_value:
        dep_vars["env"] = {"PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": user_value}
    job = render(dep_vars)
    assert job.manifest["spec"]["backoffLimit"] == backoff
    assert env_of(job)["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == expected


def test_env_merge_order_and_none_drops_a_variable() -> None:
    job = render(
        {"env": {"LOG_LEVEL": "info", "REGION": "eu", "PREFECT_API_URL": "http://mine/api"}},
        {"env": {"REGION": "us", "LOG_LEVEL": None, "N": 5}},
    )
    env = env_of(job)
    assert env["REGION"] == "us"
    assert "LOG_LEVEL" not in env
    assert env["N"] == "5"  # stringified like upstream
    assert env["PREFECT_API_URL"] == "http://mine/api"  # the job's env wins over the worker's


def test_labels_and_annotations_are_slugified_like_upstream() -> None:
    long_value = "v" * 80
    job = render(
        {
            "labels": {
                "Team Name": "Data & ML / Platform",
                "long": long_value,
                "uni": "k8s-worker-\u03b1 1",
                "example.com/Owner Key": "x",
            },
            "annotations": {"Bad Key!": "any value / kept", "example.com/owner": "team a"},
        }
    )
    labels = job.manifest["metadata"]["labels"]
    assert labels["Team-Name"] == "Data-ML-Platform"
    assert labels["long"] == "v" * 63
    assert labels["uni"] == "k8s-worker-a-1"
    assert labels["example.com/Owner-Key"] == "x"
    assert labels["prefect.io/deployment-updated"] == "2026-11-28T19-24-57.826903-00-00"
    assert job.manifest["metadata"]["annotations"] == {
        "Bad-Key": "any value / kept",
        "example.com/owner": "team a",
    }
    pod = job.manifest["spec"]["template"]["metadata"]
    assert pod["labels"] == labels
    assert pod["annotations"] == job.manifest["metadata"]["annotations"]
    assert all(len(v) <= 63 for v in labels.values())


def test_flow_run_labels_replace_the_deployments_and_user_labels_win() -> None:
    job = render({"labels": {"team": "data"}}, {"labels": {"prefect.io/flow-name": "mine"}})
    labels = job.manifest["metadata"]["labels"]
    assert "team" not in labels
    assert labels["prefect.io/flow-name"] == "mine"
    assert labels["app.kubernetes.io/name"] == "etl-prod"


def test_operator_labels_and_annotations_win_and_are_not_slugified() -> None:
    worker = WorkerContext(
        **{
            **WORKER.__dict__,
            "operator_labels": {"prefect-job-operator.dev/operator": "Main_1"},
            "operator_annotations": {"prefect-job-operator.dev/claim": "c 1"},
        }
    )
    job = render({"labels": {"prefect-job-operator.dev/operator": "user"}}, worker=worker)
    assert job.manifest["metadata"]["labels"]["prefect-job-operator.dev/operator"] == "Main_1"
    pod_labels = job.manifest["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["prefect-job-operator.dev/operator"] == "Main_1"
    assert job.manifest["metadata"]["annotations"] == {"prefect-job-operator.dev/claim": "c 1"}


# --- names -------------------------------------------------------------------------------


def test_deterministic_name_replaces_generate_name() -> None:
    job = render()
    assert "generateName" not in job.manifest["metadata"]
    assert job.manifest["metadata"]["name"] == job.name
    assert re.fullmatch(r"crimson-otter-[a-z2-7]{10}", job.name)
    assert render().name == job.name  # same claim → same name (409 on re-create)
    assert render(claim_id="claim-2").name != job.name  # a retry is a new claim


def test_claim_defaults_to_the_state_id_then_to_the_run_id() -> None:
    by_state = render(claim_id=None).name
    assert by_state == render(claim_id="state-1").name
    stateless = flow_run()
    del stateless["state"]
    assert job_name(stateless, None, None).startswith("crimson-otter-")
    assert job_name(stateless, None, None) != by_state


@pytest.mark.parametrize(
    ("name_variable", "prefix"),
    [
        ("{{ ctx.flow.name }}-{{ ctx.flow_run.name }}", "etl-flow-crimson-otter"),
        ("My Job_Name", "my-job-name"),  # deviation: upstream uses it verbatim (invalid)
        ("!!!", "prefect-job"),
        ("", "crimson-otter"),
        # a whole missing placeholder leaves the name untouched (upstream), inline → ""
        ("{{ ctx.flow_run.nonexistent }}", "ctx-flow-run-nonexistent"),
        ("x-{{ ctx.flow_run.nonexistent }}", "x"),
        ("x" * 80, "x" * 45),
        ("Ünïcode Jöb Ñame", "unicode-job-name"),
    ],
)
def test_name_prefix(name_variable: str, prefix: str) -> None:
    job = render({"name": name_variable})
    assert job.name.rsplit("-", 1)[0] == prefix
    assert DNS1123.match(job.name) and len(job.name) <= 63


def test_a_hard_coded_generate_name_is_kept_as_the_prefix() -> None:
    template = default_base_job_template()
    template["job_configuration"]["job_manifest"]["metadata"]["generateName"] = "ETL Job-"
    assert render(template=template).name.startswith("etl-job-")


# --- credentials and secrets --------------------------------------------------------------


def test_credentials_only_as_secret_key_refs() -> None:
    worker = WorkerContext(
        **{
            **WORKER.__dict__,
            "prefect_env": {
                "PREFECT_API_URL": "http://prefect/api",
                "PREFECT_API_KEY": "pnu_leak",
                "PREFECT_API_AUTH_STRING": "admin:leak",
                "PREFECT_SERVER_EPHEMERAL_ENABLED": "True",
            },
            "secret_env": {"PREFECT_API_KEY": SecretKeyRef("prefect-api", "api-key")},
        }
    )
    job = render(worker=worker)
    env = env_of(job)
    assert env["PREFECT_API_KEY"] == {"secretKeyRef": {"name": "prefect-api", "key": "api-key"}}
    assert "PREFECT_API_AUTH_STRING" not in env
    assert "PREFECT_SERVER_EPHEMERAL_ENABLED" not in env
    assert "leak" not in repr(job)
    # a user-supplied value is also replaced by the worker's secret
    job = render({"env": {"PREFECT_API_KEY": "user"}}, worker=worker)
    assert env_of(job)["PREFECT_API_KEY"] == {
        "secretKeyRef": {"name": "prefect-api", "key": "api-key"}
    }


def test_store_env_as_secret_moves_plain_values_into_one_secret() -> None:
    worker = WorkerContext(
        **{
            **WORKER.__dict__,
            "secret_env": {"PREFECT_API_KEY": SecretKeyRef("prefect-api", "api-key")},
            "store_env_as_secret": True,
            "operator_labels": {"prefect-job-operator.dev/operator": "main"},
        }
    )
    job = render({"namespace": "etl"}, worker=worker)
    (secret,) = job.secrets
    assert secret["metadata"]["name"] == f"{job.name}-env"
    assert secret["metadata"]["namespace"] == "etl"
    assert secret["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "prefect",
        "prefect.io/flow-run-id": "run-id",
        "prefect-job-operator.dev/operator": "main",
    }
    assert secret["stringData"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    assert [e["name"] for e in container(job)["env"]] == ["PREFECT_API_KEY"]
    assert container(job)["envFrom"] == [{"secretRef": {"name": f"{job.name}-env"}}]


def test_hard_coded_template_env_list_keeps_its_entries_after_ours() -> None:
    template = default_base_job_template()
    secret_entry = {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
    template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ] = [secret_entry, {"name": "REGION", "value": "template"}, {"name": "STATIC", "value": "s"}]
    names = [
        e["name"] for e in container(render({"env": {"REGION": "job"}}, template=template))["env"]
    ]
    assert names[-2:] == ["DB", "STATIC"]
    assert names.count("REGION") == 1


# --- references ---------------------------------------------------------------------------

REFS = ResolvedReferences(
    blocks={("string", "sa"): {"value": "etl-runner"}, ("json", "cfg"): {"a": {"b": [1, 2]}}},
    block_ids={"blk-1": {"image": "from-ref"}},
    variables={"tag": "1.3", "ns": "etl-jobs"},
)


def test_references_resolve_like_upstream() -> None:
    job = render(
        {
            "namespace": "{{ prefect.variables.ns }}",
            "image": "ghcr.io/acme/etl:{{ prefect.variables.tag }}-{{ prefect.variables.nope }}",
            "service_account_name": "{{ prefect.blocks.string.sa }}",
            "labels": {"cfg": "v{{ prefect.blocks.json.cfg.a.b[1] }}"},
        },
        references=REFS,
    )
    assert job.namespace == "etl-jobs"
    assert container(job)["image"] == "ghcr.io/acme/etl:1.3-"
    assert job.manifest["spec"]["template"]["spec"]["serviceAccountName"] == "etl-runner"
    assert job.manifest["metadata"]["labels"]["cfg"] == "v2"
    # a whole-string placeholder keeps the type: an int label value is invalid
    with pytest.raises(RenderError, match=r"labels\.cfg"):
        render({"labels": {"cfg": "{{ prefect.blocks.json.cfg.a.b[1] }}"}}, references=REFS)


def test_block_id_reference_becomes_the_block_data() -> None:
    template = default_base_job_template()
    template["job_configuration"]["job_manifest"]["metadata"]["annotations"] = {
        "$ref": {"block_document_id": "blk-1"}
    }
    job = render(template=template, references=REFS)
    assert job.manifest["metadata"]["annotations"] == {"image": "from-ref"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ prefect.blocks.string.gone }}", r"Block not found: 'gone' of type 'string'"),
        ("x-{{ prefect.blocks.json.cfg }}", r"prefect\.blocks\.json\.cfg.*resolved to a dict"),
        ("{{ prefect.blocks.json.cfg.a.zzz }}", r"keypath 'a\.zzz'"),
        ("{{ prefect.blocks.onlytype }}", r"invalid block placeholder"),
    ],
)
def test_block_errors_name_the_placeholder(value: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render({"service_account_name": value}, references=REFS)


def test_collect_references_scans_only_what_the_template_uses() -> None:
    refs = collect_references(
        None,
        deployment({"image": "{{ prefect.variables.tag }}", "unused": "{{ prefect.variables.x }}"}),
        flow_run({"service_account_name": "sa-{{ prefect.blocks.string.sa.value }}"}),
    )
    assert refs.variables == frozenset({"tag"})
    assert refs.blocks == frozenset({("string", "sa")})
    template = default_base_job_template()
    template["job_configuration"]["job_manifest"]["metadata"]["annotations"] = {
        "$ref": {"block_document_id": "blk-1"}
    }
    assert collect_references(template, None, flow_run()).block_ids == frozenset({"blk-1"})


# --- validation ---------------------------------------------------------------------------


def _broken(path: list[Any], value: Any = None, delete: bool = False) -> dict[str, Any]:
    template = default_base_job_template()
    node = template["job_configuration"]["job_manifest"]
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return template


POD = ["spec", "template", "spec"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            _broken([*POD, "restartPolicy"], delete=True),
            "missing required attributes at the following paths: /spec/template/spec/restartPolicy",
        ),
        (_broken([*POD, "containers"], []), "/spec/template/spec/containers/0"),
        (_broken([*POD, "parallelism"], 2), "/spec/template/spec/parallelism must have value 1"),
        (_broken([*POD, "restartPolicy"], "OnFailure"), "restartPolicy must have value 'Never'"),
        (
            _broken([*POD, "containers", 0, "name"], "main"),
            "containers/0/name must have value 'prefect-job'",
        ),
        (_broken(["kind"], "CronJob"), "/kind must have value 'Job'"),
    ],
)
def test_required_attributes_with_clear_errors(template: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError) as info:
        render(template=template)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("dep_vars", "key"),
    [
        ({"labels": {"team": 1}}, "labels.team"),
        ({"namespace": None}, "namespace"),
        ({"pod_watch_timeout_seconds": "soon"}, "pod_watch_timeout_seconds"),
        ({"annotations": ["not", "a", "dict"]}, "annotations"),
        ({"cluster_config": {"config": {}, "context_name": "x"}}, "cluster_config"),
    ],
)
def test_invalid_values_name_the_key(dep_vars: dict[str, Any], key: str) -> None:
    with pytest.raises(RenderError, match=re.escape(key)):
        render(dep_vars)


def test_inputs_are_not_mutated() -> None:
    template = default_base_job_template()
    dep = deployment({"env": {"A": "1"}, "labels": {"x": "y"}})
    run = flow_run({"env": {"B": "2"}})
    before = copy.deepcopy((template, dep, run))
    render_job(
        template,
        deployment=dep,
        flow=FLOW,
        flow_run=run,
        worker=WORKER,
        references=ResolvedReferences(),
        claim_id="c",
    )
    assert (template, dep, run) == before
