"""Every registered selector, by kind: builds from the common keywords and honours its contract."""

from __future__ import annotations

import pytest
import torch

import limr.selectors  # noqa: F401  (registers the built-in selectors)
from limr.config import CurriculumConfig, as_dict
from limr.registry import SELECTORS
from limr.types import GroupFilter, Selection, Selector


def _history(make_history):
    gen = torch.Generator().manual_seed(1)
    curves = {}
    for i in range(40):
        curves[f"p{i}"] = [(int(x) / 4) for x in torch.randint(0, 5, (5,), generator=gen)]
    curves["p3"][2] = None
    curves["p7"][4] = None
    return make_history(curves)


@pytest.mark.parametrize("name", SELECTORS.names())
def test_selector_contract(name, make_history):
    cls = SELECTORS.get(name)
    assert cls.kind in ("offline", "online", "curriculum"), name
    assert cls.__doc__, f"{name} needs a docstring"
    h = _history(make_history)
    if cls.kind == "offline":
        kwargs = {"size": 10} if cls.default_threshold is None else {}
        sel_obj = SELECTORS.build(name, threshold=None, metric="accuracy", seed=42, **kwargs)
        assert isinstance(sel_obj, Selector)
        sel = sel_obj.select(h)
        assert isinstance(sel, Selection)
        assert len(sel.ids) == len(sel.scores) == len(sel.keep)
        assert sel.keep.dtype == torch.bool and sel.scores.dtype == torch.float64
        assert set(sel.ids) <= set(h.ids)
        assert sel.info["selector"] == name and "never_solved_kept" in sel.info
        ids, scores = sel_obj.score(h)
        assert ids == sel.ids and torch.equal(scores, sel.scores)
        sized = SELECTORS.build(name, size=5).select(h)
        assert int(sized.keep.sum()) == 5
    elif cls.kind == "online":
        f = SELECTORS.build(name)
        assert isinstance(f, GroupFilter)
        correct = torch.rand(6, 4) < 0.5
        keep = f(correct, correct.float())
        assert keep.shape == (6,) and keep.dtype == torch.bool
    else:
        kwargs = {k: v for k, v in as_dict(CurriculumConfig()).items() if k != "enabled"}
        cur = SELECTORS.build(name, metric="accuracy", seed=42, **kwargs)
        chosen = cur.update(h, h.n.shape[1], list(h.ids))
        assert chosen and set(chosen) <= set(h.ids)
