"""`limr run` end to end on configs/quick.yaml, and the pipeline's helpers."""

import json
import re
from pathlib import Path

import pytest

from limr.cli import main
from limr.config import ConfigError, load_config
from limr.pipeline import Pipeline, arm_label, fit_batch_to_subset, nearby_counts

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
    # in this process, one arm after the other (tests/test_runner.py runs worker processes)
    args = ["run", str(ROOT / "configs/quick.yaml"), f"run.run_dir={run_dir}",
            "trainer.progress=false", "run.workers=1"]  # fmt: skip
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


def _quick(tmp_path, *overrides):
    return load_config(ROOT / "configs/quick.yaml", [f"run.run_dir={tmp_path / 'run'}", *overrides])


def test_seed_0_is_a_seed(tmp_path, monkeypatch):
    """Seed 0 is not "no seed": each arm of seed 0 is evaluated with seed 0, the base with
    run.seed."""
    import limr.pipeline as pipeline

    calls = []

    def fake_evaluate(cfg, path, *, seed):  # noqa: ARG001
        calls.append((Path(path).parent.name if path != "BASE" else path, seed))
        return {"arith": {"accuracy": 0.5, "by_level": {}, "n_problems": 2, "n_samples": 1}}

    monkeypatch.setattr(pipeline, "evaluate_model", fake_evaluate)
    cfg = _quick(tmp_path, "run.seeds=[0,7]", "run.seed=42", "run.arms=[full]")
    pipe = Pipeline(cfg)
    for seed in (0, 7):
        (pipe.arm_dir("full", seed) / "final").mkdir(parents=True)
    results = pipe.evaluate_all("BASE", ["full"])
    assert calls == [("BASE", 42), ("full-s0", 0), ("full-s7", 7)]
    assert set(results["arms"]["full"]) == {"0", "7"}
    assert pipe.arm_config("full", 0).run.seed == 0
    assert [j.name for j in pipe.plan()][:2] == ["full-s0", "selections-s0"]


def _history():
    import torch

    from limr.history import HistoryArrays

    # 6 prompts x 3 epochs of 4 rollouts; prompt p0 never changes, p5 changes most
    correct = torch.tensor([[2, 2, 2], [0, 1, 2], [1, 2, 4], [0, 0, 1], [4, 3, 4], [0, 4, 0]])
    n = torch.full_like(correct, 4)
    return HistoryArrays(
        ids=[f"p{i}" for i in range(6)], n=n, n_correct=correct, reward_sum=correct.double()
    )


def test_selections_honour_selector_name_and_kwargs(tmp_path, monkeypatch):
    from limr.history import RewardHistory

    monkeypatch.setattr(RewardHistory, "load", staticmethod(lambda path: _history()))
    cfg = _quick(tmp_path, "selector.name=variance", "selector.size=2", "run.arms=[full,lim,rand]")
    pipe = Pipeline(cfg)
    sel = pipe.select(42)
    assert sel["lim"]["selector"] == "variance" and sel["lim"]["label"] == "VARIANCE"
    assert sel["lim"]["n_kept"] == 2 and sel["rand"]["n_kept"] == 2  # RAND: the same size
    kept = [json.loads(x)["id"] for x in Path(sel["lim"]["path"]).read_text().splitlines()]
    assert sorted(kept) == ["p2", "p5"]  # the two most varying curves
    assert arm_label("lim", cfg) == "VARIANCE" and arm_label("rand", cfg) == "RAND"
    assert "VARIANCE (seed 42)" in [j.label for j in pipe.plan()]
    # the default selector is LIM, and selector.kwargs reach it
    cfg = _quick(tmp_path / "b", "selector.kwargs.missing=mask")
    sel = Pipeline(cfg).select(42)
    assert sel["lim"]["selector"] == "lim" and sel["lim"]["label"] == "LIM"
    assert sel["lim"]["info"]["missing"] == "mask"
    assert arm_label("lim", cfg) == "LIM"


def test_a_bad_selector_fails_before_any_training(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["run", str(ROOT / "configs/quick.yaml"), f"run.run_dir={run_dir}"]
    assert main([*args, "selector.name=lmi"]) == 2
    err = capsys.readouterr().err
    assert "selector.name" in err and "'lim'" in err and "Traceback" not in err
    assert not run_dir.exists()  # nothing was trained, not even the run folder made
    with pytest.raises(ConfigError, match="selector.name: 'dapo' is an online selector"):
        Pipeline(_quick(tmp_path, "selector.name=dapo"))
    with pytest.raises(ConfigError, match="selector.kwargs=.*bogus"):
        Pipeline(_quick(tmp_path, "selector.kwargs.bogus=1"))
    with pytest.raises(ConfigError, match="needs a threshold or a size"):
        Pipeline(_quick(tmp_path, "selector.name=variance"))  # variance has no default


def test_a_plugin_selector_is_found(tmp_path, monkeypatch):
    (tmp_path / "limr_test_sel_plugin.py").write_text(
        "from limr.registry import SELECTORS, register_selector\n"
        "if 'late_bloomers' not in SELECTORS:\n"
        "    @register_selector('late_bloomers')\n"
        "    class LateBloomers:\n"
        "        def __init__(self, threshold=None, size=None, metric='accuracy', seed=42):\n"
        "            pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _quick(tmp_path, "plugins=[limr_test_sel_plugin]", "selector.name=late_bloomers")
    assert arm_label("lim", Pipeline(cfg).cfg) == "LATE_BLOOMERS"
