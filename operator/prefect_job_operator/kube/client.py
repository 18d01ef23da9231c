"""One shared Kubernetes API client for the whole operator.

Raw JSON (``_preload_content=False``) is used on the hot paths: deserialising into the
generated V1Job models costs more CPU than the request itself.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

Json = dict[str, Any]


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP code (0 for transport errors)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """An infrastructure fault (retry later), not a fault of the request's content."""
        return classify_status(self.status) == "infrastructure"


Fault = Literal["infrastructure", "request"]

# 401: the operator's own credentials (rotated token), never a run's fault. 408/429/5xx and
# transport errors (0): the API server or its etcd is down, overloaded or restarting.
_INFRASTRUCTURE_STATUSES = frozenset({0, 401, 408, 429})


def classify_status(status: int) -> Fault:
    """Whose fault a failed Kubernetes call is, from its HTTP status.

    ``infrastructure``: the API server is unreachable, failing or throttling; retrying the
    same request later can succeed, so it must never crash a flow run. ``request``: the API
    server judged this request (400 bad manifest, 403 forbidden in that namespace, 404
    namespace gone, 409, 422 invalid): the request itself must change.
    """
    if status in _INFRASTRUCTURE_STATUSES or status >= 500:
        return "infrastructure"
    return "request"


class Availability:
    """Whether the Kubernetes API answered the operator's last call: the pools' claim gate.

    Any answer (even a 404) proves the API server and etcd work; a transport error, 5xx or
    429 opens an outage that the next answer closes.
    """

    def __init__(self) -> None:
        self.outage_since: float | None = None
        self.last_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outage_since is None

    def failed(self, error: KubeError) -> None:
        if self.outage_since is None:
            self.outage_since = time.monotonic()
        self.last_error = str(error)

    def answered(self) -> None:
        self.outage_since, self.last_error = None, None


def _any(body: Any) -> Any:
    """Plain dict bodies are serialised as-is; the generated stubs only know model types."""
    return body


def _error(exc: ApiException) -> KubeError:
    message = exc.reason or ""
    reason = exc.reason or ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or message
        reason = body.get("reason") or reason
    except (ValueError, TypeError):
        pass
    return KubeError(int(exc.status or 0), str(reason), str(message))


def _key_of(kind: str, obj: Json, where: str, key: str) -> Any:
    """``data[key]`` of a Secret or ConfigMap; a missing key is a 404 naming the object."""
    data = obj.get("data") or {}
    if key not in data:
        raise KubeError(404, "NotFound", f"{kind} {where} has no key {key!r}")
    return data[key]


async def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    cfg = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(configuration=cfg)


