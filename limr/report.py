"""The report of a ``limr run``: ``report.md`` with the paper-style table and the PNG plots.

Numbers are copied from the run folder (``eval.json``, ``eval/<arm>-s<seed>.json``, each arm's
``train_summary.json``, ``heldout.jsonl`` and ``metrics.jsonl``, the FULL run's reward history
and ``selections/selections-s<seed>.json``), never tuned. Differences between arms are stated
with a paired bootstrap confidence interval (:func:`limr.stats.paired_bootstrap`) and a verdict
that follows the interval: when it holds 0, the report says that no difference was detected.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from limr.cheap_study import CHEAP_ARMS, CHEAP_LABELS
from limr.config import LimrConfig
from limr.stats import (
    END_EPOCHS,
    HIGHER,
    KINDS,
    LEARNED_END_MIN,
    LEARNED_RISE_MIN,
    LEARNED_START_MAX,
    LOWER,
    MASTERED_ACCURACY,
    NEVER_SOLVED,
    START_EPOCHS,
    BootstrapResult,
    curve_kinds,
    paired_bootstrap,
    verdict_of,
)

LABELS = {
    "base": "base",
    "full": "FULL",
    "lim": "LIM",
    "linear": "LINEAR",
    "rand": "RAND",
    "curriculum": "CURRICULUM",
    **CHEAP_LABELS,
}
SUBSET_ARMS = ("lim", "linear", "rand", *CHEAP_ARMS)
COMPARISONS = (("lim", "rand"), ("lim", "full"), ("lim", "linear"), ("curriculum", "full"))
"""The pairs (A, B) of the Comparisons section, A - B, when both arms are in the run."""
N_BOOT = 10000
"""Bootstrap resamples of each comparison."""
CONFIDENCE = 0.95
"""Level of the comparisons' confidence intervals."""
BOOTSTRAP_SEED = 0
"""Seed of the comparisons' resampling."""
SMOOTH_STEPS = 10
"""Window of the running mean of the training-accuracy plot."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _read_json(path: Path) -> Any:
    """The JSON at ``path``, None when there is no such file."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _labels(selections: dict, seeds: list[int]) -> dict[str, str]:
    """Arm names of the report: the ``lim`` arm carries the name of the selector that made it
    (the selections' ``label``, e.g. VARIANCE), the others their fixed names."""
    labels = dict(LABELS)
    for s in seeds:
        label = (selections.get(str(s)) or {}).get("lim", {}).get("label")
        if label:
            labels["lim"] = label
            break
    return labels


