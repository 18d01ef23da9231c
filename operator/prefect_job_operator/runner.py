"""Start the operator: settings, the shared Kubernetes client, /healthz + /metrics, kopf."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.settings_help import load_settings


def run_operator(*, namespaces: Sequence[str] | None, verbose: bool) -> int:
    """Blocking entry point of `prefect-job-operator run`; SettingsInvalid on a bad setting."""
    settings = load_settings()
    watch = list(namespaces or settings.namespaces)
    # The namespace rule (api.job_namespaces) must know what is really watched.
    settings = settings.model_copy(update={"namespaces": watch})
    _configure_logging(settings.log_format, verbose)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings, watch))
    return 0


def _configure_logging(fmt: str, verbose: bool) -> None:
    import kopf

    kopf.configure(
        debug=verbose,
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if fmt == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("prefect_job_operator").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _main(settings: OperatorSettings, namespaces: list[str]) -> None:
    import kopf

    from prefect_job_operator import handlers
    from prefect_job_operator.health import start_server
    from prefect_job_operator.kube.client import Kube, load_api_client
    from prefect_job_operator.kube.events import EventSink
    from prefect_job_operator.metrics import Metrics
    from prefect_job_operator.registry import OperatorContext

    kube = Kube(await load_api_client())
    ctx = OperatorContext(
        settings=settings,
        kube=kube,
        metrics=Metrics(),
        events=EventSink(kube, "prefect-job-operator"),
    )
    watchdog = asyncio.create_task(ctx.watchdog())
    health = await start_server(ctx, settings.health_host, settings.health_port)
    kopf_settings = kopf.OperatorSettings()
    handlers.configure(kopf_settings, settings.instance, settings.workpool_selector)
    # Exact namespace names need no cluster-wide Namespace/CRD watches (kopf's "scanning"),
    # which namespaced RBAC does not grant: without this kopf retries 403s in a loop.
    kopf_settings.scanning.disabled = bool(namespaces)
    if settings.webhook_port is not None:
        if not settings.webhook_cert_dir:
            raise SystemExit("PJO_WEBHOOK_PORT is set but PJO_WEBHOOK_CERT_DIR is not")
        handlers.enable_admission(
            kopf_settings,
            host=settings.webhook_host,
            port=settings.webhook_port,
            cert_dir=settings.webhook_cert_dir,
        )
    try:
        await kopf.operator(
            settings=kopf_settings,
            memo=ctx,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
        )
    finally:
        watchdog.cancel()
        await health.cleanup()
        await kube.close()