class Kube:
    """The Kubernetes calls the operator makes, as raw JSON dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.availability = Availability()
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.authorization = client.AuthorizationV1Api(api)

    async def close(self) -> None:
        await self.api.close()

    async def _json(self, coro: Any) -> Json:
        """Await a raw (``_preload_content=False``) call; non-2xx becomes KubeError.

        Every outcome feeds ``availability``, the gate that stops claiming during an outage.
        """
        try:
            data = await self._raw_json(coro)
        except KubeError as exc:
            if exc.transient:
                self.availability.failed(exc)
            else:
                self.availability.answered()
            raise
        self.availability.answered()
        return data

    async def _json_or_none(self, coro: Any) -> Json | None:
        """``_json``, with None for a 404 (the object does not exist)."""
        try:
            return await self._json(coro)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    async def _raw_json(coro: Any) -> Json:
        try:
            resp = await coro
            try:
                raw = await resp.read()
            finally:
                resp.release()
        except ApiException as exc:
            raise _error(exc) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, "Unreachable", f"Kubernetes API unreachable: {exc!r}") from None
        try:
            data: Json = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw.decode(errors="replace")}
        if not 200 <= resp.status <= 299:
            raise KubeError(resp.status, str(data.get("reason", "")), str(data.get("message", "")))
        return data

    # Jobs ------------------------------------------------------------------------------
    async def create_job(self, namespace: str, body: Mapping[str, Any]) -> Json:
        return await self._json(
            self.batch.create_namespaced_job(namespace, _any(body), _preload_content=False)
        )

    async def read_job(self, namespace: str, name: str) -> Json:
        return await self._json(
            self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        )

    async def delete_job(self, namespace: str, name: str, *, grace_seconds: int = 30) -> None:
        """Delete a Job and (in the background) its pods; a missing Job is not an error."""
        body = {"propagationPolicy": "Background", "gracePeriodSeconds": grace_seconds}
        try:
            await self._json(
                self.batch.delete_namespaced_job(
                    name, namespace, body=_any(body), _preload_content=False
                )
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def list_jobs(self, namespaces: Sequence[str] | None, label_selector: str) -> list[Json]:
        """All Jobs matching the selector, in the namespaces (None = cluster-wide), paged."""
        out: list[Json] = []
        for ns in namespaces if namespaces is not None else [None]:
            cont: str | None = None
            while True:
                kwargs: dict[str, Any] = {"label_selector": label_selector, "limit": 500}
                if cont:
                    kwargs["_continue"] = cont
                if ns is None:
                    page = await self._json(
                        self.batch.list_job_for_all_namespaces(_preload_content=False, **kwargs)
                    )
                else:
                    page = await self._json(
                        self.batch.list_namespaced_job(ns, _preload_content=False, **kwargs)
                    )
                out.extend(page.get("items") or [])
                cont = (page.get("metadata") or {}).get("continue")
                if not cont:
                    break
        return out

    async def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        page = await self._json(
            self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False
            )
        )
        return list(page.get("items") or [])

    async def list_job_events(self, namespace: str, job_name: str) -> list[Json]:
        """The Events about one Job (FailedCreate says why no pod exists)."""
        page = await self._json(
            self.core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name}",
                _preload_content=False,
            )
        )
        return list(page.get("items") or [])

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        try:
            text = await self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines
            )
        except ApiException as exc:
            raise _error(exc) from None
        return str(text)

    # Secrets / ConfigMaps --------------------------------------------------------------
    async def create_or_replace_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        try:
            await self._json(
                self.core.create_namespaced_secret(namespace, _any(body), _preload_content=False)
            )
        except KubeError as exc:
            if exc.status != 409:
                raise
            await self._json(
                self.core.replace_namespaced_secret(
                    name, namespace, _any(body), _preload_content=False
                )
            )

    async def own_secret(self, namespace: str, name: str, owner: Mapping[str, Any]) -> None:
        """Make a Secret garbage-collected with its Job (an ownerReference)."""
        meta = owner.get("metadata") or {}
        body = {
            "metadata": {
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta.get("name"),
                        "uid": meta.get("uid"),
                    }
                ]
            }
        }
        await self._json(
            self.core.patch_namespaced_secret(name, namespace, _any(body), _preload_content=False)
        )

    async def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret; one that is already gone is fine."""
        try:
            await self._json(
                self.core.delete_namespaced_secret(name, namespace, _preload_content=False)
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = await self._json(
            self.core.read_namespaced_secret(name, namespace, _preload_content=False)
        )
        return base64.b64decode(_key_of("Secret", secret, f"{namespace}/{name}", key)).decode()

    async def read_configmap_value(self, namespace: str, name: str, key: str) -> str:
        cm = await self._json(
            self.core.read_namespaced_config_map(name, namespace, _preload_content=False)
        )
        return str(_key_of("ConfigMap", cm, f"{namespace}/{name}", key))

    # Custom resources ------------------------------------------------------------------
    async def patch_status(
        self, group: str, version: str, plural: str, namespace: str, name: str, status: Json
    ) -> None:
        await self._json(
            self.custom.patch_namespaced_custom_object_status(
                group,
                version,
                namespace,
                plural,
                name,
                {"status": status},
                _preload_content=False,
                _content_type="application/merge-patch+json",  # runtime-supported, not in stubs
            )  # type: ignore[call-arg]
        )

    # Events ----------------------------------------------------------------------------
    async def create_event(self, namespace: str, body: Json) -> Json:
        """POST a core/v1 Event (409 when its name exists)."""
        return await self._json(
            self.core.create_namespaced_event(namespace, _any(body), _preload_content=False)
        )

    async def patch_event(self, namespace: str, name: str, patch: Json) -> Json:
        """Merge-patch a core/v1 Event (count, lastTimestamp, message, series)."""
        return await self._json(
            self.core.patch_namespaced_event(
                name,
                namespace,
                _any(patch),
                _preload_content=False,
                _content_type="application/merge-patch+json",  # runtime-supported, not in stubs
            )  # type: ignore[call-arg]
        )

    async def read_event(self, namespace: str, name: str) -> Json | None:
        return await self._json_or_none(
            self.core.read_namespaced_event(name, namespace, _preload_content=False)
        )

    # Authorization ---------------------------------------------------------------------
    async def subject_access_review(self, body: Mapping[str, Any]) -> bool:
        """Ask the API server whether the subject of `body` (a SubjectAccessReview) may act."""
        review = await self._json(
            self.authorization.create_subject_access_review(_any(body), _preload_content=False)
        )
        return bool((review.get("status") or {}).get("allowed"))

    # Leases ----------------------------------------------------------------------------
    async def read_lease(self, namespace: str, name: str) -> Json | None:
        return await self._json_or_none(
            self.coordination.read_namespaced_lease(name, namespace, _preload_content=False)
        )

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Json:
        return await self._json(
            self.coordination.create_namespaced_lease(namespace, _any(body), _preload_content=False)
        )

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Json:
        """Optimistic update: the body's resourceVersion makes a lost race a 409."""
        return await self._json(
            self.coordination.replace_namespaced_lease(
                name, namespace, _any(body), _preload_content=False
            )
        )
