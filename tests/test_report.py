"""limr.report on a run folder made by hand: the table, the comparisons, what ran, the FULL
run's learning curve and the plots."""

import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from limr import report
from limr.config import LimrConfig
from limr.history import RewardHistory
from limr.stats import HIGHER, LOWER, NO_DIFFERENCE, curve_kinds, paired_bootstrap, verdict_of

BENCH = "arith"
LEVELS = (1, 2, 10)  # "10" sorts after "2"
N_PROBLEMS = 30
N_SAMPLES = 2
ARMS = ["full", "lim", "linear", "rand", "curriculum"]
# the FULL history of every seed: 6 prompts x 3 epochs, 4 rollouts per cell
HISTORY_N = np.full((6, 3), 4)
HISTORY_CORRECT = np.array(
    [
        [0, 0, 0],  # never solved
        [0, 0, 0],  # never solved
        [4, 4, 3],  # mastered early
        [0, 2, 4],  # learned during the run
        [1, 3, 3],  # learned during the run
        [2, 2, 2],  # other
    ]
)
HISTORY_KINDS = {"never solved": 2, "mastered early": 1, "learned during the run": 2, "other": 1}


def _accuracies(seeds: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per arm and seed, each problem's accuracy (a multiple of 1 / N_SAMPLES): LIM well above
    RAND, LIM close to FULL, CURRICULUM well below FULL."""
    rng = np.random.default_rng(0)
    out: dict[str, dict[int, np.ndarray]] = {a: {} for a in ARMS}
    for s in seeds:
        full = rng.integers(0, N_SAMPLES + 1, N_PROBLEMS) / N_SAMPLES
        out["full"][s] = full
        flip = rng.random(N_PROBLEMS) < 0.2
        out["lim"][s] = np.where(flip, 1.0 - full, full)
        out["rand"][s] = np.clip(out["lim"][s] - 0.5 * (rng.random(N_PROBLEMS) < 0.8), 0, 1)
        out["linear"][s] = rng.integers(0, N_SAMPLES + 1, N_PROBLEMS) / N_SAMPLES
        out["curriculum"][s] = np.clip(full - 0.5 * (rng.random(N_PROBLEMS) < 0.9), 0, 1)
    return out


def _eval_file(acc: np.ndarray) -> dict:
    problems = []
    for p, a in enumerate(acc.tolist()):
        k = round(a * N_SAMPLES)
        problems.append(
            {
                "id": f"arith-test-{p:05d}",
                "level": LEVELS[p % len(LEVELS)],
                "correct": [True] * k + [False] * (N_SAMPLES - k),
            }
        )
    by_level = {
        str(lv): float(np.mean([a for p, a in enumerate(acc) if LEVELS[p % len(LEVELS)] == lv]))
        for lv in LEVELS
    }
    summary = {
        "accuracy": float(acc.mean()),
        "by_level": by_level,
        "n_problems": len(acc),
        "n_samples": N_SAMPLES,
    }
    return {BENCH: {**summary, "problems": problems}}


def _write_history(path: Path) -> None:
    """HISTORY_N / HISTORY_CORRECT as a history folder (one step per epoch)."""
    expected = RewardHistory.from_arrays(
        [f"p{i}" for i in range(len(HISTORY_N))], HISTORY_N, HISTORY_CORRECT, HISTORY_CORRECT
    )
    h = RewardHistory(path)
    for e in range(HISTORY_N.shape[1]):
        ids, correct = [], []
        for i, pid in enumerate(expected.ids):
            ids += [pid] * int(HISTORY_N[i, e])
            correct += [True] * int(HISTORY_CORRECT[i, e])
            correct += [False] * int(HISTORY_N[i, e] - HISTORY_CORRECT[i, e])
        h.record(e + 1, e, ids, np.array(correct), np.array(correct, dtype=float))
        h.commit(e + 1)
    loaded = RewardHistory.load(path)
    assert loaded.ids == expected.ids and (loaded.n_correct == expected.n_correct).all()


def _selection(root: Path, name: str, seed: int, scores: list[float], keep: list[bool], **kw):
    sel_dir = root / "selections"
    ids = [f"p{i}" for i in range(len(scores))]
    path = sel_dir / f"{name}-s{seed}.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i, k in zip(ids, keep) if k))
    scores_path = sel_dir / f"{name}-s{seed}.scores.jsonl"
    scores_path.write_text(
        "".join(
            json.dumps({"id": i, "score": s, "kept": k}) + "\n"
            for i, s, k in zip(ids, scores, keep)
        )
    )
    threshold = kw.pop("threshold", None)
    size = kw.pop("size", None)
    info = {"size": size, "comparison": ">=", "never_solved_kept": kw.pop("never", 0)}
    return {
        "path": str(path),
        "scores": str(scores_path),
        "n_kept": sum(keep),
        "n_scored": len(scores),
        "threshold": threshold,
        "info": info,
        **kw,
    }


def make_run(root: Path, seeds: list[int], *, top_n: bool = False, linear_skipped=()) -> dict:
    """A run folder by hand; returns write_report's arguments and the accuracies behind it."""
    (root / "selections").mkdir(parents=True)
    (root / "eval").mkdir()
    acc = _accuracies(seeds)
    results: dict = {"benchmarks": [BENCH], "arms": {}}
    base = _eval_file(np.full(N_PROBLEMS, 0.5))
    (root / "eval" / "base.json").write_text(json.dumps(base))
    results["arms"]["base"] = {
        "-": {BENCH: {k: v for k, v in base[BENCH].items() if k != "problems"}}
    }
    selections = {}
    scores = [0.9, 0.95, 0.1, 0.7, 0.65, 0.3]
    for s in seeds:
        if top_n:
            lim = _selection(
                root,
                "lim",
                s,
                scores,
                [True, True, False, True, False, False],
                size=3,
                never=2,
                label="LIM",
                selector="lim",
            )
        else:
            lim = _selection(
                root,
                "lim",
                s,
                scores,
                [x >= 0.6 for x in scores],
                threshold=0.6,
                never=2,
                label="LIM",
                selector="lim",
                nearby={"0.50": 4, "0.60": 4, "0.70": 3},
            )
        keep_linear = [False] * 6 if s in linear_skipped else [True, False] * 3
        linear = _selection(root, "linear", s, scores, keep_linear, threshold=0.7)
        rand = _selection(
            root,
            "rand",
            s,
            scores,
            [True] * lim["n_kept"] + [False] * (6 - lim["n_kept"]),
            size=lim["n_kept"],
        )
        sel = {"lim": lim, "linear": linear, "rand": rand, "n_prompts": 6, "epochs": 3}
        (root / "selections" / f"selections-s{s}.json").write_text(json.dumps(sel))
        selections[str(s)] = sel
        for arm in ARMS:
            if arm == "linear" and s in linear_skipped:
                continue
            arm_dir = root / "arms" / f"{arm}-s{s}"
            arm_dir.mkdir(parents=True)
            record = _eval_file(acc[arm][s])
            (root / "eval" / f"{arm}-s{s}.json").write_text(json.dumps(record))
            summary = {k: v for k, v in record[BENCH].items() if k != "problems"}
            results["arms"].setdefault(arm, {})[str(s)] = {BENCH: summary}
            train = {"steps": 8, "epochs": 3, "prompts": 6 if arm in ("full", "curriculum") else 3}
            if arm == "curriculum":
                train["curriculum_schedule"] = [
                    {
                        "epoch": e,
                        "theta": 0.5 + 0.05 * e,
                        "size": 6 - e,
                        "mean_accuracy": 0.3,
                        "n_mastered": e,
                        "floor": 2,
                    }
                    for e in (1, 2)
                ]
            (arm_dir / "train_summary.json").write_text(json.dumps(train))
            heldout = [{"step": k, BENCH: 0.2 + 0.01 * k + 0.01 * (s - 42)} for k in (0, 4, 8)]
            (arm_dir / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
            metrics = [{"step": k, "train/correct_rate": 0.1 * (k % 5)} for k in range(1, 9)]
            (arm_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
            if arm == "full":
                _write_history(arm_dir / "history")
    return {"results": results, "selections": selections, "acc": acc}


def _expected_row(name: str, a, b, shape: str, words: dict[str, str]) -> tuple[str, str]:
    r = paired_bootstrap(
        a, b, n_boot=report.N_BOOT, seed=report.BOOTSTRAP_SEED, confidence=report.CONFIDENCE
    )
    verdict = words[verdict_of(r.low, r.high)]
    row = (
        f"| {name} | {BENCH} | {100 * r.mean:+.1f} | [{100 * r.low:+.1f}, {100 * r.high:+.1f}] "
        f"| {shape} | {verdict} |"
    )
    return row, verdict_of(r.low, r.high)


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_of_three_seeds(tmp_path):
    seeds = [42, 43, 44]
    root = tmp_path / "run"
    run = make_run(root, seeds, linear_skipped=(44,))
    path = report.write_report(root, LimrConfig(), run["results"], run["selections"], ARMS, seeds)
    text = path.read_text()
    acc = run["acc"]

    # comparisons: the rows are paired_bootstrap on the same per-problem data
    comparisons = _section(text, "Comparisons")

    def stack(arm: str, ss: list[int]) -> np.ndarray:
        return np.stack([acc[arm][s] for s in ss])

    cases = [
        ("LIM - RAND", "lim", "rand", seeds, "LIM higher than RAND"),
        ("LIM - FULL", "lim", "full", seeds, None),
        ("LIM - LINEAR", "lim", "linear", [42, 43], None),
        ("CURRICULUM - FULL", "curriculum", "full", seeds, "CURRICULUM lower than FULL"),
    ]
    found = set()
    for name, a, b, ss, wanted in cases:
        words = {
            HIGHER: f"{name.split(' - ')[0]} higher than {name.split(' - ')[1]}",
            LOWER: f"{name.split(' - ')[0]} lower than {name.split(' - ')[1]}",
            NO_DIFFERENCE: "no difference detected",
        }
        shape = f"{len(ss)} x {N_PROBLEMS}" + ("" if ss == seeds else " (seeds 42, 43)")
        row, verdict = _expected_row(name, stack(a, ss), stack(b, ss), shape, words)
        assert row in comparisons, f"{row!r} not in\n{comparisons}"
        if wanted:
            assert words[verdict] == wanted
        found.add(verdict)
    assert NO_DIFFERENCE in found  # the data hold a comparison whose CI spans 0
    assert "beat" not in text and "EMBEDDED_TASK_FIGURES" not in text

    # the results table: levels in numeric order, mean ± std over the seeds, base once
    table = _section(text, "Results")
    assert "| arm | prompts | arith L1 | arith L2 | arith L10 | arith |" in table
    lim_row = re.search(r"^\| LIM \|(.*)$", table, re.M).group(1)
    # the first row of an arm anywhere in the report is its results row (what test_pipeline reads)
    assert re.search(r"^\| LIM \|(.*)$", text, re.M).group(1) == lim_row
    overall = [float(acc["lim"][s].mean()) for s in seeds]
    expected = f"{100 * statistics.mean(overall):.1f} ± {100 * statistics.stdev(overall):.1f}"
    assert lim_row.rstrip().endswith(f"| {expected} |")
    assert re.search(r"^\| base \| - \| 50\.0 \| 50\.0 \| 50\.0 \| 50\.0 \|$", table, re.M)
    assert "`base` is one evaluation" in table
    assert "LINEAR was evaluated for 2 of 3 seeds (not for seed 44" in table

    # what ran: seeds, the selection rule of each seed, the step budgets
    ran = _section(text, "What ran")
    assert "Seeds: 42, 43, 44" in ran
    for s in seeds:
        assert f"- seed {s}, from 3 epochs" in ran
    assert "theta >= 0.6) kept **4** of 6 scored" in ran
    assert "| FULL | 8 | 3 | 6 |" in ran
    assert "| LINEAR | 8 (not trained for seed 44) | 3 | 3 |" in ran
    assert "| CURRICULUM | 8 | 3 | dynamic 4-5 of 6 |" in ran

    # the FULL run's learning curve: per-epoch pool accuracy, its rise, the kinds of curves
    curve = _section(text, "The FULL run's learning curve")
    pool = HISTORY_CORRECT.sum(0) / HISTORY_N.sum(0)
    kinds = curve_kinds(HISTORY_N, HISTORY_CORRECT).counts
    assert kinds == HISTORY_KINDS
    cells = ", ".join(f"{100 * a:.1f}" for a in pool)
    counts = " | ".join(str(v) for v in HISTORY_KINDS.values())
    for s in seeds:
        assert f"| {s} | {cells} | {100 * (pool[-1] - pool[0]):+.1f} | {counts} | 2 of 4 |" in curve

    # the plots exist and are in the report
    pngs = [
        "heldout",
        "accuracy_vs_step",
        "train_accuracy_vs_step",
        "lim_histogram",
        "lim_curves",
        "curriculum",
    ]
    for png in pngs:
        assert (root / "plots" / f"{png}.png").stat().st_size > 1000
        assert f"(plots/{png}.png)" in text


def test_report_of_one_seed_in_top_n_mode_with_a_skipped_arm(tmp_path):
    root = tmp_path / "run"
    run = make_run(root, [42], top_n=True, linear_skipped=(42,))
    arms = ARMS
    path = report.write_report(root, LimrConfig(), run["results"], run["selections"], arms, [42])
    text = path.read_text()
    comparisons = _section(text, "Comparisons")
    assert (
        "| LIM - LINEAR | arith | - | - | - | not compared: no per-problem evaluation of "
        "LINEAR |" in comparisons
    )
    assert f"| 1 x {N_PROBLEMS} |" in comparisons
    assert "One seed only" in comparisons
    assert "| LINEAR | 0 (skipped: nothing selected) |" in _section(text, "Results")
    assert "the top 3 by score) kept **3** of 6 scored" in _section(text, "What ran")
    assert (root / "plots" / "lim_histogram.png").stat().st_size > 1000


def test_selection_cut_in_both_modes(tmp_path):
    (tmp_path / "selections").mkdir()
    scores = [0.9, 0.95, 0.1, 0.7]
    top = _selection(tmp_path, "lim", 1, scores, [True, True, False, True], size=3)
    assert report.selection_cut(top) == (0.7, "top 3: last kept score 0.700")
    thr = _selection(tmp_path, "lim", 2, scores, [True, True, False, True], threshold=0.6)
    assert report.selection_cut(thr) == (0.6, "theta = 0.6")
    none = _selection(tmp_path, "lim", 3, scores, [False] * 4, size=0)
    assert report.selection_cut(none)[0] is None


def test_arm_curves_are_a_mean_and_band_with_seeds_and_a_line_without():
    plt = report._plt()
    fig, ax = plt.subplots()
    curves = {
        "lim": [([0, 4], [10.0, 20.0]), ([0, 4], [12.0, 22.0]), ([0, 4], [14.0, 30.0])],
        "rand": [([0, 4], [5.0, 6.0])],
    }
    assert report._plot_arm_curves(ax, curves, report.LABELS)
    assert ax.get_legend_handles_labels()[1] == ["LIM (mean of 3)", "RAND"]
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [[12.0, 24.0], [5.0, 6.0]]
    assert len(ax.collections) == 1  # the band of LIM only
    plt.close(fig)
    fig, ax = plt.subplots()
    assert not report._plot_arm_curves(ax, {"rand": curves["rand"]}, report.LABELS)
    plt.close(fig)


def test_mean_band_uses_the_steps_every_seed_has():
    steps, mean, low, high = report._mean_band(
        [([0, 4, 8], [10.0, 20.0, 30.0]), ([0, 4], [12.0, 26.0])]
    )
    assert steps == [0, 4] and mean == [11.0, 23.0] and low == [10.0, 20.0] and high == [12.0, 26.0]


def test_problem_accuracies_and_pairing_by_id(tmp_path):
    (tmp_path / "eval").mkdir()
    a = {
        BENCH: {
            "problems": [
                {"id": "x", "correct": [True, False]},
                {"id": "y", "correct": [True, True]},
            ]
        }
    }
    b = {
        BENCH: {
            "problems": [
                {"id": "y", "correct": [False, False]},
                {"id": "x", "correct": [True, True]},
            ]
        }
    }
    (tmp_path / "eval" / "lim-s1.json").write_text(json.dumps(a))
    (tmp_path / "eval" / "rand-s1.json").write_text(json.dumps(b))
    assert report.problem_accuracies(a[BENCH]) == {"x": 0.5, "y": 1.0}
    used, acc_a, acc_b = report.paired_accuracies(tmp_path, "lim", "rand", [1, 2], BENCH)
    assert used == [1]
    assert acc_a.tolist() == [[0.5, 1.0]] and acc_b.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("levels", [["10", "2", "1", "b", "a"]])
def test_levels_sort_numerically(levels):
    assert sorted(levels, key=report._level_key) == ["1", "2", "10", "a", "b"]
