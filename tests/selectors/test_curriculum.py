"""The dynamic-threshold curriculum: hand-checked update, floor, mastery, schedule and plot."""

from __future__ import annotations

import pytest
import torch

from limr.history import RewardHistory
from limr.registry import SELECTORS


def _curriculum(**kw):
    args = dict(
        warmup_epochs=1,
        update_every=1,
        base_threshold=0.6,
        threshold_slope=0.4,
        max_threshold=0.9,
        mastered_accuracy=0.95,
        min_fraction=0.0,
        min_size=1,
    )
    args.update(kw)
    return SELECTORS.build("curriculum", **args)


def test_update_hand_computed(make_history):
    # Epoch 0, 4 rollouts each: a 4/4 (mastered), b 2/4, c 0/4, d 1/4; e never rolled out.
    # mean accuracy = 7/16 = .4375 -> theta = .6 + .4 (.4375 - .5) = .575
    # one epoch: r_avg = .4375, denominator = .5625^2
    #   b: 1 - .0625^2/.5625^2 = .988 (pass)  c: 1 - .4375^2/.5625^2 = .395 (fail)
    #   d: 1 - .1875^2/.5625^2 = .889 (pass)  a: mastered, dropped;  e: unseen, kept
    h = make_history({"a": [1.0], "b": [0.5], "c": [0.0], "d": [0.25]})
    all_ids = ["a", "b", "c", "d", "e"]
    cur = _curriculum()
    assert cur.update(h, 0, all_ids) is None  # warm-up
    assert cur.update(h, 1, all_ids) == ["b", "d", "e"]
    entry = cur.schedule[-1]
    assert entry["theta"] == pytest.approx(0.575)
    assert entry["mean_accuracy"] == pytest.approx(0.4375)
    assert (entry["size"], entry["n_passed"], entry["n_mastered"], entry["n_unseen"]) == (
        3,
        2,
        1,
        1,
    )
    assert cur.metrics()["curriculum/theta"] == pytest.approx(0.575)
    # The floor tops up with the best unmastered prompt (c), then the mastered one (a).
    assert _curriculum(min_size=4).update(h, 1, all_ids) == ["b", "c", "d", "e"]
    assert _curriculum(min_size=5).update(h, 1, all_ids) == all_ids
    assert _curriculum(min_size=1, min_fraction=0.8).update(h, 1, all_ids) == ["b", "c", "d", "e"]
    # update_every: the next reselection is two epochs later.
    every2 = _curriculum(update_every=2)
    assert [every2.due(e) for e in range(6)] == [False, True, False, True, False, True]


def test_threshold_follows_mean_accuracy_and_is_capped():
    cur = _curriculum()
    assert cur.threshold_for(0.5) == pytest.approx(0.6)
    assert cur.threshold_for(0.75) == pytest.approx(0.7)
    assert cur.threshold_for(0.25) == pytest.approx(0.5)
    assert cur.threshold_for(1.0) == pytest.approx(0.8)
    assert _curriculum(threshold_slope=1.0).threshold_for(1.0) == pytest.approx(0.9)


