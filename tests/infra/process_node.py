"""The process node: a tiny kubelet that runs a pod's containers as local processes.

Test infrastructure only. kwok fakes pod outcomes; this node really runs
``command + args`` (the image is ignored, ``args`` alone is the argv when
``command`` is empty, as Prefect's job template does), so a flow run can
execute end to end without a container runtime. The node is tainted
``pjo.test/process-node=true:NoSchedule`` so nothing lands here by chance;
pods choose it with ``nodeSelector: {pjo.test/process-node: "true"}`` plus a
toleration for that key (``cluster.PROCESS_NODE_PLACEMENT``), or ``nodeName``.

What it does, kubelet-like:

- registers Node ``--node`` (label ``pjo.test/process-node=true``, no kwok
  annotation so kwok leaves it alone), keeps it Ready (status + Lease);
- env: ``value`` (with ``$(VAR)`` expansion), ``valueFrom`` secretKeyRef /
  configMapKeyRef / fieldRef, ``envFrom``; a missing non-optional reference
  leaves the container Waiting with reason CreateContainerConfigError and is
  retried, as the kubelet does;
- base env is only PATH (``--pod-path``), HOME, LANG and HOSTNAME: like a
  container, a pod does not inherit this process's environment;
- cwd: ``workingDir`` if it exists here, else ``--pod-cwd``;
- reports Running (podIP 127.0.0.1), then Succeeded/Failed with each real
  exit code in ``containerStatuses[].state.terminated`` (128+N for signal N;
  exit 128 reason StartError when the command cannot be executed);
  ``restartPolicy: OnFailure`` restarts a failed container;
- writes output to ``<logs-dir>/<ns>_<pod>_<container>.log`` and serves it
  to ``kubectl logs`` (HTTPS ``/containerLogs``, like a kubelet);
- on deletion: SIGTERM to the process group, SIGKILL after the grace period
  (at most 10 s), then deletes the pod with grace 0.

Run: ``python -m tests.infra.process_node --kubeconfig K --node N --workdir D``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

log = logging.getLogger("process-node")
NODE_LABEL = "pjo.test/process-node"
LEASE_SECONDS = 40
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")

JsonDict = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown refs stay as written, ``$$`` is ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


class ConfigError(Exception):
    """A container's env cannot be built yet (kubelet: CreateContainerConfigError)."""


