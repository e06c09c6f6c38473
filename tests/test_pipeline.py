"""`limr run` end to end on configs/quick.yaml, and the pipeline's helpers."""

import json
import re
from pathlib import Path

import pytest

from limr.cli import main
from limr.config import load_config
from limr.pipeline import fit_batch_to_subset, nearby_counts

ROOT = Path(__file__).resolve().parent.parent


def test_fit_batch_to_subset_keeps_sizes_consistent():
    cfg = load_config(ROOT / "configs/default.yaml")
    fit_batch_to_subset(cfg, 5)
    p, n = cfg.ppo, cfg.sampler.n_samples
    assert p.rollout_batch_size == 5
    assert (5 * n) % p.train_batch_size == 0 and p.train_batch_size % p.micro_batch_size == 0
    cfg.__post_init__()  # the schema's own checks accept the result
    big = load_config(ROOT / "configs/default.yaml")
    before = big.ppo.rollout_batch_size
    fit_batch_to_subset(big, before + 10)
    assert big.ppo.rollout_batch_size == before


def test_nearby_counts():
    counts = nearby_counts([0.1, 0.55, 0.6, 0.65, 0.9, float("nan")], 0.6)
    assert counts["0.60"] == 3 and counts["0.40"] == 4 and counts["0.80"] == 1


@pytest.mark.slow
def test_quick_run_end_to_end_and_rerun_skips_stages(tmp_path, capsys):
    run_dir = tmp_path / "quick"
    args = ["run", str(ROOT / "configs/quick.yaml"), f"run.run_dir={run_dir}",
            "trainer.progress=false"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    for stage in ("[1/6] base", "[2/6] FULL", "[3/6] selections", "[5/6] evaluation", "[6/6]"):
        assert stage in out
    report = (run_dir / "report.md").read_text()
    results = json.loads((run_dir / "eval.json").read_text())
    # every arm of the config has a row, and its overall number is eval.json's
    cfg = load_config(ROOT / "configs/quick.yaml")
    labels = {"full": "FULL", "lim": "LIM", "linear": "LINEAR", "rand": "RAND",
              "curriculum": "CURRICULUM"}  # fmt: skip
    bench = results["benchmarks"][0]
    for arm in ["base", *cfg.run.arms]:
        label = labels.get(arm, "base")
        row = re.search(rf"^\| {label} \|(.*)$", report, re.M)
        assert row, f"no row for {label}"
        seed_key = "-" if arm == "base" else str(cfg.run.seeds[0])
        acc = results["arms"][arm][seed_key][bench]["accuracy"]
        assert f"{100 * acc:.1f}" in row.group(1)
    pngs = (
        "heldout.png",
        "accuracy_vs_step.png",
        "train_accuracy_vs_step.png",
        "lim_histogram.png",
        "lim_curves.png",
    )
    for png in pngs:
        assert (run_dir / "plots" / png).stat().st_size > 1000
        assert f"plots/{png}" in report
    # per-problem evaluation records exist for every arm
    assert (run_dir / "eval" / "base.json").exists()
    # a second run skips every finished stage
    assert main(args) == 0
    assert "done before" in capsys.readouterr().out
