"""The pipeline's cheap-LIM arms (issue 11): their selections, costs and the probe arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.config import ConfigError, load_config
from limr.history import HistoryArrays, RewardHistory
from limr.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "limr" / "data" / "tiny_base")


def _history():
    # 6 prompts x 4 epochs of 4 rollouts
    correct = torch.tensor(
        [[2, 2, 2, 2], [0, 1, 2, 3], [1, 2, 4, 4], [0, 0, 1, 1], [4, 3, 4, 4], [0, 4, 0, 4]]
    )
    n = torch.full_like(correct, 4)
    return HistoryArrays(
        ids=[f"p{i}" for i in range(6)], n=n, n_correct=correct, reward_sum=correct.double()
    )


def _quick(tmp_path, *overrides):
    return load_config(ROOT / "configs/quick.yaml", [f"run.run_dir={tmp_path / 'run'}", *overrides])


def test_cheap_arms_get_selections_with_their_cost(tmp_path, monkeypatch):
    monkeypatch.setattr(RewardHistory, "load", staticmethod(lambda path: _history()))
    cfg = _quick(tmp_path, "run.arms=[full,lim,rand]")
    sel = Pipeline(cfg).select(42)
    assert "lim_prefix" not in sel
    # an arm added later: the saved selections are kept, the new one computed
    cfg2 = _quick(tmp_path, "run.arms=[full,lim,rand,lim_prefix]")
    pipe = Pipeline(cfg2)
    sel2 = pipe.select(42)
    assert sel2["lim"] == sel["lim"]
    pre = sel2["lim_prefix"]
    assert pre["info"]["epochs_used"] == 1 and pre["info"]["cost_fraction"] == 0.25
    assert Path(pre["scores"]).exists() and pre["n_scored"] == 6
    assert pre["n_kept"] == sel["lim"]["n_kept"]  # run.cheap_cut lim_size: as many as LIM
    saved = json.loads((tmp_path / "run" / "selections" / "selections-s42.json").read_text())
    assert "lim_prefix" in saved
    assert "lim_prefix (seed 42)" not in [j.label for j in pipe.plan()]  # labelled
    assert "LIM-prefix (seed 42)" in [j.label for j in pipe.plan()]
    job = next(j for j in pipe.plan() if j.name == "lim_prefix-s42")
    assert job.after == ("selections-s42",)
    assert pipe.arm_config("lim_prefix", 42, sel2).data.subset == pre["path"]


def test_cheap_cut_and_kwargs_come_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr(RewardHistory, "load", staticmethod(lambda path: _history()))
    cfg = _quick(
        tmp_path, "run.arms=[full,lim,lim_prefix]", "run.cheap_cut=threshold",
        "run.cheap_kwargs.lim_prefix.epochs=2",
    )  # fmt: skip
    sel = Pipeline(cfg).select(42)
    info = sel["lim_prefix"]["info"]
    assert info["epochs_used"] == 2 and info["cost_fraction"] == 0.5
    assert sel["lim_prefix"]["threshold"] == 0.6  # LIM's own cut
    with pytest.raises(ConfigError, match="run.cheap_kwargs: 'lim' is not a cheap arm"):
        _quick(tmp_path, "run.cheap_kwargs.lim.epochs=2")
    with pytest.raises(ConfigError, match="run.cheap_fraction"):
        _quick(tmp_path, "run.cheap_fraction=0")


def test_subsample_and_probe_are_jobs_of_their_own(tmp_path):
    """lim_subsample trains a real run on a random part of the pool, lim_probe probes the base and
    FULL's early checkpoints; both are jobs before the selections, with their costs counted."""
    cfg = _quick(
        tmp_path, "run.arms=[full,lim,lim_subsample,lim_probe]", "run.cheap_fraction=0.5",
        "trainer.keep_checkpoints=5", "trainer.progress=false",
    )  # fmt: skip
    pipe = Pipeline(cfg)
    plan = {j.name: j for j in pipe.plan()}
    assert plan["subsample-s42"].after == () and plan["subsample-s42"].kind == "train"
    assert plan["probe-s42"].after == ("full-s42",)  # lim_probe needs FULL's checkpoints
    assert set(plan["selections-s42"].after) == {"full-s42", "subsample-s42", "probe-s42"}
    pipe.log = lambda *_: None
    pipe.run_only(["full-s42", "subsample-s42", "probe-s42"])
    pool = (tmp_path / "run" / "selections" / "subsample-pool-s42.jsonl").read_text().splitlines()
    assert len(pool) == 8  # half of the 16 prompts
    sub = json.loads((pipe.arm_dir("subsample", 42) / "train_summary.json").read_text())
    assert sub["steps"] == 4 and sub["prompts"] == 8  # half of FULL's 8 steps
    assert pipe.is_done(plan["probe-s42"])
    sel = pipe.select(42)
    full = 8 * 4 * 4  # FULL: 8 steps x 4 prompts x 4 samples
    s_info = sel["lim_subsample"]["info"]
    # its run (4 steps x 4 x 4) and the base probe of the 8 prompts it predicts (x 4 samples)
    assert s_info["rollouts_used"] == 4 * 4 * 4 + 8 * 4
    assert s_info["cost_fraction"] == pytest.approx((64 + 32) / full)
    assert sel["lim_subsample"]["n_scored"] == 16 and s_info["n_predicted"] == 8
    assert sel["lim_subsample"]["n_kept"] == sel["lim"]["n_kept"]
    p_info = sel["lim_probe"]["info"]
    assert p_info["full_steps_used"] == 4 and len(p_info["probe_checkpoints"]) == 2
    assert p_info["probe_rollouts"] == 2 * 16 * 4
    assert p_info["cost_fraction"] == pytest.approx((full / 2 + 2 * 16 * 4) / full)


def test_probe_arm_probes_the_base_and_early_checkpoints(tmp_path):
    from limr.cheap_study import probe_checkpoints, probe_selection, probe_specs, run_probe

    full = tmp_path / "full"
    h = RewardHistory(full / "history")
    ids = ["a", "b"]
    for step in range(1, 9):  # 8 steps of 2 prompts x 2 rollouts
        h.record(step, (step - 1) // 2, ids * 2, torch.tensor([1, 0, 0, 1]), torch.ones(4))
        h.commit(step)
    (full / "checkpoints").mkdir()
    for step in (2, 4, 8):
        (full / "checkpoints" / f"step-{step:06d}.ckpt").write_bytes(b"")
    assert [s for s, _ in probe_checkpoints(full, 2)] == [2]
    (full / "checkpoints" / "step-000002.ckpt").unlink()  # only the base is early enough
    cfg = load_config(
        None,
        ["data.train=synthetic:arith", "data.max_prompts=2", "sampler.n_samples=2",
         "sampler.max_new_tokens=13", "trainer.num_threads=1"],
    )  # fmt: skip
    specs, last = probe_specs(cfg, full, TINY, 8)
    assert specs == [TINY] and last == 0
    run_probe(cfg, tmp_path / "probe", specs, 42, last)
    sel, cost = probe_selection(cfg, full, tmp_path / "probe", 42, 8, lim_size=1)
    assert cost["probe_checkpoints"] == [TINY] and cost["probe_rollouts"] == 4
    assert cost["rollouts_total"] == 32 and cost["full_steps_used"] == 0
    assert cost["cost_fraction"] == pytest.approx(4 / 32)
    assert len(sel.ids) == 2 and len(sel.kept_ids) == 1
