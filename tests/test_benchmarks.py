"""The benchmark scripts run end to end at toy sizes (their figures are measured, never asserted here)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_retrieval_benchmark_smoke(tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "retrieval.py"), "--n-docs", "2000",
                          "--queries", "200", "--clients", "8", "--no-dense", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["corpus"] for r in rows] == ["toy", "synthetic-2k", "synthetic-2k"]
    assert all(r["errors"] == 0 and r["concurrent_results_differ"] == 0 for r in rows)
    assert "concurrent_vs_serial" in res.stdout
