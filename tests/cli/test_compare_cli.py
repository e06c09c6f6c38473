"""``limr compare-scores A B``: our scores files, the released format, histories, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.cli import main
from limr.history import RewardHistory


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_ours_against_released_format(tmp_path, capsys):
    ours = _write(
        tmp_path / "ours.jsonl",
        [
            {"id": "a", "score": 0.9},
            {"id": "b", "score": 0.7},
            {"id": "c", "score": None, "nonfinite": "-inf"},
            {"id": "d", "score": 0.1},
        ],
    )
    released = _write(
        tmp_path / "released.jsonl",
        [
            {"id": "a", "lim_score": 0.8, "in_limr": True},
            {"id": "b", "lim_score": 0.2, "in_limr": False},
            {"id": "c", "lim_score": -2.0, "in_limr": False},
            {"id": "d", "lim_score": 0.5, "in_limr": False},
            {"id": "e", "lim_score": None, "in_limr": False},  # unscored
        ],
    )
    out_json, png = tmp_path / "r.json", tmp_path / "plot.png"
    args = ["compare-scores", str(ours), str(released), "--top-k", "1", "--top-k", "2"]
    assert main(args + ["--json", str(out_json), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "common prompts: 4 (only in A: 0, only in B: 0)" in text
    r = json.loads(out_json.read_text())
    # ranks A: a4 b3 c1 d2, B: a4 b2 c1 d3 -> d^2 sum 2: rho = 1 - 12 / 60
    assert r["spearman"] == pytest.approx(0.8)
    assert r["kendall"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant (b-d)
    assert r["top_k"]["1"]["overlap"] == 1.0
    assert r["top_k"]["2"] == {"shared": 1, "overlap": 0.5, "jaccard": pytest.approx(1 / 3)}
    assert r["nonfinite"] == 1
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_history_is_scored_by_lim(tmp_path, capsys):
    h = RewardHistory(tmp_path / "run" / "history")
    gen = torch.Generator().manual_seed(0)
    ids = [f"q{i}" for i in range(12) for _ in range(4)]
    for epoch in range(3):
        p = torch.linspace(0.05, 0.9, 12).repeat_interleave(4) * (epoch + 1) / 3
        correct = torch.rand(len(ids), generator=gen) < p
        h.record(epoch + 1, epoch, ids, correct, correct.float())
        h.commit(epoch + 1)
    scores = tmp_path / "s.jsonl"
    assert main(["score", str(tmp_path / "run"), "--out", str(scores)]) == 0
    capsys.readouterr()
    assert (
        main(["compare-scores", str(tmp_path / "run"), str(scores), "--json", str(tmp_path / "r")])
        == 0
    )
    r = json.loads((tmp_path / "r").read_text())
    assert r["n_common"] == 12 and r["spearman"] == pytest.approx(1.0)
    assert "LIM over 3 epochs" in r["a"]


def test_no_common_prompts_is_a_user_error(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", [{"id": "a", "score": 1.0}])
    b = _write(tmp_path / "b.jsonl", [{"id": "b", "score": 1.0}])
    assert main(["compare-scores", str(a), str(b)]) == 2
    assert "no prompt in common" in capsys.readouterr().err
    assert main(["compare-scores", str(a), str(tmp_path / "missing.jsonl")]) == 2
    assert main(["compare-scores", str(a), str(b), "--top-k", "0"]) == 2
