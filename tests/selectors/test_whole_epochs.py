"""Selectors score whole epochs only: a run stopped mid-epoch (or max_steps not a multiple of the
steps per epoch) must not leave the prompts it had not reached unscored, and RAND draws from the
prompts LIM scores."""

from __future__ import annotations

import pytest
import torch

from limr.history import RewardHistory
from limr.registry import SELECTORS


def _trained(pool: int, batch: int, max_steps: int, n: int = 4, epoch_steps: bool = True):
    """A history recorded as the trainer records it: epochs of pool // batch steps (drop_last)
    over a seeded permutation, each prompt learning at its own rate, cut after max_steps."""
    h = RewardHistory()
    steps = pool // batch
    gen = torch.Generator().manual_seed(0)
    rate = torch.rand(pool, generator=gen) * 0.3
    for step in range(max_steps):
        epoch, pos = divmod(step, steps)
        perm = torch.randperm(pool, generator=torch.Generator().manual_seed(100 + epoch))
        rows = perm[pos * batch : (pos + 1) * batch]
        p = (0.1 + rate[rows] * epoch).clamp(0, 1).repeat_interleave(n)
        correct = torch.rand(len(p), generator=gen) < p
        ids = [f"p{j}" for j in rows.tolist() for _ in range(n)]
        h.record(
            step, epoch, ids, correct, correct.float(), epoch_steps=steps if epoch_steps else None
        )
        h.commit(step)
    return h


@pytest.mark.parametrize("name", ["lim", "linear", "pearson"])
def test_a_partial_last_epoch_leaves_no_prompt_unscored(name):
    # smollm2_gpu.yaml scaled down by 32: 64 prompts, batch 2 -> 32 steps an epoch, max_steps 60:
    # epoch 1 has 28 of its 32 steps, so 8 prompts were never reached in it
    h = _trained(pool=64, batch=2, max_steps=60)
    assert int((h.n[:, 1] > 0).sum()) == 56
    sel = SELECTORS.build(name, size=10).select(h)
    assert len(sel.ids) == 64, "the partial epoch must not drop the prompts it did not reach"
    assert sel.info["unscored"] == 0 and sel.info["epochs_dropped"] == 1
    assert sel.info["epochs_recorded"] == 2 and sel.info["epochs"] == 1
    assert sel.info["partial_epoch"] == {
        "epoch": 1, "steps": 28, "of": 32, "prompts": 56, "dropped": True
    }  # fmt: skip
    # the same as scoring the first epoch alone
    alone = SELECTORS.build(name, size=10).select(h.head(1))
    assert alone.ids == sel.ids and torch.equal(alone.scores, sel.scores)
    # whole_epochs=False: the old behaviour, the 8 unreached prompts are unscored
    every = SELECTORS.build(name, size=10, whole_epochs=False).select(h)
    assert len(every.ids) == 56 and every.info["unscored"] == 8


def test_lim_over_several_whole_epochs_then_a_partial_one():
    h = _trained(pool=40, batch=4, max_steps=47)  # 10 steps an epoch: 4 whole epochs + 7 steps
    sel = SELECTORS.build("lim").select(h)
    assert sel.info["epochs"] == 4 and sel.info["epochs_dropped"] == 1
    assert len(sel.ids) == 40 and len(sel.info["avg_curve"]) == 4
    masked = SELECTORS.build("lim", missing="mask").select(h)
    assert masked.info["epochs"] == 4 and len(masked.ids) == 40
    for name in ("variance", "learnability"):
        other = SELECTORS.build(name, size=5).select(h)
        assert other.info["epochs"] == 4 and other.info["epochs_dropped"] == 1


def test_rand_draws_from_the_prompts_lim_scores():
    # 66 prompts, batch 8: 8 steps an epoch reach 64 prompts (drop_last), so every epoch leaves
    # two out; LIM cannot score a prompt missing from the last whole epoch (nothing to fill it
    # from), and a partial third epoch is left out
    h = _trained(pool=66, batch=8, max_steps=19)
    lim = SELECTORS.build("lim", size=20).select(h)
    assert 0 < lim.info["unscored"] <= 4 and lim.info["epochs_dropped"] == 1
    rand = SELECTORS.build("rand", size=len(lim.kept_ids), seed=3).select(h)  # as the pipeline
    assert rand.ids == lim.ids and set(rand.kept_ids) <= set(lim.ids)
    assert len(rand.kept_ids) == 20 and rand.info["unscored"] == lim.info["unscored"]
    assert rand.info["epochs_dropped"] == 1 and rand.info["pool"] == "scored"
    ids, scores = SELECTORS.build("rand", size=5, seed=3).score(h)
    assert ids == lim.ids and len(scores) == len(ids)
    # a prompt's priority does not depend on the pool: the same draw restricted to the pool
    everyone = SELECTORS.build("rand", size=20, seed=3, pool="all").select(h)
    assert len(everyone.ids) == 66 and everyone.info["unscored"] == 0
    by_id = dict(zip(everyone.ids, everyone.scores.tolist()))
    assert rand.scores.tolist() == [by_id[i] for i in rand.ids]
    with pytest.raises(ValueError, match="pool"):
        SELECTORS.build("rand", size=1, pool="some")
    with pytest.raises(ValueError, match="size 66 > 6"):
        SELECTORS.build("rand", size=66).select(h)


def test_an_older_history_without_epoch_steps():
    # no recorded step counts: the last epoch is partial when it has fewer steps than the one
    # before it
    h = _trained(pool=64, batch=2, max_steps=60, epoch_steps=False)
    sel = SELECTORS.build("lim").select(h)
    assert len(sel.ids) == 64 and sel.info["epochs_dropped"] == 1
    assert sel.info["partial_epoch"]["of"] is None