class Api:
    """Just enough of the Kubernetes API, over httpx with the kubeconfig's client cert."""

    def __init__(self, kubeconfig: Path, tls_dir: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        tls_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for key, name in (
            ("certificate-authority-data", "ca.crt"),
            ("client-certificate-data", "client.crt"),
            ("client-key-data", "client.key"),
        ):
            src = cluster if key.startswith("certificate-authority") else user
            path = tls_dir / name
            path.write_bytes(base64.b64decode(src[key]))
            path.chmod(0o600)
            files[name] = path
        ctx = ssl.create_default_context(cafile=str(files["ca.crt"]))
        ctx.load_cert_chain(files["client.crt"], files["client.key"])
        self.client = httpx.AsyncClient(
            base_url=cluster["server"], verify=ctx, timeout=httpx.Timeout(30.0)
        )

    async def get(self, path: str, **params: Any) -> JsonDict | None:
        resp = await self.client.get(path, params=params)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        result: JsonDict = resp.json()
        return result

    async def create(self, path: str, body: JsonDict) -> None:
        resp = await self.client.post(path, json=body)
        if resp.status_code != 409:
            resp.raise_for_status()

    async def merge_patch(self, path: str, body: JsonDict) -> bool:
        resp = await self.client.patch(
            path,
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if resp.status_code in (404, 409):
            return False
        resp.raise_for_status()
        return True

    async def delete(self, path: str, body: JsonDict) -> None:
        resp = await self.client.request("DELETE", path, json=body)
        if resp.status_code not in (404, 409):
            resp.raise_for_status()

    async def watch(self, path: str, **params: Any) -> AsyncIterator[JsonDict]:
        """List then watch; yields ADDED/MODIFIED/DELETED events forever."""
        while True:
            listing = await self.get(path, **params)
            assert listing is not None
            for item in listing["items"]:
                yield {"type": "ADDED", "object": item}
            rv = listing["metadata"]["resourceVersion"]
            try:
                while True:
                    query = {
                        **params,
                        "watch": "1",
                        "resourceVersion": rv,
                        "allowWatchBookmarks": "true",
                        "timeoutSeconds": "300",
                    }
                    timeout = httpx.Timeout(30.0, read=None)
                    async with self.client.stream("GET", path, params=query, timeout=timeout) as r:
                        r.raise_for_status()
                        async for line in r.aiter_lines():
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            if event["type"] == "ERROR":
                                raise RuntimeError(event["object"].get("message", "watch error"))
                            rv = event["object"]["metadata"]["resourceVersion"]
                            if event["type"] != "BOOKMARK":
                                yield event
            except (httpx.HTTPError, RuntimeError) as exc:
                log.info("watch restarts after %r", exc)
                await asyncio.sleep(0.5)


class ProcessNode:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.node
        self.workdir = Path(args.workdir)
        self.logs_dir = Path(args.logs_dir or self.workdir / "logs")
        self.pids_dir = Path(args.pids_dir or self.workdir / "pids")
        self.pod_cwd = Path(args.pod_cwd or os.getcwd())
        self.pod_path: str = args.pod_path or os.environ.get("PATH", "/usr/bin:/bin")
        self.port: int = args.port
        self.tls = (args.tls_cert, args.tls_key)
        self.api = Api(Path(args.kubeconfig), self.workdir / "tls")
        self.pods: dict[str, PodRunner] = {}
        for d in (self.workdir, self.logs_dir, self.pids_dir):
            d.mkdir(parents=True, exist_ok=True)

    # -- node ----------------------------------------------------------------------

    async def register(self) -> None:
        labels = {
            NODE_LABEL: "true",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        await self.api.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": labels},
                # Only pods that ask for it run here; the rest stay on kwok nodes.
                "spec": {"taints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]},
            },
        )
        await self.report_node_status()
        await self.api.create(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": self.name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": micro_now(),
                },
            },
        )

    async def report_node_status(self) -> None:
        ts = now()

        def cond(kind: str, status: str, reason: str) -> JsonDict:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": reason,
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }

        resources = {"cpu": "32", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": "process-node",
                "systemUUID": "process-node",
                "bootID": "process-node",
                "kernelVersion": os.uname().release,
                "osImage": "local processes",
                "containerRuntimeVersion": "process://0.1",
                "kubeletVersion": "v1.36.3",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        await self.api.merge_patch(f"/api/v1/nodes/{self.name}/status", {"status": status})

    async def heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(10)
            beats += 1
            try:
                await self.api.merge_patch(
                    f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}",
                    {"spec": {"renewTime": micro_now(), "holderIdentity": self.name}},
                )
                if beats % 6 == 0:
                    await self.report_node_status()
            except Exception as exc:
                log.warning("heartbeat failed: %r", exc)

    # -- pods ----------------------------------------------------------------------

    async def sync_pods(self) -> None:
        while True:  # never let one bad event stop the node
            try:
                await self._sync_pods()
            except Exception:
                log.exception("pod sync failed; restarting")
                await asyncio.sleep(1)

    async def _sync_pods(self) -> None:
        async for event in self.api.watch(
            "/api/v1/pods", fieldSelector=f"spec.nodeName={self.name}"
        ):
            pod = event["object"]
            uid = pod["metadata"]["uid"]
            runner = self.pods.get(uid)
            if event["type"] == "DELETED":
                if runner:
                    runner.gone()
                    self.pods.pop(uid, None)
                continue
            if runner is None:
                runner = self.pods[uid] = PodRunner(self, pod)
                runner.task = asyncio.create_task(runner.run())
            else:
                runner.update(pod)

    # -- kubelet API: kubectl logs ---------------------------------------------------

    def log_path(self, ns: str, pod: str, container: str) -> Path:
        return self.logs_dir / f"{ns}_{pod}_{container}.log"

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        path = self.log_path(ns, pod, container)
        if not path.exists():
            raise web.HTTPNotFound(text=f"no logs for {ns}/{pod}/{container}\n")
        data = path.read_bytes()
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
        limit = request.query.get("limitBytes")
        if limit is not None:
            data = data[: int(limit)]
        follow = request.query.get("follow") in ("true", "1")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        if follow:
            offset = path.stat().st_size
            while self.is_running(ns, pod, container):
                await asyncio.sleep(0.2)
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                if chunk:
                    offset += len(chunk)
                    await resp.write(chunk)
            with path.open("rb") as fh:
                fh.seek(offset)
                await resp.write(fh.read())
        await resp.write_eof()
        return resp

    def is_running(self, ns: str, pod: str, container: str) -> bool:
        for runner in self.pods.values():
            if runner.key == (ns, pod):
                return container in runner.procs and runner.procs[container].returncode is None
        return False

    async def serve(self) -> None:
        if not self.port:
            return
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = None
        if self.tls[0]:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=ctx).start()

    async def main(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.serve()
        await self.register()
        log.info("node %s registered", self.name)
        tasks = [asyncio.create_task(self.heartbeat()), asyncio.create_task(self.sync_pods())]
        await stop.wait()
        log.info("stopping: killing %d pods", len(self.pods))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*(r.kill(3.0) for r in self.pods.values()), return_exceptions=True)


