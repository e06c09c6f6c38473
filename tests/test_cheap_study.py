"""The cheap-LIM study's agreement numbers and the report's "Cheap LIM" table, on a made-up
run folder with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.cheap_study import agreement, cheap_section, read_scores_file


def _scores(path: Path, rows: list[tuple[str, float | None, bool]]) -> str:
    lines = []
    for pid, s, kept in rows:
        rec = {"id": pid, "score": s, "kept": kept}
        if s == float("-inf"):
            rec = {"id": pid, "score": None, "nonfinite": "-inf", "kept": kept}
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _eval(root: Path, arm: str, seed: int, correct: list[bool]) -> None:
    (root / "eval").mkdir(exist_ok=True)
    problems = [{"id": f"t{i}", "correct": [c]} for i, c in enumerate(correct)]
    (root / "eval" / f"{arm}-s{seed}.json").write_text(
        json.dumps({"arith": {"problems": problems}})
    )


def _run(tmp_path: Path) -> tuple[Path, dict]:
    lim = _scores(
        tmp_path / "lim.jsonl",
        [("a", 0.9, True), ("b", 0.7, True), ("c", 0.3, False), ("d", float("-inf"), False)],
    )
    pre = _scores(
        tmp_path / "pre.jsonl",
        [("a", 0.8, True), ("b", 0.2, False), ("c", 0.65, True), ("d", 0.1, False)],
    )
    sel = {
        "lim": {"scores": lim, "info": {}},
        "lim_prefix": {"scores": pre, "info": {"cost_fraction": 0.25}},
    }
    return tmp_path, {"42": sel}


def test_read_scores_file_and_agreement(tmp_path):
    _, selections = _run(tmp_path)
    scores, kept = read_scores_file(selections["42"]["lim"]["scores"])
    assert scores["d"] == float("-inf") and kept == {"a", "b"}
    r = agreement(selections["42"]["lim_prefix"], selections["42"]["lim"])
    # ranks LIM: a4 b3 c2 d1; prefix: a4 b2 c3 d1 -> d^2 sum 2: rho = 1 - 12 / 60
    assert r["spearman"] == pytest.approx(0.8)
    assert r["jaccard"] == pytest.approx(1 / 3)  # {a, b} vs {a, c}
    assert r["cost_fraction"] == 0.25 and r["n_common"] == 4 and r["top_overlap"] == 0.5


def test_cheap_section_table(tmp_path):
    root, selections = _run(tmp_path)
    _eval(root, "lim", 42, [True, True, False, False])
    _eval(root, "lim_prefix", 42, [True, True, False, False])
    _eval(root, "rand", 42, [False, False, False, False])
    results = {
        "benchmarks": ["arith"],
        "arms": {"lim_prefix": {"42": {"arith": {"accuracy": 0.5}}}},
    }
    labels = {"lim": "LIM", "rand": "RAND", "lim_prefix": "LIM-prefix"}
    lines = cheap_section(root, results, selections, ["lim", "rand", "lim_prefix"], [42], labels)
    row = next(x for x in lines if x.startswith("| LIM-prefix"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # top 2: {a, b} vs {a, c}
    assert cells[1:7] == ["25%", "0.80", "2 (2)", "0.33", "0.50", "50.0"]
    assert cells[7] == "+0.0 [+0.0, +0.0]"  # identical to LIM on every problem
    assert cells[8].startswith("+50.0")
    assert cells[9] == "3 of 4"  # cost, Spearman, CI within LIM's; overlap 0.33 < 0.7
    assert any("Closest to the goals: LIM-prefix" in x for x in lines)
    assert cheap_section(root, results, selections, ["lim"], [42], labels) == []


def test_prefix_agreement_reaches_one_at_the_whole_history(tmp_path):
    import limr.selectors  # noqa: F401  (registers lim)
    from limr.cheap_study import prefix_agreement
    from limr.history import HistoryArrays
    from limr.pipeline import _selection_entry
    from limr.registry import SELECTORS

    gen = torch.Generator().manual_seed(0)
    n = torch.full((20, 4), 4)
    correct = torch.randint(0, 5, (20, 4), generator=gen)
    h = HistoryArrays(ids=[f"q{i}" for i in range(20)], n=n, n_correct=correct,
                      reward_sum=correct.double())  # fmt: skip
    lim = _selection_entry(tmp_path, "lim", 0, SELECTORS.build("lim", size=5).select(h))
    rows = prefix_agreement(h, lim)
    assert [r["epochs"] for r in rows] == [1, 2, 3, 4]
    assert [r["cost_fraction"] for r in rows] == [0.25, 0.5, 0.75, 1.0]
    assert rows[-1]["spearman"] == pytest.approx(1.0) and rows[-1]["jaccard"] == 1.0
    assert rows[0]["spearman"] < 1.0
