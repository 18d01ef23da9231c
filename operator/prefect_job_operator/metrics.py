"""Prometheus metrics in the text exposition format, without a client library.

A handful of counters, gauges and histograms keyed by label tuples is all the operator
needs; keeping it here avoids another runtime dependency.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class _Scalar:
    """One float per label set; Counter and Gauge differ only in how it changes."""

    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    values: dict[LabelValues, float] = field(default_factory=dict)
    kind = "untyped"

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labelnames, labels)} {value}"


@dataclass
class Counter(_Scalar):
    kind = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


@dataclass
class Gauge(_Scalar):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def remove(self, *labels: str) -> None:
        self.values.pop(labels, None)


@dataclass
class Histogram:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    series: dict[LabelValues, list[float]] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
        counts[bisect.bisect_left(self.buckets, value)] += 1  # per-bucket, cumulated on render
        counts[-1] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, counts, strict=False):
                running += count
                le = f'le="{bound}"'
                yield f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}"
            total = running + counts[len(self.buckets)]
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.labelnames, labels, inf)} {total}"
            yield f"{self.name}_count{_labels(self.labelnames, labels)} {total}"
            yield f"{self.name}_sum{_labels(self.labelnames, labels)} {counts[-1]}"


class Metrics:
    """The operator's metrics; one instance per process."""

    def __init__(self) -> None:
        p = "prefect_job_operator"
        self.runs_dispatched = Counter(
            f"{p}_runs_dispatched_total", "Flow runs whose Job was created.", ("pool",)
        )
        self.runs_claim_lost = Counter(
            f"{p}_runs_claim_lost_total",
            "Pending proposals not accepted (another worker, concurrency limit).",
            ("pool", "reason"),
        )
        self.runs_crashed = Counter(
            f"{p}_runs_crashed_total", "Flow runs this operator marked Crashed.", ("pool", "reason")
        )
        self.runs_cancelled = Counter(
            f"{p}_runs_cancelled_total", "Flow runs this operator marked Cancelled.", ("pool",)
        )
        self.submission_failures = Counter(
            f"{p}_submission_failures_total", "Submissions that failed.", ("pool", "stage")
        )
        self.dispatch_latency = Histogram(
            f"{p}_dispatch_latency_seconds",
            "From the run's scheduled start time to the creation of its Job.",
            ("pool",),
        )
        self.submit_duration = Histogram(
            f"{p}_submit_duration_seconds", "Claim → Job created → pid recorded.", ("pool",)
        )
        self.poll_duration = Histogram(
            f"{p}_poll_duration_seconds", "Duration of get_scheduled_flow_runs.", ("pool",)
        )
        self.api_requests = Counter(
            f"{p}_prefect_api_requests_total", "Prefect API requests.", ("route", "status")
        )
        self.api_latency = Histogram(
            f"{p}_prefect_api_request_seconds", "Prefect API request latency.", ("route",)
        )
        self.api_errors = Counter(
            f"{p}_prefect_api_errors_total", "Prefect API errors after retries.", ("pool", "kind")
        )
        self.runs_by_state = Gauge(
            f"{p}_runs", "Flow runs of the pool on Kubernetes, by phase.", ("pool", "phase")
        )
        self.pool_ready = Gauge(f"{p}_pool_ready", "1 when the pool is Ready.", ("pool",))
        self.last_poll = Gauge(
            f"{p}_last_poll_timestamp_seconds", "Unix time of the last successful poll.", ("pool",)
        )
        self.leader = Gauge(
            f"{p}_pool_leader", "1 when this replica holds the pool's Lease.", ("pool",)
        )
        self.extra: list[Callable[[], Iterable[str]]] = []

    def on_api_request(self, method: str, route: str, status: int | None, seconds: float) -> None:
        """Hook handed to the Prefect client."""
        key = f"{method} {route}"
        self.api_requests.inc(key, str(status) if status is not None else "error")
        self.api_latency.observe(seconds, key)

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.runs_dispatched,
            self.runs_claim_lost,
            self.runs_crashed,
            self.runs_cancelled,
            self.submission_failures,
            self.dispatch_latency,
            self.submit_duration,
            self.poll_duration,
            self.api_requests,
            self.api_latency,
            self.api_errors,
            self.runs_by_state,
            self.pool_ready,
            self.last_poll,
            self.leader,
        ):
            lines.extend(metric.render())
        for extra in self.extra:
            lines.extend(extra())
        return "\n".join(lines) + "\n"
