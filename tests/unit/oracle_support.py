"""Run prefect-kubernetes 0.8.0 itself, in-process, on a case (test-only oracle).

The same code path as /work/shared/oracle/render_job.py:
`KubernetesWorkerJobConfiguration.resolve_for_flow_run` then `KubernetesWorker._create_job`
with the Kubernetes API classes replaced by recorders. Two inputs are pinned so that both
sides see the same thing:
- the worker's "explicitly set Prefect settings" (`_base_environment`) are exactly the
  plain env we hand our renderer, plus the real credential values;
- `os.environ` is patched with the case's worker env only for the duration of the call
  (upstream reads `{{ $NAME }}` and its `PREFECT_INTEGRATIONS_KUBERNETES_WORKER_*`
  settings from there); the patch is undone afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from unittest import mock

import prefect_kubernetes.worker as kw
from kubernetes_asyncio.client.exceptions import ApiException
from prefect.client.schemas.objects import BlockDocument, Flow, FlowRun, Variable, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectNotFound
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration


class _StubClient:
    """Answers the only reads the templating path makes."""

    def __init__(self, case: Mapping[str, Any]) -> None:
        self.case = case

    async def read_deployment(self, deployment_id: Any) -> DeploymentResponse:
        return DeploymentResponse.model_validate(self.case["deployment"])

    async def read_flow(self, flow_id: Any) -> Flow:
        return Flow.model_validate(self.case["flow"])

    async def read_variable_by_name(self, name: str) -> Variable | None:
        known = self.case.get("variables") or {}
        return Variable(name=name, value=known[name]) if name in known else None

    async def read_block_document_by_name(
        self, name: str, block_type_slug: str, **_: Any
    ) -> BlockDocument:
        data = (self.case.get("blocks") or {}).get(f"{block_type_slug}/{name}")
        if data is None:
            raise ObjectNotFound(http_exc=Exception(f"{block_type_slug}/{name}"))
        return _block(name, block_type_slug, data)

    async def read_block_document(self, block_document_id: Any) -> BlockDocument:
        data = (self.case.get("block_documents") or {}).get(str(block_document_id))
        if data is None:
            raise ObjectNotFound(http_exc=Exception(str(block_document_id)))
        return _block("by-id", "json", data)


def _block(name: str, slug: str, data: Any) -> BlockDocument:
    return BlockDocument(
        id=uuid.uuid4(),
        name=name,
        data=data,
        block_schema_id=uuid.uuid4(),
        block_type_id=uuid.uuid4(),
        block_type_name=slug,
    )


class _Recorder:
    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.secrets: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []

    def batch(self, *_a: Any, **_k: Any) -> Any:
        recorder = self

        class FakeBatch:
            async def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> Any:
                recorder.jobs.append({"namespace": namespace, "body": copy.deepcopy(body)})
                name = body["metadata"].get("generateName", "") + "abcde"
                return SimpleNamespace(
                    metadata=SimpleNamespace(name=name, namespace=namespace, uid="job-uid")
                )

        return FakeBatch()

    def core(self, *_a: Any, **_k: Any) -> Any:
        recorder = self

        class FakeCore:
            async def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
                recorder.secrets.append(
                    {
                        "namespace": namespace,
                        "name": body.metadata.name,
                        "labels": body.metadata.labels,
                        "string_data": body.string_data,
                        "data": body.data,
                    }
                )
                return body

            async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
                raise ApiException(status=404)

            async def patch_namespaced_secret(self, name: str, namespace: str, body: Any) -> None:
                recorder.patches.append({"name": name, "namespace": namespace, "body": body})

        return FakeCore()


def upstream_render(case: Mapping[str, Any], base_environment: Mapping[str, str]) -> dict[str, Any]:
    """`{"job", "namespace", "secrets", "configuration"}` as upstream would create them.

    Raises whatever upstream raises for an invalid case.
    """
    recorder = _Recorder()
    env = {str(k): str(v) for k, v in (case.get("worker_env") or {}).items()}
    with (
        mock.patch.dict(os.environ, env),
        mock.patch.object(
            KubernetesWorkerJobConfiguration,
            "_base_environment",
            classmethod(lambda cls: dict(base_environment)),
        ),
        mock.patch.object(kw, "BatchV1Api", recorder.batch),
        mock.patch.object(kw, "CoreV1Api", recorder.core),
    ):
        # A private loop: asyncio.run() would unset the session loop pytest-asyncio shares.
        loop = asyncio.new_event_loop()
        try:
            config = loop.run_until_complete(_resolve(case))
            loop.run_until_complete(_create(case, config))
        finally:
            loop.close()
    (job,) = recorder.jobs
    return {
        "job": job["body"],
        "namespace": job["namespace"],
        "secrets": recorder.secrets,
        "configuration": config,
    }


async def _resolve(case: Mapping[str, Any]) -> KubernetesWorkerJobConfiguration:
    pool = dict(case["work_pool"])
    if not pool.get("base_job_template"):
        pool["base_job_template"] = KubernetesWorker.get_default_base_job_template()
    deployment = (
        DeploymentResponse.model_validate(case["deployment"]) if case.get("deployment") else None
    )
    return await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
        FlowRun.model_validate(copy.deepcopy(case["flow_run"])),
        client=_StubClient(case),
        work_pool=WorkPool.model_validate(pool),
        worker_name=case["worker_name"],
        worker_id=None,
        deployment=deployment,
    )


async def _create(case: Mapping[str, Any], config: KubernetesWorkerJobConfiguration) -> None:
    worker = KubernetesWorker(work_pool_name=case["work_pool"]["name"], name=case["worker_name"])
    await worker._create_job(config, client=None)