class PodRunner:
    """Owns one pod: builds env, runs its containers, reports status, honours deletion."""

    def __init__(self, node: ProcessNode, pod: JsonDict) -> None:
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.key = (meta["namespace"], meta["name"])
        self.uid: str = meta["uid"]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.statuses: dict[str, JsonDict] = {}
        self.started_at = now()
        self.deleting = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.key[0]}/pods/{self.key[1]}"

    def update(self, pod: JsonDict) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def gone(self) -> None:
        """Force-deleted: no grace left, kill at once."""
        self.deleting.set()
        for p in self.procs.values():
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)

    async def run(self) -> None:
        watcher = asyncio.create_task(self.watch_deletion())
        try:
            await self._run()
        except Exception:
            log.exception("pod %s/%s", *self.key)
        finally:
            watcher.cancel()

    async def _run(self) -> None:
        spec = self.pod["spec"]
        phase = self.pod.get("status", {}).get("phase", "Pending")
        if phase in ("Succeeded", "Failed"):
            await self.wait_and_remove()
            return
        if phase == "Running":  # started by an earlier process node: its processes are gone
            lost = _terminated(137, "ContainerStatusUnknown")
            await self.finish({c["name"]: lost for c in spec["containers"]})
            await self.wait_and_remove()
            return
        if self.pod["metadata"].get("deletionTimestamp"):
            await self.remove()
            return
        envs = await self.build_envs()
        if envs is None:  # deleted while waiting for its config
            await self.remove()
            return
        for c in spec.get("initContainers", []):
            code = await self.run_container(c, envs[c["name"]], init=True)
            if code != 0 or self.deleting.is_set():
                blocked = _waiting("PodInitializing")
                await self.finish({x["name"]: blocked for x in spec["containers"]})
                await self.wait_and_remove()
                return
        results = await asyncio.gather(
            *(self.run_container(c, envs[c["name"]]) for c in spec["containers"])
        )
        log.info("pod %s/%s exited %s", *self.key, results)
        await self.finish(self.statuses)
        await self.wait_and_remove()

    async def build_envs(self) -> dict[str, dict[str, str]] | None:
        containers = self.pod["spec"].get("initContainers", []) + self.pod["spec"]["containers"]
        while True:
            try:
                return {c["name"]: await self.container_env(c) for c in containers}
            except ConfigError as exc:
                waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
                await self.patch_status(
                    "Pending",
                    {c["name"]: {"waiting": waiting} for c in self.pod["spec"]["containers"]},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.deleting.wait(), 1.0)
                if self.deleting.is_set():
                    return None

    async def container_env(self, container: JsonDict) -> dict[str, str]:
        name = self.key[1]
        env = {
            "PATH": self.node.pod_path,
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "HOSTNAME": name,
        }
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            for kind, ref_key in (("secrets", "secretRef"), ("configmaps", "configMapRef")):
                ref = source.get(ref_key)
                if ref is not None:
                    data = await self.read_data(kind, ref["name"], ref.get("optional", False))
                    env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in container.get("env", []):
            if "valueFrom" not in var:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            value = await self.value_from(var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        return env

    async def value_from(self, source: JsonDict) -> str | None:
        for kind, ref_key in (("secrets", "secretKeyRef"), ("configmaps", "configMapKeyRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            optional = ref.get("optional", False)
            data = await self.read_data(kind, ref["name"], optional)
            if data is None:
                return None
            if ref["key"] not in data:
                if optional:
                    return None
                label = "Secret" if kind == "secrets" else "ConfigMap"
                where = f"{label} {self.key[0]}/{ref['name']}"
                raise ConfigError(f"couldn't find key {ref['key']} in {where}")
            return data[ref["key"]]
        field = source.get("fieldRef", {}).get("fieldPath")
        if field:
            return self.field_value(field)
        return None

    def field_value(self, field: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if field in simple:
            return str(simple[field])
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field)
        if m:
            return str(meta.get(m.group(1), {}).get(m.group(2), ""))
        return ""

    async def read_data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = await self.node.api.get(f"/api/v1/namespaces/{self.key[0]}/{kind}/{name}")
        if obj is None:
            if optional:
                return None
            label = "secret" if kind == "secrets" else "configmap"
            raise ConfigError(f'{label} "{name}" not found')
        if kind == "secrets":
            return {
                k: base64.b64decode(v).decode(errors="replace")
                for k, v in (obj.get("data") or {}).items()
            }
        return dict(obj.get("data") or {})

    async def run_container(self, c: JsonDict, env: dict[str, str], init: bool = False) -> int:
        name = c["name"]
        argv = [expand(a, env) for a in c.get("command", []) + c.get("args", [])]
        workdir = Path(c["workingDir"]) if c.get("workingDir") else self.node.pod_cwd
        if not workdir.is_dir():
            workdir = self.node.pod_cwd
        log_path = self.node.log_path(*self.key, name)
        restart_on_failure = self.pod["spec"].get("restartPolicy") == "OnFailure"
        restarts = 0
        while True:
            started = now()
            if not argv:
                code, state = 128, _terminated(128, "StartError", "no command specified", started)
            else:
                try:
                    code = await self._exec(
                        name, argv, env, workdir, log_path, init, restarts, started
                    )
                    reason = "Completed" if code == 0 else "Error"
                    state = _terminated(code, reason, None, started)
                except OSError as exc:
                    msg = f"cannot start {argv[0]!r}: {exc}"
                    with log_path.open("a") as out:
                        out.write(f"process-node: {msg}\n")
                    code, state = 128, _terminated(128, "StartError", msg, started)
            self.statuses[name] = {**state, "restartCount": restarts}
            if code == 0 or not restart_on_failure or self.deleting.is_set() or init:
                return code
            restarts += 1
            await self.patch_running(restarts)
            await asyncio.sleep(min(10.0, 0.5 * 2**restarts))

    async def _exec(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        log_path: Path,
        init: bool,
        restarts: int,
        started: str,
    ) -> int:
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        pid_file = self.node.pids_dir / f"pod-{self.uid}-{name}.pid"
        pid_file.write_text(str(proc.pid))
        self.procs[name] = proc
        running = {"running": {"startedAt": started}}
        self.statuses[name] = {"state": running, "restartCount": restarts}
        if not init and all(c["name"] in self.procs for c in self.pod["spec"]["containers"]):
            await self.patch_running(restarts)
        code = await proc.wait()
        pid_file.unlink(missing_ok=True)
        return code if code >= 0 else 128 - code

    async def patch_running(self, restarts: int) -> None:
        states = {n: s["state"] for n, s in self.statuses.items()}
        await self.patch_status("Running", states, restarts)

    async def finish(self, statuses: dict[str, JsonDict]) -> None:
        states = {n: s.get("state", s) for n, s in statuses.items()}
        codes = [s.get("terminated", {}).get("exitCode", 1) for s in states.values()]
        phase = "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
        await self.patch_status(phase, states)

    async def patch_status(
        self, phase: str, states: dict[str, JsonDict], restarts: int = 0
    ) -> None:
        ts = now()
        running = phase == "Running"
        ready = "True" if running else "False"
        reason = {"Succeeded": "PodCompleted", "Failed": "PodFailed"}.get(phase)
        old = self.pod.get("status", {}).get("conditions", [])
        conditions = [c for c in old if c["type"] == "PodScheduled"]
        for kind, value in (
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", ready),
            ("ContainersReady", ready),
        ):
            cond: JsonDict = {"type": kind, "status": value, "lastTransitionTime": ts}
            if reason and value == "False":
                cond["reason"] = reason
            conditions.append(cond)
        container_statuses = []
        for c in self.pod["spec"]["containers"]:
            state = states.get(c["name"], {"waiting": {"reason": "ContainerCreating"}})
            container_statuses.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"process://{self.uid}/{c['name']}",
                    "ready": running and "running" in state,
                    "started": "running" in state,
                    "restartCount": self.statuses.get(c["name"], {}).get("restartCount", restarts),
                    "state": state,
                }
            )
        status: JsonDict = {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": container_statuses,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started_at,
        }
        try:
            await self.node.api.merge_patch(self.path + "/status", {"status": status})
        except httpx.HTTPError as exc:
            log.warning("status patch of %s/%s failed: %r", *self.key, exc)

    async def wait_and_remove(self) -> None:
        """A finished pod stays until someone deletes it; then remove it for good."""
        await self.deleting.wait()
        await self.remove()

    async def remove(self) -> None:
        await self.node.api.delete(
            self.path, {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        )

    async def kill(self, grace: float) -> None:
        procs = [p for p in self.procs.values() if p.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        if procs and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)

    async def watch_deletion(self) -> None:
        await self.deleting.wait()
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds") or 30
        await self.kill(min(float(grace), 10.0))


def _terminated(
    code: int, reason: str, message: str | None = None, started: str | None = None
) -> JsonDict:
    term: JsonDict = {
        "exitCode": code,
        "reason": reason,
        "startedAt": started or now(),
        "finishedAt": now(),
    }
    if message:
        term["message"] = message
    return {"state": {"terminated": term}}


def _waiting(reason: str) -> JsonDict:
    return {"state": {"waiting": {"reason": reason}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="process-node")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--logs-dir")
    parser.add_argument("--pids-dir")
    parser.add_argument("--pod-cwd")
    parser.add_argument("--pod-path")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(ProcessNode(args).main())


if __name__ == "__main__":
    main()