def _level_key(level: str) -> tuple:
    """Levels in numeric order ("2" before "10"); names that are not numbers after them."""
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def _mean_spread(values: list[float | None]) -> str:
    """``mean ± std`` in % over the seeds (sample standard deviation), one value as is."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _smooth(y: list[float], k: int) -> list[float]:
    """Running mean over the last ``k`` values (fewer at the start)."""
    out, acc = [], 0.0
    for i, v in enumerate(y):
        acc += v
        if i >= k:
            acc -= y[i - k]
        out.append(acc / min(i + 1, k))
    return out


def _distinct(values: list[Any]) -> str:
    """The values of the seeds, once when they agree, else each (``a/b``)."""
    shown = [v for v in values if v is not None]
    if not shown:
        return "-"
    unique = list(dict.fromkeys(shown))
    return "/".join(f"{v:,}" if isinstance(v, int) else str(v) for v in unique)


# ---------------------------------------------------------------------------------------------
# the results table


def results_table(
    results: dict, selections: dict, arms: list[str], seeds: list[int], root: Path
) -> str:
    """The markdown table: per arm, the prompts it used and its accuracy (%) per level of the
    first benchmark and per benchmark (mean ± std over the seeds that evaluated it), with notes
    on the base (one evaluation) and on arms evaluated for fewer seeds than the run has."""
    labels = _labels(selections, seeds)
    benches = results["benchmarks"]
    first = benches[0]
    found: set[str] = set()
    for per_seed in results["arms"].values():
        for summary in per_seed.values():
            found.update(summary.get(first, {}).get("by_level") or {})
    levels = sorted(found, key=_level_key)
    header = ["arm", "prompts"] + [f"{first} L{lv}" for lv in levels] + benches
    if len(benches) > 1:
        header.append("AVG")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for arm in ["base", *arms]:
        per_seed = results["arms"].get(arm)
        if not per_seed:
            if arm in SUBSET_ARMS:
                empty = ["-"] * (len(header) - 2)
                lines.append(
                    f"| {labels[arm]} | 0 (skipped: nothing selected) | " + " | ".join(empty) + " |"
                )
            continue
        runs = list(per_seed.values())
        row = [labels[arm], _prompts_used(arm, selections, seeds, root)]
        for lv in levels:
            row.append(
                _mean_spread([(r.get(first, {}).get("by_level") or {}).get(lv) for r in runs])
            )
        accs_per_bench = []
        for b in benches:
            accs = [r[b]["accuracy"] for r in runs if b in r]
            accs_per_bench.append(accs)
            row.append(_mean_spread(accs))
        if len(benches) > 1:
            row.append(_mean_spread([statistics.mean(x) for x in zip(*accs_per_bench)]))
        lines.append("| " + " | ".join(row) + " |")
        if arm != "base" and len(runs) < len(seeds):
            missing = [str(s) for s in seeds if str(s) not in per_seed]
            notes.append(
                f"{labels[arm]} was evaluated for {len(runs)} of {len(seeds)} seeds (not for seed "
                f"{', '.join(missing)}: its selection kept no prompts)."
            )
    if "base" in results["arms"]:
        notes.insert(0, "`base` is one evaluation of the untrained policy (no training seeds).")
    return "\n".join(lines + ([""] + notes if notes else []))


def _prompts_used(arm: str, selections: dict, seeds: list[int], root: Path) -> str:
    if arm == "base":
        return "-"
    if arm in SUBSET_ARMS:
        return _distinct(sorted({selections[str(s)][arm]["n_kept"] for s in seeds}))
    if arm == "full":
        return _distinct(sorted({selections[str(s)]["n_prompts"] for s in seeds}))
    sizes = [e["size"] for s in seeds for e in _schedule(root, s) if e.get("size") is not None]
    return f"dynamic {min(sizes)}-{max(sizes)}" if sizes else "dynamic"


def _schedule(root: Path, seed: int) -> list[dict]:
    """The curriculum arm's schedule of one seed (``train_summary.json``), [] when none."""
    summary = _read_json(root / "arms" / f"curriculum-s{seed}" / "train_summary.json") or {}
    return summary.get("curriculum_schedule") or []


# ---------------------------------------------------------------------------------------------
# comparisons


