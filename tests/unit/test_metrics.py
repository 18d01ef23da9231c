"""Metrics on prometheus-client: names kept, namespace/workpool labels, a deleted pool's series
removed, process and GC metrics present; checked with prometheus_client's own parser."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from prefect_job_operator.metrics import LATENCY_BUCKETS, Metrics

P = "prefect_job_operator"

# The families dashboards and bench/ read; renaming one is an upgrade note.
FAMILIES = {
    f"{P}_runs_dispatched": "counter",
    f"{P}_runs_claim_lost": "counter",
    f"{P}_runs_crashed": "counter",
    f"{P}_runs_cancelled": "counter",
    f"{P}_submission_failures": "counter",
    f"{P}_dispatch_latency_seconds": "histogram",
    f"{P}_submit_duration_seconds": "histogram",
    f"{P}_poll_duration_seconds": "histogram",
    f"{P}_prefect_api_requests": "counter",
    f"{P}_prefect_api_request_seconds": "histogram",
    f"{P}_prefect_api_errors": "counter",
    f"{P}_prefect_api_up": "gauge",
    f"{P}_runs": "gauge",
    f"{P}_pool_ready": "gauge",
    f"{P}_last_poll_timestamp_seconds": "gauge",
    f"{P}_pool_leader": "gauge",
    f"{P}_tracked_runs": "gauge",
    f"{P}_asyncio_tasks": "gauge",
}


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def exercised() -> Metrics:
    m = Metrics()
    for ns, name in (("team-a", "etl"), ("team-b", "etl")):
        m.runs_dispatched.inc(ns, name)
        m.runs_claim_lost.inc(ns, name, "Waiting")
        m.runs_crashed.inc(ns, name, "JobFailed")
        m.runs_cancelled.inc(ns, name)
        m.submission_failures.inc(ns, name, "create_job")
        m.dispatch_latency.observe(0.42, ns, name)
        m.submit_duration.observe(0.1, ns, name)
        m.poll_duration.observe(0.01, ns, name)
        m.api_errors.inc(ns, name, "APIUnreachable")
        m.api_up.set(1.0, ns, name)
        m.runs_by_state.set(3, ns, name, "pending")
        m.pool_ready.set(1.0, ns, name)
        m.last_poll.set(1.7e9, ns, name)
        m.leader.set(1.0, ns, name)
    m.on_api_request("POST", "/flow_runs/{id}/set_state", 201, 0.012)
    m.on_api_request("GET", "/work_pools/{name}", None, 5.0)
    return m


def test_names_and_types_are_kept_and_the_exposition_parses() -> None:
    text = exercised().render()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert families.get(name) == kind, name
    assert f"{P}_runs_dispatched_total{{" in text  # counters keep their _total samples
    assert f"{P}_runs_dispatched_created" not in text
    assert (
        f"{P}_prefect_api_requests_total",
        {"route": "GET /work_pools/{name}", "status": "error"},
        1.0,
    ) in samples(text)


def test_process_and_gc_metrics_come_for_free() -> None:
    names = {f.name for f in text_string_to_metric_families(Metrics().render())}
    assert {"process_resident_memory_bytes", "python_gc_objects_collected", "python_info"} <= (
        names
    )


def test_pool_series_have_namespace_and_workpool_labels() -> None:
    for name, labels, _ in samples(exercised().render()):
        if name.startswith(P) and "route" not in labels and name != f"{P}_asyncio_tasks":
            assert labels["namespace"] in ("team-a", "team-b"), (name, labels)
            assert labels["workpool"] == "etl", (name, labels)
            assert "pool" not in labels and "key" not in labels


def test_histogram_buckets_are_the_latency_buckets() -> None:
    m = Metrics()
    m.dispatch_latency.observe(0.005, "ns", "wp")
    m.dispatch_latency.observe(61.0, "ns", "wp")
    buckets = {
        labels["le"]: value
        for name, labels, value in samples(m.render())
        if name == f"{P}_dispatch_latency_seconds_bucket"
    }
    assert list(buckets) == [*(str(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
    assert buckets["0.005"] == 1.0 and buckets["60.0"] == 1.0 and buckets["+Inf"] == 2.0


def test_forget_pool_removes_every_series_of_that_workpool_only() -> None:
    m = exercised()
    gone = m.forget_pool("team-a", "etl")
    assert gone == 14
    left = [
        (name, labels)
        for name, labels, _ in samples(m.render())
        if name.startswith(P) and "namespace" in labels
    ]
    assert left and all(labels["namespace"] == "team-b" for _, labels in left)
    assert m.forget_pool("team-a", "etl") == 0
    m.pool_ready.set(0.0, "team-a", "etl")  # a pool of the same name created again
    assert m.pool_ready.value("team-a", "etl") == 0.0


def test_gauge_value_reads_back() -> None:
    m = Metrics()
    assert m.pool_ready.value("ns", "wp") is None
    m.pool_ready.set(1.0, "ns", "wp")
    assert m.pool_ready.value("ns", "wp") == 1.0


async def test_the_asyncio_task_count_is_read_at_each_scrape() -> None:
    """The soak's leak check: tasks of the running loop, counted when scraped."""

    def scraped() -> float:
        families = text_string_to_metric_families(Metrics().render())
        (sample,) = next(f for f in families if f.name == f"{P}_asyncio_tasks").samples
        return sample.value

    before = scraped()
    blocker = asyncio.Event()
    tasks = [asyncio.create_task(blocker.wait()) for _ in range(3)]
    assert scraped() == before + 3
    blocker.set()
    await asyncio.gather(*tasks)
    assert scraped() == before
