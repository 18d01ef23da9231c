"""The hand-written Prometheus text exposition, checked by rule and by prometheus_client's parser
(installed with prefect, test-only)."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prefect_job_operator.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram, Metrics

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m is not None, f"bad label syntax at {text[pos:]!r}"
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
    return labels


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(family → type, samples) with the format's rules asserted on the way."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, f"HELP twice for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps and name not in types
            assert kind in ("counter", "gauge", "histogram")
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m is not None, f"bad sample line {line!r}"
            name, labels, value = m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))
            family = re.sub(r"_(bucket|count|sum)$", "", name)
            if family not in types:
                family = name
            assert family in types, f"sample {name} before its TYPE"
            if types[family] != "histogram":
                assert name == family
            samples.append((name, labels, value))
    return types, samples


def test_counter_and_gauge_lines_with_escaped_label_values() -> None:
    c = Counter("demo_total", "A demo counter.", ("pool", "reason"))
    tricky = 'ns/a "quoted" back\\slash\nnewline'
    c.inc(tricky, "OOMKilled")
    c.inc(tricky, "OOMKilled", amount=2)
    g = Gauge("demo_gauge", "A demo gauge.", ("pool",))
    g.set(1.5, "default/k8s")
    text = "\n".join([*c.render(), *g.render()]) + "\n"

    types, samples = parse(text)
    assert types == {"demo_total": "counter", "demo_gauge": "gauge"}
    assert ("demo_total", {"pool": tricky, "reason": "OOMKilled"}, 3.0) in samples
    assert ("demo_gauge", {"pool": "default/k8s"}, 1.5) in samples
    assert '\\"quoted\\"' in text and "back\\\\slash" in text and "\\nnewline" in text

    [counter, gauge] = list(text_string_to_metric_families(text))
    assert counter.samples[0].labels["pool"] == tricky
    assert gauge.samples[0].value == 1.5


def test_histogram_buckets_are_cumulative_and_inf_equals_count() -> None:
    h = Histogram("demo_seconds", "A demo histogram.", ("pool",))
    values = [0.001, 0.005, 0.0051, 0.3, 0.3, 2.5, 59.0, 61.0, 3600.0]
    for v in values:
        h.observe(v, "default/k8s")
    h.observe(0.2, "other/pool")
    types, samples = parse("\n".join(h.render()) + "\n")
    assert types == {"demo_seconds": "histogram"}

    mine = [(n, lab, v) for n, lab, v in samples if lab["pool"] == "default/k8s"]
    buckets = [(lab["le"], v) for n, lab, v in mine if n == "demo_seconds_bucket"]
    assert [le for le, _ in buckets] == [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
        assert count == sum(1 for v in values if v <= bound), f"le={bound}"
    [total] = [v for n, _, v in mine if n == "demo_seconds_count"]
    [sum_] = [v for n, _, v in mine if n == "demo_seconds_sum"]
    assert counts[-1] == total == len(values)
    assert math.isclose(sum_, sum(values))

    [family] = list(text_string_to_metric_families("\n".join(h.render()) + "\n"))
    assert family.type == "histogram"


@pytest.mark.parametrize("value", [0.0, 0.005, 60.0, 60.0001])
def test_histogram_bucket_bounds_are_inclusive(value: float) -> None:
    h = Histogram("edge_seconds", "Edges.", ())
    h.observe(value)
    _, samples = parse("\n".join(h.render()) + "\n")
    for name, labels, count in samples:
        if name == "edge_seconds_bucket":
            bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            assert count == (1.0 if value <= bound else 0.0), labels["le"]


def test_whole_registry_renders_valid_exposition() -> None:
    m = Metrics()
    m.runs_dispatched.inc("default/k8s")
    m.runs_crashed.inc("default/k8s", "JobFailed")
    m.dispatch_latency.observe(0.42, "default/k8s")
    m.on_api_request("POST", "/flow_runs/{id}/set_state", 201, 0.012)
    m.on_api_request("GET", "/work_pools/{name}", None, 5.0)
    m.runs_by_state.set(3, "default/k8s", "pending")
    m.leader.set(1.0, "default/k8s")
    m.extra.append(lambda: ["# HELP extra_up Extra.", "# TYPE extra_up gauge", "extra_up 1.0"])
    text = m.render()

    types, samples = parse(text)
    assert types["prefect_job_operator_runs_dispatched_total"] == "counter"
    assert types["prefect_job_operator_dispatch_latency_seconds"] == "histogram"
    assert (
        "prefect_job_operator_prefect_api_requests_total",
        {"route": "GET /work_pools/{name}", "status": "error"},
        1.0,
    ) in samples
    assert ("extra_up", {}, 1.0) in samples
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "prefect_job_operator_runs_dispatched" in families
    assert "prefect_job_operator_prefect_api_request_seconds" in families
