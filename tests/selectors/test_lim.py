"""LIM, exactly as REFERENCE.md: hand-computed scores, the fill rule, thresholds, the metric, and
the released LIMR scores (theta >= 0.6 keeps the 1,389 released prompts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from limr.registry import SELECTORS
from limr.selectors.curves import keep_mask

ROOT = Path(__file__).resolve().parents[2]
SHARED_REF = ROOT.parent / "shared" / "data" / "limr_reference" / "selection.jsonl"
SHIPPED_REF = ROOT / "limr" / "data" / "limr_reference" / "selection.jsonl"


def test_lim_hand_computed(make_history):
    # Accuracy curves over 2 epochs:
    #   a = [0, .5], b = [.5, 1], c = [.5, .5]
    #   r_avg = [(0 + .5 + .5)/3, (.5 + 1 + .5)/3] = [1/3, 2/3]
    #   denominator = (1 - 1/3)^2 + (1 - 2/3)^2 = 4/9 + 1/9 = 5/9
    #   a: (0 - 1/3)^2 + (.5 - 2/3)^2 = 1/9 + 1/36 = 5/36 -> s = 1 - (5/36)/(5/9) = 0.75
    #   b: (.5 - 1/3)^2 + (1 - 2/3)^2 = 1/36 + 1/9 = 5/36 -> 0.75
    #   c: (.5 - 1/3)^2 + (.5 - 2/3)^2 = 2/36           -> 1 - (2/36)/(20/36) = 0.9
    h = make_history({"a": [0, 0.5], "b": [0.5, 1], "c": [0.5, 0.5]}, n=2)
    sel = SELECTORS.build("lim", threshold=0.8).select(h)
    assert sel.ids == ["a", "b", "c"]
    assert sel.scores.tolist() == pytest.approx([0.75, 0.75, 0.9])
    assert sel.kept_ids == ["c"]
    assert sel.threshold == 0.8
    assert sel.info["avg_curve"] == pytest.approx([1 / 3, 2 / 3])
    assert sel.info["metric"] == "accuracy"
    assert sel.scores.dtype == torch.float64
    ids, scores = SELECTORS.build("lim").score(h)
    assert ids == sel.ids and torch.equal(scores, sel.scores)


def test_lim_fill_is_one_backward_pass_and_incomplete_prompts_are_dropped(make_history):
    h = make_history(
        {
            "full": [0.0, 0.5, 1.0],
            "gap": [0.0, None, 0.5],  # epoch 1 <- epoch 2: [0, .5, .5]
            "first": [None, 1.0, 1.0],  # epoch 0 <- epoch 1: [1, 1, 1]
            "two": [None, None, 1.0],  # epoch 1 filled, epoch 0 still missing: dropped
            "last": [0.5, 0.5, None],  # nothing after the last epoch: dropped
        },
        n=2,
    )
    sel = SELECTORS.build("lim").select(h)
    assert sel.ids == ["full", "gap", "first"]
    assert sel.info["dropped_missing"] == 2
    assert sel.info["filled_cells"] == 3  # gap[1], first[0], two[1]
    # r_avg = mean of [0, .5, 1], [0, .5, .5], [1, 1, 1] = [1/3, 2/3, 5/6]
    avg = [1 / 3, 2 / 3, 5 / 6]
    denom = sum((1 - a) ** 2 for a in avg)
    curves = {"full": [0, 0.5, 1], "gap": [0, 0.5, 0.5], "first": [1, 1, 1]}
    expected = [1 - sum((r - a) ** 2 for r, a in zip(curves[i], avg)) / denom for i in sel.ids]
    assert sel.scores.tolist() == pytest.approx(expected)
    assert sel.info["avg_curve"] == pytest.approx(avg)


def test_lim_mask_mode_equals_drop_mode_on_complete_curves(make_history):
    h = make_history({"a": [0, 0.5, 0.25], "b": [0.5, 1, 1], "c": [0.25, 0.5, 0.75]})
    drop = SELECTORS.build("lim").select(h)
    mask = SELECTORS.build("lim", missing="mask").select(h)
    assert torch.allclose(drop.scores, mask.scores)
    partial = make_history({"a": [0, 0.5, None], "b": [0.5, 1, 1], "c": [0.25, 0.5, 0.75]})
    assert SELECTORS.build("lim", missing="mask").select(partial).ids == ["a", "b", "c"]


def test_lim_reward_metric_uses_mean_raw_reward(make_history):
    # 2 rollouts per cell; wrong = -1. a: accuracies [0, .5] -> mean rewards [-1, 0]
    # b: [.5, 1] -> [0, 1]. r_avg = [-.5, .5]; denominator = 1.5^2 + .5^2 = 2.5
    # a: (-1 + .5)^2 + (0 - .5)^2 = .5 -> s = 1 - .5/2.5 = .8 ; b: same distances -> .8
    h = make_history({"a": [0, 0.5], "b": [0.5, 1]}, n=2, reward_wrong=-1.0)
    sel = SELECTORS.build("lim", metric="reward").select(h)
    assert sel.scores.tolist() == pytest.approx([0.8, 0.8])
    assert sel.info["metric"] == "reward"
    with pytest.raises(ValueError, match="metric"):
        SELECTORS.build("lim", metric="accuracyy")


def test_lim_threshold_size_and_strict(make_history):
    # Dyadic numbers, so that the scores are exact: r_avg = [.5, .5], denominator = .5
    #   a, b: distance 1/16 + 1/16 = 1/8 -> s = 1 - (1/8)/(1/2) = .75 ; c, d: s = 1
    h = make_history({"a": [0.25, 0.75], "b": [0.75, 0.25], "c": [0.5, 0.5], "d": [0.5, 0.5]})
    sel = SELECTORS.build("lim", threshold=0.75).select(h)
    assert sel.scores.tolist() == [0.75, 0.75, 1.0, 1.0]
    assert sel.kept_ids == ["a", "b", "c", "d"]
    assert SELECTORS.build("lim", threshold=0.75, strict=True).select(h).kept_ids == ["c", "d"]
    top = SELECTORS.build("lim", size=3).select(h)
    assert top.kept_ids == ["a", "c", "d"]  # c, d, then the first of the tied .75s
    assert top.threshold is None and top.info["size"] == 3
    assert SELECTORS.build("lim").threshold == 0.6
    with pytest.raises(ValueError, match="not both"):
        SELECTORS.build("lim", threshold=0.5, size=3)


def test_lim_reports_never_solved_prompts_that_pass(make_history):
    # A pool with mean accuracy ~0.2: a never-solved prompt scores
    # 1 - sum r_avg^2 / sum (1 - r_avg)^2, high enough to pass 0.6.
    curves = {f"p{i}": [0.0, 0.25] for i in range(6)}
    curves["never"] = [0.0, 0.0]
    curves["good"] = [0.5, 1.0]
    sel = SELECTORS.build("lim").select(make_history(curves))
    avg = [0.5 / 8, (6 * 0.25 + 1) / 8]
    expected = 1 - sum(a * a for a in avg) / sum((1 - a) ** 2 for a in avg)
    assert sel.scores[sel.ids.index("never")].item() == pytest.approx(expected)
    assert expected >= 0.6 and "never" in sel.kept_ids
    assert sel.info["never_solved_kept"] == 1


def test_lim_when_every_prompt_is_perfect(make_history):
    sel = SELECTORS.build("lim").select(make_history({"a": [1, 1], "b": [1, 1]}))
    assert sel.scores.tolist() == [1.0, 1.0]


def _reference(path: Path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scored = [r for r in rows if r["lim_score"] is not None]
    scores = torch.tensor([r["lim_score"] for r in scored], dtype=torch.float64)
    return rows, scored, scores


@pytest.mark.parametrize("path", [SHARED_REF, SHIPPED_REF], ids=["shared", "shipped"])
def test_released_scores_theta_06_keeps_exactly_the_released_1389(path):
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    rows, scored, scores = _reference(path)
    assert len(rows) == 8523
    kept = {r["id"] for r, k in zip(scored, keep_mask(scores, 0.6, None).tolist()) if k}
    released = {r["id"] for r in rows if r["in_limr"]}
    assert len(kept) == 1389 and kept == released
    assert int(keep_mask(scores, 0.6, None, strict=True).sum()) == 1324


def test_shipped_reference_is_the_shared_one():
    if not SHARED_REF.is_file():
        pytest.skip("no ../shared")
    assert SHIPPED_REF.read_bytes() == SHARED_REF.read_bytes()


def test_pearson_is_a_separate_correlation_selector(make_history):
    h = make_history({"a": [0, 0.5, 1], "b": [1, 0.5, 0], "c": [0.5, 0.5, 0.5]}, n=2)
    sel = SELECTORS.build("pearson").select(h)
    # r_avg = [.5, .5, .5] is flat: correlation with a constant is defined as 0
    assert sel.scores.tolist() == [0.0, 0.0, 0.0]
    h2 = make_history({"a": [0, 0.5, 1], "b": [0, 0.5, 0.5], "c": [1, 0.5, 0]}, n=2)
    s = SELECTORS.build("pearson").select(h2).scores
    assert s[0].item() == pytest.approx(math.sqrt(3) / 2)  # corr([0,.5,1], [1/3,1/2,1/2])
    assert s[2].item() == pytest.approx(-math.sqrt(3) / 2)
