"""The benchmark's code path, once, on a tiny input, so the script cannot rot.

Runs bench/bench.py's ``run`` on a few hundred generated origins against
pgsched (and the reference backend when it is installed, its set-up being
cheap), then checks the results file: every line measured, every figure
positive.  It measures nothing worth reading.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"

DSN = os.environ.get("PGSCHED_TEST_DSN")
pytestmark = pytest.mark.skipif(not DSN, reason="PGSCHED_TEST_DSN is not set")


def load_bench():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("pgsched_bench", BENCH_DIR / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_listings(folder: Path) -> None:
    """240 PyPI projects and 60 npm packages, with the listings' columns."""
    with gzip.open(folder / "pypi-projects.tsv.gz", "wt") as f:
        f.write("name\tlatest_version\tlast_release_month\n")
        for i in range(240):
            f.write(f"proj-{i:03d}\t1.0.{i}\t20{10 + i % 16:02d}-{1 + i % 12:02d}\n")
    with open(folder / "npm-packages.tsv", "w") as f:
        f.write("name\tlatest_version\tmonthly_downloads\n")
        for i in range(60):
            f.write(f"@scope/pkg.{i}\t0.{i}.0\t{i * 7}\n")


def test_bench_runs_on_a_tiny_input(tmp_path):
    bench = load_bench()
    write_listings(tmp_path)
    backends = ["pgsched"]
    if bench.reference_available() is None and shutil.which("psql"):
        backends.append("reference")
    out = tmp_path / "results"
    argv = [
        "--dsn", DSN,
        "--data-dir", str(tmp_path),
        "--backends", ",".join(backends),
        "--batch", "100",
        "--grab-calls", "2",
        "--tasks", "150",
        "--task-runs", "20",
        "--shim-pairs", "2",
        "--explain-min-ms", "0",
        "--out", str(out),
        "--tag", f"smoke{os.getpid()}",
    ]  # fmt: skip
    assert bench.main(argv) == 0

    results = json.loads((out / "latest.json").read_text())
    assert (out / "latest.md").read_text().startswith("# pgsched benchmark")
    assert results["meta"]["origins"] == 300
    assert set(results["backends"]) == set(backends)
    expected = {line.key for line in bench.report_lines()}
    for name in backends:
        metrics = results["backends"][name]["metrics"]
        assert expected <= set(metrics), expected - set(metrics)
        for key in expected:
            assert metrics[key] > 0, (name, key)
        explain = results["backends"][name]["explain"]
        assert {f"grab_next_visits.{p}" for _, p in bench.GRAB_POLICIES} | {
            "grab_ready_tasks"
        } <= set(explain)
        assert all(e["plans"] for e in explain.values()), name
    shim = {k for k in results["backends"]["pgsched"]["metrics"] if k.startswith("shim.")}
    assert shim == {
        "shim.grab_next_visits",
        "shim.grab_ready_tasks",
        "shim.record_listed_origins",
        "shim.origin_visit_stats_upsert",
        "shim.start_task_run",
    }
    keys = {row["key"] for row in results["table"]}
    assert expected | shim | {"record_first_vs_copy"} <= keys
