"""The benchmark harness must keep working: a tiny run of `python -m bench` end to end.

Only the harness is checked (it ran, every scenario produced numbers, the docs section was
written); timings are never asserted, they depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench import report
from bench.proxy import route_of
from bench.stats import percentile

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_route_normalisation_and_percentiles() -> None:
    run = "0b5ad2de-8c52-4a6b-9d6a-4f2f0c6a1e11"
    assert route_of("POST", f"/api/flow_runs/{run}/set_state") == "POST /flow_runs/{id}/set_state"
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.prefect
def test_quick_bench_produces_numbers_for_both_workers(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\n## Caveats\n")
    raw = tmp_path / "results.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--sqlite", "--sizes", "10"]
    argv += ["--steady-seconds", "5", "--crash-runs", "3", "--ceiling-n", "10"]
    argv += ["--workdir", str(tmp_path / "work"), "--json", str(raw), "--docs", str(docs)]
    proc = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=840, check=False
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    results = json.loads(raw.read_text())

    for name in ("kubernetes_jobs", "prefect_claims", "worker_claim_and_job"):
        assert results["ceilings"][name]["per_second"] > 0, results["ceilings"]
    worker_ceiling = results["ceilings"]["worker_claim_and_job"]
    assert worker_ceiling["n"] == 10 and worker_ceiling["concurrency"] == 8, worker_ceiling
    for subject in ("ours", "upstream"):
        data = results["subjects"][subject]
        burst = data["burst"][0]
        assert "error" not in burst, (subject, burst, proc.stderr[-4000:])
        assert burst["jobs"] == 10 and burst["duplicate_jobs"] == 0, burst
        assert burst["runs_per_second"] > 0
        assert burst["prefect_calls_per_run"] > 0
        assert burst["kube_calls_per_run"] > 0
        assert burst["rss_active_mib"] > 0 and burst["cpu_seconds_window"] > 0
        assert sum(burst["watches_active"].values()) > 0, burst
        assert 0 <= burst["pids_recorded"] <= 10 and burst["pid_polls"] >= 1, burst
        # Pids are polled only after the window, which ends after the last Job.
        assert burst["pid_first_poll_seconds"] > burst["seconds_to_all_jobs"], burst
        assert data["steady"]["latency_seconds"]["n"] > 0, data["steady"]
        crash = data["crash"][0]
        assert crash["crashed"] > 0 and crash["latency_seconds"]["n"] > 0, crash
    ours = results["subjects"]["ours"]["burst"][0]
    # The proxy and our own /metrics count the same calls (give or take one in flight).
    assert abs(ours["self_reported_prefect_calls"] - ours["prefect_calls"]) <= 3, ours
    # Every run of ours gets its infrastructure_pid recorded, after the first poll was sent.
    assert ours["pids_recorded"] == 10 and ours["seconds_to_all_pids"] is not None, ours
    assert ours["seconds_to_all_pids"] >= ours["pid_first_poll_seconds"], ours
    assert ours["seconds_to_all_pids_server"] <= ours["seconds_to_all_pids"], ours
    assert ours["runs_per_second_to_pid"] > 0, ours

    text = docs.read_text()
    assert "old" not in text and "## Caveats" in text and "intro" in text
    assert "| burst 10: runs/s to Job |" in text
    assert "| burst 10: runs/s / worker ceiling |" in text
    assert "| burst 10: runs/s to pid |" in text and "burst 10: s until all pids" in text
    assert "a bare worker loop did both for 10 runs" in text
    assert "burst 10: runs/s to Job" in proc.stdout