def problem_accuracies(record: dict) -> dict[str, float]:
    """Each problem's accuracy (the fraction of its samples that are correct) in one
    benchmark's evaluation record (``problems``: ``{"id", "correct": [bool, ...]}``)."""
    return {
        str(p["id"]): sum(map(bool, p["correct"])) / len(p["correct"]) for p in record["problems"]
    }


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` against arm ``b`` on one benchmark.

    Attributes:
        a, b: the arms (keys such as ``lim``).
        bench: the benchmark.
        seeds: the seeds both arms were evaluated for (the rows of the paired data).
        result: the paired bootstrap, None when there was nothing to compare.
        unevaluated: the arms without any per-problem evaluation of ``bench`` (a skipped arm),
            when ``result`` is None.
    """

    a: str
    b: str
    bench: str
    seeds: list[int]
    result: BootstrapResult | None
    unevaluated: tuple[str, ...] = ()


def _eval_record(root: Path, arm: str, seed: int, bench: str, cache: dict) -> dict | None:
    """One arm's evaluation of ``bench`` for one seed (``eval/<arm>-s<seed>.json``), or None."""
    key = (arm, seed)
    if key not in cache:
        cache[key] = _read_json(root / "eval" / f"{arm}-s{seed}.json")
    record = (cache[key] or {}).get(bench)
    return record if record and record.get("problems") else None


def paired_accuracies(
    root: Path, a: str, b: str, seeds: list[int], bench: str, cache: dict | None = None
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The seeds both arms were evaluated for and the [S, P] per-problem accuracies of ``a`` and
    ``b`` on ``bench``, over the problems every one of those evaluations has (in the order of
    the first), paired by seed and problem id."""
    cache = {} if cache is None else cache
    used, maps_a, maps_b = [], [], []
    for s in seeds:
        ra = _eval_record(root, a, s, bench, cache)
        rb = _eval_record(root, b, s, bench, cache)
        if ra is not None and rb is not None:
            used.append(s)
            maps_a.append(problem_accuracies(ra))
            maps_b.append(problem_accuracies(rb))
    if not used:
        return [], np.zeros((0, 0)), np.zeros((0, 0))
    ids = [i for i in maps_a[0] if all(i in m for m in maps_a + maps_b)]
    acc_a = np.array([[m[i] for i in ids] for m in maps_a], dtype=np.float64).reshape(len(used), -1)
    acc_b = np.array([[m[i] for i in ids] for m in maps_b], dtype=np.float64).reshape(len(used), -1)
    return used, acc_a, acc_b


def compare_arms(
    root: Path, arms: list[str], seeds: list[int], benches: list[str]
) -> list[Comparison]:
    """Every pair of :data:`COMPARISONS` whose arms are both in ``arms``, on every benchmark:
    the paired bootstrap over (seed, held-out problem) of the per-problem accuracies."""
    out = []
    cache: dict = {}
    for a, b in COMPARISONS:
        if a not in arms or b not in arms:
            continue
        for bench in benches:
            used, acc_a, acc_b = paired_accuracies(root, a, b, seeds, bench, cache)
            if not used or acc_a.shape[1] == 0:
                lacking = tuple(
                    x
                    for x in (a, b)
                    if all(_eval_record(root, x, s, bench, cache) is None for s in seeds)
                )
                out.append(Comparison(a, b, bench, used, None, lacking))
                continue
            result = paired_bootstrap(
                acc_a, acc_b, n_boot=N_BOOT, seed=BOOTSTRAP_SEED, confidence=CONFIDENCE
            )
            out.append(Comparison(a, b, bench, used, result))
    return out


def verdict_text(comparison: Comparison, labels: dict[str, str]) -> str:
    """The plain verdict that follows the comparison's interval: "A higher than B", "A lower
    than B" or "no difference detected"."""
    r = comparison.result
    if r is None:
        return "not compared"
    word = verdict_of(r.low, r.high)
    if word in (HIGHER, LOWER):
        return f"{labels[comparison.a]} {word} than {labels[comparison.b]}"
    return word


def comparisons_section(
    comparisons: list[Comparison], labels: dict[str, str], seeds: list[int]
) -> list[str]:
    """The markdown lines of the Comparisons section."""
    if not comparisons:
        return ["No pair of arms to compare in this run.", ""]
    level = f"{100 * CONFIDENCE:.0f}%"
    lines = [
        f"| comparison | benchmark | difference (points) | {level} CI (points) | "
        "seeds x problems | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        name = f"{labels[c.a]} - {labels[c.b]}"
        r = c.result
        if r is None:
            why = (
                "no per-problem evaluation of " + " and ".join(labels[x] for x in c.unevaluated)
                if c.unevaluated
                else "no seed and problem evaluated for both"
            )
            lines.append(f"| {name} | {c.bench} | - | - | - | not compared: {why} |")
            continue
        shape = f"{r.n_seeds} x {r.n_problems:,}"
        if len(c.seeds) < len(seeds):
            shape += f" (seeds {', '.join(map(str, c.seeds))})"
        lines.append(
            f"| {name} | {c.bench} | {100 * r.mean:+.1f} | [{100 * r.low:+.1f}, "
            f"{100 * r.high:+.1f}] | {shape} | {verdict_text(c, labels)} |"
        )
    lines += [
        "",
        "Difference: the mean over seeds and held-out problems of A's accuracy minus B's, in "
        f"points. CI: paired percentile bootstrap, {N_BOOT:,} resamples (seed {BOOTSTRAP_SEED}) "
        "of each seed's held-out problems drawn with replacement, the same problems for both "
        "arms (`limr.stats.paired_bootstrap`). The training seeds are not resampled: the "
        "interval covers which problems were drawn, not what another training seed would give "
        "(the table's ± is the spread over seeds). The verdict follows the interval: no "
        "difference is detected when it holds 0.",
    ]
    if len(seeds) == 1:
        lines += [
            "",
            "One seed only: a second training seed may move every arm by a few points; use "
            "run.seeds=[...] for a spread.",
        ]
    return lines + [""]


def cheap_lim_lines(
    root: Path,
    results: dict,
    selections: dict,
    arms: list[str],
    seeds: list[int],
    labels: dict[str, str],
) -> list[str]:
    """The "Cheap LIM" section (issue 11; :func:`limr.cheap_study.cheap_section`), or nothing
    when the run has no cheap-LIM arm."""
    from limr.cheap_study import cheap_section

    body = cheap_section(root, results, selections, arms, seeds, labels)
    return ["## Cheap LIM", "", *body] if body else []


# ---------------------------------------------------------------------------------------------
# what ran


def _cut_text(sel: dict) -> str:
    """The rule that made a selection: ``theta >= x`` or the top N by score."""
    if sel.get("threshold") is not None:
        return f"theta {sel['info'].get('comparison', '>=')} {sel['threshold']}"
    return f"the top {sel['info'].get('size', sel['n_kept'])} by score"


def what_ran_section(
    root: Path,
    cfg: LimrConfig,
    selections: dict,
    arms: list[str],
    seeds: list[int],
    labels: dict[str, str],
) -> list[str]:
    """Seeds, workers, each arm's step budget and each seed's selection rules."""
    workers = cfg.run.workers
    lines = [
        f"- Seeds: {', '.join(map(str, seeds))} (each arm is trained once per seed from the same "
        f"base, `{cfg.model.name_or_path}`).",
        "- Workers: "
        + (
            f"run.workers = {workers}"
            if workers is not None
            else "run.workers = auto (one per CPU core, divided by trainer.num_threads)"
        )
        + ("; each job's output is in `logs/`." if (root / "logs").is_dir() else "."),
        f"- Step budget: trainer.max_steps = {cfg.trainer.max_steps}"
        + (
            f", subset arms run.subset_steps = {cfg.run.subset_steps}"
            if cfg.run.subset_steps is not None
            else " for every arm"
        )
        + "; what each arm ran (`train_summary.json`, values of the seeds joined by /):",
        "",
        "| arm | RL steps | epochs | training prompts |",
        "|---|---|---|---|",
    ]
    for arm in arms:
        summaries = [
            _read_json(root / "arms" / f"{arm}-s{s}" / "train_summary.json") for s in seeds
        ]
        done = [x for x in summaries if x]
        skipped = [str(s) for s, x in zip(seeds, summaries) if not x]
        cells = [_distinct([x.get(k) for x in done]) for k in ("steps", "epochs", "prompts")]
        if arm == "curriculum":
            cells[2] = _prompts_used(arm, selections, seeds, root) + f" of {cells[2]}"
        if skipped:
            cells[0] += f" (not trained for seed {', '.join(skipped)})"
        lines.append(f"| {labels[arm]} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in seeds:
        sel = selections.get(str(s))
        if not sel:
            lines.append(f"- seed {s}: no selections.")
            continue
        li = sel["lim"]
        parts = [
            f"{labels['lim']} (selector {li.get('selector', 'lim')}, metric "
            f"{cfg.selector.metric}, {_cut_text(li)}) kept **{li['n_kept']}** of "
            f"{li['n_scored']} scored"
        ]
        if "linear" in sel:
            parts.append(f"LINEAR ({_cut_text(sel['linear'])}) kept {sel['linear']['n_kept']}")
        if "rand" in sel:
            parts.append(f"RAND drew {sel['rand']['n_kept']} uniformly (seed {s})")
        lines.append(
            f"- seed {s}, from {sel['epochs']} epochs of FULL history over {sel['n_prompts']} "
            f"prompts: " + "; ".join(parts) + "."
        )
        if li.get("nearby"):
            lines.append(
                f"  {labels['lim']} would keep at nearby thresholds: "
                + ", ".join(f"{t}: {n}" for t, n in li["nearby"].items())
            )
    if "curriculum" in arms:
        c = cfg.curriculum
        lines.append(
            f"- CURRICULUM: all prompts for {c.warmup_epochs} epoch(s), then every "
            f"{c.update_every} epoch(s) LIM reselects with theta = min({c.max_threshold}, "
            f"{c.base_threshold} + {c.threshold_slope} x (mean accuracy - 0.5)), dropping "
            f"prompts at accuracy >= {c.mastered_accuracy}."
        )
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# the FULL run's learning curve


@dataclass(frozen=True)
class FullCurve:
    """What a FULL run's reward history says about learning.

    Attributes:
        accuracy: the pool's mean training accuracy per epoch (correct / rollouts; nan for an
            epoch without rollouts).
        prompts_per_epoch: prompts rolled out in each epoch.
        n_prompts: prompts of the history.
        kinds: prompts of each kind of :data:`limr.stats.KINDS`.
    """

    accuracy: list[float]
    prompts_per_epoch: list[int]
    n_prompts: int
    kinds: dict[str, int]


def full_curve(history_dir: Path) -> FullCurve:
    """Per-epoch pool accuracy and curve kinds of a FULL run's reward history."""
    from limr.history import RewardHistory

    history = RewardHistory.load(history_dir)
    n, nc = history.n, history.n_correct
    accuracy = [
        float(nc[:, e].sum()) / float(n[:, e].sum()) if int(n[:, e].sum()) else math.nan
        for e in range(n.shape[1])
    ]
    return FullCurve(
        accuracy=accuracy,
        prompts_per_epoch=(n > 0).sum(dim=0).tolist(),
        n_prompts=len(history.ids),
        kinds=curve_kinds(n, nc).counts,
    )


def full_curve_section(
    root: Path, selections: dict, seeds: list[int], labels: dict[str, str]
) -> list[str]:
    """The markdown lines of the FULL run's learning curve: per seed, the pool's training
    accuracy per epoch, its rise, the kinds of prompt curves and LIM's never-solved prompts."""
    lim = labels["lim"]
    lines = [
        "Training accuracy of the pool per epoch of FULL (correct rollouts / rollouts, %), and "
        "the prompts by the kind of their accuracy curve (`limr.stats.curve_kinds`: "
        f"start = mean of the first {START_EPOCHS} epoch(s) with rollouts, end = mean of the "
        f"last {END_EPOCHS} after those; mastered early: start and end >= {MASTERED_ACCURACY}; "
        f"learned during the run: start <= {LEARNED_START_MAX} and end >= {LEARNED_END_MIN} or "
        f"a rise >= {LEARNED_RISE_MIN}).",
        "",
        "| seed | accuracy per epoch (%) | first -> last | "
        + " | ".join(KINDS)
        + f" | {lim}-kept never solved |",
        "|---|---|---|" + "---|" * len(KINDS) + "---|",
    ]
    partial = []
    for s in seeds:
        history_dir = root / "arms" / f"full-s{s}" / "history"
        if not history_dir.is_dir():
            lines.append(f"| {s} | no history | - |" + " - |" * len(KINDS) + " - |")
            continue
        fc = full_curve(history_dir)
        acc = [a for a in fc.accuracy if not math.isnan(a)]
        rise = f"{100 * (acc[-1] - acc[0]):+.1f}" if acc else "-"
        sel = (selections.get(str(s)) or {}).get("lim")
        never_kept = f"{sel['info'].get('never_solved_kept', 0)} of {sel['n_kept']}" if sel else "-"
        lines.append(
            f"| {s} | "
            + ", ".join("-" if math.isnan(a) else f"{100 * a:.1f}" for a in fc.accuracy)
            + f" | {rise} | "
            + " | ".join(str(fc.kinds[k]) for k in KINDS)
            + f" | {never_kept} |"
        )
        partial += [
            f"seed {s} epoch {e}: {m} of {fc.n_prompts} prompts"
            for e, m in enumerate(fc.prompts_per_epoch)
            if m < fc.n_prompts
        ]
    if partial:
        lines += ["", "Epochs not over the whole pool: " + "; ".join(partial) + "."]
    lines.append("")
    lines.append(
        f'A "{NEVER_SOLVED}" prompt gives PPO little to learn from (no rollout is correct); '
        f"{lim} may still keep it (its score depends on the average curve)."
    )
    return lines + [""]


# ---------------------------------------------------------------------------------------------
# plots


def _mean_band(curves: list[tuple[list[int], list[float]]]) -> tuple[list[int], ...]:
    """(steps, mean, min, max) over the curves at the steps all of them have."""
    common = sorted(set.intersection(*(set(steps) for steps, _ in curves)))
    at = [dict(zip(steps, ys)) for steps, ys in curves]
    table = np.array([[m[s] for s in common] for m in at], dtype=np.float64)  # [seeds, steps]
    return common, table.mean(0).tolist(), table.min(0).tolist(), table.max(0).tolist()


def _plot_arm_curves(
    ax, curves_by_arm: dict[str, list], labels: dict[str, str], style: str = "o-"
) -> bool:
    """One line per arm: its single seed's curve, or the mean over seeds with a min-max band.
    Returns whether any arm had several seeds (a band was drawn)."""
    banded = False
    for arm, curves in curves_by_arm.items():
        if len(curves) == 1:
            steps, ys = curves[0]
            ax.plot(steps, ys, style, ms=3, label=labels[arm])
            continue
        steps, mean, low, high = _mean_band(curves)
        label = f"{labels[arm]} (mean of {len(curves)})"
        (line,) = ax.plot(steps, mean, style, ms=3, label=label)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
        banded = True
    return banded


def plot_training_curves(
    root: Path, arms: list[str], seeds: list[int], out: Path, labels: dict[str, str]
) -> Path | None:
    """Training accuracy (the step's rollouts, running mean of :data:`SMOOTH_STEPS`) versus RL
    step per arm (``metrics.jsonl``): mean over seeds with a min-max band; None when no arm has
    metrics."""
    curves: dict[str, list] = {}
    for arm in arms:
        for s in seeds:
            rows = [
                r
                for r in _read_jsonl(root / "arms" / f"{arm}-s{s}" / "metrics.jsonl")
                if "train/correct_rate" in r
            ]
            if rows:
                acc = _smooth([100 * r["train/correct_rate"] for r in rows], SMOOTH_STEPS)
                curves.setdefault(arm, []).append(([r["step"] for r in rows], acc))
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    banded = _plot_arm_curves(ax, curves, labels, style="-")
    ax.set_xlabel("RL step")
    ax.set_ylabel(f"accuracy of the step's rollouts (%, {SMOOTH_STEPS}-step mean)")
    title = "Training accuracy per arm (each arm on its own prompts)"
    ax.set_title(title + ("\nline: mean over seeds, band: min to max" if banded else ""))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_heldout_curves(
    root: Path, arms: list[str], seeds: list[int], bench: str, out: Path, labels: dict[str, str]
) -> Path | None:
    """Held-out accuracy versus RL step per arm (``heldout.jsonl`` of each arm): mean over seeds
    with a min-max band, one line per arm with one seed; None when no arm has the curve."""
    from limr.pipeline import read_heldout

    curves: dict[str, list] = {}
    for arm in arms:
        for s in seeds:
            rows = [
                r
                for r in read_heldout(root / "arms" / f"{arm}-s{s}" / "heldout.jsonl")
                if bench in r
            ]
            if rows:
                curves.setdefault(arm, []).append(
                    ([r["step"] for r in rows], [100 * r[bench] for r in rows])
                )
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    banded = _plot_arm_curves(ax, curves, labels)
    ax.set_xlabel("RL step")
    ax.set_ylabel(f"{bench} accuracy (%)")
    title = "Held-out accuracy versus step"
    ax.set_title(title + ("\nline: mean over seeds, band: min to max" if banded else ""))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_heldout(results: dict, arms: list[str], out: Path, labels: dict[str, str]) -> Path:
    """Bars of the final held-out accuracy per arm on the first benchmark (mean ± std over
    seeds)."""
    plt = _plt()
    bench = results["benchmarks"][0]
    names, means, errs = [], [], []
    for arm in ["base", *arms]:
        runs = [r[bench]["accuracy"] for r in results["arms"].get(arm, {}).values() if bench in r]
        if not runs:
            continue
        names.append(labels[arm])
        means.append(100 * statistics.mean(runs))
        errs.append(100 * statistics.stdev(runs) if len(runs) > 1 else 0.0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, means, yerr=errs, color="#4c72b0", capsize=4)
    for i, m in enumerate(means):
        ax.text(i, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(f"{bench} accuracy (%)")
    # room for the labels above the bars, also when every arm scored 0 (no degenerate axis)
    ax.set_ylim(0, max([1.0, *(m + e for m, e in zip(means, errs))]) * 1.15)
    spread = any(errs)
    ax.set_title("Held-out accuracy per arm" + (" (mean ± std over seeds)" if spread else ""))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def selection_cut(selection: dict) -> tuple[float | None, str]:
    """Where a selection cut its scores: (the threshold, "theta = x") in threshold mode, (the
    score of the last kept prompt, "top N: ...") in top-N mode; (None, ...) when nothing was
    kept."""
    if selection.get("threshold") is not None:
        return float(selection["threshold"]), f"theta = {selection['threshold']}"
    rows = _read_jsonl(Path(selection["scores"]))
    kept = [r["score"] for r in rows if r.get("kept") and r["score"] is not None]
    if not kept:
        return None, "nothing kept"
    return min(kept), f"top {len(kept)}: last kept score {min(kept):.3f}"


def plot_lim_histogram(selection: dict, out: Path, label: str, seed: int) -> Path:
    """Histogram of the selector's scores with its cut (threshold, or the last kept score)."""
    plt = _plt()
    rows = _read_jsonl(Path(selection["scores"]))
    scores = [r["score"] for r in rows if r["score"] is not None]
    lo = max(min(scores, default=0.0), -3.0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist([max(s, lo) for s in scores], bins=40, color="#55a868")
    cut, text = selection_cut(selection)
    if cut is not None:
        ax.axvline(max(cut, lo), color="red", ls="--", label=f"{text} ({selection['n_kept']} kept)")
        ax.legend()
    ax.set_xlabel(f"{label} score (values below {lo:.1f} shown at {lo:.1f})")
    ax.set_ylabel("prompts")
    ax.set_title(f"{label} scores of {len(scores)} prompts (seed {seed})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_selected_curves(
    history_dir: Path, selection: dict, metric: str, out: Path, label: str, seed: int
) -> Path:
    """Up to 40 curves of selected prompts (a seeded draw) against the average of all prompts."""
    import torch

    from limr.history import RewardHistory
    from limr.selectors.curves import epoch_values

    plt = _plt()
    history = RewardHistory.load(history_dir)
    values, present = epoch_values(history, metric)
    kept = {json.loads(x)["id"] for x in Path(selection["path"]).read_text().splitlines() if x}
    rows = [i for i, pid in enumerate(history.ids) if pid in kept]
    avg = (values * present).sum(0) / present.sum(0).clamp_min(1)
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = list(range(values.shape[1]))
    g = torch.Generator().manual_seed(0)
    shown = [rows[j] for j in torch.randperm(len(rows), generator=g)[:40].tolist()]
    for j, r in enumerate(shown):
        mask = present[r]
        ax.plot(
            [e for e in epochs if mask[e]],
            values[r][mask].tolist(),
            color="#4c72b0",
            alpha=0.25,
            lw=1,
            marker="o",
            ms=3,
            label=f"{label}-selected prompts" if j == 0 else None,
        )
    ax.plot(epochs, avg.tolist(), "o-", color="black", lw=2.5, label="average of all prompts")
    if metric == "accuracy":
        ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(f"epoch of the FULL run (seed {seed})")
    ax.set_ylabel(metric)
    ax.set_title(f"Reward curves: {len(shown)} of {len(rows)} selected prompts vs the average")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_curriculum(schedules: dict[int, list[dict]], out: Path) -> Path:
    """The curriculum's schedule of every seed, as :meth:`limr.selectors.curriculum.Curriculum
    .plot_schedule` draws one: theta and the mean accuracy above, the subset size, the mastered
    prompts and the floor below; one colour per seed, every line in its panel's legend."""
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = (
        (top, "theta", "o-", "theta (LIM threshold)"),
        (top, "mean_accuracy", "s--", "mean accuracy"),
        (bottom, "size", "o-", "subset size"),
        (bottom, "n_mastered", "x:", "mastered"),
    )
    for j, (seed, sched) in enumerate(schedules.items()):
        colour = colours[j % len(colours)]
        for ax, key, style, name in lines:
            points = [(e["epoch"], e[key]) for e in sched if e.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, color=colour, label=f"{name}, seed {seed}")
        if sched and sched[-1].get("floor") is not None:
            bottom.axhline(
                sched[-1]["floor"], color=colour, lw=0.8, ls="-.", label=f"floor, seed {seed}"
            )
    top.set_ylabel("value")
    top.legend(loc="best", fontsize=7)
    top.set_title("Dynamic-threshold curriculum per update")
    bottom.set_xlabel("epoch of the update")
    bottom.set_ylabel("prompts")
    bottom.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------


def write_report(
    root: Path,
    cfg: LimrConfig,
    results: dict,
    selections: dict,
    arms: list[str],
    seeds: list[int],
) -> Path:
    """Write ``root/report.md`` and ``root/plots/*.png``; returns the report's path.

    Args:
        root: the run folder (the per-problem evaluations, histories, schedules and held-out
            curves are read from it).
        cfg: the run's config.
        results: ``eval.json`` (``benchmarks``, and ``arms``: arm -> seed -> summary).
        selections: seed (str) -> that seed's ``selections-s<seed>.json``.
        arms: the arms of the run (``base`` excluded).
        seeds: the run's seeds.
    """
    root = Path(root)
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    labels = _labels(selections, seeds)
    benches = list(results["benchmarks"])
    seed0 = seeds[0]
    lim = selections[str(seed0)]["lim"]
    figs: list[tuple[str, Path]] = [
        ("Held-out accuracy per arm", plot_heldout(results, arms, plots / "heldout.png", labels))
    ]
    for title, path in (
        (
            "Held-out accuracy versus step",
            plot_heldout_curves(
                root, arms, seeds, benches[0], plots / "accuracy_vs_step.png", labels
            ),
        ),
        (
            "Training accuracy versus step",
            plot_training_curves(root, arms, seeds, plots / "train_accuracy_vs_step.png", labels),
        ),
        (
            f"{labels['lim']} score histogram (seed {seed0})",
            plot_lim_histogram(lim, plots / "lim_histogram.png", labels["lim"], seed0),
        ),
        (
            f"Reward curves of {labels['lim']}-selected prompts against the average (seed {seed0})",
            plot_selected_curves(
                root / "arms" / f"full-s{seed0}" / "history",
                lim,
                cfg.selector.metric,
                plots / "lim_curves.png",
                labels["lim"],
                seed0,
            ),
        ),
    ):
        if path is not None:
            figs.append((title, path))
    if "curriculum" in arms:
        schedules = {s: sched for s in seeds if (sched := _schedule(root, s))}
        if schedules:
            figs.append(
                ("Curriculum schedule", plot_curriculum(schedules, plots / "curriculum.png"))
            )

    several = len(seeds) > 1
    text = [
        "# LIMR experiment report",
        "",
        f"Run folder `{root}`; config `config.yaml` (the exact config of this run); seeds "
        f"{', '.join(map(str, seeds))}; benchmarks {', '.join(benches)}.",
        "",
        "## Results",
        "",
        "Accuracy in % on the held-out benchmark(s)"
        + (" (mean ± sample std over seeds)" if several else "")
        + "; `prompts` is how many training prompts each arm used.",
        "",
        results_table(results, selections, arms, seeds, root),
        "",
        "## Comparisons",
        "",
        *comparisons_section(compare_arms(root, arms, seeds, benches), labels, seeds),
        *cheap_lim_lines(root, results, selections, arms, seeds, labels),
        "## What ran",
        "",
        *what_ran_section(root, cfg, selections, arms, seeds, labels),
        "## The FULL run's learning curve",
        "",
        *full_curve_section(root, selections, seeds, labels),
        "## Plots",
        "",
    ]
    for title, path in figs:
        text += [f"### {title}", "", f"![{title}](plots/{path.name})", ""]
    text += [
        "## Files",
        "",
        "- `eval.json`: the numbers of the table; `eval/<arm>-s<seed>.json`: every problem's "
        "responses and verdicts (what the comparisons resample).",
        "- `arms/<arm>-s<seed>/`: each training run (reward history, metrics.jsonl, checkpoints, "
        "final model).",
        f"- TensorBoard: `tensorboard --logdir {root / 'arms'}`.",
        "",
        "For reference, the paper (Qwen2.5-Math-7B, MATH): FULL 57.0, LIMR 58.1, RAND 49.4, "
        "LINEAR 54.9 AVG over AIME24 / MATH500 / AMC23.",
        "",
    ]
    out = root / "report.md"
    out.write_text("\n".join(text), encoding="utf-8")
    return out
