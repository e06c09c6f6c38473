"""``limr history export`` / ``show``: one line per (prompt, epoch), from runs and rollout logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.cli import main
from limr.history import RewardHistory


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_export_a_run_and_read_it_back(tmp_path, capsys):
    run = tmp_path / "run"
    h = RewardHistory(run / "history")
    h.record(1, 0, ["a", "a", "b"], torch.tensor([1, 0, 0]), torch.tensor([1.0, -0.5, -1.0]))
    h.record(2, 1, ["b", "b"], torch.tensor([1, 1]), torch.tensor([1.0, 1.0]))
    h.commit(2)
    out = tmp_path / "cells.jsonl"
    assert main(["history", "export", str(run), "--out", str(out)]) == 0
    assert _lines(out) == [
        {"id": "a", "epoch": 0, "n": 2, "n_correct": 1, "reward_sum": 0.5, "epoch_complete": True},
        {"id": "b", "epoch": 0, "n": 1, "n_correct": 0, "reward_sum": -1.0, "epoch_complete": True},
        {"id": "b", "epoch": 1, "n": 2, "n_correct": 2, "reward_sum": 2.0, "epoch_complete": True},
    ]
    assert "3 (prompt, epoch) cells" in capsys.readouterr().out
    # the export is itself a valid input of score
    scores = tmp_path / "s.jsonl"
    assert main(["score", str(out), "--selector", "learnability", "--out", str(scores)]) == 0
    assert [r["score"] for r in _lines(scores)] == pytest.approx([0.25, 2 / 3 * (1 / 3)])
    assert main(["history", "show", str(run / "history")]) == 0
    shown = capsys.readouterr().out
    assert "2 prompts, 2 epochs, 5 rollouts" in shown


def test_export_rollout_logs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for step in (1, 2, 3):
        rows = [{"prompt": "P", "response": "x", "reward": 1 if step > 1 else -1}] * 2
        (logs / f"step_{step}.json").write_text(json.dumps(rows))
    out = tmp_path / "cells.jsonl"
    args = ["history", "export", str(logs), "--steps-per-epoch", "2", "--out", str(out)]
    assert main(args) == 0
    assert [(r["epoch"], r["n"], r["n_correct"]) for r in _lines(out)] == [(0, 4, 2), (1, 2, 2)]
    assert main(["history", "export", str(logs), "--out", str(out)]) == 2
    assert main(["history", "export", str(tmp_path / "run")]) == 2


def test_an_export_keeps_which_epochs_are_whole(tmp_path, capsys):
    """Five steps of two an epoch: the third epoch is half recorded. Its cells say so, and LIM
    from the export scores the same two whole epochs as LIM from the logs."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for step in range(1, 6):
        rows = [{"prompt": p, "response": "x", "reward": 1 if (step + k) % 3 else -1}
                for k, p in enumerate(["P", "Q", "R"]) for _ in range(2)]  # fmt: skip
        (logs / f"step_{step}.json").write_text(json.dumps(rows))
    out = tmp_path / "cells.jsonl"
    assert main(["history", "export", str(logs), "--steps-per-epoch", "2", "--out", str(out)]) == 0
    said = {(r["epoch"], r["epoch_complete"]) for r in _lines(out)}
    assert said == {(0, True), (1, True), (2, False)}
    from_logs, from_export = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    capsys.readouterr()
    assert main(["score", str(logs), "--steps-per-epoch", "2", "--out", str(from_logs)]) == 0
    assert "whole epochs scored: 2 of 3" in capsys.readouterr().out
    assert main(["score", str(out), "--out", str(from_export)]) == 0
    assert "whole epochs scored: 2 of 3" in capsys.readouterr().out
    pairs = [(r.get("id", r.get("prompt")), r["score"]) for r in _lines(from_export)]
    assert pairs == [(r["prompt"], r["score"]) for r in _lines(from_logs)]
    # an export whose lines disagree about an epoch is refused, the line named
    lines = out.read_text().splitlines()
    bad = json.loads(lines[-1])
    bad["epoch_complete"] = not bad["epoch_complete"]
    out.write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    assert main(["score", str(out), "--out", str(from_export)]) == 2
    assert (
        f"{out}:{len(lines) + 1}: epoch {bad['epoch']} is epoch_complete="
        in capsys.readouterr().err
    )
