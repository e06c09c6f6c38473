"""The pipeline's cheap-LIM arms (issue 11): their selections, costs and the probe arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.config import load_config
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
    cfg = _quick(tmp_path, "run.arms=[full,lim,rand,lim_prefix]")
    pipe = Pipeline(cfg)
    sel = pipe.select(42)
    pre = sel["lim_prefix"]
    assert pre["info"]["epochs_used"] == 1 and pre["info"]["cost_fraction"] == 0.25
    assert Path(pre["scores"]).exists() and pre["n_scored"] == 6
    assert "lim_prefix (seed 42)" not in [j.label for j in pipe.plan()]  # labelled
    assert "LIM-prefix (seed 42)" in [j.label for j in pipe.plan()]
    job = next(j for j in pipe.plan() if j.name == "lim_prefix-s42")
    assert job.after == ("selections-s42",)
    assert pipe.arm_config("lim_prefix", 42, sel).data.subset == pre["path"]
    # an arm added later: the saved selections are kept, the new one computed
    cfg2 = _quick(tmp_path, "run.arms=[full,lim,rand,lim_prefix,lim_subsample]")
    sel2 = Pipeline(cfg2).select(42)
    assert sel2["lim"] == sel["lim"] and sel2["lim_subsample"]["info"][
        "cost_fraction"
    ] == pytest.approx(2 / 6)
    saved = json.loads((tmp_path / "run" / "selections" / "selections-s42.json").read_text())
    assert "lim_subsample" in saved


def test_probe_arm_probes_the_base_and_early_checkpoints(tmp_path):
    from limr.cheap_study import probe_checkpoints, probe_selection

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
    sel, cost = probe_selection(cfg, full, tmp_path / "probe", TINY, 42, full_steps=8)
    assert cost["probe_checkpoints"] == [TINY] and cost["probe_rollouts"] == 4
    assert cost["rollouts_total"] == 32 and cost["full_steps_used"] == 0
    assert cost["cost_fraction"] == pytest.approx(4 / 32)
    assert len(sel.ids) == 2
