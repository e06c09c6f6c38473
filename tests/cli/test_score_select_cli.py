"""``limr score`` and ``limr select``: the released LIMR scores, histories, rollout logs, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.cli import main
from limr.history import RewardHistory

ROOT = Path(__file__).resolve().parents[2]
SHARED_REF = ROOT.parent / "shared" / "data" / "limr_reference" / "selection.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _run_with_history(tmp_path: Path) -> Path:
    """A run folder whose history has 30 prompts x 4 epochs with varied curves."""
    run = tmp_path / "run"
    h = RewardHistory(run / "history")
    gen = torch.Generator().manual_seed(0)
    rate = torch.rand(30, generator=gen)
    step = 0
    for epoch in range(4):
        for half in (range(0, 15), range(15, 30)):
            step += 1
            ids = [f"q{i}" for i in half for _ in range(4)]
            p = torch.tensor([min(1.0, rate[i].item() * (epoch + 1) / 3) for i in half])
            correct = torch.rand(len(ids), generator=gen) < p.repeat_interleave(4)
            h.record(step, epoch, ids, correct, torch.where(correct, 1.0, -0.5))
            h.commit(step)
    return run


def test_select_on_released_scores_keeps_exactly_the_1389(tmp_path, capsys):
    if SHARED_REF.is_file():  # CI has ../shared; the shipped copy is checked below either way
        shared_out = tmp_path / "shared.jsonl"
        args = ["select", str(SHARED_REF), "--threshold", "0.6", "--out", str(shared_out)]
        assert main(args) == 0
        ref = _lines(SHARED_REF)
        assert {r["id"] for r in _lines(shared_out)} == {r["id"] for r in ref if r["in_limr"]}
        capsys.readouterr()
    assert main(["select", "shipped:limr_reference", "--out", str(tmp_path / "s.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "kept 1389 of 7936 scored prompts" in out and "1324" not in out.split("\n")[0]
    kept = {r["id"] for r in _lines(tmp_path / "s.jsonl")}
    ref = _lines(ROOT / "limr" / "data" / "limr_reference" / "selection.jsonl")
    assert kept == {r["id"] for r in ref if r["in_limr"]}
    assert len(kept) == 1389
    # the nearby-threshold table
    table = out.splitlines()
    i = next(k for k, line in enumerate(table) if "nearby thresholds" in line)
    assert table[i + 1].split()[4] == "0.60" and table[i + 2].split()[4] == "1389"
    # > 0.6 (the paper's wording) keeps 1,324
    assert main(["select", "shipped:limr_reference", "--strict", "--out", str(tmp_path / "g")]) == 0
    assert len(_lines(tmp_path / "g")) == 1324


def test_select_writes_the_kept_training_records(tmp_path):
    out = tmp_path / "subset.jsonl"
    args = ["select", "shipped:limr_reference", "--data", "shipped:math_train", "--out", str(out)]
    assert main(args) == 0
    records = _lines(out)
    assert len(records) == 1389 and {"id", "problem", "answer"} <= set(records[0])
    # rand the size of that selection, from the same pool
    rand = tmp_path / "rand.jsonl"
    assert (
        main(
            [
                "select",
                "shipped:limr_reference",
                "--selector",
                "rand",
                "--size-of",
                str(out),
                "--out",
                str(rand),
            ]
        )
        == 0
    )
    assert len(_lines(rand)) == 1389
    assert {r["id"] for r in _lines(rand)} != {r["id"] for r in records}


def test_score_then_select_equals_select_on_the_history(tmp_path, capsys):
    run = _run_with_history(tmp_path)
    scores = tmp_path / "scores.jsonl"
    assert main(["score", str(run), "--selector", "lim", "--out", str(scores)]) == 0
    rows = _lines(scores)
    assert len(rows) == 30 and set(rows[0]) == {"id", "score"}
    direct, via = tmp_path / "direct.jsonl", tmp_path / "via.jsonl"
    assert main(["select", str(run), "--threshold", "0.5", "--out", str(direct)]) == 0
    assert main(["select", str(scores), "--threshold", "0.5", "--out", str(via)]) == 0
    assert [r["id"] for r in _lines(direct)] == [r["id"] for r in _lines(via)]
    out = capsys.readouterr().out
    assert "never-solved prompts kept" in out
    for name in ("linear", "variance", "learnability", "pearson", "rand"):
        assert main(["score", str(run), "--selector", name, "--out", str(tmp_path / name)]) == 0
    assert (
        main(
            [
                "select",
                str(run),
                "--selector",
                "variance",
                "--size",
                "5",
                "--out",
                str(tmp_path / "v.jsonl"),
            ]
        )
        == 0
    )
    assert len(_lines(tmp_path / "v.jsonl")) == 5


def test_select_plots(tmp_path):
    run = _run_with_history(tmp_path)
    plots = tmp_path / "plots"
    args = ["select", str(run), "--size", "10", "--out", str(tmp_path / "k"), "--plot", str(plots)]
    assert main(args) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["lim_kept_curves.png", "lim_kept_vs_threshold.png", "lim_score_hist.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots.iterdir())


def _logs(folder: Path) -> None:
    folder.mkdir()
    template = "<|im_start|>system\nreason<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    step = 0
    for epoch in range(3):
        for probs in (("Compute 1+1.", "Compute 2+2."), ("Compute 3+3.",)):
            step += 1
            rows = []
            for k, prob in enumerate(probs):
                for s in range(4):
                    ok = s < epoch + k
                    rows.append(
                        {
                            "prompt": template.format(prob),
                            "response": "r",
                            "reward": 1 if ok else -0.5,
                        }
                    )
            (folder / f"step_{step}.json").write_text(json.dumps(rows))


def test_score_and_select_rollout_logs(tmp_path, capsys):
    logs = tmp_path / "logs"
    _logs(logs)
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(logs), "--out", str(out)]) == 2
    assert "--steps-per-epoch" in capsys.readouterr().err
    assert main(["score", str(logs), "--steps-per-epoch", "2", "--out", str(out)]) == 0
    rows = _lines(out)
    assert len(rows) == 3 and "prompt" in rows[0] and "<|im_start|>user" in rows[0]["prompt"]
    # select with --data matches prompt texts (chat template removed) to the data's problems
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "problem": f"Compute {i}+{i}.", "answer": str(2 * i)}) + "\n"
            for i in range(1, 5)
        )
    )
    sub = tmp_path / "sub.jsonl"
    args = [
        "select",
        str(logs),
        "--steps-per-epoch",
        "2",
        "--threshold",
        "-100",
        "--data",
        str(data),
        "--out",
        str(sub),
    ]
    assert main(args) == 0
    assert [r["id"] for r in _lines(sub)] == ["d1", "d2", "d3"]
    # max epochs
    assert (
        main(["score", str(logs), "--steps-per-epoch", "2", "--max-epochs", "1", "--out", str(out)])
        == 0
    )
    assert "over 1 epochs" in capsys.readouterr().out


def test_user_errors_exit_2(tmp_path, capsys):
    run = _run_with_history(tmp_path)
    o = str(tmp_path / "o")
    assert main(["select", str(run), "--selector", "dapo", "--out", o]) == 2
    assert "online" in capsys.readouterr().err
    assert main(["select", str(run), "--selector", "limm", "--out", o]) == 2
    assert "Did you mean 'lim'" in capsys.readouterr().err
    assert main(["select", str(run), "--selector", "rand", "--out", o]) == 2
    assert "needs a size" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "nothing"), "--out", o]) == 2
    assert main(["score", "shipped:limr_reference", "--out", o]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "score": 0.5}\n{"id": "b", "score": "x"}\n')
    assert main(["select", str(bad), "--out", o]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["select", str(run), "--threshold", "0.5", "--size", "3", "--out", o])


def _partial_run(tmp_path: Path) -> Path:
    """A run stopped mid-epoch: 24 prompts, 4 a step, 6 steps an epoch; epoch 1 has 4 of 6."""
    run = tmp_path / "partial"
    h = RewardHistory(run / "history")
    gen = torch.Generator().manual_seed(0)
    for step in range(10):
        epoch, pos = divmod(step, 6)
        perm = torch.randperm(24, generator=torch.Generator().manual_seed(epoch))
        ids = [f"q{i}" for i in perm[pos * 4 : pos * 4 + 4].tolist() for _ in range(4)]
        correct = torch.rand(len(ids), generator=gen) < 0.3 * (epoch + 1)
        h.record(step, epoch, ids, correct, correct.float(), epoch_steps=6)
        h.commit(step)
    return run


def test_score_and_select_use_whole_epochs_and_say_so(tmp_path, capsys):
    run = _partial_run(tmp_path)
    scores = tmp_path / "scores.jsonl"
    assert main(["score", str(run), "--out", str(scores)]) == 0
    out = capsys.readouterr().out
    assert len(_lines(scores)) == 24  # before: the 8 prompts epoch 1 had not reached, unscored
    assert "scored 24 of 24 prompts over 1 epochs" in out
    line = next(x for x in out.splitlines() if "whole epochs scored" in x)
    assert "1 of 2 recorded" in line and "epoch 1 is partial: 4 of 6 steps, 16 prompts" in line
    assert "left out" in line and "unscored prompts: 0 of 24" in line
    sub = tmp_path / "sub.jsonl"
    assert (
        main(["select", str(run), "--size", "5", "--out", str(sub), "--plot", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "kept 5 of 24 scored prompts" in out and "whole epochs scored: 1 of 2" in out
    # RAND draws from the same 24
    assert main(["select", str(run), "--selector", "rand", "--size", "24", "--out", str(sub)]) == 0
    assert len(_lines(sub)) == 24


def test_nonfinite_scores_are_written_as_null_and_read_back(tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "neginf_selector_plugin.py"
    plugin.write_text(
        "import torch\n"
        "from limr.registry import register_selector\n"
        "from limr.types import Selection\n"
        "@register_selector('test_neginf')\n"
        "class NegInf:\n"
        "    '''Scores -inf, 0.5, inf, nan.'''\n"
        "    kind = 'offline'\n"
        "    default_threshold = 0.0\n"
        "    def __init__(self, threshold=None, size=None, metric='accuracy', seed=42):\n"
        "        self.size = size\n"
        "    def select(self, history):\n"
        "        s = torch.tensor([-float('inf'), 0.5, float('inf'), float('nan')],\n"
        "                         dtype=torch.float64)[: len(history.ids)]\n"
        "        return Selection(list(history.ids), s, s >= 0, 0.0, {})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from limr.registry import SELECTORS

    h = RewardHistory(tmp_path / "run" / "history")
    for step in range(2):
        ids = ["a", "b", "c", "d"]
        h.record(step, step, ids, torch.tensor([1, 0, 1, 0]), torch.ones(4))
        h.commit(step)
    out = tmp_path / "scores.jsonl"
    try:
        args = ["score", str(tmp_path / "run"), "--selector", "test_neginf"]
        assert main([*args, "--plugins", "neginf_selector_plugin", "--out", str(out)]) == 0
    finally:
        SELECTORS._entries.pop("test_neginf", None)
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text  # valid JSON
    rows = [json.loads(x) for x in text.splitlines()]
    assert rows == [
        {"id": "a", "score": None, "nonfinite": "-inf"},
        {"id": "b", "score": 0.5},
        {"id": "c", "score": None, "nonfinite": "inf"},
        {"id": "d", "score": None, "nonfinite": "nan"},
    ]
    capsys.readouterr()
    # limr select reads them back: -inf and inf are scores, NaN is unscored
    sub = tmp_path / "sub.jsonl"
    assert main(["select", str(out), "--size", "3", "--out", str(sub)]) == 0
    assert "kept 3 of 3 scored prompts" in capsys.readouterr().out
    assert [r["id"] for r in _lines(sub)] == ["a", "b", "c"]
    assert _lines(sub)[0] == {"id": "a", "score": None, "nonfinite": "-inf"}
    assert main(["select", str(out), "--threshold", "0.4", "--out", str(sub)]) == 0
    assert [r["id"] for r in _lines(sub)] == ["b", "c"]
    # a file from before, with a bare -Infinity, still reads; a null without nonfinite is unscored
    old = tmp_path / "old.jsonl"
    old.write_text('{"id": "a", "score": -Infinity}\n{"id": "b", "score": 0.1}\n'
                   '{"id": "c", "score": null}\n')  # fmt: skip
    assert main(["select", str(old), "--size", "5", "--out", str(sub)]) == 0
    assert "kept 2 of 2 scored prompts" in capsys.readouterr().out


def test_select_and_score_read_other_frameworks_logs(tmp_path, capsys):
    """veRL dumps keyed by their templated prompt text: `limr score --data` maps them to the
    data's ids, `limr select --match-data` too (its own --data still names the records to
    write), and both agree with the same logs imported as a limr history."""
    data = tmp_path / "train.jsonl"
    problems = [f"Compute {i}+{i}." for i in range(6)]
    data.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "problem": p, "answer": "1"}) + "\n"
            for i, p in enumerate(problems)
        )  # fmt: skip
    )
    logs = tmp_path / "verl"
    logs.mkdir()
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 7):  # 2 steps an epoch, 3 prompts a step, 4 responses each
        lines = []
        for i in [(step % 2) * 3 + k for k in range(3)]:
            for _ in range(4):
                ok = bool(torch.rand(1, generator=gen) < 0.2 * (step + i % 3))
                prompt = f"system\nBe brief.\nuser\n{problems[i]}\nassistant\n"
                lines.append(json.dumps({"input": prompt, "output": "r", "gts": "1",
                                         "score": 1.0 if ok else 0.0, "step": step}))  # fmt: skip
        (logs / f"{step}.jsonl").write_text("\n".join(lines) + "\n")
    scores = tmp_path / "scores.jsonl"
    common = ["--steps-per-epoch", "2"]
    assert main(["score", str(logs), *common, "--data", str(data), "--out", str(scores)]) == 0
    assert {r["id"] for r in _lines(scores)} == {f"d{i}" for i in range(6)}
    kept = tmp_path / "kept.jsonl"
    args = ["select", str(logs), *common, "--match-data", str(data), "--size", "3",
            "--data", str(data), "--out", str(kept)]  # fmt: skip
    assert main(args) == 0
    records = _lines(kept)
    assert len(records) == 3 and {"id", "problem", "answer"} <= set(records[0])
    top3 = sorted(_lines(scores), key=lambda r: -r["score"])[:3]
    assert {r["id"] for r in records} == {r["id"] for r in top3}
    run = tmp_path / "run"
    assert main(["history", "import", str(logs), *common, "--data", str(data),
                 "--out", str(run)]) == 0  # fmt: skip
    again = tmp_path / "again.jsonl"
    assert main(["score", str(run), "--out", str(again)]) == 0
    assert _lines(again) == _lines(scores)
    capsys.readouterr()


def test_score_and_select_print_a_cheap_estimators_cost(tmp_path, capsys):
    run = _run_with_history(tmp_path)  # 30 prompts x 4 epochs x 4 rollouts = 480
    out = tmp_path / "prefix.jsonl"
    args = ["score", str(run), "--selector", "lim_prefix", "--selector-arg", "epochs=1"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rollouts used: 120 of 480 (25.0%); epochs 1 of 4" in text
    assert len(_lines(out)) == 30
    args = ["select", str(run), "--selector", "lim_prefix", "--selector-arg", "fraction=0.5"]
    assert main([*args, "--out", str(tmp_path / "kept.jsonl")]) == 0
    assert "rollouts used: 240 of 480 (50.0%); epochs 2 of 4" in capsys.readouterr().out


def test_select_a_subsample_run_extended_by_a_base_probe(tmp_path, capsys):
    run = _run_with_history(tmp_path)  # a run on q0..q29: 4 epochs
    base = RewardHistory(tmp_path / "probe" / "history")  # the base over the pool q0..q39
    ids = [f"q{i}" for i in range(40) for _ in range(4)]
    gen = torch.Generator().manual_seed(1)
    base.record(1, 0, ids, torch.rand(len(ids), generator=gen) < 0.4, torch.zeros(len(ids)))
    base.commit(1)
    out = tmp_path / "kept.jsonl"
    args = ["select", str(run), "--selector", "lim_subsample", "--size", "5", "--out", str(out),
            "--selector-arg", f"base_history={tmp_path / 'probe' / 'history'}"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "kept 5 of 40 scored prompts" in text and "(30 prompts, 10 more predicted" in text
    assert "whole epochs scored: 4 of 4" in text
    # the run's 480 rollouts and the base probe's 4 for each of the 10 predicted prompts
    assert "rollouts used: 520" in text
    assert len(_lines(out)) == 5
