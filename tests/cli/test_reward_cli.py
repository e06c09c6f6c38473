"""``limr reward IN.jsonl --out OUT.jsonl``: rewards and verdicts per line; FILE:LINE errors."""

from __future__ import annotations

import json
from pathlib import Path

from limr.cli import main


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ROWS = [
    {"response": "2+3 = 5, so \\boxed{5}", "answer": "5"},
    {"response": "\\boxed{5}", "answer": 5.0, "finished": False, "id": 7},
    {"response": "\\boxed{\\dfrac{1}{2}}", "answer": "0.5", "finished": True},
    {"response": "\\boxed{6}", "answer": "5"},
    {"response": "no box", "answer": "5"},
]


def test_reward_scores_every_line_and_keeps_its_fields(tmp_path, capsys):
    out = tmp_path / "out" / "scored.jsonl"
    assert main(["reward", str(_write(tmp_path / "in.jsonl", ROWS)), "--out", str(out)]) == 0
    scored = _read(out)
    assert [(r["reward"], r["correct"]) for r in scored] == [
        (1.0, True),
        (-1.0, False),  # unfinished
        (1.0, True),
        (-0.5, False),
        (-1.0, False),  # no box
    ]
    assert scored[1]["id"] == 7 and scored[1]["finished"] is False  # input fields are kept
    assert "5 responses scored with math_rule" in capsys.readouterr().err


def test_reward_name_and_kwargs(tmp_path):
    src = _write(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    assert main(["reward", str(src), "--out", str(out), "--reward", "correct"]) == 0
    assert [r["reward"] for r in _read(out)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    # config overrides may follow the options
    argv = ["reward", str(src), "--out", str(out), "reward.kwargs.wrong=-0.25"]
    assert main(argv) == 0
    assert _read(out)[3]["reward"] == -0.25


def test_reward_reports_every_bad_line(tmp_path, capsys):
    bad = _write(
        tmp_path / "bad.jsonl",
        [
            {"response": 5, "answer": "5"},
            "not json",
            {"response": "x"},
            {"response": "x", "answer": "1", "finished": "yes"},
            {"response": "x", "answer": "1"},
        ],
    )
    assert main(["reward", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: 'response' must be a string" in err
    assert f"{bad}:2: not valid JSON" in err
    assert f"{bad}:3: missing field 'answer'" in err
    assert f"{bad}:4: 'finished' must be true or false" in err
    assert f"{bad}:5" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_reward_usage_errors(tmp_path, capsys):
    src = _write(tmp_path / "in.jsonl", ROWS)
    out = str(tmp_path / "o.jsonl")
    assert main(["reward", str(src), "--out", out, "--reward", "mathrule"]) == 2
    assert "Did you mean 'math_rule'?" in capsys.readouterr().err
    assert main(["reward", str(src), "--out", out, "reward.kwargs.nope=1"]) == 2
    assert "its keyword arguments: correct, wrong" in capsys.readouterr().err
    assert main(["reward", str(tmp_path / "missing.jsonl"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
