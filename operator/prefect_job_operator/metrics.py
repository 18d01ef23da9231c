"""The operator's Prometheus metrics, on prometheus-client (process and GC metrics included).

Per-pool series carry two labels, ``namespace`` and ``workpool`` (the WorkPool CR), and are
removed when the WorkPool goes away (`Metrics.forget_pool`), so a deleted pool leaves no
stale series behind. Each `Metrics` has its own registry (tests build many).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as _PromCounter
from prometheus_client import Gauge as _PromGauge
from prometheus_client import Histogram as _PromHistogram

# ``*_created`` series double the exposition and no dashboard of ours reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LabelValues = tuple[str, ...]
POOL_LABELS: tuple[str, ...] = ("namespace", "workpool")
"""The labels of every per-pool series: the WorkPool CR's namespace and name."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _Family:
    """A labelled metric that remembers its label sets, so a pool's series can be removed."""

    def __init__(
        self, registry: CollectorRegistry, metric: _PromCounter | _PromGauge | _PromHistogram
    ) -> None:
        self._registry = registry
        self._metric = metric
        self.labelnames: tuple[str, ...] = tuple(metric._labelnames)
        self.values_seen: set[LabelValues] = set()

    def _child(self, labels: LabelValues):  # type: ignore[no-untyped-def]
        self.values_seen.add(labels)
        return self._metric.labels(*labels) if labels else self._metric

    name: str

    def value(self, *labels: str) -> float | None:
        """A counter's or gauge's current value, None if the series does not exist."""
        return self._registry.get_sample_value(
            self.name, dict(zip(self.labelnames, labels, strict=True))
        )

    def total(self, *prefix: str) -> float:
        """The sum over every series whose first label values are `prefix`."""
        return sum(
            self.value(*labels) or 0.0
            for labels in self.values_seen
            if labels[: len(prefix)] == prefix
        )

    def remove(self, *labels: str) -> None:
        if labels in self.values_seen:
            self.values_seen.discard(labels)
            self._metric.remove(*labels)

    def remove_matching(self, prefix: LabelValues) -> int:
        """Remove every series whose first label values are `prefix`; how many went."""
        gone = [lv for lv in self.values_seen if lv[: len(prefix)] == prefix]
        for labels in gone:
            self.remove(*labels)
        return len(gone)


class Counter(_Family):
    def __init__(self, registry: CollectorRegistry, name: str, doc: str, labels: Iterable[str]):
        super().__init__(registry, _PromCounter(name, doc, tuple(labels), registry=registry))
        self.name = name

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._child(labels).inc(amount)


class Gauge(_Family):
    def __init__(self, registry: CollectorRegistry, name: str, doc: str, labels: Iterable[str]):
        super().__init__(registry, _PromGauge(name, doc, tuple(labels), registry=registry))
        self.name = name

    def set(self, value: float, *labels: str) -> None:
        self._child(labels).set(value)


class Histogram(_Family):
    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        doc: str,
        labels: Iterable[str],
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(
            registry, _PromHistogram(name, doc, tuple(labels), registry=registry, buckets=buckets)
        )
        self.name = name

    def observe(self, value: float, *labels: str) -> None:
        self._child(labels).observe(value)


PREFIX = "prefect_job_operator"


class Metrics:
    """The operator's metrics; one instance per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._per_pool: list[_Family] = []
        """Every family labelled by pool: what `forget_pool` clears."""
        self._run_metrics()
        self._dispatch_metrics()
        self._api_metrics()
        self._pool_metrics()

    def _counter(self, name: str, doc: str, *extra: str) -> Counter:
        """A per-pool counter ``prefect_job_operator_<name>`` labelled by pool + ``extra``."""
        family = Counter(self.registry, f"{PREFIX}_{name}", doc, (*POOL_LABELS, *extra))
        self._per_pool.append(family)
        return family

    def _gauge(self, name: str, doc: str, *extra: str) -> Gauge:
        family = Gauge(self.registry, f"{PREFIX}_{name}", doc, (*POOL_LABELS, *extra))
        self._per_pool.append(family)
        return family

    def _histogram(self, name: str, doc: str) -> Histogram:
        family = Histogram(self.registry, f"{PREFIX}_{name}", doc, POOL_LABELS)
        self._per_pool.append(family)
        return family

    def _run_metrics(self) -> None:
        self.runs_dispatched = self._counter(
            "runs_dispatched_total", "Flow runs whose Job was created."
        )
        self.runs_claim_lost = self._counter(
            "runs_claim_lost_total",
            "Pending proposals not accepted (another worker, concurrency limit).",
            "reason",
        )
        self.runs_crashed = self._counter(
            "runs_crashed_total", "Flow runs this operator marked Crashed.", "reason"
        )
        self.runs_cancelled = self._counter(
            "runs_cancelled_total", "Flow runs this operator marked Cancelled."
        )
        self.runs_by_state = self._gauge(
            "runs", "Flow runs of the pool on Kubernetes, by phase.", "phase"
        )

    def _dispatch_metrics(self) -> None:
        self.submission_failures = self._counter(
            "submission_failures_total", "Submissions that failed.", "stage"
        )
        self.dispatch_latency = self._histogram(
            "dispatch_latency_seconds",
            "From the run's scheduled start time to the creation of its Job.",
        )
        self.submit_duration = self._histogram(
            "submit_duration_seconds", "Claim → Job created → pid recorded."
        )
        self.poll_duration = self._histogram(
            "poll_duration_seconds", "Duration of get_scheduled_flow_runs."
        )

    def _api_metrics(self) -> None:
        r = self.registry
        self.api_requests = Counter(
            r, f"{PREFIX}_prefect_api_requests_total", "Prefect API requests.", ("route", "status")
        )
        self.api_latency = Histogram(
            r, f"{PREFIX}_prefect_api_request_seconds", "Prefect API request latency.", ("route",)
        )
        self.api_errors = self._counter(
            "prefect_api_errors_total", "Prefect API errors after retries.", "kind"
        )
        self.api_up = self._gauge(
            "prefect_api_up",
            "1 when the pool's last Prefect API call succeeded, 0 while its API is unreachable.",
        )

    def _pool_metrics(self) -> None:
        self.pool_ready = self._gauge("pool_ready", "1 when the pool is Ready.")
        self.last_poll = self._gauge(
            "last_poll_timestamp_seconds", "Unix time of the last successful poll."
        )
        self.leader = self._gauge("pool_leader", "1 when this replica holds the pool's Lease.")
        self.tracked_runs = self._gauge(
            "tracked_runs", "Runs in the pool's run table (Jobs and pods it still follows)."
        )
        # A soak's leak check: tasks must not grow once runs finish (read at each scrape).
        _PromGauge(
            f"{PREFIX}_asyncio_tasks", "asyncio tasks of the operator.", registry=self.registry
        ).set_function(_asyncio_tasks)

    def on_api_request(self, method: str, route: str, status: int | None, seconds: float) -> None:
        """Hook handed to the Prefect client."""
        key = f"{method} {route}"
        self.api_requests.inc(key, str(status) if status is not None else "error")
        self.api_latency.observe(seconds, key)

    def forget_pool(self, namespace: str, name: str) -> int:
        """Remove every series of a WorkPool (it was deleted); how many went."""
        return sum(family.remove_matching((namespace, name)) for family in self._per_pool)

    def render(self) -> str:
        """The text exposition format."""
        return generate_latest(self.registry).decode()


def _asyncio_tasks() -> float:
    """Tasks of the running event loop (the metrics endpoint is served on it); 0 outside one."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return 0.0