def test_simulated_training_run(tmp_path):
    """A fake model learns each prompt at its own rate; the curriculum must keep up with it."""
    gen = torch.Generator().manual_seed(0)
    num_p, n = 60, 8
    all_ids = [f"p{i}" for i in range(num_p)]
    base = torch.linspace(0.0, 0.9, num_p)  # initial accuracy
    rate = torch.rand(num_p, generator=gen) * 0.15
    h = RewardHistory(tmp_path / "hist")
    cur = SELECTORS.build(
        "curriculum",
        warmup_epochs=2,
        update_every=2,
        base_threshold=0.6,
        threshold_slope=0.4,
        max_threshold=0.9,
        mastered_accuracy=0.95,
        min_fraction=0.1,
        min_size=8,
    )
    current = list(all_ids)
    step = 0
    for epoch in range(12):
        new = cur.update(h, epoch, all_ids)
        if new is not None:
            current = new
        assert set(current) <= set(all_ids) and len(current) >= cur.floor(num_p)
        idx = torch.tensor([all_ids.index(p) for p in current])
        # training on a prompt raises its accuracy
        acc = (base + rate * epoch).clamp(0, 1)
        for j in idx.tolist():
            base[j] += 0.03
        step += 1
        ids = [all_ids[j] for j in idx.tolist() for _ in range(n)]
        p = acc[idx].repeat_interleave(n)
        correct = torch.rand(len(p), generator=gen) < p
        h.record(step, epoch, ids, correct, correct.float())
        h.commit(step)
    assert [s["epoch"] for s in cur.schedule] == [2, 4, 6, 8, 10]
    thetas = [s["theta"] for s in cur.schedule]
    accs = [s["mean_accuracy"] for s in cur.schedule]
    for t, a in zip(thetas, accs):
        assert t == pytest.approx(min(0.9, 0.6 + 0.4 * (a - 0.5)))
    assert all(s["n_mastered"] >= 0 and s["size"] >= s["floor"] for s in cur.schedule)
    assert cur.schedule[-1]["n_mastered"] > 0
    # a mastered prompt is not trained on unless the floor needs it
    last = cur.schedule[-1]
    if last["n_topped_up"] == 0:
        hist_acc = h.n_correct[:, -2] / h.n[:, -2].clamp_min(1)
        for pid, a, present in zip(h.ids, hist_acc.tolist(), (h.n[:, -2] > 0).tolist()):
            if present and a >= 0.95:
                assert pid not in cur.current
    # a replayed update (resume) replaces its entry rather than adding one
    cur.update(h, 10, all_ids)
    assert [s["epoch"] for s in cur.schedule] == [2, 4, 6, 8, 10]
    state = cur.state_dict()
    again = SELECTORS.build("curriculum")
    again.load_state_dict(state)
    assert again.schedule == cur.schedule and again.current == cur.current
    png = cur.plot_schedule(tmp_path / "plots" / "curriculum.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curriculum_rejects_bad_settings():
    with pytest.raises(ValueError, match="warmup_epochs"):
        SELECTORS.build("curriculum", warmup_epochs=0)
    with pytest.raises(ValueError, match="update_every"):
        SELECTORS.build("curriculum", update_every=0)


def test_revisit_brings_back_stale_prompts(make_history):
    # c was dropped after epoch 0 (score .395 < theta); epochs 1-2 train b and d only.
    h = make_history(
        {"a": [1.0, None, None], "b": [0.5, 0.5, 0.75], "c": [0.0, None, None], "d": [0.25] * 3}
    )
    all_ids = ["a", "b", "c", "d"]
    assert "c" not in _curriculum().update(h, 3, all_ids)
    cur = _curriculum(revisit_after=2)
    chosen = cur.update(h, 3, all_ids)
    assert "c" in chosen and "a" not in chosen  # a is mastered: never revisited
    assert cur.schedule[-1]["n_revisited"] == 1
    # last seen at epoch 0, 3 - 0 = 3 epochs ago: stale for revisit_after=2, not for 3
    assert "c" not in _curriculum(revisit_after=3).update(h, 3, all_ids)


def test_the_floor_is_at_least_one_rollout_batch(make_history):
    # pool 64, rollout batch 16: 60 prompts mastered (4/4 right), 4 still learning, none passing
    # theta; a floor of 4 keeps the 4. Without the batch in the floor the trainer could not fill
    # one step with them (on the 7B config: 10% of 8,523 prompts = 853 < a batch of 1,024).
    curves = {f"m{i}": [0.75, 1.0] for i in range(60)}
    curves.update({f"l{i}": [0.0, 0.25] for i in range(4)})
    h = make_history(curves)
    all_ids = list(curves)
    learning = [f"l{i}" for i in range(4)]
    assert _curriculum(min_size=4, min_fraction=0.0).update(h, 2, all_ids) == learning
    cur = _curriculum(min_size=4, min_fraction=0.0, rollout_batch_size=16)
    chosen = cur.update(h, 2, all_ids)
    assert len(chosen) == 16 and cur.floor(64) == 16
    assert set(chosen) >= set(learning)  # the 4 it would keep, then 12 mastered ones
    assert cur.schedule[-1]["n_topped_up"] == 16 and cur.schedule[-1]["floor"] == 16
    # the floor never exceeds the pool; and a bad batch is refused
    assert _curriculum(rollout_batch_size=100).floor(64) == 64
    with pytest.raises(ValueError, match="rollout_batch_size"):
        _curriculum(rollout_batch_size=0)
    # the config defaults at the 7B scale: min_fraction 0.1 of 8,523 would give 853
    paper = SELECTORS.build("curriculum", rollout_batch_size=1024)
    assert paper.floor(8523) == 1024 and SELECTORS.build("curriculum").floor(8523) == 853
