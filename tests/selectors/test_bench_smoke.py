"""perf/bench_score.py runs (at a tiny size: the timing itself is the benchmark's job)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_score_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_score", ROOT / "perf" / "bench_score.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    h = bench.synthetic_history(2000, 5, 0.05)
    assert h.n.shape == (2000, 5) and bool((h.n_correct <= h.n).all())
    r = bench.time_selector("lim", h, repeat=2)
    assert 0 < r["scored"] <= 2000 and r["median"] > 0
    total = bench.write_logs(tmp_path, 16, 2, 2, 2, 10)
    assert total > 0 and len(list(tmp_path.glob("step_*.json"))) == 4
