"""The benchmark script runs (its figures are read by people, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_messaging_benchmark_runs_and_reports_the_floor_beside_the_framework():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_messaging.py", "--quick", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=110,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["raw"]["rtt_median_us"] > 0
    assert report["framework"]["ask_median_us"] > 0
    assert set(report["ratios"]) == {"ask / raw rtt", "agent ask / raw rtt", "tells / raw sends"}


def test_state_and_sync_benchmarks_run():
    for script in ["benchmarks/bench_state.py", "benchmarks/bench_sync.py"]:
        out = subprocess.run(
            [sys.executable, script, "--quick", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=110
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["raw_rtt_median_us"] > 0


def test_comm_and_supervision_benchmarks_run():
    for script, key in [("benchmarks/bench_comm.py", "stream_mb_per_s"),
                        ("benchmarks/bench_supervision.py", "restart_median_ms")]:
        out = subprocess.run(
            [sys.executable, script, "--quick", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=110
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)[key] > 0


def test_the_suite_measures_every_system_in_one_run():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_all.py", "--quick", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=110,
    )
    assert out.returncode == 0, out.stderr
    systems = {row["system"]: row for row in json.loads(out.stdout)["systems"]}
    assert {"raw Pipe + cloudpickle", "actors: runtime -> agent", "pykka, threads in one process"} <= set(systems)
    ours = systems["actors: runtime -> agent"]
    assert ours["ask_median_us"] > 0 and ours["restart_ms"] > 0 and ours["idle_uss_mb"] > 0


def test_the_suite_prints_one_table_without_json():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_all.py", "--quick"], capture_output=True, text=True, cwd=ROOT, timeout=110
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["system", "ask", "med"]
    assert any(line.startswith("actors: runtime -> agent") for line in lines)


def test_batch_benchmark_reports_every_system_beside_the_raw_round_trip():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_batch.py", "--quick", "--json", "--no-ray"],
        capture_output=True, text=True, cwd=ROOT, timeout=110,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["raw_rtt_median_us"] > 0 and report["ray_actor_pool"] is None
    for system in ("pool_map", "executor_map", "ours"):
        assert set(report[system]) == {"near-empty", "1 ms", "10 ms"}
    assert report["memory"]["shared_keys"] <= 3 * 1000 + 1


def test_durable_benchmark_runs():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_durable.py", "--quick", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=110,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["raw_floor_us"] > 0 and report["sqlite_4_agents_changes_per_s"] > 0
    assert report["sqlite_4_agents_asked_by_agents_per_s"] > 0
